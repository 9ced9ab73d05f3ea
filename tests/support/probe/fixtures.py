"""Topics of the runtime tests' own: the poison records and probe events they put on the lead topic
must never reach the topics other tests of the same session read (those decode every record).
"""

from __future__ import annotations

from typing import Any

from services.runtime.kafka import apply_topics
from tests.conftest import TEST_PARTITIONS, SettingsFactory

from .app import ProbeSettings

_applied: set[str] = set()


async def probe_topics(topic_prefix: str, make_settings: SettingsFactory, name: str = "probe") -> str:
    """``<session prefix><name>-``, with every contract topic and DLQ created under it (once per process).

    A test whose service must not share its records with another running probe (e.g. the session's
    probe of tests/services/runtime) passes a ``name`` of its own.
    """
    prefix = f"{topic_prefix}{name}-"
    if prefix not in _applied:
        await apply_topics(make_settings("admin", topic_prefix=prefix), partitions=TEST_PARTITIONS)
        _applied.add(prefix)
    return prefix


async def own_probe(topic_prefix: str, make_settings: SettingsFactory, name: str, **overrides: Any) -> ProbeSettings:
    """Settings of a probe with topics (``probe-<name>-``) and a schema (``probe_<name>``) of its own, for a test
    whose service must share neither with the session's probe; ``overrides`` are settings."""
    prefix = await probe_topics(topic_prefix, make_settings, f"probe-{name}")
    settings: ProbeSettings = make_settings(f"probe_{name}", ProbeSettings, topic_prefix=prefix, **overrides)
    return settings
