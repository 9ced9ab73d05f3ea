"""Upcasters: read an old event version as the current one.

A breaking change to an event is a new type string (``....v2``) plus an upcaster that turns a v1
payload into a v2 payload. Decoding applies upcasters in a chain until the type has none, so replay
of an old log yields only current models.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Payload = dict[str, Any]
UpcastFn = Callable[[Payload], Payload]

UPCASTERS: dict[str, tuple[str, UpcastFn]] = {}


def upcaster(from_type: str, to_type: str) -> Callable[[UpcastFn], UpcastFn]:
    """Register ``fn`` as the upcaster from ``from_type`` to ``to_type``."""

    def deco(fn: UpcastFn) -> UpcastFn:
        if from_type in UPCASTERS:
            raise ValueError(f"an upcaster from {from_type!r} already exists")
        UPCASTERS[from_type] = (to_type, fn)
        return fn

    return deco


def upcast(event_type: str, payload: Payload) -> tuple[str, Payload]:
    """Apply registered upcasters until ``event_type`` is current; returns (type, payload)."""
    seen = {event_type}
    while event_type in UPCASTERS:
        event_type, fn = UPCASTERS[event_type]
        if event_type in seen:
            raise ValueError(f"upcaster cycle at {event_type!r}")
        seen.add(event_type)
        payload = fn(dict(payload))
    return event_type, payload
