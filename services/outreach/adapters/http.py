"""Real providers over HTTP: a Unipile-style LinkedIn API and an HTTP email API.

Both send the deterministic request id (the send intent's id) as ``Idempotency-Key`` so a retried call is
not performed twice, and look a key up to settle a send whose answer was lost: ``GET
/api/v1/requests/{key}`` (LinkedIn) and ``GET /emails/idempotency/{key}`` (email) answer 200 with the
original answer of the request performed with that key, 404 when none was. They translate answers into
the shared provider errors: 429 -> RateLimited (with Retry-After), 5xx and network errors -> transient
ProviderError, a limit answer -> MessageLimitReached (to a message, or a message-limit type) or
InvitationLimitReached, any other 4xx -> permanent ProviderError. Follow-ups (acceptances, replies) arrive
later as signed webhooks, so results never carry them.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any, Literal
from urllib.parse import quote

import httpx

from services.runtime.http_client import ProviderHttpClient, RetryPolicy, decode_json, path_segment
from services.runtime.providers import ProviderError

from . import (
    EmailMessage,
    InboundMessage,
    InvitationLimitReached,
    LeadTarget,
    MessageLimitReached,
    SenderVerification,
    SendRequest,
    SendResult,
)

_PROFILE_SLUG = re.compile(r"linkedin\.com/in/([^/?#]+)", re.IGNORECASE)
_ACTIVITY = re.compile(r"(urn:li:activity:\d+|activity[-:](\d+))", re.IGNORECASE)
LIMIT_ERRORS = ("errors/cannot_resend_yet", "errors/limit_exceeded", "errors/invitation_limit_reached")
MESSAGE_LIMIT_ERRORS = ("errors/message_limit_reached", "errors/weekly_message_limit_reached")


def refusal(resp: httpx.Response, what: str) -> ProviderError:
    """A final 4xx answer as a provider error: a limit answer is InvitationLimitReached, or MessageLimitReached
    when it answers a message (or names the message limit)."""
    body: dict[str, Any] = {}
    try:
        parsed = resp.json()
        body = parsed if isinstance(parsed, dict) else {}
    except ValueError:
        pass
    kind = str(body.get("type", ""))
    if kind in MESSAGE_LIMIT_ERRORS or (what == "message" and (kind in LIMIT_ERRORS or "limit" in kind)):
        return MessageLimitReached(f"{what}: {kind or 'message limit reached'}")
    if kind in LIMIT_ERRORS or "limit" in kind:
        return InvitationLimitReached(f"{what}: {kind or 'invitation limit reached'}")
    detail = body.get("detail") or body.get("title") or resp.text[:200]
    return ProviderError(
        f"{what}: provider answered {resp.status_code}: {detail}", transient=False, status=resp.status_code
    )


# Sends are not retried here: the outreach runner retries the step (with the same idempotency key) when
# its durable timer comes round, so any 429 goes straight back to it with its Retry-After.
NO_RETRIES = RetryPolicy(max_retries=0, backoff_initial_s=1.0, max_retry_after_s=0.0)


def provider_client(base_url: str, headers: dict[str, str], timeout_s: float) -> ProviderHttpClient:
    """The HTTP client of an outreach provider (no inline retries; errors as the shared provider errors)."""
    return ProviderHttpClient(
        "provider", base_url, headers=headers, timeout_s=timeout_s, retry=NO_RETRIES, refusal=refusal
    )


async def _call(client: ProviderHttpClient, method: str, url: str, what: str, **kwargs: Any) -> dict[str, Any]:
    resp = await client.request(method, url, what=what, **kwargs)
    if not resp.content:
        return {}
    data = decode_json(resp, what)
    return data if isinstance(data, dict) else {"items": data}


async def _lookup(client: ProviderHttpClient, url: str, what: str) -> dict[str, Any] | None:
    """The JSON object a lookup answers, None on 404 (the provider never performed that request)."""
    resp = await client.request("GET", url, what=what, passthrough=(404,))
    if resp.status_code == 404:
        return None
    data = decode_json(resp, what)
    if not isinstance(data, dict):
        raise ProviderError(f"{what}: answer is not a JSON object", transient=True, status=resp.status_code)
    return data


def profile_identifier(lead: LeadTarget) -> str:
    """The public identifier of a LinkedIn profile URL (``/in/<slug>``)."""
    match = _PROFILE_SLUG.search(lead.linkedin_url or "")
    if not match:
        raise ProviderError(f"lead {lead.lead_id} has no LinkedIn profile URL", transient=False)
    return match.group(1)


def post_social_id(post_url: str | None) -> str:
    """The provider's id of a post from its URL (``urn:li:activity:<n>``)."""
    match = _ACTIVITY.search(post_url or "")
    if not match:
        raise ProviderError(f"cannot find the post id in {post_url!r}", transient=False)
    return match.group(1) if match.group(1).startswith("urn:") else f"urn:li:activity:{match.group(2)}"


def _with_video(text: str | None, video_url: str | None) -> str | None:
    """The text with the personalised video's link after it (the link alone when there is no text: an invite
    without a note then carries the video as its note)."""
    if not video_url:
        return text
    return f"{text}\n\n{video_url}" if text else video_url


class UnipileLinkedIn:
    """LinkedIn through a Unipile-style REST API (``X-API-KEY``, ``/api/v1/...``)."""

    name = "unipile"

    def __init__(self, base_url: str, api_key: str, *, timeout_s: float = 15.0) -> None:
        self.client = provider_client(base_url, {"X-API-KEY": api_key, "accept": "application/json"}, timeout_s)

    def _headers(self, req: SendRequest) -> dict[str, str]:
        return {"Idempotency-Key": req.request_id}

    async def _provider_id(self, account: str, lead: LeadTarget) -> dict[str, Any]:
        return await _call(
            self.client,
            "GET",
            f"/api/v1/users/{path_segment(profile_identifier(lead), 'profile identifier')}",
            "profile lookup",
            params={"account_id": account},
        )

    async def send_invite(self, req: SendRequest, now: datetime) -> SendResult:
        """POST /api/v1/users/invite."""
        account = req.provider_account_id or req.account_id
        user = await self._provider_id(account, req.lead)
        body: dict[str, Any] = {"provider_id": user.get("provider_id"), "account_id": account}
        note = _with_video(req.text, req.video_url)
        if note:
            body["message"] = note
        data = await _call(self.client, "POST", "/api/v1/users/invite", "invite", json=body, headers=self._headers(req))
        return SendResult(provider_ref=data.get("invitation_id"))

    async def send_message(self, req: SendRequest, now: datetime) -> SendResult:
        """POST /api/v1/chats (starts or continues the chat with the lead)."""
        account = req.provider_account_id or req.account_id
        user = await self._provider_id(account, req.lead)
        text = _with_video(req.text, req.video_url) or ""
        data = await _call(
            self.client,
            "POST",
            "/api/v1/chats",
            "message",
            json={"account_id": account, "attendees_ids": [user.get("provider_id")], "text": text},
            headers=self._headers(req),
        )
        return SendResult(provider_ref=data.get("message_id") or data.get("chat_id"))

    async def like_post(self, req: SendRequest, now: datetime) -> SendResult:
        """POST /api/v1/posts/reaction."""
        account = req.provider_account_id or req.account_id
        await _call(
            self.client,
            "POST",
            "/api/v1/posts/reaction",
            "like",
            json={"account_id": account, "post_id": post_social_id(req.post_url), "reaction_type": "like"},
            headers=self._headers(req),
        )
        return SendResult(provider_ref=None)

    async def comment_post(self, req: SendRequest, now: datetime) -> SendResult:
        """POST /api/v1/posts/{post_id}/comments."""
        account = req.provider_account_id or req.account_id
        data = await _call(
            self.client,
            "POST",
            f"/api/v1/posts/{path_segment(post_social_id(req.post_url), 'post id')}/comments",
            "comment",
            json={"account_id": account, "text": req.text or ""},
            headers=self._headers(req),
        )
        return SendResult(provider_ref=data.get("comment_id"))

    async def lookup(self, request_id: str) -> SendResult | None:
        """GET /api/v1/requests/{idempotency key}: the original answer, None on 404 (never performed)."""
        data = await _lookup(self.client, f"/api/v1/requests/{request_id}", "send lookup")
        if data is None:
            return None
        ref = data.get("invitation_id") or data.get("message_id") or data.get("chat_id") or data.get("comment_id")
        return SendResult(provider_ref=str(ref) if ref else None)

    async def is_connected(self, account_id: str, provider_account_id: str | None, lead: LeadTarget) -> bool:
        """A first-degree connection per the profile lookup's ``network_distance``."""
        user = await self._provider_id(provider_account_id or account_id, lead)
        return str(user.get("network_distance", "")).upper() in {"FIRST_DEGREE", "DISTANCE_1"}

    async def hosted_auth_link(
        self,
        account_id: str,
        notify_url: str,
        now: datetime,
        *,
        return_url: str | None = None,
        reconnect: str | None = None,
    ) -> str:
        """POST /api/v1/hosted/accounts/link: a page where the user connects LinkedIn (``type: create``) or
        reconnects an account (``type: reconnect``); the provider then calls ``notify_url`` with ``name`` = our
        account id and sends the user back to ``return_url``."""
        body: dict[str, Any] = {
            "type": "reconnect" if reconnect else "create",
            "providers": ["LINKEDIN"],
            "api_url": str(self.client.base_url),
            "expiresOn": (now + timedelta(hours=24)).isoformat(),
            "notify_url": notify_url,
            "name": account_id,
        }
        if reconnect:
            body["reconnect_account"] = reconnect
        if return_url:
            body["success_redirect_url"] = return_url
            body["failure_redirect_url"] = return_url
        data = await _call(self.client, "POST", "/api/v1/hosted/accounts/link", "hosted auth link", json=body)
        url = data.get("url")
        if not isinstance(url, str):
            raise ProviderError("hosted auth link: answer has no url", transient=False)
        return url

    async def account_status(self, account_id: str, provider_account_id: str | None) -> str:
        """GET /api/v1/accounts/{id}: the first source's status, lower-cased (``ok``, ``credentials``, ...)."""
        if not provider_account_id:
            return "pending"
        segment = path_segment(provider_account_id, "provider account id")
        data = await _call(self.client, "GET", f"/api/v1/accounts/{segment}", "account status")
        sources = data.get("sources") or [{}]
        return str(sources[0].get("status", "ok")).lower()

    async def inbox(
        self, account_id: str, provider_account_id: str | None, since: datetime, now: datetime, limit: int
    ) -> list[InboundMessage]:
        """The account's chats with activity after ``since`` (``GET /api/v1/chats?account_id=&after=``), then each
        chat's messages after ``since`` (``GET /api/v1/chats/{id}/messages?after=``): the leads' own messages
        (``is_sender`` 0), oldest first. A chat names its lead by ``attendee_public_identifier`` (else the
        provider id is looked up: ``GET /api/v1/users/{attendee_provider_id}``)."""
        account = provider_account_id or account_id
        after = since.isoformat().replace("+00:00", "Z")
        chats = await _call(
            self.client,
            "GET",
            "/api/v1/chats",
            "inbox chats",
            params={"account_id": account, "after": after, "limit": limit},
        )
        out: list[InboundMessage] = []
        for chat in chats.get("items") or []:
            if not isinstance(chat, dict) or not chat.get("id"):
                continue
            slug = chat.get("attendee_public_identifier")
            if not slug and chat.get("attendee_provider_id"):
                user = await _call(
                    self.client,
                    "GET",
                    f"/api/v1/users/{quote(str(chat['attendee_provider_id']), safe='')}",
                    "inbox attendee",
                    params={"account_id": account},
                )
                slug = user.get("public_identifier")
            profile = f"https://www.linkedin.com/in/{slug}" if slug else None
            messages = await _call(
                self.client,
                "GET",
                f"/api/v1/chats/{quote(str(chat['id']), safe='')}/messages",
                "inbox messages",
                params={"after": after, "limit": limit},
            )
            for m in messages.get("items") or []:
                if not isinstance(m, dict) or m.get("is_sender") or not m.get("id"):
                    continue
                try:
                    sent = datetime.fromisoformat(str(m.get("timestamp")).replace("Z", "+00:00"))
                except ValueError:
                    continue
                if sent.tzinfo is None or not since < sent <= now:
                    continue
                out.append(InboundMessage(str(m["id"])[:300], profile, str(m.get("text") or "")[:4000], sent))
        return sorted(out, key=lambda m: m.sent_at)[:limit]

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self.client.aclose()


VERIFIED_SENDER = frozenset({"verified", "confirmed", "active", "success"})
FAILED_SENDER = frozenset({"failed", "rejected", "expired", "revoked", "temporary_failure"})


def sender_verification(data: dict[str, Any]) -> SenderVerification:
    """A provider's sender object (``{"id", "status"}``, or Postmark's ``{"ID", "Confirmed"}``) as our verdict."""
    ident = data.get("id") or data.get("ID")
    raw = str(data.get("status") or ("verified" if data.get("Confirmed") is True else "pending")).lower()
    status: Literal["pending", "verified", "failed"] = (
        "verified" if raw in VERIFIED_SENDER else "failed" if raw in FAILED_SENDER else "pending"
    )
    detail = data.get("detail") or data.get("reason") or (None if status != "failed" else f"provider status {raw}")
    return SenderVerification(status, str(ident) if ident else None, str(detail)[:500] if detail else None)


class HttpEmailSender:
    """An HTTP email API (``POST /emails`` with a bearer key; Resend/Postmark style)."""

    name = "http"

    def __init__(self, base_url: str, api_key: str, *, timeout_s: float = 15.0) -> None:
        self.client = provider_client(base_url, {"Authorization": f"Bearer {api_key}"}, timeout_s)

    async def send(self, message: EmailMessage) -> str:
        """Send one email; returns the provider's message id."""
        data = await _call(
            self.client,
            "POST",
            "/emails",
            "email",
            headers={"Idempotency-Key": message.request_id},
            json={
                "from": message.sender,
                "to": [message.to],
                "subject": message.subject,
                "text": message.body,
                "headers": message.headers,
            },
        )
        return str(data.get("id", ""))

    async def lookup(self, request_id: str) -> str | None:
        """GET /emails/idempotency/{key}: the id of the email sent with that key, None on 404 (never sent)."""
        data = await _lookup(self.client, f"/emails/idempotency/{request_id}", "email lookup")
        return None if data is None else str(data.get("id", ""))

    async def request_verification(
        self, account_id: str, sender_email: str, notify_url: str, now: datetime
    ) -> SenderVerification:
        """POST /senders ``{"email", "name", "callback_url"}`` (idempotent per account): the provider emails the
        address a confirmation link and answers the sender's id and status."""
        data = await _call(
            self.client,
            "POST",
            "/senders",
            "sender verification",
            headers={"Idempotency-Key": f"sender:{account_id}"},
            json={"email": sender_email, "name": account_id, "callback_url": notify_url},
        )
        return sender_verification(data)

    async def verification_status(self, sender_id: str, sender_email: str, now: datetime) -> SenderVerification:
        """GET /senders/{id}: whether the owner confirmed the address."""
        data = await _call(self.client, "GET", f"/senders/{quote(sender_id, safe='')}", "sender status")
        return sender_verification({"id": sender_id, **data})

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self.client.aclose()
