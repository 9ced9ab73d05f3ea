"""Live parts in Chromium: a change that arrives while its part is being refreshed, or just after, still shows.

htmx queues a trigger that fires while the element's request is in flight on that same element; the refresh
then replaces the element (``outerHTML``) and htmx never sends a removed element's request. Without the
console's own bookkeeping (static/app.js) the newest change of a burst was lost until another came: a saved
search's progress stayed at 20 of 30 leads in CI. It happened again once that was fixed: htmx wires a swapped-in
element up (its ``sse:`` listener too) only when it settles, 20 ms after the swap by default, and a change that
arrived in between found the old element gone and the new one deaf. The console settles at once
(``defaultSettleDelay: 0`` in base.html).
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from playwright.async_api import Browser, BrowserContext, Locator, Page, Route, expect

from tests.support.browser import PageWatch
from tests.support.console import ConsoleWorld, new_page, sign_in
from tests.support.kafka import wait_for

pytestmark = pytest.mark.e2e
expect.set_options(timeout=30_000)

FIRE = "id => window.htmx.trigger(document.getElementById(id), 'sse:home')"


async def _quiet_home(world: ConsoleWorld, browser: Browser) -> tuple[BrowserContext, Page, PageWatch]:
    """The home page of a workspace of its own (no change comes but the test's), signed in, its stream open."""
    token = await world.token(f"ws-live-{uuid.uuid4().hex[:6]}")
    context, page, watch = await new_page(browser, world)
    await sign_in(page, token)
    await expect(page.locator("body")).to_have_attribute("data-live", "on")
    return context, page, watch


async def test_a_change_that_arrives_during_a_refresh_refreshes_the_replacement(
    world: ConsoleWorld, browser: Browser
) -> None:
    context, page, watch = await _quiet_home(world, browser)
    first = await page.locator("#home-live").element_handle()
    assert first is not None

    release = asyncio.Event()
    sent: list[str] = []

    async def hold_the_first(route: Route) -> None:
        sent.append(route.request.url)
        if len(sent) == 1:
            await release.wait()
        await route.continue_()

    await page.route("**/partials/home", hold_the_first)
    await page.evaluate(FIRE, "home-live")  # a change: the part refreshes ...
    await wait_for(lambda: len(sent), until=lambda n: n == 1, timeout_s=30, what="the first refresh is sent")
    await page.evaluate(FIRE, "home-live")  # ... and another change arrives while that refresh is in flight
    release.set()

    await wait_for(lambda: len(sent), until=lambda n: n >= 2, timeout_s=30, what="the second change refreshes")
    await expect(page.locator("#home-live")).to_be_visible()
    assert await first.evaluate("e => !e.isConnected"), "the first refresh replaced the part"
    assert len(sent) == 2, sent  # one refresh per change: the replacement did not loop
    watch.assert_clean()
    await context.close()


SETTLE_GAP = """() => document.body.addEventListener("htmx:afterSwap", (e) => {
    // A change that arrives (a task of its own, as an SSE message is) just after the part was swapped in.
    if (e.detail.target.id === "home-live" && !window.__changedAfterSwap) {
        window.__changedAfterSwap = true;
        setTimeout(() => window.htmx.trigger(document.getElementById("home-live"), "sse:home"), 0);
    }
})"""


async def test_a_change_that_arrives_right_after_a_refresh_is_swapped_in_refreshes_it(
    world: ConsoleWorld, browser: Browser
) -> None:
    context, page, watch = await _quiet_home(world, browser)
    sent: list[str] = []

    async def count(route: Route) -> None:
        sent.append(route.request.url)
        await route.continue_()

    await page.route("**/partials/home", count)
    await page.evaluate(SETTLE_GAP)
    await page.evaluate(FIRE, "home-live")  # a change: the part refreshes, and another comes right after the swap
    await wait_for(lambda: len(sent), until=lambda n: n >= 2, timeout_s=30, what="the change after the swap refreshes")
    assert await page.evaluate("() => window.__changedAfterSwap === true")
    await expect(page.locator("#home-live")).to_be_visible()
    assert len(sent) == 2, sent
    watch.assert_clean()
    await context.close()


REQUESTS_DONE = """() => new Promise(done => {
  window.__liveAnswers = 0;
  document.body.addEventListener("htmx:afterRequest", () => { window.__liveAnswers += 1; });
  done();
})"""


async def test_a_live_part_is_not_swapped_under_a_pressed_pointer_so_a_click_on_it_lands(
    world: ConsoleWorld, browser: Browser
) -> None:
    """A swap between a press and its release takes away the element the press began on, and the browser fires
    no click: a click on a campaign of a list refreshing under it did nothing (CI, the journey test). The part
    waits for the release, then refreshes; the click goes where it was aimed."""
    context, page, watch = await _quiet_home(world, browser)
    await page.evaluate(REQUESTS_DONE)
    part = await page.locator("#home-live").element_handle()
    heading = page.locator("#checklist-title")
    link = page.locator("#home-live a.btn-primary").first
    href = await link.get_attribute("href")
    assert part is not None and href

    async def press(target: Locator) -> None:
        box = await target.bounding_box()
        assert box is not None
        await page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        await page.mouse.down()

    async def answered(n: int) -> None:
        await page.wait_for_function("n => window.__liveAnswers >= n", arg=n)

    # Pressed on the part (not a link): a change's answer comes, and the part stays as it is until the release.
    await press(heading)
    await page.evaluate(FIRE, "home-live")
    await answered(1)
    assert await part.evaluate("el => el.isConnected"), "swapped under the pressed pointer"
    await page.mouse.up()
    await answered(2)  # the refresh it waited for
    await wait_for(lambda: part.evaluate("el => !el.isConnected"), timeout_s=30, what="the part refreshed")

    # Pressed on a link of the part: the change's answer waits, and the click lands.
    await press(link)
    fresh = await page.locator("#home-live").element_handle()
    assert fresh is not None
    await page.evaluate(FIRE, "home-live")
    await answered(3)
    assert await fresh.evaluate("el => el.isConnected")
    await page.mouse.up()
    await page.wait_for_url(f"**{href}")
    watch.assert_clean()
    await context.close()


async def test_a_live_part_holding_an_open_dialog_refreshes_once_the_dialog_closes(
    world: ConsoleWorld, browser: Browser
) -> None:
    """A change that comes while a dialog inside a live part is open would replace the part, and the dialog the user
    is answering with it: the part waits (marked stale) and refreshes when the dialog closes."""
    workspace = f"ws-live-{uuid.uuid4().hex[:6]}"
    token = await world.token(workspace)

    def connect(name: str) -> str:
        body = {"provider": "linkedin", "display_name": name}
        return str(world.api(workspace, "POST", "outreach", "/v1/accounts", json=body)["account_id"])

    first = connect("Ada First")
    context, page, watch = await new_page(browser, world)
    await sign_in(page, token)
    await page.goto(world.url + "/accounts")
    await expect(page.locator("body")).to_have_attribute("data-live", "on")
    accounts = page.locator("#accounts")
    await expect(accounts).to_contain_text("Ada First")
    await page.locator(f'[data-dialog="delete-{first}"]').click()
    dialog = page.locator(f"#delete-{first}")
    await expect(dialog).to_be_visible()

    connect("Bo Second")  # a change of the part while its dialog is open
    await expect(accounts).to_have_attribute("data-stale", "yes")
    await expect(dialog).to_be_visible()
    await expect(accounts).not_to_contain_text("Bo Second")

    await dialog.get_by_role("button", name="Cancel").click()
    await expect(accounts).to_contain_text("Bo Second")
    await expect(accounts).not_to_have_attribute("data-stale", "yes")
    await expect(page.locator(f"#delete-{first}")).to_be_hidden()
    watch.assert_clean()
    await context.close()
