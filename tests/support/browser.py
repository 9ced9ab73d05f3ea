"""A real browser for the console's tests: Playwright driving Debian's Chromium (``/usr/bin/chromium``).

Playwright's own browser download is not reachable from these machines, so tests launch the system
Chromium (installed by ``deploy/local/chromium.sh``, which ``make test`` and ``.ci/run`` call). Every
page is watched: console errors, uncaught exceptions, failed requests and HTTP errors are recorded and
:meth:`PageWatch.assert_clean` fails the test on any of them (an expected 4xx is allowed explicitly).
With ``LEADSTREAM_SCREENSHOTS=1`` (``make screenshots``) screenshots go to ``.run/screenshots/`` at the two sizes
the console is designed for.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, ConsoleMessage, Page, Playwright, Request, Response, ViewportSize

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / ".run" / "screenshots"
DESKTOP: ViewportSize = {"width": 1280, "height": 800}
PHONE: ViewportSize = {"width": 390, "height": 844}
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",  # these machines run everything as root, where Chromium's sandbox cannot start
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium_path() -> str:
    """The system Chromium (``LEADSTREAM_CHROMIUM`` overrides); a clear error when it is not installed."""
    path = os.environ.get("LEADSTREAM_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).is_file():
        raise RuntimeError(
            f"Chromium not found at {path}: run `bash deploy/local/chromium.sh install` (Debian's chromium "
            "package) or set LEADSTREAM_CHROMIUM"
        )
    return path


async def launch(playwright: Playwright) -> Browser:
    """Headless system Chromium with a fresh profile (Playwright gives every launch a new user-data-dir)."""
    return await playwright.chromium.launch(executable_path=chromium_path(), headless=True, args=LAUNCH_ARGS)


@dataclass
class PageWatch:
    """What went wrong on a page: console errors, page errors, failed requests, HTTP error answers."""

    problems: list[str] = field(default_factory=list)
    allowed_statuses: dict[str, int] = field(default_factory=dict)
    """URL path regex -> an HTTP error status the test expects there (e.g. a 404 page)."""
    navigations: int = 0
    started: dict[Request, int] = field(default_factory=dict)
    aborted: list[tuple[Request, int]] = field(default_factory=list)

    def attach(self, page: Page) -> Page:
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.problems.append(f"page error: {exc}"))
        page.on("request", self._request)
        page.on("requestfailed", self._failed)
        page.on("response", self._response)
        page.on("framenavigated", lambda frame: self._navigated(page, frame))
        return page

    def _navigated(self, page: Page, frame: Any) -> None:
        if frame == page.main_frame:
            self.navigations += 1

    def _request(self, request: Request) -> None:
        self.started[request] = self.navigations

    def allow(self, path_pattern: str, status: int) -> None:
        """Let one expected error answer through (a 404 page, a refused form)."""
        self.allowed_statuses[path_pattern] = status

    def _console(self, msg: ConsoleMessage) -> None:
        if msg.type == "error" and not self._allowed_console(msg.text):
            self.problems.append(f"console error: {msg.text} at {msg.location}")

    def _allowed_console(self, text: str) -> bool:
        # Chromium logs the answer of an expected error page as "Failed to load resource: ... 404"; htmx logs one it
        # asked for (a live refresh, a form it posts) as "Response Status Error Code 503 from /path".
        if re.search(r"Failed to load resource: the server responded with a status of (\d+)", text):
            return any(f"status of {status}" in text for status in self.allowed_statuses.values())
        if found := re.search(r"Response Status Error Code (\d+) from (\S+?),? ", text):
            status, path = int(found[1]), found[2]
            return any(re.search(p, path) and status == s for p, s in self.allowed_statuses.items())
        return False

    def _failed(self, request: Request) -> None:
        failure = request.failure or ""
        if "ERR_ABORTED" in failure:
            # Leaving a page aborts what it still had open (its live stream, a refresh in flight): that is
            # only a failure when no navigation followed the request (decided in assert_clean).
            self.aborted.append((request, self.started.get(request, self.navigations)))
            return
        self.problems.append(f"request failed: {request.method} {request.url}: {failure}")

    def _response(self, response: Response) -> None:
        if response.status < 400:
            return
        path = re.sub(r"^https?://[^/]+", "", response.url)
        for pattern, status in self.allowed_statuses.items():
            if re.search(pattern, path) and response.status == status:
                return
        self.problems.append(f"HTTP {response.status}: {response.request.method} {response.url}")

    def assert_clean(self) -> None:
        """Fail with every problem seen so far."""
        problems = list(self.problems)
        for request, at in self.aborted:
            if self.navigations <= at:
                problems.append(f"request aborted without leaving the page: {request.method} {request.url}")
        assert not problems, "browser problems:\n" + "\n".join(problems)


SCREENSHOTS_ENV = "LEADSTREAM_SCREENSHOTS"
"""Set to 1 to take the screenshots (``make screenshots``): they are pictures for the docs, not checks, and the
eighty of them were a tenth of Chromium's CPU in ``make test``."""


async def screenshot(page: Page, name: str, *, full_page: bool = True) -> list[Path]:
    """``.run/screenshots/<name>-desktop.png`` (1280x800) and ``-phone.png`` (390x844) when ``LEADSTREAM_SCREENSHOTS``
    is 1 (none otherwise); the viewport is restored."""
    if os.environ.get(SCREENSHOTS_ENV) != "1":
        return []
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    before: ViewportSize = page.viewport_size or DESKTOP
    out = []
    for label, size in (("desktop", DESKTOP), ("phone", PHONE)):
        await page.set_viewport_size(size)
        path = SCREENSHOTS / f"{name}-{label}.png"
        await page.screenshot(path=str(path), full_page=full_page, animations="disabled")
        out.append(path)
    await page.set_viewport_size(before)
    return out


async def assert_fits_phone(page: Page) -> None:
    """At 390x844 the page scrolls only vertically: nothing is wider than the screen (wide tables and graphs
    scroll inside their own boxes). The viewport is restored."""
    before: ViewportSize = page.viewport_size or DESKTOP
    await page.set_viewport_size(PHONE)
    try:
        widest = await page.evaluate(
            """() => {
                const width = document.documentElement.clientWidth;
                const clipped = e => {
                    for (let a = e.parentElement; a && a !== document.body; a = a.parentElement) {
                        const x = getComputedStyle(a).overflowX;
                        if (['auto', 'scroll', 'hidden', 'clip'].includes(x)) { return true; }
                    }
                    return false;
                };
                const over = [...document.querySelectorAll('body *')].filter(e => {
                    const r = e.getBoundingClientRect();
                    return r.width > 0 && r.right > width + 1 && !clipped(e);
                });
                return {scroll: document.documentElement.scrollWidth, width,
                        over: over.slice(0, 5).map(e => e.tagName + '#' + e.id + '.' + e.className)};
            }"""
        )
        assert widest["scroll"] <= widest["width"] and not widest["over"], f"wider than a phone: {widest}"
    finally:
        await page.set_viewport_size(before)


async def assert_one_line(page: Page, selector: str = ".badge, .chip") -> None:
    """At the desktop and the phone size, no short label (a status badge, a chip) is broken over two lines ("sendin"
    above "g" in a narrow card). The viewport is restored."""
    before: ViewportSize = page.viewport_size or DESKTOP
    try:
        for size in (DESKTOP, PHONE):
            await page.set_viewport_size(size)
            broken = await page.evaluate(
                """selector => [...document.querySelectorAll(selector)].filter(e => {
                    if (e.getBoundingClientRect().width === 0) { return false; }
                    const range = document.createRange();
                    range.selectNodeContents(e);
                    return new Set([...range.getClientRects()].map(r => Math.round(r.top))).size > 1;
                }).map(e => e.textContent.trim())""",
                selector,
            )
            assert broken == [], f"labels broken over lines at {size}: {broken}"
    finally:
        await page.set_viewport_size(before)


async def assert_labelled(page: Page) -> None:
    """Every visible form control has an accessible name (a label, aria-label or aria-labelledby) and every
    button says what it does: what a screen reader or a keyboard user needs."""
    nameless = await page.evaluate(
        """() => [...document.querySelectorAll('input, select, textarea, button')].filter(e => {
            if (e.type === 'hidden' || e.closest('[hidden], dialog:not([open])')) { return false; }
            const r = e.getBoundingClientRect();
            if (r.width === 0 && r.height === 0) { return false; }
            const byLabel = e.labels && [...e.labels].some(l => l.textContent.trim());
            const byAria = (e.getAttribute('aria-label') || '').trim()
                || (e.getAttribute('aria-labelledby') || '').split(' ').some(id => {
                    const l = document.getElementById(id);
                    return l && l.textContent.trim();
                });
            const byText = e.tagName === 'BUTTON' && e.textContent.trim();
            return !(byLabel || byAria || byText);
        }).map(e => e.outerHTML.slice(0, 120))"""
    )
    assert not nameless, f"controls without a name: {nameless}"
