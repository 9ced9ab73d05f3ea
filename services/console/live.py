"""Live pages: the projection's change stream of the workspace, relayed to a browser as the page's own events.

The browser's ``EventSource`` reconnects by itself with ``Last-Event-ID``; the relay passes that id
upstream, so the projection resumes exactly after it (or says ``reset``: the page refreshes everything).
The relay itself reconnects upstream after a failure, resuming after the last id it saw.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from services.runtime.service import Service

from . import domain
from .backends import BackendRefused, BackendUnavailable, ProjectionApi, SignedOut
from .sse import SseEvent

log = logging.getLogger(__name__)


async def _until_stopped(events: AsyncIterator[SseEvent], stop: asyncio.Event) -> AsyncIterator[SseEvent]:
    """``events`` until they end or ``stop`` is set (a service stopping does not wait for quiet streams)."""
    stopped = asyncio.ensure_future(stop.wait())
    nxt: asyncio.Future[SseEvent] | None = None
    try:
        while True:
            nxt = asyncio.ensure_future(anext(events))
            done, _ = await asyncio.wait({nxt, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if nxt not in done:
                return
            try:
                yield nxt.result()
            except StopAsyncIteration:
                return
    finally:
        stopped.cancel()
        if nxt is not None:
            # A read still under way when the page went away ends with the stream (cancelled, or its
            # connection's ReadError): its outcome is retrieved, so nothing is logged as a lost task error.
            nxt.add_done_callback(_retrieve)
            nxt.cancel()


def _retrieve(done: asyncio.Future[SseEvent]) -> None:
    if not done.cancelled():
        done.exception()


async def relay(
    projection: ProjectionApi, token: str, watch: domain.Watch, last_event_id: str | None, service: Service
) -> AsyncIterator[tuple[str, str | None]]:
    """(event name, event id) for each change the page watches, until the service stops or the token is revoked."""
    last, backoff = last_event_id, 0.5
    while not service.stop_event.is_set():
        try:
            async with projection.changes(token, last) as upstream:
                backoff = 0.5
                async for event in _until_stopped(upstream, service.stop_event):
                    change: dict[str, Any] | None
                    if event.event == "change":
                        try:
                            change = json.loads(event.data)
                        except ValueError:
                            continue
                    elif event.event == "reset":
                        change = None
                    else:
                        continue
                    last = event.id or last
                    for name in domain.live_events(watch, change):
                        yield name, last
        except SignedOut:
            return
        except (BackendUnavailable, BackendRefused) as exc:
            log.info("live stream: projection stream interrupted; reconnecting", extra={"error": str(exc)})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(service.stop_event.wait(), timeout=backoff)
        backoff = min(backoff * 2, 10.0)
