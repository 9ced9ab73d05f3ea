"""Messaging's own tables (schema ``messaging``) and the advisory locks that order its handlers."""

from __future__ import annotations

import hashlib

from sqlalchemy import Boolean, Column, DateTime, Index, Integer, Table, Text, text
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.ext.asyncio import AsyncConnection

from services.runtime.db import service_metadata

SCHEMA = "messaging"
metadata, runtime_tables = service_metadata(SCHEMA)

campaigns = Table(
    "campaigns",
    metadata,
    Column("campaign_id", UUID(as_uuid=True), primary_key=True),
    Column("workspace_id", Text, nullable=False, index=True),
    Column("name", Text, nullable=False, server_default=""),
    Column("parent_campaign_id", UUID(as_uuid=True), nullable=True),
    Column("strategy", JSONB, nullable=False),
    Column("workflow", JSONB, nullable=False),
    Column("steps", JSONB, nullable=False),  # the text steps of its newest workflow version
    Column("workflow_version", Integer, nullable=False, server_default="1"),
    Column("video", Boolean, nullable=False, server_default="false"),
    Column("delivery", JSONB, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

profiles = Table(
    "profiles",
    metadata,
    Column("lead_id", UUID(as_uuid=True), primary_key=True),
    Column("workspace_id", Text, nullable=False),
    Column("profile", JSONB, nullable=False),
    Column("failed", Boolean, nullable=False, server_default="false"),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

enrollments = Table(
    "enrollments",
    metadata,
    Column("campaign_id", UUID(as_uuid=True), primary_key=True),
    Column("lead_id", UUID(as_uuid=True), primary_key=True),
    Column("workspace_id", Text, nullable=False),
    Column("account_id", UUID(as_uuid=True), nullable=True),
    Column("enrolled_at", DateTime(timezone=True), nullable=False),
    Column("generated_at", DateTime(timezone=True), nullable=True),  # drafts written for its workflow version
    Column("workflow_version", Integer, nullable=False, server_default="1"),  # the version the lead runs
    Column("variants", JSONB, nullable=False, server_default=text("'{}'::jsonb")),  # step id -> its A/B variant
)
Index("enrollments_lead", enrollments.c.lead_id)

drafts = Table(
    "drafts",
    metadata,
    Column("draft_id", UUID(as_uuid=True), primary_key=True),
    Column("workspace_id", Text, nullable=False),
    Column("campaign_id", UUID(as_uuid=True), nullable=False),
    Column("lead_id", UUID(as_uuid=True), nullable=False),
    Column("step_id", Text, nullable=False),
    Column("channel", Text, nullable=False),
    Column("status", Text, nullable=False),  # pending | approved | edited | rejected
    Column("text", Text, nullable=False),
    Column("subject", Text, nullable=True),
    Column("hook", JSONB, nullable=False),
    Column("template", Text, nullable=True),
    Column("char_limit", Integer, nullable=False),
    Column("subject_limit", Integer, nullable=True),
    Column("needs_review", Boolean, nullable=False),
    Column("generator", Text, nullable=False),
    Column("attempt", Integer, nullable=False, server_default="1"),
    Column("replaces", UUID(as_uuid=True), nullable=True),
    Column("post_url", Text, nullable=True),
    Column("reason", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("decided_at", DateTime(timezone=True), nullable=True),
)
Index("drafts_queue", drafts.c.workspace_id, drafts.c.campaign_id, drafts.c.status, drafts.c.created_at)

templates = Table(
    "templates",
    metadata,
    Column("template_id", UUID(as_uuid=True), primary_key=True),
    Column("workspace_id", Text, nullable=False, index=True),
    Column("name", Text, nullable=False),
    Column("category", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("subject", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)
Index("templates_name", templates.c.workspace_id, templates.c.name, unique=True)

# The post a posts watch matched for a lead (LeadPostMatched; the newest wins): the hook of its messages and the
# post a comment answers (0002).
matched_posts = Table(
    "matched_posts",
    metadata,
    Column("lead_id", UUID(as_uuid=True), primary_key=True),
    Column("workspace_id", Text, nullable=False),
    Column("post", JSONB, nullable=False),
    Column("language", Text, nullable=False),
    Column("matched", JSONB, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

SERVICE_TABLES = (campaigns, profiles, enrollments, drafts, templates)  # what 0001 creates


def _lock_key(kind: str, ident: object) -> int:
    digest = hashlib.sha256(f"{SCHEMA}:{kind}:{ident}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


async def lock_campaign(conn: AsyncConnection, campaign_id: object, *, shared: bool = False) -> None:
    """Serialise work on one campaign for the rest of the transaction.

    A campaign's creation takes it exclusively and enrolments take it shared, so the two never miss
    each other when they arrive at the same time on different topics. Always taken before lead locks.
    """
    fn = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
    await conn.execute(text(f"SELECT {fn}(:k)"), {"k": _lock_key("campaign", campaign_id)})


async def lock_leads(conn: AsyncConnection, lead_ids: list[object]) -> None:
    """Serialise work on leads (profile arrival vs. enrolment) for the rest of the transaction, in a fixed order."""
    for lead_id in sorted({str(x) for x in lead_ids}):
        await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _lock_key("lead", lead_id)})
