"""A TCP proxy a test can cut and restore, to make a real server unreachable for one service only.

Cutting it aborts every open connection and refuses new ones (the port is closed), which is what a
service sees when its database host goes away; restoring it listens on the same port again.

:meth:`TcpProxy.cut_at` cuts at an exact point of the protocol instead: when a client sends a marker (a
``COMMIT``), either before the server gets it (the transaction rolls back) or after the server answered it
without the answer reaching the client (the transaction committed, and the client cannot know).

:meth:`TcpProxy.freeze_at` leaves that one connection half-open instead: the server's side is closed (its transaction
rolls back, its locks go) while the client's socket stays open and never hears anything again, as when a firewall or
NAT dropped the connection's state. Every other connection, open or new, goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

import pytest


@dataclass
class _Trigger:
    marker: bytes
    forwarded: bool
    frozen: bool
    drain: bool
    skip: int
    after: bytes | None
    cut: asyncio.Event


@dataclass
class _Pair:
    """One forwarded connection."""

    armed: bool = False
    """Its client sent the trigger's ``after`` (the next marker on this connection counts)."""
    swallow: bool = False
    """Its client sent the trigger's marker and the server got it (its answer is not forwarded)."""
    frozen: bool = False
    """Half-open (:meth:`TcpProxy.freeze_at`): the server's side is closed, the client's stays open and silent."""


class TcpProxy:
    """Forwards 127.0.0.1:<port> to ``target_host:target_port`` while up."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._trigger: _Trigger | None = None

    async def start(self) -> int:
        """Listen (on the same port as before when restarting); returns the port."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port, reuse_address=True)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def restore(self) -> None:
        """Back to plain forwarding, for the next user of a shared proxy: a trigger that has not fired is dropped,
        and a cut proxy listens again (on its port)."""
        self._trigger = None
        if self._server is None:
            await self.start()

    async def cut(self) -> None:
        """Stop listening and abort every forwarded connection."""
        self._abort()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()

    def cut_at(self, marker: bytes, *, forwarded: bool, skip: int = 0, after: bytes | None = None) -> asyncio.Event:
        """Cut (as :meth:`cut`) when a client sends ``marker`` (only on a connection that sent ``after`` since its
        last marker, when given), after ``skip`` earlier ones: ``forwarded`` False before the server gets it;
        True once the server answered it, the answer never reaching the client. Returns an event set at the cut.
        """
        self._trigger = _Trigger(marker, forwarded, False, True, skip, after, asyncio.Event())
        return self._trigger.cut

    def freeze_at(
        self, marker: bytes, *, skip: int = 0, after: bytes | None = None, drain: bool = True
    ) -> asyncio.Event:
        """When a client sends ``marker`` (as :meth:`cut_at`), leave that connection half-open: the server never
        gets the marker and its side is closed; the client's socket stays open and gets nothing more. ``drain``
        False: what the client sends from then on is not even read, so a client with much to send (a COPY)
        finds its socket full and pauses writing. Returns an event set at the freeze."""
        self._trigger = _Trigger(marker, False, True, drain, skip, after, asyncio.Event())
        return self._trigger.cut

    def _abort(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def _fire(self) -> None:
        trigger, self._trigger = self._trigger, None
        self._abort()
        if trigger is not None:
            trigger.cut.set()

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            client_w.transport.abort()
            return
        self._writers.update({client_w, server_w})
        pair = _Pair()
        for src, dst, upstream in ((client_r, server_w, True), (server_r, client_w, False)):
            task = asyncio.create_task(self._pipe(src, dst, pair, upstream))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _hit(self, data: bytes, pair: _Pair) -> bool:
        trigger = self._trigger
        if trigger is None:
            return False
        if trigger.after is not None and trigger.after in data:
            pair.armed = True
        if trigger.marker not in data or (trigger.after is not None and not pair.armed):
            return False
        pair.armed = False
        if trigger.skip > 0:
            trigger.skip -= 1
            return False
        return True

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, pair: _Pair, upstream: bool) -> None:
        try:
            while data := await src.read(65536):
                if not upstream and pair.swallow:  # the server's answer to the marker: the client never sees it
                    self._fire()
                    return
                if upstream and self._hit(data, pair):
                    assert self._trigger is not None
                    if self._trigger.frozen:
                        trigger, self._trigger = self._trigger, None
                        pair.frozen = True
                        dst.transport.abort()  # the server's side: its transaction rolls back
                        trigger.cut.set()
                        if not trigger.drain:
                            await asyncio.Event().wait()  # never read again (until cut() cancels this)
                        while await src.read(65536):  # the client's bytes go nowhere from now on
                            pass
                        return
                    if not self._trigger.forwarded:
                        self._fire()
                        return
                    pair.swallow = True
                dst.write(data)
                await dst.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            if not (pair.frozen and not upstream):  # a frozen connection's client side stays open (until cut())
                self._writers.discard(dst)
                dst.close()


def timed_out_attempts(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The retries a service logged for an attempt given up at its deadline (``consumer_attempt_timeout_s``), as
    outages: what a connection left half-open by :meth:`TcpProxy.freeze_at` ends in."""
    return [
        str(getattr(r, "error", ""))
        for r in caplog.records
        if "AttemptTimedOut" in str(getattr(r, "error", "")) and getattr(r, "fault", None) == "transient"
    ]
