"""The console's browser tests: one fleet of every service (console included) per package, real Chromium.

The scene every test reads is made once through the services' public APIs: a workspace with a 25-lead
campaign that runs on a scaled clock, a second campaign whose drafts wait for review, and that
campaign's account made reconnect-required by a signed provider webhook.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright

from tests.support.browser import launch
from tests.support.console import ConsoleWorld, start_console_fleet
from tests.support.kafka import wait_for

WORKSPACE = "ws-console"
OTHER = "ws-console-other"
PAGE_SIZE = 10
REVIEW_LEADS = 5


@dataclass(frozen=True)
class Scene:
    """What the tests look for: the workspaces' tokens and the ids of what was set up."""

    token: str
    other_token: str
    campaign: str
    review_campaign: str
    account: str
    reconnect_account: str


@pytest.fixture(scope="package")
async def world(
    subprocess_env: dict[str, str], database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ConsoleWorld]:
    log_dir: Path = tmp_path_factory.mktemp("console-logs")
    started = await asyncio.to_thread(
        start_console_fleet,
        subprocess_env,
        log_dir,
        database_url,
        LEADSTREAM_CONSOLE_PAGE_SIZE=str(PAGE_SIZE),
        # No lead is a connection already: every approved invite is sent (the journey watches one go out).
        LEADSTREAM_SIM_CONNECTED_RATE="0",
    )
    try:
        yield started
    finally:
        await started.stop()


@pytest.fixture(scope="package")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        b = await launch(p)
        try:
            yield b
        finally:
            await b.close()


def _drafted_leads(world: ConsoleWorld, campaign: str) -> set[str]:
    """The leads with a draft waiting in the campaign's Messaging Lab."""
    path = f"/v1/campaigns/{campaign}/drafts"
    items = world.api(WORKSPACE, "GET", "messaging", path, params={"status": "pending", "limit": 200})["items"]
    return {str(item["lead_id"]) for item in items}


def _summary(world: ConsoleWorld, campaign: str) -> dict[str, int]:
    return dict(world.api(WORKSPACE, "GET", "projection", f"/v1/campaigns/{campaign}/summary"))


@pytest.fixture(scope="package")
async def scene(world: ConsoleWorld) -> Scene:
    token = await world.token(WORKSPACE)
    other = await world.token(OTHER)
    demo = world.scenario(WORKSPACE)
    account = demo.connect_account("Sam Carter")
    campaign, _ = demo.launch_campaign(
        "Q1 RevOps leaders", account, leads=25, prompt="B2B SaaS companies hiring SDRs in Europe"
    )
    kim = demo.connect_account("Kim Osei")
    review, _ = demo.launch_campaign(
        "Fintech CFOs (review)",
        kim,
        leads=REVIEW_LEADS,
        prompt="Fintech CFOs planning a finance stack change",
        review=True,
    )
    # Every lead's drafts first: the webhook below pauses the campaign, and a paused campaign enrolls no one more
    # (on a loaded machine only one of the five leads had been drafted when it came, and the Lab had nothing to order).
    await wait_for(
        lambda: len(_drafted_leads(world, review)) == REVIEW_LEADS,
        timeout_s=180,
        interval_s=0.5,
        what="every lead of the review campaign drafted",
    )
    response = world.account_status_webhook(kim, "CREDENTIALS")
    assert response.status_code == 200, response.text

    def settled() -> bool:
        s = _summary(world, campaign)
        stages = world.api(WORKSPACE, "GET", "projection", f"/v1/campaigns/{campaign}/stages")["stages"]
        inbox = {i["kind"] for i in world.api(WORKSPACE, "GET", "projection", "/v1/inbox")["items"]}
        return s["leads"] == 25 and s["replied"] >= 1 and len(stages) >= 2 and "reconnect_account" in inbox

    await wait_for(settled, timeout_s=180, interval_s=1.0, what="the campaign under way and the account to reconnect")
    return Scene(token, other, campaign, review, account, kim)
