"""The writer messaging talks to, behind a Protocol: a text generator (simulated, or an LLM over HTTP)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ..domain import DraftRequest


@dataclass(frozen=True)
class GeneratedText:
    """A generator's answer: the text, and a subject for emails."""

    text: str
    subject: str | None = None


class MessageGenerator(Protocol):
    """Writes one draft for a request (hook, strategy, template, channel and its limit)."""

    name: str

    async def generate(self, request: DraftRequest) -> GeneratedText: ...
