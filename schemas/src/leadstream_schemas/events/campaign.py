"""Campaign lifecycle events on ``leadstream.campaign.v1`` keyed by ``campaign_id``."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from ..base import Event, register
from ..topics import CAMPAIGN


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
    ref: str


class Strategy(_Part):
    """The messaging strategy profile: what is offered, the proof, the tone and the call to action."""

    offer: str = ""
    proof: str = ""
    tone: str = "friendly"
    call_to_action: str = ""
    template: str | None = None
    review: bool = False
    invite_note: bool = True
    personalise: bool = True
    """Light personalisation: rephrase each text slightly per recipient (off: every lead gets the same wording)."""


@register
class CampaignCreated(CampaignEvent):
    """A campaign was created (state pending). Carries what other services need to act on it."""

    event_type: ClassVar[str] = "leadstream.campaign.created.v1"

    name: str
    audience: Audience
    workflow: dict[str, Any] = Field(default_factory=dict)
    strategy: Strategy = Field(default_factory=Strategy)
    delivery: dict[str, Any] = Field(default_factory=dict)
    account_ids: list[UUID] = Field(default_factory=list)
    video_template_id: str | None = None
    video_template: dict[str, Any] | None = None
    parent_campaign_id: UUID | None = None


@register
class CampaignScheduled(CampaignEvent):
    """The campaign was launched but waits for its first active window."""

    event_type: ClassVar[str] = "leadstream.campaign.scheduled.v1"

    next_run_at: datetime


@register
class CampaignLaunched(CampaignEvent):
    """The campaign started running on the listed accounts (skipped ones named with the reason)."""

    event_type: ClassVar[str] = "leadstream.campaign.launched.v1"

    account_ids: list[UUID] = Field(default_factory=list)
    skipped_accounts: dict[str, str] = Field(default_factory=dict)


@register
class CampaignPaused(CampaignEvent):
    """The campaign was paused by a user or because an account needs reconnecting."""

    event_type: ClassVar[str] = "leadstream.campaign.paused.v1"

    reason: str = "user"


@register
class CampaignResumed(CampaignEvent):
    """A paused campaign runs again."""

    event_type: ClassVar[str] = "leadstream.campaign.resumed.v1"

    reason: str = "user"


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

    message: str
