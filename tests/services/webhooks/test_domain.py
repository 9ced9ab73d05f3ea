"""Webhook rules without I/O: filters, refused addresses, URL form, the retry schedule, disabling."""

from __future__ import annotations

import ipaddress
import random
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from leadstream_schemas import EVENT_TYPES

from services.webhooks import domain
from services.webhooks.domain import AttemptResult, RetryPolicy, Status

T0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
FAILED = AttemptResult(False, 12, status_code=500, error="HTTP 500", outcome="http_error")
OK = AttemptResult(True, 12, status_code=204)


@pytest.mark.parametrize(
    ("patterns", "event_type", "expected"),
    [
        (["*"], "leadstream.lead.replied.v1", True),
        (["leadstream.lead.*"], "leadstream.lead.replied.v1", True),
        (["leadstream.lead.*"], "leadstream.campaign.launched.v1", False),
        (["leadstream.lead.replied.v1"], "leadstream.lead.replied.v1", True),
        (["leadstream.lead.replied.v1"], "leadstream.lead.replied.v2", False),
        (["leadstream.lead.invite_sent.v1", "leadstream.campaign.*"], "leadstream.campaign.paused.v1", True),
        (["leadstream.le.*"], "leadstream.lead.replied.v1", False),  # a prefix matches whole segments only
    ],
)
def test_patterns_select_types(patterns: list[str], event_type: str, expected: bool) -> None:
    assert domain.matches(patterns, event_type) is expected


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("leadstream.lead.nothing.v1", "unknown event type"),
        ("leadstream.nothing.*", "matches no event type"),
        ("leadstream.*.replied.v1", "a wildcard may only end a pattern"),
        ("leadstream.lead*", "a wildcard may only end a pattern"),
        ("**", "a wildcard may only end a pattern"),
    ],
)
def test_patterns_that_select_nothing_are_refused(pattern: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        domain.check_pattern(pattern, EVENT_TYPES)


def test_valid_patterns_pass_unchanged() -> None:
    for p in ("*", "leadstream.lead.*", "leadstream.*", "leadstream.lead.replied.v1"):
        assert domain.check_pattern(p, EVENT_TYPES) == p


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fc00::1", "private"),
        ("169.254.169.254", "link-local"),  # cloud metadata
        ("fe80::1", "link-local"),
        ("fe80::1%2", "link-local"),
        ("224.0.0.1", "multicast"),
        ("239.1.2.3", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("100.64.0.1", "reserved"),  # carrier-grade NAT
        ("192.0.2.10", "private"),  # documentation range
        ("240.0.0.1", "reserved"),
        ("::ffff:127.0.0.1", "loopback (as ::ffff:7f00:1)"),  # IPv4-mapped
        ("::ffff:169.254.169.254", "link-local"),
        ("::ffff:10.0.0.1", "private"),
        ("2002:7f00:1::", "loopback"),  # 6to4 around 127.0.0.1
        ("64:ff9b::a9fe:a9fe", "link-local"),  # NAT64 around 169.254.169.254
        ("2001:0:4136:e378:8000:63bf:80ff:fffe", "loopback"),  # Teredo, client 127.0.0.1
        ("::127.0.0.1", "reserved"),  # IPv4-compatible (deprecated)
    ],
)
def test_non_public_addresses_are_refused_with_the_reason(address: str, reason: str) -> None:
    refused = domain.refused_address(ipaddress.ip_address(address))
    assert refused is not None and refused.startswith(reason.split(" (")[0]), refused
    if " (as " in reason:
        assert refused == reason


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_pass(address: str) -> None:
    assert domain.refused_address(ipaddress.ip_address(address)) is None


def test_a_host_is_refused_when_any_of_its_addresses_is() -> None:
    addresses = [ipaddress.ip_address("8.8.8.8"), ipaddress.ip_address("10.0.0.7")]
    reason = domain.refusal("hooks.example.com", addresses)
    assert reason == "hooks.example.com resolves to 10.0.0.7, which is not a public address (private)"
    assert domain.refusal("8.8.8.8", addresses[:1]) is None


def test_parse_target_takes_an_https_url_apart() -> None:
    t = domain.parse_target("https://Hooks.Example.com./in/leadstream?tenant=7", allow_http=False)
    assert (t.scheme, t.host, t.port, t.path) == ("https", "hooks.example.com", 443, "/in/leadstream?tenant=7")
    assert t.host_header == "hooks.example.com"
    assert t.url_for(ipaddress.ip_address("93.184.215.14")) == "https://93.184.215.14:443/in/leadstream?tenant=7"
    v6 = domain.parse_target("http://[2606:4700::1]:8080", allow_http=True)
    assert v6.host_header == "[2606:4700::1]:8080" and v6.path == "/"
    assert v6.url_for(ipaddress.ip_address("2606:4700::1")) == "http://[2606:4700::1]:8080/"


@pytest.mark.parametrize(
    ("url", "allow_http", "message"),
    [
        ("http://hooks.example.com/", False, "must be an https:// URL"),
        ("ftp://hooks.example.com/", True, "must be an https:// URL"),
        ("https://user:pw@hooks.example.com/", False, "must not carry credentials"),
        ("https:///path", False, "must name a host"),
        ("https://hooks.example.com:99999/", False, "is not a valid URL"),
        ("https://hooks.example.com/a b", False, "whitespace"),
        ("https://hooks.example.com/\x00", False, "control characters"),
        ("https://h.example.com/" + "a" * 2000, False, "at most 2000 characters"),
    ],
)
def test_parse_target_refuses_urls_it_cannot_use(url: str, allow_http: bool, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        domain.parse_target(url, allow_http=allow_http)


def test_the_default_schedule_goes_from_seconds_to_hours_over_about_a_day() -> None:
    waits = RetryPolicy().schedule()
    assert len(waits) == 14
    assert waits[:4] == [5.0, 10.0, 20.0, 40.0]
    assert waits[-1] == 36_000.0  # capped at 10 h
    assert 20 * 3600 < sum(waits) < 26 * 3600


def test_after_attempt_retries_with_backoff_then_gives_up() -> None:
    policy = RetryPolicy(max_attempts=4, initial_s=5, max_s=60, jitter=0)
    nexts = []
    retry = 0
    while True:
        after = domain.after_attempt(retry, FAILED, policy, T0)
        if after.status is not Status.PENDING:
            break
        assert after.next_attempt_at is not None
        nexts.append((after.next_attempt_at - T0).total_seconds())
        retry = after.retry
    assert nexts == [5, 10, 20] and after.status is Status.FAILED and after.retry == 4
    assert domain.after_attempt(2, OK, policy, T0).status is Status.DELIVERED


def test_jitter_only_shortens_the_wait() -> None:
    policy = RetryPolicy(max_attempts=10, initial_s=100, max_s=1000, jitter=0.5)
    rng = random.Random(7)
    waits = [(domain.after_attempt(2, FAILED, policy, T0, rng).next_attempt_at - T0).total_seconds() for _ in range(50)]  # type: ignore[operator]
    assert all(200 <= w <= 400 for w in waits) and len(set(waits)) > 40


def test_an_endpoint_is_disabled_only_after_enough_failures_for_long_enough() -> None:
    after = timedelta(hours=24)
    since = T0 - timedelta(hours=25)
    assert domain.should_disable(10, since, T0, min_failures=10, after=after)
    assert not domain.should_disable(9, since, T0, min_failures=10, after=after)
    assert not domain.should_disable(50, T0 - timedelta(hours=23), T0, min_failures=10, after=after)
    assert not domain.should_disable(50, None, T0, min_failures=10, after=after)


def test_ids_and_secrets() -> None:
    sub, event = uuid.uuid4(), uuid.uuid4()
    assert domain.delivery_id(sub, event) == domain.delivery_id(sub, event) != domain.delivery_id(uuid.uuid4(), event)
    a, b = domain.new_secret(), domain.new_secret()
    assert a.startswith("whsec_") and a != b and len(a) == len("whsec_") + 44
    assert domain.order_key("leadstream.lead.v1", "abc") == "leadstream.lead.v1:abc"
