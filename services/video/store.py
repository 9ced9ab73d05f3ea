"""Video's own tables (schema ``video``): campaigns, profiles, enrolments, jobs (durable timers), callbacks, and the
studio deletions of erased leads' videos (durable timers)."""

from __future__ import annotations

import hashlib

from sqlalchemy import BigInteger, Column, DateTime, Identity, Index, Integer, Table, Text, text
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.ext.asyncio import AsyncConnection

from services.runtime.db import service_metadata
from services.runtime.webhooks import seen_webhooks_table

SCHEMA = "video"
metadata, runtime_tables = service_metadata(SCHEMA)

campaigns = Table(
    "campaigns",
    metadata,
    Column("campaign_id", UUID(as_uuid=True), primary_key=True),
    Column("workspace_id", Text, nullable=False),
    Column("parent_campaign_id", UUID(as_uuid=True), nullable=True),
    Column("template", JSONB, nullable=True),  # None: not a video campaign
    Column("created_at", DateTime(timezone=True), nullable=False),
)

profiles = Table(
    "profiles",
    metadata,
    Column("lead_id", UUID(as_uuid=True), primary_key=True),
    Column("workspace_id", Text, nullable=False),
    Column("fields", JSONB, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

enrollments = Table(
    "enrollments",
    metadata,
    Column("campaign_id", UUID(as_uuid=True), primary_key=True),
    Column("lead_id", UUID(as_uuid=True), primary_key=True),
    Column("workspace_id", Text, nullable=False),
    Column("enrolled_at", DateTime(timezone=True), nullable=False),
)
Index("video_enrollments_lead", enrollments.c.lead_id)

# One row per requested video: its state, and the deadline the timer sweep enforces.
# status: queued (to submit) -> rendering (submitted) -> generated | failed; any of them -> erased when the lead is
# erased before its video came (nothing more is submitted or accepted for it; see ``deletions``)
jobs = Table(
    "jobs",
    metadata,
    Column("video_job_id", UUID(as_uuid=True), primary_key=True),
    Column("workspace_id", Text, nullable=False),
    Column("campaign_id", UUID(as_uuid=True), nullable=False),
    Column("lead_id", UUID(as_uuid=True), nullable=False),
    Column("template_id", Text, nullable=False),
    Column("variables", JSONB, nullable=False),
    Column("fallbacks_used", JSONB, nullable=False),
    Column("status", Text, nullable=False),
    Column("provider_job_id", Text, nullable=True),
    Column("video_url", Text, nullable=True),
    Column("thumbnail_url", Text, nullable=True),
    Column("failure_reason", Text, nullable=True),
    Column("failure_detail", Text, nullable=True),
    Column("submit_attempts", Integer, nullable=False, server_default="0"),
    Column("requested_at", DateTime(timezone=True), nullable=False),
    Column("deadline_at", DateTime(timezone=True), nullable=False),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),
    Column("completed_at", DateTime(timezone=True), nullable=True),
    Column("requested_event_id", UUID(as_uuid=True), nullable=False),
    Column("correlation_id", UUID(as_uuid=True), nullable=True),
    Column("traceparent", Text, nullable=True),  # of the handler that requested it: its work continues it (0002)
)
Index("video_jobs_lead", jobs.c.campaign_id, jobs.c.lead_id, unique=True)
Index("video_jobs_open", jobs.c.status, jobs.c.deadline_at)
Index("video_jobs_provider", jobs.c.provider_job_id)

# Every verified callback, including late and duplicate ones (what happened to it is ``outcome``).
callbacks = Table(
    "callbacks",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("msg_id", Text, nullable=False),
    Column("video_job_id", UUID(as_uuid=True), nullable=True, index=True),
    Column("outcome", Text, nullable=False),
    Column("payload", JSONB, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
)

seen_webhooks = seen_webhooks_table(metadata)

SERVICE_TABLES = (campaigns, profiles, enrollments, jobs, callbacks, seen_webhooks)  # what 0001 creates

# The videos of erased leads to delete at the studio, one row per job the studio was given (0003). Worked by the
# deletion loop outside any handler's transaction, retried with backoff; status: pending -> deleted | failed (the
# studio kept refusing: ``last_error`` says why, and a log line reported it).
deletions = Table(
    "deletions",
    metadata,
    Column("video_job_id", UUID(as_uuid=True), primary_key=True),
    Column("workspace_id", Text, nullable=False),
    Column("campaign_id", UUID(as_uuid=True), nullable=False),
    Column("lead_id", UUID(as_uuid=True), nullable=False),
    Column("provider_job_id", Text, nullable=False),  # the studio's video id
    Column("status", Text, nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),
    Column("requested_at", DateTime(timezone=True), nullable=False),
    Column("completed_at", DateTime(timezone=True), nullable=True),
    Column("last_error", Text, nullable=True),
    Column("traceparent", Text, nullable=True),  # of the LeadErased handler that asked for it
)
Index("video_deletions_due", deletions.c.status, deletions.c.next_attempt_at)


def _lock_key(kind: str, ident: object) -> int:
    digest = hashlib.sha256(f"{SCHEMA}:{kind}:{ident}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


async def lock_campaign(conn: AsyncConnection, campaign_id: object, *, shared: bool = False) -> None:
    """Serialise a campaign's creation (exclusive) against its enrolments (shared); taken before lead locks."""
    fn = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
    await conn.execute(text(f"SELECT {fn}(:k)"), {"k": _lock_key("campaign", campaign_id)})


async def lock_leads(conn: AsyncConnection, lead_ids: list[object]) -> None:
    """Serialise profile arrival against enrolment for these leads, in a fixed order."""
    for lead_id in sorted({str(x) for x in lead_ids}):
        await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _lock_key("lead", lead_id)})
