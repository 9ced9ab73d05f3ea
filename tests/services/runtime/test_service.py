"""The process's event loop: uvloop's unless the settings say asyncio (``RuntimeSettings.event_loop``).

That every service process really runs on it is checked where the processes run: the walking skeleton reads
each one's "http listening" log line (tests/e2e/test_walking_skeleton.py).
"""

from __future__ import annotations

import asyncio
import sys

import pytest
import uvloop
from pydantic import ValidationError

from services.runtime.service import UnfitEventLoop, loop_kind, new_event_loop
from services.runtime.settings import EventLoop, RuntimeSettings


async def _answer() -> int:
    await asyncio.sleep(0)
    return 42


@pytest.mark.parametrize("kind", ["uvloop", "asyncio"])
def test_new_event_loop_is_of_the_kind_asked_and_runs_work(kind: EventLoop) -> None:
    loop = new_event_loop(kind)
    try:
        assert isinstance(loop, uvloop.Loop) is (kind == "uvloop")
        assert loop_kind(loop) == kind  # what the "http listening" log line reports
        assert loop.run_until_complete(_answer()) == 42
    finally:
        loop.close()


def test_the_event_loop_setting_defaults_to_uvloop_and_reads_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("LEADSTREAM_EVENT_LOOP", raising=False)
    assert RuntimeSettings().event_loop == "uvloop"
    monkeypatch.setenv("LEADSTREAM_EVENT_LOOP", "asyncio")
    assert RuntimeSettings().event_loop == "asyncio"


def test_an_unknown_event_loop_is_refused_naming_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADSTREAM_EVENT_LOOP", "trio")
    with pytest.raises(ValidationError, match="event_loop"):
        RuntimeSettings()


def test_uvloop_missing_is_a_clear_error_naming_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # as where it is not installed (Windows): the import fails
    with pytest.raises(UnfitEventLoop, match="set LEADSTREAM_EVENT_LOOP=asyncio"):
        new_event_loop("uvloop")
    new_event_loop("asyncio").close()  # which needs nothing more
