"""A local HTTP server speaking an AI-Studio-style video API, with scripted answers (429, 5xx, slow)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from tests.support.local_http import Reply, ScriptedServer, next_reply


def accepted(video_id: str = "vid_123") -> dict[str, Any]:
    """The studio's answer to a render request."""
    return {"data": {"video_id": video_id, "status": "queued"}}


class StudioServer(ScriptedServer):
    """Answers ``POST /v1/videos`` from a script (per external id, else the default; the last reply repeats)."""

    def __init__(self, script: tuple[Reply, ...]) -> None:
        super().__init__("/v1/videos", base_path="/v1", script=script)
        self.by_external: dict[str, list[Reply]] = {}

    def pick(self, request: dict[str, Any]) -> Reply:
        """The reply scripted for the request's external id, else the default script's."""
        body = request["json"] if isinstance(request["json"], dict) else {}
        return next_reply(self.by_external.get(str(body.get("external_id")), self.script))

    def requests_for(self, external_id: str) -> list[dict[str, Any]]:
        """The requests that named this external id (our video job id)."""
        return [r for r in self.requests if isinstance(r["json"], dict) and r["json"].get("external_id") == external_id]


@contextlib.asynccontextmanager
async def studio_server(*script: Reply) -> AsyncIterator[StudioServer]:
    """A running studio server with the given script."""
    async with StudioServer(script).running() as server:
        yield server
