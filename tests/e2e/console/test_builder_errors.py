"""The campaign builder's messages and stepper as a sales user meets them (Chromium, the real services, Kafka and
Postgres):

- a message above the steps (the form's own, the campaign name's) leaves the user on the step they were on;
- the workflow check's message at spacing, invite wait, comment mode or preset is shown once, at that field, as the
  workflow is redrawn and after a review;
- editing a field a review refused clears its message, and its step tab's mark when the step has no other one; so
  does editing any input of the value the message judges (a custom day for "no day chosen", any of the video's
  inputs for the video's), except that a plan-required message, with its upgrade, stays until the video is switched
  off;
- on a phone the stepper scrolls sideways (the page does not), keeps the current step's tab in view, and every step
  is reachable.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Locator, Page, expect

from services.runtime.db import create_engine
from services.runtime.plans import set_plan
from tests.support.browser import PHONE, assert_fits_phone, screenshot
from tests.support.console import ConsoleWorld, console_through, import_leads, new_page, new_workspace, sign_in
from tests.support.kafka import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]
expect.set_options(timeout=45_000)

SPACING = "Step spacing (minutes, 5-720)"


def _marked(page: Page) -> Any:
    """The stepper's tabs marked as holding an error."""
    return page.locator("[data-step-tab].has-error")


async def _marked_steps(page: Page) -> list[str]:
    return list(await _marked(page).evaluate_all("tabs => tabs.map(t => t.dataset.stepTab)"))


async def _open_step(page: Page) -> str:
    """The step the builder shows (its tab is the current one)."""
    return str(await page.locator('[data-step-tab][aria-current="step"]').get_attribute("data-step-tab"))


async def test_a_message_above_the_steps_leaves_the_user_on_the_step_they_reviewed_from(
    world: ConsoleWorld, browser: Browser, tmp_path: Path
) -> None:
    """A review refused for the campaign name (outreach: a campaign needs one) or for the form as a whole (messaging
    did not answer while the campaign's own template was saved): the message is shown above the stepper, seen from
    every step, so the user stays on the messages step they reviewed from and no tab is marked. The name's opened
    the audience step and the form's the accounts step, where neither message is."""
    workspace, token = await new_workspace(world, "ws-above-steps")
    group = import_leads(world, workspace, "Above", 3)
    world.scenario(workspace).connect_account("Ana Ruiz")  # the only account: ticked, no message at the accounts
    async with console_through(world, tmp_path, "messaging") as (url, proxies):
        context, page, watch = await new_page(browser, world, url)
        watch.allow(r"^/campaigns/new$", 422)  # the name
        watch.allow(r"^/campaigns/new\b", 503)  # messaging did not answer (a second pattern: one status each)
        await sign_in(page, token)
        await page.goto(f"/campaigns/new?list={group}")
        await page.get_by_role("button", name="Messages").click()
        await page.get_by_role("button", name="Review campaign").click()  # no name yet
        await expect(page.locator("#err-name")).to_be_visible()
        assert await _open_step(page) == "messages"
        await expect(page.locator("#step-messages")).to_be_visible()
        await expect(page.locator("#step-audience")).to_be_hidden()
        await expect(_marked(page)).to_have_count(0)

        await page.get_by_label("Campaign name").fill("Reviewed from the messages")
        body = "Hi {first_name}, a note written by hand for this campaign."
        await page.get_by_label("Template text").fill(body)
        await proxies["messaging"].cut()  # the campaign's own template is saved by messaging first
        await page.get_by_role("button", name="Review campaign").click()
        await expect(page.locator("#err-form")).to_contain_text("messaging service did not answer")
        assert await _open_step(page) == "messages"
        await expect(page.locator("#step-messages")).to_be_visible()
        await expect(page.locator("#step-accounts")).to_be_hidden()
        await expect(_marked(page)).to_have_count(0)
        await expect(page.get_by_label("Template text")).to_have_value(body)
        await proxies["messaging"].start()
        watch.assert_clean()
        await context.close()


def _said(page: Page, words: str) -> Locator:
    """Every message on the page (closed steps included) with ``words``."""
    return page.get_by_role("alert", include_hidden=True).filter(has_text=words)


async def test_the_workflow_check_s_message_is_shown_once_at_its_field(world: ConsoleWorld, browser: Browser) -> None:
    """A spacing of 4 minutes: the workflow redrawn for it says so at the spacing field, read with it, and not in the
    graph's box (it was in the box only, away from the field; after a review, at the field and in the box: twice).
    A valid spacing clears it as the workflow is redrawn."""
    workspace, token = await new_workspace(world, "ws-workflow-once")
    group = import_leads(world, workspace, "Once", 3)
    world.scenario(workspace).connect_account("Noor Haddad")
    context, page, watch = await new_page(browser, world)
    watch.allow(r"^/campaigns/new$", 422)
    await sign_in(page, token)
    await page.goto(f"/campaigns/new?list={group}")
    await page.get_by_label("Campaign name").fill("Spaced too tightly")
    await page.get_by_role("button", name="Workflow").click()
    graph = page.locator("#workflow-graph")
    await expect(graph.locator("[data-step-id]").first).to_be_visible()
    spacing = page.get_by_label(SPACING)
    field = page.locator(".field").filter(has=spacing)

    async with page.expect_response(lambda r: r.url.endswith("/campaigns/new/workflow")):
        await spacing.fill("4")
        await spacing.press("Tab")  # the change redraws the workflow: outreach's check refuses it
    message = field.locator("#err-spacing_minutes")
    await expect(message).to_contain_text("between 5 and 720")
    await expect(_said(page, "between 5 and 720")).to_have_count(1)
    await expect(graph.locator(".field-error")).to_have_count(0)
    await expect(spacing).to_have_attribute("aria-invalid", "true")
    await expect(spacing).to_have_attribute("aria-describedby", "err-spacing_minutes")
    assert await _marked_steps(page) == ["workflow"]

    await page.get_by_role("button", name="Review campaign").click()  # the page drawn again with outreach's 422
    await expect(page.locator("#err-spacing_minutes")).to_contain_text("between 5 and 720")
    assert await _open_step(page) == "workflow"
    await expect(_said(page, "between 5 and 720")).to_have_count(1)
    await expect(page.locator("#workflow-graph .field-error")).to_have_count(0)

    async with page.expect_response(lambda r: r.url.endswith("/campaigns/new/workflow")):
        await page.get_by_label(SPACING).fill("30")
        await page.get_by_label(SPACING).press("Tab")
    await expect(_said(page, "between 5 and 720")).to_have_count(0)
    await expect(page.get_by_label(SPACING)).not_to_have_attribute("aria-invalid", "true")
    await expect(page.locator("#workflow-graph [data-step-id]").first).to_be_visible()
    await expect(_marked(page)).to_have_count(0)
    watch.assert_clean()
    await context.close()


async def test_editing_a_refused_field_clears_its_message_and_its_step_s_mark(
    world: ConsoleWorld, browser: Browser
) -> None:
    """A review refused at the lookback (discovery) and at the spacing (outreach's check): both tabs are marked.
    Editing the lookback takes its message away at once, and the audience tab's mark with it (the workflow's stays:
    its step still has one); editing the spacing clears the last. The message stayed until the next review, with its
    tab marked, although the field was already fixed. Reviewing a wrong value again says so again."""
    _, token = await new_workspace(world, "ws-edit-clears")
    context, page, watch = await new_page(browser, world)
    watch.allow(r"^/campaigns/new$", 422)
    await sign_in(page, token)
    await page.goto("/campaigns/new")
    await page.get_by_label("Campaign name").fill("Fixed as I go")
    await page.get_by_label("Discovery prompt").fill("Fintech CFOs planning a finance stack change")
    await page.get_by_label("Tech stack").check()
    lookback = page.get_by_label("Look back (days, 1-30)")
    await lookback.fill("45")  # discovery names the field
    await page.get_by_role("button", name="Workflow").click()
    await page.get_by_label(SPACING).fill("4")  # outreach's check names it
    await page.get_by_role("button", name="Review campaign").click()
    await expect(page.locator("#err-lookback_days")).to_contain_text("between 1 and 30")
    assert await _open_step(page) == "audience"
    assert await _marked_steps(page) == ["audience", "workflow"]
    await expect(lookback).to_have_attribute("aria-invalid", "true")

    await lookback.fill("14")
    await expect(page.locator("#err-lookback_days")).to_have_count(0)
    await expect(lookback).not_to_have_attribute("aria-invalid", "true")
    await expect(_marked(page)).to_have_count(1)
    assert await _marked_steps(page) == ["workflow"]  # the spacing's message still stands
    await expect(page.locator('[data-step-tab="audience"]')).to_have_accessible_name("1 Audience")

    await page.locator('[data-step-tab="workflow"]').click()
    await expect(page.get_by_label(SPACING)).to_be_focused()
    await page.get_by_label(SPACING).fill("30")
    await expect(page.locator("#err-spacing_minutes")).to_have_count(0)
    await expect(_marked(page)).to_have_count(0)
    await expect(page.locator('[data-step-tab="workflow"]')).to_have_accessible_name("2 Workflow")

    await page.locator('[data-step-tab="audience"]').click()
    await lookback.fill("40")
    await page.get_by_role("button", name="Review campaign").click()  # checked again, as before
    await expect(page.locator("#err-lookback_days")).to_contain_text("between 1 and 30")
    assert await _marked_steps(page) == ["audience"]
    watch.assert_clean()
    await context.close()


async def test_inserting_a_variable_is_an_edit_that_clears_the_templates_message(
    world: ConsoleWorld, browser: Browser
) -> None:
    """A template refused at review (an unknown variable): inserting a variable with its button edits the text as
    typing does, so the template's message goes at once and the counter counts the new text."""
    workspace, token = await new_workspace(world, "ws-insert-variable")
    group = import_leads(world, workspace, "Insert", 3)
    context, page, watch = await new_page(browser, world)
    watch.allow(r"^/campaigns/new$", 422)
    await sign_in(page, token)
    await page.goto(f"/campaigns/new?list={group}")
    await page.get_by_label("Campaign name").fill("Variables")
    await page.get_by_role("button", name="Messages").click()
    body = page.get_by_label("Template text")
    await body.fill("Hi {nonsense}, one short idea.")
    await page.get_by_role("button", name="Review campaign").click()
    message = page.locator("#err-template_body")
    await expect(message).to_contain_text("nonsense")
    await page.locator('[data-step-tab="messages"]').click()
    await body.press("End")
    variables = page.get_by_role("group", name="Insert a variable")
    await variables.get_by_role("button", name="First name", exact=True).click()
    await expect(body).to_have_value(re.compile(r"one short idea\.\{first_name\|there\}$"))
    await expect(message).to_have_count(0)
    count = len("Hi {nonsense}, one short idea.{first_name|there}")
    await expect(page.locator("#template-counter [data-count]")).to_have_text(str(count))
    watch.assert_clean()
    await context.close()


async def test_ticking_a_custom_day_clears_the_no_day_message_and_the_delivery_tab_s_mark(
    world: ConsoleWorld, browser: Browser
) -> None:
    """ "Choose days" with every day unticked: outreach refuses the review at the active days, the Delivery tab is
    marked. Ticking a day takes the message away, the choice's aria-invalid and the tab's mark with it (the day boxes
    are not the choice's input: the message stayed, and the tab marked, until the next review)."""
    workspace, token = await new_workspace(world, "ws-days-cleared")
    group = import_leads(world, workspace, "Days", 3)
    world.scenario(workspace).connect_account("Lea Brandt")
    context, page, watch = await new_page(browser, world)
    watch.allow(r"^/campaigns/new$", 422)
    await sign_in(page, token)
    await page.goto(f"/campaigns/new?list={group}")
    await page.get_by_label("Campaign name").fill("On no day at all")
    await page.locator('[data-step-tab="delivery"]').click()
    choice = page.get_by_label("Active days")
    await choice.select_option("custom")
    for day in ("Mon", "Tue", "Wed", "Thu", "Fri"):
        await page.get_by_role("checkbox", name=day, exact=True).uncheck()
    await page.get_by_role("button", name="Review campaign").click()
    message = page.locator("#err-active_days")
    await expect(message).to_contain_text("day names")
    assert await _open_step(page) == "delivery"
    assert await _marked_steps(page) == ["delivery"]
    await expect(choice).to_have_attribute("aria-invalid", "true")

    await page.get_by_role("checkbox", name="Wed", exact=True).check()
    await expect(message).to_have_count(0)
    await expect(choice).not_to_have_attribute("aria-invalid", "true")
    await expect(_marked(page)).to_have_count(0)
    await expect(page.locator('[data-step-tab="delivery"]')).to_have_accessible_name("4 Delivery")
    await expect(choice).to_have_value("custom")  # nothing else changed
    watch.assert_clean()
    await context.close()


async def test_editing_the_video_template_clears_the_video_s_message_and_its_tab_s_mark(
    world: ConsoleWorld, browser: Browser
) -> None:
    """A video template id longer than outreach takes (201 characters; the page's own maxlength is taken off, as a
    client that does not hold to it): the review is refused at the video, its tab marked. Editing the template takes
    the message away, its field's aria-invalid and the Video tab's mark with it: only the video checkbox cleared it,
    though outreach judges the template and its segments as one value, ``video``."""
    workspace, token = await new_workspace(world, "ws-video-cleared")
    group = import_leads(world, workspace, "Video", 3)
    world.scenario(workspace).connect_account("Jonas Weber")
    world.api(workspace, "POST", "outreach", "/v1/plan/upgrade", json={"add_ons": ["video"]})
    context, page, watch = await new_page(browser, world)
    watch.allow(r"^/campaigns/new$", 422)
    await sign_in(page, token)
    await page.goto(f"/campaigns/new?list={group}")
    await page.get_by_label("Campaign name").fill("A video too long to name")
    await page.locator('[data-step-tab="video"]').click()
    await page.get_by_label("Attach a personalised video").check()
    template = page.get_by_label("Video template")
    await template.evaluate("field => field.removeAttribute('maxlength')")
    await template.fill("vt-" + "x" * 198)
    await page.get_by_role("button", name="Review campaign").click()
    message = page.locator("#err-video")
    await expect(message).to_contain_text("200")
    assert await _open_step(page) == "video"
    assert await _marked_steps(page) == ["video"]
    await expect(template).to_have_attribute("aria-invalid", "true")

    await template.fill("vt-intro")
    await expect(message).to_have_count(0)
    await expect(template).not_to_have_attribute("aria-invalid", "true")
    await expect(_marked(page)).to_have_count(0)
    await expect(page.locator('[data-step-tab="video"]')).to_have_accessible_name("5 Video")
    await expect(page.get_by_label("Attach a personalised video")).to_be_checked()
    watch.assert_clean()
    await context.close()


async def _plan_without_video(world: ConsoleWorld, workspace: str) -> None:
    """The workspace back on Starter without add-ons (as billing would store it: the operator's set_plan), once
    outreach reads it so (its plan cache keeps an entry a few seconds)."""
    engine = create_engine(world.database_url)
    try:
        await set_plan(engine, workspace, "starter")
    finally:
        await engine.dispose()
    await wait_for(
        lambda: world.api(workspace, "GET", "outreach", "/v1/plan")["features"],
        until=lambda features: "video" not in features,
        timeout_s=30,
        interval_s=0.2,
        what="outreach reading the plan without the video add-on (its cache entry expiring)",
    )


async def test_a_plan_required_video_message_keeps_its_upgrade_until_the_video_is_switched_off(
    world: ConsoleWorld, browser: Browser, tmp_path: Path
) -> None:
    """The builder drawn while the workspace had the Video add-on, the video ticked; the add-on is gone by the
    review, so outreach refuses it (403 plan_required) and the page is drawn again without the plan (outreach does
    not answer that read): the video step keeps its fields, and the message has its Upgrade button. Editing the
    template, a segment's field or its fallback leaves both (the plan did not change: the way to upgrade stays);
    switching the video off takes them away, and the tab's mark."""
    workspace, token = await new_workspace(world, "ws-video-plan")
    group = import_leads(world, workspace, "Gated", 3)
    world.scenario(workspace).connect_account("Mina Park")
    world.api(workspace, "POST", "outreach", "/v1/plan/upgrade", json={"add_ons": ["video"]})
    async with console_through(world, tmp_path, "outreach") as (url, proxies):
        outreach = proxies["outreach"]
        context, page, watch = await new_page(browser, world, url)
        watch.allow(r"^/campaigns/new$", 422)
        await sign_in(page, token)
        await page.goto(f"/campaigns/new?list={group}")
        await page.get_by_label("Campaign name").fill("Video without the add-on")
        await page.locator('[data-step-tab="video"]').click()
        await page.get_by_label("Attach a personalised video").check()
        await page.get_by_label("Segment 1 name").fill("greeting")
        await _plan_without_video(world, workspace)

        plan_read = outreach.cut_at(b"GET /v1/plan ", forwarded=False)  # the redraw's read of the plan, not the POST
        await page.get_by_role("button", name="Review campaign").click()
        message = page.locator("#err-video")
        await expect(message).to_contain_text("not included in your Starter plan")
        await asyncio.wait_for(plan_read.wait(), 30)
        await outreach.start()
        upgrade = message.get_by_role("button")  # the upgrade plan_required names (the Video add-on)
        await expect(upgrade).to_have_attribute("data-upgrade-addon", "video")
        video = page.get_by_label("Attach a personalised video")
        await expect(video).to_be_checked()  # drawn without the plan: the fields, not the locked step
        assert await _open_step(page) == "video"
        assert await _marked_steps(page) == ["video"]

        await page.get_by_label("Video template").fill("vt-other")
        await page.get_by_label("Video template").press("Tab")  # its change too
        await page.get_by_label("Segment 1 field").select_option("city")
        await page.get_by_label("Segment 1 fallback").fill("your city")
        await page.get_by_label("Segment 1 fallback").press("Tab")
        await expect(message).to_contain_text("not included in your Starter plan")
        await expect(upgrade).to_be_visible()
        await expect(upgrade).to_be_enabled()
        assert await _marked_steps(page) == ["video"]

        await video.uncheck()  # switched off: nothing of the plan is asked any more
        await expect(message).to_have_count(0)
        await expect(_marked(page)).to_have_count(0)
        await expect(page.locator('[data-step-tab="video"]')).to_have_accessible_name("5 Video")
        watch.assert_clean()
        await context.close()


async def test_the_stepper_scrolls_sideways_on_a_phone_with_the_current_step_in_view(
    world: ConsoleWorld, browser: Browser
) -> None:
    """At 390x844 the six tabs do not fit: the stepper scrolls sideways inside itself (the page does not), the
    current step's tab is scrolled into view as the user moves on with Next (the last tabs stayed off screen), and
    every step can be reached from its tab."""
    _, token = await new_workspace(world, "ws-stepper-phone")
    context, page, watch = await new_page(browser, world)
    await sign_in(page, token)
    await page.set_viewport_size(PHONE)
    await page.goto("/campaigns/new")
    stepper = page.get_by_role("list", name="Campaign steps")
    sizes = await stepper.evaluate(
        "s => ({scroll: s.scrollWidth, width: s.clientWidth, overflow: getComputedStyle(s).overflowX})"
    )
    assert sizes["scroll"] > sizes["width"] and sizes["overflow"] in ("auto", "scroll"), sizes
    await assert_fits_phone(page)  # the page itself is no wider than the phone

    in_view = """tab => {
        const bar = tab.closest('.stepper').getBoundingClientRect();
        const at = tab.getBoundingClientRect();
        return at.left >= bar.left - 1 && at.right <= bar.right + 1;
    }"""
    keys = await page.locator("[data-step-tab]").evaluate_all("tabs => tabs.map(t => t.dataset.stepTab)")
    assert keys == ["audience", "workflow", "messages", "delivery", "video", "accounts"]
    for key in keys:
        assert await _open_step(page) == key
        tab = page.locator(f'[data-step-tab="{key}"]')
        assert await tab.evaluate(in_view), f"the {key} tab is not in view in the stepper"
        await expect(page.locator(f"#step-{key}")).to_be_visible()
        assert await page.evaluate("() => window.scrollX") == 0
        if key != keys[-1]:
            await page.get_by_role("button", name="Next").click()
    assert await stepper.evaluate("s => s.scrollLeft") > 0  # scrolled sideways to the last tab
    for key in ("audience", "video", "workflow", "accounts"):  # every step reachable from its tab, either way
        await page.locator(f'[data-step-tab="{key}"]').click()
        assert await _open_step(page) == key
        await expect(page.locator(f"#step-{key}")).to_be_visible()
        assert await page.locator(f'[data-step-tab="{key}"]').evaluate(in_view)
        assert await page.evaluate("() => window.scrollX") == 0
    await screenshot(page, "builder-stepper-phone", full_page=False)
    watch.assert_clean()
    await context.close()
