"""Video on the real broker and database with a fake clock: fallbacks, timeouts, signed and idempotent callbacks."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from services.runtime.clock import Clock, FakeClock, SystemClock
from services.runtime.service import Service
from services.runtime.webhooks import signed_headers
from services.video.app import build
from services.video.settings import VideoSettings
from services.video.store import callbacks, enrollments, jobs, seen_webhooks
from tests.services.video.helpers import (
    LEAD_TOPIC,
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
from tests.support.kafka import produce_events, read_until, wait_for
from tests.support.keys import signing_key

SECRET = signing_key("video-test-secret")


async def start(make_settings: Any, start_service: Any, clock: Clock, **overrides: Any) -> Service:
    values: dict[str, Any] = {
        "video_poll_interval_s": 0.05,
        "sim_callback_in_process": True,
        "sim_failure_rate": 0.0,
        "sim_submit_error_rate": 0.0,
        "video_webhook_secret": SECRET,
        "link_allowed_hosts": "videos.example,videos.studio.example",
        "video_timeout_s": 600,
        "sim_render_delay_min_s": 30,
        "sim_render_delay_max_s": 30,
    }
    values.update(overrides)
    service: Service = await start_service(build(make_settings("video", VideoSettings, **values), clock=clock))
    return service


def trace_of(traceparent: str | None) -> str | None:
    """The trace id of a traceparent."""
    return traceparent.split("-")[1] if traceparent else None


async def test_lead_without_city_gets_the_fallback_and_its_video(
    make_settings: Any, start_service: Any, topic_prefix: str
) -> None:
    clock = FakeClock()
    service = await start(make_settings, start_service, clock)
    bootstrap = service.settings.kafka_bootstrap_servers
    video_campaign, plain_campaign, late_campaign = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    no_city, berlin, early, plain = uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await produce_events(
        bootstrap,
        topic_prefix,
        [
            env(campaign(video_campaign)),
            env(campaign(plain_campaign, video=False)),
            env(profile(no_city, city=None)),
            env(enrolled(no_city, video_campaign)),
            env(enrolled(berlin, video_campaign)),  # enrolled before its profile arrives
            env(profile(early, city="Paris")),
            env(enrolled(early, late_campaign)),  # enrolled before its campaign is known
            env(profile(plain, city="Rome")),
            env(enrolled(plain, plain_campaign)),
        ],
    )
    await produce_events(bootstrap, topic_prefix, [env(profile(berlin, city="Berlin")), env(campaign(late_campaign))])

    def requested(records: list[Any]) -> bool:
        return all(lead_events(records, lead, "video_requested.v1") for lead in (no_city, berlin, early))

    records = await read_until(bootstrap, [topic_prefix + LEAD_TOPIC], requested)
    req = lead_events(records, no_city, "video_requested.v1")[0].data
    assert req.template_id == "studio-tpl-7"
    assert req.variables == {"name": "Ada", "city": "your city", "role": "Head of Sales at Northwind Labs"}
    assert req.fallbacks_used == ["city"]
    other = lead_events(records, berlin, "video_requested.v1")[0].data
    assert other.variables["city"] == "Berlin" and other.fallbacks_used == []
    assert lead_events(records, early, "video_requested.v1")[0].data.variables["city"] == "Paris"

    async def plain_seen() -> bool:
        async with service.engine.connect() as conn:
            n = await conn.scalar(select(func.count()).select_from(enrollments).where(enrollments.c.lead_id == plain))
            return bool(n)

    await wait_for(plain_seen, what="non-video enrolment handled")
    async with service.engine.connect() as conn:
        assert await conn.scalar(select(func.count()).select_from(jobs).where(jobs.c.lead_id == plain)) == 0

    async with api(service) as client:
        rendering = await job(client, no_city, video_campaign, "rendering")
        assert rendering["provider_job_id"] and rendering["fallbacks_used"] == ["city"]
        await job(client, berlin, video_campaign, "rendering")  # both submitted before the studio's clock moves
        clock.advance(timedelta(seconds=31))  # the simulated studio renders in 30 campaign seconds
        done = await job(client, no_city, video_campaign, "generated")
        assert done["video_url"].endswith(".mp4")
        assert [c["outcome"] for c in done["callbacks"]] == ["generated"]
        async with api(service, "ws-elsewhere") as stranger:
            r = await stranger.get(f"/v1/video/jobs/{no_city}", params={"campaign_id": str(video_campaign)})
            assert r.status_code == 404

    def generated(records: list[Any]) -> bool:
        return all(lead_events(records, lead, "video_generated.v1") for lead in (no_city, berlin))

    records = await read_until(bootstrap, [topic_prefix + LEAD_TOPIC], generated)
    ev = lead_events(records, no_city, "video_generated.v1")[0]
    assert ev.data.video_url == done["video_url"] and str(ev.data.video_job_id) == done["video_job_id"]
    requested_env = lead_events(records, no_city, "video_requested.v1")[0]
    assert ev.causation_id == requested_env.id
    assert ev.workspace_id == "ws-video"
    # The studio's callback is a request of another trace; the outcome continues the job's.
    assert trace_of(ev.traceparent) == trace_of(requested_env.traceparent) is not None


async def test_late_video_times_out_and_the_late_callback_is_ignored(
    make_settings: Any, start_service: Any, topic_prefix: str
) -> None:
    clock = FakeClock()
    service = await start(
        make_settings, start_service, clock, video_timeout_s=60, sim_render_delay_min_s=300, sim_render_delay_max_s=300
    )
    bootstrap = service.settings.kafka_bootstrap_servers
    camp, lead = uuid.uuid4(), uuid.uuid4()
    await produce_events(
        bootstrap, topic_prefix, [env(campaign(camp)), env(profile(lead, city="Lisbon")), env(enrolled(lead, camp))]
    )
    async with api(service) as client:
        rendering = await job(client, lead, camp, "rendering")
        clock.advance(timedelta(seconds=59))
        assert (await client.get(f"/v1/video/jobs/{lead}", params={"campaign_id": str(camp)})).json()[
            "status"
        ] == "rendering"
        clock.advance(timedelta(seconds=2))  # past the 60 s timeout, before the studio's 300 s render
        failed = await job(client, lead, camp, "failed")
        assert failed["failure_reason"] == "timeout" and failed["video_url"] is None

        records = await read_until(
            bootstrap, [topic_prefix + LEAD_TOPIC], lambda recs: bool(lead_events(recs, lead, "video_failed.v1"))
        )
        vf = lead_events(records, lead, "video_failed.v1")[0]
        assert vf.data.reason == "timeout" and str(vf.data.video_job_id) == rendering["video_job_id"]
        requested_env = lead_events(records, lead, "video_requested.v1")[0]
        assert trace_of(vf.traceparent) == trace_of(requested_env.traceparent) is not None  # the job's timer's

        clock.advance(timedelta(seconds=300))  # now the studio calls back, too late

        async def late_recorded() -> dict[str, Any] | None:
            r = await client.get(f"/v1/video/jobs/{lead}", params={"campaign_id": str(camp)})
            body = dict(r.json())
            return body if body["callbacks"] else None

        after = await wait_for(late_recorded, what="late callback recorded")
        assert [c["outcome"] for c in after["callbacks"]] == ["late"]
        assert after["status"] == "failed" and after["failure_reason"] == "timeout" and after["video_url"] is None

    await outbox_drained(service)
    records = await read_to_end(bootstrap, topic_prefix + LEAD_TOPIC)
    assert len(lead_events(records, lead, "video_failed.v1")) == 1
    assert lead_events(records, lead, "video_generated.v1") == []


async def test_bad_signature_is_refused_and_nothing_is_recorded(
    make_settings: Any, start_service: Any, topic_prefix: str
) -> None:
    clock = FakeClock()
    service = await start(
        make_settings, start_service, clock, sim_render_delay_min_s=10**6, sim_render_delay_max_s=10**6
    )
    camp, lead = uuid.uuid4(), uuid.uuid4()
    await produce_events(
        service.settings.kafka_bootstrap_servers,
        topic_prefix,
        [env(campaign(camp)), env(profile(lead, city=None)), env(enrolled(lead, camp))],
    )
    async with api(service) as client:
        j = await job(client, lead, camp, "rendering")
        payload = completed_callback(j)

        ids = [f"msg_bad_{n}_{lead.hex}" for n in range(4)]
        body, headers = signed(signing_key("not-the-secret"), payload, msg_id=ids[0])
        r = await client.post("/v1/video/callback", content=body, headers=headers)
        assert r.status_code == 401 and r.json()["code"] == "invalid_signature"

        body, headers = signed(SECRET, payload, msg_id=ids[1])
        tampered = body.replace(b"v.mp4", b"x.mp4")
        r = await client.post("/v1/video/callback", content=tampered, headers=headers)
        assert r.status_code == 401 and r.json()["code"] == "invalid_signature"

        r = await client.post("/v1/video/callback", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 401

        body, headers = signed(SECRET, payload, msg_id=ids[2], timestamp=int(time.time()) - 3600)
        r = await client.post("/v1/video/callback", content=body, headers=headers)
        assert r.status_code == 401 and r.json()["code"] == "stale_webhook"

        body, headers = signed(SECRET, payload, msg_id=ids[3])
        headers["webhook-signature"] = "v2," + headers["webhook-signature"].split(",", 1)[1]
        r = await client.post("/v1/video/callback", content=body, headers=headers)
        assert r.status_code == 401

        async with service.engine.connect() as conn:
            recorded = select(func.count()).select_from(callbacks)
            assert await conn.scalar(recorded.where(callbacks.c.video_job_id == uuid.UUID(j["video_job_id"]))) == 0
            assert await conn.scalar(recorded.where(callbacks.c.msg_id.in_(ids))) == 0
            seen = select(func.count()).select_from(seen_webhooks).where(seen_webhooks.c.msg_id.in_(ids))
            assert await conn.scalar(seen) == 0
        still = (await client.get(f"/v1/video/jobs/{lead}", params={"campaign_id": str(camp)})).json()
        assert still["status"] == "rendering" and still["callbacks"] == [] and still["video_url"] is None

        body, headers = signed(SECRET, payload, msg_id=ids[1])  # the same callback, correctly signed, is accepted
        r = await client.post("/v1/video/callback", content=body, headers=headers)
        assert r.status_code == 200 and r.json()["outcome"] == "generated"


@pytest.mark.parametrize(
    "link",
    [
        "http://videos.example/v.mp4",  # not https
        "https://evil.example/v.mp4",  # not an allowed host
        "https://videos.example.evil.example/v.mp4",  # an allowed name inside another host
        "https://user:pw@videos.example/v.mp4",  # credentials
        "https://videos.example:8443/v.mp4",  # another port
        "javascript:alert(1)",
    ],
)
async def test_a_video_link_not_https_on_an_allowed_host_fails_the_job(
    make_settings: Any, start_service: Any, topic_prefix: str, link: str
) -> None:
    clock = FakeClock()
    service = await start(
        make_settings, start_service, clock, sim_render_delay_min_s=10**6, sim_render_delay_max_s=10**6
    )
    bootstrap = service.settings.kafka_bootstrap_servers
    camp, lead = uuid.uuid4(), uuid.uuid4()
    await produce_events(
        bootstrap, topic_prefix, [env(campaign(camp)), env(profile(lead, city="Oslo")), env(enrolled(lead, camp))]
    )
    async with api(service) as client:
        j = await job(client, lead, camp, "rendering")
        body, headers = signed(SECRET, completed_callback(j, link))
        r = await client.post("/v1/video/callback", content=body, headers=headers)
        assert r.status_code == 200 and r.json()["outcome"] == "failed"
        final = (await client.get(f"/v1/video/jobs/{lead}", params={"campaign_id": str(camp)})).json()
        assert final["status"] == "failed" and final["failure_reason"] == "rejected" and final["video_url"] is None
        big = b'{"type": "video.completed", "data": {"pad": "' + b"x" * 300_000 + b'"}}'
        too_big = await client.post("/v1/video/callback", content=big, headers=signed_headers(SECRET, "m", 1, big))
        assert too_big.status_code == 413 and too_big.json()["code"] == "payload_too_large"
    await outbox_drained(service)
    records = await read_to_end(bootstrap, topic_prefix + LEAD_TOPIC)
    assert lead_events(records, lead, "video_generated.v1") == []
    (failed,) = lead_events(records, lead, "video_failed.v1")
    assert failed.data.reason == "rejected" and "video link" in (failed.data.detail or "")


async def test_duplicate_callback_yields_one_video_generated(
    make_settings: Any, start_service: Any, topic_prefix: str
) -> None:
    clock = FakeClock()
    service = await start(
        make_settings, start_service, clock, sim_render_delay_min_s=10**6, sim_render_delay_max_s=10**6
    )
    bootstrap = service.settings.kafka_bootstrap_servers
    camp, lead = uuid.uuid4(), uuid.uuid4()
    await produce_events(
        bootstrap, topic_prefix, [env(campaign(camp)), env(profile(lead, city="Oslo")), env(enrolled(lead, camp))]
    )
    async with api(service) as client:
        j = await job(client, lead, camp, "rendering")
        body, headers = signed(SECRET, completed_callback(j), msg_id="msg_dup_1")
        first = await client.post("/v1/video/callback", content=body, headers=headers)
        second = await client.post("/v1/video/callback", content=body, headers=headers)
        assert first.status_code == 200 and first.json()["outcome"] == "generated"
        assert second.status_code == 200 and second.json()["outcome"] == "replay"
        body, headers = signed(SECRET, completed_callback(j, "https://videos.example/other.mp4"))
        third = await client.post("/v1/video/callback", content=body, headers=headers)
        assert third.json()["outcome"] == "duplicate"
        failure = {"type": "video.failed", "data": {"video_id": j["provider_job_id"], "error": {"message": "x"}}}
        body, headers = signed(SECRET, failure)
        assert (await client.post("/v1/video/callback", content=body, headers=headers)).json()["outcome"] == "duplicate"
        body, headers = signed(SECRET, {"type": "video.completed", "data": {}})
        assert (await client.post("/v1/video/callback", content=body, headers=headers)).status_code == 422
        final = (await client.get(f"/v1/video/jobs/{lead}", params={"campaign_id": str(camp)})).json()
        assert final["status"] == "generated" and final["video_url"] == "https://videos.example/v.mp4"
        assert [c["outcome"] for c in final["callbacks"]] == ["generated", "replay", "duplicate", "duplicate"]

    await outbox_drained(service)
    records = await read_to_end(bootstrap, topic_prefix + LEAD_TOPIC)
    generated = lead_events(records, lead, "video_generated.v1")
    assert len(generated) == 1 and generated[0].data.video_url == "https://videos.example/v.mp4"
    assert lead_events(records, lead, "video_failed.v1") == []


async def test_a_failed_render_is_reported_once(make_settings: Any, start_service: Any, topic_prefix: str) -> None:
    clock = FakeClock()
    service = await start(make_settings, start_service, clock, sim_failure_rate=1.0)
    bootstrap = service.settings.kafka_bootstrap_servers
    camp, lead = uuid.uuid4(), uuid.uuid4()
    await produce_events(
        bootstrap, topic_prefix, [env(campaign(camp)), env(profile(lead, city="Turin")), env(enrolled(lead, camp))]
    )
    async with api(service) as client:
        await job(client, lead, camp, "rendering")
        clock.advance(timedelta(seconds=31))
        failed = await job(client, lead, camp, "failed")
        assert failed["failure_reason"] == "provider_error" and "render failure" in failed["failure_detail"]
        clock.advance(timedelta(seconds=600))  # past the timeout: a finished job never times out
        await outbox_drained(service)
    records = await read_until(
        bootstrap, [topic_prefix + LEAD_TOPIC], lambda recs: bool(lead_events(recs, lead, "video_failed.v1"))
    )
    (vf,) = lead_events(records, lead, "video_failed.v1")
    assert vf.data.reason == "provider_error"


async def test_a_studio_s_oversized_words_are_kept_to_the_contract_s_bounds(
    make_settings: Any, start_service: Any, topic_prefix: str
) -> None:
    """A failure callback whose error is longer than VideoFailed.detail may be, or a success whose thumbnail is
    longer than a URL may be, answered 500 (the event could not be built) and was sent again for ever: the job
    never ended. Now the error is kept to its bound and the thumbnail left out; an over-long video id is a 422."""
    clock = FakeClock()
    service = await start(
        make_settings, start_service, clock, sim_render_delay_min_s=10**6, sim_render_delay_max_s=10**6
    )
    bootstrap = service.settings.kafka_bootstrap_servers
    (c1, l1), (c2, l2) = (uuid.uuid4(), uuid.uuid4()), (uuid.uuid4(), uuid.uuid4())
    await produce_events(
        bootstrap,
        topic_prefix,
        [env(campaign(c)) for c in (c1, c2)]
        + [env(profile(lead, city="Oslo")) for lead in (l1, l2)]
        + [env(enrolled(l1, c1)), env(enrolled(l2, c2))],
    )
    async with api(service) as client:
        failing, rendered = await job(client, l1, c1, "rendering"), await job(client, l2, c2, "rendering")
        long_id = {"type": "video.failed", "data": {"external_id": failing["video_job_id"], "video_id": "v" * 201}}
        body, headers = signed(SECRET, long_id)
        refused = await client.post("/v1/video/callback", content=body, headers=headers)
        assert refused.status_code == 422 and "data.video_id" in refused.json()["detail"]

        error = {"type": "video.failed", "data": {"external_id": failing["video_job_id"], "error": "e" * 5000}}
        body, headers = signed(SECRET, error)
        r = await client.post("/v1/video/callback", content=body, headers=headers)
        assert r.status_code == 200 and r.json()["outcome"] == "failed", r.text
        failed = await job(client, l1, c1, "failed")
        assert failed["failure_detail"] == "e" * 4000

        done = completed_callback(rendered)
        done["data"]["thumbnail_url"] = "https://videos.example/" + "t" * 3000
        body, headers = signed(SECRET, done)
        r = await client.post("/v1/video/callback", content=body, headers=headers)
        assert r.status_code == 200 and r.json()["outcome"] == "generated", r.text
        generated = await job(client, l2, c2, "generated")
        assert generated["video_url"] == "https://videos.example/v.mp4" and generated["thumbnail_url"] is None
    await outbox_drained(service)
    records = await read_to_end(bootstrap, topic_prefix + LEAD_TOPIC)
    (vf,) = lead_events(records, l1, "video_failed.v1")
    assert vf.data.detail == "e" * 4000
    (vg,) = lead_events(records, l2, "video_generated.v1")
    assert vg.data.thumbnail_url is None


async def test_a_malformed_callback_names_its_field_in_errors(make_settings: Any, start_service: Any) -> None:
    """A malformed studio callback is a 422 ``invalid_callback`` whose ``errors`` name the field at fault, as every
    other invalid input's do (it named it only in ``detail``); nothing is recorded for it."""
    service = await start(make_settings, start_service, FakeClock())
    job_id = str(uuid.uuid4())
    cases: list[tuple[dict[str, Any] | bytes, list[str]]] = [
        (b"not json", ["body"]),
        (b"[1, 2]", ["body"]),
        ({"type": "video.completed"}, ["data"]),
        ({"type": "video.completed", "data": {}}, ["data.video_id", "data.external_id"]),
        ({"type": "video.failed", "data": {"video_id": "v" * 201}}, ["data.video_id"]),
        ({"type": "video.failed", "data": {"external_id": "not-a-uuid"}}, ["data.external_id"]),
        ({"type": "video.completed", "data": {"external_id": job_id}}, ["data.download_url"]),
        ({"type": "video.paused", "data": {"external_id": job_id}}, ["type"]),
    ]
    msg_ids = [f"msg_bad_{i}_{uuid.uuid4().hex}" for i in range(len(cases))]
    async with api(service) as client:
        for (payload, fields), msg_id in zip(cases, msg_ids, strict=True):
            if isinstance(payload, bytes):
                body = payload
                headers = {"content-type": "application/json", **signed_headers(SECRET, msg_id, int(time.time()), body)}
            else:
                body, headers = signed(SECRET, payload, msg_id=msg_id)
            r = await client.post("/v1/video/callback", content=body, headers=headers)
            assert r.status_code == 422, (payload, r.status_code, r.text[:200])
            problem = r.json()
            assert problem["code"] == "invalid_callback", problem
            assert [e["field"] for e in problem["errors"]] == fields, (payload, problem)
            assert all(e["message"] == problem["detail"] for e in problem["errors"]), problem
    async with service.engine.connect() as conn:
        for table in (callbacks, seen_webhooks):
            assert await conn.scalar(select(func.count()).select_from(table).where(table.c.msg_id.in_(msg_ids))) == 0


async def test_a_queued_job_wakes_the_idle_job_loop(make_settings: Any, start_service: Any, topic_prefix: str) -> None:
    # On the real clock an idle job loop sleeps until its next job is due, here up to a minute (timer_idle_max_s):
    # the handler that queues a job wakes it, so the job is submitted long before that.
    service = await start(make_settings, start_service, SystemClock(), timer_idle_max_s=60.0)
    bootstrap = service.settings.kafka_bootstrap_servers
    video_campaign, lead = uuid.uuid4(), uuid.uuid4()
    await produce_events(
        bootstrap,
        topic_prefix,
        [env(campaign(video_campaign)), env(profile(lead, city="Oslo")), env(enrolled(lead, video_campaign))],
    )
    async with api(service) as client:

        async def submitted() -> bool:
            r = await client.get(f"/v1/video/jobs/{lead}", params={"campaign_id": str(video_campaign)})
            return r.status_code == 200 and r.json()["status"] == "rendering"

        await wait_for(submitted, timeout_s=30, what="the job submitted without waiting for the idle maximum")
