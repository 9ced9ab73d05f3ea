"""A new sales user walks through the console (Chromium, the real services, Kafka and Postgres) and meets
nothing that strands them: each test here is a defect such a walk found.

- a mistyped address shows the console's own 404 page, not the signed-out card with "Sign in";
- drafts that arrive while a campaign's page is open come with a way to review them (the callout is live,
  the header's button is not);
- a person in a lead list opens their lead page;
- a builder error across delivery fields ("Stop at" before "Start at") shows next to Stop at, in words
  (no pydantic "Value error," prefix), not under the pace above;
- the Messaging Lab shows each lead's drafts in the order the lead receives them;
- a workspace with an account and no campaign yet is sent to the builder (the checklist's "Launch your first
  campaign", the campaign list's empty state), not told to call the outreach API;
- the workspace blocklist the compliance check reads is kept in the console: block, see it listed, remove it,
  an empty entry refused at its field with the choice kept; the suppression list beside it;
- on a phone the plan is reachable from the navigation as on a desktop (its link was hidden there).
"""

from __future__ import annotations

import re

import pytest
from playwright.async_api import Browser, expect

from tests.support.browser import PHONE, assert_fits_phone, assert_labelled, screenshot
from tests.support.console import ConsoleWorld, nav, new_page, sign_in

from .conftest import WORKSPACE, Scene

FRESH = "ws-console-fresh"

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]
expect.set_options(timeout=45_000)


async def test_a_mistyped_address_keeps_a_signed_in_user_in_the_console(
    world: ConsoleWorld, browser: Browser, scene: Scene
) -> None:
    context, page, watch = await new_page(browser, world)
    watch.allow(r"^/no-such-page$", 404)
    await sign_in(page, scene.token)
    response = await page.goto("/no-such-page")
    assert response is not None and response.status == 404
    await expect(page.get_by_role("heading", name="Not found")).to_be_visible()
    await expect(nav(page, "Campaigns")).to_be_visible()  # the console around it: the user is still signed in
    await expect(page.get_by_role("link", name="Go to Home")).to_be_visible()
    await expect(page.get_by_role("link", name="Sign in")).to_have_count(0)
    watch.assert_clean()
    await context.close()


async def test_drafts_waiting_on_a_campaign_page_link_to_its_review_queue(
    world: ConsoleWorld, browser: Browser, scene: Scene
) -> None:
    context, page, watch = await new_page(browser, world)
    await sign_in(page, scene.token)
    await page.goto(f"/campaigns/{scene.review_campaign}")
    # The callout is the live part of the page (drafts written after it was opened appear there, not in the
    # header): it has to carry the way to the queue itself.
    callout = page.locator("#campaign-summary #drafts")
    await expect(callout).to_contain_text("waiting for review")
    await callout.get_by_role("link", name="Review drafts").click()
    await page.wait_for_url(re.compile(f"/campaigns/{scene.review_campaign}/lab$"))
    await expect(page.locator("article.draft-card").first).to_be_visible()
    watch.assert_clean()
    await context.close()


async def test_a_person_in_a_lead_list_opens_their_lead_page(
    world: ConsoleWorld, browser: Browser, scene: Scene
) -> None:
    context, page, watch = await new_page(browser, world)
    await sign_in(page, scene.token)
    await nav(page, "Leads").click()
    await page.locator("tr[data-group] a.cell-title").first.click()
    await page.wait_for_url(re.compile(r"/leads/lists/[0-9a-f-]{36}$"))
    member = page.locator("#members tbody tr").first
    lead = await member.get_attribute("data-lead")
    name = member.get_by_role("link", name=re.compile(r"\w")).first
    person = (await name.inner_text()).strip()
    await name.click()
    await page.wait_for_url(re.compile(f"/leads/{lead}$"))
    await expect(page.get_by_role("heading", level=1)).to_have_text(person)
    await expect(page.get_by_role("heading", name="Timeline")).to_be_visible()
    watch.assert_clean()
    await context.close()


async def test_a_stop_hour_before_the_start_hour_is_shown_at_stop_at_in_words(
    world: ConsoleWorld, browser: Browser, scene: Scene
) -> None:
    context, page, watch = await new_page(browser, world)
    watch.allow(r"^/campaigns/new$", 422)
    await sign_in(page, scene.token)
    await nav(page, "Leads").click()
    await page.get_by_role("link", name="Use in a campaign").first.click()
    await page.wait_for_url(re.compile(r"/campaigns/new\?list="))
    await page.get_by_label("Campaign name").fill("Evening window")
    for _ in range(3):
        await page.get_by_role("button", name="Next").click()
    await page.get_by_label("Start at").select_option("18")
    await page.get_by_label("Stop at").select_option("9")
    await page.get_by_role("button", name="Review campaign").click()
    stop = page.locator("#err-end_hour")
    await expect(stop).to_be_visible()  # the builder opened the delivery step at the field that is wrong
    await expect(stop).to_contain_text("end_hour (9) must be after start_hour (18)")
    await expect(stop).not_to_contain_text("Value error")
    await expect(page.get_by_label("Stop at")).to_have_attribute("aria-invalid", "true")
    await expect(page.locator("#err-pace")).to_have_count(0)  # the pace is fine: no message under it
    await expect(page.get_by_label("Start at")).to_have_value("18")  # what was chosen is kept
    await expect(page.get_by_label("Campaign name")).to_have_value("Evening window")
    watch.assert_clean()
    await context.close()


async def test_the_messaging_lab_shows_each_leads_drafts_in_the_order_they_are_sent(
    world: ConsoleWorld, browser: Browser, scene: Scene
) -> None:
    context, page, watch = await new_page(browser, world)
    await sign_in(page, scene.token)
    await page.goto(f"/campaigns/{scene.review_campaign}/lab")
    cards = page.locator("article.draft-card")
    await expect(cards.first).to_be_visible()
    queue = await cards.evaluate_all(
        "cards => cards.map(c => [c.querySelector('a.cell-title').getAttribute('href'), c.dataset.step])"
    )
    order = ["like", "comment", "invite", "message", "follow_up", "email"]
    leads: list[str] = []
    steps: dict[str, list[str]] = {}
    for lead, step in queue:
        if lead not in steps:
            leads.append(lead)
        steps.setdefault(lead, []).append(step)
    assert len(leads) > 1 and any(len(s) > 1 for s in steps.values()), f"a queue worth ordering: {queue}"
    # Each lead's drafts together (one run of cards per lead), in the order the lead receives them.
    runs = [lead for i, (lead, _) in enumerate(queue) if i == 0 or queue[i - 1][0] != lead]
    assert runs == leads, f"a lead's drafts are split up: {queue}"
    for lead, found in steps.items():
        assert found == sorted(found, key=order.index), f"{lead}: {found}"
    watch.assert_clean()
    await context.close()


async def test_a_workspace_without_a_campaign_is_sent_to_the_builder(world: ConsoleWorld, browser: Browser) -> None:
    token = await world.token(FRESH)
    world.scenario(FRESH).connect_account("Lee Park")
    context, page, watch = await new_page(browser, world)
    await sign_in(page, token)
    checklist = page.locator("#checklist")
    await expect(checklist.locator('li[data-step="account_connected"]')).to_have_attribute("data-done", "yes")
    await checklist.get_by_role("link", name="Launch your first campaign").click()
    await page.wait_for_url(re.compile(r"/campaigns/new$"))
    await expect(page.get_by_label("Campaign name")).to_be_visible()
    await nav(page, "Campaigns").click()
    await expect(page.locator("#campaign-table")).to_contain_text("No campaigns yet")
    await expect(page.locator("#campaign-table")).not_to_contain_text("/v1/campaigns")  # no API call to make by hand
    await page.locator("#campaign-table").get_by_role("link", name="Build a campaign").click()
    await page.wait_for_url(re.compile(r"/campaigns/new$"))
    watch.assert_clean()
    await context.close()


async def test_the_workspace_blocklist_is_kept_in_the_console(
    world: ConsoleWorld, browser: Browser, scene: Scene
) -> None:
    # An address that bounced (no lead of the scene has it): the suppression list shows it, read-only.
    bounced = {"kind": "email", "value": "gone@bounced.example", "reason": "bounced"}
    world.api(WORKSPACE, "POST", "outreach", "/v1/suppressions", json=bounced)
    context, page, watch = await new_page(browser, world)
    watch.allow(r"^/blocklist$", 422)
    await sign_in(page, scene.token)
    await nav(page, "Blocklist").click()
    await page.wait_for_url(re.compile(r"/blocklist$"))
    await expect(page.locator("#suppressed")).to_contain_text("gone@bounced.example")
    await expect(page.locator("#suppressed")).to_contain_text("Email bounced")
    kind, value = page.get_by_label("What to block"), page.get_by_label("Domain, email or profile URL")

    # Nothing typed: refused at the field, the kind chosen kept.
    await kind.select_option("email")
    await page.get_by_role("button", name="Block", exact=True).click()
    await expect(page.locator("#err-value")).to_contain_text("Enter the domain, email or LinkedIn profile URL")
    await expect(value).to_have_attribute("aria-invalid", "true")
    await expect(kind).to_have_value("email")

    # A domain as people paste it is stored as outreach normalises it, listed, and read by outreach's check.
    await kind.select_option("domain")
    await value.fill("  https://www.Competitor.example/about ")
    await page.get_by_role("button", name="Block", exact=True).click()
    await page.wait_for_url(re.compile(r"/blocklist\?done=blocked$"))
    row = page.locator('#blocked tr[data-kind="domain"][data-value="competitor.example"]')
    await expect(row).to_contain_text("Domain")
    await assert_labelled(page)
    await assert_fits_phone(page)
    await screenshot(page, "blocklist")
    entries = world.api(WORKSPACE, "GET", "outreach", "/v1/blocklist")["items"]
    assert {"kind": "domain", "value": "competitor.example"} in entries, entries

    await row.get_by_role("button", name="Remove competitor.example from the blocklist").click()
    await page.wait_for_url(re.compile(r"/blocklist\?done=removed$"))
    await expect(page.locator("#blocklist-notice")).to_contain_text("Removed")
    await expect(row).to_have_count(0)
    entries = world.api(WORKSPACE, "GET", "outreach", "/v1/blocklist")["items"]
    assert {"kind": "domain", "value": "competitor.example"} not in entries, entries
    watch.assert_clean()
    await context.close()


async def test_the_plan_is_reachable_from_the_navigation_on_a_phone(
    world: ConsoleWorld, browser: Browser, scene: Scene
) -> None:
    context, page, watch = await new_page(browser, world)
    await sign_in(page, scene.token)
    await page.set_viewport_size(PHONE)
    await page.get_by_role("complementary", name="Main").get_by_role("link", name="Plan & add-ons").click()
    await page.wait_for_url(re.compile(r"/plan$"))
    await expect(page.get_by_role("heading", name="Plan & add-ons", level=1)).to_be_visible()
    await assert_fits_phone(page)
    watch.assert_clean()
    await context.close()
