"""The projection's own defaults among the runtime's settings."""

from __future__ import annotations

import pytest

from services.projection.settings import ProjectionSettings
from services.runtime.settings import RuntimeSettings


def test_the_projection_fetches_as_soon_as_a_record_is_there_and_the_setting_still_applies(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("LEADSTREAM_CONSUMER_FETCH_MIN_BYTES", raising=False)
    monkeypatch.delenv("LEADSTREAM_CONSUMER_FETCH_MAX_WAIT_MS", raising=False)
    other = RuntimeSettings(service_name="webhooks")
    assert ProjectionSettings().consumer_fetch_min_bytes == 1 < other.consumer_fetch_min_bytes
    # Answered at the first record, so the wait only spaces an idle projection's fetches: Kafka's default.
    assert ProjectionSettings().consumer_fetch_max_wait_ms == 500 > other.consumer_fetch_max_wait_ms
    monkeypatch.setenv("LEADSTREAM_CONSUMER_FETCH_MIN_BYTES", "4096")  # an operator's choice wins
    assert ProjectionSettings().consumer_fetch_min_bytes == 4096
