"""Faults on the whole product, on a Kafka broker and a Postgres of this module's own: every service runs as
a process (the one list of services, so a new one is covered), a campaign runs through all of them as load
(tests/support/campaign.py), and then:

- **SIGTERM** to each service in turn while it has work in hand (a rolling restart): exit code 0 within the
  grace period;
- **the broker SIGKILLed** under load, kept down, restarted; some services restarted while it is down;
- **Postgres SIGKILLed** under load (the projection applying batches, the outbox relay, outreach's timers
  due meanwhile), kept down, restarted; the other services restarted while it is down.

Every service reports not-ready while an outage lasts (naming what is down) and ready again after it; the
campaign then finishes with its effects counted (tests/support/effects.py): lost 0, duplicated 0. Each test
prints its figures (``FIGURES {...}``; ``pytest -s`` shows them): docs/reliability.md's fault matrix.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

import pytest
import yaml
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from leadstream_schemas import TOPICS as CONTRACT_TOPICS
from leadstream_schemas import (
    InviteSent,
    LeadDiscovered,
    LeadEnrichmentFailed,
    LeadProfileEnriched,
    MessageGenerated,
    VideoFailed,
    VideoGenerated,
    headers_dict,
)
from sqlalchemy import text

from services.runtime.clock import Clock, clock_from_settings
from services.runtime.db import create_engine
from services.runtime.kafka import apply_topics
from services.runtime.settings import RuntimeSettings
from tests.conftest import TEST_PARTITIONS
from tests.deploy.chart import CHART_DIR
from tests.support.campaign import CLOCK_SCALE, WORKFLOW, CampaignRun, call, launch_campaign, slower
from tests.support.effects import Effects, count, count_topic, finished
from tests.support.fleet import Fleet, Stopped
from tests.support.kafka import wait_for
from tests.support.probe.tail import Records, Tail
from tests.support.servers import DedicatedServers, LocalServer

# Each test runs a campaign to its end around an outage: ~4 minutes alone, more on a shared machine (the
# campaign itself may take 300 s, see _settle), so the per-test ceiling is above the suite default of 300 s.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

LEADS = 30
OUTAGE_S = 10.0
"""How long a killed server stays down before it is restarted (the broker then needs ~10 s more to serve)."""
GRACE_S = 5
"""The services' LEADSTREAM_SHUTDOWN_GRACE_S here (25 by default): a stop during an outage may wait it out
(a publish to a broker that is down, a consumer leaving its group), and the outage lasts that much longer."""
RIDE_OUT = {"kafka": ("discovery", "messaging", "video"), "postgres": ("enrichment", "outreach", "projection")}
"""Services that keep running through each outage; every other service is restarted while it lasts, so each
service both rides out one outage and starts during the other."""
TOPICS = ("leadstream.lead.v1", "leadstream.campaign.v1", "leadstream.account.v1")
CHART_SERVICES: dict[str, Any] = yaml.safe_load((CHART_DIR / "values.yaml").read_text())["services"]


def _depends_on(server: str, service: str) -> bool:
    """Whether ``service`` needs ``server``: every one needs Postgres; Kafka, those the chart declares to consume
    or produce topics (a service the chart does not know yet is taken to need it)."""
    kafka = (CHART_SERVICES.get(service) or {}).get("kafka")
    return server == "postgres" or kafka is None or bool(kafka.get("consumes") or kafka.get("produces"))


@dataclass
class World:
    servers: DedicatedServers
    fleet: Fleet
    database_url: str
    prefix: str
    clock: Clock

    def topic(self, name: str) -> str:
        return self.prefix + name

    async def heal(self) -> None:
        """Both servers and every service running and ready (a failed test may have left one down)."""
        await self.servers.up()
        await self.fleet.start(*(s for s in self.fleet.services if s not in self.fleet.processes.procs))
        await self.fleet.wait_ready(180)


@pytest.fixture(scope="module")
async def world(dedicated_servers: DedicatedServers, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    servers = dedicated_servers
    prefix = f"t{uuid.uuid4().hex[:8]}."
    admin = RuntimeSettings(
        kafka_bootstrap_servers=servers.kafka.bootstrap,
        database_url=servers.postgres.url,
        topic_prefix=prefix,
        service_name="admin",
    )
    await apply_topics(admin, partitions=TEST_PARTITIONS)
    epoch = datetime.now(UTC)
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": servers.kafka.bootstrap,
        "DATABASE_URL": servers.postgres.url,
        "LEADSTREAM_TOPIC_PREFIX": prefix,
        "LEADSTREAM_TOPIC_PARTITIONS": str(TEST_PARTITIONS),
        "LEADSTREAM_CLOCK_SCALE": str(CLOCK_SCALE),
        "LEADSTREAM_CLOCK_EPOCH": epoch.isoformat(),
        "LEADSTREAM_SHUTDOWN_GRACE_S": str(GRACE_S),
        "LEADSTREAM_LOG_LEVEL": "WARNING",
        # An out-of-office answer pauses its lead until "next Monday" (the simulated text): up to 7 campaign
        # days, 336 s here, twice if the follow-up gets one too. The campaign's length then depended on the
        # weekday the clock stood at (CI timed out at 300 s waiting for a Monday). Pauses and resumes are
        # tested in tests/services/outreach/test_inbox.py and test_stops.py; here no lead is away.
        "LEADSTREAM_SIM_OUT_OF_OFFICE_RATE": "0",
    }
    fleet = Fleet(env, tmp_path_factory.mktemp("fleet"))
    try:
        await fleet.start(*fleet.services)
        await fleet.wait_ready(180)
        yield World(servers, fleet, servers.postgres.url, prefix, clock_from_settings(CLOCK_SCALE, epoch))
    finally:
        await fleet.stop()


def _mine(run: CampaignRun) -> Callable[[Any], bool]:
    return lambda r: headers_dict(r.headers).get("workspaceid") == run.workspace


def _count(records: Records, event_types: Iterable[str]) -> int:
    types = set(event_types)
    return sum(headers_dict(r.headers).get("ce_type") in types for r in records)


BUSY: dict[str, Callable[[Records], bool]] = {
    # Its work is the search the campaign's launch just started (its leads come out in one transaction).
    "discovery": lambda rs: _count(rs, {LeadDiscovered.event_type}) == 0,
    "enrichment": lambda rs: 0 < _count(rs, {LeadProfileEnriched.event_type, LeadEnrichmentFailed.event_type}) < LEADS,
    "messaging": lambda rs: 0 < _count(rs, {MessageGenerated.event_type}) < LEADS * (len(WORKFLOW["steps"]) - 1),
    "video": lambda rs: 0 < _count(rs, {VideoGenerated.event_type, VideoFailed.event_type}) < LEADS,
    "outreach": lambda rs: 0 < _count(rs, {InviteSent.event_type}) < LEADS,
}
"""When a service has work in hand: part of its share of the campaign is on the topic. Any other service
(outreach and the projection work until the campaign ends) is busy while the campaign runs."""


async def _settle(world: World, run: CampaignRun, tail: Tail, *, timeout_s: float = 90) -> tuple[Effects, str]:
    """Wait for the campaign to finish, then count its effects until nothing disagrees (or the deadline); the
    effects, and what failed tests print: the problems, and where the projection stands when something is lost."""
    try:
        await tail.until(lambda rs: finished(rs, run), timeout_s=300, what="the campaign to finish")
    except AssertionError as stalled:
        raise AssertionError(f"{stalled}\n{await _stall_state(world, run, tail)}\n{world.fleet.logs()}") from None
    effects: Effects = await wait_for(
        partial(count, run, tail, world.topic("leadstream.lead.v1"), world.fleet, world.database_url),
        until=lambda e: not (e.lost or e.duplicated),
        timeout_s=timeout_s,
        interval_s=1,
        at_deadline="return",  # the test asserts on them and prints what disagrees
    )
    return effects, effects.problems() + (f"\n{await _projection_state(world)}" if effects.lost else "")


async def _stall_state(world: World, run: CampaignRun, tail: Tail) -> str:
    """Where a campaign that does not finish stands: how far its leads got on the lead topic, outreach's
    enrollments and open timers, every service's unpublished outbox, and each consumer group's lag."""
    lead_records = [r for r in tail.records if r.topic == world.topic("leadstream.lead.v1")]
    stages = Counter(problem.split(" never reached ")[-1] for problem in count_topic(lead_records, run).lost)
    types = Counter(headers_dict(r.headers).get("ce_type") for r in tail.records)
    engine = create_engine(world.database_url)
    try:
        async with engine.connect() as conn:
            enrolled = (
                await conn.execute(
                    text(
                        "SELECT state, steps_done, count(*) FROM outreach.enrollments WHERE campaign_id = :c"
                        " GROUP BY 1, 2 ORDER BY 1, 2"
                    ),
                    {"c": run.campaign_id},
                )
            ).all()
            timers = (
                await conn.execute(
                    text(
                        "SELECT kind, state, waiting_for, min(due_at), max(attempts), count(*) FROM outreach.timers"
                        " WHERE workspace_id = :w AND state <> 'done' GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
                    ),
                    {"w": run.workspace},
                )
            ).all()
            campaign = (
                await conn.execute(
                    text("SELECT state, pause_reason, next_run_at FROM outreach.campaigns WHERE campaign_id = :c"),
                    {"c": run.campaign_id},
                )
            ).first()
            outboxes: dict[str, tuple[int | None, ...]] = {}
            for service in world.fleet.services:
                counts = [
                    await conn.scalar(text(f"SELECT count(*) FROM {service}.{table}"))
                    if await conn.scalar(text(f"SELECT to_regclass('{service}.{table}') IS NOT NULL"))
                    else None
                    for table in ("outbox", "outbox_parked")
                ]
                outboxes[service] = tuple(counts)
    finally:
        await engine.dispose()
    admin = AIOKafkaAdminClient(bootstrap_servers=world.servers.kafka.bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=world.servers.kafka.bootstrap, enable_auto_commit=False)
    await admin.start()
    await consumer.start()
    try:
        lags: dict[str, dict[str, int]] = {}
        for service in world.fleet.services:
            committed = await admin.list_consumer_group_offsets(f"{world.prefix}leadstream-{service}")
            ends = await consumer.end_offsets(list(committed)) if committed else {}
            lags[service] = {
                f"{tp.topic}[{tp.partition}]": ends[tp] - meta.offset
                for tp, meta in committed.items()
                if ends[tp] - meta.offset
            }
    finally:
        await consumer.stop()
        await admin.close()
    return (
        f"leads short of a stage: {dict(stages)}\n"
        f"event types seen: {dict(types)}\n"
        f"campaign clock: {world.clock.now()}; campaign: {campaign}\nenrollments (state, steps done, n): {enrolled}\n"
        f"open timers (kind, state, waiting for, first due, most attempts, n): {timers}\n"
        f"outbox (unpublished, parked): {outboxes}\nconsumer lag: {lags}\n"
        f"--- outreach's tasks ---\n{await world.fleet.tasks('outreach')}"
    )


async def _projection_state(world: World) -> str:
    """The projection's readiness, its stored offsets against the log ends and the dead letters on every topic,
    and its log: a loss in the views says whether records were dead-lettered, or not applied (and where)."""
    engine = create_engine(world.database_url)
    try:
        async with engine.connect() as conn:
            stored = {(t, p): o for t, p, o in await conn.execute(text("SELECT * FROM projection.offsets"))}
    finally:
        await engine.dispose()
    topics = [world.topic(t.name) for t in CONTRACT_TOPICS.values()]
    tps = [TopicPartition(t, p) for t in topics for p in range(TEST_PARTITIONS)]
    dlqs = [TopicPartition(f"{tp.topic}.dlq", tp.partition) for tp in tps]
    consumer = AIOKafkaConsumer(bootstrap_servers=world.servers.kafka.bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        ends = await consumer.end_offsets([*tps, *dlqs])
    finally:
        await consumer.stop()
    behind = {f"{tp.topic}[{tp.partition}]": (stored.get((tp.topic, tp.partition)), ends[tp]) for tp in tps}
    return (
        f"projection /readyz: {await world.fleet.readiness('projection')}\n"
        f"stored offset, log end: {behind}\n"
        f"dead letters: { {f'{tp.topic}[{tp.partition}]': ends[tp] for tp in dlqs if ends[tp]} }\n"
        f"--- projection ---\n{world.fleet.log_tail('projection', 40)}\n"
        f"--- projection's tasks ---\n{await world.fleet.tasks('projection')}"
    )


async def _reports(fleet: Fleet, services: Iterable[str], check: str, *, timeout_s: float) -> dict[str, float]:
    """Poll ``/readyz`` of ``services`` until each answers not-ready naming ``check``; seconds until each did."""
    started = time.monotonic()

    async def one(service: str) -> tuple[str, float]:
        await wait_for(
            partial(_all_report, fleet, [service], check),
            timeout_s=timeout_s,
            interval_s=0.2,
            what=f"{service} /readyz naming {check}",
        )
        return service, round(time.monotonic() - started, 1)

    return dict(await asyncio.gather(*(one(s) for s in services)))


async def _all_report(fleet: Fleet, services: Iterable[str], check: str) -> bool:
    """Whether every one of ``services`` answers ``/readyz`` not-ready naming ``check``."""
    states = await asyncio.gather(*(fleet.readiness(s) for s in services))
    return all(state is not None and any(key.startswith(check) for key in state) for state in states)


def _figures(**figures: Any) -> None:
    print("FIGURES " + json.dumps(figures, default=str))


async def test_sigterm_to_each_service_under_load_exits_0_and_loses_or_duplicates_nothing(world: World) -> None:
    await world.heal()
    fleet = world.fleet
    # 24 campaign hours more before each message (48 s here): the two services that work until the campaign ends
    # must still have work when their turns come, after up to six stops of up to 6 s each on a loaded machine.
    run = await launch_campaign(fleet, world.database_url, leads=LEADS, workflow=slower(24))
    mark = fleet.mark()
    stops: list[tuple[Stopped, bool]] = []
    ready: list[asyncio.Task[tuple[str, float]]] = []
    async with Tail(world.servers.kafka.bootstrap, [world.topic(t) for t in TOPICS], keep=_mine(run)) as tail:
        # Each in turn as soon as it has work in hand, without waiting for the previous one to be ready again
        # (the work of the next one is often still waiting for its output meanwhile).
        for service in fleet.services:
            busy = BUSY.get(service, lambda rs: not finished(rs, run))
            try:
                await tail.until(busy, timeout_s=15, what=f"{service} busy")
                in_hand = True
            except AssertionError:
                in_hand = False  # its share was done before its turn came: stopped idle
            stops.append((await fleet.terminate(service), in_hand))
            await fleet.start(service)
            ready.append(asyncio.create_task(_ready_after(fleet, service)))
        restarts = dict(await asyncio.gather(*ready))
        effects, problems = await _settle(world, run, tail)
    _figures(
        fault="SIGTERM to each service under load, restarted",
        grace_s=GRACE_S,
        stops={s.service: {"code": s.code, "seconds": round(s.seconds, 2), "in_hand": in_hand} for s, in_hand in stops},
        ready_after_restart_s=restarts,
        abandoned=fleet.abandoned(mark),
        effects=effects.figures(),
    )
    assert {s.service: s.code for s, _ in stops} == dict.fromkeys(fleet.services, 0), fleet.logs()
    # The two that work until the campaign ends were stopped with work in hand (the others are printed).
    assert {s.service for s, in_hand in stops if in_hand} >= {"outreach", "projection"}, stops
    assert not effects.lost and not effects.duplicated, problems


async def _ready(fleet: Fleet, service: str) -> bool:
    return await fleet.readiness(service) == {}


async def _ready_after(fleet: Fleet, service: str) -> tuple[str, float]:
    """Seconds until a just started service is ready."""
    began = time.monotonic()
    await wait_for(partial(_ready, fleet, service), timeout_s=120, what=f"{service} ready again")
    return service, round(time.monotonic() - began, 1)


async def _outage(
    world: World, run: CampaignRun, tail: Tail, server: LocalServer, check: str, during: Callable[[], Any] | None
) -> dict[str, Any]:
    """Kill ``server`` mid-campaign, watch every service report it, restart the services not riding it out
    while it is down, run ``during``, restart it after OUTAGE_S; the figures."""
    fleet = world.fleet
    await tail.until(
        lambda rs: _count(rs, {InviteSent.event_type}) >= 3,
        timeout_s=120,
        what=f"the campaign under way\n{fleet.logs()}",
    )
    mark = fleet.mark()
    killed = await server.kill()
    affected = [s for s in fleet.services if _depends_on(check, s)]
    noticed = await _reports(fleet, affected, check, timeout_s=60)
    # A service that does not need the server (the console and Kafka) stays ready.
    unaffected = {s: await fleet.readiness(s) for s in fleet.services if s not in affected}
    assert all(state == {} for state in unaffected.values()), unaffected
    restarted = [s for s in fleet.services if s not in RIDE_OUT[check]]
    stops = await asyncio.gather(*(fleet.terminate(s) for s in restarted))
    await fleet.start(*restarted)
    # Started while the server is down: up, answering, and not ready, naming it (or ready, not needing it).
    started_down = await _reports(fleet, [s for s in restarted if s in affected], check, timeout_s=60)
    for service in (s for s in restarted if s not in affected):
        await wait_for(partial(_ready, fleet, service), timeout_s=60, what=f"{service} ready without {check}")
    if during is not None:
        await during()
    # Keep it down for OUTAGE_S at least, every service that needs it still reporting it.
    await wait_for(
        partial(_all_report, fleet, affected, check),
        not_before=killed.at + OUTAGE_S,
        interval_s=1,
        what=f"every service reporting {check} down after {OUTAGE_S}s\n{fleet.logs()}",
    )
    await server.start()
    back = time.monotonic()
    await wait_for(fleet.all_ready, timeout_s=120, interval_s=0.2, what=f"every service ready\n{fleet.logs()}")
    return {
        "down_s": round(back - killed.at, 1),
        "restart_s": round(server.starts[-1], 1),
        "not_ready_after_s": noticed,
        "stopped_while_down": {s.service: {"code": s.code, "seconds": round(s.seconds, 2)} for s in stops},
        "started_while_down_not_ready_after_s": started_down,
        "all_ready_after_back_s": round(time.monotonic() - back, 1),
        "abandoned": fleet.abandoned(mark),
    }


async def test_broker_killed_under_load_pauses_every_service_and_loses_or_duplicates_nothing(world: World) -> None:
    await world.heal()
    run = await launch_campaign(world.fleet, world.database_url, leads=LEADS)
    account_ids: list[str] = []

    async def command_while_down() -> None:
        # Commands still work (Postgres is up): the event waits in the outbox for the broker.
        account = await call(world.fleet, run.token, "POST", "outreach", "/v1/accounts", json={"provider": "linkedin"})
        account_ids.append(account["account_id"])

    async with Tail(world.servers.kafka.bootstrap, [world.topic(t) for t in TOPICS], keep=_mine(run)) as tail:
        figures = await _outage(world, run, tail, world.servers.kafka, "kafka", command_while_down)
        effects, problems = await _settle(world, run, tail)
        connected = {
            headers_dict(r.headers)["ce_id"]
            for r in tail.records
            if r.topic == world.topic("leadstream.account.v1")
            and r.key is not None
            and r.key.decode() == account_ids[0]
            and headers_dict(r.headers)["ce_type"] == "leadstream.account.connected.v1"
        }
    _figures(fault="Kafka broker SIGKILLed under load, restarted", **figures, effects=effects.figures())
    assert {s: v["code"] for s, v in figures["stopped_while_down"].items()} == dict.fromkeys(
        figures["stopped_while_down"], 0
    ), world.fleet.logs()
    assert len(connected) == 1, f"the account connected during the outage: {len(connected)} events"
    assert not effects.lost and not effects.duplicated, problems


async def test_database_killed_under_load_pauses_every_service_and_loses_or_duplicates_nothing(
    world: World,
) -> None:
    await world.heal()
    run = await launch_campaign(world.fleet, world.database_url, leads=LEADS)
    async with Tail(world.servers.kafka.bootstrap, [world.topic(t) for t in TOPICS], keep=_mine(run)) as tail:
        figures = await _outage(world, run, tail, world.servers.postgres, "postgres", None)
        effects, problems = await _settle(world, run, tail)
    _figures(fault="Postgres SIGKILLed under load, restarted", **figures, effects=effects.figures())
    assert {s: v["code"] for s, v in figures["stopped_while_down"].items()} == dict.fromkeys(
        figures["stopped_while_down"], 0
    ), world.fleet.logs()
    assert not effects.lost and not effects.duplicated, problems
