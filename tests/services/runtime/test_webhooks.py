"""Signed webhooks (Standard Webhooks, verified with the ``standardwebhooks`` library), bodies read with a cap,
key rotation, replay protection and its retention, and one-click link tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI, Request
from sqlalchemy import MetaData, func, select
from standardwebhooks import Webhook

from services.runtime.edge import InputGuard
from services.runtime.errors import Problem, install_problem_handlers
from services.runtime.secrets import KeyRing
from services.runtime.webhooks import (
    check_link_token,
    link_token,
    prune_seen,
    remember,
    seen_webhooks_table,
    sign,
    signed_headers,
    verified_request,
    verify,
)
from tests.services.runtime.conftest import Probe
from tests.support.keys import signing_key

SECRET = signing_key("runtime-test")
OLD_SECRET = signing_key("runtime-test-old")
RING = KeyRing("test webhooks", (SECRET,))
BODY = b'{"event":"video.ready","job":"j-1"}'
# Senders sign with real time (and the library checks its own window on the real clock): tests do too, taken
# when each test starts (a long run must not age them past the window).
NOW = datetime.now(UTC).replace(microsecond=0)
TS = int(NOW.timestamp())


@pytest.fixture(autouse=True)
def _now() -> None:
    global NOW, TS
    NOW = datetime.now(UTC).replace(microsecond=0)
    TS = int(NOW.timestamp())


def _problem(
    headers: dict[str, str], body: bytes = BODY, now: datetime | None = None, ring: KeyRing | list[KeyRing] = RING
) -> Problem:
    with pytest.raises(Problem) as err:
        verify(ring, headers, body, now or NOW, tolerance_s=300)
    assert err.value.status == 401
    return err.value


def test_signed_request_verifies() -> None:
    hook = verify(RING, signed_headers(SECRET, "msg-1", TS, BODY), BODY, NOW, tolerance_s=300)
    assert hook.msg_id == "msg-1" and hook.timestamp == NOW and hook.purpose == "test webhooks"


def test_signature_format_matches_standard_webhooks() -> None:
    # Reference vector computed independently: base64(HMAC-SHA256(base64decode(secret), "id.ts.body")).
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    mac = hmac.new(key, b"msg-1.%d." % TS + BODY, hashlib.sha256).digest()
    assert sign(SECRET, "msg-1", TS, BODY) == "v1," + base64.b64encode(mac).decode()


def test_a_sender_using_the_library_itself_verifies() -> None:
    # What a real Standard Webhooks sender (Svix, a provider's SDK) produces.
    sender = Webhook(SECRET)
    headers = {"webhook-id": "msg_svix", "webhook-timestamp": str(TS)}
    headers["webhook-signature"] = sender.sign("msg_svix", NOW, BODY)
    assert verify(RING, headers, BODY, NOW, 300).msg_id == "msg_svix"


def test_header_names_are_case_insensitive() -> None:
    headers = {k.title(): v for k, v in signed_headers(SECRET, "msg-2", TS, BODY).items()}
    assert verify(RING, headers, BODY, NOW, tolerance_s=300).msg_id == "msg-2"


@pytest.mark.parametrize("skew_s", [301, -301, 86_400])
def test_timestamp_outside_tolerance_is_stale(skew_s: int) -> None:
    problem = _problem(signed_headers(SECRET, "msg-3", TS, BODY), now=NOW + timedelta(seconds=skew_s))
    assert problem.code == "stale_webhook"


def test_an_old_timestamp_is_stale_even_when_signed() -> None:
    old = TS - 3600
    assert _problem(signed_headers(SECRET, "msg-old", old, BODY)).code == "stale_webhook"


def test_tampered_body_wrong_secret_or_wrong_id_is_refused() -> None:
    headers = signed_headers(SECRET, "msg-4", TS, BODY)
    assert _problem(headers, body=BODY.replace(b"j-1", b"j-2")).code == "invalid_signature"
    assert _problem(headers, ring=KeyRing("other", (OLD_SECRET,))).code == "invalid_signature"
    assert _problem({**headers, "webhook-id": "msg-5"}).code == "invalid_signature"
    assert _problem({**headers, "webhook-signature": "v1,AAAA"}).code == "invalid_signature"
    assert _problem({**headers, "webhook-signature": headers["webhook-signature"][3:]}).code == "invalid_signature"


def test_a_key_of_another_purpose_does_not_verify() -> None:
    # The email provider's key cannot sign what only the LinkedIn provider may send.
    linkedin = KeyRing("LinkedIn provider webhooks", (signing_key("linkedin"),))
    email = KeyRing("email provider webhooks", (signing_key("email"),))
    headers = signed_headers(email.signing, "msg-x", TS, BODY)
    assert _problem(headers, ring=linkedin).code == "invalid_signature"
    assert verify([linkedin, email], headers, BODY, NOW, 300).purpose == "email provider webhooks"


def test_rotation_old_and_new_keys_verify_during_the_window() -> None:
    rotating = KeyRing("test webhooks", (SECRET, OLD_SECRET))  # new first (signs), old still verifies
    assert verify(rotating, signed_headers(OLD_SECRET, "m-old", TS, BODY), BODY, NOW, 300)
    assert verify(rotating, signed_headers(SECRET, "m-new", TS, BODY), BODY, NOW, 300)
    after_window = KeyRing("test webhooks", (SECRET,))
    assert _problem(signed_headers(OLD_SECRET, "m-old-2", TS, BODY), ring=after_window).code == "invalid_signature"


def test_one_matching_signature_among_several_is_enough() -> None:
    # A sender rotating its key signs with old and new keys, space-separated.
    headers = signed_headers(SECRET, "msg-6", TS, BODY)
    old = sign(OLD_SECRET, "msg-6", TS, BODY)
    headers["webhook-signature"] = f"{old} {headers['webhook-signature']}"
    assert verify(RING, headers, BODY, NOW, 300).msg_id == "msg-6"


@pytest.mark.parametrize("drop", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_missing_header_is_refused(drop: str) -> None:
    headers = signed_headers(SECRET, "msg-7", TS, BODY)
    del headers[drop]
    problem = _problem(headers)
    assert problem.code == "invalid_signature" and "missing" in problem.detail


@pytest.mark.parametrize("ts", ["yesterday", "1.5e9", "99999999999999999999", "-99999999999999", "nan"])
def test_malformed_timestamp_is_a_401_not_a_crash(ts: str) -> None:
    headers = {**signed_headers(SECRET, "msg-8", TS, BODY), "webhook-timestamp": ts}
    assert _problem(headers).code in {"invalid_signature", "stale_webhook"}


def test_non_ascii_signature_or_huge_id_is_a_401_not_a_crash() -> None:
    # Starlette decodes header bytes as latin-1, so any byte can arrive here.
    headers = {**signed_headers(SECRET, "msg-9", TS, BODY), "webhook-signature": "v1,\u00e9t\u00e9"}
    assert _problem(headers).code == "invalid_signature"
    assert _problem({**headers, "webhook-id": "x" * 300}).code == "invalid_signature"


def _capped_app(max_bytes: int) -> FastAPI:
    # As a service serves a webhook route: the edge caps its body (Service.limit_body), then it is verified.
    app = FastAPI()
    install_problem_handlers(app)
    app.add_middleware(InputGuard, max_body_bytes=1_048_576, limits={"/hook": max_bytes})

    @app.post("/hook")
    async def hook(request: Request) -> dict[str, str]:
        verified, _ = await verified_request(request, RING, now=datetime.now(UTC), tolerance_s=300)
        return {"id": verified.msg_id}

    return app


async def test_a_body_over_the_cap_is_refused_before_verification() -> None:
    app = _capped_app(1024)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        small = b'{"a": 1}'
        ok = await client.post("/hook", content=small, headers=signed_headers(SECRET, "m-small", TS, small))
        assert ok.status_code == 200 and ok.json() == {"id": "m-small"}
        big = b"x" * 2048
        # Correctly signed, but too large: refused for its size (the signature is never computed).
        declared = await client.post("/hook", content=big, headers=signed_headers(SECRET, "m-big", TS, big))
        assert declared.status_code == 413 and declared.json()["code"] == "payload_too_large"

        async def chunks() -> object:  # no Content-Length: the cap holds while streaming
            for _ in range(64):
                yield b"x" * 100

        streamed = await client.post("/hook", content=chunks(), headers=signed_headers(SECRET, "m-s", TS, b""))  # type: ignore[arg-type]
        assert streamed.status_code == 413


async def test_replayed_webhook_id_is_detected_and_old_ids_are_pruned(probe: Probe) -> None:
    table = seen_webhooks_table(MetaData(schema="probe"))
    async with probe.service.engine.begin() as conn:
        await conn.run_sync(lambda sync: table.create(sync, checkfirst=True))
    hook = verify(RING, signed_headers(SECRET, "msg-replay", TS, BODY), BODY, NOW, 300)
    async with probe.service.engine.begin() as conn:
        assert await remember(conn, table, hook, NOW) is True
    async with probe.service.engine.begin() as conn:
        assert await remember(conn, table, hook, NOW) is False
    # A delivery whose transaction rolled back (the handler failed) is not remembered: the retry is accepted.
    other = verify(RING, signed_headers(SECRET, "msg-rolled-back", TS, BODY), BODY, NOW, 300)
    async with probe.service.engine.connect() as conn:
        assert await remember(conn, table, other, NOW) is True
        await conn.rollback()
    async with probe.service.engine.begin() as conn:
        assert await remember(conn, table, other, NOW + timedelta(days=2)) is True
    # Retention: ids received before the cut-off go, newer ones stay.
    async with probe.service.engine.begin() as conn:
        assert await prune_seen(conn, table, NOW + timedelta(days=1)) == 1
        left = list(await conn.scalars(select(table.c.msg_id).where(table.c.msg_id.like("msg-r%"))))
        assert left == ["msg-rolled-back"]
        assert await conn.scalar(select(func.count()).select_from(table).where(table.c.msg_id == "msg-replay")) == 0


def test_link_token_round_trip() -> None:
    token = link_token(RING, "ws-a", "lead-1")
    assert check_link_token(RING, token, "ws-a", "lead-1")
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")  # URL-safe, no padding
    assert link_token(RING, "ws-a", "lead-1") == token  # stable: a link keeps working


def test_link_token_is_bound_to_its_parts_and_secret() -> None:
    token = link_token(RING, "ws-a", "lead-1")
    assert not check_link_token(RING, token, "ws-a", "lead-2")
    assert not check_link_token(RING, token, "ws-b", "lead-1")
    assert not check_link_token(KeyRing("x", (OLD_SECRET,)), token, "ws-a", "lead-1")
    assert not check_link_token(RING, token[:-1], "ws-a", "lead-1")
    assert not check_link_token(RING, "", "ws-a", "lead-1")


def test_link_tokens_of_the_old_key_open_during_rotation() -> None:
    old_link = link_token(KeyRing("unsubscribe", (OLD_SECRET,)), "ws-a", "lead-1")
    rotating = KeyRing("unsubscribe", (SECRET, OLD_SECRET))
    assert check_link_token(rotating, old_link, "ws-a", "lead-1")
    assert link_token(rotating, "ws-a", "lead-1") != old_link  # new links are made with the new key
    assert not check_link_token(KeyRing("unsubscribe", (SECRET,)), old_link, "ws-a", "lead-1")


def test_non_ascii_link_token_is_refused_not_a_crash() -> None:
    assert not check_link_token(RING, "t\u00f6ken", "ws-a", "lead-1")
