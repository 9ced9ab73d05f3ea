"""The OpenAI-compatible chat client against a local server speaking the protocol, including 429 and 5xx."""

from __future__ import annotations

from datetime import date

import pytest
from leadstream_schemas import Channel, Strategy

from services.messaging import domain as d
from services.messaging.adapters.http import ChatCompletionsGenerator
from services.messaging.writer import Writer
from services.runtime.http_client import retry_after_seconds
from services.runtime.providers import ProviderError, RateLimited
from tests.services.messaging.chat_server import chat_server, completion
from tests.services.messaging.test_domain import profile
from tests.support.local_http import Reply, Sleeps


def request(channel: Channel = Channel.invite, video: bool = False) -> d.DraftRequest:
    p = profile()
    return d.DraftRequest(
        channel=channel,
        step_id=channel.value,
        limit=d.limit_for(channel, video=video),
        hook=d.choose_hook(p, date(2026, 1, 5), d.HookWindows()),
        strategy=Strategy(offer="We help sales teams", call_to_action="Open to a chat?", tone="friendly"),
        template=d.BUILTIN_TEMPLATES["professional_introduction"],
        variables=d.lead_variables(p),
        variant_key="42|lead|" + channel.value,
    )


def client(base_url: str, sleeps: Sleeps, **kw: float) -> ChatCompletionsGenerator:
    opts: dict[str, float] = {
        "timeout_s": 2.0,
        "max_retries": 3,
        "backoff_initial_s": 0.5,
        "backoff_max_s": 4.0,
        "max_retry_after_s": 30.0,
    }
    opts.update(kw)
    return ChatCompletionsGenerator(
        base_url,
        "test-model",
        "sk-test",
        sleep=sleeps,
        timeout_s=opts["timeout_s"],
        max_retries=int(opts["max_retries"]),
        backoff_initial_s=opts["backoff_initial_s"],
        backoff_max_s=opts["backoff_max_s"],
        max_retry_after_s=opts["max_retry_after_s"],
    )


async def test_success_sends_the_protocol_and_reads_the_answer() -> None:
    sleeps = Sleeps()
    async with chat_server(Reply(200, completion('  "Hi Ada, loved your post on outbound pipeline."  '))) as server:
        gen = client(server.base_url, sleeps)
        try:
            out = await gen.generate(request())
        finally:
            await gen.aclose()
    assert out.text == "Hi Ada, loved your post on outbound pipeline."
    (req,) = server.requests
    assert req["path"] == "/v1/chat/completions"
    assert req["headers"]["Authorization"] == "Bearer sk-test"
    body = req["json"]
    assert body["model"] == "test-model"
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert "at most 200 characters" in body["messages"][0]["content"]
    assert "outbound pipeline" in body["messages"][1]["content"]
    assert sleeps.waits == []


async def test_429_honours_retry_after_then_succeeds() -> None:
    sleeps = Sleeps()
    script = [
        Reply(429, {"error": {"message": "slow down"}}, {"Retry-After": "3"}),
        Reply(429, {"error": {}}, {"retry-after-ms": "1500"}),
        Reply(200, completion("Hello Ada.")),
    ]
    async with chat_server(*script) as server:
        gen = client(server.base_url, sleeps)
        try:
            out = await gen.generate(request())
        finally:
            await gen.aclose()
    assert out.text == "Hello Ada."
    assert len(server.requests) == 3
    assert sleeps.waits == [3.0, 1.5]


async def test_5xx_is_retried_with_exponential_backoff() -> None:
    sleeps = Sleeps()
    script = [
        Reply(503, {"error": "overloaded"}),
        Reply(500, {"error": "boom"}),
        Reply(502, b"bad gateway"),
        Reply(200, completion("Hi.")),
    ]
    async with chat_server(*script) as server:
        gen = client(server.base_url, sleeps)
        try:
            out = await gen.generate(request())
        finally:
            await gen.aclose()
    assert out.text == "Hi."
    assert sleeps.waits == [0.5, 1.0, 2.0]


async def test_persistent_5xx_gives_up_with_a_transient_error() -> None:
    sleeps = Sleeps()
    async with chat_server(Reply(503, {"error": "down"})) as server:
        gen = client(server.base_url, sleeps, max_retries=2)
        try:
            with pytest.raises(ProviderError) as err:
                await gen.generate(request())
        finally:
            await gen.aclose()
    assert err.value.transient and err.value.status == 503
    assert len(server.requests) == 3


async def test_long_retry_after_is_handed_back_not_waited() -> None:
    sleeps = Sleeps()
    async with chat_server(Reply(429, {"error": {}}, {"Retry-After": "120"})) as server:
        gen = client(server.base_url, sleeps, max_retry_after_s=10)
        try:
            with pytest.raises(RateLimited) as err:
                await gen.generate(request())
        finally:
            await gen.aclose()
    assert err.value.retry_after_s == 120
    assert len(server.requests) == 1 and sleeps.waits == []


async def test_4xx_is_final() -> None:
    sleeps = Sleeps()
    async with chat_server(Reply(401, {"error": {"message": "invalid api key"}})) as server:
        gen = client(server.base_url, sleeps)
        try:
            with pytest.raises(ProviderError) as err:
                await gen.generate(request())
        finally:
            await gen.aclose()
    assert not err.value.transient and err.value.status == 401 and "invalid api key" in str(err.value)
    assert len(server.requests) == 1


async def test_timeout_is_retried() -> None:
    sleeps = Sleeps()
    async with chat_server(Reply(200, completion("late"), hold=True), Reply(200, completion("On time."))) as server:
        gen = client(server.base_url, sleeps, timeout_s=0.3)
        try:
            out = await gen.generate(request())
        finally:
            await gen.aclose()
    assert out.text == "On time."
    assert len(server.requests) == 2 and sleeps.waits == [0.5]


def test_retry_after_http_date() -> None:
    from datetime import UTC, datetime

    import httpx

    now = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
    headers = httpx.Headers({"Retry-After": "Mon, 05 Jan 2026 08:00:30 GMT"})
    assert retry_after_seconds(headers, now) == 30.0
    assert retry_after_seconds(httpx.Headers({}), now) is None


async def test_writer_regenerates_once_then_trims_at_a_sentence_boundary() -> None:
    long_answer = ("Hi Ada, your post on outbound pipeline was sharp. " * 3) + "We help sales teams. Open to a chat?"
    sleeps = Sleeps()
    async with chat_server(Reply(200, completion(long_answer))) as server:
        gen = client(server.base_url, sleeps)
        try:
            draft = await Writer(gen).write(request(video=True))
        finally:
            await gen.aclose()
    assert len(server.requests) == 2  # the first answer was too long: asked once more, shorter
    assert "shorter answer is required" in server.requests[1]["json"]["messages"][0]["content"]
    assert len(draft.text) <= 130 and draft.text.endswith(".")
    assert draft.regenerated and draft.trimmed and draft.generator == "llm"


async def test_writer_accepts_a_shorter_second_answer() -> None:
    sleeps = Sleeps()
    script = [Reply(200, completion("x " * 150)), Reply(200, completion("Hi Ada, loved your post. Open to a chat?"))]
    async with chat_server(*script) as server:
        gen = client(server.base_url, sleeps)
        try:
            draft = await Writer(gen).write(request())
        finally:
            await gen.aclose()
    assert draft.text == "Hi Ada, loved your post. Open to a chat?" and draft.regenerated and not draft.trimmed


async def test_email_subject_is_parsed_and_a_refusing_model_falls_back_to_templates() -> None:
    sleeps = Sleeps()
    async with chat_server(
        Reply(200, completion("Subject: Your post on pipelines\n\nHi Ada,\n\nGreat post."))
    ) as server:
        gen = client(server.base_url, sleeps)
        try:
            draft = await Writer(gen).write(request(Channel.email))
        finally:
            await gen.aclose()
    assert draft.subject == "Your post on pipelines" and draft.text == "Hi Ada,\n\nGreat post."
    async with chat_server(Reply(400, {"error": {"message": "bad request"}})) as server:
        gen = client(server.base_url, sleeps)
        try:
            draft = await Writer(gen).write(request(Channel.message))
        finally:
            await gen.aclose()
    assert draft.generator == "template_fallback" and "outbound pipeline" in draft.text
