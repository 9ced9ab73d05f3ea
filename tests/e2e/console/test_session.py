"""The console's session rules in Chromium: no page without a session, no other workspace's data, no form
without its CSRF token; a wrong token is refused, a one-time link works once, signing out ends the session."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.async_api import Browser, expect

from services.console import domain
from tests.support.browser import screenshot
from tests.support.console import ConsoleWorld, nav, new_page, sign_in

from .conftest import OTHER, WORKSPACE, Scene

pytestmark = pytest.mark.e2e
expect.set_options(timeout=30_000)


async def test_pages_need_a_session_and_show_only_the_workspace_of_it(
    world: ConsoleWorld, scene: Scene, browser: Browser
) -> None:
    context, page, watch = await new_page(browser, world)
    lead = world.api(WORKSPACE, "GET", "projection", f"/v1/campaigns/{scene.campaign}/results", params={"limit": 1})
    lead_id = lead["items"][0]["lead_id"]
    for path in ("/", "/campaigns", f"/campaigns/{scene.campaign}", f"/leads/{lead_id}", "/accounts"):
        await page.goto(path)
        assert re.search(r"/sign-in(\?next=.*)?$", page.url), (path, page.url)
        await expect(page.get_by_role("heading", name="Sign in to your workspace")).to_be_visible()
    live = await page.request.get("/live?home=1")
    assert live.status == 401
    watch.allow(r"^/live", 401)

    # A wrong token is refused with a message; the other workspace's token opens its own, empty workspace.
    await page.get_by_label("Workspace API token").fill("ls_not-a-real-token")
    watch.allow(r"^/sign-in$", 400)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("alert")).to_contain_text("That token is not valid")
    await sign_in(page, scene.other_token)
    await expect(page.get_by_test_id("checklist-progress")).to_have_text("1 of 3 done")
    await expect(page.locator('[data-step="account_connected"]')).to_have_attribute("data-done", "no")
    checklist = page.locator("#checklist")  # the campaign health panel offers the same step (test_polish.py)
    await expect(checklist.get_by_role("link", name="Connect a LinkedIn account")).to_have_attribute(
        "href", "/accounts"
    )
    await expect(page.locator('#inbox li[data-kind="connect_account"]')).to_be_visible()
    await screenshot(page, "home-new-workspace")
    await nav(page, "Campaigns").click()
    await expect(page.locator("#campaign-table")).to_contain_text("No campaigns yet")
    await nav(page, "Accounts").click()
    await expect(page.locator("#accounts")).to_contain_text("No LinkedIn account connected")

    # Another workspace's lead and campaign do not exist here.
    watch.allow(r"^/(leads|campaigns)/", 404)
    for path in (f"/leads/{lead_id}", f"/campaigns/{scene.campaign}", "/campaigns/not-an-id"):
        response = await page.goto(path)
        assert response is not None and response.status == 404, path
        await expect(page.get_by_role("heading", name="Not found")).to_be_visible()
        assert "Q1 RevOps" not in await page.content()
    watch.assert_clean()
    await context.close()


def _blocklist(world: ConsoleWorld, workspace: str) -> set[tuple[str, str]]:
    items = world.api(workspace, "GET", "outreach", "/v1/blocklist", params={"limit": 200})["items"]
    return {(i["kind"], i["value"]) for i in items}


async def test_a_lead_of_another_workspace_cannot_be_blocked_from_this_one(
    world: ConsoleWorld, scene: Scene, browser: Browser
) -> None:
    """The lead page's Block action posted for another workspace's lead, with this workspace's session (a form
    made from the lead page's own, with this page's CSRF token): the 404 page, as the lead page answers, for each
    thing the lead page offers to block; nothing is added to either workspace's blocklist."""
    results = world.api(WORKSPACE, "GET", "projection", f"/v1/campaigns/{scene.campaign}/results", params={"limit": 25})
    leads = [world.api(WORKSPACE, "GET", "projection", f"/v1/leads/{r['lead_id']}") for r in results["items"]]
    lead = next(x for x in leads if x.get("email") and x.get("linkedin_url"))
    choices = domain.block_choices(lead["email"], lead["linkedin_url"])
    assert {c.kind for c in choices} >= {"email", "profile_url"}, choices
    before = {ws: _blocklist(world, ws) for ws in (WORKSPACE, OTHER)}

    context, page, watch = await new_page(browser, world)
    await sign_in(page, scene.other_token)
    watch.allow(r"^/leads/[0-9a-f-]{36}(/block)?$", 404)
    for choice in choices:
        await page.goto("/")  # a page of this workspace: the session's CSRF token is on it
        async with page.expect_response(lambda r: r.url.endswith("/block")) as answer:
            await page.evaluate(
                """([action, kind]) => {
                    const form = document.createElement("form");
                    form.method = "post";
                    form.action = action;
                    const token = document.querySelector("input[name=csrf_token]").cloneNode();
                    const chosen = Object.assign(document.createElement("input"), {name: "kind", value: kind});
                    form.append(token, chosen);
                    document.body.append(form);
                    form.submit();
                }""",
                [f"/leads/{lead['lead_id']}/block", choice.kind],
            )
        response = await answer.value
        assert response.status == 404, (choice.kind, response.status)
        await expect(page.get_by_role("heading", name="Not found")).to_be_visible()
        await expect(page.locator("main")).not_to_contain_text(lead["email"])
    after = {ws: _blocklist(world, ws) for ws in (WORKSPACE, OTHER)}
    assert after == before
    values = {c.value.lower() for c in choices}
    assert not {v for ws in after.values() for _, v in ws} & values
    watch.assert_clean()
    await context.close()


async def test_forms_need_their_csrf_token_and_sign_out_ends_the_session(
    world: ConsoleWorld, scene: Scene, browser: Browser
) -> None:
    context, page, watch = await new_page(browser, world)
    await sign_in(page, scene.token)
    # A post without the page's token (as a forged cross-site form would send) is refused; nothing changes.
    refused = await page.request.post("/sign-out", form={"next": "/"})
    assert refused.status == 403 and "Form expired" in await refused.text()
    forged = await page.request.post("/sign-out", form={"csrf_token": "forged"}, headers={"X-CSRF-Token": "forged"})
    assert forged.status == 403
    await page.goto("/accounts")
    await expect(page.get_by_role("heading", name="Accounts")).to_be_visible()

    # Signing out through the page's own form works, and the old session cookie opens nothing any more.
    old = {c["name"]: c["value"] for c in await context.cookies()}["ls_session"]
    await page.get_by_role("button", name="Sign out").click()
    await page.wait_for_url(re.compile(r"/sign-in$"))
    async with httpx.AsyncClient(base_url=world.url, cookies={"ls_session": old}) as http:
        replay = await http.get("/", follow_redirects=False)
    assert replay.status_code == 303 and replay.headers["location"].startswith("/sign-in")
    watch.assert_clean()
    await context.close()


async def test_a_one_time_sign_in_link_works_once(world: ConsoleWorld, scene: Scene, browser: Browser) -> None:
    async with httpx.AsyncClient(base_url=world.url) as http:
        made = await http.post("/v1/sign-in-links", headers={"Authorization": f"Bearer {scene.token}"})
        assert made.status_code == 201, made.text
        bad = await http.post("/v1/sign-in-links", headers={"Authorization": "Bearer nope"})
        assert bad.status_code == 401 and bad.json()["code"] == "invalid_token"
    url = made.json()["url"]
    assert url.startswith(world.url + "/sign-in/link/") and scene.token not in url
    context, page, watch = await new_page(browser, world)
    await page.goto(url)
    await expect(page.get_by_role("heading", name="Sign in with this link")).to_contain_text("Sign in")
    await screenshot(page, "sign-in-link")
    await page.get_by_role("button", name=f"Continue to {WORKSPACE}").click()
    await page.wait_for_url(re.compile(r"/$"))
    await expect(page.get_by_role("heading", name="Home")).to_be_visible()
    await context.close()

    again, page2, watch2 = await new_page(browser, world)
    watch2.allow(r"^/sign-in/link/", 410)
    response = await page2.goto(url)
    assert response is not None and response.status == 410
    await expect(page2.get_by_role("heading", name="This link no longer works")).to_be_visible()
    watch.assert_clean()
    watch2.assert_clean()
    await again.close()
