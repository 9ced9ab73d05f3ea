"""Signed inbound webhooks (Standard Webhooks, verified with the ``standardwebhooks`` library) and signed
one-click links.

A webhook carries ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature`` headers; the signature is
``v1,<base64 HMAC-SHA256 of "id.timestamp.raw_body">`` keyed with the bytes of a ``whsec_<base64>`` secret,
so any Standard Webhooks sender (Svix, a provider's own library) can call us. A request is refused when
its body is larger than the route's cap (the edge's :class:`~services.runtime.edge.InputGuard` counts it as it
arrives, before anything else: register the route with :meth:`Service.limit_body`), a header is missing, the
timestamp is outside the tolerance, no key of the purpose's :class:`~services.runtime.secrets.KeyRing`
matches (rotation: old and new keys verify), or the id was seen before (:func:`remember`, a replay).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from fastapi import Request
from sqlalchemy import Column, DateTime, MetaData, Table, Text, delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection
from standardwebhooks import Webhook, WebhookVerificationError

from .errors import Problem
from .secrets import KeyRing

DEFAULT_MAX_BYTES = 256 * 1024
"""Webhook bodies larger than this are refused (413) before their signature is computed (the routes' cap at the
edge, ``webhook_max_bytes``)."""


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value for a payload (the library's signature)."""
    return Webhook(secret).sign(msg_id, datetime.fromtimestamp(timestamp, UTC), body)


def signed_headers(secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """Headers a sender (a provider, or a test) attaches to a webhook."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, msg_id, timestamp, body),
    }


@dataclass(frozen=True)
class VerifiedWebhook:
    """A webhook whose signature and timestamp checked out, and the purpose whose key signed it."""

    msg_id: str
    timestamp: datetime
    purpose: str


def verify(
    rings: KeyRing | Sequence[KeyRing], headers: Mapping[str, str], body: bytes, now: datetime, tolerance_s: int
) -> VerifiedWebhook:
    """Check headers, timestamp and signature against every key of ``rings``; raises a 401 :class:`Problem`
    saying which check failed. ``now`` is the wall clock (senders sign with real time)."""
    lower = {k.lower(): v for k, v in headers.items()}
    msg_id, ts = lower.get("webhook-id"), lower.get("webhook-timestamp")
    if not msg_id or not ts or not lower.get("webhook-signature"):
        raise Problem(401, "invalid_signature", "missing webhook-id, webhook-timestamp or webhook-signature header")
    if len(msg_id) > 256:
        raise Problem(401, "invalid_signature", "webhook-id is longer than 256 characters")
    try:
        ts_int = int(ts)
    except ValueError:
        raise Problem(401, "invalid_signature", "webhook-timestamp is not a Unix timestamp") from None
    if abs(ts_int - now.timestamp()) > tolerance_s:  # checked before building a datetime, which may overflow
        raise Problem(401, "stale_webhook", f"webhook-timestamp is more than {tolerance_s}s away from now")
    for ring in [rings] if isinstance(rings, KeyRing) else rings:
        for key in ring.keys:
            try:
                Webhook(key).verify(body, lower, json_parse=False)
            except WebhookVerificationError as exc:
                if "timestamp" in str(exc).lower():  # the library's own 5-minute window on the real clock
                    raise Problem(401, "stale_webhook", "webhook-timestamp is too far from now") from None
                continue
            return VerifiedWebhook(msg_id, datetime.fromtimestamp(ts_int, tz=now.tzinfo or UTC), ring.purpose)
    raise Problem(401, "invalid_signature", "webhook signature does not match the body")


async def verified_request(
    request: Request,
    rings: KeyRing | Sequence[KeyRing],
    *,
    now: datetime,
    tolerance_s: int,
) -> tuple[VerifiedWebhook, bytes]:
    """The request's body once its signature checked out. Its size is capped at the edge before it is read
    (:meth:`services.runtime.service.Service.limit_body` with ``webhook_max_bytes`` for a webhook route)."""
    body = await request.body()
    return verify(rings, request.headers, body, now, tolerance_s), body


def seen_webhooks_table(metadata: MetaData) -> Table:
    """A service's table of webhook ids already accepted (replay protection)."""
    return Table(
        "seen_webhooks",
        metadata,
        Column("msg_id", Text, primary_key=True),
        Column("received_at", DateTime(timezone=True), nullable=False),
    )


async def remember(conn: AsyncConnection, table: Table, hook: VerifiedWebhook, now: datetime) -> bool:
    """Record the webhook id in the caller's transaction; False when it was seen before (a replay).

    ``now`` is the wall clock: the retention of :func:`prune_seen` is counted in real time.
    """
    result = await conn.execute(insert(table).values(msg_id=hook.msg_id, received_at=now).on_conflict_do_nothing())
    return bool(result.rowcount)


async def prune_seen(conn: AsyncConnection, table: Table, before: datetime, batch: int = 5000) -> int:
    """Forget webhook ids received before ``before`` (at most ``batch``); returns how many went."""
    oldest = select(table.c.msg_id).where(table.c.received_at < before).limit(batch).with_for_update(skip_locked=True)
    result = await conn.execute(delete(table).where(table.c.msg_id.in_(oldest.scalar_subquery())))
    return int(result.rowcount or 0)


def link_token(ring: KeyRing, *parts: str) -> str:
    """An HMAC token binding ``parts`` (e.g. workspace and lead id) for a one-click link, made with the
    signing key of ``ring``."""
    return _link_mac(ring.signing, parts)


def _link_mac(key: str, parts: Sequence[str]) -> str:
    mac = hmac.new(key.encode(), "|".join(parts).encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac[:24]).decode().rstrip("=")


def check_link_token(ring: KeyRing, token: str, *parts: str) -> bool:
    """True when ``token`` was made by :func:`link_token` for the same parts with any key of ``ring``."""
    given = token.encode("utf-8", "replace")
    return any(hmac.compare_digest(_link_mac(key, parts).encode(), given) for key in ring.keys)
