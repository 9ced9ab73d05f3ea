"""Liveness of a per-record consumer: a handler that waits for something that never comes, past every
deadline the core knows (the attempt's is set beyond the test here), makes ``/healthz`` answer 503
"stuck" once its partition has not moved for ``consumer_stuck_restart_s`` while nothing failed, so the
orchestrator restarts the pod. Released, the consumer moves on and is alive again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
from leadstream_schemas import Envelope, LeadDiscovered

from services.runtime.consumer import HandlerContext
from services.runtime.service import Service
from tests.conftest import SettingsFactory
from tests.support.kafka import wait_for
from tests.support.probe.app import FlakyHandler, build
from tests.support.probe.fixtures import own_probe
from tests.support.probe.helpers import discovered, effect_origins, raw, send


class HeldHandler(FlakyHandler):
    """Handles like the probe's default handler, except one event: that one waits until ``gate`` opens."""

    def __init__(self, held: Envelope[LeadDiscovered]) -> None:
        super().__init__()
        self.held = held.id
        self.gate = asyncio.Event()

    async def __call__(self, env: Envelope[LeadDiscovered], ctx: HandlerContext) -> None:
        """Wait for the gate on the held event, then behave as the default handler."""
        if env.id == self.held:
            await self.gate.wait()
        await super().__call__(env, ctx)


async def test_a_consumer_stuck_without_failing_fails_liveness_until_it_moves(
    make_settings: SettingsFactory,
    start_service: Callable[[Service], Any],
    topic_prefix: str,
) -> None:
    settings = await own_probe(
        topic_prefix,
        make_settings,
        "stuck",
        consumer_stuck_restart_s=2.0,
        consumer_lag_interval_s=0.2,
        consumer_attempt_timeout_s=3600.0,  # this test's hang outlasts every deadline the core has
    )
    first = discovered()
    behind = [discovered(first.data.lead_id) for _ in range(3)]  # one key: the same partition, behind the held one
    handler = HeldHandler(first)
    service = build(settings, handler, group_suffix="-stuck")
    await start_service(service)
    await send(settings.kafka_bootstrap_servers, settings.topic_name("leadstream.lead.v1"), [raw(first)])
    await send(settings.kafka_bootstrap_servers, settings.topic_name("leadstream.lead.v1"), [raw(e) for e in behind])

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=service.app), base_url="http://t") as http:

        async def stuck() -> str:
            r = await http.get("/healthz")
            return r.text if r.status_code == 503 else ""

        reason = await wait_for(stuck, timeout_s=60, what="/healthz reporting the consumer stuck")
        assert "stuck" in reason and "restart threshold 2 s" in reason, reason
        assert service.consumers[0].group_id in reason
        assert await effect_origins(service.engine, behind[0].id) == []  # nothing behind the held record moved
        handler.gate.set()

        async def alive() -> bool:
            return (await http.get("/healthz")).status_code == 200

        async def all_handled() -> list[list[str]]:
            return [await effect_origins(service.engine, e.id) for e in [first, *behind]]

        assert await wait_for(all_handled, until=all, timeout_s=60, what="every effect") == [["event"]] * 4
        await wait_for(alive, timeout_s=60, what="/healthz alive once the consumer moved")
