"""Secrets: one key per purpose, rotation, development defaults, and the start-up policy.

Every key that signs or verifies something has its own setting (each provider's inbound webhooks, the
unsubscribe links, the console's sessions), so a leaked key opens one door. A setting holds a
comma-separated list of keys: the first signs, all verify. Rotating is: put the new key first and keep
the old one after it for as long as things it signed may still arrive (a webhook retried by its
sender, an unsubscribe link in an old email), then drop it.

``LEADSTREAM_ENV=development`` (the demo, the tests, compose) gives every unset key a fixed development
value, different per purpose. Anywhere else a service refuses to start while a key is unset, is a
development value or is too short, and says which setting it is (:func:`check`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import SecretStr

Environment = Literal["development", "production"]
KeyKind = Literal["whsec", "key", "credential"]

WHSEC_PREFIX = "whsec_"
MIN_WHSEC_BYTES = 24
"""Standard Webhooks secrets are 24 to 64 random bytes; fewer are refused."""
MIN_KEY_CHARS = 32
"""Other signing keys (unsubscribe links, console sessions): at least this many characters."""

KNOWN_WEAK = frozenset(
    {
        "dev-webhook-secret-change-me",
        "dev-console-session-secret-change-me",
        "change-me",
        "changeme",
        "secret",
        "password",
    }
)
"""Values that were defaults once, or are what people type: refused outside development whatever their length."""


def development_key(purpose: str, kind: KeyKind = "whsec") -> str:
    """The fixed key a purpose has in development (never valid anywhere else)."""
    raw = hashlib.sha256(f"leadstream development only: {purpose}".encode()).digest()
    if kind == "whsec":
        return WHSEC_PREFIX + base64.b64encode(raw).decode()
    return "dev-only-" + raw.hex()


def split_keys(value: SecretStr | str | None) -> list[str]:
    """The keys of a rotated setting: comma-separated, first signs; blanks ignored."""
    raw = value.get_secret_value() if isinstance(value, SecretStr) else (value or "")
    return [k.strip() for k in raw.split(",") if k.strip()]


def whsec_bytes(key: str) -> bytes | None:
    """The key bytes of a ``whsec_<base64>`` secret (None when it is not one)."""
    if not key.startswith(WHSEC_PREFIX):
        return None
    try:
        return base64.b64decode(key.removeprefix(WHSEC_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        return None


@dataclass(frozen=True)
class KeyRing:
    """The keys of one purpose: ``signing`` signs, every key of ``keys`` verifies."""

    purpose: str
    keys: tuple[str, ...]

    @property
    def signing(self) -> str:
        """The key new signatures are made with (the first)."""
        if not self.keys:
            raise LookupError(f"no key configured for {self.purpose}")
        return self.keys[0]


@dataclass(frozen=True)
class SecretSpec:
    """A secret setting a service needs, and how it is checked outside development.

    ``whsec``: a Standard Webhooks secret (``whsec_`` + base64 of at least 24 bytes); ``key``: a signing
    key of at least 32 characters; ``credential``: a provider's API key or password (only required to be set:
    its provider defines its format). ``dev_default``: the value development gives it when unset.
    """

    setting: str
    value: SecretStr | None
    purpose: str
    kind: KeyKind
    dev_default: str | None = None

    def keys(self, env: Environment) -> list[str]:
        """The configured keys, else (in development) the development value."""
        keys = split_keys(self.value)
        if not keys and env == "development" and self.dev_default:
            return [self.dev_default]
        return keys

    def ring(self, env: Environment) -> KeyRing:
        """The keys as a :class:`KeyRing`."""
        return KeyRing(self.purpose, tuple(self.keys(env)))

    def problems(self) -> list[str]:
        """What is wrong with this secret for production (empty when nothing)."""
        keys = split_keys(self.value)
        name = f"{self.setting} ({self.purpose})"
        if not keys:
            return [f"{name} is not set"]
        out: list[str] = []
        for i, key in enumerate(keys):
            which = name if len(keys) == 1 else f"{name}, key {i + 1} of {len(keys)}"
            if key == self.dev_default or key.startswith("dev-only-") or key.lower() in KNOWN_WEAK:
                out.append(f"{which} is a development default")
            elif self.kind == "whsec":
                raw = whsec_bytes(key)
                if raw is None:
                    out.append(f"{which} is not a Standard Webhooks secret (whsec_ followed by base64)")
                elif len(raw) < MIN_WHSEC_BYTES:
                    out.append(f"{which} is too short ({len(raw)} bytes; at least {MIN_WHSEC_BYTES})")
                elif raw == base64.b64decode((self.dev_default or WHSEC_PREFIX).removeprefix(WHSEC_PREFIX)):
                    out.append(f"{which} is a development default")
            elif self.kind == "key" and len(key) < MIN_KEY_CHARS:
                out.append(f"{which} is too short ({len(key)} characters; at least {MIN_KEY_CHARS})")
        return out


class InsecureConfiguration(Exception):
    """The settings are not fit to run outside development; ``problems`` lists each, naming its setting."""

    def __init__(self, service: str, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__(f"{service} refuses to start (LEADSTREAM_ENV is not development): " + "; ".join(self.problems))


def check(service: str, env: Environment, specs: Iterable[SecretSpec], other_problems: Iterable[str] = ()) -> None:
    """Raise :class:`InsecureConfiguration` outside development when a secret or other setting is unfit."""
    if env == "development":
        return
    problems = [p for spec in specs for p in spec.problems()] + list(other_problems)
    if problems:
        raise InsecureConfiguration(service, problems)
