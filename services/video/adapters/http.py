"""An AI-Studio-style REST client over httpx: ``POST {base_url}/videos`` starts a personalised render,
``DELETE {base_url}/videos/{video_id}`` deletes one (404 or 410: deleted already, which is done as well).

The studio answers with its video id and later POSTs a signed callback (``video.completed`` with a
download URL, or ``video.failed``) to the callback URL sent with the request. Rate limits (429) honour
``Retry-After``; 5xx answers, timeouts and connection errors are retried with exponential backoff;
other 4xx answers are final. A wait longer than ``max_retry_after_s`` is handed back as
:class:`RateLimited` so the job is resubmitted later instead of blocking the sweep.
"""

from __future__ import annotations

import asyncio

import httpx

from services.runtime.http_client import ProviderHttpClient, RetryPolicy, Sleep, path_segment
from services.runtime.providers import ProviderError

from . import RenderAccepted, RenderRequest


class HttpStudio:
    """Submits renders to an AI-Studio-style video API."""

    name = "studio"

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout_s: float = 15.0,
        max_retries: int = 3,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 8.0,
        max_retry_after_s: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if api_key:
            headers["X-Api-Key"] = api_key
        self.http = ProviderHttpClient(
            "studio",
            base_url,
            headers=headers,
            timeout_s=timeout_s,
            retry=RetryPolicy(max_retries, backoff_initial_s, backoff_max_s, max_retry_after_s),
            sleep=sleep,
            transport=transport,
        )

    async def aclose(self) -> None:
        """Close the HTTP connection pool."""
        await self.http.aclose()

    async def render(self, request: RenderRequest) -> RenderAccepted:
        """Start a render; the same ``external_id`` (our job id) lets the studio deduplicate a retried submit."""
        payload = {
            "template_id": request.template_id,
            "variables": {name: {"type": "text", "value": value} for name, value in request.variables.items()},
            "callback_url": request.callback_url,
            "external_id": str(request.video_job_id),
            "title": request.title or f"leadstream {request.video_job_id}",
        }
        body = await self.http.request_object("POST", "/videos", json=payload, non_object_transient=True)
        data = body.get("data") if isinstance(body.get("data"), dict) else body
        assert isinstance(data, dict)
        video_id = data.get("video_id") or data.get("id")
        if not video_id:
            raise ProviderError("studio answer has no video id", transient=True)
        return RenderAccepted(str(video_id), str(data.get("status") or "queued"))

    async def delete(self, provider_job_id: str) -> None:
        """Delete the studio's video (and so its link and thumbnail); an unknown video (404, 410) counts as deleted:
        a retried delete whose first answer was lost finds nothing, and that is the outcome asked for."""
        path = f"/videos/{path_segment(provider_job_id, 'the video id')}"
        await self.http.request("DELETE", path, what="studio delete", passthrough=(404, 410))
