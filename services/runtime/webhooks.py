"""Signed inbound webhooks (Standard Webhooks) and signed one-click links.

A webhook carries ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature`` headers; the
signature is ``v1,<base64 HMAC-SHA256 of "id.timestamp.raw_body">``. A request is refused when the
signature does not match, the timestamp is outside the tolerance, or the id was seen before (replay).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Column, DateTime, MetaData, Table, Text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from .errors import Problem


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value for a payload."""
    mac = hmac.new(secret.encode(), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def signed_headers(secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """Headers a sender (a provider, or a test) attaches to a webhook."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, msg_id, timestamp, body),
    }


@dataclass(frozen=True)
class VerifiedWebhook:
    """A webhook whose signature and timestamp checked out."""

    msg_id: str
    timestamp: datetime


def verify(secret: str, headers: dict[str, str], body: bytes, now: datetime, tolerance_s: int) -> VerifiedWebhook:
    """Check signature and timestamp; raises a 401 :class:`Problem` saying which check failed."""
    lower = {k.lower(): v for k, v in headers.items()}
    msg_id, ts, sig = lower.get("webhook-id"), lower.get("webhook-timestamp"), lower.get("webhook-signature")
    if not msg_id or not ts or not sig:
        raise Problem(401, "invalid_signature", "missing webhook-id, webhook-timestamp or webhook-signature header")
    try:
        ts_int = int(ts)
    except ValueError:
        raise Problem(401, "invalid_signature", "webhook-timestamp is not a Unix timestamp") from None
    if abs(ts_int - now.timestamp()) > tolerance_s:  # checked before building a datetime, which may overflow
        raise Problem(401, "stale_webhook", f"webhook-timestamp is more than {tolerance_s}s away from now")
    sent = datetime.fromtimestamp(ts_int, tz=now.tzinfo)
    expected = sign(secret, msg_id, ts_int, body).split(",", 1)[1]
    given = [s.split(",", 1)[1] for s in sig.split() if s.startswith("v1,")]
    # Compared as bytes: header values may hold any latin-1 character, which compare_digest refuses in a str.
    if not any(hmac.compare_digest(expected.encode(), g.encode("utf-8", "replace")) for g in given):
        raise Problem(401, "invalid_signature", "webhook signature does not match the body")
    return VerifiedWebhook(msg_id, sent)


def seen_webhooks_table(metadata: MetaData) -> Table:
    """A service's table of webhook ids already accepted (replay protection)."""
    return Table(
        "seen_webhooks",
        metadata,
        Column("msg_id", Text, primary_key=True),
        Column("received_at", DateTime(timezone=True), nullable=False),
    )


async def remember(conn: AsyncConnection, table: Table, hook: VerifiedWebhook, now: datetime) -> bool:
    """Record the webhook id in the caller's transaction; False when it was seen before (a replay)."""
    result = await conn.execute(insert(table).values(msg_id=hook.msg_id, received_at=now).on_conflict_do_nothing())
    return bool(result.rowcount)


def link_token(secret: str, *parts: str) -> str:
    """An HMAC token binding ``parts`` (e.g. workspace and lead id) for a one-click link (RFC 8058)."""
    mac = hmac.new(secret.encode(), "|".join(parts).encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac[:24]).decode().rstrip("=")


def check_link_token(secret: str, token: str, *parts: str) -> bool:
    """True when ``token`` was made by :func:`link_token` for the same parts."""
    return hmac.compare_digest(link_token(secret, *parts).encode(), token.encode("utf-8", "replace"))
