"""What every external-provider adapter shares: its errors, and the knobs of the simulated providers.

Real adapters (``adapters/http.py``) translate HTTP answers into these errors; simulated adapters
(``adapters/simulated.py``) raise the same errors at realistic rates, deterministically from a seed,
so handlers are written once against one behaviour.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections import Counter
from dataclasses import dataclass


class ProviderError(Exception):
    """A provider call failed. ``transient`` errors are worth retrying; others are final.

    ``maybe_performed`` says whether the provider may have done what was asked all the same: False when
    the request never reached it or it said no, True when its answer was lost (a read timeout, a dropped
    connection); None when only ``status`` tells (see ``services/outreach/sends.py``).
    """

    def __init__(
        self, message: str, *, transient: bool, status: int | None = None, maybe_performed: bool | None = None
    ) -> None:
        super().__init__(message)
        self.transient = transient
        self.status = status
        self.maybe_performed = maybe_performed


class RateLimited(ProviderError):
    """The provider asked to slow down; ``retry_after_s`` says for how long."""

    def __init__(self, retry_after_s: float, message: str = "rate limited") -> None:
        super().__init__(message, transient=True, status=429)
        self.retry_after_s = retry_after_s


def seeded_rng(seed: int, *parts: object) -> random.Random:
    """A random generator determined by the seed and the given parts (e.g. a lead id)."""
    digest = hashlib.sha256("|".join([str(seed), *map(str, parts)]).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


# The people the simulated providers invent are named from these lists.
SIMULATED_FIRST_NAMES = [
    "Ada",
    "Ben",
    "Chloe",
    "Diego",
    "Emma",
    "Farid",
    "Grace",
    "Hugo",
    "Ines",
    "Jonas",
    "Kira",
    "Liam",
    "Maya",
    "Noah",
    "Olga",
    "Pablo",
    "Quinn",
    "Rosa",
    "Sami",
    "Tara",
    "Uma",
    "Victor",
    "Wen",
    "Yara",
    "Zoe",
    "Aiko",
    "Bruno",
    "Carla",
    "Dara",
    "Elif",
]
SIMULATED_LAST_NAMES = [
    "Adler",
    "Brandt",
    "Costa",
    "Dubois",
    "Eriksen",
    "Fischer",
    "Garcia",
    "Hansen",
    "Ito",
    "Jensen",
    "Kowalski",
    "Larsen",
    "Moreau",
    "Novak",
    "Olsen",
    "Petrov",
    "Rossi",
    "Schmidt",
    "Tanaka",
    "Weber",
    "Silva",
    "Nowak",
]


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


class SimulatedProvider:
    """Base of the simulated providers: counts calls and misbehaves as :class:`SimulationProfile` says.

    ``calls`` counts calls per key and ``total_calls`` all of them (tests read both). A call's random
    generator depends on the seed, its kind and key and how often that key was called, so a retried
    call can succeed where the first one failed, reproducibly.
    """

    def __init__(self, profile: SimulationProfile) -> None:
        self.sim = profile
        self.calls: Counter[str] = Counter()
        self.total_calls = 0

    async def simulate_call(self, kind: str, key: str, *, counted_as: str | None = None) -> random.Random:
        """Count the call (under ``counted_as``, default ``key``), wait like the network; its random generator."""
        counter = key if counted_as is None else counted_as
        self.calls[counter] += 1
        self.total_calls += 1
        rng = seeded_rng(self.sim.seed, kind, key, self.calls[counter])
        await self.sim.latency(rng)
        return rng

    def simulate_faults(self, rng: random.Random, source: str, *, error_rate: float | None = None) -> None:
        """Raise a rate limit (every ``rate_limit_every``-th call) or, at random, a transient 503 from ``source``
        (at ``error_rate``; default: the profile's ``transient_error_rate``)."""
        if self.sim.rate_limit_every and self.total_calls % self.sim.rate_limit_every == 0:
            raise RateLimited(self.sim.retry_after_s)
        rate = self.sim.transient_error_rate if error_rate is None else error_rate
        if rng.random() < rate:
            raise ProviderError(f"simulated 503 from {source}", transient=True, status=503, maybe_performed=False)

    async def simulate(
        self, kind: str, key: str, source: str, *, counted_as: str | None = None, error_rate: float | None = None
    ) -> random.Random:
        """:meth:`simulate_call` then :meth:`simulate_faults`: a remote call that may fail as remote calls do
        (``error_rate``: a call of its own rate of 503s, e.g. the video studio's deletes)."""
        rng = await self.simulate_call(kind, key, counted_as=counted_as)
        self.simulate_faults(rng, source, error_rate=error_rate)
        return rng
