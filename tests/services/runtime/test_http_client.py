"""The shared provider HTTP client against a real local server: retries, Retry-After, final errors."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from services.runtime.clock import FakeClock
from services.runtime.http_client import ProviderHttpClient, RetryPolicy, parse_retry_after, retry_after_seconds
from services.runtime.providers import ProviderError, RateLimited
from tests.support.local_http import Reply, ScriptedServer, Sleeps

NOW = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
OK = Reply(200, {"ok": True})


def client(base_url: str, sleeps: Sleeps, **kw: Any) -> ProviderHttpClient:
    policy = RetryPolicy(
        max_retries=kw.pop("max_retries", 3),
        backoff_initial_s=0.5,
        backoff_max_s=kw.pop("backoff_max_s", 8.0),
        max_retry_after_s=kw.pop("max_retry_after_s", 60.0),
        jitter=kw.pop("jitter", 0.0),
    )
    options: dict[str, Any] = {"headers": {"Authorization": "Bearer k"}, "timeout_s": 2.0, "clock": FakeClock(NOW)}
    return ProviderHttpClient("test API", base_url, retry=policy, sleep=sleeps, **{**options, **kw})


def server(*script: Reply) -> ScriptedServer:
    return ScriptedServer("/v1/things", base_path="/v1", script=script)


async def test_sends_base_url_path_auth_and_body_and_reads_the_answer() -> None:
    sleeps = Sleeps()
    async with server(OK).running() as s:
        api = client(s.base_url, sleeps)
        try:
            data = await api.request_object("POST", "/things", json={"a": 1})
        finally:
            await api.aclose()
    assert data == {"ok": True} and sleeps.waits == []
    (req,) = s.requests
    assert (req["path"], req["json"], req["headers"]["authorization"]) == ("/v1/things", {"a": 1}, "Bearer k")


async def test_429_honours_retry_after_in_seconds_and_as_an_http_date() -> None:
    sleeps = Sleeps()
    script = [
        Reply(429, {}, {"Retry-After": "3"}),
        Reply(429, {}, {"Retry-After": "Mon, 05 Jan 2026 08:00:30 GMT"}),
        Reply(429, {}, {"retry-after-ms": "1500"}),
        Reply(429, {}, {}),  # no header: the backoff of this attempt
        OK,
    ]
    async with server(*script).running() as s:
        api = client(s.base_url, sleeps, max_retries=4)
        try:
            assert await api.request_json("POST", "/things") == {"ok": True}
        finally:
            await api.aclose()
    assert sleeps.waits == [3.0, 30.0, 1.5, 4.0]
    assert len(s.requests) == 5


async def test_a_long_retry_after_is_handed_back_not_waited() -> None:
    sleeps = Sleeps()
    async with server(Reply(429, {}, {"Retry-After": "120"})).running() as s:
        api = client(s.base_url, sleeps, max_retry_after_s=10.0)
        try:
            with pytest.raises(RateLimited) as limited:
                await api.request("POST", "/things")
        finally:
            await api.aclose()
    assert limited.value.retry_after_s == 120 and limited.value.transient and limited.value.status == 429
    assert len(s.requests) == 1 and sleeps.waits == []


async def test_5xx_then_success_backs_off_exponentially_up_to_the_cap() -> None:
    sleeps = Sleeps()
    script = [Reply(503), Reply(500), Reply(502, b"bad gateway"), OK]
    async with server(*script).running() as s:
        api = client(s.base_url, sleeps, backoff_max_s=1.5)
        try:
            assert await api.request_object("POST", "/things") == {"ok": True}
        finally:
            await api.aclose()
    assert sleeps.waits == [0.5, 1.0, 1.5]


async def test_exhausted_retries_raise_the_last_failure() -> None:
    sleeps = Sleeps()
    async with server(Reply(503, {"error": "down"})).running() as s:
        api = client(s.base_url, sleeps, max_retries=2)
        try:
            with pytest.raises(ProviderError) as failed:
                await api.request("POST", "/things")
            s.script = [Reply(429, {}, {"Retry-After": "1"})]
            with pytest.raises(RateLimited) as limited:
                await api.request("POST", "/things")
        finally:
            await api.aclose()
    assert (failed.value.transient, failed.value.status) == (True, 503)
    assert "test API answered 503" in str(failed.value)
    assert limited.value.retry_after_s == 1.0
    assert len(s.requests) == 6 and sleeps.waits == [0.5, 1.0, 1.0, 1.0]


class _Counting(httpx.AsyncHTTPTransport):
    """Counts the requests the client sent (a held request may time out before the server has read it)."""

    sent = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent += 1
        return await super().handle_async_request(request)


async def test_a_timeout_is_retried_then_surfaced_as_transient() -> None:
    sleeps = Sleeps()
    transport = _Counting()
    async with server(Reply(200, {}, hold=True), OK).running() as s:
        api = client(s.base_url, sleeps, timeout_s=0.2, transport=transport)
        try:
            assert await api.request_object("POST", "/things") == {"ok": True}
            s.script = [Reply(200, {}, hold=True)]
            with pytest.raises(ProviderError, match="timed out") as slow:
                await api.request("POST", "/things")
        finally:
            await api.aclose()
    assert slow.value.transient and slow.value.status is None
    # Counted as sent, not as the server saw them: on a loaded machine the last attempt timed out (0.2 s) before
    # the server read it, once, in a full run.
    assert transport.sent == 2 + 4 and sleeps.waits == [0.5, 0.5, 1.0, 2.0]
    assert 2 <= len(s.requests) <= transport.sent


async def test_a_connection_error_is_transient() -> None:
    sleeps = Sleeps()
    api = client("http://127.0.0.1:9", sleeps, max_retries=1)
    try:
        with pytest.raises(ProviderError, match="unreachable") as refused:
            await api.request("GET", "/")
    finally:
        await api.aclose()
    assert refused.value.transient and isinstance(refused.value.__cause__, httpx.ConnectError)
    assert sleeps.waits == [0.5]


async def test_other_4xx_are_final_and_the_refusal_is_the_adapters() -> None:
    sleeps = Sleeps()

    def refusal(response: httpx.Response, what: str) -> ProviderError:
        return ProviderError(f"{what}: {response.json()['detail']}", transient=False, status=response.status_code)

    async with server(Reply(422, {"detail": "unknown template"})).running() as s:
        plain = client(s.base_url, sleeps)
        custom = client(s.base_url, sleeps, refusal=refusal)
        try:
            with pytest.raises(ProviderError) as default:
                await plain.request("POST", "/things")
            with pytest.raises(ProviderError) as own:
                await custom.request("POST", "/things", what="render")
        finally:
            await plain.aclose()
            await custom.aclose()
    assert (default.value.transient, default.value.status) == (False, 422)
    assert "test API refused the request (422)" in str(default.value) and "unknown template" in str(default.value)
    assert str(own.value) == "render: unknown template"
    assert len(s.requests) == 2 and sleeps.waits == []


async def test_retry_statuses_and_passthrough() -> None:
    sleeps = Sleeps()
    async with server(Reply(202, {}), Reply(404, {"error": "none"})).running() as s:
        api = client(s.base_url, sleeps)
        try:
            response = await api.request("POST", "/things", retry_statuses={202: "is busy"}, passthrough={404})
            s.script = [Reply(202, {})]
            with pytest.raises(ProviderError, match="test API is busy") as busy:
                await api.request("POST", "/things", retry_statuses={202: "is busy"})
        finally:
            await api.aclose()
    assert response.status_code == 404 and (busy.value.transient, busy.value.status) == (True, 202)
    assert sleeps.waits == [0.5, 0.5, 1.0, 2.0]


async def test_answers_that_are_not_json_objects() -> None:
    sleeps = Sleeps()
    async with server(Reply(200, b"<html>")).running() as s:
        api = client(s.base_url, sleeps)
        try:
            with pytest.raises(ProviderError, match="invalid JSON") as invalid:
                await api.request_json("POST", "/things")
            s.script = [Reply(200, [1, 2])]
            assert await api.request_json("POST", "/things") == [1, 2]
            with pytest.raises(ProviderError, match="not a JSON object") as permanent:
                await api.request_object("POST", "/things")
            with pytest.raises(ProviderError, match="not a JSON object") as transient:
                await api.request_object("POST", "/things", non_object_transient=True)
        finally:
            await api.aclose()
    assert invalid.value.transient and invalid.value.status == 200
    assert not permanent.value.transient and transient.value.transient


def test_jitter_takes_off_at_most_its_fraction_and_is_seedable() -> None:
    policy = RetryPolicy(backoff_initial_s=1.0, backoff_max_s=4.0, jitter=0.5)
    waits = [policy.backoff(retry, random.Random(7)) for retry in range(4)]
    assert waits == [policy.backoff(retry, random.Random(7)) for retry in range(4)]  # the same seed, the same waits
    for wait, base in zip(waits, [1.0, 2.0, 4.0, 4.0], strict=True):
        assert base * 0.5 <= wait <= base
    assert waits[0] != 1.0
    assert RetryPolicy(backoff_initial_s=1.0).backoff(3, random.Random(7)) == 8.0


def test_retry_after_header_forms() -> None:
    assert parse_retry_after(" 7 ", NOW, 1.0) == 7.0
    assert parse_retry_after("Mon, 05 Jan 2026 08:00:30 GMT", NOW, 1.0) == 30.0
    assert parse_retry_after("Mon, 05 Jan 2026 07:00:00 GMT", NOW, 1.0) == 0.0
    assert parse_retry_after(None, NOW, 1.5) == 1.5 and parse_retry_after("soon", NOW, 1.5) == 1.5
    assert retry_after_seconds(httpx.Headers({"retry-after-ms": "250", "Retry-After": "9"}), NOW) == 0.25
    assert retry_after_seconds(httpx.Headers({"Retry-After": "-3"}), NOW) == 0.0
    assert retry_after_seconds(httpx.Headers({}), NOW) is None
