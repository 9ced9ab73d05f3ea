"""Live path benchmark: how long an event takes to be visible through the API, against a no-op consumer.

    python bench/live.py                        # 200/s and 1,000/s for 60 s each, writes bench/results/live.json
    python bench/live.py --rates 200 --seconds 10

It starts every service as a process (``leadstream_cli.processes``, as the demo does) on fresh topics and a
fresh database, then for each rate produces lead events (invites, messages, replies... over 1,000 leads, each in
one of ten campaigns) at that rate and measures, in the same run:

- produce -> visible: from just before the producer sends an event until ``GET /v1/leads/{id}/timeline``
  on the projection first lists it, for 20 probe events a second (every n-th event, each the first event of
  a lead of its own, in a workspace of the probes' own: :data:`PROBE_WORKSPACE`). Each probe's lead is read
  with ``wait`` (a long poll), asked as the probe is sent: the projection answers it when the probe's batch
  commits, woken in the process that applied it, so the figure has no detection delay of the benchmark's
  own. (Before, a change announced on the change stream asked for an ordinary read: the stream's hop and
  a second request were in the figure, ``detection`` p50 10 ms at 200/s. Reading the pending leads in a
  tight loop loaded the measured process as much as its work.) The change stream (``GET
  /v1/changes/stream`` of that workspace, the console's live feed) is still followed, for when each
  probe's batch began (``stages``).
- produce -> consumed: the same probes read by a no-op aiokafka consumer (its own group, nothing done per
  record) in a process of its own, the floor any consumer of the broker has (in the benchmark's process it
  waited behind the readers' work and looked slower than it is).
- produce -> visible through the same hops (:class:`SameHops`): a process of its own that consumes, commits each
  poll's event ids in one transaction and answers a waiting HTTP read of each probe once it committed, with the
  least work in each hop; its probes are read as the projection's are. ``same_hops_p99_ratio``
  (it against the no-op consumer) is what the hops alone cost on the machine; ``p99_over_same_hops`` (the
  projection against it), what the projection's own work adds.

Also API -> Kafka: ``POST /v1/leads`` on discovery (a manual lead) until the no-op consumer reads its
``LeadDiscovered``, which the transactional outbox relays (woken by the commit's NOTIFY), then the same calls
once more with discovery restarted with the relay as it was before LISTEN/NOTIFY (no LISTEN, a 50 ms poll:
``api_to_kafka_poll_only``); the resident memory (RSS) of every service idle and under the highest rate; and the
CPU each service uses, idle (``cpu_idle_cores``, over 10 s before anything is produced) and at each rate
(``cpu_cores``): on a machine the services share, what the others burn is what the projection waits for.
Targets: p99 produce -> visible within 5x the no-op p99 at every rate (the same-hops figures are reported, to
read the ratio by).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar, get_args

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
import httpx  # noqa: E402
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # noqa: E402
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

from bench.projection import fresh_world  # noqa: E402
from leadstream_cli.processes import SERVICES, ServiceFleet, free_port  # noqa: E402
from services.console.sse import parse as parse_sse  # noqa: E402
from services.runtime import auth  # noqa: E402
from services.runtime.db import create_engine  # noqa: E402
from services.runtime.migrations import upgrade  # noqa: E402
from services.runtime.notify import dsn  # noqa: E402
from services.runtime.service import new_event_loop  # noqa: E402
from services.runtime.settings import EventLoop, RuntimeSettings  # noqa: E402

WORKSPACE = "ws-bench"
PROBE_WORKSPACE = "ws-bench-probes"
"""The probes' workspace: the projection applies it in the same batches as the rest, and its change stream
carries only the probes' changes (the bulk's, ~1,000 a second at 1,000/s, went through the measured process
to the benchmark, as much work again as the reads)."""
TARGET_P99_RATIO = 5.0
WAIT_S = 30
"""How long one waiting read of a probe waits (``wait``); one that ends before the probe shows is asked again."""
PROBES_PER_S = 20
"""Events per second whose visibility is watched (every n-th event produced): reading the timeline of
every lead with an event in flight at 1,000/s would load the machine more than the projection does."""
IDLE_CPU_S = 10.0
"""How long the idle services' CPU use is measured (``cpu_idle_cores``), before any event is produced."""


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


def cpu_s(pid: int) -> float | None:
    """CPU time (user + system) a process has used, in seconds (Linux /proc), None when it is gone or unreadable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime: fields 14 and 15


def cpu_cores(fleet: ServiceFleet, before: dict[str, float | None], seconds: float) -> dict[str, float]:
    """Per service, the cores it used on average since ``before`` (its :func:`cpu_s`) over ``seconds``."""
    out = {}
    for name, sp in sorted(fleet.procs.items()):
        now, then = cpu_s(sp.process.pid), before.get(name)
        if now is not None and then is not None and seconds > 0:
            out[name] = round((now - then) / seconds, 3)
    return out


async def batch_totals(fleet: ServiceFleet) -> tuple[float, float] | None:
    """The projection's committed batches and their records so far (its ``/metrics``), None when unreadable."""
    from prometheus_client.parser import text_string_to_metric_families

    url = f"{fleet.procs['projection'].metrics_url}/metrics"
    totals = {"leadstream_batches": 0.0, "leadstream_batch_records": 0.0}
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            r = await client.get(url)
            r.raise_for_status()
        for family in text_string_to_metric_families(r.text):
            if family.name in totals:
                totals[family.name] = sum(sample.value for sample in family.samples if sample.name.endswith("_total"))
    except (httpx.HTTPError, ValueError) as exc:
        log(f"the projection's batch counters could not be read: {exc!r}")
        return None
    return totals["leadstream_batches"], totals["leadstream_batch_records"]


def cpu_now(fleet: ServiceFleet) -> dict[str, float | None]:
    """Every service's :func:`cpu_s`."""
    return {name: cpu_s(sp.process.pid) for name, sp in fleet.procs.items()}


@dataclass
class Tracker:
    """Send times of the run's probes and when each was first consumed and first visible."""

    sent: dict[str, float] = field(default_factory=dict)
    """Send times of the probes (see :data:`PROBES_PER_S`)."""
    visible: dict[str, float] = field(default_factory=dict)
    statuses: dict[int, int] = field(default_factory=dict)
    """HTTP statuses of the waiting timeline reads (404: the lead was not known when a read's wait ended)."""
    reads: int = 0
    """Timeline reads made (one per probe unless a wait ended before the probe showed)."""
    lead_of: dict[str, uuid.UUID] = field(default_factory=dict)
    """Each probe's lead (a lead of its own: the first change the stream announces of it is the probe's batch)."""
    announced: dict[uuid.UUID, tuple[float, float]] = field(default_factory=dict)
    """Per probe lead: when the stream first announced a change of it, and the announcing batch's transaction
    start (the change's ``at``, Postgres' ``now()``) on the same clock as :attr:`sent` (see :func:`wall_to_perf`)."""

    def stages(self) -> dict[str, dict[str, float | int]]:
        """Where a visible probe's time went: produce -> its batch's transaction began (the fetch, the planning and
        the batch before it), -> the waiting read answered with it (the transaction, the wake-up, the read)."""
        to_begin, to_visible = [], []
        for eid, t0 in self.sent.items():
            lead = self.lead_of.get(eid)
            seen = self.announced.get(lead) if lead is not None else None
            if seen is None or eid not in self.visible:
                continue
            began = seen[1]
            to_begin.append(began - t0)
            to_visible.append(self.visible[eid] - began)
        return {
            "produce_to_transaction_begin": percentiles(to_begin),
            "transaction_begin_to_visible": percentiles(to_visible),
        }

    def probe_rows(self, consumed: dict[str, float], floor: dict[str, float]) -> list[dict[str, float | None]]:
        """Each probe's way, in ms after it was produced (None: not reached), in the order sent: when the no-op
        consumer got it, its batch's transaction began, the waiting read showed it, the change stream announced
        it, and the same-hops floor showed it (``--probes-out``: which stage a slow probe lost its time in, and
        whether the slow ones come together, and when: ``sent_at``)."""

        def after(t0: float, t: float | None) -> float | None:
            return None if t is None else round((t - t0) * 1000, 2)

        first = min(self.sent.values(), default=0.0)
        to_wall = time.time() - time.perf_counter()
        rows = []
        for eid, t0 in self.sent.items():
            lead = self.lead_of.get(eid)
            announced, began = self.announced.get(lead, (None, None)) if lead is not None else (None, None)
            rows.append(
                {
                    "sent_s": round(t0 - first, 4),
                    "sent_at": round(t0 + to_wall, 4),  # Unix time: to line up with the servers' logs
                    "consumed_noop": after(t0, consumed.get(eid)),
                    "transaction_begin": after(t0, began),
                    "visible": after(t0, self.visible.get(eid)),
                    "announced": after(t0, announced),
                    "visible_same_hops": after(t0, floor.get(eid)),
                }
            )
        return rows


def slowest(ways: list[dict[str, float | None]], share: float = 0.01) -> dict[str, Any]:
    """The slowest ``share`` of the visible probes (their p99 and above, from :meth:`Tracker.probe_rows`): how many
    lost the most time in each stage, and how many the same-hops floor was slow for too (above its own p95: the
    machine was slow then, not only the projection's path)."""
    seen = [w for w in ways if w["visible"] is not None]
    tail = sorted(seen, key=lambda w: w["visible"] or 0.0, reverse=True)[: max(1, round(len(seen) * share))]
    floor = sorted(w["visible_same_hops"] for w in ways if w["visible_same_hops"] is not None)
    floor_p95 = floor[min(len(floor) - 1, int(0.95 * len(floor)))] if floor else None
    stages = {"produce_to_transaction_begin": 0, "transaction_begin_to_visible": 0}
    floor_slow = 0
    for w in tail:
        begin, visible = w["transaction_begin"], w["visible"]
        if begin is not None and visible is not None:
            stages["produce_to_transaction_begin" if begin >= visible - begin else "transaction_begin_to_visible"] += 1
        same = w["visible_same_hops"]
        if floor_p95 is not None and same is not None and same > floor_p95:
            floor_slow += 1
    return {
        "probes": len(tail),
        "longest_stage": stages,
        "floor_also_slow": floor_slow if floor_p95 is not None else None,
    }


def wall_to_perf(wall: datetime) -> float:
    """A wall-clock time as a ``time.perf_counter`` reading (the offset between the two clocks taken now)."""
    return wall.timestamp() - (time.time() - time.perf_counter())


def tail_consumer(bootstrap: str, topic: str, kind: str) -> AIOKafkaConsumer:
    """A consumer of ``topic`` in a group of its own (``bench-<kind>-<random>``), reading from the end."""
    return AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=f"bench-{kind}-{uuid.uuid4().hex[:8]}", auto_offset_reset="latest"
    )


T = TypeVar("T")


def run_on(loop_kind: EventLoop, work: Coroutine[Any, Any, T]) -> T:
    """Run ``work`` to its end on a new event loop of the services' kind (``--event-loop``): the no-op consumer
    and the floor run on the loop the services do, so that the loop is not what a ratio measures."""
    with asyncio.Runner(loop_factory=partial(new_event_loop, loop_kind)) as runner:
        return runner.run(work)


def noop_consumer(bootstrap: str, topic: str, loop_kind: EventLoop, ready: Any, stop: Any, out: Any) -> None:
    """A no-op consumer in a process of its own (see the module docstring): reads the lead topic from its end
    in its own group, and sends back, by event id, when (``time.perf_counter``: CLOCK_MONOTONIC, the same
    clock in every process on Linux) each record arrived."""

    async def consume() -> dict[str, float]:
        consumer = tail_consumer(bootstrap, topic, "noop")
        await consumer.start()
        arrived: dict[str, float] = {}
        try:
            await _wait_assigned(consumer)
            ready.set()
            while not stop.is_set():
                got = await consumer.getmany(timeout_ms=100)
                now = time.perf_counter()
                for records in got.values():
                    for r in records:
                        for name, value in r.headers:
                            if name == H_ID and value is not None:
                                arrived[value.decode()] = now
        finally:
            await consumer.stop()
        return arrived

    out.send(run_on(loop_kind, consume()))


class NoopConsumer:
    """Runs :func:`noop_consumer` in a child process (spawned: this process runs an event loop)."""

    def __init__(self, bootstrap: str, topic: str, loop_kind: EventLoop) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.ready, self.stopping = ctx.Event(), ctx.Event()
        self.results, child_end = ctx.Pipe(duplex=False)
        self.process = ctx.Process(
            target=noop_consumer, args=(bootstrap, topic, loop_kind, self.ready, self.stopping, child_end), daemon=True
        )
        self.arrived: dict[str, float] = {}

    async def start(self) -> None:
        """Start the process and wait until its consumer has its partitions."""
        self.process.start()
        if not await asyncio.to_thread(self.ready.wait, 120):
            raise RuntimeError("the no-op consumer did not get its partitions within 120 s")

    async def stop(self) -> None:
        """Stop the process and take its arrival times."""
        self.stopping.set()
        if await asyncio.to_thread(self.results.poll, 60):
            self.arrived = self.results.recv()
        await asyncio.to_thread(self.process.join, 30)


SAME_HOPS_TABLE = "bench_same_hops"
"""The same-hops floor's table, in the run's own database."""


def same_hops_service(
    bootstrap: str, topic: str, url: str, port: int, loop_kind: EventLoop, ready: Any, stop: Any
) -> None:
    """The measured path's hops with the least work in each, in a process of its own (see :class:`SameHops`).

    Consume the lead topic (its own group, from the end); per poll, one transaction inserting the records' event
    ids; once it commits, the reads waiting for those ids are woken in the process. ``GET /seen/{id}?wait=S``
    answers 200 once the id is committed (one query per look), waiting up to S seconds for it, else 404.
    Starlette on uvicorn, asyncpg: no decoding, no views, no middleware.
    """

    async def serve() -> None:
        import uvicorn
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import Response
        from starlette.routing import Route

        pool = await asyncpg.create_pool(url, min_size=2, max_size=4)
        await pool.execute(f"CREATE TABLE IF NOT EXISTS {SAME_HOPS_TABLE} (event_id text PRIMARY KEY)")
        waiting: dict[str, set[asyncio.Event]] = {}
        loop = asyncio.get_running_loop()

        async def seen(request: Request) -> Response:
            eid = request.path_params["eid"]
            deadline = loop.time() + min(float(request.query_params.get("wait", "0")), WAIT_S)
            woken = asyncio.Event()
            group = waiting.setdefault(eid, set())
            group.add(woken)  # before the look: a commit during it wakes the wait below
            try:
                while True:
                    woken.clear()
                    found = await pool.fetchval(f"SELECT 1 FROM {SAME_HOPS_TABLE} WHERE event_id = $1", eid)
                    remaining = deadline - loop.time()
                    if found or remaining <= 0:
                        return Response(status_code=200 if found else 404)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(woken.wait(), remaining)
            finally:
                group.discard(woken)
                if not group:
                    waiting.pop(eid, None)

        app = Starlette(routes=[Route("/seen/{eid}", seen)])
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        consumer = tail_consumer(bootstrap, topic, "hops")
        await consumer.start()

        async def consume() -> None:
            while not stop.is_set():
                got = await consumer.getmany(timeout_ms=100)
                ids = [dict(r.headers)[H_ID].decode() for records in got.values() for r in records]
                if ids:
                    async with pool.acquire() as conn, conn.transaction():
                        await conn.execute(
                            f"INSERT INTO {SAME_HOPS_TABLE} (event_id) SELECT unnest($1::text[]) "
                            f"ON CONFLICT DO NOTHING",
                            ids,
                        )
                    for eid in ids:  # committed: wake the reads waiting for these ids
                        for woken in waiting.get(eid, ()):
                            woken.set()

        serving = asyncio.create_task(server.serve())
        try:
            await _wait_assigned(consumer)
            await _until(lambda: server.started, 60)
            ready.set()
            consuming = asyncio.create_task(consume())
            await asyncio.to_thread(stop.wait)
            consuming.cancel()
            await asyncio.gather(consuming, return_exceptions=True)
        finally:
            server.should_exit = True
            await consumer.stop()
            await asyncio.gather(serving, return_exceptions=True)
            await pool.close()

    run_on(loop_kind, serve())


async def read_until(
    http: httpx.AsyncClient,
    path: str,
    params: dict[str, Any],
    shown: Callable[[httpx.Response], bool],
    answered: Callable[[int], None] | None = None,
) -> float:
    """GET ``path`` (a waiting read: ``params`` has ``wait``) until ``shown(response)``; when it was shown, on the
    ``time.perf_counter`` clock. ``answered(status)`` hears every answer (0: the connection dropped, as an
    overloaded service may: asked again)."""
    while True:
        try:
            r = await http.get(path, params=params)
        except httpx.TransportError:
            if answered is not None:
                answered(0)
            await asyncio.sleep(0.1)
            continue
        now = time.perf_counter()
        if answered is not None:
            answered(r.status_code)
        if shown(r):
            return now


class SameHops:
    """A floor that makes the measured path's hops (consume, commit, a waiting HTTP read woken in the committing
    process, its read) with the least work in each: :func:`same_hops_service` in a process of its own, and here
    its probes' produce -> visible, asked for as the projection's are (:meth:`watch`). What the projection's
    figure takes beyond this one is its own work (decoding, views, the API's stack)."""

    def __init__(self, settings: RuntimeSettings, loop_kind: EventLoop) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.ready, self.stopping = ctx.Event(), ctx.Event()
        self.port = free_port()
        self.visible: dict[str, float] = {}
        self.reads: set[asyncio.Task[None]] = set()
        self.http: httpx.AsyncClient | None = None
        self.process = ctx.Process(
            target=same_hops_service,
            args=(
                settings.kafka_bootstrap_servers,
                settings.topic_name(LEAD.name),
                dsn(settings.database_url),
                self.port,
                loop_kind,
                self.ready,
                self.stopping,
            ),
            daemon=True,
        )

    async def start(self) -> None:
        """Start the process and wait until it has its partitions and serves."""
        self.process.start()
        if not await asyncio.to_thread(self.ready.wait, 120):
            raise RuntimeError("the same-hops floor was not ready within 120 s")
        self.http = httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{self.port}", timeout=WAIT_S + 30, limits=httpx.Limits(max_connections=None)
        )

    def watch(self, eid: str) -> None:
        """Ask, until it shows, for probe ``eid`` with a waiting read (as it is sent)."""
        task = asyncio.create_task(self._read(eid))
        self.reads.add(task)
        task.add_done_callback(self.reads.discard)

    async def _read(self, eid: str) -> None:
        assert self.http is not None
        shown = await read_until(self.http, f"/seen/{eid}", {"wait": WAIT_S}, lambda r: r.status_code == 200)
        self.visible.setdefault(eid, shown)

    async def stop(self) -> None:
        """Stop asking and stop the process."""
        for task in self.reads:
            task.cancel()
        await asyncio.gather(*self.reads, return_exceptions=True)
        if self.http is not None:
            await self.http.aclose()
        self.stopping.set()
        await asyncio.to_thread(self.process.join, 30)


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
    producer: AIOKafkaProducer,
    settings: RuntimeSettings,
    tracker: Tracker,
    rate: int,
    seconds: float,
    seed: int,
    watch: Callable[[str, uuid.UUID], None],
) -> int:
    """Produce lead events at ``rate`` per second for ``seconds`` (paced on the clock, not by sleeps per event);
    ``watch(event id, lead)`` is called for each probe just before it is sent."""
    rng = random.Random(seed)
    leads = [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(1000)]
    campaigns = [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(10)]
    # Each lead's events are of one campaign: outreach never has a lead active in two campaigns of a workspace
    # (services/outreach/enrollment.py skips it as a duplicate). Events of a lead from all ten campaigns gave every
    # lead ten campaign rows, which each batch's summary deltas read (bench/results/NOTES.md, 2026-12-06).
    campaign_of = {lead: rng.choice(campaigns) for lead in leads}
    topic = settings.topic_name(LEAD.name)
    probe_every = max(1, rate // PROBES_PER_S)
    started = time.perf_counter()
    sent = 0
    futures = []
    while (elapsed := time.perf_counter() - started) < seconds:
        due = int(elapsed * rate) + 1
        while sent < due:
            probe = sent % probe_every == 0  # a probe: its visibility is watched
            # A probe is the first event of a lead of its own: any change the stream announces of that lead is
            # the probe's batch committing, and reading its timeline costs the projection as little as a read can.
            lead = uuid.UUID(int=rng.getrandbits(128), version=4) if probe else rng.choice(leads)
            workspace = PROBE_WORKSPACE if probe else WORKSPACE
            campaign = rng.choice(campaigns) if probe else campaign_of[lead]
            env = Envelope.new(_event(lead, campaign, rng), workspace_id=workspace, source="bench")
            key, value, headers = encode(env)
            if probe:
                eid = str(env.id)
                tracker.lead_of[eid] = lead
                watch(eid, lead)  # its reads go out while it is sent (they start at the send's first wait)
                tracker.sent[eid] = time.perf_counter()
            futures.append(await producer.send(topic, value=value, key=key, headers=headers))
            sent += 1
        await asyncio.sleep(0.002)  # the pacing tick: events due in it go out together, as a busy service's would
    await asyncio.gather(*futures)
    return sent


class Visibility:
    """Reads each probe's lead with ``wait`` until the probe shows (:meth:`watch`), and follows the change stream
    for when each probe's batch began (:attr:`Tracker.announced`)."""

    def __init__(self, http: httpx.AsyncClient, tracker: Tracker) -> None:
        self.http = http
        self.tracker = tracker
        self.reads: set[asyncio.Task[None]] = set()
        self.stream_ready = asyncio.Event()

    def watch(self, eid: str, lead: uuid.UUID) -> None:
        """Ask, until it shows, for probe ``eid`` of ``lead`` with a waiting read (as it is sent)."""
        task = asyncio.create_task(self._read(eid, lead))
        self.reads.add(task)
        task.add_done_callback(self.reads.discard)

    async def _read(self, eid: str, lead: uuid.UUID) -> None:
        tracker = self.tracker

        def answered(status: int) -> None:
            tracker.statuses[status] = tracker.statuses.get(status, 0) + 1
            tracker.reads += status != 0

        def shown(r: httpx.Response) -> bool:
            return r.status_code == 200 and any(item["event_id"] == eid for item in r.json()["items"])

        path = f"/v1/leads/{lead}/timeline"
        tracker.visible[eid] = await read_until(self.http, path, {"limit": 200, "wait": WAIT_S}, shown, answered)

    async def follow_changes(self, stop: asyncio.Event) -> None:
        """Note when the change stream first announces each probe's lead, and its batch's start, until ``stop``."""
        last_id: str | None = None
        while not stop.is_set():
            headers = {"Last-Event-ID": last_id} if last_id else {}
            try:
                async with self.http.stream(
                    "GET", "/v1/changes/stream", headers=headers, timeout=httpx.Timeout(30, read=None)
                ) as r:
                    r.raise_for_status()
                    self.stream_ready.set()
                    async for event in parse_sse(r.aiter_lines()):
                        last_id = event.id or last_id
                        if event.event != "change":
                            continue
                        change = json.loads(event.data)
                        if (lead := change.get("lead_id")) is None:
                            continue
                        lead_id = uuid.UUID(lead)  # the probes' workspace: every lead is a probe's
                        if lead_id not in self.tracker.announced:
                            began = wall_to_perf(datetime.fromisoformat(change["at"]))
                            self.tracker.announced[lead_id] = (time.perf_counter(), began)
            except httpx.HTTPError as exc:
                log(f"change stream: {exc!r}; reconnecting")
                await asyncio.sleep(0.5)

    async def run(self, stop: asyncio.Event) -> None:
        """Follow the stream until ``stop`` is set and every probe asked for was seen (or cancelled)."""
        done = asyncio.Event()
        following = asyncio.create_task(self.follow_changes(done))
        try:
            await stop.wait()
            while self.reads:
                await asyncio.wait(set(self.reads))
        finally:
            done.set()
            following.cancel()
            for task in self.reads:
                task.cancel()
            await asyncio.gather(following, *self.reads, return_exceptions=True)


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
        self.consumer = tail_consumer(bootstrap, topic, "api")
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


async def measure_api(
    settings: RuntimeSettings, discovery: httpx.AsyncClient, args: argparse.Namespace
) -> dict[str, Any]:
    """API -> Kafka: ``args.api_calls`` manual leads through discovery's API until each ``LeadDiscovered`` is read."""
    log(f"API -> Kafka: {args.api_calls} manual leads at {args.api_rate}/s")
    watcher = DiscoveredWatcher(settings.kafka_bootstrap_servers, settings.topic_name(LEAD.name))
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
    figures: dict[str, Any] = percentiles(delays)
    log(f"API -> Kafka: {figures}")
    return figures


async def measure_rate(
    settings: RuntimeSettings,
    fleet: ServiceFleet,
    http: httpx.AsyncClient,
    rate: int,
    seconds: float,
    drain_s: float,
    seed: int,
    same_hops: bool = True,
    loop_kind: EventLoop = "uvloop",
) -> tuple[dict[str, Any], dict[str, list[float]], list[dict[str, float | None]]]:
    """Produce at ``rate`` for ``seconds``; latency figures, the services' RSS samples meanwhile, and each probe's
    way (:meth:`Tracker.probe_rows`)."""
    tracker = Tracker()
    noop = NoopConsumer(settings.kafka_bootstrap_servers, settings.topic_name(LEAD.name), loop_kind)
    await noop.start()
    floor = SameHops(settings, loop_kind) if same_hops else None
    if floor is not None:
        await floor.start()
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all", enable_idempotence=True)
    await producer.start()
    rss: dict[str, list[float]] = {}
    stop_poll, stop_rss = asyncio.Event(), asyncio.Event()
    watcher = Visibility(http, tracker)

    def watch(eid: str, lead: uuid.UUID) -> None:
        watcher.watch(eid, lead)
        if floor is not None:
            floor.watch(eid)

    started_at = time.perf_counter()
    try:
        async with running(lambda s: sample_rss(fleet, rss, s), stop_rss):
            poller = asyncio.create_task(watcher.run(stop_poll))
            await asyncio.wait_for(watcher.stream_ready.wait(), 60)
            log(f"producing {rate}/s for {seconds:.0f} s")
            cpu_before, cpu_t0 = cpu_now(fleet), time.perf_counter()
            batches_before = await batch_totals(fleet)
            sent = await produce_at(producer, settings, tracker, rate, seconds, seed=seed, watch=watch)
            produced_s = time.perf_counter() - cpu_t0
            cpu = cpu_cores(fleet, cpu_before, produced_s)
            batches_after = await batch_totals(fleet)
            stop_rss.set()
            stop_poll.set()
            try:
                await asyncio.wait_for(poller, drain_s)
            except TimeoutError:
                log(f"{len(tracker.sent) - len(tracker.visible)} probes not visible after {drain_s:.0f} s")
            if floor is not None:
                await _until(lambda: len(floor.visible) >= len(tracker.sent), drain_s)
    finally:
        await producer.stop()
        await noop.stop()
        if floor is not None:
            await floor.stop()
    elapsed = time.perf_counter() - started_at
    seen = floor.visible if floor is not None else {}
    ways = tracker.probe_rows(noop.arrived, seen)
    visible = percentiles([tracker.visible[e] - t for e, t in tracker.sent.items() if e in tracker.visible])
    consumed = percentiles([noop.arrived[e] - t for e, t in tracker.sent.items() if e in noop.arrived])
    hops = percentiles([seen[e] - t for e, t in tracker.sent.items() if e in seen])
    figures: dict[str, Any] = {
        "sent": sent,
        "probes": len(tracker.sent),
        "produce_to_visible": visible,
        "produce_to_consumed_noop": consumed,
        "produce_to_visible_same_hops": hops if floor is not None else {"skipped": "--no-same-hops"},
        "not_visible": len(tracker.sent) - int(visible["count"]),
        "timeline_reads_per_s": round(tracker.reads / elapsed, 1),
        "stages": tracker.stages(),
        "slowest_1pct": slowest(ways),
        "timeline_statuses": {str(k): v for k, v in sorted(tracker.statuses.items())},
        "cpu_cores": cpu,
    }
    if batches_before is not None and batches_after is not None:
        batches, records = (after - before for after, before in zip(batches_after, batches_before, strict=True))
        figures["projection_batches"] = {
            "per_s": round(batches / produced_s, 1),
            "mean_records": round(records / batches, 1) if batches else None,
        }
    if visible.get("p99_ms") and consumed.get("p99_ms"):
        figures["p99_ratio"] = round(visible["p99_ms"] / consumed["p99_ms"], 2)
        figures["p50_ratio"] = round(visible["p50_ms"] / consumed["p50_ms"], 2)
    if consumed.get("p99_ms") and hops.get("p99_ms"):
        figures["same_hops_p99_ratio"] = round(hops["p99_ms"] / consumed["p99_ms"], 2)
        if visible.get("p99_ms"):
            figures["p99_over_same_hops"] = round(visible["p99_ms"] / hops["p99_ms"], 2)
    log(f"{rate}/s: visible {visible}, no-op consumer {consumed}, same hops {hops}")
    log(f"{rate}/s: stages {figures['stages']}, projection batches {figures.get('projection_batches')}")
    log(f"{rate}/s: slowest 1% {figures['slowest_1pct']}")
    return figures, rss, ways


@asynccontextmanager
async def running(task_of: Any, stop: asyncio.Event) -> Any:
    task = asyncio.create_task(task_of(stop))
    try:
        yield task
    finally:
        stop.set()
        await task


async def main(args: argparse.Namespace) -> dict[str, Any]:
    """Measure on a database and topics of the run's own (removed afterwards unless ``--keep``)."""
    async with fresh_world("live", RuntimeSettings().topic_partitions, keep=args.keep) as settings:
        return await measure(settings, args)


async def measure(settings: RuntimeSettings, args: argparse.Namespace) -> dict[str, Any]:
    """Start the services on ``settings``' database and topics and measure (see the module docstring)."""
    database_url = settings.database_url
    run_id = settings.topic_prefix.removeprefix("live").rstrip(".")
    await upgrade(auth.MIGRATIONS_DIR, database_url, auth.IDENTITY_SCHEMA)
    engine = create_engine(database_url)
    try:
        token = await auth.create_token(engine, WORKSPACE)
        probe_token = await auth.create_token(engine, PROBE_WORKSPACE)
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
        "LEADSTREAM_EVENT_LOOP": args.event_loop,
    }
    log_dir = ROOT / ".run" / "bench" / f"live-{run_id}"
    services = [name for name in SERVICES if name in args.services]
    fleet = ServiceFleet(env=env, log_dir=log_dir, ports={name: free_port() for name in SERVICES})
    result: dict[str, Any] = {"services": services, "rates": {}}
    result["event_loop"] = args.event_loop
    if args.service_env:
        result["service_env"] = args.service_env
    try:
        log(f"starting {', '.join(services)} (logs in {log_dir})")
        for name in services:
            fleet.start(name, **args.service_env.get(name, {}))
        await asyncio.to_thread(fleet.wait_ready, 240)
        await asyncio.sleep(5)  # settle: startup work (migrations, first polls) is not idleness
        result["rss_idle_mb"] = {name: rss_mb(sp.process.pid) for name, sp in fleet.procs.items()}
        cpu_before, cpu_t0 = cpu_now(fleet), time.perf_counter()
        await asyncio.sleep(IDLE_CPU_S)  # nothing produced: what the services' own loops cost
        result["cpu_idle_cores"] = cpu_cores(fleet, cpu_before, time.perf_counter() - cpu_t0)
        headers = {"Authorization": f"Bearer {token}"}
        async with (
            httpx.AsyncClient(
                base_url=fleet.procs["projection"].url, headers={"Authorization": f"Bearer {probe_token}"}, timeout=30
            ) as http,
            httpx.AsyncClient(base_url=_url(fleet, "discovery"), headers=headers, timeout=30) as discovery,
        ):
            for i, rate in enumerate(args.rates):
                figures, rss, probes = await measure_rate(
                    settings,
                    fleet,
                    http,
                    rate,
                    args.seconds,
                    args.drain_s,
                    seed=i,
                    same_hops=args.same_hops,
                    loop_kind=args.event_loop,
                )
                result["rates"][str(rate)] = figures
                if args.probes_out:
                    result.setdefault("probe_ways", {})[str(rate)] = probes  # run() writes them to their own file
                if rate == max(args.rates):
                    result["rss_under_load_mb"] = {
                        name: round(statistics.median(values), 1) for name, values in sorted(rss.items())
                    }
            if "discovery" not in fleet.procs:
                result["api_to_kafka"] = {"skipped": "discovery was not started"}
            else:
                result["api_to_kafka"] = await measure_api(settings, discovery, args)
                result["api_to_kafka"]["relay"] = "LISTEN/NOTIFY, in-process wake-up, poll every 1 s (as shipped)"
                # The same calls with the relay as it was before LISTEN/NOTIFY: in-process wake-up and a 50 ms poll.
                await asyncio.to_thread(fleet.terminate, "discovery")
                fleet.start("discovery", LEADSTREAM_OUTBOX_LISTEN="false", LEADSTREAM_OUTBOX_POLL_INTERVAL_S="0.05")
                await asyncio.to_thread(fleet.wait_ready, 240)
                result["api_to_kafka_poll_only"] = await measure_api(settings, discovery, args)
                result["api_to_kafka_poll_only"]["relay"] = "no LISTEN, in-process wake-up, poll every 50 ms (before)"
    finally:
        await asyncio.to_thread(fleet.stop)
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
    p.add_argument(
        "--set",
        dest="service_env",
        action="append",
        default=[],
        metavar="SERVICE:NAME=VALUE",
        help="a setting of one service, to compare (e.g. projection:LEADSTREAM_CONSUMER_FETCH_MIN_BYTES=1); repeatable",
    )
    p.add_argument(
        "--event-loop",
        choices=get_args(EventLoop),
        default="uvloop",
        help="the event loop of the services, the no-op consumer and the floor (default uvloop, the services' own)",
    )
    p.add_argument(
        "--same-hops",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="measure the same-hops floor beside the projection (default on; it adds a little load of its own)",
    )
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "live.json"))
    p.add_argument("--keep", action="store_true", help="keep the topics and the database afterwards")
    p.add_argument(
        "--probes-out",
        metavar="FILE",
        help="also write each probe's way (ms after produce per stage, per rate) to FILE as JSON",
    )
    args = p.parse_args(argv)
    per_service: dict[str, dict[str, str]] = {}
    for item in args.service_env:
        service, _, setting = item.partition(":")
        name, eq, value = setting.partition("=")
        if service not in SERVICES or not eq or not name.startswith("LEADSTREAM_"):
            p.error(f"--set {item!r}: expected SERVICE:LEADSTREAM_NAME=VALUE with SERVICE one of {', '.join(SERVICES)}")
        per_service.setdefault(service, {})[name] = value
    args.service_env = per_service
    return args


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the benchmark and write its results."""
    result = asyncio.run(main(args))
    ways = result.pop("probe_ways", None)
    if args.probes_out and ways is not None:
        Path(args.probes_out).write_text(json.dumps(ways) + "\n")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    run(parse())
