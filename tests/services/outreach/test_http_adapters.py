"""The HTTP adapters against a local HTTP server speaking the provider's API (Unipile-style LinkedIn, an
HTTP email API): success, idempotency keys, 429 with Retry-After, 5xx, the invitation limit, other 4xx."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse

from services.outreach.adapters import (
    EmailMessage,
    InvitationLimitReached,
    LeadTarget,
    MessageLimitReached,
    SendRequest,
)
from services.outreach.adapters.http import HttpEmailSender, UnipileLinkedIn
from services.runtime.http_client import path_segment
from services.runtime.providers import ProviderError, RateLimited
from tests.support.local_http import serve

NOW = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)


class FakeProvider:
    """What the local server saw."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict[str, Any], str | None]] = []
        self.invites: dict[str, dict[str, Any]] = {}


def provider_app(state: FakeProvider) -> FastAPI:
    app = FastAPI()

    @app.middleware("http")
    async def auth(request: Request, call_next: Any) -> Any:
        if request.url.path.startswith("/api/") and request.headers.get("x-api-key") != "secret-key":
            return JSONResponse({"type": "errors/unauthorized"}, status_code=401)
        if request.url.path == "/emails" and request.headers.get("authorization") != "Bearer mail-key":
            return JSONResponse({"message": "unauthorized"}, status_code=401)
        body = await request.body()
        import json

        state.calls.append(
            (request.method, request.url.path, json.loads(body) if body else {}, request.headers.get("idempotency-key"))
        )
        return await call_next(request)

    @app.get("/api/v1/users/{slug}")
    async def user(slug: str, account_id: str) -> dict[str, str]:
        return {"provider_id": f"prov-{slug}", "network_distance": "FIRST_DEGREE" if slug == "friend" else "SECOND"}

    @app.post("/api/v1/users/invite")
    async def invite(request: Request, idempotency_key: str = Header(...)) -> Any:
        body = await request.json()
        pid = body["provider_id"]
        if pid == "prov-busy":
            return JSONResponse({"type": "errors/too_many_requests"}, status_code=429, headers={"Retry-After": "7"})
        if pid == "prov-flaky":
            return JSONResponse({"type": "errors/unexpected"}, status_code=503)
        if pid == "prov-limited":
            return JSONResponse({"type": "errors/cannot_resend_yet", "status": 422}, status_code=422)
        if pid == "prov-bad":
            return JSONResponse({"type": "errors/invalid_parameters", "detail": "no such user"}, status_code=400)
        first = state.invites.setdefault(idempotency_key, {"invitation_id": f"inv-{len(state.invites) + 1}"})
        return JSONResponse(first, status_code=201)

    @app.post("/api/v1/chats")
    async def chat(request: Request) -> Any:
        body = await request.json()
        if body["attendees_ids"] == ["prov-limited"]:  # LinkedIn's weekly message limit, as a provider says it
            return JSONResponse({"type": "errors/limit_exceeded", "status": 422}, status_code=422)
        return {"object": "ChatStarted", "chat_id": "chat-1", "message_id": "msg-1"}

    @app.post("/api/v1/posts/reaction")
    async def react() -> dict[str, str]:
        return {"object": "ReactionAdded"}

    @app.post("/api/v1/posts/{post_id}/comments")
    async def comment(post_id: str) -> dict[str, str]:
        return {"object": "CommentSent", "comment_id": f"c-{post_id}"}

    @app.post("/api/v1/hosted/accounts/link")
    async def hosted(request: Request) -> dict[str, str]:
        body = await request.json()
        return {"object": "HostedAuthURL", "url": f"https://hosted.example/connect?name={body['name']}"}

    @app.get("/api/v1/accounts/{account_id}")
    async def account(account_id: str) -> dict[str, Any]:
        return {"id": account_id, "sources": [{"id": "s", "status": "CREDENTIALS"}]}

    @app.post("/emails")
    async def email(request: Request) -> Any:
        body = await request.json()
        if body["to"] == ["down@x.example"]:
            return JSONResponse({"message": "upstream"}, status_code=502)
        return {"id": "email-1"}

    return app


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, FakeProvider]]:
    state = FakeProvider()
    async with serve(provider_app(state)) as url:
        yield url, state


def _req(slug: str, text: str | None = "Hi!", post: str | None = None) -> SendRequest:
    lead = LeadTarget("lead-1", f"https://www.linkedin.com/in/{slug}/")
    return SendRequest(
        request_id=f"req-{slug}",
        workspace_id="ws",
        campaign_id="c",
        step_id="s",
        account_id="a1",
        provider_account_id="uni-1",
        lead=lead,
        text=text,
        post_url=post,
    )


async def test_linkedin_client_against_local_server(server: tuple[str, FakeProvider]) -> None:
    url, state = server
    client = UnipileLinkedIn(url, "secret-key")
    try:
        first = await client.send_invite(_req("ada"), NOW)
        again = await client.send_invite(_req("ada"), NOW)
        assert first.provider_ref == again.provider_ref == "inv-1"  # the idempotency key made it one invite
        invite_calls = [c for c in state.calls if c[1] == "/api/v1/users/invite"]
        assert invite_calls[0][2] == {"provider_id": "prov-ada", "account_id": "uni-1", "message": "Hi!"}
        assert {c[3] for c in invite_calls} == {"req-ada"}
        with pytest.raises(RateLimited) as limited:
            await client.send_invite(_req("busy"), NOW)
        assert limited.value.retry_after_s == 7
        with pytest.raises(ProviderError) as flaky:
            await client.send_invite(_req("flaky"), NOW)
        assert flaky.value.transient and flaky.value.status == 503
        with pytest.raises(InvitationLimitReached):
            await client.send_invite(_req("limited"), NOW)
        with pytest.raises(ProviderError) as bad:
            await client.send_invite(_req("bad"), NOW)
        assert not bad.value.transient and "no such user" in str(bad.value)
        assert (await client.send_message(_req("ada"), NOW)).provider_ref == "msg-1"
        with pytest.raises(MessageLimitReached) as message_limit:
            await client.send_message(_req("limited"), NOW)
        assert message_limit.value.status_word == "message_limit_reached" and not message_limit.value.transient
        liked = await client.like_post(
            _req("ada", post="https://www.linkedin.com/feed/update/urn:li:activity:42/"), NOW
        )
        assert liked.provider_ref is None
        commented = await client.comment_post(_req("ada", post="https://x/posts/ada_activity-77-abc"), NOW)
        assert commented.provider_ref == "c-urn:li:activity:77"
        assert await client.is_connected("a1", "uni-1", LeadTarget("l", "https://linkedin.com/in/friend"))
        assert not await client.is_connected("a1", "uni-1", LeadTarget("l", "https://linkedin.com/in/ada"))
        link = await client.hosted_auth_link("acc-9", "https://us.example/v1/accounts/callback", NOW)
        assert link == "https://hosted.example/connect?name=acc-9"
        assert await client.account_status("a1", "uni-1") == "credentials"
        with pytest.raises(ProviderError, match="no LinkedIn profile URL"):
            await client.send_invite(SendRequest("r", "ws", "c", "s", "a1", None, LeadTarget("l")), NOW)
    finally:
        await client.aclose()
    wrong_key = UnipileLinkedIn(url, "wrong")
    try:
        with pytest.raises(ProviderError) as unauthorized:
            await wrong_key.send_invite(_req("ada"), NOW)
        assert unauthorized.value.status == 401 and not unauthorized.value.transient
    finally:
        await wrong_key.aclose()


async def test_the_video_link_goes_with_invites_as_well_as_messages(server: tuple[str, FakeProvider]) -> None:
    """The personalised video reaches the lead on an invite (after its note, or as the note of an invite without
    one) and on a message (after its text)."""
    url, state = server
    client = UnipileLinkedIn(url, "secret-key")
    video = "https://video.example/v/ada.mp4"
    try:
        for slug, text in (("noted", "Hi!"), ("plain", None)):
            await client.send_invite(replace(_req(slug, text), video_url=video), NOW)
        await client.send_message(replace(_req("ada", "Hello"), video_url=video), NOW)
        await client.send_invite(_req("novideo", None), NOW)
    finally:
        await client.aclose()
    sent = {c[2].get("provider_id") or c[2]["attendees_ids"][0]: c[2] for c in state.calls if c[0] == "POST"}
    assert sent["prov-noted"]["message"] == f"Hi!\n\n{video}"
    assert sent["prov-plain"]["message"] == video
    assert sent["prov-ada"]["text"] == f"Hello\n\n{video}"
    assert "message" not in sent["prov-novideo"]  # no note, no video: a bare invite


@pytest.mark.parametrize(
    ("url", "post"),
    [
        ("https://www.linkedin.com/in/../", None),
        ("https://www.linkedin.com/in/..", None),
        ("https://www.linkedin.com/in/.", None),
    ],
)
async def test_provider_path_segments_that_would_walk_the_path_are_refused(
    server: tuple[str, FakeProvider], url: str, post: str | None
) -> None:
    base, state = server
    client = UnipileLinkedIn(base, "secret-key")
    try:
        req = SendRequest("r", "ws", "c", "s", "a1", "uni-1", LeadTarget("l", url), text="Hi")
        with pytest.raises(ProviderError, match="profile identifier is not a usable identifier") as refused:
            await client.send_invite(req, NOW)
        assert not refused.value.transient
        with pytest.raises(ProviderError, match="provider account id"):
            await client.account_status("a1", "..")
    finally:
        await client.aclose()
    assert state.calls == []  # nothing reached the provider


def test_path_segments_are_encoded() -> None:
    assert path_segment("ada", "x") == "ada"
    assert path_segment("a/b?c#d%2F", "x") == "a%2Fb%3Fc%23d%252F"
    assert path_segment("urn:li:activity:7", "x") == "urn:li:activity:7"
    assert path_segment("josé", "x") == "jos%C3%A9"
    for bad in ("", ".", "..", "a\nb", "a\x00b", "x" * 600):
        with pytest.raises(ProviderError):
            path_segment(bad, "x")


async def test_email_client_against_local_server(server: tuple[str, FakeProvider]) -> None:
    url, state = server
    sender = HttpEmailSender(url, "mail-key")
    try:
        message = EmailMessage(
            request_id="mail-1",
            sender="me@ours.example",
            to="ada@x.example",
            subject="Hi",
            body="Hello\n\n--\nUnsubscribe: https://u",
            headers={"List-Unsubscribe": "<https://u>"},
        )
        assert await sender.send(message) == "email-1"
        method, path, body, key = state.calls[-1]
        assert (method, path, key) == ("POST", "/emails", "mail-1")
        assert body["headers"] == {"List-Unsubscribe": "<https://u>"} and body["to"] == ["ada@x.example"]
        with pytest.raises(ProviderError) as down:
            await sender.send(EmailMessage("mail-2", "me@ours.example", "down@x.example", "Hi", "b"))
        assert down.value.transient
    finally:
        await sender.aclose()
    closed = HttpEmailSender("http://127.0.0.1:9", "k")
    try:
        with pytest.raises(ProviderError) as refused:
            await closed.send(EmailMessage("mail-3", "me@ours.example", "a@x.example", "Hi", "b"))
        assert refused.value.transient
    finally:
        await closed.aclose()
