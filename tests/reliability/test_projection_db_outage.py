"""The batch mode's database failure at the worst moment: the connection is lost at a batch's COMMIT, either
before Postgres gets it (the batch rolled back) or after Postgres committed it without the client hearing
back (the client cannot know), or left half-open (no answer and no error, ever). Each way, once the database
answers again every record is applied exactly once and none is dead-lettered: a lost connection is an outage,
never the records' fault.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from leadstream_schemas import LEAD, Envelope, LeadDiscovered, LeadSource
from sqlalchemy.engine import make_url

from services.projection.app import build
from services.projection.checksum import dsn
from services.projection.store import SCHEMA, changes_channel
from tests.services.projection.fixtures import PARTITIONS, Isolated, StartService, isolated  # noqa: F401 - fixture
from tests.services.projection.helpers import produce_all
from tests.support.kafka import end_offsets, wait_for
from tests.support.probe.proxy import TcpProxy, timed_out_attempts

EVENTS = 400
BATCH = 40


@pytest.fixture
async def db_proxy(isolated: Isolated) -> AsyncIterator[TcpProxy]:  # noqa: F811 - the fixture imported above
    url = make_url(isolated.database_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    await proxy.start()
    yield proxy
    await proxy.cut()


@pytest.mark.parametrize("fault", ["commit-never-arrives", "commit-answer-lost", "half-open"])
async def test_a_connection_lost_at_a_batch_commit_applies_every_record_once_and_dead_letters_none(
    isolated: Isolated,  # noqa: F811 - the fixture imported above
    start_service: StartService,
    db_proxy: TcpProxy,
    fault: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The connection lost at a batch's COMMIT: aborted before Postgres gets it, aborted after Postgres committed
    it, or left half-open (the server's side gone, the client's socket open and silent for ever: without a
    deadline the batch, and the consumer behind it, waited for good while reporting healthy; now the attempt is
    given up after ``consumer_attempt_timeout_s`` as an outage and the batch applies on another connection)."""
    via_proxy = (
        make_url(isolated.database_url).set(host="127.0.0.1", port=db_proxy.port).render_as_string(hide_password=False)
    )
    settings = isolated.settings(
        database_url=via_proxy, projection_batch_max_records=BATCH, consumer_attempt_timeout_s=5.0
    )
    service = await start_service(build(settings))
    consumer = service.app.state.projection
    await wait_for(lambda: consumer.assigned_once, timeout_s=60, what="assignment")

    # The third batch that writes events loses its connection at its COMMIT. The change log's channel marks a
    # batch's transaction: the change log's statement is prepared once and then sent by name only, but with its
    # parameters, the channel among them, every time; the other transactions of the service never send it (the
    # LISTEN connection does, and never commits).
    batch = changes_channel(SCHEMA).encode()
    if fault == "half-open":
        cut = db_proxy.freeze_at(b"COMMIT", skip=2, after=batch)
    else:
        cut = db_proxy.cut_at(b"COMMIT", forwarded=fault == "commit-answer-lost", skip=2, after=batch)
    events: list[Envelope[Any]] = [
        Envelope.new(
            LeadDiscovered(lead_id=uuid.uuid4(), source=LeadSource.manual, full_name=f"N{i}"),
            workspace_id="w",
            source="t",
        )
        for i in range(EVENTS)
    ]
    await produce_all(settings.kafka_bootstrap_servers, settings.topic_prefix, events)
    await wait_for(cut.is_set, timeout_s=60, what="the cut at a batch's COMMIT")
    if fault == "half-open":  # one connection's fault: new ones go through all along, so the outage is short
        await wait_for(lambda: timed_out_attempts(caplog), timeout_s=60, what="the hung attempt given up")
    else:
        await wait_for(lambda: not consumer.healthy, timeout_s=60, what="the consumer to report the outage")
        await db_proxy.start()

    conn = await asyncpg.connect(dsn(isolated.database_url))
    try:

        async def applied() -> int:
            return int(await conn.fetchval("SELECT count(*) FROM projection.timeline WHERE workspace_id = 'w'"))

        await wait_for(applied, until=lambda n: n >= EVENTS, timeout_s=120, what="every event in the timeline")
        rows = await conn.fetch("SELECT event_id, count(*) AS n FROM projection.timeline GROUP BY event_id")
        stored = await conn.fetchval(
            "SELECT sum(next_offset) FROM projection.offsets WHERE topic = $1", settings.topic_name(LEAD.name)
        )
    finally:
        await conn.close()
    assert {str(r["event_id"]) for r in rows} == {str(e.id) for e in events}
    assert [r for r in rows if r["n"] != 1] == []
    assert stored == EVENTS
    dlq = settings.topic_name(LEAD.name) + ".dlq"
    assert await end_offsets(settings.kafka_bootstrap_servers, dlq, PARTITIONS) == 0  # this test's own topics
    await wait_for(lambda: consumer.healthy, timeout_s=60, what="the consumer healthy again")
