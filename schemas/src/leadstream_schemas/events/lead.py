"""Lead lifecycle events, all on ``leadstream.lead.v1`` keyed by ``lead_id`` (per-lead order)."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, ClassVar, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from ..base import Event, register
from ..bounds import Body, Bound, Code, Detail, Email, Id, Line, Name, Url
from ..topics import LEAD


class _Part(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class LeadEvent(Event):
    """Base of lead events: keyed by lead id; ``campaign_id`` is set when the fact belongs to a campaign."""

    topic: ClassVar[str] = LEAD.name
    key_field: ClassVar[str] = "lead_id"

    lead_id: UUID
    campaign_id: UUID | None = None


class LeadSource(StrEnum):
    """Where a lead was found."""

    search = "search"
    signals = "signals"
    posts = "posts"
    linkedin_url = "linkedin_url"
    csv = "csv"
    manual = "manual"


class Channel(StrEnum):
    """A delivery channel or message kind."""

    invite = "invite"
    message = "message"
    email = "email"
    comment = "comment"


class Action(StrEnum):
    """A workflow action kind."""

    comment = "comment"
    like = "like"
    invite = "invite"
    message = "message"
    email = "email"


class SkipReason(StrEnum):
    """Why an action was not performed. Stable codes; downstream systems switch on them."""

    blocked = "blocked"
    suppressed = "suppressed"
    dry_run = "dry_run"
    no_contact = "no_contact"
    duplicate = "duplicate"
    limit_reached = "limit_reached"
    replied = "replied"
    already_connected = "already_connected"
    not_accepted = "not_accepted"
    video_timeout = "video_timeout"
    campaign_stopped = "campaign_stopped"
    no_post = "no_post"
    company_replied = "company_replied"


class FitSignal(_Part):
    """Why a lead matched a search (e.g. kind=hiring, detail='Hiring 3 SDRs')."""

    kind: Code
    detail: Detail
    observed_on: date | None = None


@register
class LeadDiscovered(LeadEvent):
    """A new lead was found for a workspace by a search, import or manual add.

    Emitted once per lead per workspace: the lead id is deterministic (uuid5 of the normalised
    LinkedIn URL, else the normalised email), so a second sighting is a duplicate and not re-emitted.
    """

    event_type: ClassVar[str] = "leadstream.lead.discovered.v1"
    personal: ClassVar[tuple[str, ...]] = ("linkedin_url", "email", "full_name", "first_name", "last_name", "location")

    source: LeadSource
    search_id: UUID | None = None
    source_group_id: UUID | None = None
    linkedin_url: Url | None = None
    email: Email | None = None
    full_name: Name | None = None
    first_name: Name | None = None
    last_name: Name | None = None
    title: Name | None = None
    company: Name | None = None
    location: Name | None = None
    fit_signals: Annotated[list[FitSignal], Bound(20)] = Field(default_factory=list)
    enrichment: Literal["automatic", "on_selection"] = Field(
        "automatic",
        description="The source group's enrichment setting: ``on_selection`` leads are enriched only once "
        "someone selects them (``LeadEnrichmentRequested``); absent in events written before it existed.",
    )


@register
class LeadEnrichmentRequested(LeadEvent):
    """Enrichment of a known lead was asked for: someone selected it in a source group that enriches on
    selection, or it joined (or its group switched to) a group that enriches automatically.

    Emitted at most once per lead by discovery; enrichment enriches the lead as if just discovered.
    """

    event_type: ClassVar[str] = "leadstream.lead.enrichment_requested.v1"

    source_group_id: UUID | None = None
    reason: Literal["selected", "automatic"] = "selected"


@register
class LeadAddedToSourceGroup(LeadEvent):
    """A lead the workspace already knew was found again and joined another source group.

    ``LeadDiscovered`` is emitted once per lead; this event tells audience consumers (outreach)
    that a known lead now also belongs to ``source_group_id``.
    """

    event_type: ClassVar[str] = "leadstream.lead.added_to_source_group.v1"

    source_group_id: UUID
    search_id: UUID | None = None
    source: LeadSource


class Post(_Part):
    """A recent post or article by the lead."""

    text: Body
    topic: Name | None = None
    posted_on: date | None = None
    url: Url | None = None
    kind: Literal["post", "article"] = "post"


class Position(_Part):
    """One entry of a lead's work history (``ended_on`` None means current)."""

    title: Name
    company: Name
    started_on: date | None = None
    ended_on: date | None = None


class CompanyMilestone(_Part):
    """A company event usable as a hook: funding, hiring, expansion, news."""

    kind: Literal["funding", "hiring", "expansion", "news", "launch", "other"]
    detail: Detail
    occurred_on: date | None = None


@register
class LeadProfileEnriched(LeadEvent):
    """Profile data was found for a lead (name, role, company, posts, history, skills)."""

    event_type: ClassVar[str] = "leadstream.lead.profile_enriched.v1"
    personal: ClassVar[tuple[str, ...]] = (
        "full_name",
        "first_name",
        "last_name",
        "headline",
        "city",
        "linkedin_url",
        "recent_posts.*.text",
        "recent_posts.*.url",
    )

    full_name: Name
    first_name: Name | None = None
    last_name: Name | None = None
    headline: Line | None = None
    role: Name | None = None
    company_name: Name | None = None
    company_size: Code | None = None
    company_industry: Name | None = None
    city: Name | None = None
    linkedin_url: Url | None = None
    recent_posts: Annotated[list[Post], Bound(50)] = Field(default_factory=list)
    work_history: Annotated[list[Position], Bound(50)] = Field(default_factory=list)
    skills: Annotated[list[Name], Bound(100)] = Field(default_factory=list)
    company_milestones: Annotated[list[CompanyMilestone], Bound(50)] = Field(default_factory=list)
    provider: Code = "simulated"


@register
class LeadPostMatched(LeadEvent):
    """A post by the lead, found by a posts watch, matched its intent or pain language.

    The post is the hook of the lead's messages (and the post a like or comment step answers); the lead
    joins the watch's source group, so running campaigns on that audience take it up.
    """

    event_type: ClassVar[str] = "leadstream.lead.post_matched.v1"
    personal: ClassVar[tuple[str, ...]] = ("post.text", "post.url")

    source_group_id: UUID
    search_id: UUID | None = None
    post: Post
    language: Literal["intent", "pain"]
    matched: Annotated[list[Annotated[str, Bound(200)]], Bound(40)] = Field(default_factory=list)
    source: Literal["posts", "web"] = "posts"


@register
class LeadEmailEnriched(LeadEvent):
    """A verified email address was found for the lead (only verified addresses are emitted)."""

    event_type: ClassVar[str] = "leadstream.lead.email_enriched.v1"
    personal: ClassVar[tuple[str, ...]] = ("email",)

    email: Email
    status: Literal["verified"] = "verified"
    provider: Code = "simulated"


@register
class LeadEmailNotFound(LeadEvent):
    """No usable email: none found, or the one found was risky or invalid (``reason`` says which)."""

    event_type: ClassVar[str] = "leadstream.lead.email_not_found.v1"

    reason: Literal["not_found", "risky", "invalid", "provider_error"]
    detail: Detail | None = None
    provider: Code = "simulated"


@register
class LeadEnrichmentFailed(LeadEvent):
    """Enrichment failed permanently for one stage; the lead continues with what is known."""

    event_type: ClassVar[str] = "leadstream.lead.enrichment_failed.v1"
    personal: ClassVar[tuple[str, ...]] = ("detail",)  # a provider's words, which may name the person

    stage: Literal["profile", "email"]
    reason: Code
    detail: Detail | None = None


class Hook(_Part):
    """The personalisation hook a message is built on, and why it was chosen."""

    kind: Literal["recent_post", "career_move", "company_milestone", "role_company"]
    detail: Detail
    reason: Detail
    fallback: bool = False


@register
class MessageGenerated(LeadEvent):
    """A draft (invite note, message, email or comment) was written for a lead in a campaign (``variant``: with
    the A/B variant of its step the lead got)."""

    event_type: ClassVar[str] = "leadstream.lead.message_generated.v1"
    personal: ClassVar[tuple[str, ...]] = ("text", "subject", "hook.detail", "hook.reason")

    draft_id: UUID
    channel: Channel
    step_id: Id | None = None
    text: Body
    subject: Line | None = None
    hook: Hook
    template: Id | None = None
    char_limit: int | None = None
    needs_review: bool = False
    generator: Code = "simulated"
    variant: Code | None = None


@register
class MessageApproved(LeadEvent):
    """A reviewer approved a draft in the Messaging Lab (or auto-approval applied)."""

    event_type: ClassVar[str] = "leadstream.lead.message_approved.v1"
    personal: ClassVar[tuple[str, ...]] = ("text", "subject")

    draft_id: UUID
    channel: Channel
    step_id: Id | None = None
    text: Body
    subject: Line | None = None
    auto: bool = False


@register
class MessageEdited(LeadEvent):
    """A reviewer edited a draft; the edited text is checked against the channel's limit."""

    event_type: ClassVar[str] = "leadstream.lead.message_edited.v1"
    personal: ClassVar[tuple[str, ...]] = ("text", "subject")

    draft_id: UUID
    channel: Channel
    step_id: Id | None = None
    text: Body
    subject: Line | None = None


@register
class MessageRejected(LeadEvent):
    """A reviewer rejected a draft; a new draft is generated in its place."""

    event_type: ClassVar[str] = "leadstream.lead.message_rejected.v1"
    personal: ClassVar[tuple[str, ...]] = ("reason",)  # the reviewer's words about the draft for this person

    draft_id: UUID
    channel: Channel
    step_id: Id | None = None
    reason: Line | None = None


@register
class LeadEnrolled(LeadEvent):
    """The lead entered a campaign's outreach sequence on one account; its drafts are written from now on.

    ``variants``: the A/B variant the lead gets of each step that has variants (step id -> variant id),
    assigned deterministically; the drafts are written with it and the sends name it.

    ``prepared``: the campaign was prepared for review, so the sequence starts only when it is launched. The
    lead is *Outreach Active* once its first step is performed, not at enrolment.
    """

    event_type: ClassVar[str] = "leadstream.lead.enrolled.v1"

    account_id: UUID
    workflow_preset: Id | None = None
    video_template_id: Id | None = None
    prepared: bool = False
    workflow_version: int | None = None
    variants: Annotated[dict[Id, Code], Bound(50)] = Field(default_factory=dict)


@register
class VideoRequested(LeadEvent):
    """A personalised video was requested before the lead's first action."""

    event_type: ClassVar[str] = "leadstream.lead.video_requested.v1"
    personal: ClassVar[tuple[str, ...]] = ("variables.*",)

    video_job_id: UUID
    template_id: Id
    variables: Annotated[dict[Id, Detail], Bound(50)] = Field(default_factory=dict)
    fallbacks_used: Annotated[list[Id], Bound(50)] = Field(default_factory=list)


@register
class VideoGenerated(LeadEvent):
    """The video provider delivered the lead's video (signed callback)."""

    event_type: ClassVar[str] = "leadstream.lead.video_generated.v1"
    # A video rendered for this one person (their name, city, company on screen): its links are theirs (1.3.0).
    personal: ClassVar[tuple[str, ...]] = ("video_url", "thumbnail_url")

    video_job_id: UUID
    video_url: Url
    thumbnail_url: Url | None = None


@register
class VideoFailed(LeadEvent):
    """The video could not be delivered in time or failed; the workflow proceeds without it."""

    event_type: ClassVar[str] = "leadstream.lead.video_failed.v1"
    personal: ClassVar[tuple[str, ...]] = ("detail",)  # the studio's words, which may quote the video's variables

    video_job_id: UUID
    reason: Literal["timeout", "provider_error", "rejected"]
    detail: Detail | None = None


class _ActionEvent(LeadEvent):
    """Base of action facts performed from an account at a workflow step. ``workflow_version`` is the version of
    the campaign's sequence the lead runs (None: version 1, or not known, e.g. a reply outside a sequence);
    ``variant`` the step's A/B variant the lead got (None: the step has no variants)."""

    account_id: UUID | None = None
    step_id: Id | None = None
    workflow_version: int | None = None
    variant: Code | None = None


@register
class CommentDrafted(_ActionEvent):
    """A comment on the lead's post was drafted (awaiting approval in 'draft for approval' mode)."""

    event_type: ClassVar[str] = "leadstream.lead.comment_drafted.v1"
    personal: ClassVar[tuple[str, ...]] = ("post_url", "text")

    post_url: Url
    text: Body


@register
class CommentPosted(_ActionEvent):
    """A comment was posted on the lead's post."""

    event_type: ClassVar[str] = "leadstream.lead.comment_posted.v1"
    personal: ClassVar[tuple[str, ...]] = ("post_url", "text")

    post_url: Url
    text: Body


@register
class PostLiked(_ActionEvent):
    """The lead's post was liked."""

    event_type: ClassVar[str] = "leadstream.lead.post_liked.v1"
    personal: ClassVar[tuple[str, ...]] = ("post_url",)

    post_url: Url


@register
class InviteSent(_ActionEvent):
    """A connection invite was sent, with or without a note (and a video link)."""

    event_type: ClassVar[str] = "leadstream.lead.invite_sent.v1"
    personal: ClassVar[tuple[str, ...]] = ("note", "video_url")  # the lead's own video's link (1.3.0)

    note: Line | None = None
    video_url: Url | None = None


@register
class InviteAccepted(_ActionEvent):
    """The lead accepted the connection invite."""

    event_type: ClassVar[str] = "leadstream.lead.invite_accepted.v1"


@register
class MessageSent(_ActionEvent):
    """A LinkedIn message was sent to the lead."""

    event_type: ClassVar[str] = "leadstream.lead.message_sent.v1"
    personal: ClassVar[tuple[str, ...]] = ("text", "video_url")  # the lead's own video's link (1.3.0)

    text: Body
    video_url: Url | None = None


@register
class EmailSent(_ActionEvent):
    """An email was sent to the lead (always with a one-click unsubscribe link)."""

    event_type: ClassVar[str] = "leadstream.lead.email_sent.v1"
    personal: ClassVar[tuple[str, ...]] = ("to", "subject", "body")

    to: Email
    subject: Line
    body: Body
    unsubscribe_url: Url
    provider_message_id: Line | None = None


@register
class ActionSkipped(_ActionEvent):
    """An action was deliberately not performed; ``reason`` is a stable code.

    For a dry-run email, ``rendered`` holds the full email that would have been sent.
    """

    event_type: ClassVar[str] = "leadstream.lead.action_skipped.v1"
    # detail: e.g. the blocklist or suppression entry that matched the lead's address or profile
    personal: ClassVar[tuple[str, ...]] = ("detail", "rendered.*")

    action: Action
    reason: SkipReason
    detail: Detail | None = None
    rendered: Annotated[dict[Code, Body], Bound(10)] | None = None


@register
class ActionFailed(_ActionEvent):
    """An action failed at the provider; ``retryable`` says whether it will be tried again.

    ``reason`` is a stable code: ``provider_error`` (the provider refused, or kept failing),
    ``rate_limited`` (refused for too long), ``internal_error`` (a bug kept it from running), or
    ``outcome_unknown``: the provider's answer to the send was lost and the provider cannot be asked
    (e.g. SMTP), so it may or may not have reached the lead; it is never sent again.
    """

    event_type: ClassVar[str] = "leadstream.lead.action_failed.v1"
    personal: ClassVar[tuple[str, ...]] = ("detail",)  # a provider's words, e.g. a bounce quoting the address

    action: Action
    reason: Code
    detail: Detail | None = None
    retryable: bool = False


@register
class Replied(_ActionEvent):
    """The lead replied; every pending step for the lead is cancelled."""

    event_type: ClassVar[str] = "leadstream.lead.replied.v1"
    personal: ClassVar[tuple[str, ...]] = ("excerpt",)

    channel: Channel
    received_at: datetime
    excerpt: Detail | None = None
    out_of_office: bool = False


@register
class LeadPaused(LeadEvent):
    """The lead's sequence waits: an out-of-office answer said when they are back (``return_on``, when it
    said so), so nothing is sent before ``until``; then it goes on (``LeadResumed``)."""

    event_type: ClassVar[str] = "leadstream.lead.paused.v1"
    personal: ClassVar[tuple[str, ...]] = ("excerpt",)

    account_id: UUID | None = None
    reason: Literal["out_of_office"] = "out_of_office"
    until: datetime
    return_on: date | None = None
    channel: Channel | None = None
    excerpt: Annotated[str, Bound(280)] | None = None


@register
class LeadResumed(LeadEvent):
    """A paused lead's sequence goes on (its out-of-office return date came)."""

    event_type: ClassVar[str] = "leadstream.lead.resumed.v1"

    account_id: UUID | None = None
    reason: Literal["out_of_office_over"] = "out_of_office_over"


@register
class LeadCompleted(LeadEvent):
    """The lead finished every step of the campaign without replying."""

    event_type: ClassVar[str] = "leadstream.lead.completed.v1"

    steps_done: int = 0


@register
class LeadUnsubscribed(LeadEvent):
    """The lead unsubscribed (one-click link or manual); suppressed on every channel."""

    event_type: ClassVar[str] = "leadstream.lead.unsubscribed.v1"

    via: Literal["one_click", "link", "manual", "reply"] = "one_click"


@register
class LeadErased(LeadEvent):
    """The lead's personal data was erased (crypto-shredding): their data key is destroyed.

    Every earlier event about the lead keeps its place on the log and its non-personal fields; readers that
    go through the key store show ``[erased]`` at every personal path (:mod:`leadstream_schemas.personal`).
    Views and stores that copied personal fields blank them when they read this event. Emitted once per
    workspace and lead (its id is derived from both).
    """

    event_type: ClassVar[str] = "leadstream.lead.erased.v1"

    via: Literal["api", "cli"] = "api"
