"""``leadstream replay --until TIME`` rebuilds the views as they stood at that time: the checksum of the rebuild
equals a checksum of the live views taken at that moment, after which the live views moved on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.projection.app import build
from services.projection.workload import EPOCH, generate
from tests.cli.test_replay_export import cli, cli_raw, digest
from tests.services.projection.fixtures import Isolated, StartService, isolated  # noqa: F401 - fixture
from tests.services.projection.helpers import produce_all
from tests.support.kafka import wait_for


async def test_until_rebuilds_the_views_as_the_live_service_showed_them_then(
    isolated: Isolated,  # noqa: F811 - the fixture imported above
    start_service: StartService,
) -> None:
    settings = isolated.settings()
    service = await start_service(build(settings))
    consumer = service.app.state.projection
    await wait_for(lambda: consumer.assigned_once, timeout_s=60, what="assignment")
    monday = generate(leads=20, campaigns=2, seed=11)
    await produce_all(settings.kafka_bootstrap_servers, settings.topic_prefix, monday.envelopes)
    await wait_for(lambda: consumer.applied >= len(monday.envelopes), timeout_s=90, what="live views caught up")

    snapshot = await digest(isolated, "projection")  # what the dashboard showed then
    then = datetime.now(UTC)
    # Records produced from here on carry later timestamps (millisecond resolution): wait for the clock to pass.
    await wait_for(lambda: datetime.now(UTC) >= then + timedelta(milliseconds=2), timeout_s=5, interval_s=0.001)

    # The week goes on: more leads, and more events for Monday's leads' campaigns (later event times).
    tuesday = generate(leads=8, campaigns=1, seed=12, start=EPOCH + timedelta(days=1))
    await produce_all(settings.kafka_bootstrap_servers, settings.topic_prefix, tuesday.envelopes)
    total = len(monday.envelopes) + len(tuesday.envelopes)
    await wait_for(lambda: consumer.applied >= total, timeout_s=90, what="live views got Tuesday's events")
    now = await digest(isolated, "projection")
    assert now["digest"] != snapshot["digest"]

    out = await cli(isolated, "replay", "--from-beginning", "--until", then.isoformat(), "--into", "monday")
    assert "until" in out and f"{len(monday.envelopes):,}" in out
    rebuilt = await digest(isolated, "projection_monday")
    assert rebuilt["digest"] == snapshot["digest"], (snapshot, rebuilt)
    assert rebuilt["tables"]["timeline"]["rows"] == snapshot["tables"]["timeline"]["rows"]

    # A view of the past is for reading: promoting it over the live views needs --force.
    code, out, _ = await cli_raw(isolated, "replay", "--promote", "monday")
    assert code == 1 and "until=" in out and "--force" in out

    # --until before --since is refused with a message.
    code, out, _ = await cli_raw(isolated, "replay", "--since", "1d", "--until", "2d", "--into", "backwards")
    assert code == 1 and "is before --since" in out
