"""A local HTTP server speaking the OpenAI chat-completions protocol, with scripted answers (429, 5xx, slow)."""

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


def completion(content: str, model: str = "test-model") -> dict[str, Any]:
    """A chat-completions success body."""
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
    }


class ChatServer:
    """Answers ``POST /v1/chat/completions`` from a script (the last reply repeats) and records requests."""

    def __init__(self) -> None:
        self.script: list[Reply] = []
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
            if len(self.script) > 1:
                return self.script.pop(0)
            return self.script[0] if self.script else Reply(500, {"error": "no script"})

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length)
                request = {"path": self.path, "headers": dict(self.headers), "json": json.loads(raw or b"null")}
                if self.path != "/v1/chat/completions":
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
def chat_server(*script: Reply) -> Iterator[ChatServer]:
    """A running chat server with the given script."""
    server = ChatServer()
    server.script = list(script)
    server.start()
    try:
        yield server
    finally:
        server.stop()
