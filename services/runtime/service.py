"""The service shell: every service's ``app.py`` builds a :class:`Service` and ``__main__`` runs it.

A service is: settings (checked: outside development no default, empty or short secret) -> database engine
+ migrations -> FastStream broker (publisher) -> outbox relay -> event consumer (handlers by event type) ->
background tasks (and the retention sweeps) -> HTTP app (FastAPI with ``/healthz``, ``/readyz``, the token
API ``/v1/tokens``, ``/docs`` in development; request bodies capped at the edge) and an internal listener for
``/metrics``.

SIGTERM or SIGINT stops it within ``shutdown_grace_s`` (default 25 s) and exits 0: ``/readyz`` turns 503,
HTTP stops accepting and finishes the requests in hand, the consumers finish the record in hand and commit
their offsets, the relay and the timer loops finish their batch or timer; what still runs when the grace
period is nearly over is cancelled, which rolls its transaction back (abandoned without effect: the record
is read again, the timer claimed again). Then the clients the service registered close (:meth:`Service.close_on_stop`),
one last outbox flush, and the runtime's own clients close.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Collection, Iterator, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

import uvicorn
from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse, Response
from faststream.kafka import KafkaBroker
from leadstream_schemas import Envelope, Event, service_source
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import MetaData
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from . import auth, personal, secrets
from .broker import create_broker
from .clock import Clock, ClockHeaders, SystemClock
from .consumer import EventConsumer, Handler, Interest
from .consuming.loop import GroupConsumer
from .db import RuntimeTables, create_engine, ping
from .debug import log_task_stacks
from .edge import InputGuard
from .errors import install_problem_handlers, problem_response, problems
from .faults import Backoff, Fault, classify, unless_stopped
from .housekeeping import Housekeeping
from .logging import configure_logging
from .metrics import READY, export_build_info
from .migrations import RUNTIME_MIGRATIONS_DIR, prepare_schema
from .outbox import OutboxRelay, add_to_outbox
from .settings import EventLoop, RuntimeSettings
from .telemetry import current_traceparent, instrument_service
from .tokens_api import tokens_router

log = logging.getLogger(__name__)

Task = Callable[[asyncio.Event], Awaitable[None]]
ReadinessCheck = Callable[[], Awaitable[str | None]]
C = TypeVar("C", bound=GroupConsumer)

CLOSE_RESERVE_S = 5.0
"""Of the grace period, what is kept for the last outbox flush and closing the clients (at most a fifth)."""


def log_tasks() -> None:
    """Log :func:`task_stacks` (``kill -USR1 <pid>``): for a service that is alive and answers but does not move
    (its ``/readyz`` says "stalled"), the one look inside that needs no debugger. Code locations only, so the
    text is the message itself (scrubbing would redact file names)."""
    log_task_stacks(log, logging.WARNING, "on SIGUSR1")


class Service:
    """One leadstream service process: wiring of the shared runtime around a service's handlers."""

    def __init__(
        self,
        settings: RuntimeSettings,
        *,
        metadata: MetaData,
        tables: RuntimeTables,
        migrations_dir: Path,
        clock: Clock | None = None,
        title: str | None = None,
        kafka: bool = True,
    ) -> None:
        settings.check_production()  # before anything connects: says which secret or setting is unfit
        if settings.uses_key_store:
            personal.configure(settings.key_wrapper())  # data keys are wrapped with this service's KEK(s)
        self.settings = settings
        self.uses_kafka = kafka
        """False for a service that neither consumes nor emits (the console): no broker, no outbox relay."""
        self.name = settings.service_name
        self.metadata = metadata
        self.tables = tables
        self.migrations_dir = migrations_dir
        self.clock: Clock = clock or SystemClock()
        # Every statement answers within the consumers' attempt deadline (a half-open connection otherwise holds
        # whoever waits on it for ever: a handler, the outbox relay, a timer, a request).
        bounded = settings.consumer_attempt_timeout_s
        self.engine: AsyncEngine = create_engine(settings.database_url, command_timeout_s=bounded)
        self.read_engine: AsyncEngine = create_engine(settings.database_url, reads=True, command_timeout_s=bounded)
        """For HTTP reads through :func:`services.runtime.db.read`: no check per checkout, autocommit. Its
        pool connects on first use only."""
        self.broker: KafkaBroker = create_broker(settings)
        self.relay = OutboxRelay(self.engine, tables, settings)
        self.consumers: list[GroupConsumer] = []
        self.tasks: list[Task] = []
        # Retention of processed_events and of any seen_webhooks table of the schema (see housekeeping.py). A
        # service that handles no events (the console) has no processed_events table, and nothing to sweep.
        seen_tables = [t for t in metadata.tables.values() if t.name == "seen_webhooks"]
        self.housekeeping = Housekeeping(
            self.engine,
            tables,
            schema=settings.db_schema,
            processed_events_retention=timedelta(days=settings.processed_events_retention_days),
            seen_webhooks_retention=timedelta(days=settings.seen_webhooks_retention_days),
            interval_s=settings.housekeeping_interval_s,
            seen_tables=seen_tables,
            processed_events=kafka,
        )
        if kafka or seen_tables:
            self.tasks.append(self.housekeeping.run)
        self.readiness_checks: list[ReadinessCheck] = []
        self.source = service_source(self.name)
        docs = settings.docs
        self.app = FastAPI(
            title=title or f"leadstream {self.name}",
            version="1.0.0",
            docs_url="/docs" if docs else None,
            redoc_url="/redoc" if docs else None,
            openapi_url="/openapi.json" if docs else None,
        )
        self.app.state.service = self
        self.app.state.tokens = auth.TokenResolver(self.engine, ttl_s=settings.token_cache_s)
        self.app.state.auth_failures = auth.FailureLimiter(
            settings.auth_failures_per_minute, settings.auth_failures_burst
        )
        install_problem_handlers(self.app)
        self.body_limits: dict[str, int] = {}
        self.app.add_middleware(InputGuard, max_body_bytes=settings.http_max_body_bytes, limits=self.body_limits)
        self.app.add_middleware(ClockHeaders, clock=self.clock)
        # Outermost: requests the guard refuses (413, 422) are counted and traced too.
        instrument_service(self.app, self.name)  # traces (HTTP, Kafka via the outbox, libraries), HTTP metrics
        self._install_health_routes()
        self.app.include_router(tokens_router())
        # /metrics is served on its own internal port (never the API's, never behind the ingress).
        self.metrics_app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
        self._install_metrics_route()
        export_build_info(self.name)  # on the first scrape, before Postgres or Kafka answer
        self.metrics_port: int | None = None
        self.stop_event = asyncio.Event()
        self.started = asyncio.Event()
        self.http_port: int | None = None
        self.stopping = False
        self._broker_connected = False
        self._bg: list[asyncio.Future[None]] = []
        self._closers: list[AsyncCloseable] = []
        self._stopped = False

    # -- wiring (called from app.py) --------------------------------------------------------------

    def consume(
        self,
        topics: Sequence[str],
        handlers: Mapping[type[Event], Handler],
        *,
        group_suffix: str = "",
        interest: Interest | None = None,
        after: Mapping[type[Event], Sequence[str]] | None = None,
        sealed: Collection[type[Event]] = (),
    ) -> EventConsumer:
        """Consume contract ``topics`` with this service's group, dispatching by event type; with ``interest``,
        only the events it wants (asked from their headers, before any decoding); ``after``: event types handled
        only once the records of other topics before them are done (:class:`EventConsumer`); ``sealed``: event
        types whose handlers read none of their personal fields (left encrypted: no key lookup per event)."""
        consumer = EventConsumer(
            settings=self.settings,
            engine=self.engine,
            tables=self.tables,
            broker=self.broker,
            topics=topics,
            handlers=handlers,
            relay=self.relay,
            clock=self.clock,
            group_id=self.settings.group_id + group_suffix,
            interest=interest,
            after=after,
            sealed=sealed,
        )
        return self.add_consumer(consumer)

    def add_consumer(self, consumer: C) -> C:
        """Run ``consumer`` while the service runs; ``/readyz`` says why when it is not ready (its ``not_ready``)."""
        self.consumers.append(consumer)
        return consumer

    def include_router(self, router: APIRouter) -> None:
        """Serve ``router`` on this service's HTTP app."""
        self.app.include_router(router)

    def limit_body(self, path: str, max_bytes: int) -> None:
        """Give the route at ``path`` a body cap of its own instead of ``http_max_body_bytes`` (e.g. an upload)."""
        self.body_limits[path] = max_bytes

    def add_task(self, task: Task) -> None:
        """Run ``task(stop_event)`` in the background while the service runs (timers, schedulers)."""
        self.tasks.append(task)

    def close_on_stop(self, *clients: object) -> None:
        """Close these clients (a provider's or a backend's HTTP client: what has ``aclose()``; others, such as the
        simulated providers, are passed over) when stopping, once the work in hand is done.

        Not a task waiting for the stop: that closed a client while requests and records in hand still used it
        (a console request in flight at SIGTERM answered 500, "the client has been closed").
        """
        self._closers.extend(c for c in clients if isinstance(c, AsyncCloseable))

    def add_readiness_check(self, check: ReadinessCheck) -> None:
        """A check returning None when ready, else a reason; ``/readyz`` fails while any reason is given."""
        self.readiness_checks.append(check)

    # -- emitting from outside a handler (HTTP commands, timers) ---------------------------------

    def new_envelope(self, data: Event, *, workspace_id: str) -> Envelope[Any]:
        """A root envelope for a fact that starts here (e.g. an API command), stamped with the clock."""
        return Envelope.new(
            data,
            workspace_id=workspace_id,
            source=self.source,
            time=self.clock.now(),
            traceparent=current_traceparent(),
        )

    async def emit(self, conn: AsyncConnection, envelopes: Sequence[Envelope[Any]]) -> None:
        """Write envelopes to the outbox in the caller's transaction; the relay publishes after commit."""
        await add_to_outbox(conn, self.tables, envelopes)

    def wake_relay(self) -> None:
        """Tell the relay a transaction with outbox rows just committed."""
        self.relay.wake()

    # -- lifecycle --------------------------------------------------------------------------------

    async def migrate(self) -> None:
        """Make the identity, key store, this service's and the runtime's schemas usable: migrate them
        (``migrate_on_start``) or check them. The runtime's tables in the service schema have their own line
        (``runtime_migrations``).

        A schema at a newer revision declared compatible with this code (an older pod during a rolling update
        or after a rollback) is logged and used; one that is behind without ``migrate_on_start``, or newer and
        incompatible, raises :class:`~services.runtime.migrations.SchemaNotReady` with what to do.
        """
        for migrations_dir, schema in (
            (auth.MIGRATIONS_DIR, auth.IDENTITY_SCHEMA),
            (personal.MIGRATIONS_DIR, personal.SCHEMA),
            (self.migrations_dir, self.settings.db_schema),
            (RUNTIME_MIGRATIONS_DIR, self.settings.db_schema),
        ):
            await prepare_schema(
                migrations_dir, self.settings.database_url, schema, migrate=self.settings.migrate_on_start
            )

    def request_stop(self) -> None:
        """Begin a graceful stop (what SIGTERM and SIGINT do): every loop sees ``stop_event`` and winds down."""
        if not self.stopping:
            log.info("stopping: finishing in-flight work", extra={"grace_s": self.settings.shutdown_grace_s})
        self.stopping = True
        self.stop_event.set()

    async def _until_up(self, connect: Callable[[], Awaitable[object]], what: str) -> bool:
        """Call ``connect`` until it succeeds (True) or the service stops (False), backing off between tries.

        An outage (the classifier's transient or suspect errors) is waited out; any other error (bad
        credentials, a missing database, a failing migration) ends the start with that error.
        """
        backoff = Backoff(self.settings.consumer_backoff_initial_s, self.settings.consumer_backoff_max_s)
        while not self.stop_event.is_set():
            try:
                await connect()
                return True
            except Exception as exc:
                if classify(exc) is Fault.RECORD:
                    raise
                log.warning("%s not reachable yet; retrying", what, extra={"error": repr(exc)})
                await backoff.wait(self.stop_event)
        return False

    async def start(self) -> None:
        """Connect, migrate and start background work (without HTTP). Used by tests and :meth:`run`.

        Waits for Postgres and Kafka as long as they are down (``/readyz`` says which); returns early,
        without starting anything, when a stop is requested meanwhile.
        """
        if not await self._until_up(lambda: ping(self.engine), "Postgres"):
            return
        if not await self._until_up(self.migrate, "Postgres (migrations)"):
            return
        self._bg = []
        if self.uses_kafka:
            self._broker_connected = await self._until_up(self.broker.connect, "Kafka")
            if not self._broker_connected:
                return
            self._bg.append(asyncio.create_task(self.relay.run(self.stop_event), name="relay"))
        for c in self.consumers:
            self._bg.append(asyncio.create_task(c.run(self.stop_event), name=f"consumer-{c.group_id}"))
        for t in self.tasks:
            task = asyncio.ensure_future(t(self.stop_event))
            if isinstance(task, asyncio.Task):
                task.set_name(getattr(t, "__qualname__", "task"))
            self._bg.append(task)
        self.started.set()
        log.info("service started", extra={"topics": ",".join(t for c in self.consumers for t in c.topics)})

    def _close_reserve_s(self) -> float:
        return min(CLOSE_RESERVE_S, self.settings.shutdown_grace_s / 5)

    async def stop(self, *, http: Sequence[asyncio.Task[None]] = ()) -> None:
        """Stop within ``shutdown_grace_s``: let in-flight work finish, abandon what does not, flush, close.

        ``http`` are the HTTP servers' tasks when they run (requests in hand finish in the same budget).
        Never raises: a stop that fails to close a client still ends the process cleanly.
        """
        if self._stopped:
            return
        self._stopped = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.shutdown_grace_s
        reserve = self._close_reserve_s()
        self.request_stop()
        work = [t for t in [*self._bg, *http] if not t.done()]
        if work:
            _, pending = await asyncio.wait(work, timeout=max(deadline - reserve - loop.time(), 0))
            if pending:
                # Their transactions roll back: the records are read again and the timers claimed again.
                log.warning(
                    "in-flight work abandoned at the end of the grace period",
                    extra={"tasks": ",".join(_name(t) for t in pending)},
                )
                for t in pending:
                    t.cancel()
                await asyncio.wait(pending, timeout=reserve / 4)
        for t in self._bg:
            if t.done() and not t.cancelled() and t.exception() is not None:
                log.error("background task failed", extra={"task": _name(t), "error": repr(t.exception())})
        for client in self._closers:
            await _within(loop, deadline - reserve / 2, client.aclose(), f"closing {type(client).__name__}")
        if self.uses_kafka and self._broker_connected:
            await _within(loop, deadline - reserve / 2, self._flush_outbox(), "last outbox flush")
            await _within(loop, deadline - reserve / 3, self.relay.close(), "closing the outbox producer")
            await _within(loop, deadline - reserve / 4, self.broker.stop(), "closing the Kafka producer")
        await _within(loop, deadline, self.engine.dispose(), "closing the database pool")
        await _within(loop, deadline, self.read_engine.dispose(), "closing the read pool")
        log.info("stopped")

    async def _flush_outbox(self) -> None:
        """Publish what handlers and requests committed while stopping (what is left waits for the next start)."""
        while await self.relay.publish_once():
            pass

    async def run(self) -> None:
        """Run until SIGTERM/SIGINT: start everything and serve HTTP on the configured host and port."""
        configure_logging(self.name, self.settings.log_level, self.settings.log_json)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        loop.add_signal_handler(signal.SIGUSR1, log_tasks)
        config = uvicorn.Config(
            self.app,
            host=self.settings.http_host,
            port=self.settings.http_port,
            log_config=None,
            lifespan="off",
            http="httptools",  # a C parser: a timeline read cost the projection 15-20 % less CPU than with h11
            proxy_headers=True,
            forwarded_allow_ips=self.settings.forwarded_allow_ips,
            # Requests in hand (and streams) get the same budget as the background work, then are cancelled.
            timeout_graceful_shutdown=max(int(self.settings.shutdown_grace_s - self._close_reserve_s()), 1),
        )
        server = _QuietServer(config)
        http = asyncio.create_task(server.serve(), name="http")
        metrics_server = _QuietServer(
            uvicorn.Config(
                self.metrics_app,
                host=self.settings.metrics_host,
                port=self.settings.effective_metrics_port,
                log_config=None,
                lifespan="off",
                http="httptools",
            )
        )
        metrics_http = asyncio.create_task(metrics_server.serve(), name="metrics-http")
        try:
            # A start-up error that is not an outage ends the process with that error.
            await unless_stopped(self.stop_event, self.start())
            if not self.stop_event.is_set():
                while not server.started and not http.done():  # noqa: ASYNC110 - uvicorn has no started event
                    await asyncio.sleep(0.05)
                while not metrics_server.started and not metrics_http.done():  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
                if server.servers:
                    self.http_port = server.servers[0].sockets[0].getsockname()[1]
                if metrics_server.servers:
                    self.metrics_port = metrics_server.servers[0].sockets[0].getsockname()[1]
                log.info(
                    "http listening",
                    extra={
                        "port": self.http_port,
                        "metrics_port": self.metrics_port,
                        "gc_frozen": freeze_start_up(),
                        "event_loop": loop_kind(loop),
                    },
                )
                await self.stop_event.wait()
        finally:
            server.should_exit = True
            metrics_server.should_exit = True
            await self.stop(http=[http, metrics_http])

    # -- health -----------------------------------------------------------------------------------

    async def readiness(self) -> dict[str, str]:
        """Failed checks by name (empty when ready)."""
        failed: dict[str, str] = {}
        if self.stopping:
            failed["shutdown"] = "stopping"
        try:
            await asyncio.wait_for(ping(self.engine), timeout=2)
        except Exception as exc:
            failed["postgres"] = f"unreachable: {type(exc).__name__}"
        if not self.uses_kafka:
            pass
        elif not self._broker_connected:
            failed["kafka"] = "not connected"
        else:
            try:
                ok = await asyncio.wait_for(self.broker.ping(timeout=2), timeout=3)
                if not ok:
                    failed["kafka"] = "unreachable"
            except Exception as exc:
                failed["kafka"] = f"unreachable: {type(exc).__name__}"
        for c in self.consumers:
            if reason := c.not_ready():
                failed[f"consumer:{c.group_id}"] = reason
        if self.uses_kafka and not self.relay.healthy:
            failed["outbox_relay"] = "cannot publish"
        for check in self.readiness_checks:
            reason = await check()
            if reason:
                failed[getattr(check, "__name__", "check")] = reason
        return failed

    def _install_health_routes(self) -> None:
        @self.app.get(
            "/healthz",
            tags=["health"],
            response_model=None,
            openapi_extra=auth.public("none: liveness probe"),
            responses=problems(503),
        )
        async def healthz() -> JSONResponse | dict[str, str]:
            """Liveness: the process answers, and no consumer is stuck (behind without moving for
            ``CONSUMER_STUCK_RESTART_S`` while nothing fails): then 503, and the orchestrator restarts it."""
            stuck = {c.group_id: reason for c in self.consumers if (reason := c.stuck())}
            if stuck:
                return problem_response(503, "stuck", "; ".join(f"{k}: {v}" for k, v in stuck.items()), checks=stuck)
            return {"status": "ok", "service": self.name}

        @self.app.get(
            "/readyz",
            tags=["health"],
            response_model=None,
            openapi_extra=auth.public("none: readiness probe"),
            responses=problems(503),
        )
        async def readyz() -> JSONResponse | dict[str, str]:
            """Readiness: Postgres and Kafka answer and the consumer runs."""
            failed = await self.readiness()
            READY.labels(self.name).set(0 if failed else 1)
            if failed:
                return problem_response(
                    503, "not_ready", "; ".join(f"{k}: {v}" for k, v in failed.items()), checks=failed
                )
            return {"status": "ready", "service": self.name}

    def _install_metrics_route(self) -> None:
        @self.metrics_app.get("/metrics")
        async def metrics() -> Response:
            """Prometheus metrics of this process (internal listener only)."""
            return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


class _QuietServer(uvicorn.Server):
    """uvicorn without its own signal handling: the service's handlers stop everything in order."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@runtime_checkable
class AsyncCloseable(Protocol):
    """A client holding connections until closed (httpx-style ``aclose``)."""

    async def aclose(self) -> None: ...


def freeze_start_up() -> int:
    """Collect once, then move every object start-up made (modules, models, compiled statements, clients) out of the
    cyclic garbage collector's sight (``gc.freeze``): its full collections then scan only what the service made
    since. They scanned everything: outreach's and webhooks' stalled their event loops for 65-88 ms (and used as
    much CPU) under the live benchmark's load (bench/results/NOTES.md, 2026-12-05). A process that serves (not a
    test starting services in its own process: what is frozen is never collected). Returns how many objects are
    frozen (the log line of a service that listens says it)."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def _name(task: asyncio.Future[None]) -> str:
    return task.get_name() if isinstance(task, asyncio.Task) else repr(task)


async def _within(loop: asyncio.AbstractEventLoop, deadline: float, work: Awaitable[object], what: str) -> None:
    """Await ``work`` until ``deadline`` (loop time; at least a moment), then abandon it; log, never raise.

    Not ``wait_for``: that waits for the cancelled work to finish, and a client closing its connections to a
    server that is down may take far longer than the grace period to give up.
    """
    task = asyncio.ensure_future(work)
    done, _ = await asyncio.wait({task}, timeout=max(deadline - loop.time(), 0.2))
    if not done:
        task.cancel()
        log.warning("%s did not finish in the grace period; abandoned", what)
    elif task.exception() is not None:
        log.warning("%s failed while stopping", what, extra={"error": repr(task.exception())})


LEFTOVER_WAIT_S = 1.0
"""After the stop: how long tasks still running (a client's own, e.g. a Kafka consumer leaving its group
while the broker is down) get to end once cancelled, before the process exits without them."""


def _close_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what still runs, give it LEFTOVER_WAIT_S, and close the loop (``asyncio.run`` would wait for
    every task however long it takes to end, past the grace period)."""
    tasks = asyncio.all_tasks(loop)
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.wait(tasks, timeout=LEFTOVER_WAIT_S))
    stuck = [t for t in tasks if not t.done()]
    if stuck:
        log.warning("exiting without tasks that did not end", extra={"tasks": ",".join(_name(t) for t in stuck)})
    else:
        loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()


def new_event_loop(kind: EventLoop) -> asyncio.AbstractEventLoop:
    """A new event loop of the given kind (``RuntimeSettings.event_loop``): uvloop's, or Python's own."""
    if kind == "asyncio":
        return asyncio.new_event_loop()
    try:
        import uvloop  # here: not on Windows (a dependency only elsewhere), where a service must say "asyncio"
    except ImportError:
        raise UnfitEventLoop(
            "LEADSTREAM_EVENT_LOOP is uvloop, which is not installed here (it is not on Windows): "
            "set LEADSTREAM_EVENT_LOOP=asyncio"
        ) from None
    return uvloop.new_event_loop()


class UnfitEventLoop(Exception):
    """The event loop the settings ask for cannot run here (the process exits 2 saying so)."""


def loop_kind(loop: asyncio.AbstractEventLoop) -> str:
    """The kind of ``loop`` (``uvloop`` or ``asyncio``), as the "http listening" log line names it."""
    return type(loop).__module__.partition(".")[0]


def _stop_before_start(signum: int, frame: object) -> None:
    raise SystemExit(0)  # nothing has connected to anything yet: there is nothing to finish


def run_service(build: Callable[[], Service]) -> None:
    """Entry point of ``python -m services.<name>``; exits 2 with the reasons when the settings are unfit.

    A SIGTERM while the service is being built exits 0 at once; from :meth:`Service.run` on, it stops gracefully
    and the process ends within the grace period (plus LEFTOVER_WAIT_S), whatever its clients still wait for.
    """
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _stop_before_start)
    try:
        service = build()
        loop = new_event_loop(service.settings.event_loop)
    except (secrets.InsecureConfiguration, UnfitEventLoop) as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(service.run())
    finally:
        _close_loop(loop)
