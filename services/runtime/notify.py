"""Postgres LISTEN/NOTIFY: one connection that listens on a channel and calls back on each notification.

A ``NOTIFY`` (``pg_notify``) is delivered when the sending transaction commits, to every session listening
on the channel at that moment, whichever process or replica it is. One listening connection per process and
channel is enough. A notification sent while the connection is down is lost, so :func:`listen` calls
``on_connected`` after each (re)connection (the caller looks at what it may have missed), and callers
keep a slow poll as a fallback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable
from functools import partial
from typing import Any

import asyncpg

log = logging.getLogger(__name__)

MAX_CHANNEL_BYTES = 63
"""Postgres refuses longer channel names (an identifier: NAMEDATALEN - 1)."""


def dsn(database_url: str) -> str:
    """A SQLAlchemy URL (``postgresql+asyncpg://``) as a plain libpq DSN for asyncpg.

    SQLAlchemy's asyncpg dialect spells the TLS mode ``ssl=``; a DSN spells it ``sslmode=``.
    """
    url = database_url.replace("postgresql+asyncpg://", "postgresql://", 1)
    return re.sub(r"([?&])ssl=", r"\1sslmode=", url)


def _set(event: asyncio.Event, *_: Any) -> None:
    event.set()


async def listen(
    database_url: str,
    channel: str,
    on_notify: Callable[[str], None],
    stop: asyncio.Event,
    *,
    on_connected: Callable[[], None] | None = None,
    on_lost: Callable[[], None] | None = None,
    what: str = "LISTEN",
) -> None:
    """Hold a connection listening on ``channel`` until ``stop``: ``on_notify(payload)`` per notification,
    ``on_connected()`` once listening (again), ``on_lost()`` when the connection ends. A failed or lost
    connection is opened again with backoff (0.2 s doubling to 5 s); meanwhile the caller's poll covers."""
    backoff = 0.2

    def notified(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
        on_notify(payload)

    while not stop.is_set():
        conn: asyncpg.Connection | None = None
        try:
            conn = await asyncpg.connect(dsn(database_url))
            lost = asyncio.Event()
            conn.add_termination_listener(partial(_set, lost))
            await conn.add_listener(channel, notified)
            backoff = 0.2
            if on_connected is not None:
                on_connected()
            stopped = asyncio.ensure_future(stop.wait())
            broken = asyncio.ensure_future(lost.wait())
            await asyncio.wait({stopped, broken}, return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            broken.cancel()
        except Exception as exc:
            log.warning(f"{what}: the LISTEN connection failed; retrying", extra={"error": repr(exc)})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=backoff)
            backoff = min(backoff * 2, 5.0)
        finally:
            if on_lost is not None:
                on_lost()
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.close(timeout=2)
