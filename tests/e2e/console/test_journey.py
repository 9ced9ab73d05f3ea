"""A sales user's journey through the console in Chromium, on the real services, Kafka and Postgres.

Sign in from a deep link; home shows the checklist and real inbox items (an account a signed webhook
made reconnect-required, drafts waiting in the Messaging Lab, whose "Review drafts" opens the campaign's
review queue); open a campaign, filter its results by stage and page through them; open a lead and watch an
event produced on Kafka appear on the open page; the accounts page shows the reconnect state. No console error
and no failed request anywhere.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from urllib.parse import quote

import pytest
from leadstream_schemas import Channel, Envelope, Replied
from playwright.async_api import Browser, expect

from services.runtime.clock import clock_from_settings
from tests.support.browser import assert_one_line, screenshot
from tests.support.console import ConsoleWorld, nav, new_page
from tests.support.kafka import produce_events

from .conftest import PAGE_SIZE, WORKSPACE, Scene

pytestmark = pytest.mark.e2e
expect.set_options(timeout=30_000)


async def test_a_sales_user_reads_the_workspace_live(
    world: ConsoleWorld, scene: Scene, browser: Browser, subprocess_env: dict[str, str]
) -> None:
    context, page, watch = await new_page(browser, world)

    # -- sign in, from a deep link ----------------------------------------------------------------
    await page.goto("/campaigns")
    assert page.url.endswith("/sign-in?next=" + quote("/campaigns", safe=""))
    await screenshot(page, "sign-in")
    await page.get_by_label("Workspace API token").fill(scene.token)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(re.compile(r"/campaigns$"))
    assert scene.token not in await page.content()
    cookies = {c["name"]: c for c in await context.cookies()}
    session = cookies["ls_session"]
    assert session["httpOnly"] and session["sameSite"] == "Lax" and scene.token not in session["value"]

    # -- home: checklist and inbox ----------------------------------------------------------------
    await nav(page, "Home").click()
    await expect(page.get_by_test_id("checklist-progress")).to_have_text("3 of 3 done")
    inbox = page.locator("#inbox")
    reconnect = inbox.locator('li[data-kind="reconnect_account"]')
    await expect(reconnect).to_contain_text("Reconnect Kim Osei")
    await expect(reconnect).to_contain_text("Fintech CFOs (review)")
    pending = world.api(
        WORKSPACE,
        "GET",
        "messaging",
        f"/v1/campaigns/{scene.review_campaign}/drafts",
        params={"status": "pending", "limit": 200},
    )["items"]
    assert pending, "the review campaign has drafts in the Messaging Lab"
    drafts = inbox.locator('li[data-kind="drafts_waiting"]')
    await expect(drafts).to_contain_text(f"{len(pending)} drafts waiting for review")  # the Lab's own count
    await expect(page.locator("#home-live")).to_contain_text("Q1 RevOps leaders")
    await screenshot(page, "home")
    # "Review drafts" opens the campaign's review queue in the Messaging Lab, where drafts are decided.
    await drafts.get_by_role("link", name="Review drafts").click()
    await page.wait_for_url(re.compile(f"/campaigns/{scene.review_campaign}/lab$"))
    await expect(page.locator("article.draft-card").first).to_be_visible()

    # -- campaigns: search, then open one ---------------------------------------------------------
    await nav(page, "Campaigns").click()
    await expect(page.locator("#campaign-table tbody tr")).to_have_count(2)
    await screenshot(page, "campaigns")
    await page.get_by_label("Search").fill("revops")
    await expect(page.locator("#campaign-table tbody tr")).to_have_count(1)
    await page.get_by_role("link", name="Q1 RevOps leaders").click()
    await page.wait_for_url(re.compile(f"/campaigns/{scene.campaign}$"))
    await expect(page.locator('[data-count="leads"]')).to_have_text("25")
    await expect(page.locator("#series-chart")).to_be_visible()
    await expect(page.get_by_text("Last 14 days, Europe/Berlin")).to_be_visible()  # the browser's time zone

    # Filter by a stage: "replied", which some leads have reached (the scene waited for one) and none
    # leaves again while the campaign runs on. Every row shown is at that stage, and not every lead is.
    options = (
        await page.get_by_label("Workflow stage")
        .locator("option")
        .evaluate_all("els => els.filter(e => e.value).map(e => e.value)")
    )
    assert "replied" in options and len(options) >= 2, options
    stage = "replied"
    await page.get_by_label("Workflow stage").select_option(stage)
    rows = page.locator("#results-body tbody tr")
    await page.wait_for_function(
        """stage => {
            const cells = [...document.querySelectorAll('#results-body [data-stage]')];
            return cells.length > 0 && cells.every(e => e.dataset.stage === stage);
        }""",
        arg=stage,
    )
    shown = await rows.locator("[data-stage]").evaluate_all("els => els.map(e => e.dataset.stage)")
    assert shown and set(shown) == {stage} and len(shown) < 25, shown
    await screenshot(page, "campaign-filtered")

    # Page through all 25 leads: 10, 10 and 5, in name order, none twice.
    await page.get_by_label("Workflow stage").select_option("")
    unfiltered = (
        "() => [...document.querySelectorAll('#results-body [data-stage]')].some(e => e.dataset.stage !== 'replied')"
    )
    await page.wait_for_function(unfiltered)
    await expect(rows).to_have_count(PAGE_SIZE)
    await screenshot(page, "campaign")
    names: list[str] = []
    for expected in (PAGE_SIZE, PAGE_SIZE, 25 - 2 * PAGE_SIZE):
        await expect(rows).to_have_count(expected)
        page_names = await rows.locator("a.cell-title").all_inner_texts()
        assert not names or page_names[0] != names[-PAGE_SIZE]
        names += page_names
        nxt = page.get_by_role("link", name="Next page")
        if len(names) < 25:
            await nxt.click()
            await expect(rows.first.locator("a.cell-title")).not_to_have_text(page_names[0])
        else:
            await expect(nxt).to_have_count(0)
    ids = await rows.evaluate_all("els => els.map(e => e.dataset.lead)")
    assert len(names) == 25 and [n.lower() for n in names] == sorted(n.lower() for n in names)

    # -- a lead, live -----------------------------------------------------------------------------
    await page.locator(f'tr[data-lead="{ids[0]}"] a.cell-title').click()
    await page.wait_for_url(re.compile(f"/leads/{ids[0]}$"))
    await expect(page.locator("#timeline li").first).to_be_visible()
    await expect(page.locator("#live-status")).to_be_attached()
    # A function, not a bare expression: Playwright re-evaluates a bare expression with eval() on every
    # animation frame after the first check, which the console's CSP (script-src 'self') refuses.
    await page.wait_for_function("() => document.body.dataset.live === 'on'")
    await page.evaluate("window.__sameDocument = true")
    excerpt = f"Sounds good, Tuesday works ({uuid.uuid4().hex[:6]})"
    clock = clock_from_settings(float(_env(world, "LEADSTREAM_CLOCK_SCALE")), _epoch(world))
    now = clock.now()
    lead, campaign = uuid.UUID(ids[0]), uuid.UUID(scene.campaign)
    reply = Envelope.new(
        Replied(lead_id=lead, campaign_id=campaign, channel=Channel.message, received_at=now, excerpt=excerpt),
        workspace_id=WORKSPACE,
        source="leadstream/test",
        time=now,
    )
    await produce_events(subprocess_env["KAFKA_BOOTSTRAP_SERVERS"], subprocess_env["LEADSTREAM_TOPIC_PREFIX"], [reply])
    await expect(page.locator("#timeline")).to_contain_text(excerpt)
    assert await page.evaluate("window.__sameDocument === true"), "the page reloaded instead of updating"
    await expect(page.get_by_test_id("lead-stage")).to_have_text("replied")
    await screenshot(page, "lead")

    # -- accounts ---------------------------------------------------------------------------------
    await nav(page, "Accounts").click()
    kim = page.locator(f"#account-{scene.reconnect_account}")
    await expect(kim).to_have_attribute("data-health", "reconnect_required")
    await expect(kim.get_by_role("alert")).to_contain_text("reconnect the account")
    await expect(kim).to_contain_text("Reconnect required")
    await expect(kim).to_contain_text("Fintech CFOs (review)")
    await expect(page.locator(f"#account-{scene.account}")).to_have_attribute("data-health", "healthy")
    await expect(page.locator(f"#account-{scene.account} .chip")).to_have_text("sending")
    await assert_one_line(page)
    await screenshot(page, "accounts")

    watch.assert_clean()
    await context.close()


def _env(world: ConsoleWorld, name: str) -> str:
    return world.fleet.env[name]


def _epoch(world: ConsoleWorld) -> datetime:
    return datetime.fromisoformat(_env(world, "LEADSTREAM_CLOCK_EPOCH"))
