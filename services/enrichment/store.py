"""Enrichment's own tables (schema ``enrichment``)."""

from __future__ import annotations

from sqlalchemy import Column, DateTime, Table, Text
from sqlalchemy.dialects.postgresql import JSONB

from services.runtime.db import service_metadata

SCHEMA = "enrichment"
metadata, runtime_tables = service_metadata(SCHEMA)

profile_cache = Table(
    "profile_cache",
    metadata,
    Column("profile_key", Text, primary_key=True),
    Column("profile", JSONB, nullable=False),
    Column("email", JSONB, nullable=True),
    Column("enriched_at", DateTime(timezone=True), nullable=False),
)
