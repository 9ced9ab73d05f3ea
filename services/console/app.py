"""Console wiring: settings -> session store and backend clients -> pages, static files, error screens -> service.

A backend-for-frontend: it reads the other services' public HTTP APIs only, keeps sessions and
sign-in links in its own schema, and neither consumes nor emits events (no Kafka).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import httpx
from fastapi import HTTPException
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from services.runtime.clock import Clock, SystemClock
from services.runtime.service import Service

from .backends import Backends
from .pages import STATIC_FILES, build_router
from .pages_actions import actions_router
from .pages_builder import builder_router
from .pages_leads import leads_router
from .sessions import SessionStore, Vault
from .settings import ConsoleSettings
from .store import metadata, runtime_tables
from .web import Console, install_error_pages

HERE = Path(__file__).parent
MIGRATIONS = HERE / "migrations"
STATIC = HERE / "static"

VENDOR = {
    "htmx.min.js": "htmx.org/dist/htmx.min.js",
    "htmx-ext-sse.min.js": "htmx-ext-sse/dist/sse.min.js",
    "chart.umd.min.js": "chart.js/dist/chart.umd.min.js",
}
"""The front-end packages' files the pages load, served from where ``npm ci`` put them (package.json here)."""


def vendor_files(settings: ConsoleSettings) -> dict[str, Path]:
    """Each vendor file's path; a clear error when the npm packages are not installed."""
    root = Path(settings.console_static_dir) if settings.console_static_dir else HERE / "node_modules"
    files = {name: root / rel for name, rel in VENDOR.items()}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise RuntimeError(
            f"the console's front-end packages are missing ({', '.join(missing)}): run `make venv` "
            "(npm ci in services/console) or set LEADSTREAM_CONSOLE_STATIC_DIR to an installed node_modules"
        )
    return files


def build(
    settings: ConsoleSettings | None = None,
    clock: Clock | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Service:
    """The console service, ready to start; ``service.app.state.console`` is its :class:`Console`."""
    settings = settings or ConsoleSettings()
    clock = clock or settings.clock()
    service = Service(
        settings,
        metadata=metadata,
        tables=runtime_tables,
        migrations_dir=MIGRATIONS,
        clock=clock,
        title="leadstream console",
        kafka=False,
    )
    vault = Vault(settings.keys("console_session_secret").keys)
    store = SessionStore(
        service.engine,
        vault,
        SystemClock(),  # sessions and links expire in real time, even where campaign time runs faster
        ttl=timedelta(hours=settings.console_session_ttl_h),
        link_ttl=timedelta(minutes=settings.console_link_ttl_min),
    )
    backends = Backends(settings, transport)
    console = Console(settings, service, backends, store, vault, clock)
    service.app.state.console = console
    install_error_pages(service.app, console)
    vendor = vendor_files(settings)

    @service.app.get("/static/vendor/{name}", include_in_schema=False, openapi_extra=STATIC_FILES)
    async def vendor_file(name: str) -> FileResponse:
        path = vendor.get(name)
        if path is None:
            raise HTTPException(404, "no such file")
        return FileResponse(path, media_type="text/javascript", headers={"Cache-Control": "public, max-age=3600"})

    service.app.mount("/static", StaticFiles(directory=STATIC), name="static")
    # The action pages first: their fixed paths (/leads/find, /campaigns/new) win over part 1's /leads/{id}.
    for router in (
        leads_router(console),
        builder_router(console),
        actions_router(console),
        *build_router(console),
    ):
        service.include_router(router)

    service.close_on_stop(backends)
    return service
