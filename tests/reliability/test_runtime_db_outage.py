"""Postgres going away under a running service: it reports not-ready, dead-letters nothing, and once
the database is back it resumes and applies every event exactly once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import make_url

from services.runtime.service import Service
from tests.conftest import TEST_PARTITIONS, SettingsFactory
from tests.support.kafka import end_offsets, read_until, wait_for
from tests.support.probe.app import ProbeSettings, build
from tests.support.probe.fixtures import probe_topics
from tests.support.probe.helpers import (
    caused_by,
    dead_letters_of,
    discovered,
    effect_origins,
    headers_of,
    processed_count,
    raw,
    send,
)
from tests.support.probe.proxy import TcpProxy, timed_out_attempts


@pytest.fixture
async def db_proxy(database_url: str) -> AsyncIterator[TcpProxy]:
    url = make_url(database_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    await proxy.start()
    yield proxy
    await proxy.cut()


async def _readyz(service: Service) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=service.app), base_url="http://t") as http:
        return await http.get("/readyz")


async def test_database_outage_pauses_and_resumes_without_loss_or_duplicates(
    make_settings: SettingsFactory,
    start_service: Callable[[Service], Any],
    database_url: str,
    db_proxy: TcpProxy,
    topic_prefix: str,
) -> None:
    probe_prefix = await probe_topics(topic_prefix, make_settings, "probe-outage")
    via_proxy = make_url(database_url).set(host="127.0.0.1", port=db_proxy.port).render_as_string(hide_password=False)
    settings = make_settings("probe_outage", ProbeSettings, database_url=via_proxy, topic_prefix=probe_prefix)
    service = build(settings, group_suffix="-outage")  # its own group: no other probe shares its partitions
    await start_service(service)
    consumer = service.consumers[0]
    lead_topic, dlq_topic = settings.topic_name("leadstream.lead.v1"), settings.topic_name("leadstream.lead.v1.dlq")

    before = discovered()
    await send(settings.kafka_bootstrap_servers, lead_topic, [raw(before)])
    await wait_for(lambda: effect_origins(service.engine, before.id), timeout_s=60, what="effect before the outage")
    assert (await _readyz(service)).status_code == 200

    await db_proxy.cut()
    during, after = discovered(), None
    await send(settings.kafka_bootstrap_servers, lead_topic, [raw(during)])
    await wait_for(lambda: not consumer.healthy, timeout_s=60, what="the consumer to notice the outage")
    ready = await _readyz(service)
    assert ready.status_code == 503
    assert ready.headers["content-type"] == "application/problem+json"
    checks = ready.json()["checks"]
    assert checks["postgres"].startswith("unreachable")
    assert f"consumer:{consumer.group_id}" in checks
    assert "kafka" not in checks  # only what is actually down is named

    await db_proxy.start()
    after = discovered(during.data.lead_id)  # same partition, behind the record caught in the outage
    marker_key, _, marker_headers = raw(discovered(during.data.lead_id))
    sent = await send(
        settings.kafka_bootstrap_servers, lead_topic, [raw(after), (marker_key, b"poison marker", marker_headers)]
    )
    await wait_for(lambda: effect_origins(service.engine, after.id), timeout_s=60, what="effect after the outage")
    assert await effect_origins(service.engine, during.id) == ["event"]
    assert await effect_origins(service.engine, after.id) == ["event"]

    async def ready_again() -> bool:
        return (await _readyz(service)).status_code == 200

    await wait_for(ready_again, timeout_s=60, what="/readyz to recover")

    out = await read_until(
        settings.kafka_bootstrap_servers, [lead_topic], lambda rs: bool(caused_by(rs, after.id)), timeout_s=60
    )
    assert len(caused_by(out, during.id)) == 1
    # The poison marker behind them reached the DLQ; nothing from the outage did.
    dlq = await read_until(
        settings.kafka_bootstrap_servers,
        [dlq_topic],
        lambda rs: bool(dead_letters_of(rs, sent[1], consumer.group_id)),
        timeout_s=60,
    )
    mine = [r for r in dlq if dict(r.headers).get("dlq_consumer_group") == consumer.group_id.encode()]
    assert [dict(r.headers)["ce_id"] for r in mine if r.key == marker_key] == [dict(marker_headers)["ce_id"]]


@pytest.mark.parametrize("fault", ["commit-never-arrives", "commit-answer-lost", "half-open"])
async def test_a_connection_lost_at_a_handler_commit_applies_every_event_once_and_dead_letters_none(
    make_settings: SettingsFactory,
    start_service: Callable[[Service], Any],
    database_url: str,
    db_proxy: TcpProxy,
    topic_prefix: str,
    fault: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The connection lost at a COMMIT: aborted before Postgres gets it, aborted after Postgres committed it, or
    left half-open (the server's side gone, the client's socket open and silent for ever: the handler's attempt
    is given up after ``consumer_attempt_timeout_s``, an outage)."""
    probe_prefix = await probe_topics(topic_prefix, make_settings, f"probe-commit-{fault}")
    via_proxy = make_url(database_url).set(host="127.0.0.1", port=db_proxy.port).render_as_string(hide_password=False)
    settings = make_settings(
        "probe_commit", ProbeSettings, database_url=via_proxy, topic_prefix=probe_prefix, consumer_attempt_timeout_s=5.0
    )
    service = build(settings, group_suffix=f"-commit-{fault}")
    await start_service(service)
    consumer = service.consumers[0]
    lead_topic, dlq_topic = settings.topic_name("leadstream.lead.v1"), settings.topic_name("leadstream.lead.v1.dlq")

    # The fifth handler transaction (the only ones that send an event type, as the processed event's) loses its
    # connection at its COMMIT.
    marker, after = b"COMMIT", b"leadstream.lead.discovered"
    if fault == "half-open":
        cut = db_proxy.freeze_at(marker, skip=4, after=after)
    else:
        cut = db_proxy.cut_at(marker, forwarded=fault == "commit-answer-lost", skip=4, after=after)
    events = [discovered() for _ in range(30)]
    await send(settings.kafka_bootstrap_servers, lead_topic, [raw(e) for e in events])
    await wait_for(cut.is_set, timeout_s=60, what="the cut at a handler's COMMIT")
    if fault == "half-open":  # one connection's fault: new ones go through all along, so the outage is short
        await wait_for(lambda: timed_out_attempts(caplog), timeout_s=60, what="the hung attempt given up")
    else:
        await wait_for(lambda: not consumer.healthy, timeout_s=60, what="the consumer to notice the outage")
        await db_proxy.start()

    async def all_once() -> list[list[str]]:
        return [await effect_origins(service.engine, e.id) for e in events]

    origins = await wait_for(
        all_once, until=lambda got: all(got), timeout_s=120, what="every event's effect after the outage"
    )
    assert origins == [["event"]] * len(events)
    assert [await processed_count(service.engine, e.id) for e in events] == [1] * len(events)
    out = await read_until(
        settings.kafka_bootstrap_servers,
        [lead_topic],
        lambda rs: all(caused_by(rs, e.id) for e in events),
        timeout_s=60,
    )
    # One emitted event id each (a row the relay publishes again after the outage is a copy of the same id).
    assert [len({headers_of(r)["ce_id"] for r in caused_by(out, e.id)}) for e in events] == [1] * len(events)
    # This test's own topics: its DLQ holds nothing (an outage is never a record's fault).
    assert await end_offsets(settings.kafka_bootstrap_servers, dlq_topic, TEST_PARTITIONS) == 0
