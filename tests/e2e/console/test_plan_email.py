"""Plan gates, the email fallback behind its confirmations, and bulk approval, in Chromium on the real services."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from playwright.async_api import Browser, expect

from tests.support.browser import assert_fits_phone, assert_labelled, screenshot
from tests.support.console import ConsoleWorld, nav, new_page, preview_messages, sign_in
from tests.support.kafka import wait_for

# Whole journeys through every service: minutes each, more on a loaded machine (the default is 300 s).
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]
LIMIT = {"limit": 200}
"""A first page of a list: all a test makes."""
expect.set_options(timeout=45_000)


async def test_plan_gates_the_email_sender_and_the_email_fallback_is_confirmed_before_it_sends(
    world: ConsoleWorld, browser: Browser
) -> None:
    """A Starter workspace: the email sender is refused with the upgrade next to the field; after the upgrade the
    builder's email fallback asks for a confirmation (by keyboard), shows the dry-run badge, and the launch
    needs it confirmed once more. Also: a LinkedIn search URL as the source, the workflow's validation warnings,
    the live character counters, an inactive account shown as skipped, and bulk approval in the Lab."""
    workspace = f"ws-email-{uuid.uuid4().hex[:6]}"
    token = await world.token(workspace)
    sender = world.api(
        workspace, "POST", "outreach", "/v1/accounts", json={"provider": "linkedin", "display_name": "Rae Sender"}
    )
    tired = world.api(
        workspace, "POST", "outreach", "/v1/accounts", json={"provider": "linkedin", "display_name": "Old Tired"}
    )
    assert world.account_status_webhook(tired["account_id"], "CREDENTIALS").status_code == 200
    context, page, watch = await new_page(browser, world)
    watch.allow(r"^/accounts/email$", 422)
    watch.allow(r"^/campaigns/[0-9a-f-]+/launch$", 422)
    await sign_in(page, token)

    # -- the plan gate: a clear refusal next to the field, an explicit upgrade, then it works ------------------
    await nav(page, "Accounts").click()
    await page.get_by_label("Sender address").fill("sales@northwind.example")
    await page.get_by_role("button", name="Connect an email sender").click()
    await expect(page.locator("#err-sender")).to_contain_text("Scale")
    await assert_labelled(page)
    await expect(page.get_by_label("Sender address")).to_have_value("sales@northwind.example")
    await screenshot(page, "plan-gate-email-sender")
    await page.locator("#err-sender").get_by_role("link").click()
    await page.wait_for_url(re.compile(r"/plan$"))
    await page.get_by_role("button", name="Upgrade to Scale").click()
    await expect(page.get_by_test_id("plan-label")).to_have_text("Scale")
    await expect(page.locator("main")).to_contain_text("Upgraded. The new features are available now.")
    await screenshot(page, "plan")
    # A message in a link made elsewhere is not shown: the console signs the refusals it shows after a redirect.
    await page.goto("/plan?problem=Your+plan+expired:+pay+at+evil.example")
    await expect(page.get_by_test_id("plan-label")).to_have_text("Scale")
    await expect(page.locator("main")).not_to_contain_text("evil.example")
    await nav(page, "Accounts").click()
    await page.get_by_label("Sender address").fill("sales@northwind.example")
    await page.get_by_role("button", name="Connect an email sender").click()
    await expect(page.locator("#accounts-notice")).to_contain_text("email sender is connected")
    await expect(page.locator("#senders")).to_contain_text("Dry run")
    await expect(page.locator(f"#account-{tired['account_id']}")).to_have_attribute("data-health", "reconnect_required")

    # -- a LinkedIn search URL as the source: preview, save, filled live -------------------------------------
    await nav(page, "Leads").click()
    await page.get_by_role("link", name="Find leads").first.click()
    await (
        page.get_by_role("navigation", name="Ways to find leads")
        .get_by_role("link", name="LinkedIn search URL")
        .click()
    )
    await page.get_by_label("LinkedIn people search URL").fill(
        "https://www.linkedin.com/search/results/people/?keywords=head%20of%20finance"
    )
    await page.get_by_role("button", name="Preview matches").click()
    await expect(page.locator("#preview-table tbody tr").first).to_be_visible()
    await assert_labelled(page)
    await page.get_by_label("Search name").fill("Heads of finance")
    await page.get_by_label("How many leads").fill("6")
    await page.get_by_role("button", name="Save search and start").click()
    await page.wait_for_url(re.compile(r"/leads/searches/[0-9a-f-]{36}$"))
    await expect(page.locator('[data-count="members"]')).to_have_text("6")
    await assert_fits_phone(page)
    await page.get_by_role("link", name="Use in a campaign").click()

    # -- the builder ---------------------------------------------------------------------------------------
    await page.wait_for_url(re.compile(r"/campaigns/new\?list="))
    await page.get_by_label("Campaign name").fill("Finance heads, email fallback")
    await assert_fits_phone(page)
    await page.get_by_role("button", name="Workflow").click()
    graph = page.locator("#workflow-graph")
    await expect(graph.locator("[data-step-id]")).to_have_count(3)
    await assert_labelled(page)
    await expect(page.locator("#workflow-warnings")).to_have_count(0)
    # Leave the first message out: the follow-up that came after it cannot run, and the graph says so.
    await graph.get_by_role("checkbox", name="First message").check()
    await expect(page.locator("#workflow-warnings")).to_contain_text("'follow_up' is unreachable")
    await expect(graph.locator('.node-off[data-step-id="follow_up"]')).to_have_count(1)
    await screenshot(page, "builder-workflow-warnings")
    await graph.get_by_role("checkbox", name="First message").uncheck()
    await expect(page.locator("#workflow-warnings")).to_have_count(0)

    await page.get_by_role("button", name="Messages").click()
    body = page.get_by_label("Template text")
    counter = page.locator("#template-counter")
    await body.fill("x" * 150)
    await expect(counter.locator("[data-count]")).to_have_text("150")
    await assert_labelled(page)
    await expect(counter.locator('[data-limit="video"]')).to_have_class(re.compile("over"))
    await expect(counter.locator('[data-limit="invite"]')).not_to_have_class(re.compile("over"))
    await body.fill("x" * 201)
    await expect(counter.locator('[data-limit="invite"]')).to_have_class(re.compile("over"))
    await expect(counter.locator('[data-limit="message"]')).not_to_have_class(re.compile("over"))
    await body.fill("x" * 501)
    await expect(counter.locator('[data-limit="message"]')).to_have_class(re.compile("over"))
    await page.get_by_label("Hiring manager").check()  # another template: its own text replaces what was typed
    await expect(body).to_have_value(re.compile(r"^I work with hiring managers"))
    await expect(counter.locator(".over")).to_have_count(0)

    # Delivery, by keyboard: the fallback's checkbox opens its confirmation; Tab, Enter turns it on.
    await page.get_by_role("button", name="Delivery").click()
    await page.get_by_role("radio", name=re.compile("^Manual")).check()
    await page.locator("#daily_limit").fill("25")
    await expect(page.get_by_test_id("dry-run")).to_be_visible()
    fallback = page.get_by_label("Email leads who do not accept the invite")
    await fallback.focus()
    await page.keyboard.press("Space")
    dialog = page.locator("#email-dialog")
    await expect(dialog).to_be_visible()
    await screenshot(page, "builder-email-confirm", full_page=False)
    await page.keyboard.press("Escape")  # leaving the dialog without confirming keeps it off
    await expect(dialog).to_be_hidden()
    await expect(fallback).not_to_be_checked()
    await fallback.focus()
    await page.keyboard.press("Space")
    await expect(dialog).to_be_visible()
    await dialog.get_by_role("button", name="Turn on the email fallback").focus()
    await page.keyboard.press("Enter")
    await expect(dialog).to_be_hidden()
    await expect(fallback).to_be_checked()
    await page.get_by_label("Verified sender").select_option("sales@northwind.example")
    await page.get_by_label("Subject").fill("An idea for {first_name|you}")
    await page.get_by_label("Body").fill("Hi {first_name|there}, one short idea on finance operations. Worth a look?")
    await expect(graph.locator('[data-step-id="email"]')).to_have_count(1)  # the graph gained the email step
    await screenshot(page, "builder-email-fallback")
    await assert_labelled(page)

    await page.get_by_role("button", name="Accounts").click()
    await expect(page.locator("[data-skipped]")).to_contain_text("Skipped at launch")
    await assert_labelled(page)
    await page.get_by_label(re.compile("Rae Sender")).check()
    await page.get_by_label(re.compile("Old Tired")).check()
    await page.get_by_role("button", name="Review campaign").click()
    await page.wait_for_url(re.compile(r"/campaigns/[0-9a-f-]{36}/launch$"))
    campaign = page.url.split("/")[-2]
    await expect(page.get_by_test_id("dry-run")).to_be_visible()
    await assert_fits_phone(page)
    await assert_labelled(page)

    # The launch needs the email fallback confirmed: the API's refusal next to the checkbox, nothing launched.
    await page.get_by_role("button", name="Launch campaign…").click()
    launch = page.locator("#launch-dialog")
    await expect(launch.locator("li", has_text="Old Tired")).to_contain_text("skipped")
    await launch.get_by_role("button", name="Launch now").click()
    await expect(page.locator("#err-confirm_email_fallback")).to_contain_text("must be true")
    assert world.api(workspace, "GET", "outreach", f"/v1/campaigns/{campaign}")["state"] == "pending"
    await page.get_by_label(re.compile("I confirm: leads who do not accept get an email")).check()
    await page.get_by_role("button", name="Launch campaign…").click()
    await launch.get_by_role("button", name="Launch now").click()
    await page.wait_for_url(re.compile(f"/campaigns/{campaign}\\?launched=1$"))
    details = world.api(workspace, "GET", "outreach", f"/v1/campaigns/{campaign}")
    assert details["state"] in ("running", "scheduled")
    assert details["delivery"]["email_fallback"]["sender_email"] == "sales@northwind.example"
    assert tired["account_id"] in details["skipped_accounts"] and sender["account_id"] in details["account_ids"]

    # -- bulk approval in the Messaging Lab ---------------------------------------------------------------
    async def drafts() -> list[dict[str, Any]]:
        path = f"/v1/campaigns/{campaign}/drafts"
        found = world.api(workspace, "GET", "messaging", path, params=LIMIT)["items"]
        return [d for d in found if d["status"] == "pending"]

    async def two_drafts() -> bool:
        return len(await drafts()) >= 2

    await wait_for(two_drafts, timeout_s=120, interval_s=0.5, what="drafts to review")
    await page.goto(f"/campaigns/{campaign}/lab")
    cards = page.locator('.draft-card[data-status="pending"]')
    await expect(cards.nth(1)).to_be_visible()
    await assert_labelled(page)
    await page.get_by_role("button", name="Approve selected").click()
    await expect(page.locator("main")).to_contain_text("Tick the drafts to approve first")
    ticked = [await cards.nth(i).get_attribute("data-draft") for i in (0, 1)]
    await cards.nth(0).get_by_role("checkbox").check()
    await cards.nth(1).get_by_role("checkbox").check()
    await expect(page.locator("[data-selected-count]")).to_have_text("2 selected")
    await page.get_by_role("button", name="Approve selected").click()
    await expect(page.locator("main")).to_contain_text("Approved 2 drafts")
    for draft_id in ticked:
        assert world.api(workspace, "GET", "messaging", f"/v1/drafts/{draft_id}")["status"] == "approved"
        await expect(page.locator(f"#draft-{draft_id}")).to_have_count(0)
    await assert_fits_phone(page)
    rest = await page.locator('.draft-card[data-status="pending"]').evaluate_all("els => els.map(e => e.dataset.draft)")
    if rest:
        await page.get_by_role("button", name=re.compile(r"^Approve all")).click()
        await expect(page.locator("main .notice")).to_contain_text("Approved")
        for draft_id in rest:
            assert world.api(workspace, "GET", "messaging", f"/v1/drafts/{draft_id}")["status"] == "approved"
    watch.assert_clean()
    await context.close()


async def test_recent_posts_are_previewed_and_a_csv_is_a_campaigns_audience(
    world: ConsoleWorld, browser: Browser, tmp_path: Any
) -> None:
    """Find leads from recent posts on the web; in the builder, a CSV upload with a bad row becomes the audience
    (its report shown in place), the messages are previewed for its leads, and the summary names the list."""
    workspace = f"ws-csv-builder-{uuid.uuid4().hex[:6]}"
    token = await world.token(workspace)
    world.api(workspace, "POST", "outreach", "/v1/accounts", json={"provider": "linkedin", "display_name": "Noa"})
    context, page, watch = await new_page(browser, world)
    await sign_in(page, token)

    await page.goto("/leads/find?mode=posts")
    await page.get_by_label("Intent or pain language").fill("outbound is broken, SDR ramp")
    await page.get_by_label("Signal source").select_option("web")
    await page.get_by_role("button", name="Preview matches").click()
    rows = page.locator("#preview-table tbody tr")
    await expect(rows.first).to_be_visible()
    await expect(rows.first.locator(".fit li").first).not_to_be_empty()
    await screenshot(page, "find-leads-posts")

    csv = tmp_path / "audience.csv"
    csv.write_text(
        "name,linkedin_url,company,title\n"
        "Ines Ortiz,https://www.linkedin.com/in/ines-ortiz-7,Northwind,Head of Sales\n"
        "Tom Berg,https://www.linkedin.com/in/tom-berg-8,Dataforge,VP Sales\n"
        "No Url,,Nowhere,CEO\n"
    )
    await page.goto("/campaigns/new")
    await page.get_by_label("Campaign name").fill("Imported sales leaders")
    await page.get_by_label("CSV import").check()
    await page.get_by_label("CSV file").set_input_files(str(csv))
    await page.get_by_role("button", name="Upload").click()
    report = page.locator("#csv-report #import-report")
    await expect(report.locator('[data-count="imported"]')).to_have_text("2")
    await expect(report.locator('tr[data-row="4"]')).to_contain_text("LinkedIn URL or an email")
    group = await report.get_attribute("data-group")
    await expect(page.locator("#csv-group")).to_have_value(group or "missing")
    await assert_fits_phone(page)
    await screenshot(page, "builder-csv-audience")
    await page.get_by_role("button", name="Messages").click()
    previews = await preview_messages(page)
    await expect(previews).to_have_count(2)
    await expect(previews.first.locator('[data-step="invite"] .count')).to_have_attribute("data-limit", "200")
    await page.get_by_role("button", name="Accounts").click()
    await page.get_by_label(re.compile("Noa")).check()
    await page.get_by_role("button", name="Review campaign").click()
    await page.wait_for_url(re.compile(r"/campaigns/[0-9a-f-]{36}/launch$"))
    campaign = page.url.split("/")[-2]
    details = world.api(workspace, "GET", "outreach", f"/v1/campaigns/{campaign}")
    assert details["audience"] == {"type": "source_group", "ref": group}
    await expect(page.locator("#summary")).to_contain_text("2 leads")
    watch.assert_clean()
    await context.close()
