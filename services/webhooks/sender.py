"""Where a subscriber URL leads, and one signed delivery attempt to it.

This is the one place leadstream fetches a URL a user chose, so every attempt (not only the subscription)
resolves the host, refuses non-public addresses unless ``LEADSTREAM_WEBHOOKS_ALLOW_PRIVATE_TARGETS`` is set,
and then connects to the address it checked (the URL's host goes into ``Host`` and TLS SNI), so a DNS
answer that changes between the check and the connection cannot redirect the request. Redirects are not
followed, the attempt has a deadline, and only the first bytes of the answer are read.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

import httpx
from leadstream_schemas.structured import CONTENT_TYPE
from standardwebhooks import Webhook

from services.runtime.clock import Clock, SystemClock

from . import domain
from .domain import AttemptResult, IpAddress, Target

USER_AGENT = "leadstream-webhooks/1.0"
RESOLVE_TIMEOUT_S = 5.0

Resolver = Callable[[str, int], Awaitable[Sequence[IpAddress]]]


async def system_resolver(host: str, port: int) -> list[IpAddress]:
    """The host's addresses from the system resolver (an IP literal is its own address)."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    found: list[IpAddress] = []
    for *_, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]))
        if address not in found:
            found.append(address)
    return found


class TargetRefused(ValueError):
    """A subscriber URL this service will not call (its host resolves to a non-public address, or not at all)."""


class TargetGuard:
    """The policy for subscriber URLs, applied when a subscription is saved and before every attempt."""

    def __init__(self, *, allow_private: bool, allow_http: bool, resolver: Resolver = system_resolver) -> None:
        self.allow_private = allow_private
        self.allow_http = allow_http
        self.resolver = resolver

    async def check(self, url: str) -> tuple[Target, list[IpAddress]]:
        """The URL's parts and its checked addresses; ValueError (or :class:`TargetRefused`) says why not."""
        target = domain.parse_target(url, allow_http=self.allow_http)
        try:
            async with asyncio.timeout(RESOLVE_TIMEOUT_S):
                addresses = list(await self.resolver(target.host, target.port))
        except (OSError, TimeoutError) as exc:
            raise TargetRefused(f"{target.host} does not resolve ({type(exc).__name__}: {exc})") from None
        if not addresses:
            raise TargetRefused(f"{target.host} does not resolve to any address")
        if not self.allow_private:
            reason = domain.refusal(target.host, addresses)
            if reason:
                raise TargetRefused(reason)
        return target, addresses


def signature_header(secrets: Sequence[str], msg_id: str, timestamp: datetime, body: bytes) -> str:
    """``webhook-signature``: one ``v1,<base64>`` per secret (two during a rotation), space-separated."""
    return " ".join(Webhook(secret).sign(msg_id, timestamp, body) for secret in secrets)


class Sender:
    """Makes delivery attempts over one connection pool; never raises for what the subscriber does."""

    def __init__(
        self,
        guard: TargetGuard,
        *,
        timeout_s: float,
        max_response_bytes: int,
        wall_clock: Clock | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.guard = guard
        self.timeout_s = timeout_s
        self.max_response_bytes = max_response_bytes
        # Receivers check webhook-timestamp against their own clock: it is real time, even when the
        # service's clock is scaled (demo) or fake (tests).
        self.wall_clock = wall_clock or SystemClock()
        self.client = httpx.AsyncClient(
            follow_redirects=False,
            trust_env=False,  # a proxy from the environment would connect somewhere the guard did not check
            timeout=httpx.Timeout(timeout_s),
            headers={"user-agent": USER_AGENT},
            transport=transport,
        )

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self.client.aclose()

    async def send(self, url: str, body: bytes, msg_id: str, secrets: Sequence[str]) -> AttemptResult:
        """POST ``body`` to ``url`` signed with ``secrets``; the result says what happened."""
        started = time.perf_counter()

        def took() -> int:
            return int((time.perf_counter() - started) * 1000)

        try:
            target, addresses = await self.guard.check(url)
        except TargetRefused as exc:
            return AttemptResult(False, took(), error=f"refused target: {exc}", outcome="refused_target")
        except ValueError as exc:
            return AttemptResult(False, took(), error=f"invalid url: {exc}", outcome="invalid_url")
        now = self.wall_clock.now().astimezone(UTC)
        headers = {
            "content-type": CONTENT_TYPE,
            "host": target.host_header,
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": signature_header(secrets, msg_id, now, body),
        }
        try:
            async with asyncio.timeout(self.timeout_s):
                async with self.client.stream(
                    "POST",
                    target.url_for(addresses[0]),
                    content=body,
                    headers=headers,
                    extensions={"sni_hostname": target.host},
                ) as response:
                    excerpt = await self._read_start(response)
        except (TimeoutError, httpx.TimeoutException):
            return AttemptResult(False, took(), error=f"timed out after {self.timeout_s:g}s", outcome="timeout")
        except httpx.HTTPError as exc:
            return AttemptResult(False, took(), error=f"{type(exc).__name__}: {exc}"[:500], outcome="connection_error")
        status = response.status_code
        if 200 <= status < 300:
            return AttemptResult(True, took(), status_code=status, response_excerpt=excerpt)
        error = f"HTTP {status}"
        if 300 <= status < 400:
            error += " (redirects are not followed: subscribe the final URL)"
        return AttemptResult(
            False, took(), status_code=status, error=error, response_excerpt=excerpt, outcome="http_error"
        )

    async def _read_start(self, response: httpx.Response) -> str | None:
        """The first ``max_response_bytes`` of the answer as text (the rest is never read)."""
        if self.max_response_bytes <= 0:
            return None
        data = bytearray()
        async for chunk in response.aiter_raw():
            data += chunk
            if len(data) >= self.max_response_bytes:
                break
        text = bytes(data[: self.max_response_bytes]).decode("utf-8", "replace").replace("\x00", "")
        return text[: domain.MAX_EXCERPT] or None
