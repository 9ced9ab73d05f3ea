"""The simulated generator: writes varied, hook-specific drafts like a model would, deterministically.

It answers with latency and occasional transient failures (a model API does both), and its wording
depends only on the request (lead, step, attempt), never on how often it was called.
"""

from __future__ import annotations

from collections import Counter

from services.runtime.providers import ProviderError, SimulationProfile, seeded_rng

from ..domain import DraftRequest, compose
from . import GeneratedText


class SimulatedGenerator:
    """A stand-in for an LLM: composes the draft from hook, strategy and template."""

    name = "simulated"

    def __init__(self, profile: SimulationProfile | None = None) -> None:
        self.sim = profile or SimulationProfile(latency_ms=(0, 0), transient_error_rate=0.0)
        self.calls: Counter[str] = Counter()

    async def generate(self, request: DraftRequest) -> GeneratedText:
        """Write the draft (after a realistic delay; sometimes a simulated 503)."""
        key = f"{request.variant_key}|{request.attempt}|{request.shorter}"
        self.calls[key] += 1
        rng = seeded_rng(self.sim.seed, "llm", key, self.calls[key])
        await self.sim.latency(rng)
        if rng.random() < self.sim.transient_error_rate:
            raise ProviderError("simulated 503 from the language model", transient=True, status=503)
        text, subject = compose(request)
        return GeneratedText(text, subject)
