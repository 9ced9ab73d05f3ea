"""An erased lead's video on the real broker and database, with the simulated studio and a fake clock: its links are
sealed on the topic and read in plain, then read ``[erased]`` on the topic and in video's tables, and the studio is
asked to delete the video outside the handler's transaction, retried while it refuses, given up visibly."""

from __future__ import annotations

import json
import logging
import uuid
from datetime import timedelta
from typing import Any

import pytest
from leadstream_schemas import VideoGenerated, decode, encode
from sqlalchemy import select

from services.runtime import personal
from services.runtime.clock import FakeClock
from services.runtime.personal import PersonalReader
from services.runtime.service import Service
from services.video.adapters.simulated import SimulatedStudio
from services.video.deletions import claimable
from services.video.store import callbacks, deletions, jobs
from tests.services.video.helpers import (
    LEAD_TOPIC,
    WS,
    api,
    campaign,
    completed_callback,
    enrolled,
    env,
    job,
    lead_events,
    outbox_drained,
    profile,
    read_to_end,
    signed,
)
from tests.services.video.test_video import SECRET, start
from tests.support.kafka import produce, produce_events, wait_for

STUDIO_HOST = "https://videos.studio.example/"


async def erase(service: Service, lead: uuid.UUID) -> None:
    """Erase the lead as outreach's API does: destroy the key, publish ``LeadErased``."""
    async with service.engine.begin() as conn:
        assert await personal.erase(conn, WS, lead)
    erased = personal.erasure_envelope(WS, lead, source="leadstream/outreach", via="api")
    await produce(service.settings.kafka_bootstrap_servers, service.settings.topic_name(LEAD_TOPIC), [encode(erased)])


async def deletion(service: Service, lead: uuid.UUID, **expected: Any) -> Any:
    """The lead's studio deletion once its columns have the ``expected`` values."""

    async def check() -> Any:
        async with service.engine.connect() as conn:
            row = (await conn.execute(select(deletions).where(deletions.c.lead_id == lead))).first()
        return row if row is not None and all(getattr(row, k) == v for k, v in expected.items()) else None

    return await wait_for(check, timeout_s=60, what=f"the studio deletion {expected}")


async def rendered(
    service: Service, clock: FakeClock, prefix: str, camp: uuid.UUID, leads: list[uuid.UUID]
) -> list[dict[str, Any]]:
    """Enrol ``leads`` in a video campaign and let the simulated studio render their videos (30 s)."""
    facts = [e for lead in leads for e in (profile(lead, city="Oslo"), enrolled(lead, camp))]
    await produce_events(service.settings.kafka_bootstrap_servers, prefix, [env(campaign(camp)), *map(env, facts)])
    async with api(service) as client:
        for lead in leads:
            await job(client, lead, camp, "rendering")
        clock.advance(timedelta(seconds=31))
        return [await job(client, lead, camp, "generated") for lead in leads]


def studio_of(service: Service) -> SimulatedStudio:
    studio = service.app.state.video_studio
    assert isinstance(studio, SimulatedStudio)
    return studio


async def test_an_erased_leads_links_read_erased_and_the_studio_deletes_the_video(
    make_settings: Any, start_service: Any, topic_prefix: str
) -> None:
    clock = FakeClock()
    service = await start(make_settings, start_service, clock, sim_delete_error_rate=0.0)
    studio = studio_of(service)
    camp, gone, kept = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    gone_job, kept_job = await rendered(service, clock, topic_prefix, camp, [gone, kept])
    link = gone_job["video_url"]
    assert link.startswith(STUDIO_HOST) and gone_job["provider_job_id"] in studio.videos

    # On the topic the links are tokens; a reader through the key store gets them in plain.
    await outbox_drained(service)
    records = await read_to_end(service.settings.kafka_bootstrap_servers, topic_prefix + LEAD_TOPIC)
    [raw] = [r for r in records if r.key == str(gone).encode() and b"video_generated" in dict(r.headers)["ce_type"]]
    payload = json.loads(raw.value)
    assert payload["video_url"].startswith("pii1:") and payload["thumbnail_url"].startswith("pii1:")
    assert link.encode() not in raw.value
    [generated] = lead_events(records, gone, "video_generated.v1")
    assert (generated.data.video_url, generated.data.thumbnail_url) == (link, link.replace(".mp4", ".jpg"))

    await erase(service, gone)
    done = await deletion(service, gone, status="deleted")
    assert (done.provider_job_id, done.attempts, done.last_error) == (gone_job["provider_job_id"], 1, None)
    assert gone_job["provider_job_id"] not in studio.videos  # the studio no longer has the video
    # Once, and nothing of the lead kept. (Not the whole list: the service shares the session's topics and database,
    # so a deletion an earlier test queued may run through this studio too.)
    assert studio.deleted.count(gone_job["provider_job_id"]) == 1
    assert kept_job["provider_job_id"] not in studio.deleted
    assert kept_job["provider_job_id"] in studio.videos  # nor anything of another lead

    async with api(service) as client:
        after = (await client.get(f"/v1/video/jobs/{gone}", params={"campaign_id": str(camp)})).json()
        other = (await client.get(f"/v1/video/jobs/{kept}", params={"campaign_id": str(camp)})).json()
    assert (after["status"], after["video_url"], after["thumbnail_url"]) == ("generated", "[erased]", "[erased]")
    assert after["studio_deletion"] == "deleted" and set(after["variables"].values()) == {"[erased]"}
    assert other["video_url"] == kept_job["video_url"] and other["studio_deletion"] is None
    async with service.engine.connect() as conn:
        stored = await conn.execute(select(callbacks.c.payload).where(callbacks.c.video_job_id == done.video_job_id))
        kept_links = await conn.scalar(select(jobs.c.video_url).where(jobs.c.lead_id == kept))
    bodies = json.dumps([p for (p,) in stored.all()])
    assert link not in bodies and '"download_url": "[erased]"' in bodies  # the callback recorded, its links gone
    assert kept_links == kept_job["video_url"]

    # A topic reader through the key store now reads [erased] (a reader of its own: the helpers' cache knows the key).
    reader = PersonalReader.on_engine(service.engine)
    person = reader.person(raw.headers)
    await reader.load([person])
    erased = decode(reader.open(raw.value, raw.headers, person), raw.headers).data
    assert isinstance(erased, VideoGenerated)
    assert (erased.video_url, erased.thumbnail_url) == ("[erased]", "[erased]")


async def test_a_video_still_rendering_is_cancelled_and_a_late_callback_keeps_nothing(
    make_settings: Any, start_service: Any, topic_prefix: str
) -> None:
    clock = FakeClock()
    service = await start(
        make_settings,
        start_service,
        clock,
        sim_delete_error_rate=0.0,
        sim_render_delay_min_s=10**6,
        sim_render_delay_max_s=10**6,
    )
    studio = studio_of(service)
    camp, lead = uuid.uuid4(), uuid.uuid4()
    bootstrap = service.settings.kafka_bootstrap_servers
    await produce_events(
        bootstrap, topic_prefix, [env(campaign(camp)), env(profile(lead, city="Oslo")), env(enrolled(lead, camp))]
    )
    async with api(service) as client:
        j = await job(client, lead, camp, "rendering")
        await erase(service, lead)
        await deletion(service, lead, status="deleted")
        closed = await job(client, lead, camp, "erased")
        assert j["provider_job_id"] not in studio.videos
        assert [c for c in studio.scheduled if c.payload["data"]["video_id"] == j["provider_job_id"]] == []
        # A studio that finished the render all the same: the callback is recorded without its links, no outcome.
        link = "https://videos.example/late-render.mp4"
        body, headers = signed(SECRET, completed_callback(j, link))
        answer = await client.post("/v1/video/callback", content=body, headers=headers)
        assert answer.status_code == 200 and answer.json()["outcome"] == "erased"
        # The studio delivers it again (the same message id): a replay, recorded without the links as well.
        again = await client.post("/v1/video/callback", content=body, headers=headers)
        assert again.status_code == 200 and again.json()["outcome"] == "replay"
        final = (await client.get(f"/v1/video/jobs/{lead}", params={"campaign_id": str(camp)})).json()
    assert (closed["video_url"], final["status"], final["video_url"]) == (None, "erased", None)
    assert [c["outcome"] for c in final["callbacks"]] == ["erased", "replay"]
    async with service.engine.connect() as conn:
        stored = await conn.execute(select(callbacks.c.payload).where(callbacks.c.video_job_id == j["video_job_id"]))
    assert link not in json.dumps([p for (p,) in stored.all()])
    # The studio has that video after all: it is deleted again, once, by the deletion loop.
    await wait_for(
        lambda: studio.deleted.count(j["provider_job_id"]) == 2, timeout_s=60, what="the late video deleted again"
    )
    again = await deletion(service, lead, status="deleted")
    assert (again.attempts, again.last_error) == (1, None)
    await outbox_drained(service)
    records = await read_to_end(bootstrap, topic_prefix + LEAD_TOPIC)
    assert lead_events(records, lead, "video_generated.v1") == lead_events(records, lead, "video_failed.v1") == []


async def test_a_deletion_the_studio_refuses_is_retried_then_succeeds(
    make_settings: Any, start_service: Any, topic_prefix: str
) -> None:
    clock = FakeClock()
    service = await start(
        make_settings,
        start_service,
        clock,
        sim_delete_error_rate=1.0,
        video_delete_backoff_s=60,
        video_delete_max_attempts=5,
    )
    studio = studio_of(service)
    camp, lead = uuid.uuid4(), uuid.uuid4()
    [j] = await rendered(service, clock, topic_prefix, camp, [lead])
    await erase(service, lead)
    refused = await deletion(service, lead, attempts=1)
    assert refused.status == "pending" and "simulated 503" in (refused.last_error or "")
    assert refused.next_attempt_at == clock.now() + timedelta(seconds=60)  # backed off, not hammered
    assert j["provider_job_id"] in studio.videos

    studio.delete_failure_rate = 0.0  # the studio is back
    clock.advance(timedelta(seconds=61))
    done = await deletion(service, lead, status="deleted")
    assert (done.attempts, done.last_error) == (2, None)
    assert j["provider_job_id"] not in studio.videos
    assert studio.calls[j["provider_job_id"]] == 2  # one refused delete, one that went through


async def test_a_deletion_the_studio_keeps_refusing_ends_failed_and_logged(
    make_settings: Any, start_service: Any, topic_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    service = await start(
        make_settings,
        start_service,
        clock,
        sim_delete_error_rate=1.0,
        video_delete_backoff_s=60,
        video_delete_max_attempts=2,
    )
    studio = studio_of(service)
    camp, lead = uuid.uuid4(), uuid.uuid4()
    [j] = await rendered(service, clock, topic_prefix, camp, [lead])
    with caplog.at_level(logging.ERROR, logger="services.video.deletions"):
        await erase(service, lead)
        await deletion(service, lead, attempts=1, status="pending")
        clock.advance(timedelta(seconds=61))
        failed = await deletion(service, lead, status="failed")
    assert failed.attempts == 2 and "simulated 503" in (failed.last_error or "") and failed.completed_at == clock.now()
    given_up = [r for r in caplog.records if "refused to delete" in r.getMessage()]
    assert [getattr(r, "video_job_id", None) for r in given_up] == [j["video_job_id"]]
    clock.advance(timedelta(hours=12))
    async with service.engine.connect() as conn:  # never tried again
        again = (await conn.execute(claimable(clock.now()).where(deletions.c.lead_id == lead))).all()
    assert again == []
    async with api(service) as client:
        final = (await client.get(f"/v1/video/jobs/{lead}", params={"campaign_id": str(camp)})).json()
    assert final["studio_deletion"] == "failed" and final["video_url"] == "[erased]"
    assert studio.calls[j["provider_job_id"]] == 2
