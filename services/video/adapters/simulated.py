"""A simulated video studio: accepts renders and, after a realistic render time, POSTs a signed callback.

Render time is campaign time (the injected clock), so a fake clock in tests or a scaled clock in the
demo decides when the callback comes. Some renders fail (a failure callback); some submits answer a
transient 503. ``videos`` is what the studio holds (every accepted render, by its video id): a delete takes the
network's time, answers a transient 503 at ``delete_failure_rate``, removes the video and cancels its render's
callback if it is still to come; deleting a video the studio does not hold succeeds (idempotent), as it does at
a real studio. Callbacks are delivered like a real provider does: signed (Standard Webhooks), with the
same message id on every retry, retried until the receiver answers 2xx (a 4xx gives up).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx

from services.runtime.clock import Clock
from services.runtime.providers import SimulatedProvider, SimulationProfile, seeded_rng
from services.runtime.webhooks import signed_headers

from . import RenderAccepted, RenderRequest

log = logging.getLogger(__name__)


@dataclass
class ScheduledCallback:
    """A callback the studio will deliver once ``due`` (campaign time) has passed."""

    due: datetime
    url: str
    msg_id: str
    payload: dict[str, Any]
    attempts: int = 0


class SimulatedStudio(SimulatedProvider):
    """An AI video studio stand-in: deterministic from a seed, calling back on the injected clock."""

    name = "simulated"

    def __init__(
        self,
        profile: SimulationProfile,
        clock: Clock,
        secret: str,
        *,
        render_delay_s: tuple[float, float] = (60.0, 300.0),
        failure_rate: float = 0.05,
        delete_failure_rate: float = 0.03,
        transport: httpx.AsyncBaseTransport | None = None,
        poll_s: float = 0.05,
        max_deliveries: int = 20,
    ) -> None:
        super().__init__(profile)
        self.clock = clock
        self.secret = secret
        self.render_delay_s = render_delay_s
        self.failure_rate = failure_rate
        self.delete_failure_rate = delete_failure_rate
        self.transport = transport
        self.poll_s = poll_s
        self.max_deliveries = max_deliveries
        self.scheduled: list[ScheduledCallback] = []
        self.delivered: list[ScheduledCallback] = []
        self.videos: dict[str, dict[str, Any]] = {}
        """The videos the studio holds, by video id (the render's data: its links once it is rendered)."""
        self.deleted: list[str] = []
        """The video ids deleted, in order (a repeated delete of one id is listed again)."""

    async def render(self, request: RenderRequest) -> RenderAccepted:
        """Accept a render and schedule its callback (sometimes a transient 503 instead)."""
        key = str(request.video_job_id)
        await self.simulate("studio-submit", key, "the video studio")
        outcome = seeded_rng(self.sim.seed, "studio-render", key)
        lo, hi = self.render_delay_s
        delay = outcome.uniform(lo, max(lo, hi))
        provider_id = "vid_" + uuid.uuid5(uuid.NAMESPACE_URL, f"sim-studio/{key}").hex[:16]
        data: dict[str, Any] = {"video_id": provider_id, "external_id": key, "template_id": request.template_id}
        payload: dict[str, Any]
        if outcome.random() < self.failure_rate:
            payload = {
                "type": "video.failed",
                "data": {
                    **data,
                    "status": "failed",
                    "error": {"code": "render_failed", "message": "simulated render failure"},
                },
            }
        else:
            payload = {
                "type": "video.completed",
                "data": {
                    **data,
                    "status": "completed",
                    "download_url": f"https://videos.studio.example/{provider_id}.mp4",
                    "thumbnail_url": f"https://videos.studio.example/{provider_id}.jpg",
                    "duration_s": round(outcome.uniform(25, 60), 1),
                },
            }
        self.videos[provider_id] = payload["data"]
        self.scheduled.append(
            ScheduledCallback(
                self.clock.now() + timedelta(seconds=delay), request.callback_url, f"msg_{provider_id}", payload
            )
        )
        return RenderAccepted(provider_id, "queued")

    async def delete(self, provider_job_id: str) -> None:
        """Delete a video and cancel its callback if still to come (sometimes a transient 503 instead); an unknown
        video is deleted already."""
        await self.simulate("studio-delete", provider_job_id, "the video studio", error_rate=self.delete_failure_rate)
        self.videos.pop(provider_job_id, None)
        self.scheduled[:] = [c for c in self.scheduled if c.payload["data"].get("video_id") != provider_job_id]
        self.deleted.append(provider_job_id)

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver due callbacks until ``stop`` is set (a background task of the service)."""
        async with httpx.AsyncClient(transport=self.transport, timeout=10.0) as client:
            while not stop.is_set():
                now = self.clock.now()
                due = [c for c in self.scheduled if c.due <= now]
                for cb in due:
                    if cb in self.scheduled:  # not cancelled by a delete while an earlier one was delivered
                        await self._deliver(client, cb)
                try:
                    await asyncio.wait_for(stop.wait(), timeout=self.poll_s)
                except TimeoutError:
                    pass

    async def _deliver(self, client: httpx.AsyncClient, cb: ScheduledCallback) -> None:
        body = json.dumps(cb.payload).encode()
        # Signature timestamps are wall-clock time, as a real provider's are (replay tolerance is real time).
        headers = {"content-type": "application/json", **signed_headers(self.secret, cb.msg_id, int(time.time()), body)}
        cb.attempts += 1
        try:
            resp = await client.post(cb.url, content=body, headers=headers)
            status = resp.status_code
        except httpx.HTTPError as exc:
            log.warning("simulated studio: callback not delivered; will retry", extra={"error": repr(exc)})
            status = 0
        if 200 <= status < 300 or (400 <= status < 500 and status != 429) or cb.attempts >= self.max_deliveries:
            if cb in self.scheduled:  # a delete during the delivery cancelled it already
                self.scheduled.remove(cb)
            self.delivered.append(cb)
            if status >= 400 or status == 0:
                log.warning("simulated studio: callback given up", extra={"status": status, "msg_id": cb.msg_id})
            return
        cb.due = self.clock.now() + timedelta(seconds=min(2**cb.attempts, 300))
