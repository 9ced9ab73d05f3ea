"""Discovery's own tables (schema ``discovery``) and the few statements every entry point shares.

- ``searches``: saved searches (and CSV imports) with their cursor, counts and schedule;
- ``source_groups``: what a campaign can use as its audience (one per search or import, plus "manual");
- ``leads``: one row per person per workspace; its unique keys are the dedupe;
- ``source_group_members``: which leads belong to which group (a known lead can join a new group);
- ``post_watches`` / ``watched_posts``: the posts watch of each posts search, and the posts it has seen.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.dialects.postgresql import UUID as PgUUID
from sqlalchemy.ext.asyncio import AsyncConnection

from services.runtime.db import service_metadata
from services.runtime.idempotency import idempotency_table

from .domain import LeadInput

SCHEMA = "discovery"
metadata, runtime_tables = service_metadata(SCHEMA)

source_groups = Table(
    "source_groups",
    metadata,
    Column("source_group_id", PgUUID(as_uuid=True), primary_key=True),
    Column("workspace_id", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("search_id", PgUUID(as_uuid=True), nullable=True),
    # automatic: discovered leads are enriched at once; on_selection: only the leads someone selects (0003)
    Column("enrichment", Text, nullable=False, server_default="automatic"),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_source_groups_workspace", "workspace_id", "created_at"),
)

searches = Table(
    "searches",
    metadata,
    Column("search_id", PgUUID(as_uuid=True), primary_key=True),
    Column("workspace_id", Text, nullable=False),
    Column("source_group_id", PgUUID(as_uuid=True), ForeignKey(source_groups.c.source_group_id), nullable=False),
    Column("name", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("criteria", JSONB, nullable=False),
    Column("target_count", Integer, nullable=False),
    Column("per_run", Integer, nullable=True),
    Column("recurring", Boolean, nullable=False, server_default="false"),
    Column("interval_minutes", Integer, nullable=True),
    # running | scheduled | finished
    Column("status", Text, nullable=False),
    Column("finish_reason", Text, nullable=True),
    # The provider cursor of the page being read, and how many of its items were already taken:
    # a run that stops mid-page (target or per-run limit) resumes exactly after the last item taken.
    Column("cursor", Text, nullable=True),
    Column("page_offset", Integer, nullable=False, server_default="0"),
    Column("exhausted", Boolean, nullable=False, server_default="false"),
    Column("pages", Integer, nullable=False, server_default="0"),
    Column("found", Integer, nullable=False, server_default="0"),
    Column("new_leads", Integer, nullable=False, server_default="0"),
    Column("duplicates", Integer, nullable=False, server_default="0"),
    Column("invalid", Integer, nullable=False, server_default="0"),
    Column("members", Integer, nullable=False, server_default="0"),
    Column("runs", Integer, nullable=False, server_default="1"),
    Column("run_pages", Integer, nullable=False, server_default="0"),
    Column("run_members", Integer, nullable=False, server_default="0"),
    Column("run_new", Integer, nullable=False, server_default="0"),  # new leads of this run (0003)
    Column("next_run_at", DateTime(timezone=True), nullable=True),
    Column("consecutive_errors", Integer, nullable=False, server_default="0"),
    Column("retry_at", DateTime(timezone=True), nullable=True),  # after a provider error: not before (0002)
    Column("traceparent", Text, nullable=True),  # of the request that saved it: its pages continue that trace (0003)
    Column("last_error", Text, nullable=True),
    Column("started_event_id", PgUUID(as_uuid=True), nullable=False),
    Column("report", JSONB, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    Index("ix_searches_due", "status", "next_run_at"),
    Index("ix_searches_workspace", "workspace_id", "created_at"),
)

leads = Table(
    "leads",
    metadata,
    Column("workspace_id", Text, nullable=False),
    Column("lead_id", PgUUID(as_uuid=True), nullable=False),
    Column("linkedin_url", Text, nullable=True),
    Column("email", Text, nullable=True),
    Column("full_name", Text, nullable=True),
    Column("first_name", Text, nullable=True),
    Column("last_name", Text, nullable=True),
    Column("title", Text, nullable=True),
    Column("company", Text, nullable=True),
    Column("location", Text, nullable=True),
    Column("source", Text, nullable=False),
    Column("search_id", PgUUID(as_uuid=True), nullable=True),
    Column("source_group_id", PgUUID(as_uuid=True), nullable=True),
    # automatic: enriched when discovered; pending: waits for a selection; requested: LeadEnrichmentRequested sent
    Column("enrichment", Text, nullable=False, server_default="automatic"),
    Column("created_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("workspace_id", "lead_id"),
    # Either key identifies the person: a row with a known URL or a known email is the same lead.
    UniqueConstraint("workspace_id", "linkedin_url", name="uq_leads_linkedin"),
    UniqueConstraint("workspace_id", "email", name="uq_leads_email"),
)

source_group_members = Table(
    "source_group_members",
    metadata,
    Column("seq", BigInteger, Identity(always=True), nullable=False, unique=True),
    Column("source_group_id", PgUUID(as_uuid=True), nullable=False),
    Column("lead_id", PgUUID(as_uuid=True), nullable=False),
    Column("workspace_id", Text, nullable=False),
    Column("is_new", Boolean, nullable=False),
    Column("fit_signals", JSONB, nullable=False, server_default="[]"),
    Column("added_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("source_group_id", "lead_id"),
)

idempotency_keys = idempotency_table(metadata)  # saved searches sent twice (a builder retried) start once


post_watches = Table(
    "post_watches",
    metadata,
    Column("search_id", PgUUID(as_uuid=True), ForeignKey(searches.c.search_id), primary_key=True),
    Column("workspace_id", Text, nullable=False),
    Column("interval_minutes", Integer, nullable=False),
    Column("state", Text, nullable=False),  # active | stopped
    Column("stop_reason", Text, nullable=True),
    Column("due_at", DateTime(timezone=True), nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("checks", Integer, nullable=False, server_default="0"),
    Column("posts_seen", Integer, nullable=False, server_default="0"),
    Column("matches", Integer, nullable=False, server_default="0"),
    Column("new_leads", Integer, nullable=False, server_default="0"),
    Column("last_checked_at", DateTime(timezone=True), nullable=True),
    Column("last_error", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_post_watches_due", "due_at", postgresql_where=text("state = 'active'")),
)

watched_posts = Table(
    "watched_posts",
    metadata,
    Column("search_id", PgUUID(as_uuid=True), nullable=False),
    Column("post_key", Text, nullable=False),
    Column("lead_id", PgUUID(as_uuid=True), nullable=True),
    Column("matched", Boolean, nullable=False),
    Column("seen_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("search_id", "post_key"),
    Index("ix_watched_posts_age", "search_id", "seen_at"),
)

LEAD_ENRICHMENT_OF_GROUP = {"automatic": "automatic", "on_selection": "pending"}


async def remember_post(
    conn: AsyncConnection, search_id: UUID, key: str, now: datetime, *, lead_id: UUID | None = None, matched: bool
) -> bool:
    """Record that a posts search saw a post; False when it had seen it before (its events were emitted then)."""
    first = await conn.scalar(
        insert(watched_posts)
        .values(search_id=search_id, post_key=key, lead_id=lead_id, matched=matched, seen_at=now)
        .on_conflict_do_nothing()
        .returning(watched_posts.c.post_key)
    )
    return first is not None


@dataclass(frozen=True)
class Added:
    """Outcome of adding a person: the lead id, whether it is new to the workspace, new to the group."""

    lead_id: UUID
    new_lead: bool
    new_member: bool
    request_enrichment: bool = False  # a lead waiting for a selection joined a group that enriches automatically


async def add_lead(
    conn: AsyncConnection,
    workspace_id: str,
    lead: LeadInput,
    *,
    source: str,
    source_group_id: UUID,
    search_id: UUID | None,
    fit_signals: list[dict[str, Any]],
    now: datetime,
    enrichment: str = "automatic",
) -> Added:
    """Insert the lead unless the workspace knows it (by id, URL or email) and add it to the group.

    ``enrichment`` is the group's setting: a new lead of an ``on_selection`` group waits for a selection
    (``pending``); a pending lead that joins an ``automatic`` group is to be enriched now
    (``request_enrichment``: the caller emits ``LeadEnrichmentRequested``).
    Concurrent writers of the same person serialise on the unique keys, so exactly one sees it as new.
    """
    lead_id = lead.lead_id(workspace_id)
    inserted = await conn.scalar(
        insert(leads)
        .values(
            workspace_id=workspace_id,
            lead_id=lead_id,
            linkedin_url=lead.linkedin_url,
            email=lead.email,
            full_name=lead.full_name,
            first_name=lead.first_name,
            last_name=lead.last_name,
            title=lead.title,
            company=lead.company,
            location=lead.location,
            source=source,
            search_id=search_id,
            source_group_id=source_group_id,
            enrichment=LEAD_ENRICHMENT_OF_GROUP[enrichment],
            created_at=now,
        )
        .on_conflict_do_nothing()
        .returning(leads.c.lead_id)
    )
    if inserted is None:
        keys = [leads.c.lead_id == lead_id]
        if lead.linkedin_url:
            keys.append(leads.c.linkedin_url == lead.linkedin_url)
        if lead.email:
            keys.append(leads.c.email == lead.email)
        existing = await conn.scalar(
            select(leads.c.lead_id).where(leads.c.workspace_id == workspace_id, or_(*keys)).limit(1)
        )
        lead_id = existing or lead_id
    member = await conn.scalar(
        insert(source_group_members)
        .values(
            source_group_id=source_group_id,
            lead_id=lead_id,
            workspace_id=workspace_id,
            is_new=inserted is not None,
            fit_signals=fit_signals,
            added_at=now,
        )
        .on_conflict_do_nothing()
        .returning(source_group_members.c.lead_id)
    )
    request = False
    if inserted is None and member is not None and enrichment == "automatic":
        flipped = await conn.scalar(
            update(leads)
            .where(leads.c.workspace_id == workspace_id, leads.c.lead_id == lead_id, leads.c.enrichment == "pending")
            .values(enrichment="requested")
            .returning(leads.c.lead_id)
        )
        request = flipped is not None
    return Added(lead_id, inserted is not None, member is not None, request)
