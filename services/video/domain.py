"""Video's pure logic: templates, variable mapping with fallbacks, deadlines and callback decisions. No I/O."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal
from uuid import UUID

from leadstream_schemas import LeadProfileEnriched, VideoSettings
from leadstream_schemas.bounds import DETAIL_MAX, ID_MAX, URL_MAX, scrub
from leadstream_schemas.personal import ERASED

FIELDS: tuple[str, ...] = ("first_name", "last_name", "city", "headline")
DEFAULT_FALLBACKS: dict[str, str] = {"first_name": "there", "last_name": "", "city": "your city", "headline": "you"}
JOB_NAMESPACE = uuid.UUID("5d0c3a8e-7f4b-5e21-8a6d-3c9b1e4f7a20")


@dataclass(frozen=True)
class Segment:
    """One personalised segment of a video template, filled from a lead field (or its fallback)."""

    name: str
    field: str
    fallback: str | None = None


@dataclass(frozen=True)
class VideoTemplate:
    """A campaign's video template: the studio's template id and its personalised segments."""

    template_id: str
    segments: tuple[Segment, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """Plain JSON for storage."""
        return {
            "template_id": self.template_id,
            "segments": [{"name": s.name, "field": s.field, "fallback": s.fallback} for s in self.segments],
        }


def template_of(video: VideoSettings | None) -> VideoTemplate | None:
    """The video template of a ``CampaignCreated`` (its typed ``video``); None when the campaign has no video."""
    if video is None:
        return None
    return VideoTemplate(video.template_id, tuple(Segment(s.name, s.field, s.fallback) for s in video.segments))


def parse_template(raw: Mapping[str, Any] | None, template_id: str | None = None) -> VideoTemplate | None:
    """A stored video template (:meth:`VideoTemplate.to_json`), read defensively; None when there is none.

    Malformed segments are skipped; a segment naming an unknown field always uses its fallback.
    """
    if raw is None and not template_id:
        return None
    raw = raw or {}
    tid = str(raw.get("template_id") or template_id or "default")
    segments = []
    for item in raw.get("segments") or []:
        if not isinstance(item, Mapping):
            continue
        field = str(item.get("field") or "").strip()
        name = str(item.get("name") or item.get("variable") or field).strip()
        if not name:
            continue
        fallback = item.get("fallback")
        segments.append(Segment(name, field, str(fallback) if fallback is not None else None))
    return VideoTemplate(tid, tuple(segments))


def lead_fields(profile: LeadProfileEnriched | None) -> dict[str, str | None]:
    """The lead fields a segment can use (None where the profile lacks them)."""
    if profile is None:
        return dict.fromkeys(FIELDS)
    parts = profile.full_name.split(" ", 1) if profile.full_name else []
    headline = profile.headline
    if not headline and profile.role:
        headline = f"{profile.role} at {profile.company_name}" if profile.company_name else profile.role
    return {
        "first_name": profile.first_name or (parts[0] if parts else None),
        "last_name": profile.last_name or (parts[1] if len(parts) > 1 else None),
        "city": profile.city,
        "headline": headline,
    }


def map_variables(template: VideoTemplate, fields: Mapping[str, str | None]) -> tuple[dict[str, str], list[str]]:
    """Each segment's value from the lead, or its fallback; returns (variables, names of segments that fell back)."""
    variables: dict[str, str] = {}
    fallbacks: list[str] = []
    for seg in template.segments:
        value = (fields.get(seg.field) or "").strip() if seg.field in FIELDS else ""
        if value:
            variables[seg.name] = value
            continue
        variables[seg.name] = seg.fallback if seg.fallback is not None else DEFAULT_FALLBACKS.get(seg.field, "")
        fallbacks.append(seg.name)
    return variables, fallbacks


def job_id(campaign_id: UUID, lead_id: UUID) -> UUID:
    """The video job of a lead in a campaign: one per pair, the same id however often it is computed."""
    return uuid.uuid5(JOB_NAMESPACE, f"{campaign_id}|{lead_id}")


def deadline(requested_at: datetime, timeout_s: float) -> datetime:
    """When a job without a callback fails with ``timeout``."""
    return requested_at + timedelta(seconds=timeout_s)


OPEN_STATUSES = ("queued", "rendering")


def is_due(status: str, deadline_at: datetime, now: datetime) -> bool:
    """True when a job is still waiting for its video and its deadline has passed."""
    return status in OPEN_STATUSES and deadline_at <= now


@dataclass(frozen=True)
class CallbackResult:
    """What a studio callback says about a render."""

    kind: Literal["completed", "failed"]
    provider_job_id: str | None
    external_id: UUID | None
    video_url: str | None = None
    thumbnail_url: str | None = None
    error: str | None = None
    rejected: bool = False
    """The render finished but what it returned is refused (a video link we will not send)."""


class CallbackError(ValueError):
    """A malformed studio callback, and the fields (dotted paths in its JSON; ``body``: the whole of it) at fault."""

    def __init__(self, message: str, *fields: str) -> None:
        super().__init__(message)
        self.fields = fields or ("body",)


def parse_callback(payload: Any) -> CallbackResult:
    """Read a studio callback (``{"type": "video.completed"|"video.failed", "data": {...}}``).

    Raises :class:`CallbackError` (a ValueError) naming the field when it is malformed.
    """
    if not isinstance(payload, Mapping):
        raise CallbackError("callback body must be a JSON object", "body")
    kind = str(payload.get("type") or payload.get("event") or "")
    data = payload.get("data")
    if not isinstance(data, Mapping):
        raise CallbackError("callback has no 'data' object", "data")
    provider_id = data.get("video_id") or data.get("id")
    if provider_id is not None and len(str(provider_id)) > ID_MAX:
        raise CallbackError(f"data.video_id is longer than {ID_MAX} characters", "data.video_id")
    external = data.get("external_id") or data.get("callback_id")
    ext_uuid = None
    if external is not None:
        try:
            ext_uuid = UUID(str(external))
        except ValueError:
            raise CallbackError(f"data.external_id is not a UUID: {external!r}", "data.external_id") from None
    if provider_id is None and ext_uuid is None:
        # Either names the video: both fields are reported, as the studio may send one or the other.
        raise CallbackError(
            "callback names no video (data.video_id or data.external_id)", "data.video_id", "data.external_id"
        )
    if kind in {"video.completed", "video.succeeded", "video.done"}:
        url = data.get("download_url") or data.get("url") or data.get("video_url")
        if not url:
            raise CallbackError("completed callback has no data.download_url", "data.download_url")
        thumbnail = _opt(data.get("thumbnail_url"))
        # A thumbnail the contract's VideoGenerated cannot carry (longer than a URL may be) is left out: the video
        # itself is fine, and refusing the callback would only make the studio send it again, for ever.
        if thumbnail is not None and len(thumbnail) > URL_MAX:
            thumbnail = None
        return CallbackResult("completed", _opt(provider_id), ext_uuid, str(url), thumbnail)
    if kind in {"video.failed", "video.error"}:
        err = data.get("error")
        detail = err.get("message") or err.get("code") if isinstance(err, Mapping) else err
        # The studio's own words, kept to the bound of VideoFailed.detail (and storable) rather than refused: the
        # failure is real however long its description is.
        return CallbackResult(
            "failed", _opt(provider_id), ext_uuid, error=scrub(str(detail or "render failed"))[:DETAIL_MAX]
        )
    raise CallbackError(f"unknown callback type {kind!r}", "type")


def _opt(value: Any) -> str | None:
    return str(value) if value is not None else None


LINK_KEYS = ("download_url", "url", "video_url", "thumbnail_url")
"""Where a studio callback's ``data`` carries the video's links (what :func:`parse_callback` reads)."""


def without_links(payload: Any) -> Any:
    """A stored callback body with the video's links ``[erased]`` (its lead was erased): the rest, ids and status
    and error, stays as the studio sent it."""
    if not isinstance(payload, Mapping) or not isinstance(payload.get("data"), Mapping):
        return payload
    data = {k: ERASED if k in LINK_KEYS and v is not None else v for k, v in payload["data"].items()}
    return {**payload, "data": data}


Decision = Literal["accept", "late", "duplicate", "erased"]


def callback_decision(status: str, failure_reason: str | None) -> Decision:
    """What a callback does to a job: the first outcome wins, a callback after the timeout is late, and nothing is
    accepted for a job whose lead was erased (its video is deleted at the studio)."""
    if status in OPEN_STATUSES:
        return "accept"
    if status == "erased":
        return "erased"
    if status == "failed" and failure_reason == "timeout":
        return "late"
    return "duplicate"
