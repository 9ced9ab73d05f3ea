"""Inbound messages read without I/O: a raw email from the mailbox as what a reply needs (which of our emails it
answers, who wrote it, its own words, whether it is an automatic answer), and the thread references to match.

Our emails carry deterministic Message-IDs (``adapters/smtp.py``), and a reply names the message it answers in
``In-Reply-To`` and ``References``: that is the sure match. The sender's address is the fallback.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import getaddresses, parsedate_to_datetime

MESSAGE_ID = re.compile(r"<[^<>\s]{1,500}>")
AUTO_HEADERS = ("auto-submitted", "x-autoreply", "x-autorespond", "x-auto-response-suppress", "precedence")
_QUOTE_INTRO = re.compile(
    r"^\s*(on .{0,200}wrote:|am .{0,200}schrieb .{0,100}:|-{2,}\s*original message\s*-{2,}|from:\s.*)$", re.I
)
_BOUNCE_SENDERS = re.compile(r"^(mailer-daemon|postmaster)@", re.I)


@dataclass(frozen=True)
class InboundEmail:
    """What a reply from the mailbox says. ``key`` is its identity (Message-ID, else a digest of the message)."""

    key: str
    sender: str | None
    recipients: tuple[str, ...] = ()
    subject: str = ""
    references: tuple[str, ...] = ()
    received_at: datetime | None = None
    text: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    bounce: bool = False


def _addresses(msg: EmailMessage, *names: str) -> list[str]:
    values = [str(v) for n in names for v in (msg.get_all(n) or [])]
    return [addr.strip().lower() for _, addr in getaddresses(values) if "@" in addr]


def _body(msg: EmailMessage) -> str:
    part = msg.get_body(preferencelist=("plain", "html"))
    if part is None:
        return ""
    try:
        content = part.get_content()
    except (LookupError, UnicodeError, ValueError):
        payload = part.get_payload(decode=True)
        content = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    text = str(content)
    if part.get_content_type() == "text/html":
        text = re.sub(r"<[^>]+>", " ", text)
    return text


def own_words(body: str, limit: int = 4000) -> str:
    """The reply's own text: the quoted message it answers (``>`` lines, "On ... wrote:" and what follows) cut."""
    kept: list[str] = []
    for line in body.replace("\r\n", "\n").split("\n"):
        if _QUOTE_INTRO.match(line) and kept:
            break
        if line.lstrip().startswith(">"):
            continue
        kept.append(line.rstrip())
    text = "\n".join(kept).strip()
    return re.sub(r"\n{3,}", "\n\n", text)[:limit].replace("\x00", "")


def parse_email(raw: bytes) -> InboundEmail:
    """An email as a reply: sender, recipients, subject, thread references, date, own words, auto-reply headers."""
    msg = message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    message_id = MESSAGE_ID.search(str(msg.get("Message-ID", "")))
    key = message_id.group(0) if message_id else "sha256:" + hashlib.sha256(raw).hexdigest()
    refs = MESSAGE_ID.findall(f"{msg.get('In-Reply-To', '')} {msg.get('References', '')}")
    senders = _addresses(msg, "From")
    received: datetime | None = None
    try:
        received = parsedate_to_datetime(str(msg["Date"])) if msg["Date"] else None
        if received is not None and received.tzinfo is None:
            received = received.replace(tzinfo=UTC)
    except (TypeError, ValueError, IndexError):
        received = None
    sender = senders[0] if senders else None
    bounce = msg.get_content_type() == "multipart/report" or bool(sender and _BOUNCE_SENDERS.match(sender))
    return InboundEmail(
        key=key[:500],
        sender=sender,
        recipients=tuple(_addresses(msg, "To", "Cc", "Delivered-To")),
        subject=str(msg.get("Subject", ""))[:500],
        references=tuple(dict.fromkeys(r[:500] for r in refs))[:50],
        received_at=received,
        text="" if bounce else own_words(_body(msg)),
        headers={h: str(msg[h]) for h in AUTO_HEADERS if msg[h] is not None},
        bounce=bounce,
    )
