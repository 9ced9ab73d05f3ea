"""The projection's pure logic: what each event contributes to the views, and how contributions combine.

Every view row is a set of *registers* whose merge is commutative, associative and idempotent on
distinct events, so the views depend only on the SET of events applied, never on arrival order:

- last-writer-wins groups keyed by an ordering key ``time|type rank|event id`` (a later fact wins,
  whichever arrives first);
- maxima (pipeline rank, last event time), minima (first event time);
- boolean ORs (replied, completed, enrolled, ...);
- sums (invites sent, failed actions, ...), safe because each event is applied at most once (the
  applier deduplicates by event id).

What each event type contributes is declared in one place, its :data:`REGISTRY` entry (rank,
timeline summary, counters, flags, lead-row effects). :func:`reduce_views` is the reference reducer,
the specification of the views: every distinct event folded with :func:`merge_patch`. The batch
applier's faster path (:mod:`.fastpath`, plus upserts that merge by the same rules in SQL,
``store.upsert_sql``) is checked against it by property tests. No I/O here; times come from the
events or are passed in.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any, NamedTuple
from uuid import UUID

import msgspec
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
    CampaignAudienceRunRequested,
    CampaignCreated,
    CampaignCreatedV1,
    CampaignDeleted,
    CampaignExtended,
    CampaignFinished,
    CampaignLaunched,
    CampaignNeedsReview,
    CampaignPaused,
    CampaignPrepared,
    CampaignResumed,
    CampaignScheduled,
    CampaignUpdated,
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
    LeadErased,
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
    event_campaign,
)
from leadstream_schemas.personal import ERASED, TOKEN_PREFIX, personal_paths

from .decoding import DecodedEvent
from .mirrors import contract_of

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
    "prepared": "prepared for review",
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

CAMPAIGN_STATES = ("pending", "prepared", "scheduled", "running", "paused", "needs_review", "finished", "deleted")

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
    json: tuple[str, ...] = ()
    """Value columns stored as JSON (``jsonb``): rows carry them as JSON text."""

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
    def json_positions(self) -> tuple[int, ...]:
        """Where the JSON columns are in :attr:`columns`."""
        columns = self.columns
        return tuple(columns.index(c) for c in self.json)

    @cached_property
    def defaults(self) -> tuple[tuple[str, Any], ...]:
        """(column, neutral value) in column order."""
        return tuple((c, self.neutral(c)) for c in self.columns)

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
    registers={
        "label_key": ("label",),
        "enroll_key": ("account_id",),
        "video_key": ("video_url",),
        # The A/B variant of the lead's invite, and of its latest message (or email, or comment) that had one.
        "invite_variant_key": ("invite_step", "invite_variant"),
        "message_variant_key": ("message_step", "message_variant"),
    },
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
    json=("delivery",),
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


def row_values(spec: MergeSpec, patch: Mapping[str, Any]) -> tuple[Any, ...]:
    """A reduced patch as a row in ``spec.columns`` order: untouched columns neutral, order keys as their
    text, JSON columns as JSON text."""
    row = [patch.get(c, neutral) for c, neutral in spec.defaults]
    for i in spec.key_positions:
        if type(row[i]) is tuple:
            row[i] = key_text(row[i])
    for i in spec.json_positions:
        if row[i] is not None:
            row[i] = json.dumps(row[i], sort_keys=True, default=str)
    return tuple(row)


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
UNKNOWN_RANK = 99
"""The lifecycle rank of a type the registry does not know (a future type), and of the one type that
was projected before it had a rank of its own (:class:`LeadAddedToSourceGroup`)."""


OrderKey = tuple[datetime, int, str]
"""An event's last-writer-wins key while batches are reduced: (time, lifecycle rank, canonical id).

Tuples of these order exactly as their text (:func:`key_text`), which is what the views store; the
text is made once per written row instead of once per event.
"""


def event_key(time: datetime, event_type: str, event_id: UUID | str) -> OrderKey:
    """The :data:`OrderKey` of an event (a time without a zone is UTC, as in the text)."""
    return (
        time if time.tzinfo else time.replace(tzinfo=UTC),
        TYPE_RANK.get(event_type, UNKNOWN_RANK),
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


def _shorten(text: str, limit: int) -> str:
    """User text as a summary shows it: whitespace collapsed, at most ``limit`` characters."""
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


def _esc(text: str | None, limit: int = 280) -> str:
    """User text inside a summary format string: braces escaped, shortened, whitespace collapsed.

    A personal field the projection left sealed (a ``pii1:`` token, see :attr:`EventProjection.opens_personal`)
    becomes a placeholder, ``{pii1:<token>~<limit>}``, that :func:`render_summary` opens and shortens when read.
    """
    if not text:
        return ""
    if text.startswith(TOKEN_PREFIX) and _SEALED_TOKEN(text) is not None:
        return f"{{{_SEALED_FIELD}:{text[len(TOKEN_PREFIX) :]}~{limit}}}"
    return _shorten(text, limit).replace("{", "{{").replace("}", "}}")


_SEALED_FIELD = TOKEN_PREFIX.removesuffix(":")
"""The name of a sealed placeholder's field in a stored summary (``{pii1:<token>~<limit>}``)."""
_SEALED_TOKEN = re.compile(re.escape(TOKEN_PREFIX) + r"[A-Za-z0-9_\-]+={0,2}").fullmatch


def _human(code: str) -> str:
    return code.replace("_", " ")


def _pending_label(data: Any) -> str:
    """The workflow label of a draft event: its channel's draft is pending (a comment's is ready)."""
    channel = str(data.channel)
    return "comment_draft_ready" if channel == Channel.comment else f"{channel}_pending"


_EMAIL_SKIP_LABELS = {
    "blocked": "email_blocked",
    "dry_run": "email_dry_run",
    "no_contact": "email_no_contact",
    "suppressed": "email_suppressed",
    "duplicate": "email_duplicate",
}

_ACCOUNT = "{account}"  # filled with the account's display name when read (render_summary)


# -- the registry: one entry per event type ---------------------------------------------------------

LeadColumns = Callable[[Any, OrderKey], Patch]
"""Columns an event sets on a lead row beyond the common ones, given its data and order key."""


@dataclass(frozen=True, kw_only=True)
class EventProjection:
    """Everything the projection does with one event type: adding a type means adding one of these to
    :data:`REGISTRY` (a test checks that every type of the contract has one).

    Every event type has an ``order``; a lead event (``stage`` set) also gets a timeline row and
    contributes to its lead's row (``lead_state``) and, when it names a campaign, to the lead's row
    in that campaign (``lead_campaign``):

    - always: the pipeline ``stage`` (the highest wins), first and last event times, the event count;
    - ``label``: the workflow label (last writer wins), a text or a function of the event;
    - ``flag``: a boolean set on both rows (replied, completed, unsubscribed);
    - ``counter``: a ``lead_campaign`` count the event adds one to;
    - ``lead_state`` / ``lead_campaign``: further columns of the event's own (functions of the event
      and its order key, which guards the last-writer-wins groups they set);
    - ``detail``: the JSON the lead page reads beyond the summary;
    - ``source_group``: the source group the event adds its lead to.

    Any other event says what it changes with ``views`` (campaigns, accounts, searches); an event the
    projection shows nothing of says why in ``ignored``.
    """

    order: int
    """Lifecycle rank: breaks ties between events stamped with the same time (one handler emits several
    with one clock reading), so a timeline reads in causal order. Stored in the order keys and the
    timeline: never change one; a new type takes the next free number."""
    stage: int | None = None
    label: str | Callable[[Any], str] | None = None
    summary: Callable[[Any], str] | None = None
    """The timeline line (a format string: ``{account}`` is filled in when read)."""
    flag: str | None = None
    counter: str | None = None
    lead_state: LeadColumns | None = None
    lead_campaign: LeadColumns | None = None
    detail: Callable[[Any], str] | None = None
    source_group: Callable[[Any], UUID | None] | None = None
    views: Callable[[Any, EventRecord, OrderKey], Contribution] | None = None
    ignored: str | None = None
    opens_personal: bool = False
    """Whether the lead's rows read the event's personal fields (the contract's ``personal``): its ``lead_state``,
    ``lead_campaign``, ``label`` or ``source_group`` (a name, an email, a video link the lists show and search).
    Only then does the projection's reader decrypt them. Otherwise it leaves them sealed (no key lookup, no
    decryption: most of a replay's records): the timeline keeps them as they came, a placeholder in the summary
    (:func:`_esc`) and the token in the detail, opened with that one lead's key when its timeline or page is read
    (:func:`render_summary`; ``api.Reads``), so the views hold no more plaintext than the lists need.
    ``test_registry`` checks that a sealed entry's rows, once read, are the same whatever its personal fields hold."""

    @property
    def is_lead_event(self) -> bool:
        """Whether the event has a timeline row and lead rows."""
        return self.stage is not None

    def label_of(self, data: Any) -> str | None:
        """The workflow label ``data`` sets, if any."""
        label = self.label
        return label(data) if callable(label) else label


# Summaries and effects of the lead events, in lifecycle order.


def _discovered_summary(d: LeadDiscovered) -> str:
    who = _esc(d.full_name) or "A lead"
    role = ", ".join(_esc(x) for x in (d.title, d.company) if x)
    text = f"{who}{f' ({role})' if role else ''} discovered via {_human(d.source)}"
    if d.fit_signals:
        text += f"; signal: {_esc(d.fit_signals[0].detail, 120)}"
    return text


def _discovered_state(d: LeadDiscovered, key: OrderKey) -> Patch:
    return {
        "disc_key": key,
        "source": str(d.source),
        "search_id": d.search_id,
        "source_group_id": d.source_group_id,
        "disc_name": d.full_name or _join_name(d.first_name, d.last_name),
        "disc_title": d.title,
        "disc_company": d.company,
        "disc_linkedin_url": d.linkedin_url,
        "disc_location": d.location,
        "signal": d.fit_signals[0].detail if d.fit_signals else None,
    }


def _join_name(first: str | None, last: str | None) -> str | None:
    name = " ".join(p for p in (first, last) if p)
    return name or None


def _post_matched_summary(d: LeadPostMatched) -> str:
    said = ", ".join(_esc(m, 60) for m in d.matched[:3])
    return f"Post matched the watch's {d.language} language ({said}): {_esc(d.post.text, 160)}"


def _enrichment_requested_summary(d: LeadEnrichmentRequested) -> str:
    why = "selected for enrichment" if d.reason == "selected" else "enriched automatically by its source group"
    return f"Enrichment requested: {why}"


def _paused_summary(d: LeadPaused) -> str:
    back = f"back {d.return_on.isoformat()}" if d.return_on else "no return date given"
    excerpt = f": {_esc(d.excerpt, 160)}" if d.excerpt else ""
    return f"Out of office ({back}); paused until {d.until.isoformat()}{excerpt}"


def _profile_summary(d: LeadProfileEnriched) -> str:
    text = f"Profile enriched: {_esc(d.full_name)}"
    if d.headline:
        text += f", {_esc(d.headline)}"
    if d.recent_posts:
        text += f" ({len(d.recent_posts)} recent post{'s' if len(d.recent_posts) != 1 else ''})"
    return text


def _profile_state(d: LeadProfileEnriched, key: OrderKey) -> Patch:
    return {
        "prof_key": key,
        "prof_name": d.full_name,
        "prof_headline": d.headline,
        "prof_company": d.company_name,
        "prof_linkedin_url": d.linkedin_url,
        "prof_city": d.city,
    }


# The fields of each detail, in their model's order (the order of the JSON's keys).
_PROFILE_DETAIL = (
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
)
_DRAFT_DETAIL = ("draft_id", "channel", "step_id", "text", "subject", "hook", "template", "char_limit", "needs_review")
_EDIT_DETAIL = ("draft_id", "text", "subject")
_REJECT_DETAIL = ("draft_id", "reason")

# A nested model of the contract (a post, a hook) as its JSON dump; its mirror is encoded as such.
_DETAIL_JSON = msgspec.json.Encoder(enc_hook=lambda value: value.model_dump(mode="json"))


def _detail_of(names: tuple[str, ...]) -> Callable[[Any], str]:
    """The lead page's JSON detail of an event: its fields ``names``, compact; the same text for a model and
    its mirror (:mod:`.mirrors`), and as the model's ``model_dump_json(include=names)`` (a test checks it)."""
    return lambda d: _DETAIL_JSON.encode({f: getattr(d, f) for f in names}).decode()


def _email_not_found_summary(d: LeadEmailNotFound) -> str:
    detail = f" ({_esc(d.detail)})" if d.detail else ""
    return f"No usable email: {_human(d.reason)}{detail}"


def _draft_summary(d: MessageGenerated) -> str:
    step = f" for step {_esc(d.step_id)}" if d.step_id else ""
    review = ", awaiting review" if d.needs_review else ""
    hook = f"{_human(d.hook.kind)}: {_esc(d.hook.detail, 120)}"
    return f"{d.channel.capitalize()} draft generated{step} (hook {hook}){review}"


def _decided(_: Any, __: OrderKey) -> Patch:
    return {"drafts_decided": 1}  # a reviewer's decision on a draft that needed review


def _variant(slot: str) -> LeadColumns:
    """The A/B slot a send with a ``variant`` fills on its lead's campaign row: ``invite`` (for acceptance rates)
    or ``message`` (the texts after the invite, for reply rates)."""

    def columns(d: Any, key: OrderKey) -> Patch:
        if d.variant is None:
            return {}
        return {f"{slot}_variant_key": key, f"{slot}_step": d.step_id, f"{slot}_variant": d.variant}

    return columns


def _video(d: VideoGenerated, key: OrderKey) -> Patch:
    return {"video_key": key, "video_url": d.video_url}


def _invite_summary(d: InviteSent) -> str:
    note = f"with note: {_esc(d.note)}" if d.note else "without a note"
    video = f" and video {_esc(d.video_url)}" if d.video_url else ""
    return f"Invite sent from account {_ACCOUNT} {note}{video}"


def _skip_label(d: ActionSkipped) -> str:
    action, reason = str(d.action), str(d.reason)
    return _EMAIL_SKIP_LABELS.get(reason, "email_skipped") if action == "email" else f"{action}_skipped"


def _skip_summary(d: ActionSkipped) -> str:
    detail = f" ({_esc(d.detail)})" if d.detail else ""
    return f"{str(d.action).capitalize()} skipped: {_human(d.reason)}{detail}"


def _failure_summary(d: ActionFailed) -> str:
    detail = f" ({_esc(d.detail)})" if d.detail else ""
    if d.reason == "outcome_unknown":  # the one failure that may have reached the lead all the same
        return f"{d.action.capitalize()} may have been sent: its outcome is unknown; not sent again{detail}"
    retry = "; will retry" if d.retryable else ""
    return f"{d.action.capitalize()} failed: {_esc(d.reason)}{detail}{retry}"


def _reply_summary(d: Replied) -> str:
    ooo = " (out of office)" if d.out_of_office else ""
    excerpt = f": {_esc(d.excerpt, 200)}" if d.excerpt else ""
    return f"Replied by {d.channel}{ooo}{excerpt}"


# Effects of the other events (campaigns, accounts, searches).


def _campaign(env: EventRecord, campaign_id: UUID, key: OrderKey, state: str | None, detail: str | None) -> Patch:
    """A campaign row patch: its state (last writer wins) when ``state`` is given, and the event's time."""
    patch: Patch = {"workspace_id": env.workspace_id, "campaign_id": campaign_id, "last_event_at": env.time}
    if state is not None:
        patch.update(state_key=key, state=state, state_detail=detail)
    return patch


def _one(spec: MergeSpec, patch: Patch) -> Contribution:
    out = Contribution()
    out.add(spec, patch)
    return out


def _campaign_created(d: CampaignCreated, env: EventRecord, key: OrderKey) -> Contribution:
    patch = _campaign(env, d.campaign_id, key, "pending", None)
    patch.update(
        created_key=key,
        name=d.name,
        audience_type=d.audience.type,
        audience_ref=d.audience.ref,
        workflow=(d.workflow.preset or "custom") if d.workflow is not None else None,
        pace=d.delivery.pace,
        delivery=d.delivery.model_dump(mode="json"),
        video=d.video is not None,
        account_count=len(d.account_ids),
        parent_campaign_id=d.parent_campaign_id,
        created_at=env.time,
    )
    out = _one(CAMPAIGNS, patch)
    out.new_audience = (env.workspace_id, d.campaign_id)
    for account_id in d.account_ids:
        assigned = {"workspace_id": env.workspace_id, "account_id": account_id, "campaign_id": d.campaign_id}
        out.add(ACCOUNT_CAMPAIGNS, {**assigned, "assigned": True})
    return out


def _campaign_scheduled(d: CampaignScheduled, env: EventRecord, key: OrderKey) -> Contribution:
    patch = _campaign(env, d.campaign_id, key, "scheduled", None)
    patch.update(schedule_key=key, next_run_at=d.next_run_at)
    return _one(CAMPAIGNS, patch)


def _campaign_launched(d: CampaignLaunched, env: EventRecord, key: OrderKey) -> Contribution:
    skipped = ", ".join(f"{k}: {v}" for k, v in sorted(d.skipped_accounts.items())) or None
    patch = _campaign(env, d.campaign_id, key, "running", skipped)
    patch.update(schedule_key=key, next_run_at=None, launch_key=key, launched_at=env.time)
    return _one(CAMPAIGNS, patch)


def _campaign_state(state: str, detail: Callable[[Any], str | None] = lambda d: None) -> Callable[..., Contribution]:
    """The ``views`` of an event that only moves its campaign to ``state`` (with ``detail(event)``)."""

    def views(d: Any, env: EventRecord, key: OrderKey) -> Contribution:
        return _one(CAMPAIGNS, _campaign(env, d.campaign_id, key, state, detail(d)))

    return views


def _campaign_deleted(d: CampaignDeleted, env: EventRecord, key: OrderKey) -> Contribution:
    return _one(CAMPAIGNS, {**_campaign(env, d.campaign_id, key, None, None), "deleted": True})


def _account_status(status: str | None, healthy: bool | None) -> Callable[..., Contribution]:
    """The ``views`` of an account status event (``None``: the event's own status and health)."""

    def views(d: Any, env: EventRecord, key: OrderKey) -> Contribution:
        patch: Patch = {
            "workspace_id": env.workspace_id,
            "account_id": d.account_id,
            "status_key": key,
            "status": d.status if status is None else status,
            "healthy": d.healthy if healthy is None else healthy,
            "status_changed_at": env.time,
        }
        if isinstance(d, AccountConnected):
            patch.update(profile_key=key, display_name=d.display_name, provider=d.provider, connected_at=env.time)
        return _one(ACCOUNTS, patch)

    return views


def _account_deleted(d: AccountDeleted, env: EventRecord, key: OrderKey) -> Contribution:
    return _one(ACCOUNTS, {"workspace_id": env.workspace_id, "account_id": d.account_id, "deleted": True})


def _lease(leased: bool) -> Callable[..., Contribution]:
    """The ``views`` of an account lease event: which campaign holds the account now."""

    def views(d: Any, env: EventRecord, key: OrderKey) -> Contribution:
        patch = {
            "workspace_id": env.workspace_id,
            "account_id": d.account_id,
            "campaign_id": d.campaign_id,
            "lease_key": key,
            "leased": leased,
        }
        return _one(ACCOUNT_CAMPAIGNS, patch)

    return views


def _search_started(d: SearchStarted, env: EventRecord, key: OrderKey) -> Contribution:
    patch = {
        "workspace_id": env.workspace_id,
        "search_id": d.search_id,
        "started_key": key,
        "name": d.name,
        "kind": d.kind,
        "source_group_id": d.source_group_id,
        "target_count": d.target_count,
        "status_key": key,
        "status": "running",
        "next_run_at": None,
    }
    return _one(SEARCHES, patch)


def _search_resumed(d: SearchResumed, env: EventRecord, key: OrderKey) -> Contribution:
    patch = {
        "workspace_id": env.workspace_id,
        "search_id": d.search_id,
        "status_key": key,
        "status": "running",
        "next_run_at": None,
    }
    return _one(SEARCHES, patch)


def _search_page(d: SearchPageCompleted, env: EventRecord, key: OrderKey) -> Contribution:
    patch = {"workspace_id": env.workspace_id, "search_id": d.search_id, "pages": d.page, "total_new": d.total_new}
    return _one(SEARCHES, patch)


def _search_finished(d: SearchFinished, env: EventRecord, key: OrderKey) -> Contribution:
    patch = {
        "workspace_id": env.workspace_id,
        "search_id": d.search_id,
        "status_key": key,
        "status": d.reason,
        "next_run_at": d.next_run_at,
        "total_new": d.total_new,
    }
    return _one(SEARCHES, patch)


P = EventProjection
REGISTRY: dict[type[Event], EventProjection] = {
    CampaignCreated: P(order=1, views=_campaign_created),
    CampaignScheduled: P(order=2, views=_campaign_scheduled),
    CampaignLaunched: P(order=3, views=_campaign_launched),
    CampaignPaused: P(order=4, views=_campaign_state("paused", lambda d: d.reason)),
    CampaignResumed: P(order=5, views=_campaign_state("running", lambda d: d.reason)),
    CampaignNeedsReview: P(order=6, views=_campaign_state("needs_review", lambda d: d.message)),
    CampaignFinished: P(order=7, views=_campaign_state("finished")),
    CampaignDeleted: P(order=8, views=_campaign_deleted),
    AccountConnectionRequested: P(order=9, views=_account_status("pending", False)),
    AccountConnected: P(order=10, views=_account_status("connected", True)),
    AccountStatusChanged: P(order=11, views=_account_status(None, None)),
    AccountDeleted: P(order=12, views=_account_deleted),
    SearchStarted: P(order=13, views=_search_started),
    SearchResumed: P(order=14, views=_search_resumed),
    SearchPageCompleted: P(order=15, views=_search_page),
    SearchFinished: P(order=16, views=_search_finished),
    LeadDiscovered: P(
        order=17,
        stage=1,
        label="signal_matched",
        summary=_discovered_summary,
        lead_state=_discovered_state,
        source_group=lambda d: d.source_group_id,
        opens_personal=True,
    ),
    LeadPostMatched: P(order=18, stage=1, label="signal_matched", summary=_post_matched_summary),
    LeadEnrichmentRequested: P(order=19, stage=1, summary=_enrichment_requested_summary),
    LeadProfileEnriched: P(
        order=20,
        stage=2,
        label="resolved",
        summary=_profile_summary,
        lead_state=_profile_state,
        detail=_detail_of(_PROFILE_DETAIL),
        opens_personal=True,
    ),
    LeadEmailEnriched: P(
        order=21,
        stage=3,
        label="ready",
        summary=lambda d: f"Verified email found: {_esc(d.email)}",
        lead_state=lambda d, key: {"email_key": key, "email": d.email, "email_status": "verified"},
        opens_personal=True,
    ),
    LeadEmailNotFound: P(
        order=22,
        stage=3,
        label="ready",
        summary=_email_not_found_summary,
        lead_state=lambda d, key: {"email_key": key, "email": None, "email_status": d.reason},
    ),
    LeadEnrichmentFailed: P(
        order=23, stage=3, label="ready", summary=lambda d: f"Enrichment failed at {d.stage}: {_esc(d.reason)}"
    ),
    # Enrolment and the video come before the first draft and the first step: they do not move the pipeline
    # stage (3: every ready lead has reached it); *Outreach Active* is the first step performed.
    LeadEnrolled: P(
        order=24,
        stage=3,
        label=lambda d: "prepared" if d.prepared else "workflow_running",
        summary=lambda d: (
            f"Prepared for review before launch, on account {_ACCOUNT}"
            if d.prepared
            else f"Enrolled in the campaign on account {_ACCOUNT}"
        ),
        lead_campaign=lambda d, key: {"enrolled": True, "enroll_key": key, "account_id": d.account_id},
    ),
    VideoRequested: P(
        order=25,
        stage=3,
        label="generating_video",
        summary=lambda d: f"Personalised video requested (template {_esc(d.template_id)})",
    ),
    VideoGenerated: P(
        order=26,
        stage=3,
        label="workflow_running",
        summary=lambda d: f"Video generated: {_esc(d.video_url)}",
        counter="videos_generated",
        lead_state=_video,
        lead_campaign=_video,
        opens_personal=True,
    ),
    VideoFailed: P(
        order=27,
        stage=3,
        label="workflow_running",
        summary=lambda d: f"Video failed ({_human(d.reason)}); continuing without it",
    ),
    MessageGenerated: P(
        order=28,
        stage=4,
        label=_pending_label,
        summary=_draft_summary,
        lead_campaign=lambda d, key: {"drafts_review": 1} if d.needs_review else {},
        detail=_detail_of(_DRAFT_DETAIL),
    ),
    MessageRejected: P(
        order=29,
        stage=4,
        label=_pending_label,
        summary=lambda d: f"{d.channel.capitalize()} draft rejected{f': {_esc(d.reason)}' if d.reason else ''}",
        lead_campaign=_decided,
        detail=_detail_of(_REJECT_DETAIL),
    ),
    MessageEdited: P(
        order=30,
        stage=4,
        label=_pending_label,
        summary=lambda d: f"{d.channel.capitalize()} draft edited: {_esc(d.text, 160)}",
        lead_campaign=_decided,
        detail=_detail_of(_EDIT_DETAIL),
    ),
    MessageApproved: P(
        order=31,
        stage=4,
        label=_pending_label,
        summary=lambda d: f"{d.channel.capitalize()} draft approved{' automatically' if d.auto else ''}",
        # Auto-approvals decide drafts that needed no review.
        lead_campaign=lambda d, key: {} if d.auto else {"drafts_decided": 1},
        # No draft id: an approval always follows its own draft's generation (a rejection, which the
        # regeneration can share a timestamp with, carries its draft id).
        detail=lambda d: '{"auto":true}' if d.auto else '{"auto":false}',
    ),
    CommentDrafted: P(
        order=32,
        stage=5,
        label="comment_draft_ready",
        summary=lambda d: f"Comment drafted for approval: {_esc(d.text, 160)}",
    ),
    CommentPosted: P(
        order=33,
        stage=5,
        label="comment_sent",
        summary=lambda d: f"Comment posted from account {_ACCOUNT}: {_esc(d.text, 160)}",
        counter="comments_posted",
        lead_campaign=_variant("message"),
    ),
    PostLiked: P(
        order=34, stage=5, label="liked", summary=lambda d: f"Post liked from account {_ACCOUNT}", counter="likes"
    ),
    InviteSent: P(
        order=35,
        stage=5,
        label="invite_sent",
        summary=_invite_summary,
        counter="invites_sent",
        lead_campaign=_variant("invite"),
    ),
    InviteAccepted: P(
        order=36,
        stage=5,
        label="workflow_running",
        summary=lambda d: "Invite accepted",
        lead_campaign=lambda d, key: {"invite_accepted": True},
    ),
    MessageSent: P(
        order=37,
        stage=5,
        label="message_sent",
        summary=lambda d: (
            f"Message sent from account {_ACCOUNT}: {_esc(d.text, 200)}"
            + (f" (video {_esc(d.video_url)})" if d.video_url else "")
        ),
        counter="messages_sent",
        lead_campaign=_variant("message"),
    ),
    EmailSent: P(
        order=38,
        stage=5,
        label="email_sent",
        summary=lambda d: f"Email sent from account {_ACCOUNT} to {_esc(d.to)}: {_esc(d.subject)}",
        counter="emails_sent",
        lead_campaign=_variant("message"),
    ),
    ActionSkipped: P(order=39, stage=5, label=_skip_label, summary=_skip_summary, counter="skipped_actions"),
    ActionFailed: P(
        order=40, stage=5, label=lambda d: f"{d.action}_failed", summary=_failure_summary, counter="failed_actions"
    ),
    LeadPaused: P(order=41, stage=5, label="paused", summary=_paused_summary),
    LeadResumed: P(
        order=42,
        stage=5,
        label="workflow_running",
        summary=lambda d: "Back from out of office: the sequence goes on",
    ),
    Replied: P(order=43, stage=7, label="replied", summary=_reply_summary, flag="replied"),
    LeadUnsubscribed: P(
        order=44,
        stage=5,
        label="unsubscribed",
        summary=lambda d: f"Unsubscribed ({_human(d.via)})",
        flag="unsubscribed",
    ),
    LeadCompleted: P(
        order=45,
        stage=6,
        label="completed",
        summary=lambda d: f"Completed the sequence ({d.steps_done} steps) without replying",
        flag="completed",
    ),
    AccountLeaseAcquired: P(order=46, views=_lease(True)),
    AccountLeaseReleased: P(order=47, views=_lease(False)),
    CampaignPrepared: P(order=48, views=_campaign_state("prepared")),
    CampaignUpdated: P(
        order=49,
        ignored="an edit's new version shows on its leads' events (workflow_version), not in the campaign's row",
    ),
    # Erasure keeps the lead's rows, stage and counts (campaign summaries stay right): its timeline gains this
    # line, and services/projection/erasure.py blanks what the views copied from personal fields.
    LeadErased: P(order=50, stage=1, summary=lambda d: f"Personal data erased ({_human(d.via)})"),
    CampaignCreatedV1: P(
        order=UNKNOWN_RANK,
        ignored="history: decoding upcasts a v1 record to CampaignCreated (v2), which the projection reads",
    ),
    CampaignAudienceRunRequested: P(
        order=UNKNOWN_RANK, ignored="a request to discovery's searches: what they find shows as lead events"
    ),
    CampaignExtended: P(
        order=UNKNOWN_RANK, ignored="the audience grows through the searches and enrollments it starts, shown as such"
    ),
    LeadAddedToSourceGroup: P(
        order=UNKNOWN_RANK,  # projected before it had a rank: kept, so stored keys and rebuilds agree
        stage=1,
        summary=lambda d: f"Found again via {_human(d.source)}; added to another source group",
        source_group=lambda d: d.source_group_id,
    ),
}
"""How the projection reads each event type of the contract (see :class:`EventProjection`)."""
del P

_UNKNOWN_LEAD_EVENT = EventProjection(order=UNKNOWN_RANK, stage=1, summary=lambda d: _esc(contract_of(d).__name__))
"""A lead event of a type the registry does not know (registered by an extension): a timeline line
with its type's name, and the lead's times and count."""

TYPE_RANK: dict[str, int] = {cls.event_type: entry.order for cls, entry in REGISTRY.items() if not entry.ignored}
"""Lifecycle rank by event type (see :attr:`EventProjection.order`)."""

DETAIL_TYPES: tuple[str, ...] = tuple(cls.event_type for cls, entry in REGISTRY.items() if entry.detail)
"""The event types whose timeline rows keep a JSON detail (what :func:`lead_profile` and :func:`lead_outreach` read)."""

SEALED_TYPES: frozenset[str] = frozenset(
    cls.event_type for cls, e in REGISTRY.items() if not e.opens_personal and personal_paths(cls)
)
"""The event types whose personal fields the projection leaves sealed (see :attr:`EventProjection.opens_personal`)."""


def projection_of(data: Event) -> EventProjection | None:
    """The registry entry of an event's type (a generic one for an unknown lead event, else None when unknown)."""
    cls = contract_of(data)
    entry = REGISTRY.get(cls)
    if entry is None and issubclass(cls, LeadEvent):
        return _UNKNOWN_LEAD_EVENT
    return entry


Details = tuple[int, str | None, str]
"""(pipeline rank, workflow label or None, summary format string) of a lead event."""


def lead_details(data: LeadEvent) -> Details:
    """(pipeline rank, workflow label, summary format) of a lead event."""
    entry = projection_of(data)
    assert entry is not None and entry.stage is not None and entry.summary is not None
    return entry.stage, entry.label_of(data), entry.summary(data)


def render_summary(
    summary: str, account_name: str | None, account_id: UUID | str | None, open_token: Opener | None = None
) -> str:
    """A stored summary with the account filled in (display name when known, else a short id) and its sealed
    personal texts opened with ``open_token`` (the lead's key; none: shown as ``[erased]``), shortened as
    :func:`_esc` would have."""
    name = account_name or (f"{str(account_id)[:8]}" if account_id else "unknown")
    try:
        if SEALED_MARK not in summary:
            return summary.format(account=name)
        return _SummaryFormatter(name, open_token).format(summary)
    except (KeyError, IndexError, ValueError):
        return summary


Opener = Callable[[str], str]
"""Opens one ``pii1:`` token of the lead a text is about (its plaintext, or ``[erased]``)."""

SEALED_MARK = "{" + TOKEN_PREFIX
"""What a stored summary holds when it holds a sealed placeholder (or user text that looks like one, escaped)."""


class _Sealed:
    """The value of a sealed placeholder's field: :class:`_SummaryFormatter` opens its format spec."""


class _SummaryFormatter(string.Formatter):
    """``str.format`` of a stored summary (braces doubled in user text, ``{account}``) that also opens the sealed
    placeholders :func:`_esc` wrote (the token and the limit are the field's format spec)."""

    def __init__(self, account: str, open_token: Opener | None) -> None:
        self.account = account
        self.open_token = open_token

    def get_value(self, key: int | str, args: Any, kwargs: Any) -> Any:
        if key == "account":
            return self.account
        if key == _SEALED_FIELD:
            return _Sealed
        raise KeyError(key)

    def format_field(self, value: Any, format_spec: str) -> Any:
        if value is not _Sealed:
            return super().format_field(value, format_spec)
        token, _, limit = format_spec.rpartition("~")
        text = self.open_token(TOKEN_PREFIX + token) if self.open_token is not None else ERASED
        return _shorten(text, int(limit))


def contribution(env: EventRecord) -> Contribution:
    """What ``env`` contributes to the views, as its type's :data:`REGISTRY` entry says."""
    data = env.data
    entry = projection_of(data)
    if entry is None or entry.ignored is not None:
        return Contribution()  # a future type: nothing to show
    key = event_key(env.time, env.type, env.id)
    if entry.views is not None:
        return entry.views(data, env, key)
    if not entry.is_lead_event:
        return Contribution()
    return _lead_contribution(env, data, entry, key)


def campaign_of(env: EventRecord, data: Any) -> UUID | None:
    """An event's campaign (:func:`leadstream_schemas.event_campaign`) as a UUID: the payload's as it is (no
    text round trip: this runs for every lead event of a replay), the header's parsed; an empty or malformed
    header is no campaign."""
    campaign = event_campaign(data, env.campaign_id)
    if campaign is None or isinstance(campaign, UUID):
        return campaign
    try:
        return UUID(campaign) if campaign else None
    except ValueError:
        return None


def _field(data: Any, name: str) -> Any:
    """A field an event's type may lack (None then): a model's from its ``__dict__`` (getattr() of a missing
    field is slow on a model), a mirror's (:mod:`.mirrors`) by getattr()."""
    fields = getattr(data, "__dict__", None)
    return fields.get(name) if fields is not None else getattr(data, name, None)


def lead_timeline(env: EventRecord, data: Any, entry: EventProjection, key: OrderKey) -> TimelineRow:
    """A lead event's timeline row: its lead, campaign (the payload's, else the envelope's), account, step,
    summary and detail."""
    assert entry.summary is not None
    return TimelineRow(
        env.id,
        env.workspace_id,
        data.lead_id,
        env.time,
        key[1],  # the lifecycle rank
        env.type,
        campaign_of(env, data),
        _field(data, "account_id"),
        _field(data, "step_id"),
        entry.summary(data),
        entry.detail(data) if entry.detail else None,
    )


def _lead_contribution(env: EventRecord, data: Any, entry: EventProjection, key: OrderKey) -> Contribution:
    """A lead event's timeline row, lead row and lead-in-campaign row (see :class:`EventProjection`)."""
    assert entry.stage is not None
    row = lead_timeline(env, data, entry, key)
    ws, t, lead_id, campaign_id = row.workspace_id, row.event_time, row.lead_id, row.campaign_id
    label = entry.label_of(data)
    out = Contribution(row)
    # Columns an event does not set are left out: the merges treat a missing column as neutral.
    lead: Patch = {
        "workspace_id": ws,
        "lead_id": lead_id,
        "pipeline_rank": entry.stage,
        "last_event_at": t,
        "first_event_at": t,
        "event_count": 1,
    }
    if label is not None:
        lead["label_key"], lead["label"] = key, label
    if entry.flag is not None:
        lead[entry.flag] = True
    if entry.lead_state is not None:
        lead.update(entry.lead_state(data, key))
    out.add(LEAD_STATE, lead, (ws, lead_id.int))
    if entry.source_group is not None and (group := entry.source_group(data)) is not None:
        out.group_member = (ws, group, lead_id)
    if campaign_id is None:
        return out
    in_campaign: Patch = {
        "workspace_id": ws,
        "campaign_id": campaign_id,
        "lead_id": lead_id,
        "last_event_at": t,
        "first_event_at": t,
        "event_count": 1,
    }
    if label is not None:
        in_campaign["label_key"], in_campaign["label"] = key, label
    if entry.flag is not None:
        in_campaign[entry.flag] = True
    if entry.counter is not None:
        in_campaign[entry.counter] = 1
    if entry.lead_campaign is not None:
        in_campaign.update(entry.lead_campaign(data, key))
    out.add(LEAD_CAMPAIGN, in_campaign, (ws, campaign_id.int, lead_id.int))
    return out


# -- the reference reducer -----------------------------------------------------------------------


@dataclass
class ViewRows:
    """What a set of events makes of the views on the Python side (the SQL derives the rest: audience
    membership, campaign summaries, generated columns)."""

    tables: dict[str, dict[tuple[Any, ...], tuple[Any, ...]]]
    """Per merged table: row key -> row (:func:`row_values`)."""
    timeline: set[TimelineRow]
    """Timeline rows, the event id as canonical text."""
    groups: set[tuple[str, UUID, UUID]]
    audiences: set[tuple[str, UUID]]


def reduce_views(events: Iterable[EventRecord]) -> ViewRows:
    """The specification of the projection: each distinct event (by id) once, every row folded from a
    neutral row with :func:`merge_patch`. The batch applier's fast path (:mod:`.fastpath`) must give
    the same rows for the same events in any order, batching and duplication (a property test checks it)."""
    seen: set[str] = set()
    merged: dict[str, dict[tuple[Any, ...], Patch]] = {spec.table: {} for spec in SPECS}
    out = ViewRows({}, set(), set(), set())
    for env in events:
        event_id = str(env.id)
        if event_id in seen:
            continue
        seen.add(event_id)
        c = contribution(env)
        for spec, key, patch in c.patches:
            acc = merged[spec.table].setdefault(key, {k: patch[k] for k in spec.key})
            merge_patch(spec, acc, patch)
        if c.timeline is not None:
            out.timeline.add(c.timeline._replace(event_id=str(c.timeline.event_id)))
        if c.group_member is not None:
            out.groups.add(c.group_member)
        if c.new_audience is not None:
            out.audiences.add(c.new_audience)
    _derive_membership(merged, out.groups)
    spec_of = {spec.table: spec for spec in SPECS}
    out.tables = {
        table: {key: row_values(spec_of[table], patch) for key, patch in rows.items()} for table, rows in merged.items()
    }
    return out


def _derive_membership(merged: dict[str, dict[tuple[Any, ...], Patch]], groups: set[tuple[str, UUID, UUID]]) -> None:
    """A campaign whose audience is a source group has a (neutral) row for every lead of the group,
    whether or not the lead has an event in it yet (what ``store.write_sql``'s ``derive_membership`` does)."""
    in_campaign = merged[LEAD_CAMPAIGN.table]
    for campaign in merged[CAMPAIGNS.table].values():
        if campaign.get("audience_type") != "source_group":
            continue
        ws, campaign_id, ref = campaign["workspace_id"], campaign["campaign_id"], str(campaign["audience_ref"]).lower()
        for group_ws, group, lead_id in groups:
            if group_ws == ws and str(group) == ref:
                key = (ws, campaign_id.int, lead_id.int)
                in_campaign.setdefault(key, {"workspace_id": ws, "campaign_id": campaign_id, "lead_id": lead_id})


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
