"""Reading a Server-Sent Events stream (the projection's change stream, which the console relays)."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass


@dataclass(frozen=True)
class SseEvent:
    """One event of a stream: its type (``message`` when unnamed), data and id (None when it set none)."""

    event: str
    data: str
    id: str | None


async def parse(lines: AsyncIterable[str]) -> AsyncIterator[SseEvent]:
    """The events of a stream given as lines without their line ends (the WHATWG rules, minus ``retry``).

    Comments (``:`` lines, the keep-alive pings) are skipped; an event without data is not dispatched.
    """
    event, last_id = "", None
    data: list[str] = []
    async for line in lines:
        if not line:
            if data:
                yield SseEvent(event or "message", "\n".join(data), last_id)
            event, data = "", []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
        elif name == "id" and "\0" not in value:
            last_id = value
