"""Signed webhooks (Standard Webhooks) and one-click link tokens."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import MetaData

from services.runtime.clock import FakeClock
from services.runtime.errors import Problem
from services.runtime.webhooks import (
    check_link_token,
    link_token,
    remember,
    seen_webhooks_table,
    sign,
    signed_headers,
    verify,
)
from tests.services.runtime.conftest import Probe

SECRET = "whsec-test"
BODY = b'{"event":"video.ready","job":"j-1"}'
CLOCK = FakeClock(datetime(2026, 3, 2, 9, 30, tzinfo=UTC))
NOW = CLOCK.now()
TS = int(NOW.timestamp())


def _problem(headers: dict[str, str], body: bytes = BODY, now: datetime = NOW, secret: str = SECRET) -> Problem:
    with pytest.raises(Problem) as err:
        verify(secret, headers, body, now, tolerance_s=300)
    assert err.value.status == 401
    return err.value


def test_signed_request_verifies() -> None:
    hook = verify(SECRET, signed_headers(SECRET, "msg-1", TS, BODY), BODY, NOW, tolerance_s=300)
    assert hook.msg_id == "msg-1"
    assert hook.timestamp == NOW


def test_signature_format_matches_standard_webhooks() -> None:
    # Reference vector computed independently: base64(HMAC-SHA256(secret, "id.ts.body")).
    import base64
    import hashlib
    import hmac

    mac = hmac.new(SECRET.encode(), b"msg-1.%d." % TS + BODY, hashlib.sha256).digest()
    assert sign(SECRET, "msg-1", TS, BODY) == "v1," + base64.b64encode(mac).decode()


def test_header_names_are_case_insensitive() -> None:
    headers = {k.title(): v for k, v in signed_headers(SECRET, "msg-2", TS, BODY).items()}
    assert verify(SECRET, headers, BODY, NOW, tolerance_s=300).msg_id == "msg-2"


@pytest.mark.parametrize("skew_s", [301, -301, 86_400])
def test_timestamp_outside_tolerance_is_stale(skew_s: int) -> None:
    problem = _problem(signed_headers(SECRET, "msg-3", TS, BODY), now=NOW + timedelta(seconds=skew_s))
    assert problem.code == "stale_webhook"


@pytest.mark.parametrize("skew_s", [300, -300, 0])
def test_timestamp_at_the_tolerance_edge_is_accepted(skew_s: int) -> None:
    assert verify(SECRET, signed_headers(SECRET, "m", TS, BODY), BODY, NOW + timedelta(seconds=skew_s), 300)


def test_tampered_body_wrong_secret_or_wrong_id_is_refused() -> None:
    headers = signed_headers(SECRET, "msg-4", TS, BODY)
    assert _problem(headers, body=BODY.replace(b"j-1", b"j-2")).code == "invalid_signature"
    assert _problem(headers, secret="another-secret").code == "invalid_signature"
    assert _problem({**headers, "webhook-id": "msg-5"}).code == "invalid_signature"
    assert _problem({**headers, "webhook-signature": "v1,AAAA"}).code == "invalid_signature"
    assert _problem({**headers, "webhook-signature": headers["webhook-signature"][3:]}).code == "invalid_signature"


def test_one_matching_signature_among_several_is_enough() -> None:
    # Secret rotation: senders sign with old and new keys, space-separated.
    headers = signed_headers(SECRET, "msg-6", TS, BODY)
    old = sign("old-secret", "msg-6", TS, BODY)
    headers["webhook-signature"] = f"{old} {headers['webhook-signature']}"
    assert verify(SECRET, headers, BODY, NOW, 300).msg_id == "msg-6"


@pytest.mark.parametrize("drop", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_missing_header_is_refused(drop: str) -> None:
    headers = signed_headers(SECRET, "msg-7", TS, BODY)
    del headers[drop]
    problem = _problem(headers)
    assert problem.code == "invalid_signature" and "missing" in problem.detail


@pytest.mark.parametrize("ts", ["yesterday", "1.5e9", "99999999999999999999", "-99999999999999"])
def test_malformed_timestamp_is_a_401_not_a_crash(ts: str) -> None:
    headers = {**signed_headers(SECRET, "msg-8", TS, BODY), "webhook-timestamp": ts}
    assert _problem(headers).code in {"invalid_signature", "stale_webhook"}


def test_non_ascii_signature_is_a_401_not_a_crash() -> None:
    # Starlette decodes header bytes as latin-1, so any byte can arrive here.
    headers = {**signed_headers(SECRET, "msg-9", TS, BODY), "webhook-signature": "v1,\u00e9t\u00e9"}
    assert _problem(headers).code == "invalid_signature"


async def test_replayed_webhook_id_is_detected(probe: Probe) -> None:
    table = seen_webhooks_table(MetaData(schema="probe"))
    async with probe.service.engine.begin() as conn:
        await conn.run_sync(lambda sync: table.create(sync, checkfirst=True))
    hook = verify(SECRET, signed_headers(SECRET, "msg-replay", TS, BODY), BODY, NOW, 300)
    async with probe.service.engine.begin() as conn:
        assert await remember(conn, table, hook, NOW) is True
    async with probe.service.engine.begin() as conn:
        assert await remember(conn, table, hook, NOW) is False
    # A delivery whose transaction rolled back (the handler failed) is not remembered: the retry is accepted.
    other = verify(SECRET, signed_headers(SECRET, "msg-rolled-back", TS, BODY), BODY, NOW, 300)
    async with probe.service.engine.connect() as conn:
        assert await remember(conn, table, other, NOW) is True
        await conn.rollback()
    async with probe.service.engine.begin() as conn:
        assert await remember(conn, table, other, NOW) is True


def test_link_token_round_trip() -> None:
    token = link_token(SECRET, "ws-a", "lead-1")
    assert check_link_token(SECRET, token, "ws-a", "lead-1")
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")  # URL-safe, no padding
    assert link_token(SECRET, "ws-a", "lead-1") == token  # stable: a link keeps working


def test_link_token_is_bound_to_its_parts_and_secret() -> None:
    token = link_token(SECRET, "ws-a", "lead-1")
    assert not check_link_token(SECRET, token, "ws-a", "lead-2")
    assert not check_link_token(SECRET, token, "ws-b", "lead-1")
    assert not check_link_token("other-secret", token, "ws-a", "lead-1")
    assert not check_link_token(SECRET, token[:-1], "ws-a", "lead-1")
    assert not check_link_token(SECRET, "", "ws-a", "lead-1")


def test_non_ascii_link_token_is_refused_not_a_crash() -> None:
    assert not check_link_token(SECRET, "t\u00f6ken", "ws-a", "lead-1")
