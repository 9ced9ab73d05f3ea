"""An OpenAI-compatible chat-completions client over httpx: the real writer behind ``MessageGenerator``.

Rate limits (429) honour ``Retry-After``; 5xx answers, timeouts and connection errors are retried with
exponential backoff; other 4xx answers are final. A wait longer than ``max_retry_after_s`` is not spent
inline: :class:`RateLimited` hands it back to the caller (the consumer retries the event later).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from leadstream_schemas import Channel

from services.runtime.providers import ProviderError, RateLimited

from ..domain import DraftRequest, render
from . import GeneratedText

Sleep = Callable[[float], Awaitable[None]]

CHANNEL_NAMES = {
    Channel.invite: "LinkedIn connection-invite note",
    Channel.message: "LinkedIn direct message",
    Channel.email: "cold email",
    Channel.comment: "comment on the lead's LinkedIn post",
}


def retry_after_seconds(headers: httpx.Headers, now: datetime | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date), if present."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(float(ms) / 1000, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - (now or datetime.now(UTC))).total_seconds(), 0.0)


def build_messages(req: DraftRequest) -> list[dict[str, str]]:
    """The chat messages for a draft: rules (limit, channel, no placeholders) and the facts to use."""
    kind = CHANNEL_NAMES[req.channel]
    rules = [
        f"You write one {kind} for B2B outreach, in a {req.strategy.tone or 'friendly'} tone.",
        f"Hard limit: at most {req.limit.text} characters"
        + (" for the body" if req.channel == Channel.email else "")
        + ("; a shorter answer is required this time." if req.shorter else "."),
        "Open with the personalisation hook given; do not invent facts; no placeholders, no hashtags, no emojis.",
        "Answer with the text only, no quotes or commentary.",
    ]
    if req.channel == Channel.email:
        rules.append(
            f"First line: 'Subject: <subject of at most {req.limit.subject} characters>', "
            "then a blank line, then the body."
        )
    if req.channel == Channel.comment:
        rules.append("Reply to the post itself; do not pitch anything.")
    h = req.hook
    facts: dict[str, Any] = {
        "lead": {k: v for k, v in req.variables.items() if v},
        "hook": {"kind": h.kind, "detail": h.detail, "why": h.reason, "fallback": h.fallback},
        "offer": req.strategy.offer,
        "proof": req.strategy.proof,
        "call_to_action": req.strategy.call_to_action,
        "template": {"category": req.template.category, "base_wording": render(req.template.body, req.variables)},
    }
    if h.topic:
        facts["hook"]["topic"] = h.topic
    if h.excerpt:
        facts["hook"]["excerpt"] = h.excerpt
    if req.feedback:
        facts["reviewer_feedback"] = req.feedback
    if req.attempt > 1:
        facts["attempt"] = f"rewrite number {req.attempt}: use different wording from earlier drafts"
    return [
        {"role": "system", "content": " ".join(rules)},
        {"role": "user", "content": json.dumps(facts, ensure_ascii=False)},
    ]


_SUBJECT = re.compile(r"^\s*subject\s*:\s*(.+)$", re.IGNORECASE)


def parse_answer(content: str, channel: Channel) -> GeneratedText:
    """Read a model's answer: strip quotes and code fences; split ``Subject:`` off an email."""
    text = content.strip()
    if text.startswith("```"):
        text = re.sub(r"^```[a-zA-Z]*\n?|```$", "", text).strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1].strip()
    subject = None
    if channel == Channel.email:
        lines = text.splitlines()
        if lines and (m := _SUBJECT.match(lines[0])):
            subject = m.group(1).strip()
            text = "\n".join(lines[1:]).strip()
    return GeneratedText(text, subject)


class ChatCompletionsGenerator:
    """Writes drafts with an OpenAI-compatible ``POST {base_url}/chat/completions``."""

    name = "llm"

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str,
        *,
        timeout_s: float = 20.0,
        max_retries: int = 3,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 8.0,
        max_retry_after_s: float = 10.0,
        temperature: float = 0.7,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.max_retries = max_retries
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.max_retry_after_s = max_retry_after_s
        self.temperature = temperature
        self._sleep = sleep
        headers = {"Content-Type": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self.client = httpx.AsyncClient(timeout=httpx.Timeout(timeout_s), headers=headers, transport=transport)

    async def aclose(self) -> None:
        """Close the HTTP connection pool."""
        await self.client.aclose()

    async def generate(self, request: DraftRequest) -> GeneratedText:
        """One chat completion for the draft, retried on 429/5xx/timeouts."""
        payload = {
            "model": self.model,
            "messages": build_messages(request),
            "temperature": self.temperature,
            "max_tokens": max(64, request.limit.text // 2),
            "n": 1,
        }
        data = await self._post(payload)
        try:
            content = data["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise ProviderError("chat API answer has no choices[0].message.content", transient=True) from None
        if not isinstance(content, str):
            raise ProviderError("chat API answer content is not text", transient=True)
        return parse_answer(content, request.channel)

    def _backoff(self, attempt: int) -> float:
        return float(min(self.backoff_initial_s * (2**attempt), self.backoff_max_s))

    async def _post(self, payload: dict[str, Any]) -> dict[str, Any]:
        attempt = 0
        while True:
            try:
                resp = await self.client.post(self.url, json=payload)
            except httpx.TimeoutException as exc:
                error: ProviderError = ProviderError(f"chat API timed out: {exc!r}", transient=True)
                delay = self._backoff(attempt)
            except httpx.TransportError as exc:
                error = ProviderError(f"chat API unreachable: {exc!r}", transient=True)
                delay = self._backoff(attempt)
            else:
                if resp.is_success:
                    try:
                        body = resp.json()
                    except ValueError:
                        raise ProviderError("chat API answered with invalid JSON", transient=True) from None
                    if not isinstance(body, dict):
                        raise ProviderError("chat API answered with a non-object", transient=True)
                    return body
                if resp.status_code == 429:
                    wait = retry_after_seconds(resp.headers)
                    delay = self._backoff(attempt) if wait is None else wait
                    if delay > self.max_retry_after_s:
                        raise RateLimited(delay, "chat API rate limit")
                    error = RateLimited(delay, "chat API rate limit")
                elif resp.status_code >= 500:
                    status = resp.status_code
                    error = ProviderError(f"chat API answered {status}", transient=True, status=status)
                    delay = self._backoff(attempt)
                else:
                    raise ProviderError(
                        f"chat API refused the request ({resp.status_code}): {resp.text[:300]}",
                        transient=False,
                        status=resp.status_code,
                    )
            if attempt >= self.max_retries:
                raise error
            attempt += 1
            await self._sleep(delay)
