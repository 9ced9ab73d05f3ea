"""Emitting events from the three places outreach acts: event handlers, HTTP requests and timers.

Shared logic (enrolling a lead, cancelling steps on a reply) is written once against :class:`Emitter`.
In a handler, emitted events are caused by the handled event (deterministic ids from the runtime).
From HTTP and timers, events are root events; a ``key`` gives them a deterministic id, so work that
is redone after a crash emits the same ids and consumers deduplicate them.
"""

from __future__ import annotations

import uuid
from typing import Any, Protocol

from leadstream_schemas import Envelope, Event
from sqlalchemy.ext.asyncio import AsyncConnection

from services.runtime.consumer import HandlerContext
from services.runtime.service import Service

NAMESPACE = uuid.UUID("0b7f3c52-6a0e-5d8e-9c41-7e2f1a9d3b60")


class Emitter(Protocol):
    """Collects the events of one transaction."""

    workspace_id: str

    def emit(self, event: Event, key: str | None = None) -> None: ...


class HandlerEmitter:
    """Emits through the handler context (events caused by the consumed one)."""

    def __init__(self, ctx: HandlerContext) -> None:
        self.ctx = ctx
        self.workspace_id = ctx.envelope.workspace_id

    def emit(self, event: Event, key: str | None = None) -> None:
        """Emit ``event``; ``key`` tells apart several events of one type emitted by one handler."""
        self.ctx.emit(event, discriminator=key or "")


class RootEmitter:
    """Emits root events of one workspace from an HTTP request or a timer; call :meth:`flush` before commit."""

    def __init__(self, service: Service, workspace_id: str) -> None:
        self.service = service
        self.workspace_id = workspace_id
        self.envelopes: list[Envelope[Any]] = []

    def emit(self, event: Event, key: str | None = None) -> None:
        """Emit ``event``; with a ``key`` its id is deterministic (uuid5 of key and type)."""
        env = self.service.new_envelope(event, workspace_id=self.workspace_id)
        if key is not None:
            env = Envelope.new(
                event,
                workspace_id=self.workspace_id,
                source=env.source,
                time=env.time,
                id=uuid.uuid5(NAMESPACE, f"{key}|{event.event_type}"),
                traceparent=env.traceparent,
            )
        self.envelopes.append(env)

    async def flush(self, conn: AsyncConnection) -> None:
        """Write the collected events to the outbox in ``conn``'s transaction."""
        if self.envelopes:
            await self.service.emit(conn, self.envelopes)
            self.envelopes = []
