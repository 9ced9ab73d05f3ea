"""The SMTP sender's mailbox over IMAP (aioimaplib): new messages since a UID, and an IDLE wait for new mail.

A poll logs in, selects the mailbox, and fetches the raw messages after the last UID it handled, at most
``limit`` of them (``BODY.PEEK[]``: nothing is marked as read). UIDs are only valid within the mailbox's
UIDVALIDITY: when it changes (the mailbox was rebuilt), or on the first poll, the messages since a
date are fetched instead (``SEARCH SINCE``), and the caller's memory of message ids keeps anything from being
taken twice. Failures map onto the shared provider errors: a refused login is permanent (the settings are
wrong), anything else (connection refused or lost, a timeout, a ``NO``/``BAD`` answer) is transient.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from datetime import date

import aioimaplib

from services.runtime.providers import ProviderError

_UIDVALIDITY = re.compile(rb"UIDVALIDITY (\d+)")
_FETCH_UID = re.compile(rb"UID (\d+)")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass(frozen=True)
class RawMail:
    """One message of the mailbox: its UID and its raw RFC 5322 bytes."""

    uid: int
    raw: bytes


@dataclass(frozen=True)
class MailBatch:
    """What a poll found: the mailbox's UIDVALIDITY, messages in UID order, and whether more are waiting."""

    uidvalidity: int
    messages: list[RawMail]
    more: bool


def imap_date(day: date) -> str:
    """A date as IMAP's SEARCH wants it (``5-Mar-2026``), whatever the locale."""
    return f"{day.day}-{_MONTHS[day.month - 1]}-{day.year}"


class ImapMailbox:
    """One mailbox (``mailbox``, INBOX by default) of one IMAP login."""

    name = "imap"

    def __init__(
        self,
        host: str,
        port: int,
        username: str,
        password: str,
        *,
        mailbox: str = "INBOX",
        use_tls: bool = True,
        timeout_s: float = 20.0,
    ) -> None:
        self.host, self.port, self.username, self._password = host, port, username, password
        self.mailbox, self.use_tls, self.timeout_s = mailbox, use_tls, timeout_s

    @property
    def key(self) -> str:
        """The inbox's identity for its cursor (no password)."""
        return f"imap:{self.username}@{self.host}:{self.port}/{self.mailbox}"

    async def _connect(self) -> aioimaplib.IMAP4:
        cls = aioimaplib.IMAP4_SSL if self.use_tls else aioimaplib.IMAP4
        client = cls(host=self.host, port=self.port, timeout=self.timeout_s)
        try:
            await asyncio.wait_for(client.wait_hello_from_server(), self.timeout_s)
        except (OSError, TimeoutError) as exc:
            raise ProviderError(f"IMAP server {self.host}:{self.port} unreachable: {exc!r}", transient=True) from exc
        login = await client.login(self.username, self._password)
        if login.result != "OK":
            await _close(client)
            raise ProviderError(
                f"IMAP login refused for {self.username}: check LEADSTREAM_IMAP_USERNAME and LEADSTREAM_IMAP_PASSWORD",
                transient=False,
            )
        return client

    async def fetch(self, uidvalidity: int | None, after_uid: int, since: date, limit: int) -> MailBatch:
        """Messages after ``after_uid`` (with the same UIDVALIDITY), else those since ``since``; ``limit`` at most."""
        try:
            client = await self._connect()
        except aioimaplib.Abort as exc:
            raise ProviderError(f"IMAP session aborted: {exc}", transient=True) from exc
        try:
            selected = await client.select(self.mailbox)
            if selected.result != "OK":
                raise ProviderError(f"IMAP mailbox {self.mailbox!r} cannot be opened: {selected.lines}", transient=True)
            found = _UIDVALIDITY.search(b" ".join(_bytes(x) for x in selected.lines))
            validity = int(found.group(1)) if found else 0
            criteria = (
                f"UID {after_uid + 1}:*" if uidvalidity == validity and after_uid > 0 else f"SINCE {imap_date(since)}"
            )
            searched = await client.uid_search(criteria)
            if searched.result != "OK":
                raise ProviderError(f"IMAP search failed: {searched.lines}", transient=True)
            uids = sorted(int(u) for line in searched.lines[:-1] for u in _bytes(line).split() if u.isdigit())
            if criteria.startswith("UID"):  # "n:*" also answers the last message when none is newer
                uids = [u for u in uids if u > after_uid]
            batch, more = uids[:limit], len(uids) > limit
            messages: list[RawMail] = []
            if batch:
                fetched = await client.uid("fetch", ",".join(str(u) for u in batch), "(UID BODY.PEEK[])")
                if fetched.result != "OK":
                    raise ProviderError(f"IMAP fetch failed: {fetched.lines[-1:]}", transient=True)
                messages = _messages(fetched.lines)
            return MailBatch(validity, sorted(messages, key=lambda m: m.uid), more)
        except (OSError, TimeoutError, aioimaplib.Abort, aioimaplib.CommandTimeout) as exc:
            raise ProviderError(f"IMAP session with {self.host} failed: {exc!r}", transient=True) from exc
        finally:
            await _close(client)

    async def wait_for_mail(self, timeout_s: float, idling: asyncio.Event | None = None) -> bool:
        """IMAP IDLE: True when the server announces new mail within ``timeout_s``, False when nothing came.
        ``idling`` is set once the server has accepted the IDLE (mail arriving from then on is announced)."""
        client = await self._connect()
        try:
            await client.select(self.mailbox)
            idle = await client.idle_start(timeout=timeout_s)
            if idling is not None:
                idling.set()
            try:
                pushed = await client.wait_server_push(timeout=timeout_s)
            except TimeoutError:
                pushed = []
            client.idle_done()
            try:
                await asyncio.wait_for(idle, self.timeout_s)
            except TimeoutError:
                pass
            lines = pushed if isinstance(pushed, list) else [pushed]
            return any(b"EXISTS" in _bytes(line) for line in lines)
        finally:
            await _close(client)


def _bytes(value: object) -> bytes:
    return bytes(value) if isinstance(value, bytes | bytearray) else str(value).encode()


def _messages(lines: list[object]) -> list[RawMail]:
    """The (UID, raw message) pairs of a FETCH answer: a ``* n FETCH (UID u BODY[] {size}`` line, the literal."""
    out: list[RawMail] = []
    uid: int | None = None
    for line in lines:
        if isinstance(line, bytearray):  # the message literal follows the line that announced it
            if uid is not None:
                out.append(RawMail(uid, bytes(line)))
                uid = None
            continue
        found = _FETCH_UID.search(_bytes(line))
        if found and b"FETCH" in _bytes(line):
            uid = int(found.group(1))
    return out


async def _close(client: aioimaplib.IMAP4) -> None:
    try:
        await asyncio.wait_for(client.logout(), 5)
    except Exception:
        pass
