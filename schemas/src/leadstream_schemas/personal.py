"""Personal data in event payloads: which fields hold it, and how it looks on the wire.

Every event class names its personal fields in ``personal`` (paths into the payload: ``"email"``,
``"recent_posts.*.text"``, where ``*`` is every item of a list or every value of a map). On Kafka the
string at each such path is either plaintext (events written before encryption, or by a producer that does
not encrypt) or a token ``pii1:<base64url(nonce | AES-GCM ciphertext)>`` encrypted with the data key of the
person the event is about: the workspace's lead (``workspaceid`` header, ``ce_subject`` = lead id). Keys
live in Postgres only (``services.runtime.personal``): a consumer without the key store reads the tokens
as opaque strings, and nothing else of the payload changes.

A token is longer than the text it holds, so it can exceed the ``maxLength`` the JSON Schema gives that text
(a writer bound on the plain text, :mod:`leadstream_schemas.bounds`). The published JSON Schemas therefore mark
every personal string (:data:`PERSONAL_KEYWORD`, with :data:`TOKEN_MAX_LENGTH_KEYWORD` = :func:`token_max_length`
of its ``maxLength``) and list each type's paths in ``x-leadstream.personal``, so that a consumer in another
language can validate a personal field as an opaque string up to the token's length (or decrypt first).

Erasing a person destroys their key (crypto-shredding): their tokens can no longer be read, and readers
that go through the key store show :data:`ERASED` at every personal path, for tokens and old plaintext
alike (the read-side upcaster of events written before encryption).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .base import EVENT_TYPES, Event

TOKEN_PREFIX = "pii1:"
"""How an encrypted personal string starts."""

TOKEN_MARK = b'"' + TOKEN_PREFIX.encode()
"""The bytes a record value holds when it holds at least one token."""

ERASED = "[erased]"
"""What a reader shows at a personal path of an erased person."""

TOKEN_NONCE_BYTES = 12
"""AES-GCM nonce at the start of a token's bytes."""

TOKEN_TAG_BYTES = 16
"""AES-GCM authentication tag at the end of a token's bytes."""

PERSONAL_KEYWORD = "x-leadstream-personal"
"""JSON Schema annotation (``true``) of a string that is personal: on the topics a ``pii1:`` token or ``[erased]``."""

TOKEN_MAX_LENGTH_KEYWORD = "x-leadstream-token-max-length"
"""JSON Schema annotation next to :data:`PERSONAL_KEYWORD`: the longest token of a string within its ``maxLength``."""

Path = tuple[str, ...]


def personal_paths(event_type: str | type[Event]) -> tuple[Path, ...]:
    """The personal paths of an event type (empty for unknown types and types without personal data)."""
    cls = EVENT_TYPES.get(event_type) if isinstance(event_type, str) else event_type
    if cls is None:
        return ()
    return tuple(tuple(p.split(".")) for p in getattr(cls, "personal", ()))


def token_max_length(max_length: int) -> int:
    """The longest ``pii1:`` token of a string of at most ``max_length`` characters.

    A token is the prefix and the base64url (padded) of nonce + UTF-8 text + tag; a character is at most 4 UTF-8
    bytes, so: ``5 + 4 * ceil((28 + 4 * max_length) / 3)`` characters (schemas/README.md gives the same formula).
    """
    if max_length < 0:
        raise ValueError(f"max_length must not be negative, got {max_length}")
    sealed_bytes = TOKEN_NONCE_BYTES + 4 * max_length + TOKEN_TAG_BYTES
    return len(TOKEN_PREFIX) + 4 * ((sealed_bytes + 2) // 3)  # integer ceil: exact for any bound


def map_personal(payload: dict[str, Any], paths: tuple[Path, ...], fn: Callable[[str], str]) -> dict[str, Any]:
    """``payload`` with ``fn`` applied to every string at a personal path (in place; returns it)."""
    for path in paths:
        _walk(payload, path, fn)
    return payload


def _walk(node: Any, path: Path, fn: Callable[[str], str]) -> None:
    head, rest = path[0], path[1:]
    if head == "*":
        children = (
            list(node.items()) if isinstance(node, dict) else list(enumerate(node)) if isinstance(node, list) else []
        )
    elif isinstance(node, dict) and head in node:
        children = [(head, node[head])]
    else:
        return
    for key, child in children:
        if not rest:
            if isinstance(child, str):
                node[key] = fn(child)
        elif child is not None:
            _walk(child, rest, fn)


def redact(payload: dict[str, Any], paths: tuple[Path, ...]) -> dict[str, Any]:
    """``payload`` with :data:`ERASED` at every personal path that holds a string (in place; returns it)."""
    return map_personal(payload, paths, lambda _: ERASED)
