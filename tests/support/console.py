"""The console's browser-test world: every service as a process on the shared broker and a fresh database,
workspaces with tokens, API calls to set scenes up, signed webhooks, and signing a browser in.

Part 2's flows (searches, the campaign builder, the Messaging Lab) build on the same fleet and helpers:
:class:`ConsoleWorld` starts the fleet once per test package, :meth:`ConsoleWorld.api` sets data up
through the services' public APIs, and :func:`sign_in` opens a watched, signed-in page.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from playwright.async_api import Browser, BrowserContext, Locator, Page, expect

from leadstream_cli.demo import CLOCK_SCALE, DemoScenario
from leadstream_cli.processes import SERVICES, ServiceFleet, free_port
from services.outreach.settings import OutreachSettings
from services.runtime import auth
from services.runtime.db import create_engine
from services.runtime.migrations import upgrade
from services.runtime.webhooks import signed_headers
from tests.support.browser import DESKTOP, PageWatch
from tests.support.probe.proxy import TcpProxy

# The LinkedIn provider's development key (the fleet runs in development).
WEBHOOK_SECRET = OutreachSettings(env="development").keys("linkedin_webhook_secret").signing


@dataclass
class ConsoleWorld:
    """The running fleet and where its console is."""

    fleet: ServiceFleet
    database_url: str
    tokens: dict[str, str] = field(default_factory=dict)
    through: tuple[ServiceFleet, dict[str, TcpProxy]] | None = None
    """The second console of :func:`console_through` (started at its first use) and its proxies by backend."""

    async def stop(self) -> None:
        """Stop the second console (its proxies too), then the fleet."""
        if self.through is not None:
            fleet, proxies = self.through
            self.through = None
            await asyncio.to_thread(fleet.stop)
            for proxy in proxies.values():
                await proxy.cut()
        await asyncio.to_thread(self.fleet.stop)

    @property
    def url(self) -> str:
        return self.fleet.procs["console"].url

    def service_url(self, name: str) -> str:
        return self.fleet.procs[name].url

    async def token(self, workspace: str) -> str:
        """An API token of ``workspace`` (made once)."""
        if workspace not in self.tokens:
            await upgrade(auth.MIGRATIONS_DIR, self.database_url, auth.IDENTITY_SCHEMA)
            engine = create_engine(self.database_url)
            try:
                self.tokens[workspace] = await auth.create_token(engine, workspace, label="console test")
            finally:
                await engine.dispose()
        return self.tokens[workspace]

    def api(self, workspace: str, method: str, service: str, path: str, **kwargs: Any) -> Any:
        """A call to a service's public API as ``workspace`` (its token must exist); raises on a 4xx/5xx."""
        headers = {"Authorization": f"Bearer {self.tokens[workspace]}"}
        response = httpx.request(method, self.service_url(service) + path, headers=headers, timeout=15, **kwargs)
        if response.status_code >= 400:
            raise AssertionError(f"{method} {service}{path} -> {response.status_code}: {response.text}")
        return response.json() if response.content else None

    def account_status_webhook(self, account_id: str, status: str) -> httpx.Response:
        """The LinkedIn provider's signed account-status webhook, as it would arrive at outreach."""
        body = json.dumps({"account_id": account_id, "status": status}).encode()
        headers = signed_headers(WEBHOOK_SECRET, f"msg-{uuid.uuid4()}", int(time.time()), body)
        return httpx.post(
            self.service_url("outreach") + "/v1/webhooks/accounts",
            content=body,
            headers={**headers, "Content-Type": "application/json"},
            timeout=15,
        )

    def scenario(self, workspace: str) -> DemoScenario:
        """The demo's API calls (connect an account, launch a campaign, ...) as ``workspace``."""
        return DemoScenario(self.fleet, self.tokens[workspace])


async def new_workspace(world: ConsoleWorld, name: str) -> tuple[str, str]:
    """A new workspace of its own, called ``name`` and a random suffix (the scene's lists and campaigns stay as other
    tests expect them): its id and an API token."""
    workspace = f"{name}-{uuid.uuid4().hex[:6]}"
    return workspace, await world.token(workspace)


def import_leads(world: ConsoleWorld, workspace: str, name: str, people: int) -> str:
    """A lead list of ``people`` made through discovery's CSV import (as the console's upload does); its id."""
    rows = ["LinkedIn URL,Email,First name,Last name,Company,Title"]
    rows += [
        f"https://www.linkedin.com/in/{name.lower()}-{i:02d},,Person,{name} {i:02d},Acme,CFO" for i in range(people)
    ]
    report = world.api(
        workspace,
        "POST",
        "discovery",
        "/v1/imports/csv",
        files={"file": ("people.csv", ("\n".join(rows) + "\n").encode(), "text/csv")},
        data={"name": f"{name} list"},
    )
    assert report["imported"] == people, report
    return str(report["source_group_id"])


def start_console_fleet(env: dict[str, str], log_dir: Path, database_url: str, **settings: str) -> ConsoleWorld:
    """Every service (the console included) as a process on free ports, campaign time 1800x real time (the
    console's own clock is the wall clock)."""
    fleet = ServiceFleet(
        env={
            **env,
            "LEADSTREAM_CLOCK_SCALE": str(CLOCK_SCALE),
            "LEADSTREAM_CLOCK_EPOCH": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
            "LEADSTREAM_LOG_JSON": "true",
            **settings,
        },
        log_dir=log_dir,
        ports={name: free_port() for name in SERVICES},
    )
    try:
        for name in SERVICES:
            # The console runs on the wall clock: the times it shows follow the projection's clock (the events'
            # time base), not its own settings.
            fleet.start(name, **({"LEADSTREAM_CLOCK_SCALE": "1"} if name == "console" else {}))
        fleet.wait_ready(180)
    except BaseException:
        fleet.stop()
        raise
    return ConsoleWorld(fleet, database_url)


PROXIED = ("outreach", "discovery", "messaging")
"""The backends a test can cut from the second console of :func:`console_through`."""


@asynccontextmanager
async def console_through(
    world: ConsoleWorld, log_dir: Path, *backends: str
) -> AsyncIterator[tuple[str, dict[str, TcpProxy]]]:
    """A second console of the fleet (same database, sessions and secrets) whose calls to each of ``backends`` go
    through a :class:`TcpProxy` the test can cut: that service stops answering this console only, as when it is
    down, while the fleet's own console and every other service go on. Yields its URL and the proxies by name.

    The second console is started once, at the first use, with a proxy to each of :data:`PROXIED` (its logs go to
    the first ``log_dir``); it stays up for the next test (a console process costs two seconds of CPU to start, the
    suite runs on two cores). Each proxy is back to plain forwarding when a test ends (:meth:`TcpProxy.restore`)."""
    unknown = set(backends) - set(PROXIED)
    assert not unknown, f"console_through proxies only {PROXIED}, not {sorted(unknown)}"
    if world.through is None:
        proxies = {name: TcpProxy("127.0.0.1", world.fleet.procs[name].port) for name in PROXIED}
        for proxy in proxies.values():
            await proxy.start()
        fleet = ServiceFleet(
            env={**world.fleet.env, **world.fleet.console_env()}, log_dir=log_dir, ports={"console": free_port()}
        )
        routed = {f"LEADSTREAM_CONSOLE_{n.upper()}_URL": f"http://127.0.0.1:{p.port}" for n, p in proxies.items()}
        try:
            fleet.start("console", LEADSTREAM_CLOCK_SCALE="1", **routed)
            await asyncio.to_thread(fleet.wait_ready, 120)
        except BaseException:
            # Not kept: the next test starts one of its own instead of failing on this one.
            await asyncio.to_thread(fleet.stop)
            for proxy in proxies.values():
                await proxy.cut()
            raise
        world.through = (fleet, proxies)
    fleet, proxies = world.through
    for name, proxy in proxies.items():
        await _answers_through(name, proxy)
    try:
        yield fleet.procs["console"].url, {name: proxies[name] for name in backends}
    finally:
        for proxy in proxies.values():
            await proxy.restore()  # a cut, or a cut_at that never fired, does not reach the next test


async def _answers_through(name: str, proxy: TcpProxy) -> None:
    """Check that ``name`` answers through its shared proxy before a test relies on it (a test once found the
    builder unreachable at its start, cause unknown): a proxy that does not forward is restarted once, with a
    warning naming it, and raises if it still does not."""
    for attempt in range(2):
        try:
            async with httpx.AsyncClient(timeout=5.0) as http:
                if (await http.get(f"http://127.0.0.1:{proxy.port}/healthz")).status_code == 200:
                    return
        except httpx.TransportError as exc:
            why = repr(exc)
        else:
            why = "not 200"
        if attempt == 0:
            warnings.warn(f"the shared proxy to {name} did not forward ({why}): restarted", stacklevel=2)
            await proxy.cut()
            await proxy.restore()
    raise AssertionError(f"{name} does not answer through its shared proxy on port {proxy.port}")


async def new_page(
    browser: Browser, world: ConsoleWorld, url: str | None = None
) -> tuple[BrowserContext, Page, PageWatch]:
    """A fresh browser context (no cookies) with one watched page, on the fleet's console (or the one at ``url``)."""
    context = await browser.new_context(viewport=DESKTOP, base_url=url or world.url, timezone_id="Europe/Berlin")
    page = await context.new_page()
    watch = PageWatch()
    watch.attach(page)
    return context, page, watch


def nav(page: Page, name: str) -> Locator:
    """A link of the console's main navigation (Home, Campaigns, Accounts)."""
    return page.get_by_role("navigation", name="Pages").get_by_role("link", name=name, exact=True)


async def preview_messages(page: Page, *, attempts: int = 3) -> Locator:
    """Click the builder's "Preview messages" and return the previewed leads once they show.

    When the console answers that the previews could not be written right now (messaging timed out: the
    simulated writer takes its time as the real one does, more so on a loaded machine) it clicks again, as the
    message asks a user to; any other answer, or the last attempt's refusal, fails with the text shown."""
    box = page.locator("#message-preview")
    answer = box.locator("#previews, .field-error")
    for attempt in range(1, attempts + 1):
        await page.evaluate("() => document.getElementById('message-preview').replaceChildren()")
        await page.get_by_role("button", name="Preview messages").click()
        await expect(answer.first).to_be_visible()
        errors = box.locator(".field-error")
        if not await errors.count():
            return box.locator("#previews .preview-lead")
        shown = " ".join(await errors.all_inner_texts())
        if "try again" not in shown or attempt == attempts:
            raise AssertionError(f"the message previews were refused (attempt {attempt}): {shown}")
    raise AssertionError("unreachable")


async def sign_in(page: Page, token: str) -> None:
    """Sign in through the sign-in form (the token is pasted, as a user does)."""
    await page.goto("/sign-in")
    await page.get_by_label("Workspace API token").fill(token)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(lambda url: "/sign-in" not in url)
