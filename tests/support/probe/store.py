"""The probe's tables (schema ``probe``): one row per effect, so tests can count effects exactly."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, DateTime, Identity, Table, Text, func
from sqlalchemy.dialects.postgresql import UUID

from services.runtime.db import service_metadata

SCHEMA = "probe"
metadata, runtime_tables = service_metadata(SCHEMA)

effects = Table(
    "effects",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    # Not unique on purpose: an event applied twice must show up as two rows, not as an error.
    Column("event_id", UUID(as_uuid=True), nullable=False, index=True),
    Column("lead_id", UUID(as_uuid=True), nullable=False, index=True),
    Column("origin", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
