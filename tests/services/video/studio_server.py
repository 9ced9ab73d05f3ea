"""A local HTTP server speaking an AI-Studio-style video API, with scripted answers (429, 5xx, slow)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    """One scripted answer: a status, headers and a body; ``hold`` makes the server stall until released."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    hold: bool = False


def accepted(video_id: str = "vid_123") -> dict[str, Any]:
    """The studio's answer to a render request."""
    return {"data": {"video_id": video_id, "status": "queued"}}


class StudioServer:
    """Answers ``POST /v1/videos`` from a script (per external id, else the default; the last reply repeats)."""

    def __init__(self) -> None:
        self.script: list[Reply] = []
        self.by_external: dict[str, list[Reply]] = {}
        self.requests: list[dict[str, Any]] = []
        self.release = threading.Event()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def base_url(self) -> str:
        """The API base URL (``.../v1``)."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def _next(self, request: dict[str, Any]) -> Reply:
        with self._lock:
            self.requests.append(request)
            body = request["json"] if isinstance(request["json"], dict) else {}
            script = self.by_external.get(str(body.get("external_id")), self.script)
            if len(script) > 1:
                return script.pop(0)
            return script[0] if script else Reply(500, {"error": "no script"})

    def requests_for(self, external_id: str) -> list[dict[str, Any]]:
        """The requests that named this external id (our video job id)."""
        return [r for r in self.requests if isinstance(r["json"], dict) and r["json"].get("external_id") == external_id]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length)
                request = {"path": self.path, "headers": dict(self.headers), "json": json.loads(raw or b"null")}
                if self.path != "/v1/videos":
                    reply = Reply(404, {"error": {"message": "unknown path"}})
                    server.requests.append(request)
                else:
                    reply = server._next(request)
                if reply.hold:
                    server.release.wait(10)
                payload = json.dumps(reply.body).encode() if not isinstance(reply.body, bytes) else reply.body
                try:
                    self.send_response(reply.status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(payload)))
                    for k, v in reply.headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        return Handler

    def start(self) -> None:
        """Serve in a background thread."""
        self._thread.start()

    def stop(self) -> None:
        """Release stalled requests and shut down."""
        self.release.set()
        self._server.shutdown()
        self._server.server_close()


@contextmanager
def studio_server(*script: Reply) -> Iterator[StudioServer]:
    """A running studio server with the given script."""
    server = StudioServer()
    server.script = list(script)
    server.start()
    try:
        yield server
    finally:
        server.stop()
