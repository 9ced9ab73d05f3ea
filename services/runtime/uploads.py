"""A multipart file upload read as a stream: never spooled to disk, capped in bytes while it arrives.

FastAPI's ``UploadFile`` spools a file larger than 1 MiB to a temporary file before the route runs, so a large
upload fills the pod's ``/tmp`` (a small emptyDir on a read-only root filesystem) and nothing can refuse it
early. :class:`StreamedUpload` parses the multipart body as it arrives (python-multipart's push parser) and
hands the file part's bytes through a small bounded queue to a blocking reader, which the consumer (the CSV
importer, in a worker thread) reads line by line while the client is still sending. Memory stays at a few
chunks.

The size cap is the edge's (:class:`~services.runtime.edge.InputGuard`, the route's
:meth:`~services.runtime.service.Service.limit_body`): a declared length over it never reaches the route; a
body that passes it while streaming stops there, and the reader raises :class:`UploadTooLarge` so that the
consumer can keep what it read and say where it stopped.

Text fields that come before the file part (``name``) are known when the file starts; fields after it are
read too but arrive late (:attr:`StreamedUpload.fields` once the reader is at its end).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import queue
from dataclasses import dataclass, field

from fastapi import Request
from python_multipart import MultipartParser
from python_multipart.multipart import parse_options_header

from .edge import BodyTooLarge
from .errors import Problem

CHUNKS_IN_FLIGHT = 8
MAX_FIELD_BYTES = 4096


class UploadError(Exception):
    """The upload stopped before its end (too large, broken, or the client went away)."""


class UploadTooLarge(UploadError):
    """The upload passed the edge's cap while streaming; what came before is unaffected."""

    def __init__(self, cause: BodyTooLarge) -> None:
        super().__init__(f"is {str(cause.detail).removeprefix('the request body is ')}")
        self.cause = cause


@dataclass
class _Part:
    headers: dict[bytes, bytes] = field(default_factory=dict)
    name: str = ""
    filename: str | None = None
    data: bytearray = field(default_factory=bytearray)


class _QueueReader(io.RawIOBase):
    """The blocking side: reads the file part's bytes from the queue (an exception in it is raised here)."""

    def __init__(self, upload: StreamedUpload) -> None:
        self.upload = upload
        self.left = b""
        self.done = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self.left and not self.done:
            item = self.upload.queue.get()
            self.upload.consumed()
            if item is None:
                self.done = True
            elif isinstance(item, BaseException):
                self.done = True
                raise item
            else:
                self.left = item
        n = min(len(buffer), len(self.left))
        buffer[:n] = self.left[:n]
        self.left = self.left[n:]
        return n


class StreamedUpload:
    """One multipart upload with one file part named ``file_field``; see the module."""

    def __init__(self, request: Request, *, file_field: str = "file") -> None:
        self.request = request
        self.file_field = file_field
        self.fields: dict[str, str] = {}
        self.filename: str | None = None
        self.queue: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=CHUNKS_IN_FLIGHT)
        self._loop = asyncio.get_running_loop()
        self._space = asyncio.Event()
        self._file_started = asyncio.Event()
        self._pending: list[bytes | None] = []
        self._eof_sent = False
        self._part: _Part | None = None
        self._header = (b"", b"")
        self._in_file = False
        self._pump: asyncio.Task[None] | None = None

    async def open(self) -> io.BufferedReader:
        """Start reading the body; returns a blocking reader of the file part once its headers arrived.

        A 413 (:class:`BodyTooLarge`) when the body passes the edge's cap before the file part starts; a 422
        naming the file field when the body is not multipart or has no file part."""
        ctype, options = parse_options_header(self.request.headers.get("content-type", ""))
        boundary = options.get(b"boundary")
        if ctype != b"multipart/form-data" or not boundary:
            raise _missing_file(self.file_field, "send multipart/form-data with a file part")
        parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._part_begin,
                "on_header_field": lambda d, s, e: self._header_add(0, d[s:e]),
                "on_header_value": lambda d, s, e: self._header_add(1, d[s:e]),
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished,
                "on_part_data": self._part_data,
                "on_part_end": self._part_end,
            },
        )
        self._pump = asyncio.create_task(self._run(parser), name="upload-pump")
        started = asyncio.create_task(self._file_started.wait())
        await asyncio.wait({self._pump, started}, return_when=asyncio.FIRST_COMPLETED)
        started.cancel()
        if not self._file_started.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump  # it ended without a file part: raise what it raised, if anything
            item = self.queue.get_nowait() if not self.queue.empty() else None
            if isinstance(item, UploadTooLarge):
                raise item.cause
            raise _missing_file(self.file_field, "Field required")
        return io.BufferedReader(_QueueReader(self), buffer_size=64 * 1024)

    async def close(self) -> None:
        """Stop reading (the consumer is done, or gave up early)."""
        if self._pump is not None and not self._pump.done():
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._pump

    def consumed(self) -> None:
        """Called by the reader thread after each get: there is room in the queue."""
        self._loop.call_soon_threadsafe(self._space.set)

    # -- the pump (event loop side) ---------------------------------------------------------------

    async def _put(self, item: bytes | BaseException | None) -> None:
        while True:
            try:
                self.queue.put_nowait(item)
                return
            except queue.Full:
                self._space.clear()
                if self.queue.full():
                    await self._space.wait()

    async def _run(self, parser: MultipartParser) -> None:
        try:
            try:
                async for chunk in self.request.stream():
                    parser.write(chunk)
                    await self._flush()
            except BodyTooLarge as exc:  # the edge's cap, counted as the body streams in
                raise UploadTooLarge(exc) from None
            parser.finalize()
            await self._flush()
            if not self._eof_sent:
                await self._put(None)
                self._eof_sent = True
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # too large, a broken body, or the client went away
            if not self._eof_sent:  # after the file's end nobody reads: the rest of the body does not matter
                error = (
                    exc if isinstance(exc, UploadError) else UploadError(f"the upload stopped: {type(exc).__name__}")
                )
                await self._put(error)

    async def _flush(self) -> None:
        pending, self._pending = self._pending, []
        for data in pending:
            if self._eof_sent:
                return
            await self._put(data)
            self._eof_sent = data is None

    # -- parser callbacks (synchronous, inside parser.write) --------------------------------------

    def _part_begin(self) -> None:
        self._part = _Part()

    def _header_add(self, index: int, data: bytes) -> None:
        pair = list(self._header)
        pair[index] += data
        self._header = (pair[0], pair[1])

    def _header_end(self) -> None:
        assert self._part is not None
        self._part.headers[self._header[0].lower()] = self._header[1]
        self._header = (b"", b"")

    def _headers_finished(self) -> None:
        assert self._part is not None
        _, options = parse_options_header(self._part.headers.get(b"content-disposition", b""))
        self._part.name = options.get(b"name", b"").decode("utf-8", "replace")
        raw_filename = options.get(b"filename")
        self._part.filename = raw_filename.decode("utf-8", "replace") if raw_filename is not None else None
        if self._part.name == self.file_field and not self._in_file and not self._file_started.is_set():
            self._in_file = True
            self.filename = self._part.filename
            self._file_started.set()

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        assert self._part is not None
        if self._in_file:
            self._pending.append(bytes(data[start:end]))
        elif len(self._part.data) + (end - start) <= MAX_FIELD_BYTES:
            self._part.data += data[start:end]

    def _part_end(self) -> None:
        assert self._part is not None
        if self._in_file:
            self._in_file = False
            self._pending.append(None)  # the end of the file part is the reader's end
        elif self._part.name and self._part.filename is None:
            self.fields.setdefault(self._part.name, self._part.data.decode("utf-8", "replace"))
        self._part = None


def _missing_file(field_name: str, message: str) -> Problem:
    return Problem(
        422,
        "invalid_request",
        f"{field_name}: {message}",
        errors=[{"field": field_name, "message": message}],
    )
