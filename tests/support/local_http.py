"""Real HTTP servers on 127.0.0.1 for adapter tests, served by uvicorn in the test's own event loop.

- :func:`serve` runs any ASGI app (e.g. a FastAPI fake of a provider) on a free port;
- :class:`ScriptedServer` answers one endpoint from a script of :class:`Reply` (429, 5xx, a stalled
  answer, ...) and records every request, for clients whose retry behaviour is under test;
- :class:`Sleeps` stands in for such a client's ``sleep`` and records its backoff waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Generator, Iterable
from dataclasses import dataclass, field
from typing import Any, Self

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp

from tests.support.kafka import wait_for

METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # The test process keeps its own signal handlers.
        yield


@contextlib.asynccontextmanager
async def serve(app: ASGIApp) -> AsyncIterator[str]:
    """Serve ``app`` on a free local port; yields its base URL and stops the server afterwards."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="warning", lifespan="off", timeout_graceful_shutdown=2
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve())
    await wait_for(lambda: server.started or task.done(), timeout_s=20, what="local http server")
    if task.done():
        task.result()
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=10)


class Sleeps:
    """An injectable ``sleep`` that records the waits of a client under test instead of waiting."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@dataclass
class Reply:
    """One scripted answer: a status, headers and a body; ``hold`` makes the server stall until released."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    hold: bool = False


def next_reply(script: list[Reply]) -> Reply:
    """The script's next reply; the last one repeats (a 500 when there is none)."""
    if len(script) > 1:
        return script.pop(0)
    return script[0] if script else Reply(500, {"error": "no script"})


class ScriptedServer:
    """Answers ``method path`` from a script and records every request (``path``, ``headers``, ``json``).

    Any other path answers 404. ``base_url`` is the server's URL plus ``base_path`` (e.g. an API's ``/v1``).
    Subclasses choose replies per request by overriding :meth:`pick`.
    """

    def __init__(self, path: str, *, method: str = "POST", base_path: str = "", script: Iterable[Reply] = ()) -> None:
        self.path = path
        self.method = method
        self.base_path = base_path
        self.script = list(script)
        self.requests: list[dict[str, Any]] = []
        self.release = asyncio.Event()
        self.base_url = ""
        self.app = Starlette(routes=[Route("/{rest:path}", self._handle, methods=METHODS)])

    def pick(self, request: dict[str, Any]) -> Reply:
        """The reply to a request of the scripted endpoint."""
        return next_reply(self.script)

    async def _handle(self, request: Request) -> Response:
        raw = await request.body()
        record = {"path": request.url.path, "headers": request.headers, "json": json.loads(raw or b"null")}
        self.requests.append(record)
        if request.url.path != self.path or request.method != self.method:
            reply = Reply(404, {"error": {"message": "unknown path"}})
        else:
            reply = self.pick(record)
        if reply.hold:
            await self.release.wait()
        payload = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
        return Response(payload, reply.status, headers=reply.headers, media_type="application/json")

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Self]:
        """Serve until the block ends; stalled requests are released first."""
        async with serve(self.app) as root:
            self.base_url = root + self.base_path
            try:
                yield self
            finally:
                self.release.set()
