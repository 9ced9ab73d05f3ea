"""Sign-in, sessions and one-time sign-in links: the console's write commands (the routes call these).

A session is a random id in a signed, HttpOnly, SameSite=Lax cookie; the row it names (by hash) holds
the workspace and its API token, encrypted. Signing out deletes the row, so a copied cookie stops
working at once. A sign-in link is a random code (by hash) valid once, for a few minutes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from services.runtime.clock import Clock

from .store import sessions, sign_in_links

SESSION_COOKIE = "ls_session"
CSRF_COOKIE = "ls_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _fernet_key(secret: str) -> bytes:
    return base64.urlsafe_b64encode(hashlib.sha256(b"leadstream-console-token-key\0" + secret.encode()).digest())


class Vault:
    """The session secret's uses: cookie signatures and the encryption of stored tokens (separate keys)."""

    def __init__(self, secret: str | Sequence[str]) -> None:
        # A rotation list (LEADSTREAM_CONSOLE_SESSION_SECRET "new,old"): the first key signs and encrypts, every
        # key opens, so sessions made before a rotation last until the old key is dropped.
        keys = [secret] if isinstance(secret, str) else list(secret)
        self._fernet = MultiFernet(
            [
                Fernet(
                    base64.urlsafe_b64encode(hashlib.sha256(b"leadstream-console-token-key\0" + k.encode()).digest())
                )
                for k in keys
            ]
        )
        # itsdangerous signs with the last key of its list and verifies with all.
        self._cookies = URLSafeSerializer(list(reversed(keys)), salt="leadstream-console-cookie")

    def encrypt(self, token: str) -> bytes:
        return self._fernet.encrypt(token.encode())

    def decrypt(self, blob: bytes) -> str | None:
        try:
            return self._fernet.decrypt(blob).decode()
        except InvalidToken:
            return None  # the secret changed since: the session is gone

    def sign(self, value: str) -> str:
        return str(self._cookies.dumps(value))

    def unsign(self, signed: str | None) -> str | None:
        if not signed or len(signed) > 512:
            return None
        try:
            value = self._cookies.loads(signed)
        except BadSignature:
            return None
        return value if isinstance(value, str) else None


def new_secret() -> str:
    """A fresh random value for a session id, a link code or a CSRF token."""
    return secrets.token_urlsafe(32)


def same(a: str | None, b: str | None) -> bool:
    """Constant-time equality of two secrets (False when either is missing)."""
    return bool(a) and bool(b) and hmac.compare_digest(str(a).encode(), str(b).encode())


@dataclass(frozen=True)
class Session:
    """A signed-in browser: its workspace and that workspace's API token."""

    id: str
    workspace_id: str
    token: str
    expires_at: datetime


@dataclass(frozen=True)
class Link:
    """A sign-in link still usable: its workspace and expiry."""

    workspace_id: str
    expires_at: datetime


class SessionStore:
    """Sessions and sign-in links in the console's schema."""

    def __init__(self, engine: AsyncEngine, vault: Vault, clock: Clock, ttl: timedelta, link_ttl: timedelta) -> None:
        self.engine = engine
        self.vault = vault
        self.clock = clock
        self.ttl = ttl
        self.link_ttl = link_ttl

    async def create(self, workspace_id: str, token: str) -> Session:
        """A new session for a token a backend accepted (and expired rows swept)."""
        sid, now = new_secret(), self.clock.now()
        expires = now + self.ttl
        async with self.engine.begin() as conn:
            await conn.execute(delete(sessions).where(sessions.c.expires_at < now))
            await conn.execute(
                insert(sessions).values(
                    id_hash=_digest(sid),
                    workspace_id=workspace_id,
                    token=self.vault.encrypt(token),
                    created_at=now,
                    expires_at=expires,
                )
            )
        return Session(sid, workspace_id, token, expires)

    async def get(self, sid: str | None) -> Session | None:
        """The live session with this id, else None."""
        if not sid:
            return None
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(sessions).where(sessions.c.id_hash == _digest(sid)))).first()
        if row is None or row.expires_at <= self.clock.now():
            return None
        token = self.vault.decrypt(row.token)
        return None if token is None else Session(sid, row.workspace_id, token, row.expires_at)

    async def end(self, sid: str | None) -> None:
        """Sign out: the session row goes, so the cookie is worthless wherever it is."""
        if sid:
            async with self.engine.begin() as conn:
                await conn.execute(delete(sessions).where(sessions.c.id_hash == _digest(sid)))

    async def create_link(self, workspace_id: str, token: str) -> tuple[str, datetime]:
        """A one-time sign-in code for a token a backend accepted, and when it expires."""
        code, now = new_secret(), self.clock.now()
        expires = now + self.link_ttl
        async with self.engine.begin() as conn:
            await conn.execute(delete(sign_in_links).where(sign_in_links.c.expires_at < now - timedelta(days=1)))
            await conn.execute(
                insert(sign_in_links).values(
                    code_hash=_digest(code),
                    workspace_id=workspace_id,
                    token=self.vault.encrypt(token),
                    created_at=now,
                    expires_at=expires,
                )
            )
        return code, expires

    async def peek_link(self, code: str) -> Link | None:
        """The link's workspace when it is unused and unexpired (the confirmation page shows it)."""
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(sign_in_links).where(sign_in_links.c.code_hash == _digest(code)))).first()
        if row is None or row.used_at is not None or row.expires_at <= self.clock.now():
            return None
        return Link(row.workspace_id, row.expires_at)

    async def use_link(self, code: str) -> tuple[str, str] | None:
        """(workspace, token) of an unused, unexpired link, marking it used in the same statement (once only)."""
        now = self.clock.now()
        async with self.engine.begin() as conn:
            row = (
                await conn.execute(
                    update(sign_in_links)
                    .where(
                        sign_in_links.c.code_hash == _digest(code),
                        sign_in_links.c.used_at.is_(None),
                        sign_in_links.c.expires_at > now,
                    )
                    .values(used_at=now)
                    .returning(sign_in_links.c.workspace_id, sign_in_links.c.token)
                )
            ).first()
        if row is None:
            return None
        token = self.vault.decrypt(row.token)
        return None if token is None else (row.workspace_id, token)
