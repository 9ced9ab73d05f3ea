"""``leadstream demo``: the whole product on the local servers, with simulated providers.

Starts every service as a process on a scaled clock (campaign minutes pass in milliseconds),
creates a workspace and token, connects a simulated LinkedIn account, runs a saved signal search
for N leads, launches a campaign on the resulting source group, prints the console's URL with a
one-time sign-in link, then one replying lead's timeline in causal order and the campaign's summary
counts from the projection API.
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import signal
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from rich.console import Console
from rich.table import Table

from services.runtime import auth
from services.runtime.db import create_engine
from services.runtime.kafka import apply_topics
from services.runtime.migrations import upgrade
from services.runtime.settings import RuntimeSettings

from .checkout import checkout
from .processes import DEFAULT_PORTS, SERVICES, STOP, ServiceFleet

# One real second is half an hour of campaign time: a 5-minute step spacing takes 0.17 s, and the
# simulated leads' acceptance (up to 6 h) and reply (up to 8 h) delays play out in seconds.
CLOCK_SCALE = 1800.0
LIFECYCLE = (
    "leadstream.lead.discovered.v1",
    "leadstream.lead.profile_enriched.v1",
    "leadstream.lead.message_generated.v1",
    "leadstream.lead.invite_sent.v1",
    "leadstream.lead.replied.v1",
)
console = Console()


async def _prepare(settings: RuntimeSettings, workspace: str) -> str:
    await apply_topics(settings)
    await views_from_this_cluster(settings)
    await upgrade(auth.MIGRATIONS_DIR, settings.database_url, auth.IDENTITY_SCHEMA)
    engine = create_engine(settings.database_url)
    try:
        return await auth.create_token(engine, workspace, label="demo")
    finally:
        await engine.dispose()


async def views_from_this_cluster(settings: RuntimeSettings) -> str | None:
    """Rebuild and promote the projection's views when they were built from another Kafka cluster.

    A new local broker (``make clean``, a wiped ``.run/``) formats a new cluster while the machine's
    Postgres keeps the views; the projection refuses views whose offsets belong to another cluster (it
    cannot tell an empty new broker from a misconfigured one), so the demo does what the refusal asks
    for: a rebuild from this cluster, promoted. Returns the rebuild's name, or None when nothing was done.
    """
    from services.projection.checksum import dsn, schema_exists
    from services.projection.replay import promote, rebuild, replay_info
    from services.projection.store import CLUSTER_KEY, SCHEMA
    from services.runtime.kafka import cluster_id

    conn = await asyncpg.connect(dsn(settings.database_url))
    try:
        stored = (await replay_info(conn, SCHEMA)).get(CLUSTER_KEY) if await schema_exists(conn, SCHEMA) else None
    finally:
        await conn.close()
    current = await cluster_id(settings)
    if stored is None or stored == current:
        return None
    console.print(
        f"[yellow]the projection's views were built from Kafka cluster {stored}; this broker is cluster "
        f"{current}: rebuilding them from this one[/]"
    )
    name = f"demo_{datetime.now(UTC):%Y%m%d%H%M%S%f}"
    await rebuild(settings, name, workers=1)
    await promote(settings, name)
    return name


class DemoScenario:
    """The API calls of the demo, against the running services."""

    def __init__(self, fleet: ServiceFleet, token: str) -> None:
        self.fleet = fleet
        self.http = httpx.Client(timeout=10.0, headers={"Authorization": f"Bearer {token}"})

    def url(self, service: str, path: str) -> str:
        return self.fleet.procs[service].url + path

    def call(self, method: str, service: str, path: str, **kwargs: Any) -> Any:
        response = self.http.request(method, self.url(service, path), **kwargs)
        if response.status_code >= 400:
            raise RuntimeError(f"{method} {service}{path} -> {response.status_code}: {response.text}")
        return response.json() if response.content else None

    def setup_campaign(self, leads: int) -> tuple[str, str]:
        """Connect an account, search for leads, create and launch a campaign; returns (campaign, source group)."""
        account = self.connect_account("Demo SDR")
        return self.launch_campaign(
            "Demo campaign",
            account,
            leads=leads,
            prompt="B2B SaaS companies hiring SDRs",
            search="Demo: SaaS companies hiring SDRs",
        )

    def connect_account(self, name: str) -> str:
        """A simulated LinkedIn account (it connects at once); its id."""
        return str(
            self.call("POST", "outreach", "/v1/accounts", json={"provider": "linkedin", "display_name": name})[
                "account_id"
            ]
        )

    def launch_campaign(
        self, name: str, account_id: str, *, leads: int, prompt: str, search: str | None = None, review: bool = False
    ) -> tuple[str, str]:
        """A saved signal search for ``leads`` leads and a Direct connect campaign on it from ``account_id``,
        launched (``review``: drafts wait in the Messaging Lab); returns (campaign, source group)."""
        campaign_id, group = self.create_campaign(
            name, account_id, leads=leads, prompt=prompt, search=search, review=review
        )
        self.launch(campaign_id)
        return campaign_id, group

    def create_campaign(
        self, name: str, account_id: str, *, leads: int, prompt: str, search: str | None = None, review: bool = False
    ) -> tuple[str, str]:
        """The search and the campaign of :meth:`launch_campaign`, not launched; returns (campaign, source group)."""
        found = self.call(
            "POST",
            "discovery",
            "/v1/searches",
            json={
                "name": search or f"{name}: search",
                "kind": "signals",
                "criteria": {
                    "prompt": prompt,
                    "signal_types": ["hiring_plans", "open_jobs"],
                    "location": "Europe",
                    "lookback_days": 14,
                },
                "target_count": leads,
            },
        )
        campaign = self.call(
            "POST",
            "outreach",
            "/v1/campaigns",
            json={
                "name": name,
                "audience": {"type": "source_group", "ref": found["source_group_id"]},
                "workflow": "direct_connect",
                "strategy": {
                    "offer": "an outbound pipeline audit",
                    "proof": "we doubled replies for Northwind Labs",
                    "tone": "friendly",
                    "call_to_action": "worth a 15-minute call?",
                    "review": review,
                },
                "delivery": {
                    "pace": "high_volume",
                    "active_days": "every_day",
                    "start_hour": 0,
                    "end_hour": 24,
                    "timezone": "UTC",
                },
                "account_ids": [account_id],
            },
        )
        return str(campaign["campaign_id"]), str(found["source_group_id"])

    def prepare(self, campaign_id: str) -> dict[str, Any]:
        """Prepare the campaign for review before launch (its ready leads enrolled, their drafts written)."""
        return dict(self.call("POST", "outreach", f"/v1/campaigns/{campaign_id}/prepare"))

    def launch(self, campaign_id: str) -> dict[str, Any]:
        """Launch the campaign (a prepared one starts its leads with their approved drafts)."""
        return dict(self.call("POST", "outreach", f"/v1/campaigns/{campaign_id}/launch", json={}))

    def pending_drafts(self, campaign_id: str) -> list[dict[str, Any]]:
        """The campaign's drafts waiting for review in the Messaging Lab (its first page: the oldest)."""
        page = self.call("GET", "messaging", f"/v1/campaigns/{campaign_id}/drafts", params={"status": "pending"})
        return list(page["items"])

    def approve(self, draft_id: str) -> dict[str, Any]:
        """Approve a draft as it is (the Messaging Lab's approve)."""
        return dict(self.call("POST", "messaging", f"/v1/drafts/{draft_id}/approve"))

    def sign_in_link(self) -> str:
        """A one-time sign-in link to the console for this workspace."""
        return str(self.call("POST", "console", "/v1/sign-in-links")["url"])

    def summary(self, campaign_id: str) -> dict[str, Any]:
        return dict(self.call("GET", "projection", f"/v1/campaigns/{campaign_id}/summary"))

    def results(self, campaign_id: str, status: str | None = None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"limit": 200}
        if status:
            params["status"] = status
        body = self.call("GET", "projection", f"/v1/campaigns/{campaign_id}/results", params=params)
        return list(body["items"])

    def timeline(self, lead_id: str) -> list[dict[str, Any]]:
        body = self.call("GET", "projection", f"/v1/leads/{lead_id}/timeline")
        return list(body["items"])


def _link_minutes() -> str:
    from services.console.settings import ConsoleSettings

    return f"{ConsoleSettings().console_link_ttl_min:g}"


def _replied_lead(scenario: DemoScenario, campaign_id: str) -> str | None:
    for row in scenario.results(campaign_id, status="replied"):
        timeline = scenario.timeline(row["lead_id"])
        types = {item["type"] for item in timeline}
        if set(LIFECYCLE) <= types:
            return str(row["lead_id"])
    return None


def _print_timeline(timeline: list[dict[str, Any]], lead_id: str) -> None:
    table = Table(title=f"Timeline of lead {lead_id} (causal order)")
    for col in ("#", "time (campaign clock)", "event", "summary"):
        table.add_column(col)
    for i, item in enumerate(timeline, 1):
        table.add_row(
            str(i),
            str(item.get("time", ""))[:19],
            item["type"].removeprefix("leadstream.lead."),
            str(item.get("summary", ""))[:100],
        )
    console.print(table)


def _print_summary(summary: dict[str, Any], campaign_id: str) -> None:
    table = Table("count", "value", title=f"Campaign {campaign_id} summary")
    for key, value in summary.items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            table.add_row(key, f"{value:.0%}" if isinstance(value, float) else str(value))
    console.print(table)


def _stop_fleet(fleet: ServiceFleet) -> None:
    """Stop every service; a second Ctrl-C or SIGTERM meanwhile does not cut the stop short."""
    with STOP.ignored(), console.status("stopping services…"):
        codes = fleet.stop()
    # -SIGTERM: stopped while still importing, before it had done anything (see ServiceFleet.stop).
    unclean = {name: code for name, code in codes.items() if code not in (0, -signal.SIGTERM)}
    if unclean:
        console.print(f"[yellow]services that did not stop cleanly (exit codes): {unclean}[/]")


def demo_ports(port_base: int | None) -> dict[str, int]:
    """The services' ports: their defaults, or ``port_base``, ``port_base + 1``, ... in service order."""
    if port_base is None:
        return dict(DEFAULT_PORTS)
    return {name: port_base + i for i, name in enumerate(SERVICES)}


def run_demo(*, once: bool, leads: int, timeout_s: float, env: dict[str, str], port_base: int | None = None) -> int:
    """Run the demo; returns the process exit code (0 when a lead's full lifecycle was shown).

    SIGTERM and SIGHUP (a service manager, a closed terminal) stop it as Ctrl-C does: through the ``finally``
    that stops every service, so none is left running on its own. SIGUSR1 prints every thread's stack.
    """
    # A demo that does not stop says where it waits: SIGUSR1 prints every thread's stack (as a service logs its
    # tasks on SIGUSR1).
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    with STOP.installed():
        return _run_demo(once=once, leads=leads, timeout_s=timeout_s, env=env, port_base=port_base)


def _run_demo(*, once: bool, leads: int, timeout_s: float, env: dict[str, str], port_base: int | None) -> int:
    settings = RuntimeSettings()
    started = datetime.now(UTC)
    workspace = f"demo-{started:%Y%m%d%H%M%S}"
    console.rule("[bold]leadstream demo")
    console.print(f"Kafka {settings.kafka_bootstrap_servers} · Postgres {settings.database_url.split('@')[-1]}")
    token = asyncio.run(_prepare(settings, workspace))
    root = checkout()
    # In a checkout next to the servers' data; installed (the image), in the temporary directory.
    log_dir = root / ".run" / "logs" if root else Path(tempfile.gettempdir()) / "leadstream-demo-logs"
    fleet = ServiceFleet(
        env={
            **env,
            # The demo is development: simulated providers, development keys, /docs served.
            "LEADSTREAM_ENV": "development",
            "LEADSTREAM_CLOCK_SCALE": str(CLOCK_SCALE),
            "LEADSTREAM_CLOCK_EPOCH": started.isoformat(),
            "LEADSTREAM_SIMULATED_SEED": str(int(started.timestamp())),
            # Lets a webhook subscription of the demo's API point at a receiver on this machine (http://127.0.0.1:...).
            "LEADSTREAM_WEBHOOKS_ALLOW_PRIVATE_TARGETS": "true",
            "LEADSTREAM_WEBHOOKS_ALLOW_HTTP": "true",
        },
        log_dir=log_dir,
        ports=demo_ports(port_base),
    )
    try:
        with console.status(f"starting the {len(SERVICES)} services…"):
            for name in SERVICES:
                fleet.start(name)
            fleet.wait_ready()
        console.print(f"[green]all {len(SERVICES)} services ready[/] (logs in {log_dir})")
        scenario = DemoScenario(fleet, token)
        campaign_id, _ = scenario.setup_campaign(leads)
        console.print(f"campaign {campaign_id} launched for {leads} simulated leads; waiting for replies…")
        console.print(
            f"\n[bold]Console[/] {fleet.procs['console'].url} · sign in once with this link (one use, "
            f"{_link_minutes()} minutes):\n{scenario.sign_in_link()}\n",
            soft_wrap=True,
        )
        deadline = time.monotonic() + timeout_s
        lead_id: str | None = None
        with console.status("campaign running (campaign clock is 1800x real time)…"):
            while time.monotonic() < deadline:
                with contextlib.suppress(RuntimeError, httpx.HTTPError):
                    lead_id = _replied_lead(scenario, campaign_id)
                if lead_id:
                    break
                time.sleep(1.0)
        summary = scenario.summary(campaign_id)
        if lead_id is None:
            console.print(f"[red]no lead completed the full lifecycle within {timeout_s:.0f}s[/]")
            _print_summary(summary, campaign_id)
            return 1
        _print_timeline(scenario.timeline(lead_id), lead_id)
        _print_summary(summary, campaign_id)
        if once:
            return 0
        console.print(
            f"\nConsole {fleet.procs['console'].url} (a fresh sign-in link: {scenario.sign_in_link()})\n"
            f"API up: projection {fleet.procs['projection'].url}/docs · outreach {fleet.procs['outreach'].url}/docs\n"
            f"workspace [bold]{workspace}[/], token [bold]{token}[/]\nCtrl-C (or SIGTERM, SIGHUP) stops every process.",
            soft_wrap=True,
        )
        with contextlib.suppress(KeyboardInterrupt):
            while all(p.process.poll() is None for p in fleet.procs.values()):
                time.sleep(1.0)
        return 0
    finally:
        _stop_fleet(fleet)
