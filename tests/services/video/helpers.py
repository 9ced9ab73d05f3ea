"""Builders of the events video consumes, and Kafka/HTTP helpers for the video tests."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from leadstream_schemas import (
    Audience,
    CampaignCreated,
    Envelope,
    Event,
    LeadEnrolled,
    LeadProfileEnriched,
    VideoSettings,
)

from services.outreach.domain.workflow import resolve_workflow
from services.runtime.auth import create_token
from services.runtime.service import Service
from services.runtime.webhooks import signed_headers
from tests.support.kafka import wait_for
from tests.support.personal import decode_opened

WS = "ws-video"
LEAD_TOPIC = "leadstream.lead.v1"
SEGMENTS = [
    {"name": "name", "field": "first_name", "fallback": "there"},
    {"name": "city", "field": "city", "fallback": "your city"},
    {"name": "role", "field": "headline", "fallback": "your team"},
]


def env(data: Event, workspace: str = WS) -> Envelope[Any]:
    """A root envelope as another service would produce it."""
    return Envelope.new(data, workspace_id=workspace, source="test")


def campaign(campaign_id: uuid.UUID, *, video: bool = True) -> CampaignCreated:
    """A campaign with (or without) a personalised video template."""
    return CampaignCreated(
        campaign_id=campaign_id,
        name="video campaign",
        audience=Audience(type="source_group", ref="sg-1"),
        workflow=resolve_workflow("standard_connect", default_note=True, email_fallback=False).to_model(),
        video=VideoSettings.model_validate({"template_id": "studio-tpl-7", "segments": SEGMENTS}) if video else None,
    )


def profile(lead_id: uuid.UUID, *, city: str | None) -> LeadProfileEnriched:
    """A lead's profile, with or without a city."""
    return LeadProfileEnriched(
        lead_id=lead_id,
        full_name="Ada Adler",
        first_name="Ada",
        last_name="Adler",
        headline="Head of Sales at Northwind Labs",
        city=city,
    )


def enrolled(lead_id: uuid.UUID, campaign_id: uuid.UUID) -> LeadEnrolled:
    """The lead entered the campaign."""
    return LeadEnrolled(lead_id=lead_id, campaign_id=campaign_id, account_id=uuid.uuid4())


def lead_events(records: list[ConsumerRecord[Any, Any]], lead_id: uuid.UUID, suffix: str) -> list[Envelope[Any]]:
    """The lead's decoded events whose type ends with ``suffix``."""
    key = str(lead_id).encode()
    out = []
    for r in records:
        if r.key == key:
            e = decode_opened(r.value, r.headers)
            if e.type.endswith(suffix):
                out.append(e)
    return out


async def read_to_end(bootstrap: str, topic: str, timeout_s: float = 60.0) -> list[ConsumerRecord[Any, Any]]:
    """Every record of ``topic`` up to its end offsets at the time of the call (so absence can be asserted)."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        records: list[ConsumerRecord[Any, Any]] = []
        deadline = time.monotonic() + timeout_s
        end: dict[TopicPartition, int] | None = None
        while True:
            if time.monotonic() > deadline:
                raise AssertionError(f"could not read {topic} to its end within {timeout_s}s")
            if end is None and consumer.assignment():
                end = await consumer.end_offsets(list(consumer.assignment()))
            if end is not None:
                positions = {tp: await consumer.position(tp) for tp in end}
                if all(positions[tp] >= end[tp] for tp in end):
                    return records
            batch = await consumer.getmany(timeout_ms=250)
            for recs in batch.values():
                records.extend(recs)
    finally:
        await consumer.stop()


async def outbox_drained(service: Service) -> None:
    """Wait until everything the service committed was published."""

    async def empty() -> bool:
        return await service.relay.backlog() == 0

    await wait_for(empty, timeout_s=30, what="empty outbox")


@asynccontextmanager
async def api(service: Service, workspace: str = WS) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of the service for a workspace."""
    token = await create_token(service.engine, workspace)
    transport = httpx.ASGITransport(app=service.app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://t", headers={"Authorization": f"Bearer {token}"}
    ) as client:
        yield client


async def job(client: httpx.AsyncClient, lead_id: uuid.UUID, campaign_id: uuid.UUID, status: str) -> dict[str, Any]:
    """Poll the job status API until the job has ``status``."""

    async def check() -> dict[str, Any] | None:
        r = await client.get(f"/v1/video/jobs/{lead_id}", params={"campaign_id": str(campaign_id)})
        return dict(r.json()) if r.status_code == 200 and r.json()["status"] == status else None

    return dict(await wait_for(check, timeout_s=60, what=f"video job {status}"))


def completed_callback(j: dict[str, Any], url: str = "https://videos.example/v.mp4") -> dict[str, Any]:
    """The studio's success callback for a job."""
    return {
        "type": "video.completed",
        "data": {
            "video_id": j["provider_job_id"],
            "external_id": j["video_job_id"],
            "status": "completed",
            "download_url": url,
            "thumbnail_url": url.replace(".mp4", ".jpg"),
        },
    }


def signed(
    secret: str, payload: dict[str, Any], msg_id: str | None = None, timestamp: int | None = None
) -> tuple[bytes, dict[str, str]]:
    """A body and its Standard-Webhooks headers."""
    body = json.dumps(payload).encode()
    ts = int(time.time()) if timestamp is None else timestamp
    headers = signed_headers(secret, msg_id or f"msg_{uuid.uuid4().hex}", ts, body)
    return body, {"content-type": "application/json", **headers}
