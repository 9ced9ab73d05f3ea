"""The projection's pure logic: what each event contributes to the views, and how contributions combine.

Every view row is a set of *registers* whose merge is commutative, associative and idempotent on
distinct events, so the views depend only on the SET of events applied, never on arrival order:

- last-writer-wins groups keyed by an ordering key ``time|type rank|event id`` (a later fact wins,
  whichever arrives first);
- maxima (pipeline rank, last event time), minima (first event time);
- boolean ORs (replied, completed, enrolled, ...);
- sums (invites sent, failed actions, ...), safe because each event is applied at most once (the
  applier deduplicates by event id).

The applier reduces a batch with :func:`merge_patch` and upserts with SQL that implements the same
merge (see ``store.upsert_sql``). No I/O here; times come from the events or are passed in.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property, partial
from typing import Any, NamedTuple
from uuid import UUID

from leadstream_schemas import (
    LIMIT_STATUSES,
    AccountConnected,
    AccountConnectionRequested,
    AccountDeleted,
    AccountLeaseAcquired,
    AccountLeaseReleased,
    AccountStatusChanged,
    ActionFailed,
    ActionSkipped,
    CampaignCreated,
    CampaignDeleted,
    CampaignFinished,
    CampaignLaunched,
    CampaignNeedsReview,
    CampaignPaused,
    CampaignResumed,
    CampaignScheduled,
    Channel,
    CommentDrafted,
    CommentPosted,
    EmailSent,
    Envelope,
    Event,
    InviteAccepted,
    InviteSent,
    LeadAddedToSourceGroup,
    LeadCompleted,
    LeadDiscovered,
    LeadEmailEnriched,
    LeadEmailNotFound,
    LeadEnrichmentFailed,
    LeadEnrichmentRequested,
    LeadEnrolled,
    LeadEvent,
    LeadPaused,
    LeadPostMatched,
    LeadProfileEnriched,
    LeadResumed,
    LeadUnsubscribed,
    MessageApproved,
    MessageEdited,
    MessageGenerated,
    MessageRejected,
    MessageSent,
    PostLiked,
    Replied,
    SearchFinished,
    SearchPageCompleted,
    SearchResumed,
    SearchStarted,
    VideoFailed,
    VideoGenerated,
    VideoRequested,
)

from .decoding import DecodedEvent

Patch = dict[str, Any]
EventRecord = Envelope[Event] | DecodedEvent
"""An event as the projection reads it: an envelope (tests, tools) or the projection decoder's result."""

# -- pipeline stages and workflow labels ----------------------------------------------------------

STAGES: dict[int, str] = {
    1: "Discovered",
    2: "Profile Enriched",
    3: "Email Enriched",
    4: "Message Generated",
    5: "Outreach Active",
    6: "Completed",
    7: "Replied",
}
"""Pipeline stage by rank; a lead's stage is the highest rank any of its events reached."""

WORKFLOW_LABELS: dict[str, str] = {
    "signal_matched": "signal matched",
    "resolved": "resolved",
    "ready": "ready",
    "comment_draft_ready": "comment draft ready",
    "comment_sent": "comment sent",
    "comment_skipped": "comment skipped",
    "comment_failed": "comment failed",
    "liked": "liked",
    "like_skipped": "like skipped",
    "like_failed": "like failed",
    "invite_sent": "invite sent",
    "invite_pending": "invite pending",
    "invite_skipped": "invite skipped",
    "invite_failed": "invite failed",
    "message_sent": "message sent",
    "message_pending": "message pending",
    "message_skipped": "message skipped",
    "message_failed": "message failed",
    "email_sent": "email sent",
    "email_blocked": "email blocked",
    "email_dry_run": "email dry-run",
    "email_no_contact": "email no-contact",
    "email_pending": "email pending",
    "email_skipped": "email skipped",
    "email_suppressed": "email suppressed",
    "email_duplicate": "email duplicate",
    "email_failed": "email failed",
    "generating_video": "generating video",
    "workflow_running": "workflow running",
    "paused": "paused (out of office)",
    "unsubscribed": "unsubscribed",
    "replied": "replied",
    "completed": "completed",
}
"""Detailed workflow stage codes (API filter values) and their display labels."""

STATUSES = ("queued", "in_progress", "replied", "completed", "unsubscribed")
"""Result-table status of a lead in a campaign (derived in SQL from the lead's flags)."""

ACTIVITY_CATEGORIES = (
    "matched",
    "engaged",
    "invite_sent",
    "message_sent",
    "waiting_acceptance",
    "skipped",
    "processing",
)
"""How the activity feed summarises a lead's latest row."""

CAMPAIGN_STATES = ("pending", "scheduled", "running", "paused", "needs_review", "finished", "deleted")

# Lifecycle order of event types: breaks ties between events stamped with the same time (one handler
# emits several events with one clock reading), so a timeline reads in causal order.
_TYPE_ORDER: tuple[type[Event], ...] = (
    CampaignCreated,
    CampaignScheduled,
    CampaignLaunched,
    CampaignPaused,
    CampaignResumed,
    CampaignNeedsReview,
    CampaignFinished,
    CampaignDeleted,
    AccountConnectionRequested,
    AccountConnected,
    AccountStatusChanged,
    AccountDeleted,
    SearchStarted,
    SearchResumed,
    SearchPageCompleted,
    SearchFinished,
    LeadDiscovered,
    LeadPostMatched,
    LeadEnrichmentRequested,
    LeadProfileEnriched,
    LeadEmailEnriched,
    LeadEmailNotFound,
    LeadEnrichmentFailed,
    LeadEnrolled,
    VideoRequested,
    VideoGenerated,
    VideoFailed,
    MessageGenerated,
    MessageRejected,
    MessageEdited,
    MessageApproved,
    CommentDrafted,
    CommentPosted,
    PostLiked,
    InviteSent,
    InviteAccepted,
    MessageSent,
    EmailSent,
    ActionSkipped,
    ActionFailed,
    LeadPaused,
    LeadResumed,
    Replied,
    LeadUnsubscribed,
    LeadCompleted,
    # Appended, never inserted: the ranks are stored in the order keys and the timeline.
    AccountLeaseAcquired,
    AccountLeaseReleased,
)
TYPE_RANK: dict[str, int] = {cls.event_type: i + 1 for i, cls in enumerate(_TYPE_ORDER)}

# -- merge specifications -----------------------------------------------------------------------


_REGISTER, _MAX, _MIN, _ANY, _SUM = "register", "max", "min", "any", "sum"


@dataclass(frozen=True)
class MergeSpec:
    """How contributions to one view table combine (the same rules in Python and in the SQL upsert).

    ``registers`` maps an ordering-key column to the value columns it guards: the group with the
    greatest key wins as a whole. ``maximum``/``minimum`` keep the extreme, ``any`` ORs booleans,
    ``total`` adds counts.
    """

    table: str
    key: tuple[str, ...]
    registers: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    maximum: tuple[str, ...] = ()
    minimum: tuple[str, ...] = ()
    any: tuple[str, ...] = ()
    total: tuple[str, ...] = ()

    @property
    def columns(self) -> tuple[str, ...]:
        """Every column this spec writes, key first."""
        cols: list[str] = list(self.key)
        for k, values in self.registers.items():
            cols.append(k)
            cols.extend(values)
        cols.extend(self.maximum + self.minimum + self.any + self.total)
        return tuple(cols)

    @cached_property
    def kinds(self) -> dict[str, str]:
        """How each merged column combines (register keys, maxima, minima, ORs, sums)."""
        out = dict.fromkeys(self.registers, _REGISTER)
        out.update(dict.fromkeys(self.maximum, _MAX))
        out.update(dict.fromkeys(self.minimum, _MIN))
        out.update(dict.fromkeys(self.any, _ANY))
        out.update(dict.fromkeys(self.total, _SUM))
        return out

    def neutral(self, column: str) -> Any:
        """The value of a column a patch does not touch."""
        if column in self.any:
            return False
        if column in self.total:
            return 0
        return None

    @cached_property
    def key_positions(self) -> tuple[int, ...]:
        """Where the register keys are in :attr:`columns`."""
        columns = self.columns
        return tuple(columns.index(k) for k in self.registers)

    @cached_property
    def defaults(self) -> tuple[tuple[str, Any], ...]:
        """(column, neutral value) in column order."""
        return tuple((c, self.neutral(c)) for c in self.columns)

    @cached_property
    def merge(self) -> Callable[[Patch, Mapping[str, Any]], Patch]:
        """:func:`merge_patch` for this spec, compiled with the columns unrolled (it runs per event).

        Equivalent to :func:`merge_patch` (a test checks it on random patches).
        """
        return self._compile(None)

    @cached_property
    def _shaped(self) -> dict[tuple[str, ...], Callable[[Patch, Mapping[str, Any]], Patch]]:
        return {}

    def merge_shaped(self, acc: Patch, patch: Mapping[str, Any]) -> Patch:
        """:attr:`merge`, compiled for the columns ``patch`` has (patches of one event type share them).

        A patch's missing column is neutral, so leaving it out of the code changes nothing; the
        domain produces a small, fixed set of column sets (a test checks the equivalence).
        """
        shape = tuple(patch)
        merge = self._shaped.get(shape)
        if merge is None:
            merge = self._shaped[shape] = self._compile(frozenset(shape))
        return merge(acc, patch)

    def _compile(self, present: frozenset[str] | None) -> Callable[[Patch, Mapping[str, Any]], Patch]:
        """The merge function, unrolled for every column (``present`` None) or only those in ``present``."""
        lines = ["def merge(acc, patch):", "    get = patch.get", "    cur_of = acc.get"]

        def has(col: str) -> bool:
            return present is None or col in present

        def value(col: str) -> str:
            if present is None:
                return f"get({col!r})"
            return f"patch[{col!r}]" if col in present else "None"

        def extreme(col: str, op: str) -> list[str]:
            return [
                f"    v = {value(col)}",
                "    if v is not None:",
                f"        cur = cur_of({col!r})",
                f"        if cur is None or v {op} cur:",
                f"            acc[{col!r}] = v",
            ]

        for key_col, values in self.registers.items():
            if has(key_col):
                lines += extreme(key_col, ">")
                lines += [f"            acc[{c!r}] = {value(c)}" for c in values]
        for c in self.maximum:
            if has(c):
                lines += extreme(c, ">")
        for c in self.minimum:
            if has(c):
                lines += extreme(c, "<")
        for c in self.any:
            if has(c):
                lines += [f"    if {value(c)}:", f"        acc[{c!r}] = True"]
        for c in self.total:
            if has(c):
                lines += [f"    v = {value(c)}", "    if v:", f"        acc[{c!r}] = cur_of({c!r}, 0) + v"]
        lines.append("    return acc")
        namespace: dict[str, Any] = {}
        exec(compile("\n".join(lines), f"<merge {self.table}>", "exec"), namespace)
        merge: Callable[[Patch, Mapping[str, Any]], Patch] = namespace["merge"]
        return merge

    @cached_property
    def row(self) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
        """:func:`row_tuple` for this spec, compiled with the columns unrolled (it runs per written row).

        Equivalent to :func:`row_tuple` (a test checks it on the patches of a generated log).
        """
        keys = set(self.registers)
        parts = [f"_text(get({c!r}))" if c in keys else f"get({c!r}, {neutral!r})" for c, neutral in self.defaults]
        source = f"def row(patch):\n    get = patch.get\n    return ({', '.join(parts)},)"
        namespace: dict[str, Any] = {"_text": _key_as_stored}
        exec(compile(source, f"<row {self.table}>", "exec"), namespace)
        row: Callable[[Mapping[str, Any]], tuple[Any, ...]] = namespace["row"]
        return row

    @cached_property
    def row_key(self) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
        """The primary key of a patch, as a tuple (a UUID as its integer: hashing a UUID runs Python code)."""
        getters = self.key
        return lambda patch: tuple([key_part(patch[k]) for k in getters])


def key_part(value: Any) -> Any:
    """A key column's value as reducers group by it: a UUID as its integer, anything else as is."""
    return value.int if type(value) is UUID else value


LEAD_STATE = MergeSpec(
    table="lead_state",
    key=("workspace_id", "lead_id"),
    registers={
        "disc_key": (
            "source",
            "search_id",
            "source_group_id",
            "disc_name",
            "disc_title",
            "disc_company",
            "disc_linkedin_url",
            "disc_location",
            "signal",
        ),
        "prof_key": ("prof_name", "prof_headline", "prof_company", "prof_linkedin_url", "prof_city"),
        "email_key": ("email", "email_status"),
        "label_key": ("label",),
        "video_key": ("video_url",),
    },
    maximum=("pipeline_rank", "last_event_at"),
    minimum=("first_event_at",),
    any=("replied", "completed", "unsubscribed"),
    total=("event_count",),
)

LEAD_CAMPAIGN = MergeSpec(
    table="lead_campaign",
    key=("workspace_id", "campaign_id", "lead_id"),
    registers={"label_key": ("label",), "enroll_key": ("account_id",), "video_key": ("video_url",)},
    maximum=("last_event_at",),
    minimum=("first_event_at",),
    any=("enrolled", "invite_accepted", "replied", "completed", "unsubscribed"),
    total=(
        "invites_sent",
        "messages_sent",
        "emails_sent",
        "comments_posted",
        "likes",
        "failed_actions",
        "skipped_actions",
        "videos_generated",
        "drafts_review",
        "drafts_decided",
        "event_count",
    ),
)

CAMPAIGNS = MergeSpec(
    table="campaigns",
    key=("workspace_id", "campaign_id"),
    registers={
        "created_key": (
            "name",
            "audience_type",
            "audience_ref",
            "workflow",
            "pace",
            "delivery",
            "video",
            "account_count",
            "parent_campaign_id",
            "created_at",
        ),
        "state_key": ("state", "state_detail"),
        "schedule_key": ("next_run_at",),
        "launch_key": ("launched_at",),
    },
    maximum=("last_event_at",),
    any=("deleted",),
)

ACCOUNTS = MergeSpec(
    table="accounts",
    key=("workspace_id", "account_id"),
    registers={
        "profile_key": ("display_name", "provider"),
        "status_key": ("status", "healthy", "status_changed_at"),
    },
    minimum=("connected_at",),
    any=("deleted",),
)

ACCOUNT_CAMPAIGNS = MergeSpec(
    table="account_campaigns",
    key=("workspace_id", "account_id", "campaign_id"),
    registers={"lease_key": ("leased",)},
    any=("assigned",),
)
"""Which campaigns use an account: chosen for it at creation (``assigned``) and holding its lease now."""

SEARCHES = MergeSpec(
    table="searches",
    key=("workspace_id", "search_id"),
    registers={
        "started_key": ("name", "kind", "source_group_id", "target_count"),
        "status_key": ("status", "next_run_at"),
    },
    maximum=("pages", "total_new"),
)

SPECS: tuple[MergeSpec, ...] = (LEAD_STATE, LEAD_CAMPAIGN, CAMPAIGNS, ACCOUNTS, ACCOUNT_CAMPAIGNS, SEARCHES)


def merge_patch(spec: MergeSpec, acc: Patch, patch: Mapping[str, Any]) -> Patch:
    """Fold ``patch`` into ``acc`` (in place) by the rules of ``spec``; commutative for distinct events."""
    kinds = spec.kinds
    for col, v in patch.items():
        kind = kinds.get(col)
        if kind is None or v is None:
            continue  # key columns, register values (moved with their key), untouched extremes
        if kind == _REGISTER:
            cur = acc.get(col)
            if cur is None or v > cur:
                acc[col] = v
                for c in spec.registers[col]:
                    acc[c] = patch.get(c)
        elif kind == _MAX:
            cur = acc.get(col)
            if cur is None or v > cur:
                acc[col] = v
        elif kind == _MIN:
            cur = acc.get(col)
            if cur is None or v < cur:
                acc[col] = v
        elif kind == _ANY:
            if v:
                acc[col] = True
        else:
            acc[col] = acc.get(col, 0) + v
    return acc


def row_values(spec: MergeSpec, patch: Mapping[str, Any]) -> list[Any]:
    """A reduced patch as values in ``spec.columns`` order (untouched columns neutral, order keys as text)."""
    get = patch.get
    row = [get(c, neutral) for c, neutral in spec.defaults]
    for i in spec.key_positions:
        row[i] = _key_as_stored(row[i])
    return row


def row_tuple(spec: MergeSpec, patch: Mapping[str, Any]) -> tuple[Any, ...]:
    """:func:`row_values` as a tuple."""
    return tuple(row_values(spec, patch))


def _key_as_stored(key: Any) -> Any:
    """An order key column's value as stored (a key tuple as its text; text or None as is)."""
    return key_text(key) if type(key) is tuple else key


# -- contributions of one event -----------------------------------------------------------------


class TimelineRow(NamedTuple):
    """One line of a lead's timeline (fields in column order). ``summary`` has an ``{account}`` field.

    ``event_id`` is a UUID or its canonical text (the projection decoder's), both written as ``uuid``.
    """

    event_id: UUID | str
    workspace_id: str
    lead_id: UUID
    event_time: datetime
    type_rank: int
    event_type: str
    campaign_id: UUID | None
    account_id: UUID | None
    step_id: str | None
    summary: str
    detail: str | None
    """What the lead page shows beyond the summary, as JSON (profile, draft, review); None for most types."""


_timeline_row: Callable[[tuple[Any, ...]], TimelineRow] = partial(tuple.__new__, TimelineRow)
"""A :class:`TimelineRow` from a tuple in field order (a NamedTuple's own constructor is Python code:
slow per event)."""


@dataclass(slots=True)
class Contribution:
    """Everything one event changes in the views (patches keyed by table)."""

    timeline: TimelineRow | None = None
    patches: list[tuple[MergeSpec, tuple[Any, ...], Patch]] = field(default_factory=list)  # (spec, row key, patch)
    group_member: tuple[str, UUID, UUID] | None = None  # (workspace, source group, lead)
    new_audience: tuple[str, UUID] | None = None  # (workspace, campaign) whose audience became known

    def add(self, spec: MergeSpec, patch: Patch, key: tuple[Any, ...] | None = None) -> None:
        """Add a patch of ``spec``'s table (``key`` is its primary key, computed when not given)."""
        self.patches.append((spec, key if key is not None else spec.row_key(patch), patch))


_ORIGIN = datetime(1, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


OrderKey = tuple[datetime, int, str]
"""An event's last-writer-wins key while batches are reduced: (time, lifecycle rank, canonical id).

Tuples of these order exactly as their text (:func:`key_text`), which is what the views store; the
text is made once per written row instead of once per event.
"""


def event_key(time: datetime, event_type: str, event_id: UUID | str) -> OrderKey:
    """The :data:`OrderKey` of an event (a time without a zone is UTC, as in the text)."""
    return (
        time if time.tzinfo else time.replace(tzinfo=UTC),
        TYPE_RANK.get(event_type, 99),
        event_id if type(event_id) is str else str(event_id),
    )


def key_text(key: OrderKey) -> str:
    """An order key as stored: microseconds since year 1 (zero-padded: string order is time order), the
    lifecycle rank, then the id's hex digits (bytewise)."""
    time, rank, event_id = key
    return f"{(time - _ORIGIN) // _MICROSECOND:018d}|{rank:03d}|{event_id.replace('-', '')}"


def order_key(time: datetime, event_type: str, event_id: UUID | str) -> str:
    """The last-writer-wins key of an event as stored: sorts by time, then lifecycle order, then id."""
    return key_text(event_key(time, event_type, event_id))


def _esc(text: str | None, limit: int = 280) -> str:
    """User text inside a summary format string: braces escaped, shortened."""
    if not text:
        return ""
    # Whitespace collapsed to single spaces. Printable text (every Unicode space but the ASCII one is
    # not) without double, leading or trailing spaces is already so: skip the split, most texts are.
    if not text.isprintable() or "  " in text or text[0] == " " or text[-1] == " ":
        text = " ".join(text.split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text.replace("{", "{{").replace("}", "}}")


def _human(code: str) -> str:
    return code.replace("_", " ")


# Enum members are used as the strings they are (``.value`` is a Python-level property: slow per event).
_PENDING_LABELS: dict[str, str] = {
    c.value: "comment_draft_ready" if c is Channel.comment else f"{c.value}_pending" for c in Channel
}


def _pending_label(channel: str) -> str:
    return _PENDING_LABELS[channel]


_EMAIL_SKIP_LABELS = {
    "blocked": "email_blocked",
    "dry_run": "email_dry_run",
    "no_contact": "email_no_contact",
    "suppressed": "email_suppressed",
    "duplicate": "email_duplicate",
}


Details = tuple[int, str | None, str]
"""(pipeline rank, workflow label or None, summary format string) of a lead event."""

_ACCOUNT = "{account}"  # filled with the account's display name when read (render_summary)
_DETAILS: dict[type[Event], Callable[[Any], Details]] = {}


def _details(cls: type[Event]) -> Callable[[Callable[[Any], Details]], Callable[[Any], Details]]:
    """Register the details function of one lead event type (dispatch by exact type is cheap)."""

    def deco(fn: Callable[[Any], Details]) -> Callable[[Any], Details]:
        _DETAILS[cls] = fn
        return fn

    return deco


@_details(LeadDiscovered)
def _d_lead_discovered(data: LeadDiscovered) -> Details:
    who = _esc(data.full_name) or "A lead"
    role = ", ".join(_esc(x) for x in (data.title, data.company) if x)
    text = f"{who}{f' ({role})' if role else ''} discovered via {_human(data.source)}"
    if data.fit_signals:
        text += f"; signal: {_esc(data.fit_signals[0].detail, 120)}"
    return 1, "signal_matched", text


@_details(LeadAddedToSourceGroup)
def _d_lead_added_to_source_group(data: LeadAddedToSourceGroup) -> Details:
    return 1, None, f"Found again via {_human(data.source)}; added to another source group"


@_details(LeadPostMatched)
def _d_lead_post_matched(data: LeadPostMatched) -> Details:
    said = ", ".join(_esc(m, 60) for m in data.matched[:3])
    post = _esc(data.post.text, 160)
    return 1, "signal_matched", f"Post matched the watch's {data.language} language ({said}): {post}"


@_details(LeadEnrichmentRequested)
def _d_lead_enrichment_requested(data: LeadEnrichmentRequested) -> Details:
    why = "selected for enrichment" if data.reason == "selected" else "enriched automatically by its source group"
    return 1, None, f"Enrichment requested: {why}"


@_details(LeadProfileEnriched)
def _d_lead_profile_enriched(data: LeadProfileEnriched) -> Details:
    text = f"Profile enriched: {_esc(data.full_name)}"
    if data.headline:
        text += f", {_esc(data.headline)}"
    if data.recent_posts:
        text += f" ({len(data.recent_posts)} recent post{'s' if len(data.recent_posts) != 1 else ''})"
    return 2, "resolved", text


@_details(LeadEmailEnriched)
def _d_lead_email_enriched(data: LeadEmailEnriched) -> Details:
    return 3, "ready", f"Verified email found: {_esc(data.email)}"


@_details(LeadEmailNotFound)
def _d_lead_email_not_found(data: LeadEmailNotFound) -> Details:
    detail = f" ({_esc(data.detail)})" if data.detail else ""
    return 3, "ready", f"No usable email: {_human(data.reason)}{detail}"


@_details(LeadEnrichmentFailed)
def _d_lead_enrichment_failed(data: LeadEnrichmentFailed) -> Details:
    return 3, "ready", f"Enrichment failed at {data.stage}: {_esc(data.reason)}"


@_details(MessageGenerated)
def _d_message_generated(data: MessageGenerated) -> Details:
    step = f" for step {_esc(data.step_id)}" if data.step_id else ""
    review = ", awaiting review" if data.needs_review else ""
    hook = f"{_human(data.hook.kind)}: {_esc(data.hook.detail, 120)}"
    text = f"{data.channel.capitalize()} draft generated{step} (hook {hook}){review}"
    return 4, _pending_label(data.channel), text


@_details(MessageApproved)
def _d_message_approved(data: MessageApproved) -> Details:
    how = " automatically" if data.auto else ""
    return 4, _pending_label(data.channel), f"{data.channel.capitalize()} draft approved{how}"


@_details(MessageEdited)
def _d_message_edited(data: MessageEdited) -> Details:
    text = f"{data.channel.capitalize()} draft edited: {_esc(data.text, 160)}"
    return 4, _pending_label(data.channel), text


@_details(MessageRejected)
def _d_message_rejected(data: MessageRejected) -> Details:
    why = f": {_esc(data.reason)}" if data.reason else ""
    return 4, _pending_label(data.channel), f"{data.channel.capitalize()} draft rejected{why}"


@_details(LeadEnrolled)
def _d_lead_enrolled(data: LeadEnrolled) -> Details:
    return 5, "workflow_running", f"Enrolled in the campaign on account {_ACCOUNT}"


@_details(VideoRequested)
def _d_video_requested(data: VideoRequested) -> Details:
    return 5, "generating_video", f"Personalised video requested (template {_esc(data.template_id)})"


@_details(VideoGenerated)
def _d_video_generated(data: VideoGenerated) -> Details:
    return 5, "workflow_running", f"Video generated: {_esc(data.video_url)}"


@_details(VideoFailed)
def _d_video_failed(data: VideoFailed) -> Details:
    return 5, "workflow_running", f"Video failed ({_human(data.reason)}); continuing without it"


@_details(CommentDrafted)
def _d_comment_drafted(data: CommentDrafted) -> Details:
    return 5, "comment_draft_ready", f"Comment drafted for approval: {_esc(data.text, 160)}"


@_details(CommentPosted)
def _d_comment_posted(data: CommentPosted) -> Details:
    return 5, "comment_sent", f"Comment posted from account {_ACCOUNT}: {_esc(data.text, 160)}"


@_details(PostLiked)
def _d_post_liked(data: PostLiked) -> Details:
    return 5, "liked", f"Post liked from account {_ACCOUNT}"


@_details(InviteSent)
def _d_invite_sent(data: InviteSent) -> Details:
    note = f"with note: {_esc(data.note)}" if data.note else "without a note"
    video = f" and video {_esc(data.video_url)}" if data.video_url else ""
    return 5, "invite_sent", f"Invite sent from account {_ACCOUNT} {note}{video}"


@_details(InviteAccepted)
def _d_invite_accepted(data: InviteAccepted) -> Details:
    return 5, "workflow_running", "Invite accepted"


@_details(MessageSent)
def _d_message_sent(data: MessageSent) -> Details:
    video = f" (video {_esc(data.video_url)})" if data.video_url else ""
    return 5, "message_sent", f"Message sent from account {_ACCOUNT}: {_esc(data.text, 200)}{video}"


@_details(EmailSent)
def _d_email_sent(data: EmailSent) -> Details:
    return 5, "email_sent", f"Email sent from account {_ACCOUNT} to {_esc(data.to)}: {_esc(data.subject)}"


@_details(ActionSkipped)
def _d_action_skipped(data: ActionSkipped) -> Details:
    action, reason = str(data.action), str(data.reason)
    label = _EMAIL_SKIP_LABELS.get(reason, "email_skipped") if action == "email" else f"{action}_skipped"
    detail = f" ({_esc(data.detail)})" if data.detail else ""
    return 5, label, f"{action.capitalize()} skipped: {_human(reason)}{detail}"


@_details(ActionFailed)
def _d_action_failed(data: ActionFailed) -> Details:
    retry = "; will retry" if data.retryable else ""
    detail = f" ({_esc(data.detail)})" if data.detail else ""
    text = f"{data.action.capitalize()} failed: {_esc(data.reason)}{detail}{retry}"
    if data.reason == "outcome_unknown":  # the one failure that may have reached the lead all the same
        text = f"{data.action.capitalize()} may have been sent: its outcome is unknown; not sent again{detail}"
    return 5, f"{data.action}_failed", text


@_details(Replied)
def _d_replied(data: Replied) -> Details:
    ooo = " (out of office)" if data.out_of_office else ""
    excerpt = f": {_esc(data.excerpt, 200)}" if data.excerpt else ""
    return 7, "replied", f"Replied by {data.channel}{ooo}{excerpt}"


@_details(LeadPaused)
def _d_lead_paused(data: LeadPaused) -> Details:
    back = f"back {data.return_on.isoformat()}" if data.return_on else "no return date given"
    excerpt = f": {_esc(data.excerpt, 160)}" if data.excerpt else ""
    return 5, "paused", f"Out of office ({back}); paused until {data.until.isoformat()}{excerpt}"


@_details(LeadResumed)
def _d_lead_resumed(data: LeadResumed) -> Details:
    return 5, "workflow_running", "Back from out of office: the sequence goes on"


@_details(LeadCompleted)
def _d_lead_completed(data: LeadCompleted) -> Details:
    return 6, "completed", f"Completed the sequence ({data.steps_done} steps) without replying"


@_details(LeadUnsubscribed)
def _d_lead_unsubscribed(data: LeadUnsubscribed) -> Details:
    return 5, "unsubscribed", f"Unsubscribed ({_human(data.via)})"


# -- what the lead page shows beyond the summary (``TimelineRow.detail``) --------------------------

_PROFILE_DETAIL = frozenset(
    {
        "first_name",
        "last_name",
        "headline",
        "role",
        "company_name",
        "company_size",
        "company_industry",
        "city",
        "recent_posts",
        "work_history",
        "skills",
        "company_milestones",
    }
)
_DRAFT_DETAIL = frozenset(
    {"draft_id", "channel", "step_id", "text", "subject", "hook", "template", "char_limit", "needs_review"}
)
_EDIT_DETAIL = frozenset({"draft_id", "text", "subject"})
_REJECT_DETAIL = frozenset({"draft_id", "reason"})
# An approval needs no draft id: it always follows its own draft's generation (a rejection, which the
# regeneration can share a timestamp with, carries its draft id). Constant texts: approvals are frequent.
_APPROVED_AUTO, _APPROVED_BY_REVIEWER = '{"auto":true}', '{"auto":false}'

_DETAIL_JSON: dict[type[Event], Callable[[Any], str]] = {
    LeadProfileEnriched: lambda d: d.model_dump_json(include=_PROFILE_DETAIL),
    MessageGenerated: lambda d: d.model_dump_json(include=_DRAFT_DETAIL),
    MessageApproved: lambda d: _APPROVED_AUTO if d.auto else _APPROVED_BY_REVIEWER,
    MessageEdited: lambda d: d.model_dump_json(include=_EDIT_DETAIL),
    MessageRejected: lambda d: d.model_dump_json(include=_REJECT_DETAIL),
}
"""Event types whose timeline row keeps a JSON detail, and how it is made (pydantic's serializer: cheap)."""

DETAIL_TYPES: tuple[str, ...] = tuple(cls.event_type for cls in _DETAIL_JSON)
"""The event types :func:`lead_profile` and :func:`lead_outreach` read."""


def lead_details(data: LeadEvent) -> Details:
    """(pipeline rank, workflow label, summary format) of a lead event."""
    fn = _DETAILS.get(type(data))
    if fn is None:
        return 1, None, _esc(type(data).__name__)
    return fn(data)


def render_summary(summary: str, account_name: str | None, account_id: UUID | str | None) -> str:
    """A stored summary with the account filled in (display name when known, else a short id)."""
    name = account_name or (f"{str(account_id)[:8]}" if account_id else "unknown")
    try:
        return summary.format(account=name)
    except (KeyError, IndexError, ValueError):
        return summary


def contribution(env: EventRecord) -> Contribution:
    """What ``env`` contributes to the views."""
    data = env.data
    if isinstance(data, LeadEvent):
        return _lead_contribution(env, data)
    key = event_key(env.time, env.type, env.id)
    ws = env.workspace_id
    out = Contribution()
    match data:
        case CampaignCreated():
            workflow = (data.workflow.preset or "custom") if data.workflow is not None else None
            patch: Patch = {
                "workspace_id": ws,
                "campaign_id": data.campaign_id,
                "created_key": key,
                "name": data.name,
                "audience_type": data.audience.type,
                "audience_ref": data.audience.ref,
                "workflow": workflow,
                "pace": data.delivery.pace,
                "delivery": data.delivery.model_dump(mode="json"),
                "video": data.video is not None,
                "account_count": len(data.account_ids),
                "parent_campaign_id": data.parent_campaign_id,
                "created_at": env.time,
                "state_key": key,
                "state": "pending",
                "state_detail": None,
            }
            out.new_audience = (ws, data.campaign_id)
            for account_id in data.account_ids:
                out.add(
                    ACCOUNT_CAMPAIGNS,
                    {"workspace_id": ws, "account_id": account_id, "campaign_id": data.campaign_id, "assigned": True},
                )
        case CampaignScheduled():
            patch = _campaign_state(ws, data.campaign_id, key, "scheduled", None)
            patch.update(schedule_key=key, next_run_at=data.next_run_at)
        case CampaignLaunched():
            skipped = ", ".join(f"{k}: {v}" for k, v in sorted(data.skipped_accounts.items())) or None
            patch = _campaign_state(ws, data.campaign_id, key, "running", skipped)
            patch.update(schedule_key=key, next_run_at=None, launch_key=key, launched_at=env.time)
        case CampaignPaused():
            patch = _campaign_state(ws, data.campaign_id, key, "paused", data.reason)
        case CampaignResumed():
            patch = _campaign_state(ws, data.campaign_id, key, "running", data.reason)
        case CampaignFinished():
            patch = _campaign_state(ws, data.campaign_id, key, "finished", None)
        case CampaignNeedsReview():
            patch = _campaign_state(ws, data.campaign_id, key, "needs_review", data.message)
        case CampaignDeleted():
            patch = {"workspace_id": ws, "campaign_id": data.campaign_id, "deleted": True}
        case AccountConnectionRequested():
            out.add(ACCOUNTS, _account_status(ws, data.account_id, key, "pending", False, env.time))
            return out
        case AccountConnected():
            acc = _account_status(ws, data.account_id, key, "connected", True, env.time)
            acc.update(profile_key=key, display_name=data.display_name, provider=data.provider, connected_at=env.time)
            out.add(ACCOUNTS, acc)
            return out
        case AccountStatusChanged():
            out.add(ACCOUNTS, _account_status(ws, data.account_id, key, data.status, data.healthy, env.time))
            return out
        case AccountLeaseAcquired():
            out.add(ACCOUNT_CAMPAIGNS, _lease(ws, data.account_id, data.campaign_id, key, leased=True))
            return out
        case AccountLeaseReleased():
            out.add(ACCOUNT_CAMPAIGNS, _lease(ws, data.account_id, data.campaign_id, key, leased=False))
            return out
        case AccountDeleted():
            out.add(ACCOUNTS, {"workspace_id": ws, "account_id": data.account_id, "deleted": True})
            return out
        case SearchStarted():
            search: Patch = {
                "workspace_id": ws,
                "search_id": data.search_id,
                "started_key": key,
                "name": data.name,
                "kind": data.kind,
                "source_group_id": data.source_group_id,
                "target_count": data.target_count,
                "status_key": key,
                "status": "running",
                "next_run_at": None,
            }
            out.add(SEARCHES, search)
            return out
        case SearchResumed():
            search = {
                "workspace_id": ws,
                "search_id": data.search_id,
                "status_key": key,
                "status": "running",
                "next_run_at": None,
            }
            out.add(SEARCHES, search)
            return out
        case SearchPageCompleted():
            search = {"workspace_id": ws, "search_id": data.search_id, "pages": data.page, "total_new": data.total_new}
            out.add(SEARCHES, search)
            return out
        case SearchFinished():
            search = {
                "workspace_id": ws,
                "search_id": data.search_id,
                "status_key": key,
                "status": data.reason,
                "next_run_at": data.next_run_at,
                "total_new": data.total_new,
            }
            out.add(SEARCHES, search)
            return out
        case _:
            return out  # an account lease or a future type: nothing to show
    patch["last_event_at"] = env.time
    out.add(CAMPAIGNS, patch)
    return out


def _campaign_state(ws: str, campaign_id: UUID, key: OrderKey, state: str, detail: str | None) -> Patch:
    return {"workspace_id": ws, "campaign_id": campaign_id, "state_key": key, "state": state, "state_detail": detail}


def _lease(ws: str, account_id: UUID, campaign_id: UUID, key: OrderKey, *, leased: bool) -> Patch:
    return {
        "workspace_id": ws,
        "account_id": account_id,
        "campaign_id": campaign_id,
        "lease_key": key,
        "leased": leased,
    }


def _account_status(ws: str, account_id: UUID, key: OrderKey, status: str, healthy: bool, at: datetime) -> Patch:
    return {
        "workspace_id": ws,
        "account_id": account_id,
        "status_key": key,
        "status": status,
        "healthy": healthy,
        "status_changed_at": at,
    }


def _campaign_of(env: EventRecord, data: LeadEvent) -> UUID | None:
    if data.campaign_id is not None:
        return data.campaign_id
    if env.campaign_id:
        try:
            return UUID(env.campaign_id)
        except ValueError:
            return None
    return None


_COUNTERS: dict[type[Event], str] = {
    VideoGenerated: "videos_generated",
    InviteSent: "invites_sent",
    MessageSent: "messages_sent",
    EmailSent: "emails_sent",
    CommentPosted: "comments_posted",
    PostLiked: "likes",
    ActionFailed: "failed_actions",
    ActionSkipped: "skipped_actions",
}


_FLAGS: dict[type[Event], str] = {Replied: "replied", LeadCompleted: "completed", LeadUnsubscribed: "unsubscribed"}


def _lead_contribution(env: EventRecord, data: LeadEvent) -> Contribution:
    ws, t, cls, event_type = env.workspace_id, env.time, type(data), env.type
    key = event_key(t, event_type, env.id)
    rank, label, summary = lead_details(data)
    fields = data.__dict__  # a pydantic model's field values; getattr() on a missing field is slow
    lead_id: UUID = fields["lead_id"]
    lead_key = lead_id.int
    account_id: UUID | None = fields.get("account_id")
    campaign_id = _campaign_of(env, data)
    out = Contribution(
        _timeline_row(
            (
                env.id,
                ws,
                lead_id,
                t,
                key[1],  # the lifecycle rank
                event_type,
                campaign_id,
                account_id,
                fields.get("step_id"),
                summary,
                None if (detail := _DETAIL_JSON.get(cls)) is None else detail(data),
            )
        )
    )
    # Untouched columns are left out: the reducer and the upsert treat a missing column as neutral.
    lead: Patch = {
        "workspace_id": ws,
        "lead_id": lead_id,
        "pipeline_rank": rank,
        "last_event_at": t,
        "first_event_at": t,
        "event_count": 1,
    }
    if label is not None:
        lead["label_key"] = key
        lead["label"] = label
    flag = _FLAGS.get(cls)
    if flag is not None:
        lead[flag] = True
    if cls is LeadDiscovered:
        assert isinstance(data, LeadDiscovered)
        lead.update(
            disc_key=key,
            source=data.source.value,
            search_id=data.search_id,
            source_group_id=data.source_group_id,
            disc_name=data.full_name or _join_name(data.first_name, data.last_name),
            disc_title=data.title,
            disc_company=data.company,
            disc_linkedin_url=data.linkedin_url,
            disc_location=data.location,
            signal=data.fit_signals[0].detail if data.fit_signals else None,
        )
        if data.source_group_id is not None:
            out.group_member = (ws, data.source_group_id, data.lead_id)
    elif cls is LeadAddedToSourceGroup:
        assert isinstance(data, LeadAddedToSourceGroup)
        out.group_member = (ws, data.source_group_id, data.lead_id)
    elif cls is LeadProfileEnriched:
        assert isinstance(data, LeadProfileEnriched)
        lead.update(
            prof_key=key,
            prof_name=data.full_name,
            prof_headline=data.headline,
            prof_company=data.company_name,
            prof_linkedin_url=data.linkedin_url,
            prof_city=data.city,
        )
    elif cls is LeadEmailEnriched:
        lead.update(email_key=key, email=fields.get("email"), email_status="verified")
    elif cls is LeadEmailNotFound:
        lead.update(email_key=key, email=None, email_status=fields.get("reason"))
    elif cls is VideoGenerated:
        lead.update(video_key=key, video_url=fields.get("video_url"))
    out.patches.append((LEAD_STATE, (ws, lead_key), lead))
    if campaign_id is None:
        return out
    lc: Patch = {
        "workspace_id": ws,
        "campaign_id": campaign_id,
        "lead_id": lead_id,
        "last_event_at": t,
        "first_event_at": t,
        "event_count": 1,
    }
    if flag is not None:
        lc[flag] = True
    if label is not None:
        lc["label_key"] = key
        lc["label"] = label
    counter = _COUNTERS.get(cls)
    if counter is not None:
        lc[counter] = 1
    if cls is LeadEnrolled:
        lc.update(enrolled=True, enroll_key=key, account_id=account_id)
    elif cls is VideoGenerated:
        lc.update(video_key=key, video_url=fields.get("video_url"))
    elif cls is InviteAccepted:
        lc["invite_accepted"] = True
    elif cls is MessageGenerated:
        if fields["needs_review"]:
            lc["drafts_review"] = 1
    elif cls is MessageEdited or cls is MessageRejected or (cls is MessageApproved and not fields["auto"]):
        lc["drafts_decided"] = 1  # a reviewer's decision (auto-approvals decide drafts that needed no review)
    out.patches.append((LEAD_CAMPAIGN, (ws, campaign_id.int, lead_key), lc))
    return out


def _join_name(first: str | None, last: str | None) -> str | None:
    name = " ".join(p for p in (first, last) if p)
    return name or None


# -- reading ------------------------------------------------------------------------------------


def stage_name(rank: int | None) -> str:
    """The pipeline stage name of a rank."""
    return STAGES.get(rank or 1, STAGES[1])


def rate(numerator: int, denominator: int) -> float:
    """A ratio in [0, 1], 0 when nothing was attempted."""
    return round(numerator / denominator, 4) if denominator else 0.0


def activity_category(
    stage: str | None,
    last_event_at: datetime | None,
    now: datetime,
    waiting_after: timedelta,
    invite_accepted: bool = False,
) -> str:
    """How the activity feed summarises a lead's row (see :data:`ACTIVITY_CATEGORIES`)."""
    stage = stage or "signal_matched"
    if stage in {"signal_matched", "resolved", "ready"}:
        return "matched"
    if stage in {"replied", "liked", "comment_sent"} or (stage == "workflow_running" and invite_accepted):
        return "engaged"
    if stage == "invite_sent":
        if last_event_at is not None and now - last_event_at >= waiting_after:
            return "waiting_acceptance"
        return "invite_sent"
    if stage in {"message_sent", "email_sent", "completed"}:
        return "message_sent"
    if stage.endswith(("_skipped", "_failed")) or stage in set(_EMAIL_SKIP_LABELS.values()) | {"unsubscribed"}:
        return "skipped"
    return "processing"


def count_categories(categories: Iterable[str]) -> dict[str, int]:
    """Counts per activity category (every category present, zero when absent)."""
    counts = dict.fromkeys(ACTIVITY_CATEGORIES, 0)
    for c in categories:
        counts[c] = counts.get(c, 0) + 1
    return counts


# -- the lead page: profile and outreach folded from the timeline's details ------------------------


class DetailRow(NamedTuple):
    """A timeline row of one of :data:`DETAIL_TYPES`, in timeline order."""

    event_type: str
    event_time: datetime
    campaign_id: UUID | None
    step_id: str | None
    detail: str | None


@dataclass
class OutreachDraft:
    """The current draft of one step of a lead in a campaign, and where its review stands.

    ``review_state``: ``pending_review`` (waiting in the Messaging Lab), ``generated`` (no review
    needed, not approved yet), ``auto_approved``, ``approved``, ``edited`` (approved with the
    reviewer's text) or ``rejected`` (a new draft is being written).
    """

    campaign_id: UUID | None
    step_id: str
    channel: str | None
    draft_id: str | None
    text: str
    subject: str | None
    hook: dict[str, Any]
    template: str | None
    char_limit: int | None
    needs_review: bool
    review_state: str
    generated_at: datetime
    reviewed_at: datetime | None = None
    rejection_reason: str | None = None
    drafts: int = 1


_GENERATED, _APPROVED = MessageGenerated.event_type, MessageApproved.event_type
_EDITED, _REJECTED = MessageEdited.event_type, MessageRejected.event_type
_PROFILE = LeadProfileEnriched.event_type


def _detail(row: DetailRow) -> dict[str, Any]:
    try:
        value = json.loads(row.detail) if row.detail else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def lead_profile(rows: Iterable[DetailRow]) -> dict[str, Any] | None:
    """What the latest ``LeadProfileEnriched`` said beyond the lead row (role, company size, posts, ...)."""
    latest = None
    for row in rows:
        if row.event_type == _PROFILE:
            latest = row
    return None if latest is None else _detail(latest)


def lead_outreach(rows: Iterable[DetailRow]) -> list[OutreachDraft]:
    """The current draft per (campaign, step) with its hook and review state, in the order steps were first drafted."""
    steps: dict[tuple[UUID | None, str], OutreachDraft] = {}
    for row in rows:
        kind = row.event_type
        if kind == _PROFILE:
            continue
        d = _detail(row)
        key = (row.campaign_id, row.step_id or str(d.get("channel") or ""))
        current = steps.get(key)
        if kind == _GENERATED:
            review = bool(d.get("needs_review"))
            hook = d.get("hook")
            draft = OutreachDraft(
                campaign_id=row.campaign_id,
                step_id=key[1],
                channel=d.get("channel"),
                draft_id=d.get("draft_id"),
                text=str(d.get("text") or ""),
                subject=d.get("subject"),
                hook=hook if isinstance(hook, dict) else {},
                template=d.get("template"),
                char_limit=d.get("char_limit"),
                needs_review=review,
                review_state="pending_review" if review else "generated",
                generated_at=row.event_time,
            )
            if current is not None:
                draft.drafts = current.drafts + 1
                draft.rejection_reason = current.rejection_reason
            steps[key] = draft
        elif current is None:
            continue  # a decision on a draft this view has not seen (a partial replay)
        elif kind == _REJECTED:
            reason = d.get("reason")
            if d.get("draft_id") in (None, current.draft_id):
                current.review_state, current.reviewed_at = "rejected", row.event_time
            current.rejection_reason = reason or current.rejection_reason
        elif kind == _EDITED:
            current.review_state, current.reviewed_at = "edited", row.event_time
            current.text = str(d.get("text") or current.text)
            current.subject = d.get("subject") or current.subject
        elif kind == _APPROVED:
            current.review_state = "auto_approved" if d.get("auto") else "approved"
            current.reviewed_at = row.event_time
    return list(steps.values())


# -- onboarding, accounts and the action inbox ---------------------------------------------------

RECONNECT_STATUSES = frozenset({"credentials", "disconnected", "auth_required", "sleeping"})
"""Account statuses that need the user to reconnect (outreach pauses the account's campaigns)."""

ACCOUNT_STATUS_REASONS: dict[str, str] = {
    "pending": "Waiting for the provider to finish connecting",
    "ok": "Healthy",
    "connected": "Connected",
    "reconnected": "Reconnected",
    "sync_success": "Healthy (synced)",
    "running": "Healthy",
    "credentials": "LinkedIn asks for the password again: reconnect the account",
    "disconnected": "The provider lost the connection: reconnect the account",
    "auth_required": "LinkedIn asks to confirm a sign-in (checkpoint): reconnect the account",
    "sleeping": "The provider put the account to sleep: reconnect it to wake it up",
    "limit_reached": "LinkedIn's invitation limit was reached: the account resumes in its next active window",
    "message_limit_reached": "LinkedIn's message limit was reached: the account resumes in its next active window",
    "verification_failed": "The email provider could not verify the sender address: check it and verify it again",
    "deleted": "Deleted",
}
"""What each account status means for the user."""


def account_health(status: str | None, healthy: bool | None, deleted: bool) -> str:
    """``healthy``, ``reconnect_required``, ``limited``, ``pending`` or ``deleted``."""
    if deleted:
        return "deleted"
    if status in RECONNECT_STATUSES or status == "verification_failed":  # both need the user
        return "reconnect_required"
    if status in LIMIT_STATUSES:
        return "limited"
    if healthy:
        return "healthy"
    return "pending"


@dataclass(frozen=True)
class InboxItem:
    """One operational next step of the action inbox, with what it is about."""

    kind: str
    severity: str
    title: str
    detail: str | None = None
    campaign_id: UUID | None = None
    account_id: UUID | None = None
    count: int = 1


INBOX_KINDS = (
    "connect_account",
    "reconnect_account",
    "campaign_needs_review",
    "campaign_paused_by_limit",
    "drafts_waiting",
    "failed_actions",
)
"""Inbox item kinds, most urgent first."""


@dataclass(frozen=True)
class AccountFact:
    """What the inbox needs to know of an account."""

    account_id: UUID
    name: str
    status: str | None
    healthy: bool | None
    deleted: bool
    campaigns: tuple[str, ...] = ()


@dataclass(frozen=True)
class CampaignFact:
    """What the inbox needs to know of a campaign."""

    campaign_id: UUID
    name: str
    state: str
    state_detail: str | None
    drafts_pending: int
    failed_actions: int
    limited_accounts: tuple[str, ...] = ()  # "<name> (<which limit>)"


def inbox(accounts: Iterable[AccountFact], campaigns: Iterable[CampaignFact]) -> list[InboxItem]:
    """The action inbox: what needs the user, most urgent first (a pure function of accounts and campaigns)."""
    items: list[InboxItem] = []
    live = [a for a in accounts if not a.deleted]
    if not any(a.healthy or a.status in RECONNECT_STATUSES or a.status in LIMIT_STATUSES for a in live):
        items.append(
            InboxItem(
                "connect_account",
                "action",
                "Connect a LinkedIn account",
                "Campaigns send from your own LinkedIn account; connect one to launch.",
            )
        )
    for a in live:
        if a.status in RECONNECT_STATUSES:
            used = f" Its campaigns wait until then: {', '.join(a.campaigns)}." if a.campaigns else ""
            items.append(
                InboxItem(
                    "reconnect_account",
                    "critical",
                    f"Reconnect {a.name}",
                    ACCOUNT_STATUS_REASONS.get(a.status or "", a.status or "") + "." + used,
                    account_id=a.account_id,
                )
            )
    ordered = list(campaigns)
    for c in ordered:
        if c.state == "needs_review":
            items.append(
                InboxItem(
                    "campaign_needs_review",
                    "critical",
                    f"{c.name} needs review",
                    c.state_detail or "The campaign stopped on something that needs a person.",
                    campaign_id=c.campaign_id,
                )
            )
    for c in ordered:
        if c.limited_accounts and c.state in ("running", "scheduled", "paused"):
            items.append(
                InboxItem(
                    "campaign_paused_by_limit",
                    "warning",
                    f"{c.name} is paused by a limit",
                    f"A LinkedIn limit was reached on {', '.join(c.limited_accounts)}; "
                    "the account resumes in its next active window.",
                    campaign_id=c.campaign_id,
                )
            )
    for c in ordered:
        if c.drafts_pending > 0 and c.state != "deleted":
            items.append(
                InboxItem(
                    "drafts_waiting",
                    "action",
                    f"{c.drafts_pending} draft{'s' if c.drafts_pending != 1 else ''} waiting for review",
                    f"In the Messaging Lab for {c.name}: nothing is sent until a draft is approved.",
                    campaign_id=c.campaign_id,
                    count=c.drafts_pending,
                )
            )
    for c in ordered:
        if c.failed_actions > 0 and c.state != "deleted":
            items.append(
                InboxItem(
                    "failed_actions",
                    "warning",
                    f"{c.failed_actions} failed action{'s' if c.failed_actions != 1 else ''} in {c.name}",
                    "The provider refused or failed these steps; open the campaign to see which leads.",
                    campaign_id=c.campaign_id,
                    count=c.failed_actions,
                )
            )
    return items


@dataclass(frozen=True)
class OnboardingStep:
    """One step of the onboarding checklist."""

    key: str
    label: str
    done: bool
    done_at: datetime | None


def onboarding(
    first_event_at: datetime | None, account_connected_at: datetime | None, first_launch_at: datetime | None
) -> list[OnboardingStep]:
    """Workspace ready -> a LinkedIn account connected -> first campaign launched.

    The workspace is ready as soon as its token works (this is asked with one); its date is its first event.
    """
    return [
        OnboardingStep("workspace_ready", "Workspace ready", True, first_event_at),
        OnboardingStep(
            "account_connected", "Connect a LinkedIn account", account_connected_at is not None, account_connected_at
        ),
        OnboardingStep("campaign_launched", "Launch your first campaign", first_launch_at is not None, first_launch_at),
    ]
