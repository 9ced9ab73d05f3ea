"""Injected clocks: the fake clock tests move by hand, and the scaled clock of demo and e2e runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI

from services.runtime import clock as clock_module
from services.runtime.clock import (
    SCALE_HEADER,
    TIME_HEADER,
    ClockHeaders,
    FakeClock,
    ScaledClock,
    SystemClock,
    clock_from_settings,
    scale_of,
)
from services.runtime.settings import RuntimeSettings

EPOCH = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)


class _Frozen:
    """Stands in for the ``datetime`` module attribute so ScaledClock reads a real time the test sets."""

    real = EPOCH

    @classmethod
    def now(cls, tz: object = None) -> datetime:
        return cls.real


@pytest.fixture
def real_time(monkeypatch: pytest.MonkeyPatch) -> type[_Frozen]:
    monkeypatch.setattr(clock_module, "datetime", _Frozen)
    _Frozen.real = EPOCH
    return _Frozen


def test_fake_clock_stands_still_until_moved() -> None:
    clock = FakeClock(EPOCH)
    assert clock.now() == clock.now() == EPOCH
    assert clock.advance(timedelta(hours=25)) == EPOCH + timedelta(hours=25)
    assert clock.now() == EPOCH + timedelta(hours=25)
    clock.set(EPOCH + timedelta(days=7))
    assert clock.now() == EPOCH + timedelta(days=7)


def test_fake_clock_default_is_aware_and_refuses_naive_times() -> None:
    clock = FakeClock()
    assert clock.now().tzinfo is not None
    with pytest.raises(ValueError, match="timezone-aware"):
        clock.set(datetime(2026, 1, 1, 12, 0))


def test_system_clock_is_utc_aware() -> None:
    assert SystemClock().now().utcoffset() == timedelta(0)


def test_scaled_clock_runs_scale_times_faster(real_time: type[_Frozen]) -> None:
    clock = ScaledClock(EPOCH, scale=600)
    assert clock.now() == EPOCH
    real_time.real = EPOCH + timedelta(seconds=1)
    assert clock.now() == EPOCH + timedelta(minutes=10)
    real_time.real = EPOCH + timedelta(minutes=1)
    assert clock.now() == EPOCH + timedelta(hours=10)


def test_processes_with_the_same_epoch_and_scale_agree(real_time: type[_Frozen]) -> None:
    real_time.real = EPOCH + timedelta(seconds=42)
    a, b = ScaledClock(EPOCH, 60), ScaledClock(EPOCH, 60)
    assert a.now() == b.now() == EPOCH + timedelta(minutes=42)


def test_scaled_clock_refuses_a_naive_epoch() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        ScaledClock(datetime(2026, 1, 1), 10)


def test_clock_from_settings(real_time: type[_Frozen]) -> None:
    assert isinstance(clock_from_settings(1.0, None), SystemClock)
    scaled = clock_from_settings(100, EPOCH)
    assert isinstance(scaled, ScaledClock) and scaled.epoch == EPOCH and scaled.scale == 100
    started_now = clock_from_settings(100, None)
    assert isinstance(started_now, ScaledClock) and started_now.epoch == EPOCH  # epoch defaults to "now"


def test_settings_build_the_clock_from_env(monkeypatch: pytest.MonkeyPatch, real_time: type[_Frozen]) -> None:
    monkeypatch.setenv("LEADSTREAM_CLOCK_SCALE", "3600")
    monkeypatch.setenv("LEADSTREAM_CLOCK_EPOCH", EPOCH.isoformat())
    clock = RuntimeSettings().clock()
    real_time.real = EPOCH + timedelta(seconds=2)
    assert clock.now() == EPOCH + timedelta(hours=2)


async def test_every_answer_says_the_services_time_and_how_fast_its_clock_runs() -> None:
    app = FastAPI()

    @app.get("/x")
    async def x() -> dict[str, str]:
        return {}

    app.add_middleware(ClockHeaders, clock=FakeClock(EPOCH))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        answer = await client.get("/x")
        missing = await client.get("/nowhere")
    assert answer.headers[TIME_HEADER] == EPOCH.isoformat() and answer.headers[SCALE_HEADER] == "1"
    assert missing.status_code == 404 and missing.headers[TIME_HEADER] == EPOCH.isoformat()
    assert scale_of(ScaledClock(EPOCH, 1800.0)) == 1800.0 and scale_of(SystemClock()) == 1.0
