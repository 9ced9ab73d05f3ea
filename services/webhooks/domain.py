"""Webhook rules as pure functions: event-type filters, which addresses a subscriber URL may reach, the
retry schedule, and when a failing endpoint is disabled. No I/O here; :mod:`.worker` applies the decisions.
"""

from __future__ import annotations

import base64
import ipaddress
import random
import secrets
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from urllib.parse import urlsplit
from uuid import UUID

from services.runtime.faults import backoff_delay

NAMESPACE = uuid.UUID("0b6f1f0e-5c1d-5a53-8f0e-2f0a1c9d7e41")
SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
MAX_PATTERNS = 50
MAX_URL = 2000
MAX_EXCERPT = 1000
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class State(StrEnum):
    """A subscription's state: only active ones are delivered to (a disabled one keeps its queue)."""

    ACTIVE = "active"
    DISABLED = "disabled"


class DisabledReason(StrEnum):
    """Why a subscription is disabled."""

    OPERATOR = "operator"
    FAILING = "failing"


class Status(StrEnum):
    """A delivery's status: pending (queued or retrying), delivered (a 2xx), failed (given up), cancelled (its
    subscription stopped selecting its event type before it was delivered: never sent again unless redelivered)."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"
    CANCELLED = "cancelled"


UNSUBSCRIBED = "the subscription's event_types no longer select this event type"
"""The ``cancel_reason`` of a queued delivery whose type a change of ``event_types`` dropped."""


# -- event-type filters -----------------------------------------------------------------------------


def check_pattern(pattern: str, known: Iterable[str]) -> str:
    """A valid filter (``*``, an event type, or ``prefix.*``) that matches a known type; ValueError says why not."""
    known = list(known)
    if pattern == "*":
        return pattern
    if pattern.endswith(".*") and "*" not in pattern[:-2]:
        if not any(t.startswith(pattern[:-1]) for t in known):
            raise ValueError(f"{pattern!r} matches no event type")
        return pattern
    if "*" in pattern:
        raise ValueError("a wildcard may only end a pattern ('leadstream.lead.*') or stand alone ('*')")
    if pattern not in known:
        raise ValueError(f"unknown event type {pattern!r}")
    return pattern


def matches(patterns: Sequence[str], event_type: str) -> bool:
    """True when any pattern selects ``event_type``."""
    for p in patterns:
        if p == "*" or p == event_type or (p.endswith(".*") and event_type.startswith(p[:-1])):
            return True
    return False


def unselected(patterns: Sequence[str], event_types: Iterable[str]) -> list[str]:
    """The types among ``event_types`` that no pattern selects (what a change of filters drops)."""
    return [t for t in event_types if not matches(patterns, t)]


def selects(created_at: datetime, patterns: Sequence[str], event_time: datetime, event_type: str) -> bool:
    """Whether a subscription (created at ``created_at``, with filters ``patterns``) takes an event: one of a type
    it selects that happened after it was created (a consumer replaying the log from offset 0 does not send
    history to an endpoint that never asked for it)."""
    return event_time >= created_at and matches(patterns, event_type)


def delivery_id(subscription_id: UUID, event_id: UUID) -> UUID:
    """The id of an event's delivery to a subscription: fixed, so enqueueing twice is a no-op."""
    return uuid.uuid5(NAMESPACE, f"{subscription_id}|{event_id}")


def order_key(topic: str, subject: str) -> str:
    """What deliveries are ordered by per endpoint: the event's Kafka key within its topic (a lead, a campaign)."""
    return f"{topic}:{subject}"


def new_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` + base64 of 32 random bytes from the OS's CSPRNG."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


# -- subscriber URLs ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A subscriber URL taken apart: where to connect and what to ask for."""

    scheme: str
    host: str
    port: int
    path: str  # path and query, at least "/"

    @property
    def host_header(self) -> str:
        """The Host header (the name the subscriber is reached by; the port when not the default)."""
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"

    def url_for(self, address: IpAddress) -> str:
        """The URL with the host replaced by an address already checked (so no second lookup can differ)."""
        host = f"[{address}]" if address.version == 6 else str(address)
        return f"{self.scheme}://{host}:{self.port}{self.path}"


def parse_target(url: str, *, allow_http: bool) -> Target:
    """Check a subscriber URL's form; ValueError says what is wrong (addresses are checked separately)."""
    if len(url) > MAX_URL:
        raise ValueError(f"must be at most {MAX_URL} characters")
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        raise ValueError("must not contain whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"is not a valid URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in {"https", "http"}:
        raise ValueError("must be an https:// URL")
    if scheme == "http" and not allow_http:
        raise ValueError("must be an https:// URL (http is allowed only with LEADSTREAM_WEBHOOKS_ALLOW_HTTP)")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not carry credentials (user:password@); authenticate requests by their signature")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise ValueError("must name a host")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Target(scheme=scheme, host=host, port=port or (443 if scheme == "https" else 80), path=path)


NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, 6to4, Teredo client, NAT64), if any."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def refused_address(address: IpAddress) -> str | None:
    """Why this service must not connect to ``address`` (e.g. ``"loopback"``), or None for a public address."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id:
            return "link-local"
        inner = _embedded_ipv4(address)
        if inner is not None:  # the IPv4 address it stands for decides
            reason = refused_address(inner)
            return f"{reason} (as {address})" if reason else None
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if address.is_reserved:
        return "reserved"
    if address.is_private:
        return "private"
    if not address.is_global:
        return "reserved (not publicly routable)"
    return None


def refusal(host: str, addresses: Sequence[IpAddress]) -> str | None:
    """The reason a host's addresses are refused (any refused address refuses the host), or None."""
    for address in addresses:
        reason = refused_address(address)
        if reason:
            if str(address) == host:
                return f"{address} is not a public address ({reason})"
            return f"{host} resolves to {address}, which is not a public address ({reason})"
    return None


# -- attempts and their consequences ---------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """How often a delivery is tried and how long apart (exponential with jitter, capped)."""

    max_attempts: int = 15
    initial_s: float = 5.0
    max_s: float = 36_000.0
    jitter: float = 0.2

    def schedule(self) -> list[float]:
        """The waits between attempts without jitter (for documentation and tests)."""
        return [backoff_delay(i, self.initial_s, self.max_s) for i in range(self.max_attempts - 1)]


@dataclass(frozen=True)
class AttemptResult:
    """What one attempt to deliver got: a 2xx (``ok``), another status, or an error before any answer."""

    ok: bool
    duration_ms: int
    status_code: int | None = None
    error: str | None = None
    response_excerpt: str | None = None
    outcome: str = "delivered"  # metric label: delivered, http_error, timeout, connection_error, refused_target


@dataclass(frozen=True)
class AfterAttempt:
    """A delivery's next state after an attempt."""

    status: Status
    retry: int
    next_attempt_at: datetime | None


def after_attempt(
    retry: int, result: AttemptResult, policy: RetryPolicy, now: datetime, rng: random.Random | None = None
) -> AfterAttempt:
    """``retry`` attempts were made before this one (since the delivery was (re)queued): delivered, retry later,
    or give up once ``policy.max_attempts`` failed."""
    made = retry + 1
    if result.ok:
        return AfterAttempt(Status.DELIVERED, made, None)
    if made >= policy.max_attempts:
        return AfterAttempt(Status.FAILED, made, None)
    wait = backoff_delay(retry, policy.initial_s, policy.max_s, policy.jitter, rng)
    return AfterAttempt(Status.PENDING, made, now + timedelta(seconds=wait))


def should_disable(
    consecutive_failures: int, failing_since: datetime | None, now: datetime, *, min_failures: int, after: timedelta
) -> bool:
    """True when an endpoint failed ``min_failures`` attempts in a row and has not succeeded for ``after``."""
    return consecutive_failures >= min_failures and failing_since is not None and now - failing_since >= after


def disabled_detail(consecutive_failures: int, failing_since: datetime, last_error: str | None) -> str:
    """What the API shows about an endpoint disabled for failing."""
    return (
        f"{consecutive_failures} consecutive failed attempts since {failing_since.isoformat()}"
        f" (last: {last_error or 'unknown error'}); enable it to resume its queued deliveries"
    )
