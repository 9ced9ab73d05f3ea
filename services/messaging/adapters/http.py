"""An OpenAI-compatible chat-completions client over httpx: the real writer behind ``MessageGenerator``.

Rate limits (429) honour ``Retry-After``; 5xx answers, timeouts and connection errors are retried with
exponential backoff; other 4xx answers are final. A wait longer than ``max_retry_after_s`` is not spent
inline: :class:`RateLimited` hands it back to the caller (the consumer retries the event later).
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import httpx
from leadstream_schemas import Channel

from services.runtime.http_client import ProviderHttpClient, RetryPolicy, Sleep
from services.runtime.providers import ProviderError

from ..domain import DraftRequest, render
from . import GeneratedText

CHANNEL_NAMES = {
    Channel.invite: "LinkedIn connection-invite note",
    Channel.message: "LinkedIn direct message",
    Channel.email: "cold email",
    Channel.comment: "comment on the lead's LinkedIn post",
}


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
        self.model = model
        self.temperature = temperature
        headers = {"Content-Type": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self.http = ProviderHttpClient(
            "chat API",
            base_url,
            headers=headers,
            timeout_s=timeout_s,
            retry=RetryPolicy(max_retries, backoff_initial_s, backoff_max_s, max_retry_after_s),
            sleep=sleep,
            transport=transport,
        )

    async def aclose(self) -> None:
        """Close the HTTP connection pool."""
        await self.http.aclose()

    async def generate(self, request: DraftRequest) -> GeneratedText:
        """One chat completion for the draft, retried on 429/5xx/timeouts."""
        payload = {
            "model": self.model,
            "messages": build_messages(request),
            "temperature": self.temperature,
            "max_tokens": max(64, request.limit.text // 2),
            "n": 1,
        }
        data = await self.http.request_object("POST", "/chat/completions", json=payload, non_object_transient=True)
        try:
            content = data["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise ProviderError("chat API answer has no choices[0].message.content", transient=True) from None
        if not isinstance(content, str):
            raise ProviderError("chat API answer content is not text", transient=True)
        return parse_answer(content, request.channel)
