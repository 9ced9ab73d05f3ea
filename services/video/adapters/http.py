"""An AI-Studio-style REST client over httpx: ``POST {base_url}/videos`` starts a personalised render.

The studio answers with its video id and later POSTs a signed callback (``video.completed`` with a
download URL, or ``video.failed``) to the callback URL sent with the request. Rate limits (429) honour
``Retry-After``; 5xx answers, timeouts and connection errors are retried with exponential backoff;
other 4xx answers are final. A wait longer than ``max_retry_after_s`` is handed back as
:class:`RateLimited` so the job is resubmitted later instead of blocking the sweep.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from services.runtime.providers import ProviderError, RateLimited

from . import RenderAccepted, RenderRequest

Sleep = Callable[[float], Awaitable[None]]


def retry_after_seconds(headers: httpx.Headers, now: datetime | None = None) -> float | None:
    """Seconds to wait from ``Retry-After`` (seconds or an HTTP date), if present."""
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - (now or datetime.now(UTC))).total_seconds(), 0.0)


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
        self.url = base_url.rstrip("/") + "/videos"
        self.max_retries = max_retries
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.max_retry_after_s = max_retry_after_s
        self._sleep = sleep
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if api_key:
            headers["X-Api-Key"] = api_key
        self.client = httpx.AsyncClient(timeout=httpx.Timeout(timeout_s), headers=headers, transport=transport)

    async def aclose(self) -> None:
        """Close the HTTP connection pool."""
        await self.client.aclose()

    async def render(self, request: RenderRequest) -> RenderAccepted:
        """Start a render; the same ``external_id`` (our job id) lets the studio deduplicate a retried submit."""
        payload = {
            "template_id": request.template_id,
            "variables": {name: {"type": "text", "value": value} for name, value in request.variables.items()},
            "callback_url": request.callback_url,
            "external_id": str(request.video_job_id),
            "title": request.title or f"leadstream {request.video_job_id}",
        }
        body = await self._post(payload)
        data = body.get("data") if isinstance(body.get("data"), dict) else body
        assert isinstance(data, dict)
        video_id = data.get("video_id") or data.get("id")
        if not video_id:
            raise ProviderError("studio answer has no video id", transient=True)
        return RenderAccepted(str(video_id), str(data.get("status") or "queued"))

    def _backoff(self, attempt: int) -> float:
        return float(min(self.backoff_initial_s * (2**attempt), self.backoff_max_s))

    async def _post(self, payload: dict[str, Any]) -> dict[str, Any]:
        attempt = 0
        while True:
            try:
                resp = await self.client.post(self.url, json=payload)
            except httpx.TimeoutException as exc:
                error: ProviderError = ProviderError(f"studio timed out: {exc!r}", transient=True)
                delay = self._backoff(attempt)
            except httpx.TransportError as exc:
                error = ProviderError(f"studio unreachable: {exc!r}", transient=True)
                delay = self._backoff(attempt)
            else:
                if resp.is_success:
                    try:
                        body = resp.json()
                    except ValueError:
                        raise ProviderError("studio answered with invalid JSON", transient=True) from None
                    if not isinstance(body, dict):
                        raise ProviderError("studio answered with a non-object", transient=True)
                    return body
                if resp.status_code == 429:
                    wait = retry_after_seconds(resp.headers)
                    delay = self._backoff(attempt) if wait is None else wait
                    if delay > self.max_retry_after_s:
                        raise RateLimited(delay, "studio rate limit")
                    error = RateLimited(delay, "studio rate limit")
                elif resp.status_code >= 500:
                    status = resp.status_code
                    error = ProviderError(f"studio answered {status}", transient=True, status=status)
                    delay = self._backoff(attempt)
                else:
                    raise ProviderError(
                        f"studio refused the render ({resp.status_code}): {resp.text[:300]}",
                        transient=False,
                        status=resp.status_code,
                    )
            if attempt >= self.max_retries:
                raise error
            attempt += 1
            await self._sleep(delay)
