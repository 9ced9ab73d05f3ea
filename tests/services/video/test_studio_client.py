"""The AI-Studio-style REST client against a local server speaking the protocol, including 429 and 5xx,
and the service submitting through it (a long Retry-After is honoured by the durable job)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from services.runtime.clock import FakeClock
from services.runtime.providers import ProviderError, RateLimited
from services.video.adapters import RenderRequest
from services.video.adapters.http import HttpStudio
from services.video.app import build
from services.video.domain import job_id
from services.video.settings import VideoSettings
from services.video.store import jobs
from tests.services.video.helpers import (
    LEAD_TOPIC,
    api,
    campaign,
    enrolled,
    env,
    job,
    lead_events,
    profile,
    signed,
)
from tests.services.video.studio_server import accepted, studio_server
from tests.support.kafka import produce_events, read_until, wait_for
from tests.support.keys import signing_key
from tests.support.local_http import Reply, ScriptedServer, Sleeps

SECRET = signing_key("studio-test-secret")
REQUEST = RenderRequest(uuid.uuid4(), "tpl-9", {"name": "Ada", "city": "your city"}, "https://ls.example/cb")


def studio(base_url: str, sleeps: Sleeps, **kw: Any) -> HttpStudio:
    opts: dict[str, Any] = {
        "timeout_s": 2.0,
        "max_retries": 3,
        "backoff_initial_s": 0.5,
        "backoff_max_s": 4.0,
        "max_retry_after_s": 30.0,
    }
    opts.update(kw)
    return HttpStudio(base_url, "studio-key", sleep=sleeps, **opts)


async def test_render_request_speaks_the_protocol() -> None:
    sleeps = Sleeps()
    async with studio_server(Reply(201, accepted("vid_abc"))) as server:
        client = studio(server.base_url, sleeps)
        try:
            out = await client.render(REQUEST)
        finally:
            await client.aclose()
    assert out.provider_job_id == "vid_abc" and out.status == "queued"
    (req,) = server.requests
    assert req["path"] == "/v1/videos" and req["headers"]["X-Api-Key"] == "studio-key"
    body = req["json"]
    assert body["template_id"] == "tpl-9"
    assert body["variables"] == {
        "name": {"type": "text", "value": "Ada"},
        "city": {"type": "text", "value": "your city"},
    }
    assert body["callback_url"] == "https://ls.example/cb" and body["external_id"] == str(REQUEST.video_job_id)


async def test_429_and_5xx_are_retried() -> None:
    sleeps = Sleeps()
    script = [
        Reply(429, {"error": "slow"}, {"Retry-After": "2"}),
        Reply(503, {}),
        Reply(500, {}),
        Reply(200, accepted("vid_ok")),
    ]
    async with studio_server(*script) as server:
        client = studio(server.base_url, sleeps)
        try:
            out = await client.render(REQUEST)
        finally:
            await client.aclose()
    assert out.provider_job_id == "vid_ok"
    assert sleeps.waits == [2.0, 1.0, 2.0]
    assert len(server.requests) == 4


async def test_delete_speaks_the_protocol_retries_a_5xx_and_takes_an_unknown_video_as_deleted() -> None:
    """``DELETE /videos/{id}``: a 503 is retried, a 404 or 410 is a video deleted already (a delete is idempotent),
    another 4xx is a final refusal."""
    sleeps = Sleeps()
    script = [Reply(503, {}), Reply(200, {"data": {"video_id": "vid_ab", "status": "deleted"}})]
    async with ScriptedServer("/v1/videos/vid_ab", method="DELETE", base_path="/v1", script=script).running() as srv:
        client = studio(srv.base_url, sleeps)
        try:
            await client.delete("vid_ab")
        finally:
            await client.aclose()
    assert [r["path"] for r in srv.requests] == ["/v1/videos/vid_ab"] * 2 and sleeps.waits == [0.5]
    assert srv.requests[0]["headers"]["X-Api-Key"] == "studio-key"
    for status in (404, 410):
        async with ScriptedServer(
            "/v1/videos/gone", method="DELETE", base_path="/v1", script=[Reply(status, {})]
        ).running() as srv:
            client = studio(srv.base_url, sleeps)
            try:
                await client.delete("gone")
            finally:
                await client.aclose()
        assert len(srv.requests) == 1
    async with ScriptedServer(
        "/v1/videos/vid_x", method="DELETE", base_path="/v1", script=[Reply(403, {})]
    ).running() as srv:
        client = studio(srv.base_url, sleeps)
        try:
            with pytest.raises(ProviderError) as refused:
                await client.delete("vid_x")
        finally:
            await client.aclose()
    assert not refused.value.transient and refused.value.status == 403


async def test_persistent_5xx_and_long_retry_after_and_4xx() -> None:
    sleeps = Sleeps()
    async with studio_server(Reply(502, {})) as server:
        client = studio(server.base_url, sleeps, max_retries=2)
        try:
            with pytest.raises(ProviderError) as err:
                await client.render(REQUEST)
        finally:
            await client.aclose()
    assert err.value.transient and err.value.status == 502 and len(server.requests) == 3

    async with studio_server(Reply(429, {}, {"Retry-After": "120"})) as server:
        client = studio(server.base_url, sleeps, max_retry_after_s=10)
        try:
            with pytest.raises(RateLimited) as limited:
                await client.render(REQUEST)
        finally:
            await client.aclose()
    assert limited.value.retry_after_s == 120 and len(server.requests) == 1

    async with studio_server(Reply(422, {"error": "unknown template"})) as server:
        client = studio(server.base_url, sleeps)
        try:
            with pytest.raises(ProviderError) as final:
                await client.render(REQUEST)
        finally:
            await client.aclose()
    assert not final.value.transient and final.value.status == 422 and len(server.requests) == 1


async def test_service_submits_through_the_http_studio_and_honours_a_long_retry_after(
    make_settings: Any, start_service: Any, topic_prefix: str
) -> None:
    clock = FakeClock()
    camp, lead = uuid.uuid4(), uuid.uuid4()
    ours = str(job_id(camp, lead))
    # Other tests' video leads share the topics; only our job is rate limited.
    async with studio_server(Reply(201, accepted("vid_other"))) as server:
        server.by_external[ours] = [
            Reply(429, {"error": "busy"}, {"Retry-After": "120"}),
            Reply(201, accepted("vid_http_1")),
        ]
        settings = make_settings(
            "video",
            VideoSettings,
            video_provider="http",
            studio_base_url=server.base_url,
            studio_api_key="k",
            studio_max_retry_after_s=5,
            studio_backoff_initial_s=0.01,
            video_poll_interval_s=0.05,
            video_webhook_secret=SECRET,
            link_allowed_hosts="cdn.example",
            video_timeout_s=3600,
            video_callback_url="https://ls.example/v1/video/callback",
        )
        service = await start_service(build(settings, clock=clock))
        await produce_events(
            settings.kafka_bootstrap_servers,
            topic_prefix,
            [env(campaign(camp)), env(profile(lead, city="Rome")), env(enrolled(lead, camp))],
        )
        async with api(service) as client:
            queued = await job(client, lead, camp, "queued")
            assert queued["provider_job_id"] is None and queued["video_job_id"] == ours

            async def deferred() -> Any:
                async with service.engine.connect() as conn:
                    when = await conn.scalar(select(jobs.c.next_attempt_at).where(jobs.c.lead_id == lead))
                return when is not None and when > clock.now()

            await wait_for(deferred, what="submit deferred by the 429")
            assert len(server.requests_for(ours)) == 1  # rate limited: not retried inline, the job waits its turn
            clock.advance(timedelta(seconds=121))
            rendering = await job(client, lead, camp, "rendering")
            assert rendering["provider_job_id"] == "vid_http_1"
            sent = server.requests_for(ours)[-1]["json"]
            assert sent["external_id"] == rendering["video_job_id"]
            assert sent["callback_url"] == "https://ls.example/v1/video/callback"
            assert sent["variables"]["city"] == {"type": "text", "value": "Rome"}

            payload = {
                "type": "video.completed",
                "data": {"video_id": "vid_http_1", "download_url": "https://cdn.example/vid_http_1.mp4"},
            }
            body, headers = signed(SECRET, payload)
            r = await client.post("/v1/video/callback", content=body, headers=headers)
            assert r.json()["outcome"] == "generated"
        records = await read_until(
            settings.kafka_bootstrap_servers,
            [topic_prefix + LEAD_TOPIC],
            lambda recs: bool(lead_events(recs, lead, "video_generated.v1")),
        )
        assert (
            lead_events(records, lead, "video_generated.v1")[0].data.video_url == "https://cdn.example/vid_http_1.mp4"
        )
