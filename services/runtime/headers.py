"""Kafka header values as text, for the lookups every consumed record goes through.

``headers_dict`` (the contract's) decodes every header of a record; a consumer deciding whether to skip a record,
or whose person's key to look up, needs two or three of them, and their values repeat (a few event types and
workspaces): each is decoded once and kept, in a bounded cache.

It also names the ``dlq_*`` headers of a dead letter (:data:`DLQ_HEADER_PREFIX`): the dead-letter publisher writes
them, ``leadstream dlq`` reads and strips them, and the CLI should not import the publisher (FastStream) to do so.
"""

from __future__ import annotations

from typing import Any

DLQ_HEADER_PREFIX = "dlq_"
"""The prefix of the headers a dead letter carries about its failure (``dlq_error_code``, ``dlq_original_topic``, ...;
see :func:`services.runtime.consuming.deadletter.dead_letter_headers`)."""

_TEXTS: dict[bytes, str] = {}
TEXTS_MAX = 10_000
"""Header values kept as text at most (the cache starts over past it)."""


def header_text(v: Any) -> str | None:
    """A header value as ``headers_dict`` gives it: bytes decoded as UTF-8 (undecodable bytes replaced), anything
    else as ``str``, None as None."""
    if type(v) is bytes:
        text = _TEXTS.get(v)
        if text is None:
            text = v.decode("utf-8", "replace")
            if len(_TEXTS) >= TEXTS_MAX:
                _TEXTS.clear()
            _TEXTS[v] = text
        return text
    return v.decode("utf-8", "replace") if isinstance(v, bytearray) else None if v is None else str(v)


def header_of(headers: Any, name: str) -> str | None:
    """The value ``headers_dict(headers).get(name)`` gives, without decoding the other headers: Kafka's list of
    pairs or a mapping; the last value of a repeated name (a None value is passed over, as there)."""
    return headers_of(headers, name)[0]


def headers_of(headers: Any, *names: str) -> tuple[str | None, ...]:
    """:func:`header_of` for several names, the headers read once."""
    h = headers if type(headers) is dict else dict(headers or ())
    out: list[str | None] = []
    for name in names:
        v = h.get(name)
        if v is None and name in h:  # an explicit None: headers_dict skips it, and takes an earlier value if any
            pairs = headers.items() if hasattr(headers, "items") else headers
            values = [raw for n, raw in pairs if n == name and raw is not None]
            out.append(header_text(values[-1]) if values else None)
        else:
            out.append(header_text(v))
    return tuple(out)
