"""What the last walkthrough of the console left, each as a sales user meets it (Chromium, the real services,
Kafka and Postgres):

- a lead list longer than a page pages on and back to its first page, as every long list does;
- a lead's page names each written step as the Messaging Lab does ("Follow-up", not "Message · step follow_up");
- home's empty "Campaign health" panel says what the workspace's next step really is;
- the Messaging Lab's index lists the campaigns without drafts waiting too, each with its way in;
- a draft rejected, edited or approved while messaging does not answer: the error shows at the form and the
  words typed stay; the same for the other forms that post to a backend (add lead, blocklist, accounts, builder);
- a lead's page blocks the lead's company domain, email or LinkedIn profile in one confirmed click;
- the builder's requests made while it is filled in (suggested signals, the CSV upload, the workflow redrawn, the
  plan's steps after an upgrade) say a service's silence at their own step, keep what was typed, and try again;
- a step closed while it shows an error (a request's, or a refused review's field) has its tab in the stepper marked,
  which opens the step at the message, until the error is gone.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, BrowserContext, Page, Route, expect

from services.console import domain
from tests.support.browser import DESKTOP, PageWatch, screenshot
from tests.support.console import ConsoleWorld, console_through, import_leads, new_page, new_workspace, sign_in

from .conftest import PAGE_SIZE, WORKSPACE, Scene

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]
expect.set_options(timeout=45_000)


async def test_a_lead_list_longer_than_a_page_pages_on_and_back_to_the_first_page(
    world: ConsoleWorld, browser: Browser
) -> None:
    workspace, token = await new_workspace(world, "ws-list-pages")
    people = PAGE_SIZE + 3
    group = import_leads(world, workspace, "Paging", people)
    context, page, watch = await new_page(browser, world)
    await sign_in(page, token)
    await page.goto(f"/leads/lists/{group}")
    rows = page.locator("#members tbody tr")
    await expect(rows).to_have_count(PAGE_SIZE)
    first = await rows.evaluate_all("rows => rows.map(r => r.dataset.lead)")
    pages = page.get_by_role("navigation", name="List pages")
    await expect(pages.get_by_role("link", name="First page")).to_have_count(0)  # already on it
    await pages.get_by_role("link", name="Next page").click()
    await page.wait_for_url(re.compile(r"/leads/lists/[0-9a-f-]{36}\?after=\d+$"))
    await expect(rows).to_have_count(people - PAGE_SIZE)
    second = await rows.evaluate_all("rows => rows.map(r => r.dataset.lead)")
    assert not set(first) & set(second), "the second page repeats the first"
    await expect(pages.get_by_role("link", name="Next page")).to_have_count(0)  # nothing after the last page
    await pages.get_by_role("link", name="First page").click()
    await page.wait_for_url(re.compile(f"/leads/lists/{group}$"))
    await expect(rows).to_have_count(PAGE_SIZE)
    assert await rows.evaluate_all("rows => rows.map(r => r.dataset.lead)") == first
    watch.assert_clean()
    await context.close()


def _pending_drafts(world: ConsoleWorld, campaign: str) -> list[dict[str, Any]]:
    """A campaign's drafts waiting for review, as messaging lists them."""
    path = f"/v1/campaigns/{campaign}/drafts"
    return list(world.api(WORKSPACE, "GET", "messaging", path, params={"status": "pending", "limit": 200})["items"])


async def test_a_leads_page_names_each_step_as_the_messaging_lab_does(
    world: ConsoleWorld, browser: Browser, scene: Scene
) -> None:
    draft = _pending_drafts(world, scene.review_campaign)[0]
    lead, step = draft["lead_id"], draft["step_id"]
    name = domain.step_name(step, draft.get("channel"))
    context, page, watch = await new_page(browser, world)
    await sign_in(page, scene.token)
    await page.goto(f"/campaigns/{scene.review_campaign}/lab")
    card = page.locator(f'article.draft-card[data-draft="{draft["draft_id"]}"]')
    await expect(card.locator(".cell-sub")).to_contain_text(name)  # the Lab's name of the step
    await page.goto(f"/leads/{lead}")
    written = page.locator(f'#lead-live article.draft[data-step="{step}"]').first
    await expect(written.locator("strong").first).to_have_text(name)  # the same name on the lead's page
    await expect(written).not_to_contain_text(f"step {step}")  # no raw step id beside it
    watch.assert_clean()
    await context.close()


async def test_homes_empty_campaign_health_offers_the_workspaces_real_next_step(
    world: ConsoleWorld, browser: Browser
) -> None:
    workspace, token = await new_workspace(world, "ws-home-next")
    context, page, watch = await new_page(browser, world)
    await sign_in(page, token)
    health = page.locator("#health-next")
    await expect(health.get_by_role("link", name="Connect a LinkedIn account")).to_have_attribute("href", "/accounts")
    world.scenario(workspace).connect_account("Noa Weiss")
    # Home is live: once the projection has the account, the panel's next step is a campaign, not the accounts.
    await expect(health.get_by_role("link", name="Build a campaign")).to_have_attribute("href", "/campaigns/new")
    await expect(health).not_to_contain_text("accounts")
    await health.get_by_role("link", name="Build a campaign").click()
    await page.wait_for_url(re.compile(r"/campaigns/new$"))
    watch.assert_clean()
    await context.close()


async def test_a_draft_decided_while_messaging_does_not_answer_keeps_the_words_typed(
    world: ConsoleWorld, browser: Browser, scene: Scene, tmp_path: Path
) -> None:
    async with console_through(world, tmp_path, "messaging") as (url, proxies):
        context, page, watch = await new_page(browser, world, url)
        for verb in ("approve", "edit", "reject"):
            watch.allow(rf"^/lab/drafts/[0-9a-f-]{{36}}/{verb}$", 503)
        await sign_in(page, scene.token)
        await page.goto(f"/campaigns/{scene.review_campaign}/lab")
        cards = page.locator("article.draft-card")
        await expect(cards.nth(2)).to_be_visible()
        rejected, edited, approved = cards.nth(0), cards.nth(1), cards.nth(2)
        ids = [await c.get_attribute("data-draft") for c in (rejected, edited, approved)]
        await rejected.get_by_role("button", name="Reject…").click()
        feedback = rejected.get_by_label("What should the new draft do differently?")
        await feedback.fill("Shorter, and mention their hiring post")
        await edited.get_by_role("button", name="Edit").click()
        text = edited.get_by_role("textbox")
        # Typing asks messaging for its verdict on the text 350 ms later: that check answers before the cut. Sent after
        # the save's error, it took that message away (its request clears the form's) and showed its own in its place.
        async with page.expect_response(lambda r: r.url.endswith("/check")):
            await text.fill("Hi, a short note of my own.")

        await proxies["messaging"].cut()  # messaging stops answering this console
        said = "messaging service did not answer. What you typed is kept"
        await rejected.get_by_role("button", name="Reject and rewrite").click()
        await expect(rejected.locator("[data-request-error]")).to_contain_text(said)
        await expect(feedback).to_have_value("Shorter, and mention their hiring post")
        await edited.get_by_role("button", name="Save and approve").click()
        await expect(edited.locator("[data-request-error]")).to_contain_text(said)
        await expect(text).to_have_value("Hi, a short note of my own.")
        await approved.get_by_role("button", name="Approve").click()
        await expect(approved.locator("[data-request-error]")).to_contain_text(said)
        await expect(approved).to_have_attribute("data-status", "pending")
        await expect(page.locator("body")).not_to_contain_text("Traceback")
        drafts = {d["draft_id"]: d["status"] for d in _pending_drafts(world, scene.review_campaign)}
        assert all(drafts.get(i) == "pending" for i in ids), drafts  # nothing was decided

        await proxies["messaging"].start()  # back: the same click, with the words kept, goes through
        await rejected.get_by_role("button", name="Reject and rewrite").click()
        await expect(rejected.locator("[data-replacement]")).to_be_visible()
        await expect(rejected.locator("[data-request-error]")).to_have_count(0)
        watch.assert_clean()
        await context.close()


async def test_forms_posting_to_outreach_keep_what_was_typed_when_it_does_not_answer(
    world: ConsoleWorld, browser: Browser, tmp_path: Path
) -> None:
    workspace, token = await new_workspace(world, "ws-outreach-down")
    async with console_through(world, tmp_path, "outreach") as (url, proxies):
        outreach = proxies["outreach"]
        context, page, watch = await new_page(browser, world, url)
        watch.allow(r"^/blocklist$", 503)
        watch.allow(r"^/accounts/(email|connect)$", 503)
        # The account list's live refresh (when the page's event stream opens again) while outreach is cut: htmx
        # keeps the list it shows.
        watch.allow(r"^/accounts$", 503)
        await sign_in(page, token)
        said = "outreach service did not answer. What you typed is kept"

        await page.goto("/blocklist")
        await page.get_by_label("What to block").select_option("email")
        await page.get_by_label("Domain, email or profile URL").fill("never@client.example")
        await outreach.cut()
        await page.get_by_role("button", name="Block", exact=True).click()
        await expect(page.locator("#err-form")).to_contain_text(said)
        await expect(page.get_by_label("Domain, email or profile URL")).to_have_value("never@client.example")
        await expect(page.get_by_label("What to block")).to_have_value("email")
        await expect(page.locator("main")).not_to_contain_text("Traceback")
        await expect(page.locator("main")).not_to_contain_text('{"')

        await outreach.start()
        await page.goto("/accounts")
        await page.get_by_label("Sender address").fill("sales@acme.example")
        await page.get_by_label("Name of the account").fill("Sam Carter")
        await outreach.cut()
        await page.get_by_role("button", name="Connect a LinkedIn account").click()  # htmx: the page stays
        connect = page.locator("form.connect-form")
        await expect(connect.locator("[data-request-error]")).to_contain_text(said)
        await expect(page.get_by_label("Name of the account")).to_have_value("Sam Carter")
        await expect(page.get_by_label("Sender address")).to_have_value("sales@acme.example")
        await page.get_by_role("button", name="Connect an email sender").click()  # a page: drawn again, kept
        await expect(page.locator("#err-sender")).to_contain_text(said)
        await expect(page.get_by_label("Sender address")).to_have_value("sales@acme.example")
        await expect(page.locator("main")).not_to_contain_text("Traceback")
        await outreach.start()
        assert world.api(workspace, "GET", "outreach", "/v1/blocklist")["items"] == []
        watch.assert_clean()
        await context.close()


async def test_add_lead_and_the_builder_keep_what_was_typed_when_a_service_does_not_answer(
    world: ConsoleWorld, browser: Browser, tmp_path: Path
) -> None:
    workspace, token = await new_workspace(world, "ws-writers-down")
    group = import_leads(world, workspace, "Builder", 3)
    async with console_through(world, tmp_path, "discovery", "messaging") as (url, proxies):
        context, page, watch = await new_page(browser, world, url)
        watch.allow(r"^/leads/add$", 503)
        watch.allow(r"^/campaigns/new$", 503)
        await sign_in(page, token)

        await page.goto("/leads/add")
        await page.get_by_label("LinkedIn profile URL").fill("https://www.linkedin.com/in/ines-ortega")
        await page.get_by_label("Name", exact=True).fill("Inés Ortega")
        await proxies["discovery"].cut()
        await page.get_by_role("button", name="Add the lead").click()
        await expect(page.get_by_role("alert")).to_contain_text("discovery service did not answer")
        await expect(page.get_by_label("LinkedIn profile URL")).to_have_value("https://www.linkedin.com/in/ines-ortega")
        await expect(page.get_by_label("Name", exact=True)).to_have_value("Inés Ortega")
        await proxies["discovery"].start()

        await page.goto(f"/campaigns/new?list={group}")
        await page.get_by_label("Campaign name").fill("Kept through an outage")
        for _ in range(2):
            await page.get_by_role("button", name="Next").click()
        body = "Hi {first_name}, a note written by hand for this campaign."
        await page.get_by_label("Template text").fill(body)
        await proxies["messaging"].cut()  # the campaign's own template is saved by messaging first
        await page.get_by_role("button", name="Review campaign").click()
        await expect(page.locator("#err-form")).to_contain_text("messaging service did not answer")
        # said once, at the top of the form (the workflow's box showed every message of the form again)
        await expect(
            page.get_by_role("alert", include_hidden=True).filter(has_text="messaging service did not answer")
        ).to_have_count(1)
        await expect(page.get_by_label("Campaign name")).to_have_value("Kept through an outage")
        await expect(page.get_by_label("Template text")).to_have_value(body)
        await expect(page.locator("main")).not_to_contain_text("Traceback")
        assert world.api(workspace, "GET", "outreach", "/v1/campaigns")["items"] == []
        watch.assert_clean()
        await context.close()


async def test_a_leads_page_blocks_the_lead_in_one_confirmed_click(
    world: ConsoleWorld, browser: Browser, scene: Scene
) -> None:
    results = world.api(WORKSPACE, "GET", "projection", f"/v1/campaigns/{scene.campaign}/results", params={"limit": 50})
    leads = [world.api(WORKSPACE, "GET", "projection", f"/v1/leads/{r['lead_id']}") for r in results["items"]]
    lead = next(x for x in leads if x.get("email") and x.get("linkedin_url"))
    context, page, watch = await new_page(browser, world)
    await sign_in(page, scene.token)
    await page.goto(f"/leads/{lead['lead_id']}")
    await page.get_by_role("button", name="Block…").click()
    dialog = page.get_by_role("dialog", name=re.compile("^Block "))
    await expect(dialog.get_by_role("radio", name=re.compile(re.escape(lead["email"])))).to_be_checked()
    await expect(dialog.get_by_role("radio", name="This LinkedIn profile")).to_be_visible()
    await dialog.get_by_role("button", name="Cancel").click()  # a way out: nothing is blocked
    await expect(dialog).to_be_hidden()
    assert {"kind": "email", "value": lead["email"].lower()} not in _blocklist(world)
    await page.get_by_role("button", name="Block…").click()
    await dialog.get_by_role("button", name="Block", exact=True).click()
    await page.wait_for_url(re.compile(f"/leads/{lead['lead_id']}\\?blocked=email$"))
    await expect(page.locator("#lead-notice")).to_contain_text(f"Blocked {lead['email']}")
    try:
        assert {"kind": "email", "value": lead["email"].lower()} in _blocklist(world)
        await page.locator("#lead-notice").get_by_role("link", name="See the blocklist").click()
        await expect(page.locator("#blocked")).to_contain_text(lead["email"].lower())
    finally:  # the scene's lead is contacted again by the other tests' campaign
        world.api(WORKSPACE, "DELETE", "outreach", "/v1/blocklist", params={"kind": "email", "value": lead["email"]})
    watch.assert_clean()
    await context.close()


def _blocklist(world: ConsoleWorld) -> list[dict[str, str]]:
    return list(world.api(WORKSPACE, "GET", "outreach", "/v1/blocklist", params={"limit": 200})["items"])


def _campaigns(world: ConsoleWorld, workspace: str) -> list[dict[str, Any]]:
    return list(world.api(workspace, "GET", "outreach", "/v1/campaigns", params={"limit": 200})["items"])


async def test_the_builder_keeps_every_choice_when_outreach_and_discovery_do_not_answer(
    world: ConsoleWorld, browser: Browser, tmp_path: Path
) -> None:
    workspace, token = await new_workspace(world, "ws-builder-down")
    account = world.scenario(workspace).connect_account("Ada Lane")
    group = import_leads(world, workspace, "Outage", 3)
    async with console_through(world, tmp_path, "outreach", "discovery") as (url, proxies):
        context, page, watch = await new_page(browser, world, url)
        watch.allow(r"^/campaigns/new$", 503)
        await sign_in(page, token)
        await page.goto(f"/campaigns/new?list={group}")
        await page.get_by_label("Campaign name").fill("Down but not lost")
        await page.get_by_role("button", name="Workflow").click()
        await page.get_by_label("Warm intro").check()
        await page.get_by_label("Step spacing (minutes, 5-720)").fill("45")
        await page.get_by_role("button", name="Messages").click()
        await page.get_by_label("What you offer").fill("a finance stack audit")
        await page.get_by_role("button", name="Delivery").click()
        await page.get_by_role("radio", name=re.compile("^Manual")).check()
        await page.get_by_label("Invites per day", exact=True).fill("25")
        await page.get_by_label("Start at").select_option("8")
        await page.get_by_role("button", name="Accounts").click()
        await expect(page.get_by_label(re.compile("Ada Lane"))).to_be_checked()  # the only account, ticked

        # Neither service answers: outreach cannot make the campaign, and the lists around the form cannot be read.
        await proxies["outreach"].cut()
        await proxies["discovery"].cut()
        await page.get_by_role("button", name="Review campaign").click()
        await expect(page.locator("#err-form")).to_contain_text(
            "outreach service did not answer, so the campaign is not ready to launch; nothing was launched or sent"
        )
        await expect(page.locator("[data-unavailable=groups]")).to_contain_text("The list you chose is kept")
        await expect(page.locator("[data-unavailable=presets]")).to_contain_text("outreach did not answer")
        await expect(page.locator("[data-unavailable=accounts]")).to_contain_text("The account you chose is kept")
        await expect(page.get_by_label("Campaign name")).to_have_value("Down but not lost")
        await expect(page.get_by_label("Step spacing (minutes, 5-720)")).to_have_value("45")
        await expect(page.get_by_label("What you offer")).to_have_value("a finance stack audit")
        await expect(page.get_by_label("Invites per day", exact=True)).to_have_value("25")
        await expect(page.locator("input[name=pace][value=manual]")).to_be_checked()  # on a step not shown now
        await expect(page.get_by_label("Start at")).to_have_value("8")
        hidden = page.locator("#builder input[type=hidden]")
        await expect(hidden.and_(page.locator("[name=source_group_id]"))).to_have_value(group)
        await expect(hidden.and_(page.locator("[name=preset]"))).to_have_value("warm_intro")
        await expect(hidden.and_(page.locator("[name=account_ids]"))).to_have_value(account)
        await expect(page.locator("main")).not_to_contain_text("Traceback")
        assert _campaigns(world, workspace) == []  # nothing was made

        # Both back: the same form, as it was kept, makes the campaign with every choice.
        await proxies["outreach"].start()
        await proxies["discovery"].start()
        await page.get_by_role("button", name="Review campaign").click()
        await page.wait_for_url(re.compile(r"/campaigns/[0-9a-f-]{36}/launch$"))
        [made] = _campaigns(world, workspace)
        campaign = world.api(workspace, "GET", "outreach", f"/v1/campaigns/{made['campaign_id']}")
        assert campaign["name"] == "Down but not lost"
        assert campaign["audience"]["ref"] == group
        assert campaign["account_ids"] == [account]
        assert any(s["action"] == "like" for s in campaign["workflow"]["steps"]), campaign["workflow"]  # Warm intro
        assert campaign["delivery"]["daily_cap"] == 25 and campaign["delivery"]["start_hour"] == 8
        assert campaign["strategy"]["offer"] == "a finance stack audit"
        watch.assert_clean()
        await context.close()


async def test_a_launch_outreach_does_not_answer_keeps_its_form_and_launches_once_when_it_is_back(
    world: ConsoleWorld, browser: Browser, tmp_path: Path
) -> None:
    workspace, token = await new_workspace(world, "ws-launch-down")
    world.scenario(workspace).connect_account("Bo Berg")
    group = import_leads(world, workspace, "Launch", 3)
    async with console_through(world, tmp_path, "outreach") as (url, proxies):
        context, page, watch = await new_page(browser, world, url)
        watch.allow(r"^/campaigns/[0-9a-f-]{36}/launch$", 503)
        await sign_in(page, token)
        await page.goto(f"/campaigns/new?list={group}")
        await page.get_by_label("Campaign name").fill("Launched through an outage")
        await page.get_by_role("button", name="Review campaign").click()
        await page.wait_for_url(re.compile(r"/campaigns/[0-9a-f-]{36}/launch$"))
        [made] = _campaigns(world, workspace)
        cid = made["campaign_id"]

        await page.get_by_label("Invites per day for this launch").fill("20")
        await proxies["outreach"].cut()
        await page.get_by_role("button", name="Launch campaign…").click()
        await page.locator("#launch-dialog").get_by_role("button", name="Launch now").click()
        await expect(page.locator("#launch-form").get_by_role("alert")).to_contain_text(
            "outreach service did not answer, so the launch is not confirmed"
        )
        await expect(page.locator("[data-unavailable=summary]")).to_contain_text("outreach did not answer")
        await expect(page.get_by_label("Invites per day for this launch")).to_have_value("20")
        await expect(page.locator("main")).not_to_contain_text("Traceback")
        assert world.api(workspace, "GET", "outreach", f"/v1/campaigns/{cid}")["state"] == "pending"

        await proxies["outreach"].start()  # back: the same form launches, at the pace typed
        await page.get_by_role("button", name="Launch campaign…").click()
        await page.locator("#launch-dialog").get_by_role("button", name="Launch now").click()
        await page.wait_for_url(re.compile(rf"/campaigns/{cid}\?launched=1$"))
        launched = world.api(workspace, "GET", "outreach", f"/v1/campaigns/{cid}")
        assert launched["state"] != "pending" and launched["delivery"]["daily_cap"] == 20, launched
        watch.assert_clean()
        await context.close()


async def _without_javascript(
    browser: Browser, context: BrowserContext, url: str
) -> tuple[BrowserContext, Page, PageWatch]:
    """A second browser of the same signed-in session with JavaScript off: forms are plain page posts."""
    bare = await browser.new_context(
        viewport=DESKTOP, base_url=url, java_script_enabled=False, storage_state=await context.storage_state()
    )
    page = await bare.new_page()
    watch = PageWatch()
    watch.attach(page)
    return bare, page, watch


async def test_connecting_an_account_without_javascript_keeps_the_name_when_outreach_does_not_answer(
    world: ConsoleWorld, browser: Browser, tmp_path: Path
) -> None:
    _, token = await new_workspace(world, "ws-connect-down")
    async with console_through(world, tmp_path, "outreach") as (url, proxies):
        context, page, _ = await new_page(browser, world, url)
        await sign_in(page, token)
        bare, plain, watch = await _without_javascript(browser, context, url)
        watch.allow(r"^/accounts/connect$", 503)
        await plain.goto("/accounts")
        await plain.get_by_label("Name of the account").fill("Sam Carter")
        await proxies["outreach"].cut()
        await plain.get_by_role("button", name="Connect a LinkedIn account").click()
        await expect(plain.locator("#err-connect")).to_contain_text("outreach service did not answer")
        await expect(plain.get_by_label("Name of the account")).to_have_value("Sam Carter")
        await expect(plain.locator("main")).to_contain_text("Your accounts cannot be shown right now")
        await proxies["outreach"].start()
        watch.assert_clean()
        await bare.close()
        await context.close()


async def test_a_csv_import_discovery_does_not_answer_is_a_503_that_keeps_the_form(
    world: ConsoleWorld, browser: Browser, tmp_path: Path
) -> None:
    workspace, token = await new_workspace(world, "ws-import-down")
    csv = tmp_path / "attendees.csv"
    csv.write_text("linkedin_url,first_name\nhttps://www.linkedin.com/in/outage-one,One\n")
    async with console_through(world, tmp_path, "discovery") as (url, proxies):
        context, page, watch = await new_page(browser, world, url)
        watch.allow(r"^/leads/import$", 503)
        await sign_in(page, token)
        bare, plain, plain_watch = await _without_javascript(browser, context, url)
        plain_watch.allow(r"^/leads/import$", 503)

        await plain.goto("/leads/import")
        await plain.get_by_label("CSV file").set_input_files(str(csv))
        await plain.get_by_label("List name").fill("Conference")
        await proxies["discovery"].cut()
        await plain.get_by_role("button", name="Import").click()
        await expect(plain.locator("#err-form")).to_contain_text("discovery service did not answer")
        await expect(plain.get_by_label("List name")).to_have_value("Conference")
        # A browser never fills a file input from a page: the page says so at the field.
        await expect(plain.locator("#err-file")).to_contain_text("choose it again")
        await expect(plain.locator("main")).not_to_contain_text("Traceback")

        # With JavaScript (htmx) nothing is swapped: the file chosen stays chosen, and the same click imports it.
        await page.goto("/leads/import")
        await page.get_by_label("CSV file").set_input_files(str(csv))
        await page.get_by_label("List name").fill("Conference")
        await page.get_by_role("button", name="Import").click()
        await expect(page.locator("[data-request-error]")).to_contain_text("discovery service did not answer")
        assert await page.get_by_label("CSV file").evaluate("input => input.files.length") == 1
        await expect(page.get_by_label("List name")).to_have_value("Conference")
        await proxies["discovery"].start()
        await page.get_by_role("button", name="Import").click()
        await expect(page.locator("#import-report")).to_be_visible()
        await expect(page.locator("[data-request-error]")).to_have_count(0)
        lists = world.api(workspace, "GET", "discovery", "/v1/source-groups")["items"]
        assert [g["name"] for g in lists] == ["Conference"], lists
        plain_watch.assert_clean()
        watch.assert_clean()
        await bare.close()
        await context.close()


async def test_the_builders_audience_requests_say_discoverys_silence_at_the_audience_step_and_try_again(
    world: ConsoleWorld, browser: Browser, tmp_path: Path
) -> None:
    """The CSV upload and suggested signals while discovery does not answer: the message is at the control that
    asked (it was at the top of the builder), the name, the file chosen, the prompt and the signals ticked stay, and
    "Try again" sends the same request once discovery is back."""
    _, token = await new_workspace(world, "ws-audience-down")
    csv = tmp_path / "audience.csv"
    csv.write_text("linkedin_url,first_name\nhttps://www.linkedin.com/in/audience-one,One\n")
    async with console_through(world, tmp_path, "discovery") as (url, proxies):
        discovery = proxies["discovery"]
        context, page, watch = await new_page(browser, world, url)
        watch.allow(r"^/leads/suggestions$", 503)
        watch.allow(r"^/campaigns/new/csv$", 503)
        await sign_in(page, token)
        said = "discovery service did not answer. What you typed is kept"
        await page.goto("/campaigns/new")
        await page.get_by_label("Campaign name").fill("Asked while it was down")

        await page.get_by_label("CSV import").check()
        await page.get_by_label("CSV file").set_input_files(str(csv))
        await discovery.cut()
        await page.get_by_role("button", name="Upload").click()
        upload = page.locator('[data-when="audience:csv"]')
        await expect(upload.locator("[data-request-error]")).to_contain_text(said)
        await expect(page.locator("#builder > [data-request-error]")).to_have_count(0)  # not at the top of the form
        assert await page.get_by_label("CSV file").evaluate("input => input.files.length") == 1
        await expect(page.get_by_label("Campaign name")).to_have_value("Asked while it was down")
        await discovery.start()
        await upload.get_by_role("button", name="Try again").click()
        report = page.locator("#csv-report #import-report")
        await expect(report.locator('[data-count="imported"]')).to_have_text("1")
        await expect(page.locator("#csv-group")).to_have_value(await report.get_attribute("data-group") or "missing")
        await expect(upload.locator("[data-request-error]")).to_have_count(0)

        await page.get_by_label("Signal discovery").check()
        prompt = "Fintech CFOs planning a finance stack change"
        await page.get_by_label("Discovery prompt").fill(prompt)
        await page.get_by_label("Tech stack").check()
        await discovery.cut()
        await page.get_by_role("button", name="Suggest signals from my prompt").click()
        signals = page.locator('[data-when="audience:signals"]')
        await expect(signals.locator("[data-request-error]")).to_contain_text(said)
        await expect(page.locator("#builder > [data-request-error]")).to_have_count(0)
        await expect(page.get_by_label("Discovery prompt")).to_have_value(prompt)
        await expect(page.get_by_label("Tech stack")).to_be_checked()
        await discovery.start()
        await signals.get_by_role("button", name="Try again").click()
        await expect(signals.get_by_role("status")).to_contain_text("Suggested from your prompt")
        await expect(signals.locator("[data-request-error]")).to_have_count(0)
        watch.assert_clean()
        await context.close()


async def test_the_workflow_redrawn_says_outreachs_silence_at_its_step_and_tries_again(
    world: ConsoleWorld, browser: Browser, tmp_path: Path
) -> None:
    """The workflow redrawn for a new preset while outreach does not answer: the workflow step says so above its
    graph (it was at the top of the builder), the preset and spacing chosen and the last graph stay, and "Try again"
    draws it once outreach is back. The redraw comes from a change: the step had nothing to press again."""
    workspace, token = await new_workspace(world, "ws-workflow-down")
    group = import_leads(world, workspace, "Workflow", 3)
    async with console_through(world, tmp_path, "outreach") as (url, proxies):
        outreach = proxies["outreach"]
        context, page, watch = await new_page(browser, world, url)
        watch.allow(r"^/campaigns/new/workflow$", 503)
        await sign_in(page, token)
        await page.goto(f"/campaigns/new?list={group}")
        await page.get_by_label("Campaign name").fill("Drawn while it was down")
        await page.get_by_role("button", name="Workflow").click()
        graph = page.locator("#workflow-graph")
        await expect(graph.locator("[data-step-id]").first).to_be_visible()

        await outreach.cut()
        await page.get_by_label("Step spacing (minutes, 5-720)").fill("45")
        await page.get_by_label("Warm intro").check()  # redrawn for the preset: outreach validates it
        workflow = page.locator("#step-workflow")
        await expect(workflow.locator("[data-request-error]")).to_contain_text(
            "outreach service did not answer. What you typed is kept"
        )
        await expect(page.locator("#builder > [data-request-error]")).to_have_count(0)
        await expect(page.get_by_label("Warm intro")).to_be_checked()
        await expect(page.get_by_label("Step spacing (minutes, 5-720)")).to_have_value("45")
        await expect(page.get_by_label("Campaign name")).to_have_value("Drawn while it was down")
        await expect(graph.locator("[data-step-id]").first).to_be_visible()  # the last graph stays
        await expect(graph.locator(".node-like")).to_have_count(0)
        await outreach.start()
        await workflow.get_by_role("button", name="Try again").click()
        await expect(graph.locator(".node-like").first).to_be_visible()  # Warm intro's first step likes a post
        await expect(workflow.locator("[data-request-error]")).to_have_count(0)
        watch.assert_clean()
        await context.close()


async def test_the_plans_steps_drawn_again_after_an_upgrade_say_outreachs_silence_at_their_step_and_try_again(
    world: ConsoleWorld, browser: Browser, tmp_path: Path
) -> None:
    """An upgrade in the builder's dialog goes through, and the video and email steps it has htmx draw again meet
    an outreach that does not answer: each step says so at its part (it was at the top of the builder), what was
    typed stays, and its "Try again" draws the step as the new plan allows once outreach is back (those requests
    come from the upgrade's answer: the steps had nothing to press again)."""
    workspace, token = await new_workspace(world, "ws-plan-steps-down")
    async with console_through(world, tmp_path, "outreach") as (url, proxies):
        outreach = proxies["outreach"]
        context, page, watch = await new_page(browser, world, url)
        watch.allow(r"^/campaigns/new/part/(video|email)$", 503)
        await sign_in(page, token)
        said = "outreach service did not answer. What you typed is kept"
        await page.goto("/campaigns/new")
        await page.get_by_label("Campaign name").fill("Upgraded while it was down")
        await page.get_by_role("button", name="Delivery").click()
        await page.get_by_role("radio", name=re.compile("^Manual")).check()
        await page.get_by_label("Invites per day", exact=True).fill("25")

        # The upgrade is made; outreach stops answering before its answer reaches the page (the answer is held
        # while the test cuts outreach), so the steps the answer has htmx draw again meet an outreach that is down.
        async def upgrade_then_cut(route: Route) -> None:
            answer = await route.fetch()
            await outreach.cut()
            await route.fulfill(response=answer)

        await page.route("**/plan/upgrade", upgrade_then_cut)
        await page.get_by_role("button", name="Video").click()
        await page.get_by_role("button", name="Add the Video add-on").click()
        dialog = page.locator("#upgrade-dialog")
        await dialog.get_by_role("button", name="Upgrade").click()
        await expect(dialog.locator("[data-upgraded]")).to_contain_text("with video")
        await dialog.get_by_role("button", name="Not now").click()
        video, delivery = page.locator("#step-video"), page.locator("#step-delivery")
        await expect(video.locator("[data-request-error]")).to_contain_text(said)
        await expect(delivery.locator("[data-request-error]")).to_contain_text(said)
        await expect(page.locator("#builder > [data-request-error]")).to_have_count(0)
        await expect(video.locator("[data-locked=video]")).to_be_visible()  # not drawn again yet
        await expect(page.get_by_label("Campaign name")).to_have_value("Upgraded while it was down")
        await expect(page.locator("#daily_limit")).to_have_value("25")
        await page.unroute("**/plan/upgrade")
        assert "video" in world.api(workspace, "GET", "outreach", "/v1/plan")["features"]
        # The user is on the video step; the delivery step's message is on a closed step: its tab says so.
        marked = page.locator("[data-step-tab].has-error")
        await expect(marked).to_have_count(2)
        assert await marked.evaluate_all("tabs => tabs.map(t => t.dataset.stepTab)") == ["delivery", "video"]
        delivery_tab = page.locator('[data-step-tab="delivery"]')
        await expect(delivery_tab).to_have_accessible_name("4 Delivery (has an error)")
        await expect(page.locator("[data-step-alert]")).to_contain_text("4 · Delivery has an error: leadstream's")
        await expect(delivery.locator("[data-request-error]")).to_be_hidden()

        await outreach.start()
        await video.get_by_role("button", name="Try again").click()
        await expect(page.get_by_label("Attach a personalised video")).to_be_visible()
        await expect(video.locator("[data-request-error]")).to_have_count(0)
        await expect(page.locator('[data-step-tab="video"]')).to_have_accessible_name("5 Video")  # cleared
        await expect(marked).to_have_count(1)  # the delivery step's message still stands
        await delivery_tab.click()
        await expect(delivery.locator("[data-request-error]")).to_be_focused()  # the message in view, at once
        await expect(delivery.locator("[data-request-error]")).to_be_in_viewport()
        async with page.expect_response(lambda r: r.url.endswith("/campaigns/new/part/email")) as answer:
            await delivery.get_by_role("button", name="Try again").click()
        assert (await answer.value).status == 200
        await expect(delivery.locator("[data-request-error]")).to_have_count(0)
        await expect(marked).to_have_count(0)
        await expect(delivery_tab).to_have_accessible_name("4 Delivery")
        await expect(delivery.locator("#email-step")).to_contain_text("part of the Scale plan")  # video only was added
        await expect(page.locator("#daily_limit")).to_have_value("25")
        watch.assert_clean()
        await context.close()


def _marked_tabs(page: Page) -> Any:
    """The builder's stepper tabs marked as holding an error."""
    return page.locator("[data-step-tab].has-error")


async def test_a_request_error_at_a_closed_step_marks_only_its_tab_which_opens_at_the_message_until_a_retry_clears_it(
    world: ConsoleWorld, browser: Browser, tmp_path: Path
) -> None:
    """The workflow drawn again for a change made on the messages step (invites without a note) while outreach does
    not answer: its message is at the workflow step, which is closed, so the workflow's tab says so (a badge, and
    words read with its name) and only that tab; clicking it opens the step with the message in view and focused;
    a successful "Try again" clears the mark. Nothing on the stepper said so: the user never saw it."""
    workspace, token = await new_workspace(world, "ws-stepper-request")
    group = import_leads(world, workspace, "Stepper", 3)
    async with console_through(world, tmp_path, "outreach") as (url, proxies):
        outreach = proxies["outreach"]
        context, page, watch = await new_page(browser, world, url)
        watch.allow(r"^/campaigns/new/workflow$", 503)
        await sign_in(page, token)
        await page.goto(f"/campaigns/new?list={group}")
        await page.get_by_label("Campaign name").fill("Marked while it was down")
        await page.get_by_role("button", name="Messages").click()
        tab = page.locator('[data-step-tab="workflow"]')
        await expect(tab).to_have_accessible_name("2 Workflow")
        await expect(_marked_tabs(page)).to_have_count(0)

        await outreach.cut()
        await page.get_by_label("Send invites with a personal note").uncheck()  # the workflow is drawn again for it
        message = page.locator("#step-workflow [data-request-error]")
        await expect(message).to_contain_text("outreach service did not answer. What you typed is kept")
        await expect(tab).to_have_accessible_name("2 Workflow (has an error)")
        await expect(tab.locator("[data-step-error]")).to_be_visible()
        await expect(_marked_tabs(page)).to_have_count(1)  # only the workflow's: the messages step has nothing
        await expect(page.locator("[data-step-alert]")).to_have_text(
            re.compile(r"^2 · Workflow has an error: leadstream's outreach service did not answer")
        )
        await expect(page.locator("#step-messages")).to_be_visible()  # the user stays where they were
        await expect(message).to_be_hidden()
        await screenshot(page, "builder-step-error", full_page=False)

        await tab.click()
        await expect(message).to_be_visible()
        await expect(message).to_be_focused()
        await expect(message).to_be_in_viewport()
        await expect(page.get_by_label("Send invites with a personal note")).not_to_be_checked()  # nothing lost
        await outreach.start()
        await message.get_by_role("button", name="Try again").click()
        await expect(message).to_have_count(0)
        await expect(_marked_tabs(page)).to_have_count(0)
        await expect(tab).to_have_accessible_name("2 Workflow")
        await expect(tab.locator("[data-step-error]")).to_be_hidden()
        watch.assert_clean()
        await context.close()


async def test_a_review_refused_at_fields_of_two_steps_marks_both_tabs_with_javascript_and_without(
    world: ConsoleWorld, browser: Browser
) -> None:
    """A review refused at a field of the audience (discovery: the lookback) and of the workflow (outreach: the
    spacing): the audience step opens at its message, as before, and the workflow's tab is marked too (only the
    first step's tab was, and only by its colour); clicking it opens the workflow at the spacing, focused. Without
    JavaScript the page shows every step and the server marks both tabs."""
    _, token = await new_workspace(world, "ws-stepper-review")
    context, page, watch = await new_page(browser, world)
    watch.allow(r"^/campaigns/new$", 422)
    await sign_in(page, token)

    async def refused(page: Page, *, javascript: bool) -> None:
        await page.goto("/campaigns/new")
        await page.get_by_label("Campaign name").fill("Wrong at two steps")
        await page.get_by_label("Discovery prompt").fill("Fintech CFOs planning a finance stack change")
        await page.get_by_label("Tech stack").check()
        await page.get_by_label("Look back (days, 1-30)").fill("45")  # discovery names the field
        if javascript:
            await page.get_by_role("button", name="Workflow").click()
        await page.get_by_label("Step spacing (minutes, 5-720)").fill("4")  # outreach's check names it
        await page.get_by_role("button", name="Review campaign").click()
        await expect(page.locator("#err-lookback_days")).to_contain_text("between 1 and 30")

    await refused(page, javascript=True)
    await expect(page.locator("#step-audience")).to_be_visible()  # the first error's step is open
    await expect(page.locator("#step-workflow")).to_be_hidden()
    await expect(_marked_tabs(page)).to_have_count(2)
    assert await _marked_tabs(page).evaluate_all("tabs => tabs.map(t => t.dataset.stepTab)") == [
        "audience",
        "workflow",
    ]
    workflow = page.locator('[data-step-tab="workflow"]')
    await expect(workflow).to_have_accessible_name("2 Workflow (has an error)")
    await expect(page.locator('[data-step-tab="messages"]')).to_have_accessible_name("3 Messages")
    await workflow.click()
    await expect(page.get_by_label("Step spacing (minutes, 5-720)")).to_be_focused()  # its message read with it
    await expect(page.locator("#err-spacing_minutes")).to_be_in_viewport()
    await expect(page.locator("#err-spacing_minutes")).to_contain_text("between 5 and 720")
    await expect(page.get_by_label("Look back (days, 1-30)")).to_have_value("45")  # nothing lost
    watch.assert_clean()

    bare, plain, plain_watch = await _without_javascript(browser, context, world.url)
    plain_watch.allow(r"^/campaigns/new$", 422)
    await refused(plain, javascript=False)
    await expect(_marked_tabs(plain)).to_have_count(2)
    assert await _marked_tabs(plain).evaluate_all("tabs => tabs.map(t => t.dataset.stepTab)") == [
        "audience",
        "workflow",
    ]
    await expect(plain.locator('[data-step-tab="workflow"]')).to_have_accessible_name("2 Workflow (has an error)")
    await expect(plain.locator('[data-step-tab="delivery"]')).to_have_accessible_name("4 Delivery")
    await expect(plain.locator("#err-spacing_minutes")).to_be_visible()  # every step is shown without JavaScript
    plain_watch.assert_clean()
    await bare.close()
    await context.close()
