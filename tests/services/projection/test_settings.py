"""The projection's own defaults among the runtime's settings."""

from __future__ import annotations

import pytest

from services.projection.settings import ProjectionSettings
from services.runtime.settings import RuntimeSettings


def test_the_projection_fetches_as_soon_as_a_record_is_there_and_the_setting_still_applies(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("LEADSTREAM_CONSUMER_FETCH_MIN_BYTES", raising=False)
    other = RuntimeSettings(service_name="webhooks")
    assert ProjectionSettings().consumer_fetch_min_bytes == 1 < other.consumer_fetch_min_bytes
    assert ProjectionSettings().consumer_fetch_max_wait_ms == other.consumer_fetch_max_wait_ms
    monkeypatch.setenv("LEADSTREAM_CONSUMER_FETCH_MIN_BYTES", "4096")  # an operator's choice wins
    assert ProjectionSettings().consumer_fetch_min_bytes == 4096
