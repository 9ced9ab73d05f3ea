"""Request bodies read with a cap, for the routes that read the raw body themselves (signed webhooks).

The body is read as a stream and the read stops at the cap: a client cannot make the service hold an
unbounded body in memory, nor make it compute an HMAC over one, before anything is checked. A declared
``Content-Length`` over the cap is refused without reading at all.
"""

from __future__ import annotations

from fastapi import Request

from .errors import Problem


def too_large(max_bytes: int) -> Problem:
    """The 413 problem of a body over ``max_bytes``."""
    return Problem(413, "body_too_large", f"the request body is larger than {max_bytes} bytes", max_bytes=max_bytes)


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The request's body, or a 413 :class:`Problem` as soon as it exceeds ``max_bytes``."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise too_large(max_bytes)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise too_large(max_bytes)
        chunks.append(chunk)
    return b"".join(chunks)
