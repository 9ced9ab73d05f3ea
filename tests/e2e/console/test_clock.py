"""Relative times are measured on the events' clock: the projection's, which runs 1800 times faster than the wall
clock here (as in the demo), while the console itself runs on the wall clock (tests/support/console.py)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest
from playwright.async_api import Browser, expect

from services.runtime.clock import clock_from_settings
from tests.support.console import ConsoleWorld, new_page, sign_in

from .conftest import WORKSPACE, Scene

pytestmark = pytest.mark.e2e

FUTURE = re.compile(r"data-rel[^>]*>in \d")
"""A server-rendered relative time in the future ("in 10 min")."""


async def test_relative_times_follow_the_projections_clock_not_the_consoles(
    world: ConsoleWorld, scene: Scene, browser: Browser
) -> None:
    env = world.fleet.env
    scale = float(env["LEADSTREAM_CLOCK_SCALE"])
    events_clock = clock_from_settings(scale, datetime.fromisoformat(env["LEADSTREAM_CLOCK_EPOCH"]))
    assert scale > 1
    results = world.api(WORKSPACE, "GET", "projection", f"/v1/campaigns/{scene.campaign}/results")
    lead = results["items"][0]["lead_id"]

    context, page, watch = await new_page(browser, world)
    await sign_in(page, scene.token)
    # The server's rendering: no past event reads as in the future (the bug: "Replied ... in 10 min").
    for path in ("/", f"/leads/{lead}", f"/campaigns/{scene.campaign}"):
        html = await (await page.request.get(path)).text()
        assert "data-rel" in html, path
        if path != "/":  # home also shows the next runs, which are in the future
            assert not FUTURE.search(html), (path, FUTURE.search(html))

    # The browser's: "now" is the projection's time, and it moves at the projection's pace.
    await page.clock.install()
    before = events_clock.now()
    await page.goto(f"/leads/{lead}")
    after = events_clock.now()
    shown = datetime.fromtimestamp(await page.evaluate("window.leadstreamNow()") / 1000, tz=before.tzinfo)
    assert before - timedelta(minutes=30) <= shown <= after + timedelta(minutes=30), (before, shown, after)
    times = page.locator("#timeline time[data-rel]")
    await expect(times.first).to_be_visible()
    for text in await times.all_inner_texts():
        assert not text.startswith("in "), text
    start = await page.evaluate("window.leadstreamNow()")
    await page.clock.fast_forward(60_000)
    moved = (await page.evaluate("window.leadstreamNow()")) - start
    assert abs(moved - 60_000 * scale) < 60_000 * scale * 0.01, moved  # a minute later: 30 hours of campaign time
    watch.assert_clean()
    await context.close()
