"""Request bodies and answers of the outreach API.

Bodies: out-of-range values are 422s whose message names the range; every string and list has a maximum
(``leadstream_schemas.bounds``), the strategy's are the contract's own. Answers (``*Out``): what the routes send,
field by field; the parts a campaign event carries too (strategy, delivery) are the contract's models."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from uuid import UUID

from leadstream_schemas import Channel, Delivery, EdgeCondition, StepAction, Strategy
from leadstream_schemas.bounds import (
    BODY_MAX,
    CODE_MAX,
    DETAIL_MAX,
    EMAIL_MAX,
    ID_MAX,
    LINE_MAX,
    MAX_BYTES_KEYWORD,
    NAME_MAX,
    URL_MAX,
    Bound,
    FreeJson,
    find_unstorable,
)
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from .domain.pacing import CHANNEL_LIMITS, EMAIL_RANGE, GUARD_RANGE, MANUAL_RANGE, MESSAGE_RANGE, PacingError
from .domain.schedule import ScheduleError, parse_active_days, zone


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AudienceIn(_In):
    """Who the campaign targets."""

    type: Literal["source_group", "saved_search", "linkedin_url"]
    ref: str = Field(
        min_length=1, max_length=URL_MAX, description="Source group id, saved search id, or a LinkedIn search URL."
    )

    @model_validator(mode="after")
    def _ref_shape(self) -> AudienceIn:
        if self.type in ("source_group", "saved_search"):
            try:
                UUID(self.ref)
            except ValueError:
                raise ValueError(f"ref must be the {self.type.replace('_', ' ')} id (a UUID)") from None
        elif "linkedin.com" not in self.ref.lower():
            raise ValueError("ref must be a LinkedIn search URL (https://www.linkedin.com/search/...)")
        return self


class EmailFallbackIn(_In):
    """The email fallback: a verified sender, and the subject and body an email step uses."""

    sender_email: str = Field(min_length=3, max_length=EMAIL_MAX)
    subject: str = Field("", max_length=LINE_MAX)
    body: str = Field("", max_length=BODY_MAX)


class DeliveryIn(_In):
    """Pace, active days and hours in the campaign's time zone, and the email fallback."""

    pace: str = Field(
        "recommended",
        max_length=50,
        description="conservative (15/week) | recommended (20/day) | high_volume (50/day) | manual (daily_limit 10-75)",
    )
    daily_limit: int | None = Field(None, description="Invites per day per account for the manual pace (10-75).")
    daily_message_limit: int | None = Field(
        None,
        description=f"LinkedIn messages per day per account ({MESSAGE_RANGE[0]}-{MESSAGE_RANGE[1]}); "
        "default by pace: conservative 30, recommended 50, high_volume 100.",
    )
    daily_email_limit: int | None = Field(
        None,
        description=f"Emails per day per sending mailbox ({EMAIL_RANGE[0]}-{EMAIL_RANGE[1]}); "
        "default by pace: conservative 40, recommended 80, high_volume 150.",
    )
    active_days: Annotated[str, Bound(50)] | Annotated[list[Annotated[str, Bound(20)]], Bound(7)] = Field(
        "weekdays", description="weekdays | every_day | a list of day names"
    )
    start_hour: int = Field(9, description="Local hour the window opens (0-23).")
    end_hour: int = Field(17, description="Local hour the window closes (1-24, after start_hour).")
    timezone: str = Field("UTC", max_length=100)
    email_fallback: EmailFallbackIn | None = None
    lead_timezones: bool = Field(
        False,
        description="Active hours in each lead's own time zone (from their location; the campaign's when unknown). "
        "Daily quotas still count the campaign's days.",
    )
    stop_company_on_reply: bool = Field(
        False, description="When a lead replies, stop the campaign's other leads of the same company."
    )

    @field_validator("pace")
    @classmethod
    def _pace(cls, v: str) -> str:
        key = v.strip().lower().replace(" ", "_").replace("-", "_")
        if key not in ("conservative", "recommended", "high_volume", "manual"):
            raise ValueError("pace must be conservative, recommended, high_volume or manual")
        return key

    @field_validator("daily_limit")
    @classmethod
    def _daily_limit(cls, v: int | None) -> int | None:
        lo, hi = MANUAL_RANGE
        if v is not None and not lo <= v <= hi:
            raise ValueError(f"daily_limit must be between {lo} and {hi} invites per day, got {v}")
        return v

    @field_validator("daily_message_limit", "daily_email_limit")
    @classmethod
    def _channel_limit(cls, v: int | None, info: ValidationInfo) -> int | None:
        limit = next(c for c in CHANNEL_LIMITS.values() if c.field == info.field_name)
        try:
            return limit.resolve({limit.field: v}, "recommended") if v is not None else None
        except PacingError as exc:
            raise ValueError(exc.message) from None

    @field_validator("start_hour")
    @classmethod
    def _start(cls, v: int) -> int:
        if not 0 <= v <= 23:
            raise ValueError(f"start_hour must be between 0 and 23, got {v}")
        return v

    @field_validator("end_hour")
    @classmethod
    def _end(cls, v: int) -> int:
        if not 1 <= v <= 24:
            raise ValueError(f"end_hour must be between 1 and 24, got {v}")
        return v

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            zone(v)
        except ScheduleError as exc:
            raise ValueError(exc.message) from None
        return v

    @field_validator("active_days")
    @classmethod
    def _days(cls, v: str | list[str]) -> str | list[str]:
        try:
            parse_active_days(v)
        except ScheduleError as exc:
            raise ValueError(exc.message) from None
        return v

    @model_validator(mode="after")
    def _consistent(self) -> DeliveryIn:
        if self.end_hour <= self.start_hour:
            raise ValueError(f"end_hour ({self.end_hour}) must be after start_hour ({self.start_hour})")
        if self.pace == "manual" and self.daily_limit is None:
            raise ValueError(f"the manual pace needs daily_limit between {MANUAL_RANGE[0]} and {MANUAL_RANGE[1]}")
        return self


class VideoSegmentIn(_In):
    """A video segment: the variable ``name`` filled from the lead's ``field``, else ``fallback``."""

    name: str | None = Field(None, min_length=1, max_length=200, description="Defaults to the field.")
    field: Literal["first_name", "last_name", "city", "headline"]
    fallback: str | None = Field(None, max_length=DETAIL_MAX)


VIDEO_MAX_BYTES = 65_536
VIDEO_MAX_FIELDS = 32


class VideoIn(BaseModel):
    """A personalised video template (its segments map to lead fields with fallbacks; see the video service).

    Other fields are stored with the campaign (not carried by its events); the whole template is at most 64 KiB
    as JSON.
    """

    model_config = ConfigDict(
        extra="allow", json_schema_extra={"maxProperties": VIDEO_MAX_FIELDS, MAX_BYTES_KEYWORD: VIDEO_MAX_BYTES}
    )

    template_id: str = Field(min_length=1, max_length=200)
    segments: Annotated[list[VideoSegmentIn], Bound(50)] = Field(default_factory=list)

    @model_validator(mode="after")
    def _bounded(self) -> VideoIn:
        extra = self.model_extra or {}
        if len(extra) + 2 > VIDEO_MAX_FIELDS:
            raise ValueError(f"at most {VIDEO_MAX_FIELDS} fields")
        found = find_unstorable(extra)
        if found is not None:
            raise ValueError(f"{'.'.join(map(str, found[0]))}: {found[1]}")
        if len(self.model_dump_json().encode()) > VIDEO_MAX_BYTES:
            raise ValueError(f"must be at most {VIDEO_MAX_BYTES} bytes as JSON")
        return self


class CampaignIn(_In):
    """A new campaign."""

    name: str = Field(min_length=1, max_length=200)
    audience: AudienceIn
    workflow: Annotated[str, Bound(100)] | Annotated[dict[str, Any], FreeJson(max_properties=64, max_bytes=65_536)] = (
        Field(
            "standard_connect",
            description="A preset name or a graph {steps: [{id, action, ...}], edges: [{from, to, condition, ...}]}",
        )
    )
    strategy: Strategy = Field(default_factory=Strategy)
    delivery: DeliveryIn = Field(default_factory=DeliveryIn)
    account_ids: list[UUID] = Field(min_length=1, max_length=100)
    video: VideoIn | None = None


class CampaignEditIn(_In):
    """An edit of a campaign's workflow (a new version of its sequence; see services/outreach/versions.py)."""

    workflow: Annotated[str, Bound(100)] | Annotated[dict[str, Any], FreeJson(max_properties=64, max_bytes=65_536)] = (
        Field(description="A preset name or a graph, as when the campaign was created")
    )
    confirm_email_fallback: bool = Field(
        False, description="Required when the edit adds an email step to a launched campaign."
    )


class WorkflowOptionsIn(_In):
    """A preset and the builder's options on it (see ``domain.workflow.customise_preset``)."""

    preset: str = Field(min_length=1, max_length=50)
    spacing_minutes: int | None = Field(None, description="Step spacing, 5-720 minutes (every 'always' edge).")
    invite_wait_hours: int | None = Field(None, description="Invite-to-message wait, 1-168 hours.")
    comment_mode: Literal["auto", "draft"] | None = None
    without: list[Annotated[str, Field(max_length=50)]] = Field(default_factory=list, max_length=10)


class WorkflowCheckIn(_In):
    """A workflow to validate and draw before a campaign exists."""

    workflow: WorkflowOptionsIn
    invite_note: bool = Field(True, description="Invites carry a note (the strategy's invite_note).")
    email_fallback: bool = Field(False, description="The delivery has an email fallback (adds its email step).")


class LaunchIn(_In):
    """Launch options."""

    confirm_email_fallback: bool = Field(False, description="Required when the workflow has an email step.")
    daily_limit: int | None = Field(
        None, description=f"Override the daily invite limit at launch ({GUARD_RANGE[0]}-{GUARD_RANGE[1]})."
    )
    daily_message_limit: int | None = Field(
        None,
        description="Override the LinkedIn messages per day per account at launch "
        f"({MESSAGE_RANGE[0]}-{MESSAGE_RANGE[1]}).",
    )
    daily_email_limit: int | None = Field(
        None,
        description=f"Override the emails per day per sending mailbox at launch ({EMAIL_RANGE[0]}-{EMAIL_RANGE[1]}).",
    )


def _return_url(value: str | None) -> str | None:
    """A page to send the user back to after the hosted authorisation: an absolute http(s) URL."""
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an absolute http(s) URL")
    return value


class ExtendIn(_In):
    """Extend a campaign: its audience's searches may find this many more new leads; late joiners are enrolled."""

    additional_leads: int = Field(ge=1, le=10_000, description="More new leads the audience's searches may find.")


class AccountIn(_In):
    """Connect an account: a LinkedIn account (hosted authorisation) or an email sender."""

    provider: Literal["linkedin", "email"] = "linkedin"
    display_name: str | None = Field(None, max_length=NAME_MAX)
    sender_email: str | None = Field(None, max_length=EMAIL_MAX, description="For provider=email: the sender address.")
    notify_email: str | None = Field(None, max_length=EMAIL_MAX, description="Where reconnect emails go.")
    hosted: bool = Field(False, description="Use the hosted authorisation link even in simulated mode.")
    return_url: str | None = Field(
        None,
        max_length=2000,
        description="Where the hosted authorisation page sends the user when it is done (e.g. the console's "
        "accounts page); the provider's success and failure redirect.",
    )

    _check_return = field_validator("return_url")(_return_url)

    @model_validator(mode="after")
    def _email_needs_sender(self) -> AccountIn:
        if self.provider == "email" and not (self.sender_email and "@" in self.sender_email):
            raise ValueError("an email sender account needs sender_email")
        return self


class ReconnectIn(_In):
    """Ask for a reconnect link (the provider's hosted page for an account that needs reconnecting)."""

    return_url: str | None = Field(None, max_length=2000, description="Where the hosted page sends the user back.")

    _check_return = field_validator("return_url")(_return_url)


class AccountsIn(_In):
    """The LinkedIn accounts a campaign sends from, replacing its current ones (resolves a campaign that
    needs review because its account was deleted)."""

    account_ids: list[UUID] = Field(min_length=1, max_length=50)


BlockKind = Literal["domain", "email", "profile_url"]
"""What a blocklist entry is; ``DELETE /v1/blocklist?kind=`` takes it too (another kind was a 404 there, as if the
entry were only missing, instead of a 422 naming ``kind``)."""


class BlockIn(_In):
    """A blocklist entry."""

    kind: BlockKind
    value: str = Field(min_length=1, max_length=URL_MAX)


class SuppressionIn(_In):
    """A manual suppression (a lead id or an address)."""

    kind: Literal["lead", "email"]
    value: str = Field(min_length=1, max_length=EMAIL_MAX)
    reason: Literal["unsubscribed", "bounced", "manual"] = "manual"


class SimulatedReplyIn(_In):
    """A reply recorded by hand (demo, or an inbox the provider does not watch)."""

    text: str | None = Field(None, max_length=4000)
    channel: Literal["message", "email", "invite"] = "message"


# -- provider webhooks (signed, read from the raw body: see api_webhooks.py) ----------------------------------------


class _Hook(BaseModel):
    # A provider adds fields of its own: they are ignored, not refused. The body as a whole is capped at the edge
    # (the signed routes' limit), which also bounds a reply's text: a reply is kept however long, never refused.
    model_config = ConfigDict(extra="ignore")


class LinkedInHookIn(_Hook):
    """A LinkedIn provider event: an acceptance or a reply, of a lead named by id, profile URL or email."""

    event: Annotated[str, Bound(CODE_MAX)] = ""
    account_id: Annotated[str, Bound(ID_MAX)] = ""
    lead_id: Annotated[str, Bound(ID_MAX)] | None = None
    user_profile_url: Annotated[str, Bound(URL_MAX)] | None = None
    profile_url: Annotated[str, Bound(URL_MAX)] | None = None
    linkedin_url: Annotated[str, Bound(URL_MAX)] | None = None
    email: Annotated[str, Bound(EMAIL_MAX)] | None = None
    sender: Annotated[str, Bound(EMAIL_MAX)] | None = Field(None, alias="from", description="The email, by its name.")
    text: str | None = None
    out_of_office: bool = False


class EmailHookIn(_Hook):
    """An email provider event: a reply, a bounce or a complaint about an address of a workspace."""

    type: Annotated[str, Bound(CODE_MAX)] = ""
    workspace_id: Annotated[str, Bound(ID_MAX)] = ""
    email: Annotated[str, Bound(EMAIL_MAX)] | None = None
    text: str | None = None


class AccountCallbackIn(_Hook):
    """A provider's word that a hosted connection (or a sender verification) finished (Unipile style): our account
    id as ``name`` (or ``account_ref``), its status, the provider's own id of the account and, for a refusal, why.
    """

    name: Annotated[str, Bound(ID_MAX)] | None = None
    account_ref: Annotated[str, Bound(ID_MAX)] | None = None
    status: Annotated[str, Bound(CODE_MAX)] | None = None
    account_id: Annotated[str, Bound(ID_MAX)] | None = None
    # A refusal's reason is kept (cut to its column's 300 characters), never refused for its length.
    detail: str | None = None
    reason: str | None = None


class _AccountStatusIn(_Hook):
    account_id: Annotated[str, Bound(ID_MAX)] = ""
    status: Annotated[str, Bound(CODE_MAX)] | None = None
    message: Annotated[str, Bound(CODE_MAX)] | None = None


class AccountStatusHookIn(_AccountStatusIn):
    """An account's status from the LinkedIn provider, ``{"account_id", "status"}`` or Unipile's nested
    ``{"AccountStatus": {"account_id", "message"}}`` (the nested one wins when both are there)."""

    nested: _AccountStatusIn | None = Field(None, alias="AccountStatus")

    @property
    def inner(self) -> _AccountStatusIn:
        """The part that names the account and its status."""
        return self.nested if self.nested is not None else self


# -- answers ----------------------------------------------------------------------------------------------------


def _iso(value: datetime) -> str:
    return value.isoformat()


Timestamp = Annotated[
    datetime,
    PlainSerializer(_iso, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
"""A time in an answer, as Python's ISO 8601 (``2026-01-05T06:00:00+00:00``): what these answers carried before
they were typed, kept so that no client sees another spelling (pydantic's own would end in ``Z``)."""


def _absent(value: object) -> bool:
    return value is None


def _only(description: str) -> Any:
    """A field that only some answers have (a step field of some actions, a webhook answer's): absent, not null,
    on the others, as before these answers were typed (its type is ``X | SkipJsonSchema[None]``: the document
    says X, never null)."""
    return Field(None, exclude_if=_absent, description=description)


class _Out(BaseModel):
    model_config = ConfigDict(extra="ignore")


class VariantOut(_Out):
    """One A/B variant of a step's text: its own template (and an email's subject and body)."""

    id: str
    template: str | None = None
    subject: str | None = None
    body: str | None = None


class StepOut(_Out):
    """One step of a validated workflow, as stored (``domain.workflow.Step.to_dict``): ``needs_text`` says whether
    the step sends a text that is written (and approved) first, ``channel`` that text's channel. The other fields
    are sent only for the actions that have them."""

    id: str
    action: StepAction
    needs_text: bool
    channel: Channel | None = None
    note: bool | SkipJsonSchema[None] = _only("Invites: the invite carries a note.")
    accept_timeout_hours: int | SkipJsonSchema[None] = _only(
        "Invites: hours until an invite not accepted takes its not_accepted edge."
    )
    mode: Literal["auto", "draft"] | SkipJsonSchema[None] = _only(
        "Comments: draft (approved in the Messaging Lab first) or auto."
    )
    subject: str | SkipJsonSchema[None] = _only("Emails: the subject (the email fallback's when the step has none).")
    body: str | SkipJsonSchema[None] = _only("Emails: the body (the email fallback's when the step has none).")
    template: str | SkipJsonSchema[None] = _only("The messaging template of the step's text, when it names one.")
    variants: list[VariantOut] | SkipJsonSchema[None] = _only("The step's A/B variants of its text, when it has some.")


class EdgeOut(_Out):
    """``to`` follows ``from`` under ``condition``, ``delay_minutes`` after ``from`` completed (for ``accepted``:
    after the acceptance; for ``not_accepted``: after the invite's accept timeout)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True, serialize_by_alias=True)

    source: str = Field(alias="from")
    target: str = Field(alias="to")
    condition: EdgeCondition
    delay_minutes: int


class GraphOut(_Out):
    """A validated workflow graph (``domain.workflow.Graph.to_dict``): where it starts, its steps and edges,
    what validation removed (``warnings``) and the steps that can never run (``unreachable``)."""

    preset: str | None = Field(None, description="The preset it was made from; null for a custom graph.")
    start: str
    steps: list[StepOut]
    edges: list[EdgeOut]
    warnings: list[str]
    unreachable: list[str]


class PresetOut(_Out):
    """A documented preset workflow and its graph (with an invite note, without the email fallback)."""

    name: str
    title: str
    description: str
    graph: GraphOut


class CheckedWorkflowOut(_Out):
    """The validated graph of a preset with options: what a campaign with this workflow would run."""

    graph: GraphOut


class AudienceOut(_Out):
    """Who a campaign targets."""

    type: Literal["source_group", "saved_search", "linkedin_url"]
    ref: str = Field(description="Source group id, saved search id, or a LinkedIn search URL.")


class CampaignOut(_Out):
    """A campaign in a list: its audience, state, pace and next run."""

    campaign_id: UUID
    name: str
    state: str = Field(
        description="pending | prepared | scheduled | running | paused | finished | needs_review (deleted ones are "
        "not shown)."
    )
    message: str | None = Field(description="What needs a person (a campaign that needs review).")
    pause_reason: str | None = Field(description="user | account (its accounts need reconnecting), when paused.")
    audience: AudienceOut
    audience_type: str = Field(description="The audience's type (as in ``audience``).")
    pace: str | None = Field(description="The pace in words, e.g. 'Recommended: 20 invites per day'.")
    next_run_at: Timestamp | None = Field(
        description="A scheduled campaign's start, a running one's next step; null otherwise."
    )
    account_ids: list[UUID]
    created_at: Timestamp


class WorkerOut(_Out):
    """A campaign's worker on one of its accounts."""

    worker_id: UUID
    account_id: UUID
    state: str = Field(description="active | paused_account (its account needs reconnecting) | stopped")


class LeadCountsOut(_Out):
    """The campaign's enrolled leads: all of them, and as many more counts as their states (``active``,
    ``prepared``, ``completed``, ``stopped``, ...; a state no lead is in is left out)."""

    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, int] = Field(init=False)

    enrolled: int


class DraftCountsOut(_Out):
    """The drafts of the leads still in the sequence: waiting in the Messaging Lab (``generated``) and approved
    (what the steps will send)."""

    generated: int
    approved: int


class CampaignDetailOut(CampaignOut):
    """A campaign in detail: its workflow (and version), strategy, delivery, video, workers and counts."""

    workflow: GraphOut
    workflow_version: int = Field(description="Grows with each edit of the workflow; leads run on their own.")
    warnings: list[str] = Field(description="What validation removed from the workflow.")
    strategy: Strategy
    delivery: Delivery
    video: VideoIn | None = Field(description="The personalised video template, as it was given.")
    skipped_accounts: dict[str, str] = Field(description="Account id -> why it does not send (inactive, deleted).")
    workers: list[WorkerOut]
    leads: LeadCountsOut
    drafts: DraftCountsOut
    sent: dict[str, int] = Field(description="Actions done for real (not dry runs), by action: invite, message, ...")
    launched_at: Timestamp | None


class PlanAccountOut(_Out):
    """An account of a campaign in its launch plan: whether it sends (else why not) and how many leads it gets."""

    account_id: UUID
    name: str | None = Field(description="Its display name; null when the account is gone.")
    active: bool
    reason: str | None = Field(description="Why it is skipped (null when it sends).")
    leads: int


class PlanLeadOut(_Out):
    """Where one lead of the audience goes: its account, or why it waits or is skipped."""

    lead_id: UUID
    name: str | None
    company: str | None
    account_id: UUID | None = Field(description="The account that will send to it; null for a duplicate.")
    status: Literal["ready", "waiting", "duplicate"] = Field(
        description="ready | waiting (for enrichment) | duplicate (active in another campaign: skipped)"
    )
    detail: str | None


class PlanCountsOut(_Out):
    """The audience's leads not enrolled yet: all, ready, waiting for enrichment, and duplicates (skipped)."""

    total: int
    ready: int
    waiting_enrichment: int
    duplicates: int


class LaunchPlanOut(_Out):
    """Where each lead will go if the campaign launches now: its accounts, the audience's counts, and the first
    leads by name with their account or why they wait or are skipped."""

    campaign_id: UUID
    state: str
    accounts: list[PlanAccountOut]
    leads: PlanCountsOut
    assignments: list[PlanLeadOut]
    audience_growing: bool = Field(description="The audience's searches are still finding leads.")


class EnrollmentOut(_Out):
    """A lead enrolled in a campaign: its account, state, steps done and the workflow version it runs on."""

    lead_id: UUID
    account_id: UUID
    state: str
    steps_done: int
    workflow_version: int
    accepted_at: Timestamp | None = Field(description="When it accepted the invite.")
    enrolled_at: Timestamp


class VerificationOut(_Out):
    """An email sender's verification: its status, when it was asked for and last checked, the provider's word."""

    status: Literal["pending", "verified", "failed"]
    requested_at: Timestamp | None
    checked_at: Timestamp | None
    detail: str | None


class AccountOut(_Out):
    """A connected account: a LinkedIn account or an email sender, its status and health."""

    email_dry_run: bool | None = Field(
        description="An email sender's emails are dry runs (only in lists; null for LinkedIn accounts and elsewhere)."
    )
    account_id: UUID
    provider: Literal["linkedin", "email"]
    display_name: str | None
    status: str = Field(
        description="pending | connected | ok | reconnected | sync_success | running | credentials | disconnected "
        "| auth_required | sleeping | message_limit_reached | failed (a sender's verification)"
    )
    healthy: bool = Field(description="The account can send.")
    sender_email: str | None
    sender_email_verified: bool
    incident: int = Field(description="How many times the account stopped being healthy (reconnect emails count).")
    limit_paused_until: Timestamp | None = Field(description="Sending paused until then (a provider's limit).")
    verification: VerificationOut | None = Field(description="An email sender's verification; null for LinkedIn.")
    created_at: Timestamp


class ConnectedAccountOut(AccountOut):
    """A new account: connected at once (201), or pending (202) until the user completes the hosted authorisation
    at ``auth_url`` or the sender's owner confirms the address."""

    auth_url: str | None = Field(description="The hosted authorisation page (a pending LinkedIn account).")


class ReconnectEmailOut(_Out):
    """A reconnect email sent for an account (one per incident)."""

    incident: int
    to: str
    status: str = Field(description="The status change that sent it, e.g. 'connected->credentials'.")
    dry_run: bool
    sent_at: Timestamp


class AccountDetailOut(AccountOut):
    """One account, with the campaigns that hold its lease and the reconnect emails sent for it."""

    leases: list[UUID] = Field(description="The campaigns holding a lease on the account.")
    reconnect_emails: list[ReconnectEmailOut]


class AuthLinkOut(_Out):
    """A hosted authorisation link that reconnects a LinkedIn account."""

    account_id: UUID
    auth_url: str


class SenderConfirmedOut(_Out):
    """An email sender confirmed by its owner through outreach's link."""

    status: Literal["verified"]
    account_id: UUID
    sender_email: str


class WebhookAck(_Out):
    """What outreach answers a provider's signed webhook: what it did (``duplicate``: this delivery was already
    handled, nothing else is sent), and the fields of that outcome."""

    status: str = Field(
        description="duplicate | connected | verified | failed (account callbacks); an account status (status "
        "webhook); replied | accepted (LinkedIn); suppressed | replied (email)"
    )
    account_id: UUID | SkipJsonSchema[None] = _only("The account it concerned (account callbacks and status).")
    changed: bool | SkipJsonSchema[None] = _only("Account status: whether the status changed.")
    campaigns: list[UUID] | SkipJsonSchema[None] = _only("Replies and acceptances: the campaigns it applied to.")
    reason: str | SkipJsonSchema[None] = _only("Email suppressions: bounced | unsubscribed.")


class ReplyOut(_Out):
    """A reply recorded by hand: the campaigns whose sequence it stopped for the lead."""

    status: Literal["replied"]
    campaigns: list[UUID]
