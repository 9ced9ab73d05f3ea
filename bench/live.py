"""Live path benchmark: how long an event takes to be visible through the API, against a no-op consumer.

    python bench/live.py                        # 200/s and 1,000/s for 60 s each, writes bench/results/live.json
    python bench/live.py --rates 200 --seconds 10

It starts every service as a process (``leadstream_cli.processes``, as the demo does) on fresh topics and a
fresh database, then for each rate produces lead events (invites, messages, replies... over 1,000 leads) at
that rate and measures, in the same run:

- produce -> visible: from just before the producer sends an event until ``GET /v1/leads/{id}/timeline``
  on the projection first lists it, for 20 probe events a second (every n-th event; pollers read the
  timelines of the leads with a probe not yet seen, so the figure includes one read of the timeline);
- produce -> consumed: the same probes read by a no-op aiokafka consumer (its own group, nothing done per
  record), the floor any consumer of the broker has.

Also API -> Kafka: ``POST /v1/leads`` on discovery (a manual lead) until the no-op consumer reads its
``LeadDiscovered``, which the transactional outbox relays; and the resident memory (RSS) of every service
idle and under the highest rate. Targets: p99 produce -> visible within 5x the no-op p99 at every rate.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
import httpx  # noqa: E402
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # noqa: E402
from aiokafka.admin import AIOKafkaAdminClient  # noqa: E402
from leadstream_schemas import (  # noqa: E402
    LEAD,
    Envelope,
    Event,
    InviteAccepted,
    InviteSent,
    LeadDiscovered,
    MessageSent,
    Replied,
    encode,
)
from leadstream_schemas.envelope import H_ID  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from leadstream_cli.processes import SERVICES, ServiceFleet, free_port  # noqa: E402
from services.projection.checksum import dsn  # noqa: E402
from services.runtime import auth  # noqa: E402
from services.runtime.db import create_engine  # noqa: E402
from services.runtime.kafka import all_topics, apply_topics  # noqa: E402
from services.runtime.migrations import upgrade  # noqa: E402
from services.runtime.settings import RuntimeSettings  # noqa: E402

WORKSPACE = "ws-bench"
TARGET_P99_RATIO = 5.0
POLLERS = 4
"""Concurrent timeline readers."""
PROBES_PER_S = 20
"""Events per second whose visibility is watched (every n-th event produced): reading the timeline of
every lead with an event in flight at 1,000/s would load the machine more than the projection does and
make a sweep of the pending leads, the measurement's resolution, far longer than the latency it measures."""


def log(msg: str) -> None:
    """Progress on stderr."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def percentiles(values_s: list[float]) -> dict[str, float | int]:
    """p50, p95, p99 and max in milliseconds, and the count."""
    if not values_s:
        return {"count": 0}
    ordered = sorted(values_s)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 1)

    return {"count": len(ordered), "p50_ms": at(0.50), "p95_ms": at(0.95), "p99_ms": at(0.99), "max_ms": at(1.0)}


def rss_mb(pid: int) -> float | None:
    """Resident memory of a process in MB (Linux /proc), None when it is gone or unreadable."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


@dataclass
class Tracker:
    """Send times of the run's events and when each was first consumed and first visible."""

    sent: dict[str, float] = field(default_factory=dict)
    """Send times of the probes (see :data:`PROBES_PER_S`)."""
    consumed: dict[str, float] = field(default_factory=dict)
    visible: dict[str, float] = field(default_factory=dict)
    pending: dict[uuid.UUID, set[str]] = field(default_factory=dict)
    """Per lead: events sent and not yet seen through the API."""
    statuses: dict[int, int] = field(default_factory=dict)
    """HTTP statuses of the timeline reads (404 while a lead has no event applied yet)."""
    reads: list[float] = field(default_factory=list)
    """How long each timeline read took: with the number of pending leads, the measurement's resolution."""


class NoopConsumer:
    """Reads the lead topic from its end in its own group and notes when each tracked event arrives."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            group_id=f"bench-noop-{uuid.uuid4().hex[:8]}",
            auto_offset_reset="latest",
        )
        self.arrived: dict[str, float] = {}

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            got = await self.consumer.getmany(timeout_ms=100)
            now = time.perf_counter()
            for records in got.values():
                for r in records:
                    for name, value in r.headers:
                        if name == H_ID and value is not None:
                            self.arrived[value.decode()] = now


def _event(lead: uuid.UUID, campaign: uuid.UUID, rng: random.Random) -> Event:
    """One lead event of a plausible mix (what the projection sees most of)."""
    kind = rng.random()
    if kind < 0.4:
        return InviteSent(lead_id=lead, campaign_id=campaign, account_id=campaign, note="Hi {first_name}")
    if kind < 0.6:
        return InviteAccepted(lead_id=lead, campaign_id=campaign, account_id=campaign)
    if kind < 0.95:
        return MessageSent(lead_id=lead, campaign_id=campaign, account_id=campaign, text="Thanks for connecting!")
    return Replied(lead_id=lead, campaign_id=campaign, channel="message", received_at=datetime.now(UTC), excerpt="Sure")


async def produce_at(
    producer: AIOKafkaProducer, settings: RuntimeSettings, tracker: Tracker, rate: int, seconds: float, seed: int
) -> int:
    """Produce lead events at ``rate`` per second for ``seconds`` (paced on the clock, not by sleeps per event)."""
    rng = random.Random(seed)
    leads = [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(1000)]
    campaigns = [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(10)]
    topic = settings.topic_name(LEAD.name)
    probe_every = max(1, rate // PROBES_PER_S)
    started = time.perf_counter()
    sent = 0
    futures = []
    while (elapsed := time.perf_counter() - started) < seconds:
        due = int(elapsed * rate) + 1
        while sent < due:
            lead = rng.choice(leads)
            env = Envelope.new(_event(lead, rng.choice(campaigns), rng), workspace_id=WORKSPACE, source="bench")
            key, value, headers = encode(env)
            if sent % probe_every == 0:  # a probe: its visibility is watched
                eid = str(env.id)
                tracker.sent[eid] = time.perf_counter()
                tracker.pending.setdefault(lead, set()).add(eid)
            futures.append(await producer.send(topic, value=value, key=key, headers=headers))
            sent += 1
        await asyncio.sleep(0.002)  # the pacing tick: events due in it go out together, as a busy service's would
    await asyncio.gather(*futures)
    return sent


async def read_timelines(http: httpx.AsyncClient, tracker: Tracker, leads: asyncio.Queue[uuid.UUID]) -> None:
    """Read the timeline of each lead in ``leads``; note the events it shows for the first time."""
    while not leads.empty():
        lead = leads.get_nowait()
        asked = time.perf_counter()
        try:
            r = await http.get(f"/v1/leads/{lead}/timeline", params={"limit": 200})
        except httpx.TransportError:  # an overloaded service may drop a connection: the next sweep asks again
            tracker.statuses[0] = tracker.statuses.get(0, 0) + 1
            continue
        now = time.perf_counter()
        tracker.reads.append(now - asked)
        tracker.statuses[r.status_code] = tracker.statuses.get(r.status_code, 0) + 1
        if r.status_code != 200:
            continue  # 404 until the lead's first event is applied
        shown = {item["event_id"] for item in r.json()["items"]}
        waiting = tracker.pending.get(lead, set())
        for eid in waiting & shown:
            tracker.visible[eid] = now
        waiting -= shown
        if not waiting:
            tracker.pending.pop(lead, None)


async def poll_visibility(http: httpx.AsyncClient, tracker: Tracker, stop: asyncio.Event) -> None:
    """Sweep the leads with pending events with :data:`POLLERS` readers, until stopped and nothing is pending."""
    while not (stop.is_set() and not tracker.pending):
        if not tracker.pending:
            await asyncio.sleep(0.002)
            continue
        leads: asyncio.Queue[uuid.UUID] = asyncio.Queue()
        for lead in list(tracker.pending):
            leads.put_nowait(lead)
        await asyncio.gather(*(read_timelines(http, tracker, leads) for _ in range(POLLERS)))


async def sample_rss(fleet: ServiceFleet, samples: dict[str, list[float]], stop: asyncio.Event) -> None:
    """Every second, the RSS of every service (for the median under load)."""
    while not stop.is_set():
        for name, sp in fleet.procs.items():
            mb = rss_mb(sp.process.pid)
            if mb is not None:
                samples.setdefault(name, []).append(mb)
        try:
            await asyncio.wait_for(stop.wait(), 1.0)
        except TimeoutError:
            pass


async def api_calls(discovery: httpx.AsyncClient, count: int, per_s: float) -> dict[str, float]:
    """``POST /v1/leads`` (a new manual lead) ``count`` times at ``per_s``: when each call started, by lead id."""
    called: dict[str, float] = {}
    for i in range(count):
        t0 = time.perf_counter()
        r = await discovery.post(
            "/v1/leads",
            json={"linkedin_url": f"https://www.linkedin.com/in/bench-{uuid.uuid4().hex[:12]}", "title": f"{i}"},
        )
        r.raise_for_status()
        called[str(r.json()["lead_id"])] = t0
        await asyncio.sleep(max(0.0, 1 / per_s - (time.perf_counter() - t0)))
    return called


class DiscoveredWatcher:
    """Reads the lead topic and notes when a ``LeadDiscovered`` of each lead first arrives."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=bootstrap, group_id=f"bench-api-{uuid.uuid4().hex[:8]}", auto_offset_reset="latest"
        )
        self.arrived: dict[str, float] = {}

    async def run(self, stop: asyncio.Event) -> None:
        from leadstream_schemas import DecodeError, decode

        while not stop.is_set():
            got = await self.consumer.getmany(timeout_ms=100)
            now = time.perf_counter()
            for records in got.values():
                for r in records:
                    try:
                        env = decode(r.value, r.headers)
                    except DecodeError:
                        continue
                    if isinstance(env.data, LeadDiscovered):
                        self.arrived.setdefault(str(env.data.lead_id), now)


async def measure_rate(
    settings: RuntimeSettings,
    fleet: ServiceFleet,
    http: httpx.AsyncClient,
    rate: int,
    seconds: float,
    drain_s: float,
    seed: int,
) -> tuple[dict[str, Any], dict[str, list[float]]]:
    """Produce at ``rate`` for ``seconds``; latency figures, and the services' RSS samples meanwhile."""
    tracker = Tracker()
    noop = NoopConsumer(settings.kafka_bootstrap_servers, settings.topic_name(LEAD.name))
    await noop.consumer.start()
    await _wait_assigned(noop.consumer)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all", enable_idempotence=True)
    await producer.start()
    rss: dict[str, list[float]] = {}
    stop_noop, stop_poll, stop_rss = asyncio.Event(), asyncio.Event(), asyncio.Event()
    try:
        async with running(noop.run, stop_noop), running(lambda s: sample_rss(fleet, rss, s), stop_rss):
            poller = asyncio.create_task(poll_visibility(http, tracker, stop_poll))
            log(f"producing {rate}/s for {seconds:.0f} s")
            sent = await produce_at(producer, settings, tracker, rate, seconds, seed=seed)
            stop_rss.set()
            stop_poll.set()
            try:
                await asyncio.wait_for(poller, drain_s)
            except TimeoutError:
                log(f"{sum(len(v) for v in tracker.pending.values())} events not visible after {drain_s:.0f} s")
            await _until(lambda: all(e in noop.arrived for e in tracker.sent), 30)
    finally:
        await producer.stop()
        await noop.consumer.stop()
    visible = percentiles([tracker.visible[e] - t for e, t in tracker.sent.items() if e in tracker.visible])
    consumed = percentiles([noop.arrived[e] - t for e, t in tracker.sent.items() if e in noop.arrived])
    figures: dict[str, Any] = {
        "sent": sent,
        "probes": len(tracker.sent),
        "produce_to_visible": visible,
        "produce_to_consumed_noop": consumed,
        "not_visible": len(tracker.sent) - int(visible["count"]),
        "timeline_read": percentiles(tracker.reads),
        "timeline_statuses": {str(k): v for k, v in sorted(tracker.statuses.items())},
    }
    if visible.get("p99_ms") and consumed.get("p99_ms"):
        figures["p99_ratio"] = round(visible["p99_ms"] / consumed["p99_ms"], 2)
        figures["p50_ratio"] = round(visible["p50_ms"] / consumed["p50_ms"], 2)
    log(f"{rate}/s: visible {visible}, no-op consumer {consumed}")
    return figures, rss


@asynccontextmanager
async def running(task_of: Any, stop: asyncio.Event) -> Any:
    task = asyncio.create_task(task_of(stop))
    try:
        yield task
    finally:
        stop.set()
        await task


async def main(args: argparse.Namespace) -> dict[str, Any]:
    base = RuntimeSettings()
    run_id = uuid.uuid4().hex[:8]
    db_name = f"leadstream_live_{run_id}"
    database_url = make_url(base.database_url).set(database=db_name).render_as_string(hide_password=False)
    settings = base.model_copy(update={"topic_prefix": f"live{run_id}.", "database_url": database_url})
    admin_dsn = dsn(base.database_url)
    conn = await asyncpg.connect(admin_dsn)
    await conn.execute(f'CREATE DATABASE "{db_name}"')
    await conn.close()
    await apply_topics(settings)
    await upgrade(auth.MIGRATIONS_DIR, database_url, auth.IDENTITY_SCHEMA)
    engine = create_engine(database_url)
    try:
        token = await auth.create_token(engine, WORKSPACE)
    finally:
        await engine.dispose()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("LEADSTREAM_")},
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "DATABASE_URL": database_url,
        "LEADSTREAM_TOPIC_PREFIX": settings.topic_prefix,
        "LEADSTREAM_ENV": "development",  # simulated providers, development secrets (as the demo runs)
        "LEADSTREAM_LOG_JSON": "true",
        "LEADSTREAM_LOG_LEVEL": "WARNING",
    }
    log_dir = ROOT / ".run" / "bench" / f"live-{run_id}"
    services = [name for name in SERVICES if name in args.services]
    fleet = ServiceFleet(env=env, log_dir=log_dir, ports={name: free_port() for name in SERVICES})
    result: dict[str, Any] = {"services": services, "rates": {}}
    try:
        log(f"starting {', '.join(services)} (logs in {log_dir})")
        for name in services:
            fleet.start(name)
        await asyncio.to_thread(fleet.wait_ready, 240)
        await asyncio.sleep(5)  # settle: startup work (migrations, first polls) is not idleness
        result["rss_idle_mb"] = {name: rss_mb(sp.process.pid) for name, sp in fleet.procs.items()}
        headers = {"Authorization": f"Bearer {token}"}
        lead_topic = settings.topic_name(LEAD.name)
        async with (
            httpx.AsyncClient(base_url=fleet.procs["projection"].url, headers=headers, timeout=30) as http,
            httpx.AsyncClient(base_url=_url(fleet, "discovery"), headers=headers, timeout=30) as discovery,
        ):
            for i, rate in enumerate(args.rates):
                figures, rss = await measure_rate(settings, fleet, http, rate, args.seconds, args.drain_s, seed=i)
                result["rates"][str(rate)] = figures
                if rate == max(args.rates):
                    result["rss_under_load_mb"] = {
                        name: round(statistics.median(values), 1) for name, values in sorted(rss.items())
                    }
            if "discovery" not in fleet.procs:
                result["api_to_kafka"] = {"skipped": "discovery was not started"}
            else:
                log(f"API -> Kafka: {args.api_calls} manual leads at {args.api_rate}/s")
                watcher = DiscoveredWatcher(settings.kafka_bootstrap_servers, lead_topic)
                await watcher.consumer.start()
                await _wait_assigned(watcher.consumer)
                stop_watch = asyncio.Event()
                try:
                    async with running(watcher.run, stop_watch):
                        calls = await api_calls(discovery, args.api_calls, args.api_rate)
                        await _until(lambda: all(lead in watcher.arrived for lead in calls), 30)
                finally:
                    await watcher.consumer.stop()
                delays = [watcher.arrived[lead] - t0 for lead, t0 in calls.items() if lead in watcher.arrived]
                result["api_to_kafka"] = percentiles(delays)
                result["api_to_kafka"]["outbox_poll_interval_s"] = base.outbox_poll_interval_s
                log(f"API -> Kafka: {result['api_to_kafka']}")
    finally:
        await asyncio.to_thread(fleet.stop)
        if not args.keep:
            await _drop(admin_dsn, db_name, settings)
    ratios = [f.get("p99_ratio") for f in result["rates"].values()]
    result.update(
        seconds_per_rate=args.seconds,
        target_p99_ratio=TARGET_P99_RATIO,
        meets_target=all(r is not None and r <= TARGET_P99_RATIO for r in ratios),
        measured_at=datetime.now(UTC).isoformat(timespec="seconds"),
        load_average=list(os.getloadavg()),
    )
    return result


def _url(fleet: ServiceFleet, name: str) -> str:
    """Where a service of the fleet listens (a placeholder when it was not started: then it is not called)."""
    return fleet.procs[name].url if name in fleet.procs else "http://127.0.0.1:9"


async def _wait_assigned(consumer: AIOKafkaConsumer) -> None:
    """Until the group gave the consumer its partitions and it knows where their ends are."""
    await _until(lambda: bool(consumer.assignment()), 60)
    for tp in consumer.assignment():
        await consumer.position(tp)


async def _until(condition: Any, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        await asyncio.sleep(0.05)
    return bool(condition())


async def _drop(admin_dsn: str, db_name: str, settings: RuntimeSettings) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        for _ in range(10):
            try:
                await conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
                break
            except asyncpg.InsufficientPrivilegeError:
                await asyncio.sleep(1)
    finally:
        await conn.close()
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        await admin.delete_topics([n for n, _, _ in all_topics(settings)])
    finally:
        await admin.close()


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rates", type=int, nargs="+", default=[200, 1000], help="events per second (default 200 1000)")
    p.add_argument("--seconds", type=float, default=60.0, help="how long each rate is produced (default 60)")
    p.add_argument("--drain-s", type=float, default=60.0, help="how long to wait for the last events to show")
    p.add_argument("--api-calls", type=int, default=200, help="manual leads added through discovery's API")
    p.add_argument("--api-rate", type=float, default=20.0, help="API calls per second")
    p.add_argument(
        "--services",
        nargs="+",
        default=list(SERVICES),
        choices=SERVICES,
        help="services to start (default all; the projection is needed, discovery for API -> Kafka)",
    )
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "live.json"))
    p.add_argument("--keep", action="store_true", help="keep the topics and the database afterwards")
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the benchmark and write its results."""
    result = asyncio.run(main(args))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    run(parse())
