"""What the last walkthrough of the console left, each as a sales user meets it (Chromium, the real services,
Kafka and Postgres):

- a lead list longer than a page pages on and back to its first page, as every long list does;
- a lead's page names each written step as the Messaging Lab does ("Follow-up", not "Message · step follow_up");
- home's empty "Campaign health" panel says what the workspace's next step really is;
- the Messaging Lab's index lists the campaigns without drafts waiting too, each with its way in;
- a draft rejected, edited or approved while messaging does not answer: the error shows at the form and the
  words typed stay; the same for the other forms that post to a backend (add lead, blocklist, accounts, builder);
- a lead's page blocks the lead's company domain, email or LinkedIn profile in one confirmed click.
"""

from __future__ import annotations

import re
import uuid

import pytest
from playwright.async_api import Browser, expect

from tests.support.console import ConsoleWorld, new_page, sign_in

from .conftest import PAGE_SIZE

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]
expect.set_options(timeout=45_000)


async def _workspace(world: ConsoleWorld, name: str) -> tuple[str, str]:
    """A new workspace of its own (the scene's lists and campaigns stay as other tests expect them)."""
    workspace = f"{name}-{uuid.uuid4().hex[:6]}"
    return workspace, await world.token(workspace)


def _import(world: ConsoleWorld, workspace: str, name: str, people: int) -> str:
    """A lead list of ``people`` made through discovery's CSV import (as the console's upload does); its id."""
    rows = ["LinkedIn URL,Email,First name,Last name,Company,Title"]
    rows += [f"https://www.linkedin.com/in/{name.lower()}-{i:02d},,Person,{name} {i:02d},Acme,CFO" for i in range(people)]
    report = world.api(
        workspace,
        "POST",
        "discovery",
        "/v1/imports/csv",
        files={"file": ("people.csv", ("\n".join(rows) + "\n").encode(), "text/csv")},
        data={"name": f"{name} list"},
    )
    assert report["imported"] == people, report
    return str(report["source_group_id"])


async def test_a_lead_list_longer_than_a_page_pages_on_and_back_to_the_first_page(
    world: ConsoleWorld, browser: Browser
) -> None:
    workspace, token = await _workspace(world, "ws-list-pages")
    people = PAGE_SIZE + 3
    group = _import(world, workspace, "Paging", people)
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
