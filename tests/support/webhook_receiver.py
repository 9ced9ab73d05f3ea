"""A local webhook receiver for tests: verifies every signature with the ``standardwebhooks`` library (as a
subscriber would) and decodes the body with ``leadstream_schemas.structured``."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from leadstream_schemas import Envelope, Event
from leadstream_schemas.structured import decode_structured
from standardwebhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.support.local_http import serve


@dataclass
class Received:
    """One request the receiver got, and what it answered."""

    msg_id: str
    host: str
    signature: str
    verified: bool
    status: int
    env: Envelope[Event] | None


@dataclass
class Receiver:
    """Answers ``POST /hook``: 401 when no secret in ``secrets`` verifies the signature, else ``status``.

    It answers 500 instead while ``failing`` (a subscriber that is down), for webhook-ids in ``fail_ids``, and
    with ``fail_first`` the first time it sees a webhook-id. ``requests`` records everything, in order.
    """

    secrets: list[str] = field(default_factory=list)
    failing: bool = False
    fail_first: bool = False
    fail_ids: set[str] = field(default_factory=set)
    seen: set[str] = field(default_factory=set)
    status: int = 200
    body: bytes = b""
    requests: list[Received] = field(default_factory=list)
    url: str = ""
    port: int = 0

    async def _hook(self, request: Request) -> Response:
        body = await request.body()
        headers = dict(request.headers)
        verified = False
        for secret in self.secrets:
            with contextlib.suppress(WebhookVerificationError):
                Webhook(secret).verify(body, headers)
                verified = True
        msg_id = headers["webhook-id"]
        refuse = self.failing or msg_id in self.fail_ids or (self.fail_first and msg_id not in self.seen)
        status = 401 if not verified else 500 if refuse else self.status
        if verified:
            self.seen.add(msg_id)
        env = decode_structured(body) if verified else None
        self.requests.append(Received(msg_id, headers["host"], headers["webhook-signature"], verified, status, env))
        return Response(self.body, status, headers={"location": "/elsewhere"} if 300 <= status < 400 else None)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Receiver]:
        """Serve on a free local port until the block ends."""
        app = Starlette(routes=[Route("/hook", self._hook, methods=["POST"])])
        async with serve(app) as root:
            self.url = root + "/hook"
            self.port = int(root.rsplit(":", 1)[1])
            yield self

    def accepted(self) -> list[Received]:
        """The deliveries it answered with a 2xx, in arrival order."""
        return [r for r in self.requests if 200 <= r.status < 300]

    def accepted_ids(self) -> list[str]:
        """The webhook-ids it accepted, in arrival order."""
        return [r.msg_id for r in self.accepted()]
