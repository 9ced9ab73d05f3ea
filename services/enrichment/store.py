"""Enrichment's own tables (schema ``enrichment``).

- ``profile_cache``: the last profile (and email verdict) fetched per person and workspace, so the same
  person is not enriched twice within the cache window by one workspace; a provider's answer bought for one
  workspace is never reused by another (0003);
- ``awaiting_selection``: leads of source groups that enrich on selection, kept (their ``LeadDiscovered``)
  until ``LeadEnrichmentRequested`` asks for them;
- ``enrichment_retries``: leads waiting to retry a stage after a rate limit or a transient error.
  The partition moves on meanwhile, so one slow lead never blocks the others.
"""

from __future__ import annotations

from sqlalchemy import Column, DateTime, Index, Integer, Table, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import UUID as PgUUID

from services.runtime.db import service_metadata

SCHEMA = "enrichment"
metadata, runtime_tables = service_metadata(SCHEMA)

profile_cache = Table(
    "profile_cache",
    metadata,
    Column("workspace_id", Text, primary_key=True),
    Column("profile_key", Text, primary_key=True),
    Column("profile", JSONB, nullable=False),
    # {"input": the address the lead came with or null, "email": .., "status": .., "checked_at": iso}
    Column("email", JSONB, nullable=True),
    Column("enriched_at", DateTime(timezone=True), nullable=False),
    # The lead the entry was fetched for (NULL for entries older than 0004): how an erasure finds it.
    Column("lead_id", PgUUID(as_uuid=True), nullable=True),
    Index("ix_profile_cache_lead", "workspace_id", "lead_id"),
)

awaiting_selection = Table(
    "awaiting_selection",
    metadata,
    Column("workspace_id", Text, primary_key=True),
    Column("lead_id", PgUUID(as_uuid=True), primary_key=True),
    Column("envelope", JSONB, nullable=False),  # the LeadDiscovered to enrich once selected
    Column("created_at", DateTime(timezone=True), nullable=False),
)

enrichment_retries = Table(
    "enrichment_retries",
    metadata,
    # The LeadDiscovered event being enriched: retries emit events caused by it (deterministic ids).
    Column("event_id", PgUUID(as_uuid=True), primary_key=True),
    Column("lead_id", PgUUID(as_uuid=True), nullable=False),
    Column("workspace_id", Text, nullable=False),
    Column("envelope", JSONB, nullable=False),
    Column("stage", Text, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("rate_limited", Integer, nullable=False),
    Column("profile", JSONB, nullable=True),
    Column("due_at", DateTime(timezone=True), nullable=False),
    Column("last_error", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_enrichment_retries_due", "due_at"),
)
