"""The simulated generator: writes varied, hook-specific drafts like a model would, deterministically.

It answers with latency and occasional transient failures (a model API does both), and its wording
depends only on the request (lead, step, attempt), never on how often it was called.
"""

from __future__ import annotations

from services.runtime.providers import SimulatedProvider, SimulationProfile

from ..domain import DraftRequest, compose
from . import GeneratedText


class SimulatedGenerator(SimulatedProvider):
    """A stand-in for an LLM: composes the draft from hook, strategy and template."""

    name = "simulated"

    def __init__(self, profile: SimulationProfile | None = None) -> None:
        super().__init__(profile or SimulationProfile(latency_ms=(0, 0), transient_error_rate=0.0))

    async def generate(self, request: DraftRequest) -> GeneratedText:
        """Write the draft (after a realistic delay; sometimes a simulated 503)."""
        key = f"{request.variant_key}|{request.attempt}|{request.shorter}"
        await self.simulate("llm", key, "the language model")
        text, subject = compose(request)
        return GeneratedText(text, subject)
