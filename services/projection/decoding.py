"""The projection's record decoder: the contract's ``decode()`` verdict at about a third of its cost.

A replay decodes every record of the log, so the per-record overhead around pydantic's validation
dominates: a headers dict of decoded strings, three ``UUID`` objects, a frozen dataclass. The
projection needs none of them: it keys events by their id as a canonical string and never reads the
source or the correlation ids. :func:`decode_record` therefore

- decodes a lead event's payload into its msgspec mirror (:mod:`.mirrors`: the model's fields, a
  subset of what the model accepts, with the same values), and any other payload exactly as
  ``decode()`` does (the event model's ``model_validate_json``); a payload the mirror refuses, or that
  may hold a NUL or a lone surrogate, goes to ``decode()``;
- checks the ids with a regular expression for the canonical spelling ``str(UUID)`` produces, and
  builds a ``UUID`` only for any other spelling (to accept or reject exactly what ``decode()`` does,
  and to key the event by its canonical form);
- returns a light :class:`DecodedEvent` with the attributes the projection reads.

Everything it does not handle itself (a missing or empty header, another specversion, a type with an
upcaster, an unknown type, an invalid payload or header, bytes that are not UTF-8) goes to the
contract's ``decode()``: a record is accepted or rejected exactly as ``decode()`` would, with the same
error code and message, and upcasters still apply.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple
from uuid import UUID

from leadstream_schemas import Envelope, Event, decode
from leadstream_schemas.base import EVENT_TYPES
from leadstream_schemas.bounds import may_hold_unstorable
from leadstream_schemas.envelope import (
    H_CAMPAIGN,
    H_CAUSATION,
    H_CORRELATION,
    H_ID,
    H_SOURCE,
    H_SPECVERSION,
    H_TIME,
    H_TYPE,
    H_WORKSPACE,
    SPECVERSION,
)
from leadstream_schemas.upcasting import UPCASTERS

from .mirrors import mirror_decoder

_CANONICAL_UUID: Callable[[bytes], Any] = re.compile(
    rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
).fullmatch
_SPEC = SPECVERSION.encode()


class DecodedEvent(NamedTuple):
    """A decoded record as the projection reads it: ``Envelope``'s attributes, the id as canonical text.

    ``id`` is ``str(UUID(ce_id))``; ``type`` is the current event type (after upcasting).
    """

    data: Any
    """The payload: the contract's model, or its mirror (a lead event, :mod:`.mirrors`), which has the same
    attributes."""
    id: str
    type: str
    time: datetime
    workspace_id: str
    campaign_id: str | None

    @classmethod
    def of(cls, env: Envelope[Event]) -> DecodedEvent:
        """The same event from an envelope (the contract decoder's result)."""
        return cls(env.data, str(env.id), env.type, env.time, env.workspace_id, env.campaign_id)


class _Fallback(Exception):
    """The fast path does not handle this record: the contract's decoder decides."""


_TEXT: dict[bytes, str] = {}
"""Recent type, workspace and campaign header values as text (few distinct values; bounded)."""
_TEXT_MAX = 10_000


def _text(raw: bytes) -> str:
    text = _TEXT.get(raw)
    if text is None:
        text = raw.decode()
        if len(_TEXT) >= _TEXT_MAX:
            _TEXT.clear()
        _TEXT[raw] = text
    return text


def _canonical(raw: bytes) -> str:
    """The canonical text of a UUID header (ValueError or UnicodeDecodeError when UUID() would not take it)."""
    if _CANONICAL_UUID(raw) is not None:
        return raw.decode()
    return str(UUID(raw.decode()))


def header_dicts(records: Sequence[Any]) -> list[dict[str, Any]]:
    """The headers of ``records`` as dicts, made once for the key lookup and the decoder of a batch."""
    return [dict(r.headers or ()) for r in records]


def decode_record(value: bytes | None, headers: Any) -> DecodedEvent:
    """Decode a Kafka record for the projection; raises the contract's ``DecodeError`` when ``decode()`` would.

    ``headers``: the record's (a list of pairs), or them as a dict (:func:`header_dicts`), which is read, not copied.
    """
    try:
        # The common case, inlined (it runs for every record of a replay).
        h = headers if type(headers) is dict else dict(headers)
        # not all(): a header without a value (None) goes to decode(), which passes it over; so does an empty one,
        # which costs the same verdict, and the test stays a truth test (``None in`` compares every value to None).
        if value is None or h.get(H_SPECVERSION) != _SPEC or not all(h.values()) or H_SOURCE not in h:
            raise _Fallback
        # A NUL or a lone surrogate, which decode() refuses, can only be escaped in JSON: no backslash, neither. One
        # byte is looked for with memchr, a third of the time of the two of "\\u"; a value with another escape (a
        # newline, a quote) pays the exact check.
        if b"\\" in value and may_hold_unstorable(value):
            raise _Fallback
        texts = _TEXT
        raw = h[H_TYPE]
        event_type = texts.get(raw) or _text(raw)
        # Looked up every time (not cached with the text): the registries may change at run time.
        cls = EVENT_TYPES.get(event_type)
        if cls is None or event_type in UPCASTERS:
            raise _Fallback
        mirrored = mirror_decoder(cls)
        if mirrored is not None:
            data = mirrored.decode(value)  # a lead event's mirror; a payload it refuses goes to decode()
        else:
            data = cls.__pydantic_validator__.validate_json(value)  # what model_validate_json does
        time = datetime.fromisoformat(h[H_TIME].decode())
        if time.tzinfo is None:  # as decode(): a bare time is UTC
            time = time.replace(tzinfo=UTC)
        raw_id = h[H_ID]
        event_id = _canonical(raw_id)
        raw = h.get(H_CORRELATION)
        # A chain's first event is its own correlation: the same bytes, checked just above.
        if raw is not None and raw != raw_id and _CANONICAL_UUID(raw) is None:
            UUID(raw.decode())
        raw = h.get(H_CAUSATION)
        if raw is not None and _CANONICAL_UUID(raw) is None:
            UUID(raw.decode())
        raw = h[H_WORKSPACE]
        workspace = texts.get(raw) or _text(raw)
        raw = h.get(H_CAMPAIGN)
        campaign = None if raw is None else texts.get(raw) or _text(raw)
        return DecodedEvent(data, event_id, event_type, time, workspace, campaign)
    except Exception:
        # Whatever the reason (including a bug here), the contract's decoder gives the verdict.
        return DecodedEvent.of(decode(value, headers))
