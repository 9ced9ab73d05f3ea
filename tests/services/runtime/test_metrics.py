"""Metrics that tell the truth, on the real broker and Postgres: consumer lag measured on a timer (it rises
while a handler is stuck and is reported for partitions nothing was read from), dead-letter counters that
start at 0, and HTTP requests counted per route template with their status and latency.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import httpx
from leadstream_schemas import Envelope, LeadDiscovered
from prometheus_client import REGISTRY

from services.runtime.consumer import HandlerContext
from services.runtime.service import Service
from tests.conftest import TEST_PARTITIONS, SettingsFactory
from tests.services.runtime.conftest import Probe
from tests.support.kafka import wait_for
from tests.support.probe.app import FlakyHandler, build
from tests.support.probe.fixtures import own_probe
from tests.support.probe.helpers import discovered, raw, send


def sample(name: str, **labels: str) -> float | None:
    """The current value of one series on this process's /metrics (None: the series does not exist)."""
    return REGISTRY.get_sample_value(name, labels)


class StuckHandler(FlakyHandler):
    """The probe's handler, except that it holds one event until ``release`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.stuck_on: uuid.UUID | None = None
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, env: Envelope[LeadDiscovered], ctx: HandlerContext) -> None:
        if env.id == self.stuck_on:
            self.entered.set()
            await self.release.wait()
        await super().__call__(env, ctx)


async def test_lag_is_measured_on_a_timer_while_a_handler_is_stuck(
    make_settings: SettingsFactory, start_service: Callable[[Service], Any], topic_prefix: str
) -> None:
    settings = await own_probe(topic_prefix, make_settings, "lag", consumer_lag_interval_s=0.2)
    topic = settings.topic_name("leadstream.lead.v1")
    handler = StuckHandler()
    await start_service(build(settings, handler, group_suffix="-lag"))

    def lag(partition: int) -> float | None:
        return sample("leadstream_consumer_lag", service="probe_lag", topic=topic, partition=str(partition))

    # Nothing read yet: every partition's lag is known (the group's position against the log end), and 0.
    await wait_for(
        lambda: all(lag(p) == 0 for p in range(TEST_PARTITIONS)), what="lag 0 on every partition before any record"
    )
    # The dead-letter counters exist before the first dead letter, at 0, so increase() sees the first one.
    assert sample("leadstream_dlq_total", service="probe_lag", topic=topic, code="handler_error") == 0
    assert sample("leadstream_dlq_total", service="probe_lag", topic=topic, code="invalid_json") == 0

    stuck = discovered()
    handler.stuck_on = stuck.id
    [where] = await send(settings.kafka_bootstrap_servers, topic, [raw(stuck)])
    await asyncio.wait_for(handler.entered.wait(), timeout=60)
    # Five more behind it on its partition while the handler holds it: the poll loop waits on the handler,
    # the timer keeps asking the broker for the log end.
    behind = [discovered(stuck.data.lead_id) for _ in range(5)]
    await send(settings.kafka_bootstrap_servers, topic, [raw(e) for e in behind])
    await wait_for(lambda: lag(where.partition) == 6, what="the lag to count the stuck record and the five behind")
    assert not handler.release.is_set() and handler.attempts[stuck.id] == 0  # still stuck in its first attempt

    handler.release.set()
    await wait_for(lambda: lag(where.partition) == 0, what="the lag to fall back to 0 once the records are done")
    assert [handler.attempts[e.id] for e in [stuck, *behind]] == [1] * 6


async def test_http_requests_are_counted_per_route_template_and_status(probe: Probe) -> None:
    route = {"service": "probe", "route": "/v1/probe/effects", "method": "POST"}

    def requests(status: str) -> float:
        return sample("leadstream_http_requests_total", **route, status=status) or 0.0

    def durations() -> float:
        return sample("leadstream_http_request_duration_seconds_count", **route) or 0.0

    def unmatched() -> float:
        labels = {"service": "probe", "route": "unmatched", "method": "GET", "status": "404"}
        return sample("leadstream_http_requests_total", **labels) or 0.0

    def probes() -> float:
        return sum(
            sample("leadstream_http_requests_total", service="probe", route=path, method="GET", status=status) or 0.0
            for path in ("/healthz", "/readyz", "/metrics")
            for status in ("200", "503")
        )

    before = (requests("202"), requests("422"), durations(), unmatched())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=probe.service.app), base_url="http://t") as http:
        for _ in range(2):
            body = {"lead_id": str(uuid.uuid4()), "full_name": "Ada Lovelace"}
            assert (await http.post("/v1/probe/effects", json=body)).status_code == 202
        assert (await http.post("/v1/probe/effects", json={"lead_id": "not-a-uuid"})).status_code == 422
        assert (await http.get(f"/v1/probe/{uuid.uuid4()}")).status_code == 404
        for path in ("/healthz", "/readyz", "/metrics"):
            await http.get(path)
    after = (requests("202"), requests("422"), durations(), unmatched())
    # Two accepted, one refused, three latencies observed; the unknown path is one series, not one per id.
    assert [a - b for a, b in zip(after, before, strict=True)] == [2, 1, 3, 1]
    assert probes() == 0  # probes and scrapes are not counted
