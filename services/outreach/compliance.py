"""Compliance commands: the workspace blocklist, the suppression list, and unsubscribing a lead.

The routes (``api_compliance.py``) read the request (and check an unsubscribe link's token) and shape the answer;
the rules on what may be blocked or suppressed live in :mod:`.domain.compliance`. Each command is one transaction.
"""

from __future__ import annotations

from uuid import UUID

from leadstream_schemas import LeadUnsubscribed
from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert

from services.runtime.service import Service

from . import lifecycle as lc
from .domain.compliance import BLOCK_VALUE_PROBLEMS, normalise_block_value, normalise_email
from .emit import RootEmitter
from .models import BlockIn, BlockKind, SuppressionIn
from .problems import invalid, not_found
from .store import blocklist, leads, suppressions


class ComplianceCommands:
    """The compliance API's writes, one transaction per command."""

    def __init__(self, service: Service) -> None:
        self.service = service

    async def block(self, workspace_id: str, body: BlockIn) -> str:
        """Block a domain, an email or a profile URL (already blocked: kept); the value as stored (normalised),
        a 422 naming ``value`` when nothing usable is left of it."""
        value = normalise_block_value(body.kind, body.value)
        if value is None:
            raise invalid("value", BLOCK_VALUE_PROBLEMS[body.kind])
        async with self.service.engine.begin() as conn:
            await conn.execute(
                insert(blocklist)
                .values(workspace_id=workspace_id, kind=body.kind, value=value, created_at=self.service.clock.now())
                .on_conflict_do_nothing()
            )
        return value

    async def unblock(self, workspace_id: str, kind: BlockKind, value: str) -> None:
        """Remove a blocklist entry, named as it was added (a 404 when there is none)."""
        async with self.service.engine.begin() as conn:
            result = await conn.execute(
                delete(blocklist).where(
                    blocklist.c.workspace_id == workspace_id,
                    blocklist.c.kind == kind,
                    # as typed too: an entry kept by a version that stored values it could not normalise
                    blocklist.c.value.in_({normalise_block_value(kind, value) or "", value.strip().lower()}),
                )
            )
        if not result.rowcount:
            raise not_found("blocklist entry", f"{kind} {value}")

    async def suppress(self, workspace_id: str, body: SuppressionIn) -> str:
        """Suppress a lead (every channel) or an address (already suppressed: kept); the value as stored, a 422
        naming ``value`` when it is not an address or a lead id."""
        value = body.value.strip()
        if body.kind == "email":
            value = normalise_email(value) or ""
            if not value:
                raise invalid("value", "not an email address")
        else:
            try:
                value = str(UUID(value))
            except ValueError:
                raise invalid("value", "a lead id (UUID)") from None
        async with self.service.engine.begin() as conn:
            await lc.suppress(conn, workspace_id, body.kind, value, body.reason, self.service.clock.now())
        return value

    async def unsubscribe(self, workspace_id: str, lead_id: UUID, via: str) -> bool:
        """Suppress the lead (and its address) on every channel and emit ``LeadUnsubscribed`` once; False when it
        was unsubscribed before. The caller checked the link that asks for it."""
        service = self.service
        now = service.clock.now()
        async with service.engine.begin() as conn:
            before = await conn.scalar(
                select(suppressions.c.reason).where(
                    suppressions.c.workspace_id == workspace_id,
                    suppressions.c.kind == "lead",
                    suppressions.c.value == str(lead_id),
                )
            )
            await lc.suppress(conn, workspace_id, "lead", str(lead_id), "unsubscribed", now)
            email = await conn.scalar(
                select(leads.c.email).where(leads.c.workspace_id == workspace_id, leads.c.lead_id == lead_id)
            )
            if email:
                await lc.suppress(conn, workspace_id, "email", email, "unsubscribed", now)
            if before == "unsubscribed":
                return False
            em = RootEmitter(service, workspace_id)
            em.emit(LeadUnsubscribed(lead_id=lead_id, via=via), f"unsubscribed:{workspace_id}:{lead_id}")
            await em.flush(conn)
        service.wake_relay()
        return True
