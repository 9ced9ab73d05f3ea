"""Erasure in the views: when ``LeadErased`` is applied, the personal data the views copied is blanked.

Events read after an erasure are already ``[erased]`` at every personal path (the runtime's key store,
:mod:`services.runtime.personal`); this covers what the live views stored before it. The lead keeps its rows,
stage, flags and counts (campaign summaries stay right); its name, headline, location, profile URL, email and
video link (``lead_state`` and ``lead_campaign``) read ``[erased]``, and its timeline entries keep their type and
time with a summary that carries no text.
"""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

import asyncpg
from leadstream_schemas import LeadErased
from leadstream_schemas.personal import ERASED

from .store import Views

ERASED_TYPE = LeadErased.event_type

LEAD_STATE_COLUMNS = (
    "disc_name",
    "disc_linkedin_url",
    "disc_location",
    "prof_name",
    "prof_headline",
    "prof_linkedin_url",
    "prof_city",
    "email",
    "video_url",
)
"""lead_state columns copied from personal fields (leadstream_schemas.personal paths)."""

LEAD_CAMPAIGN_COLUMNS = ("video_url",)
"""lead_campaign columns copied from personal fields (VideoGenerated's ``video_url``, the lead's own video)."""

ERASED_SUMMARY = "personal data erased"


async def erase_people(conn: asyncpg.Connection, views: Views, people: Sequence[tuple[str, UUID]]) -> None:
    """Blank the personal data of ``people`` (workspace, lead) in ``views`` (in the caller's transaction)."""
    if not people:
        return
    workspaces, leads = [p[0] for p in people], [p[1] for p in people]
    schema = views.schema
    sets = ", ".join(f"{c} = CASE WHEN {c} IS NULL THEN NULL ELSE $3 END" for c in LEAD_STATE_COLUMNS)
    await conn.execute(
        f"UPDATE {schema}.lead_state AS t SET {sets} FROM unnest($1::text[], $2::uuid[]) AS p(ws, lead) "
        "WHERE t.workspace_id = p.ws AND t.lead_id = p.lead",
        workspaces,
        leads,
        ERASED,
    )
    sets = ", ".join(f"{c} = CASE WHEN {c} IS NULL THEN NULL ELSE $3 END" for c in LEAD_CAMPAIGN_COLUMNS)
    await conn.execute(
        f"UPDATE {schema}.lead_campaign AS t SET {sets} FROM unnest($1::text[], $2::uuid[]) AS p(ws, lead) "
        "WHERE t.workspace_id = p.ws AND t.lead_id = p.lead",
        workspaces,
        leads,
        ERASED,
    )
    await conn.execute(
        f"UPDATE {schema}.timeline AS t SET summary = $3, detail = NULL "
        "FROM unnest($1::text[], $2::uuid[]) AS p(ws, lead) "
        "WHERE t.workspace_id = p.ws AND t.lead_id = p.lead AND t.event_type <> $4",
        workspaces,
        leads,
        ERASED_SUMMARY,
        ERASED_TYPE,
    )
