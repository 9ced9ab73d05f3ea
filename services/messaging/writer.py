"""Writing a draft within its limits: generate, personalise, check, regenerate once, trim.

A transient generator failure propagates (the caller retries); a permanent one (e.g. a refused API
key) falls back to the template writer so a lead is never stuck without a draft.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from leadstream_schemas import Channel

from services.runtime.providers import ProviderError

from . import domain
from .adapters import GeneratedText, MessageGenerator
from .adapters.simulated import SimulatedGenerator

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WrittenDraft:
    """A draft that fits its limits, and how it was obtained."""

    text: str
    subject: str | None
    generator: str
    regenerated: bool
    trimmed: bool


def _clean(out: GeneratedText, key: str, personalise: bool = True) -> GeneratedText:
    text = domain.personalise(out.text.strip(), key) if personalise else out.text.strip()
    return GeneratedText(text, out.subject.strip() if out.subject else out.subject)


def _fits(out: GeneratedText, req: domain.DraftRequest) -> bool:
    needs_subject = req.channel == Channel.email
    if not out.text or (needs_subject and not out.subject):
        return False
    return not domain.check_limits(out.text, out.subject, req.limit)


class Writer:
    """Generates drafts with a generator, keeping them within their channel's limits."""

    def __init__(self, generator: MessageGenerator) -> None:
        self.generator = generator
        self.fallback = SimulatedGenerator()

    async def write(self, req: domain.DraftRequest) -> WrittenDraft:
        """A draft for ``req`` that fits its limits (transient generator errors propagate)."""
        key = f"{req.variant_key}|{req.attempt}"
        name = self.generator.name
        light = req.strategy.personalise
        try:
            out = _clean(await self.generator.generate(req), key, light)
        except ProviderError as exc:
            if exc.transient:
                raise
            log.warning("generator refused; using the template writer", extra={"error": str(exc)})
            name = "template_fallback"
            out = _clean(await self.fallback.generate(req), key, light)
        regenerated = False
        if not _fits(out, req):
            regenerated = True
            length = len(out.text)
            note = f"the previous draft was {length} characters; stay within the {req.limit.label}"
            try:
                again = _clean(await self.generator.generate(req.shortened(note)), key, light)
            except ProviderError as exc:
                if exc.transient:
                    raise
                again = GeneratedText("", None)
            if again.text:
                out = GeneratedText(again.text, again.subject or out.subject)
        if not out.text:
            name = "template_fallback"
            out = _clean(await self.fallback.generate(req), key, light)
        subject = out.subject
        if req.channel == Channel.email and not subject:
            subject = domain.compose(req)[1]
        text, subject, trimmed = domain.finish(out.text, subject, req.limit)
        return WrittenDraft(text, subject if req.channel == Channel.email else None, name, regenerated, trimmed)
