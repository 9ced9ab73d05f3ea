"""The job sweep on the real broker and database: one transaction per job, so a studio error on one job
neither undoes nor resubmits the others."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select

from services.runtime.clock import FakeClock
from services.video.adapters import RenderAccepted, RenderRequest
from services.video.app import build
from services.video.settings import VideoSettings
from services.video.store import jobs
from tests.services.video.helpers import LEAD_TOPIC, api, campaign, enrolled, env, job, lead_events, profile
from tests.support.kafka import produce_events, read_until, wait_for


class OneBadJobStudio:
    """Accepts every render except one lead's (a studio client bug: not even a provider error); counts the
    submits per job. The first submit waits until the test opens the gate, so every job is queued by then."""

    name = "one-bad-job"

    def __init__(self, bad_lead: uuid.UUID) -> None:
        self.bad_title = f"lead {bad_lead}"
        self.submits: Counter[uuid.UUID] = Counter()
        self.gate = asyncio.Event()

    async def render(self, request: RenderRequest) -> RenderAccepted:
        await self.gate.wait()
        self.submits[request.video_job_id] += 1
        if request.title == self.bad_title:
            raise RuntimeError("studio client bug")
        return RenderAccepted(f"vid-{request.video_job_id.hex[:12]}")

    async def delete(self, provider_job_id: str) -> None:
        """Nothing is erased here."""


async def test_a_studio_error_on_one_job_does_not_resubmit_the_others(
    make_settings: Any, start_service: Any, topic_prefix: str
) -> None:
    clock = FakeClock()
    camp = uuid.uuid4()
    leads = [uuid.uuid4() for _ in range(6)]
    bad = leads[-1]
    studio = OneBadJobStudio(bad)
    settings = make_settings(
        "video",
        VideoSettings,
        video_poll_interval_s=0.05,
        video_timeout_s=3600,
        video_submit_backoff_s=60,
        video_submit_max_attempts=2,
    )
    service = await start_service(build(settings, clock=clock, studio=studio))
    bootstrap = settings.kafka_bootstrap_servers
    await produce_events(
        bootstrap,
        topic_prefix,
        [env(campaign(camp))] + [env(e) for lead in leads for e in (profile(lead, city="Porto"), enrolled(lead, camp))],
    )

    async def all_queued() -> bool:
        async with service.engine.connect() as conn:
            n = await conn.scalar(select(func.count()).select_from(jobs).where(jobs.c.campaign_id == camp))
        return n == len(leads)

    await wait_for(all_queued, what="a job per lead")
    async with service.engine.connect() as conn:
        ours = {r.video_job_id for r in (await conn.execute(select(jobs).where(jobs.c.campaign_id == camp))).all()}
    studio.gate.set()
    async with api(service) as client:
        for lead in leads[:-1]:
            await job(client, lead, camp, "rendering")

        async def bad_tried() -> bool:
            # This campaign's jobs only: the sweep also submits the jobs of the session's other tests (the same
            # database; and the enrolled leads this service read first), whose submits alone could meet a total.
            # And the bad job's failure recorded: the loop records it in a transaction after the submit raised.
            if not all(studio.submits[job_id] >= 1 for job_id in ours):
                return False
            async with service.engine.connect() as conn:
                attempts = await conn.scalar(
                    select(jobs.c.submit_attempts).where(jobs.c.campaign_id == camp, jobs.c.lead_id == bad)
                )
            return bool(attempts)

        await wait_for(bad_tried, what="the bad job tried and its failure recorded")
        async with service.engine.connect() as conn:
            rows = {r.lead_id: r for r in (await conn.execute(select(jobs).where(jobs.c.campaign_id == camp))).all()}
        bad_job = rows[bad].video_job_id
        assert (rows[bad].status, rows[bad].submit_attempts) == ("queued", 1)
        assert rows[bad].next_attempt_at == clock.now() + timedelta(seconds=60)  # its own backoff, nobody else's
        assert {lead: studio.submits[rows[lead].video_job_id] for lead in leads} == dict.fromkeys(leads, 1)
        assert all(rows[lead].submit_attempts == 1 for lead in leads[:-1])

        clock.advance(timedelta(seconds=61))  # the bad job's second and last attempt
        failed = await job(client, bad, camp, "failed")
        assert failed["failure_reason"] == "provider_error" and "studio client bug" in failed["failure_detail"]
    assert studio.submits[bad_job] == 2
    assert all(studio.submits[rows[lead].video_job_id] == 1 for lead in leads[:-1]), studio.submits

    records = await read_until(
        bootstrap, [topic_prefix + LEAD_TOPIC], lambda recs: bool(lead_events(recs, bad, "video_failed.v1"))
    )
    assert [e.data.reason for e in lead_events(records, bad, "video_failed.v1")] == ["provider_error"]
    assert all(not lead_events(records, lead, "video_failed.v1") for lead in leads[:-1])
