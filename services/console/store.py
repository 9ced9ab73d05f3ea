"""The console's own tables (schema ``console``): sessions and one-time sign-in links. No business data.

Ids and codes are stored as SHA-256 hashes (a copy of the table opens no session); the workspace
tokens they stand for are encrypted with a key derived from ``LEADSTREAM_CONSOLE_SESSION_SECRET``.
"""

from __future__ import annotations

from sqlalchemy import Column, DateTime, Index, LargeBinary, Table, Text

from services.runtime.db import service_metadata

SCHEMA = "console"
metadata, runtime_tables = service_metadata(SCHEMA)

sessions = Table(
    "sessions",
    metadata,
    Column("id_hash", Text, primary_key=True),
    Column("workspace_id", Text, nullable=False),
    Column("token", LargeBinary, nullable=False),  # encrypted
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Index(None, "expires_at"),
)

sign_in_links = Table(
    "sign_in_links",
    metadata,
    Column("code_hash", Text, primary_key=True),
    Column("workspace_id", Text, nullable=False),
    Column("token", LargeBinary, nullable=False),  # encrypted
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("used_at", DateTime(timezone=True)),
    Index(None, "expires_at"),
)

SERVICE_TABLES = (sessions, sign_in_links)
