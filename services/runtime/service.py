"""The service shell: every service's ``app.py`` builds a :class:`Service` and ``__main__`` runs it.

A service is: settings -> database engine + migrations -> FastStream broker (publisher) -> outbox
relay -> event consumer (handlers by event type) -> background tasks -> HTTP app (FastAPI with
``/healthz``, ``/readyz``, ``/metrics``). Everything stops cleanly on SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse, Response
from faststream.kafka import KafkaBroker
from leadstream_schemas import Envelope, Event
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import MetaData
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from . import auth
from .clock import Clock, ClockHeaders, SystemClock
from .consumer import EventConsumer, Handler
from .db import RuntimeTables, create_engine, ping
from .errors import install_problem_handlers, problem_response
from .kafka import create_broker
from .logging import configure_logging
from .metrics import READY
from .migrations import prepare_schema
from .outbox import OutboxRelay, add_to_outbox
from .settings import RuntimeSettings
from .telemetry import configure_tracing, current_traceparent

log = logging.getLogger(__name__)

Task = Callable[[asyncio.Event], Awaitable[None]]
ReadinessCheck = Callable[[], Awaitable[str | None]]


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
        self.settings = settings
        self.uses_kafka = kafka
        """False for a service that neither consumes nor emits (the console): no broker, no outbox relay."""
        self.name = settings.service_name
        self.metadata = metadata
        self.tables = tables
        self.migrations_dir = migrations_dir
        self.clock: Clock = clock or SystemClock()
        self.engine: AsyncEngine = create_engine(settings.database_url)
        self.broker: KafkaBroker = create_broker(settings)
        self.relay = OutboxRelay(self.engine, tables, self.broker, settings)
        self.consumers: list[EventConsumer] = []
        self.tasks: list[Task] = []
        self.readiness_checks: list[ReadinessCheck] = []
        self.source = f"leadstream/{self.name}"
        self.app = FastAPI(title=title or f"leadstream {self.name}", version="1.0.0")
        self.app.state.service = self
        self.app.state.tokens = auth.TokenResolver(self.engine)
        install_problem_handlers(self.app)
        self.app.add_middleware(ClockHeaders, clock=self.clock)
        self._install_health_routes()
        self.stop_event = asyncio.Event()
        self.started = asyncio.Event()
        self.http_port: int | None = None
        self._broker_connected = False

    # -- wiring (called from app.py) --------------------------------------------------------------

    def consume(
        self, topics: Sequence[str], handlers: Mapping[type[Event], Handler], *, group_suffix: str = ""
    ) -> EventConsumer:
        """Consume contract ``topics`` with this service's group, dispatching by event type."""
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
        )
        self.consumers.append(consumer)
        return consumer

    def include_router(self, router: APIRouter) -> None:
        """Serve ``router`` on this service's HTTP app."""
        self.app.include_router(router)

    def add_task(self, task: Task) -> None:
        """Run ``task(stop_event)`` in the background while the service runs (timers, schedulers)."""
        self.tasks.append(task)

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
        """Make the identity and this service's schemas usable: migrate them (``migrate_on_start``) or check them.

        A schema at a newer revision declared compatible with this code (an older pod during a rolling update
        or after a rollback) is logged and used; one that is behind without ``migrate_on_start``, or newer and
        incompatible, raises :class:`~services.runtime.migrations.SchemaNotReady` with what to do.
        """
        for migrations_dir, schema in (
            (auth.MIGRATIONS_DIR, auth.IDENTITY_SCHEMA),
            (self.migrations_dir, self.settings.db_schema),
        ):
            await prepare_schema(
                migrations_dir, self.settings.database_url, schema, migrate=self.settings.migrate_on_start
            )

    async def _until_up(self, connect: Callable[[], Awaitable[object]], what: str) -> bool:
        """Call ``connect`` until it succeeds (True) or the service stops (False), backing off between tries."""
        backoff = self.settings.consumer_backoff_initial_s
        while not self.stop_event.is_set():
            try:
                await connect()
                return True
            except Exception as exc:
                log.warning("%s not reachable yet; retrying", what, extra={"error": repr(exc)})
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.settings.consumer_backoff_max_s)
        return False

    async def start(self) -> None:
        """Connect, migrate and start background work (without HTTP). Used by tests and :meth:`run`."""
        await self._until_up(lambda: ping(self.engine), "Postgres")
        await self.migrate()
        self._bg: list[asyncio.Future[None]] = []
        if self.uses_kafka:
            self._broker_connected = await self._until_up(self.broker.connect, "Kafka")
            self._bg.append(asyncio.create_task(self.relay.run(self.stop_event), name="relay"))
        for c in self.consumers:
            self._bg.append(asyncio.create_task(c.run(self.stop_event), name=f"consumer-{c.group_id}"))
        for t in self.tasks:
            self._bg.append(asyncio.ensure_future(t(self.stop_event)))
        self.started.set()
        log.info("service started", extra={"topics": ",".join(t for c in self.consumers for t in c.topics)})

    async def stop(self) -> None:
        """Stop background work, flush the outbox once, close clients."""
        self.stop_event.set()
        for task in getattr(self, "_bg", []):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, timeout=15)
        if self.uses_kafka:
            with contextlib.suppress(Exception):
                await self.relay.publish_once()
            with contextlib.suppress(Exception):
                await self.broker.stop()
        await self.engine.dispose()

    async def run(self) -> None:
        """Run until SIGTERM/SIGINT: start everything and serve HTTP on the configured host and port."""
        configure_logging(self.name, self.settings.log_level, self.settings.log_json)
        configure_tracing(self.name)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop_event.set)
        config = uvicorn.Config(
            self.app, host=self.settings.http_host, port=self.settings.http_port, log_config=None, lifespan="off"
        )
        server = _QuietServer(config)
        http = asyncio.create_task(server.serve(), name="http")
        try:
            await self.start()
            while not server.started and not http.done():  # noqa: ASYNC110 - uvicorn has no started event
                await asyncio.sleep(0.05)
            if server.servers:
                self.http_port = server.servers[0].sockets[0].getsockname()[1]
            log.info("http listening", extra={"port": self.http_port})
            await self.stop_event.wait()
        finally:
            server.should_exit = True
            await self.stop()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(http, timeout=10)

    # -- health -----------------------------------------------------------------------------------

    async def readiness(self) -> dict[str, str]:
        """Failed checks by name (empty when ready)."""
        failed: dict[str, str] = {}
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
            if not c.healthy:
                failed[f"consumer:{c.group_id}"] = "not consuming (starting, or retrying an infrastructure error)"
        if self.uses_kafka and not self.relay.healthy:
            failed["outbox_relay"] = "cannot publish"
        for check in self.readiness_checks:
            reason = await check()
            if reason:
                failed[getattr(check, "__name__", "check")] = reason
        return failed

    def _install_health_routes(self) -> None:
        @self.app.get("/healthz", tags=["health"])
        async def healthz() -> dict[str, str]:
            """Liveness: the process answers."""
            return {"status": "ok", "service": self.name}

        @self.app.get("/readyz", tags=["health"], response_model=None)
        async def readyz() -> JSONResponse | dict[str, str]:
            """Readiness: Postgres and Kafka answer and the consumer runs."""
            failed = await self.readiness()
            READY.labels(self.name).set(0 if failed else 1)
            if failed:
                return problem_response(
                    503, "not_ready", "; ".join(f"{k}: {v}" for k, v in failed.items()), checks=failed
                )
            return {"status": "ready", "service": self.name}

        @self.app.get("/metrics", tags=["health"], include_in_schema=False)
        async def metrics() -> Response:
            return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


class _QuietServer(uvicorn.Server):
    """uvicorn without its own signal handling: the service's handlers stop everything in order."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def run_service(build: Callable[[], Service]) -> None:
    """Entry point of ``python -m services.<name>``."""
    service = build()
    asyncio.run(service.run())
