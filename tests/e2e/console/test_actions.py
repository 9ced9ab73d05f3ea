"""A sales team acts in the browser (part 2), in Chromium on the real services, Kafka and Postgres.

The journey of a new workspace: sign in -> connect a LinkedIn account through the provider's hosted page ->
describe a search, preview it, save 30 leads and watch the progress -> build a Standard connect campaign
with review on, preview its messages, launch it (a double click launches once) -> approve one draft, edit
one (the counter and the API's own message block an over-limit edit), reject one with feedback and see the
new draft -> watch a lead reach "invite sent" on its page -> pause and resume the campaign. Then the other
flows: a CSV with bad rows, the builder's errors next to their fields with nothing lost and an upgrade that
does not interrupt it, an account that needs reconnecting and one deleted under a running campaign (which
then needs review and is resolved by choosing another account).
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from playwright.async_api import Browser, Page, expect

from tests.support.browser import screenshot
from tests.support.console import ConsoleWorld, nav, new_page, preview_messages, sign_in
from tests.support.kafka import wait_for

# Whole journeys through every service: minutes each, more on a loaded machine (the default is 300 s).
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]
expect.set_options(timeout=45_000)

PROMPT = "B2B SaaS companies hiring SDRs in Europe"


async def _new_workspace(world: ConsoleWorld, name: str) -> str:
    return await world.token(f"{name}-{uuid.uuid4().hex[:6]}")


def _campaigns(world: ConsoleWorld, workspace: str) -> list[dict[str, Any]]:
    """The workspace's campaigns as outreach lists them (a first page of 200 is all a test makes)."""
    return list(world.api(workspace, "GET", "outreach", "/v1/campaigns", params={"limit": 200})["items"])


def _drafts(world: ConsoleWorld, workspace: str, campaign: str) -> list[dict[str, Any]]:
    """A campaign's drafts as messaging lists them (the first 200)."""
    return list(
        world.api(workspace, "GET", "messaging", f"/v1/campaigns/{campaign}/drafts", params={"limit": 200})["items"]
    )


def _workspace_of(world: ConsoleWorld, token: str) -> str:
    return next(ws for ws, t in world.tokens.items() if t == token)


async def _connect_through_hosted_page(page: Page, name: str) -> str:
    """Connect a LinkedIn account as a user does: the button, the provider's page, back to the accounts page."""
    await nav(page, "Accounts").click()
    await page.get_by_placeholder("Whose account").fill(name)
    await page.get_by_role("button", name="Connect a LinkedIn account").click()
    await page.wait_for_url(re.compile(r"/sim/linkedin/hosted/"))
    await expect(page.get_by_role("heading", name="Connect your LinkedIn account")).to_be_visible()
    await page.get_by_label("Email or phone").fill("sam@example.com")
    await page.get_by_role("button", name="Connect account").click()
    await page.wait_for_url(re.compile(r"/accounts\?account=.*hosted=connected"))
    account = re.search(r"account=([0-9a-f-]{36})", page.url)
    assert account is not None
    await expect(page.locator("#accounts-notice")).to_contain_text("is connected")
    card = page.locator(f"#account-{account.group(1)}")
    await expect(card).to_have_attribute("data-health", "healthy")  # the projection caught up: live, no reload
    await expect(card).to_contain_text(name)
    return account.group(1)


async def test_a_sales_team_finds_leads_launches_reviews_and_steers_a_campaign(
    world: ConsoleWorld, browser: Browser
) -> None:
    token = await _new_workspace(world, "ws-journey")
    workspace = _workspace_of(world, token)
    context, page, watch = await new_page(browser, world)
    await sign_in(page, token)

    # -- connect an account through the hosted flow ------------------------------------------------------
    account = await _connect_through_hosted_page(page, "Sam Carter")
    await screenshot(page, "accounts-connected")

    # -- describe a search, preview it, save 30 leads and watch the progress ------------------------------
    await nav(page, "Leads").click()
    await expect(page.get_by_text("No saved searches yet")).to_be_visible()
    await page.get_by_role("link", name="Find leads").first.click()
    await page.get_by_role("link", name="Signal discovery").click()
    await page.get_by_label("Discovery prompt").fill(PROMPT)
    await page.get_by_role("button", name="Suggest signals from my prompt").click()
    await expect(page.locator("#signal-fields .notice")).to_contain_text("Hiring plans")
    await expect(page.get_by_label("Hiring plans")).to_be_checked()
    await expect(page.get_by_label("Open jobs")).to_be_checked()
    await expect(page.get_by_label("Location hint")).to_have_value("Europe")
    await page.get_by_role("button", name="Preview matches").click()
    rows = page.locator("#preview-table tbody tr")
    await expect(rows).to_have_count(10)
    first = rows.first
    await expect(first.get_by_role("link", name="LinkedIn profile ↗")).to_have_attribute(
        "href", re.compile(r"^https://www\.linkedin\.com/in/")
    )
    await expect(first.locator(".fit li").first).not_to_be_empty()
    assert await first.locator(".cell-title").inner_text()
    await screenshot(page, "find-leads-preview")
    await page.get_by_label("Search name").fill("SaaS teams hiring SDRs")
    await page.get_by_label("How many leads").fill("30")
    await page.get_by_role("button", name="Save search and start").click()
    await page.wait_for_url(re.compile(r"/leads/searches/[0-9a-f-]{36}$"))
    await expect(page.locator("body")).to_have_attribute("data-live", "on")
    await expect(page.locator('[data-count="members"]')).to_have_text("30")  # filled live, no reload
    await expect(page.locator("#search-progress")).to_have_attribute("data-status", "finished")
    await expect(page.locator("#members tbody tr")).to_have_count(30)
    await screenshot(page, "search-progress")
    await page.get_by_role("link", name="Use in a campaign").click()

    # -- build a Standard connect campaign with review on, preview messages, launch ---------------------
    await page.wait_for_url(re.compile(r"/campaigns/new\?list="))
    await page.get_by_label("Campaign name").fill("SDR hiring wave")
    await expect(page.get_by_label("A lead list")).to_be_checked()
    await expect(page.get_by_label("Lead list", exact=True)).to_contain_text("SaaS teams hiring SDRs")
    await screenshot(page, "builder-audience")
    await page.get_by_role("button", name="Next").click()
    await page.get_by_label("Standard connect").check()
    graph = page.locator("#workflow-graph")
    await expect(graph.locator("[data-step-id]")).to_have_count(3)
    await expect(graph).to_contain_text("accepted + 24 h")
    await page.get_by_label("Invite-to-message wait (hours, 1-168)").fill("48")
    await page.get_by_label("Invite-to-message wait (hours, 1-168)").press("Tab")
    await expect(graph).to_contain_text("accepted + 48 h")
    await screenshot(page, "builder-workflow")
    await page.get_by_role("button", name="Next").click()
    await expect(page.get_by_label("Review every draft in the Messaging Lab before it is sent")).to_be_checked()
    await page.get_by_label("What you offer").fill("an outbound pipeline audit")
    await page.get_by_label("Call to action").fill("Worth a 15-minute call?")
    previews = await preview_messages(page)
    await expect(previews).to_have_count(3)
    invite_preview = previews.first.locator('[data-step="invite"] .count')
    assert int(await invite_preview.get_attribute("data-length") or 999) <= 200
    await expect(invite_preview).to_have_attribute("data-limit", "200")
    await screenshot(page, "builder-messages")
    await page.get_by_role("button", name="Next").click()
    await page.get_by_label("High volume").check()
    await page.get_by_label("Active days").select_option("every_day")
    await page.get_by_label("Start at").select_option("0")
    await page.get_by_label("Stop at").select_option("24")
    await screenshot(page, "builder-delivery")
    await page.get_by_role("button", name="Next").click()
    await expect(page.locator("[data-locked=video]")).to_contain_text("Personalised video is an add-on")
    await page.get_by_role("button", name="Next").click()
    await page.get_by_label(re.compile("Sam Carter")).check()
    await page.get_by_role("button", name="Review campaign").click()
    await page.wait_for_url(re.compile(r"/campaigns/[0-9a-f-]{36}/launch$"))
    campaign = page.url.split("/")[-2]
    await expect(page.locator("#summary")).to_contain_text("SaaS teams hiring SDRs")
    where = page.locator(f'#where li[data-account="{account}"]')
    await expect(where).to_contain_text("30 leads")
    await expect(page.locator("#assignments tbody tr")).to_have_count(12)
    await screenshot(page, "launch-summary")
    await page.get_by_role("button", name="Launch campaign…").click()
    dialog = page.locator("#launch-dialog")
    await expect(dialog).to_be_visible()
    await expect(dialog).to_contain_text("Sam Carter")
    await screenshot(page, "launch-confirm", full_page=False)
    await dialog.get_by_role("button", name="Launch now").dblclick()  # a double click launches once
    await page.wait_for_url(re.compile(f"/campaigns/{campaign}\\?launched=1$"))
    await expect(page.locator("#campaign-notice")).to_contain_text("Launched")
    mine = [c for c in _campaigns(world, workspace) if c["name"] == "SDR hiring wave"]
    assert [c["campaign_id"] for c in mine] == [campaign] and mine[0]["state"] in ("running", "scheduled")
    launches = world.api(workspace, "GET", "projection", f"/v1/campaigns/{campaign}")
    assert launches["state"] in ("running", "scheduled")

    # -- the Messaging Lab: approve, edit (blocked over the limit), reject with feedback -----------------
    await nav(page, "Messaging Lab").click()
    await page.get_by_role("link", name="Review drafts").first.click()
    await page.wait_for_url(re.compile(f"/campaigns/{campaign}/lab$"))

    async def three_invites() -> bool:
        drafts = _drafts(world, workspace, campaign)
        return sum(1 for d in drafts if d["step_id"] == "invite") >= 3

    await wait_for(three_invites, timeout_s=120, interval_s=0.5, what="invite drafts to review")
    await page.reload()
    invites = page.locator('.draft-card[data-status="pending"][data-step="invite"]')
    await expect(invites.nth(2)).to_be_visible()
    approve_id = await invites.nth(0).get_attribute("data-draft")
    edit_id = await invites.nth(1).get_attribute("data-draft")
    reject_id = await invites.nth(2).get_attribute("data-draft")
    await screenshot(page, "messaging-lab")

    # The lead of the draft to approve, open in another tab: its page shows the invite go out, live.
    lead = world.api(workspace, "GET", "messaging", f"/v1/drafts/{approve_id}")["lead_id"]
    lead_page = await context.new_page()
    watch.attach(lead_page)
    await lead_page.goto(f"/leads/{lead}")
    await expect(lead_page.locator("body")).to_have_attribute("data-live", "on")
    await expect(lead_page.locator("#timeline")).not_to_contain_text("Invite sent")
    await lead_page.evaluate("window.__sameDocument = true")

    card = page.locator(f"#draft-{approve_id}")
    await card.get_by_role("button", name="Approve").click()
    await expect(card).to_have_attribute("data-status", "approved")
    card = page.locator(f"#draft-{edit_id}")
    await card.get_by_role("button", name="Edit").click()
    box = card.get_by_role("textbox")
    await expect(box).to_be_focused()  # the edit form is wired up (and a keyboard user types at once)
    await box.fill("Hi {first_name}, " + "we help sales teams hire and ramp SDRs faster. " * 5)
    await expect(card.locator(".counter")).to_have_class(re.compile("over"))
    await expect(card.get_by_role("button", name="Save and approve")).to_be_disabled()
    await expect(card.locator("[data-api-error]")).to_contain_text("over the invite note limit of 200 characters")
    await screenshot(page, "messaging-lab-over-limit", full_page=False)
    good = "Hi {first_name}, saw your team is hiring SDRs. Happy to share how others ramp them faster?"
    await box.fill(good)
    await expect(card.locator("[data-api-ok]")).to_be_visible()
    await card.get_by_role("button", name="Save and approve").click()
    await expect(card).to_have_attribute("data-status", "edited")
    await expect(card.locator("blockquote")).to_contain_text("saw your team is hiring SDRs")
    assert "{first_name}" not in await card.locator("blockquote").inner_text()  # filled for the lead

    card = page.locator(f"#draft-{reject_id}")
    await card.get_by_role("button", name="Reject…").click()
    reason = card.get_by_label("What should the new draft do differently?")
    await expect(reason).to_be_focused()
    await reason.fill("More formal, mention the hiring")
    await card.get_by_role("button", name="Reject and rewrite").click()
    await expect(card).to_have_attribute("data-status", "rejected")
    replacement = card.locator(".replacement")
    await expect(replacement).to_contain_text("New draft written from your feedback")
    await expect(replacement.locator("blockquote")).not_to_have_css("text-decoration-line", "line-through")
    new_id = await replacement.get_attribute("data-replacement")
    assert new_id and new_id != reject_id
    drafted = world.api(workspace, "GET", "messaging", f"/v1/drafts/{new_id}")
    assert drafted["replaces"] == reject_id and drafted["status"] == "pending" and drafted["text"].startswith("Dear")
    await screenshot(page, "messaging-lab-rejected", full_page=False)

    # -- the approved lead's invite goes out, on its open page ---------------------------------------------
    await expect(lead_page.locator("#timeline")).to_contain_text("Invite sent", timeout=120_000)
    await expect(lead_page.get_by_test_id("lead-stage")).not_to_have_text(re.compile("signal matched|queued"))
    assert await lead_page.evaluate("window.__sameDocument === true"), "the lead page reloaded instead of updating"
    await screenshot(lead_page, "lead-invite-sent")
    await lead_page.close()

    # -- pause and resume --------------------------------------------------------------------------------
    await page.goto(f"/campaigns/{campaign}")
    await page.get_by_role("button", name="Pause").click()
    await expect(page.locator("#campaign-notice")).to_contain_text("Paused")
    await expect(page.locator(".page-head .badge").first).to_have_text("Paused")
    await screenshot(page, "campaign-paused")
    await page.get_by_role("button", name="Resume").click()
    await expect(page.locator("#campaign-notice")).to_contain_text("Running again")
    await expect(page.locator(".page-head .badge").first).to_have_text("Running")
    assert world.api(workspace, "GET", "outreach", f"/v1/campaigns/{campaign}")["state"] == "running"
    watch.assert_clean()
    await context.close()


async def test_a_csv_with_bad_rows_reports_each_rows_error_and_imports_the_rest(
    world: ConsoleWorld, browser: Browser, tmp_path: Any
) -> None:
    token = await _new_workspace(world, "ws-csv")
    context, page, watch = await new_page(browser, world)
    await sign_in(page, token)
    csv = tmp_path / "leads.csv"
    csv.write_text(
        "name,linkedin_url,email,company\n"
        "Ada Adler,https://www.linkedin.com/in/ada-adler-1,,Northwind\n"
        "Bo Berg,https://www.example.com/in/bo,,Dataforge\n"
        "Cy Cole,,not-an-email,Bluepeak\n"
        "Di Dunn,,,Fluxio\n"
        "Ed Eng,https://linkedin.com/in/ed-eng-2/,ed@eng.example,Cobalt\n"
        "Ada Again,https://www.linkedin.com/in/ADA-ADLER-1/,,Northwind\n"
    )
    await nav(page, "Leads").click()
    await page.get_by_role("link", name="Import a CSV").click()
    await page.get_by_label("CSV file").set_input_files(str(csv))
    await page.get_by_label("List name").fill("Event attendees")
    await page.get_by_role("button", name="Import").click()
    report = page.locator("#import-report")
    await expect(report.locator('[data-count="rows"]')).to_have_text("6")
    await expect(report.locator('[data-count="imported"]')).to_have_text("2")
    await expect(report.locator('[data-count="rejected"]')).to_have_text("3")
    await expect(report.locator('[data-count="duplicates"]')).to_have_text("1")
    errors = report.locator("#row-errors tbody tr")
    await expect(errors).to_have_count(3)
    await expect(report.locator('tr[data-row="3"]')).to_contain_text("must be a linkedin.com URL")
    await expect(report.locator('tr[data-row="4"]')).to_contain_text("is not a valid email address")
    await expect(report.locator('tr[data-row="5"]')).to_contain_text("a row needs a LinkedIn URL or an email")
    await screenshot(page, "csv-import-report")
    await report.get_by_role("link", name="Open the list").click()
    await expect(page.locator("#members tbody tr")).to_have_count(2)
    # A lead added by hand: the API's refusal shows next to its field, then the lead is added.
    await page.goto("/leads/add")
    watch.allow(r"^/leads/add$", 422)
    await page.get_by_label("LinkedIn profile URL").fill("https://twitter.com/someone")
    await page.get_by_label("Name").fill("Fay Fox")
    await page.get_by_role("button", name="Add the lead").click()
    await expect(page.locator("#err-linkedin_url")).to_contain_text("linkedin.com")
    await expect(page.get_by_label("Name")).to_have_value("Fay Fox")  # nothing typed is lost
    await page.get_by_label("LinkedIn profile URL").fill("https://www.linkedin.com/in/fay-fox-3")
    await page.get_by_role("button", name="Add the lead").click()
    await expect(page.locator("p.notice")).to_contain_text("Added to your")
    watch.assert_clean()
    await context.close()


async def test_builder_errors_stay_next_to_their_fields_and_an_upgrade_does_not_interrupt_setup(
    world: ConsoleWorld, browser: Browser
) -> None:
    token = await _new_workspace(world, "ws-builder")
    workspace = _workspace_of(world, token)
    account = world.api(
        workspace, "POST", "outreach", "/v1/accounts", json={"provider": "linkedin", "display_name": "Lee"}
    )
    context, page, watch = await new_page(browser, world)
    await sign_in(page, token)
    watch.allow(r"^/campaigns/new$", 422)
    watch.allow(r"^/campaigns/[0-9a-f-]+/launch$", 422)
    await page.goto("/campaigns/new")
    await page.get_by_label("Campaign name").fill("Fintech CFOs")
    await page.get_by_label("Discovery prompt").fill("Fintech CFOs planning a finance stack change")
    await page.get_by_label("Tech stack").check()
    await page.get_by_label("Look back (days, 1-30)").fill("45")  # out of range: discovery names the field
    await page.get_by_role("button", name="Workflow").click()
    await page.get_by_label("Warm intro").check()
    await page.get_by_label("Step spacing (minutes, 5-720)").fill("30")
    await page.get_by_role("button", name="Accounts").click()
    await page.get_by_label(re.compile("Lee")).check()
    await page.get_by_role("button", name="Review campaign").click()
    await expect(page.locator("#err-lookback_days")).to_contain_text("between 1 and 30")
    await expect(page.locator("#step-audience")).to_be_visible()  # the step with the error is open
    await expect(page.get_by_label("Campaign name")).to_have_value("Fintech CFOs")  # nothing lost
    await expect(page.get_by_label("Tech stack")).to_be_checked()
    await expect(page.get_by_label("Warm intro")).to_be_checked()
    await expect(page.get_by_label("Step spacing (minutes, 5-720)")).to_have_value("30")
    await screenshot(page, "builder-error")

    # Video is an add-on: the upgrade happens in a dialog, the builder keeps everything.
    await page.get_by_label("Look back (days, 1-30)").fill("14")
    await page.get_by_role("button", name="Video").click()
    await page.get_by_role("button", name="Add the Video add-on").click()
    dialog = page.locator("#upgrade-dialog")
    await expect(dialog).to_contain_text("Personalised video")
    await screenshot(page, "builder-upgrade", full_page=False)
    await dialog.get_by_role("button", name="Upgrade").click()
    await expect(dialog.locator("[data-upgraded]")).to_contain_text("with video")
    await dialog.get_by_role("button", name="Not now").click()
    await page.get_by_label("Attach a personalised video").check()
    await page.locator('input[name="segment_fallback_0"]').fill("friend")
    await expect(page.get_by_label("Campaign name")).to_have_value("Fintech CFOs")
    assert "video" in world.api(workspace, "GET", "outreach", "/v1/plan")["features"]
    # The workflow's spacing out of range comes back from outreach next to its field.
    await page.get_by_role("button", name="Workflow").click()
    await page.get_by_label("Step spacing (minutes, 5-720)").fill("4")
    await page.get_by_role("button", name="Review campaign").click()
    await expect(page.locator("#err-spacing_minutes")).to_contain_text("between 5 and 720")
    await expect(page.get_by_label("Attach a personalised video")).to_be_checked()
    await page.get_by_label("Step spacing (minutes, 5-720)").fill("30")
    await page.get_by_role("button", name="Review campaign").click()
    await page.wait_for_url(re.compile(r"/campaigns/[0-9a-f-]{36}/launch$"))
    await expect(page.locator("#summary")).to_contain_text("greeting ← first name (or “friend”)")
    # The launch guard's range, shown next to the field; the campaign stays pending.
    await page.get_by_label("Invites per day for this launch").fill("90")
    await page.get_by_role("button", name="Launch campaign…").click()
    await page.locator("#launch-dialog").get_by_role("button", name="Launch now").click()
    await expect(page.locator("#err-daily_limit")).to_contain_text("between 1 and 79")
    await expect(page.get_by_label("Invites per day for this launch")).to_have_value("90")
    campaigns = [c for c in _campaigns(world, workspace) if c["name"] == "Fintech CFOs"]
    assert (
        len(campaigns) == 1
        and campaigns[0]["state"] == "pending"
        and campaigns[0]["account_ids"] == [account["account_id"]]
    )
    await screenshot(page, "launch-guard")
    watch.assert_clean()
    await context.close()


async def test_accounts_reconnect_delete_and_a_campaign_that_needs_review_is_resolved(
    world: ConsoleWorld, browser: Browser
) -> None:
    token = await _new_workspace(world, "ws-accounts")
    workspace = _workspace_of(world, token)
    demo = world.scenario(workspace)
    old = demo.connect_account("Old Account")
    new = demo.connect_account("New Account")
    campaign, _ = demo.launch_campaign("Needs a new account", old, leads=4, prompt="Fintech CFOs in London")
    context, page, watch = await new_page(browser, world)
    await sign_in(page, token)

    # A provider status webhook asks for a reconnect: the hosted reconnect brings the account back.
    assert world.account_status_webhook(old, "CREDENTIALS").status_code == 200
    await nav(page, "Accounts").click()
    card = page.locator(f"#account-{old}")
    await expect(card).to_have_attribute("data-health", "reconnect_required")
    await screenshot(page, "accounts-reconnect")
    await card.get_by_role("button", name="Reconnect").click()
    await page.wait_for_url(re.compile(r"/sim/linkedin/hosted/"))
    await expect(page.get_by_role("heading", name="Reconnect your LinkedIn account")).to_be_visible()
    await page.get_by_role("button", name="Reconnect account").click()
    await page.wait_for_url(re.compile(r"/accounts\?.*hosted=reconnected"))
    await expect(page.locator(f"#account-{old}")).to_have_attribute("data-health", "healthy")

    # A connection whose hosted page was left: "Check again" asks the provider.
    pending = world.api(workspace, "POST", "outreach", "/v1/accounts", json={"provider": "linkedin", "hosted": True})
    await page.reload()
    card = page.locator(f"#account-{pending['account_id']}")
    await expect(card).to_have_attribute("data-health", "pending")
    await card.get_by_role("button", name="Check again").click()
    await expect(page.locator("#accounts-notice")).to_contain_text("still says pending")

    # Deleting the campaign's only account: the campaign needs review; choosing another account resolves it.
    card = page.locator(f"#account-{old}")
    await card.get_by_role("button", name="Delete…").click()
    await expect(page.locator(f"#delete-{old}")).to_contain_text("Needs a new account")
    await page.locator(f"#delete-{old}").get_by_role("button", name="Delete the account").click()
    await expect(page.locator("#accounts-notice")).to_contain_text("was deleted")
    await page.goto(f"/campaigns/{campaign}")
    resolve = page.locator("#resolve")
    await expect(resolve).to_contain_text("was deleted")
    await screenshot(page, "campaign-needs-review")
    await resolve.get_by_label(re.compile("New Account")).check()
    await resolve.get_by_role("button", name="Send from these accounts").click()
    await expect(page.locator("#campaign-notice")).to_contain_text("accounts you chose")
    await expect(page.locator("#resolve")).to_have_count(0)
    details = world.api(workspace, "GET", "outreach", f"/v1/campaigns/{campaign}")
    assert details["state"] == "running" and details["account_ids"] == [new]

    # Deleting the campaign says what it releases first.
    await page.get_by_role("button", name="Delete…").click()
    dialog = page.locator("#delete-campaign")
    await expect(dialog).to_contain_text("the lease on 1 LinkedIn account (New Account)")
    await screenshot(page, "campaign-delete", full_page=False)
    await dialog.get_by_role("button", name="Delete the campaign").click()
    await page.wait_for_url(re.compile(r"/campaigns\?done=deleted$"))
    assert campaign not in [c["campaign_id"] for c in _campaigns(world, workspace)]
    watch.assert_clean()
    await context.close()
