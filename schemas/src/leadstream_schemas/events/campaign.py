"""Campaign lifecycle events on ``leadstream.campaign.v1`` keyed by ``campaign_id``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from ..base import Event, register
from ..bounds import Body, Bound, Code, Detail, Email, FreeJson, Id, Line, Name, Url
from ..topics import CAMPAIGN
from .lead import Channel


class _Part(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class CampaignEvent(Event):
    """Base of campaign events."""

    topic: ClassVar[str] = CAMPAIGN.name
    key_field: ClassVar[str] = "campaign_id"

    campaign_id: UUID


class Audience(_Part):
    """Who a campaign targets: a source group, a saved search, or a LinkedIn search URL."""

    type: Literal["source_group", "saved_search", "linkedin_url"]
    ref: Url


class Strategy(_Part):
    """The messaging strategy profile: what is offered, the proof, the tone and the call to action."""

    offer: Detail = ""
    proof: Detail = ""
    tone: Code = "friendly"
    call_to_action: Line = ""
    template: Id | None = None
    review: bool = False
    invite_note: bool = True
    personalise: bool = True
    """Light personalisation: rephrase each text slightly per recipient (off: every lead gets the same wording)."""


# -- the campaign's sequence, delivery and video: typed parts of CampaignCreated (v2) and CampaignUpdated ---------

StepAction = Literal["comment", "like", "invite", "message", "email"]
"""What a workflow step does (the values of :class:`~leadstream_schemas.Action`)."""
EdgeCondition = Literal["always", "accepted", "not_accepted"]
"""When an edge's target follows its source: always, once the invite was accepted, or when it was not in time."""


class Variant(_Part):
    """One of a step's A/B message variants: its own template (and, for an email, subject and body).

    Outreach assigns each lead one variant of the step, deterministically, and names it in ``LeadEnrolled``;
    messaging writes the lead's text with the variant's template; the send events carry the variant's id.
    """

    id: Code
    template: Id | None = None
    subject: Line | None = None
    body: Body | None = None


class Step(_Part):
    """One action of a campaign's workflow.

    ``needs_text`` says whether the step sends a text that must be written (and approved) first; ``channel`` is
    that text's channel (None when it needs none). An invite has a text only with a ``note``. ``mode`` is a
    comment's review (``draft``: approved in the Messaging Lab first; ``auto``: posted as written). ``subject``
    and ``body`` are an email step's (from the email fallback settings). ``variants``: two or more A/B variants
    of the step's text, or none.
    """

    id: Id
    action: StepAction
    needs_text: bool = False
    channel: Channel | None = None
    note: bool = False
    mode: Literal["auto", "draft"] = "auto"
    accept_timeout_hours: int | None = None
    subject: Line | None = None
    body: Body | None = None
    template: Id | None = None
    variants: Annotated[list[Variant], Bound(10)] = Field(default_factory=list)


class Edge(_Part):
    """``target`` follows ``source`` under ``condition``, ``delay_minutes`` after the source completed (for
    ``accepted``: after the acceptance; for ``not_accepted``: after the invite's accept timeout)."""

    source: Id
    target: Id
    condition: EdgeCondition = "always"
    delay_minutes: int = 0


class Workflow(_Part):
    """A campaign's validated workflow graph: steps, edges, where it starts, and which version it is.

    ``preset`` is the preset it was made from (``warm_intro``, ``standard_connect``, ``direct_connect``,
    ``message_connected``), None for a custom graph. ``unreachable`` steps never run (and need no text);
    ``warnings`` say what validation removed. ``version`` starts at 1 and grows with each edit of a running
    campaign (``CampaignUpdated``); every lead records the version it runs on.
    """

    preset: Code | None = None
    version: int = 1
    start: Id
    steps: Annotated[list[Step], Bound(50)]
    edges: Annotated[list[Edge], Bound(200)] = Field(default_factory=list)
    warnings: Annotated[list[Detail], Bound(200)] = Field(default_factory=list)
    unreachable: Annotated[list[Id], Bound(50)] = Field(default_factory=list)

    def step(self, step_id: str) -> Step | None:
        """The step with this id, or None."""
        return next((s for s in self.steps if s.id == step_id), None)

    def text_steps(self) -> list[Step]:
        """The reachable steps that need a text, in definition order."""
        skip = set(self.unreachable)
        return [s for s in self.steps if s.needs_text and s.id not in skip]


class EmailFallback(_Part):
    """The email fallback: the verified sender an email step sends from, and its default subject and body."""

    sender_email: Email
    subject: Line = ""
    body: Body = ""


class Delivery(_Part):
    """How a campaign sends: pace and daily caps, active days and hours in its time zone, the email fallback.

    ``pace`` is ``conservative``, ``recommended``, ``high_volume`` or ``manual``; ``daily_cap`` the invites per
    day per account it allows (``weekly_limit`` for the conservative pace); ``daily_message_limit`` and
    ``daily_email_limit`` the messages per LinkedIn account and emails per mailbox per day. ``dry_run``: emails
    are rendered, not sent. ``lead_timezones``: active hours in each lead's own time zone;
    ``stop_company_on_reply``: a reply stops the campaign's other leads of the same company.
    """

    pace: Code = "recommended"
    pace_label: Line | None = None
    daily_limit: int | None = None
    daily_cap: int | None = None
    weekly_limit: int | None = None
    daily_message_limit: int | None = None
    daily_email_limit: int | None = None
    active_days: Annotated[list[Code], Bound(7)] = Field(default_factory=list)
    start_hour: int = 9
    end_hour: int = 17
    timezone: Code = "UTC"
    email_fallback: EmailFallback | None = None
    dry_run: bool = False
    lead_timezones: bool = False
    stop_company_on_reply: bool = False


class VideoSegment(_Part):
    """A segment of a personalised video: the variable ``name`` filled from the lead's ``field`` (first_name,
    last_name, city, headline), else ``fallback``."""

    name: Id
    field: Code = ""
    fallback: Detail | None = None


class VideoSettings(_Part):
    """A campaign's personalised video: the studio template and how its segments map to lead fields."""

    template_id: Id
    segments: Annotated[list[VideoSegment], Bound(50)] = Field(default_factory=list)


@register
class CampaignCreatedV1(CampaignEvent):
    """A campaign was created (version 1, history): ``workflow``, ``delivery`` and ``video_template`` were free-form.

    Kept registered so that its schema stays in the contract; :func:`leadstream_schemas.decode` reads a v1 record
    as :class:`CampaignCreated` (v2) through the upcaster in :mod:`leadstream_schemas.events.campaign_upcast`.
    """

    event_type: ClassVar[str] = "leadstream.campaign.created.v1"

    name: Name
    audience: Audience
    workflow: Annotated[dict[str, Any], FreeJson(max_properties=64, max_bytes=65_536)] = Field(default_factory=dict)
    strategy: Strategy = Field(default_factory=Strategy)
    delivery: Annotated[dict[str, Any], FreeJson(max_properties=64, max_bytes=65_536)] = Field(default_factory=dict)
    account_ids: Annotated[list[UUID], Bound(100)] = Field(default_factory=list)
    video_template_id: Id | None = None
    video_template: Annotated[dict[str, Any], FreeJson(max_properties=64, max_bytes=65_536)] | None = None
    parent_campaign_id: UUID | None = None


@register
class CampaignCreated(CampaignEvent):
    """A campaign was created (state pending). Carries what other services need to act on it, typed.

    ``workflow`` is the validated sequence (None only on a v1 record that carried no step list), ``delivery``
    the pace, window and email fallback, ``video`` the personalised video (None: no video). A worker campaign
    (``parent_campaign_id``) without a workflow of its own runs its parent's.
    """

    event_type: ClassVar[str] = "leadstream.campaign.created.v2"

    name: Name
    audience: Audience
    workflow: Workflow | None = None
    strategy: Strategy = Field(default_factory=Strategy)
    delivery: Delivery = Field(default_factory=Delivery)
    account_ids: Annotated[list[UUID], Bound(100)] = Field(default_factory=list)
    video: VideoSettings | None = None
    parent_campaign_id: UUID | None = None


@register
class CampaignPrepared(CampaignEvent):
    """The campaign was prepared for review before launch (state prepared): its audience was resolved and its
    ready leads enrolled in a ``prepared`` state (``LeadEnrolled.prepared``), so their drafts are written and can
    be reviewed in the Messaging Lab; nothing is sent until the campaign is launched."""

    event_type: ClassVar[str] = "leadstream.campaign.prepared.v1"

    account_ids: Annotated[list[UUID], Bound(100)] = Field(default_factory=list)
    skipped_accounts: Annotated[dict[Id, Detail], Bound(100)] = Field(default_factory=dict)
    leads: int = 0


@register
class CampaignUpdated(CampaignEvent):
    """The campaign's workflow was edited: ``workflow`` is its new version (``workflow.version``).

    Leads that had not started their sequence moved to it (``moved_leads``; each gets a new ``LeadEnrolled``
    with the version); the others finish on the version they run (``staying_leads``, counted when the edit
    was made). Leads enrolled from now on run the new version.
    """

    event_type: ClassVar[str] = "leadstream.campaign.updated.v1"

    workflow: Workflow
    moved_leads: int = 0
    staying_leads: int = 0


@register
class CampaignScheduled(CampaignEvent):
    """The campaign was launched but waits for its first active window."""

    event_type: ClassVar[str] = "leadstream.campaign.scheduled.v1"

    next_run_at: datetime


@register
class CampaignLaunched(CampaignEvent):
    """The campaign started running on the listed accounts (skipped ones named with the reason)."""

    event_type: ClassVar[str] = "leadstream.campaign.launched.v1"

    account_ids: Annotated[list[UUID], Bound(100)] = Field(default_factory=list)
    skipped_accounts: Annotated[dict[Id, Detail], Bound(100)] = Field(default_factory=dict)


@register
class CampaignPaused(CampaignEvent):
    """The campaign was paused by a user or because an account needs reconnecting."""

    event_type: ClassVar[str] = "leadstream.campaign.paused.v1"

    reason: Code = "user"


@register
class CampaignResumed(CampaignEvent):
    """A paused (or finished: ``reason`` resumed_finished, extended) campaign runs again."""

    event_type: ClassVar[str] = "leadstream.campaign.resumed.v1"

    reason: Code = "user"


@register
class CampaignAudienceRunRequested(CampaignEvent):
    """Two hours before an invite window of a running campaign: the searches feeding its audience look for
    new leads now (discovery runs them; outreach enrolls what they find in time for the window)."""

    event_type: ClassVar[str] = "leadstream.campaign.audience_run_requested.v1"

    audience: Audience
    window_start: datetime


@register
class CampaignExtended(CampaignEvent):
    """The campaign was extended: the searches feeding its audience may find ``additional_leads`` more new
    leads (a finished one runs again), and audience members not enrolled yet are enrolled."""

    event_type: ClassVar[str] = "leadstream.campaign.extended.v1"

    audience: Audience
    additional_leads: int = Field(ge=1, le=10_000)


@register
class CampaignFinished(CampaignEvent):
    """Every lead of the campaign replied or completed."""

    event_type: ClassVar[str] = "leadstream.campaign.finished.v1"


@register
class CampaignDeleted(CampaignEvent):
    """The campaign was deleted; its account leases are released."""

    event_type: ClassVar[str] = "leadstream.campaign.deleted.v1"


@register
class CampaignNeedsReview(CampaignEvent):
    """The campaign stopped on an error that needs a person; ``message`` says what."""

    event_type: ClassVar[str] = "leadstream.campaign.needs_review.v1"

    message: Detail
