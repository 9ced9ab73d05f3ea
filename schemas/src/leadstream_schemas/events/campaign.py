"""Campaign lifecycle events on ``leadstream.campaign.v1`` keyed by ``campaign_id``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from ..base import Event, register
from ..bounds import Bound, Code, Detail, FreeJson, Id, Line, Name, Url
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


@register
class CampaignCreated(CampaignEvent):
    """A campaign was created (state pending). Carries what other services need to act on it."""

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
    """A paused campaign runs again."""

    event_type: ClassVar[str] = "leadstream.campaign.resumed.v1"

    reason: Code = "user"


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
