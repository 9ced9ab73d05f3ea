"""One probe service for the runtime tests, started once on the real broker and database.

Its handler is a :class:`FlakyHandler`, so each test plans failures for its own event ids and the
others flow through untouched; tests never depend on each other's records.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from services.runtime.service import Service
from tests.conftest import SettingsFactory
from tests.support.kafka import wait_for
from tests.support.probe.app import FlakyHandler, ProbeSettings, build
from tests.support.probe.fixtures import probe_topics


@dataclass
class Probe:
    """A running probe service and what tests need to talk to it."""

    service: Service
    handler: FlakyHandler
    settings: ProbeSettings

    @property
    def bootstrap(self) -> str:
        """The broker's bootstrap servers."""
        return self.settings.kafka_bootstrap_servers

    @property
    def lead_topic(self) -> str:
        """The physical lead topic."""
        return self.settings.topic_name("leadstream.lead.v1")

    @property
    def dlq_topic(self) -> str:
        """The physical dead-letter topic of the lead topic."""
        return self.settings.topic_name("leadstream.lead.v1.dlq")


@pytest.fixture(scope="session")
async def probe_prefix(topic_prefix: str, make_settings: SettingsFactory) -> str:
    """The runtime tests' own topic prefix (see :func:`probe_topics`)."""
    return await probe_topics(topic_prefix, make_settings)


@pytest.fixture(scope="session")
async def probe(make_settings: SettingsFactory, probe_prefix: str) -> AsyncIterator[Probe]:
    """The probe service on the runtime tests' own topics, started and assigned its partitions."""
    settings = make_settings("probe", ProbeSettings, topic_prefix=probe_prefix)
    handler = FlakyHandler()
    service = build(settings, handler)
    await service.start()
    try:
        consumer = service.consumers[0]
        await wait_for(lambda: consumer.consumer is not None and consumer.consumer.assignment(), what="partitions")
        yield Probe(service, handler, settings)
    finally:
        await service.stop()
