"""Request bodies of the outreach API. Out-of-range values are 422s whose message names the range; every
string and list has a maximum (``leadstream_schemas.bounds``), the strategy's are the contract's own."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from uuid import UUID

from leadstream_schemas import Strategy
from leadstream_schemas.bounds import (
    BODY_MAX,
    DETAIL_MAX,
    EMAIL_MAX,
    LINE_MAX,
    MAX_BYTES_KEYWORD,
    NAME_MAX,
    URL_MAX,
    Bound,
    FreeJson,
    find_unstorable,
)
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

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


class BlockIn(_In):
    """A blocklist entry."""

    kind: Literal["domain", "email", "profile_url"]
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
