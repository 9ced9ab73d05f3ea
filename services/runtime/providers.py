"""What every external-provider adapter shares: its errors, and the knobs of the simulated providers.

Real adapters (``adapters/http.py``) translate HTTP answers into these errors; simulated adapters
(``adapters/simulated.py``) raise the same errors at realistic rates, deterministically from a seed,
so handlers are written once against one behaviour.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from dataclasses import dataclass


class ProviderError(Exception):
    """A provider call failed. ``transient`` errors are worth retrying; others are final."""

    def __init__(self, message: str, *, transient: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.transient = transient
        self.status = status


class RateLimited(ProviderError):
    """The provider asked to slow down; ``retry_after_s`` says for how long."""

    def __init__(self, retry_after_s: float, message: str = "rate limited") -> None:
        super().__init__(message, transient=True, status=429)
        self.retry_after_s = retry_after_s


def seeded_rng(seed: int, *parts: object) -> random.Random:
    """A random generator determined by the seed and the given parts (e.g. a lead id)."""
    digest = hashlib.sha256("|".join([str(seed), *map(str, parts)]).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


@dataclass
class SimulationProfile:
    """How a simulated provider misbehaves. Defaults are realistic; tests can turn them up or off."""

    seed: int = 42
    latency_ms: tuple[int, int] = (5, 40)
    transient_error_rate: float = 0.03
    rate_limit_every: int = 0
    retry_after_s: float = 0.2

    async def latency(self, rng: random.Random) -> None:
        """Wait like a network call would (real time: this is I/O, not domain time)."""
        lo, hi = self.latency_ms
        if hi > 0:
            await asyncio.sleep(rng.uniform(lo, hi) / 1000)
