"""The chat page and the API docs in a real headless browser (Debian's Chromium driven by
Playwright), under the server's Content-Security-Policy and WebSocket Origin check."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import LiveServer, LiveServerFactory
from tests.fakes.services import unused_tcp_port

CHROMIUM = "/usr/bin/chromium"


def _require_browser() -> None:
    reason = ""
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        reason = "the playwright package is not installed"
    if not reason and not (Path(CHROMIUM).exists() or shutil.which("chromium")):
        reason = "Chromium is not installed (apt-get install chromium)"
    if reason:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason} (CI=true, so this test needs it)", pytrace=False)
        pytest.skip(reason)


@pytest.fixture
async def served(live_server_factory: LiveServerFactory) -> AsyncIterator[LiveServer]:
    """A server on a known port, so that its default public_url (the origin the browser
    sends on the WebSocket handshake) is the address the browser opens."""
    async with live_server_factory(server={"port": unused_tcp_port()}) as srv:
        yield srv


class Watched:
    """A page plus what it reported: console errors (CSP violations among them) and every
    URL it requested."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.errors: list[str] = []
        self.requests: list[str] = []
        page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("request", lambda r: self.requests.append(r.url))


@asynccontextmanager
async def browser_page() -> AsyncIterator[Watched]:
    """A fresh page in headless Chromium."""
    _require_browser()
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        try:
            yield Watched(await browser.new_page())
        finally:
            await browser.close()


async def test_visitor_chats_in_the_browser(served: LiveServer, tmp_path: Path) -> None:
    """A visitor opens /, asks a question, sees the streamed answer and quick actions; the
    page's script and style load under its CSP with no console error."""
    async with browser_page() as watched:
        page = watched.page
        await page.goto(served.url + "/")
        await page.wait_for_selector("text=connected")
        await page.fill("#text", "How much does a security review cost?")
        await page.click("button[type=submit]")
        reply = page.locator(".msg.ai .meta")
        await reply.first.wait_for(timeout=15_000)
        text = await page.locator(".msg.ai").last.inner_text()
        assert "£" in text
        assert "tokens" in text
        await page.click("#actions button >> nth=0")
        await page.locator(".msg.ai .meta").nth(1).wait_for(timeout=15_000)
        await page.screenshot(path=str(tmp_path / "chat.png"))
        assert (tmp_path / "chat.png").stat().st_size > 1000
        assert watched.errors == []


async def test_api_docs_render_offline_from_this_server(served: LiveServer) -> None:
    """/api/docs renders Swagger UI with the API's operations, every request it makes goes
    to this server (the page works offline), and its CSP reports no violation."""
    async with browser_page() as watched:
        page = watched.page
        await page.goto(served.url + "/api/docs")
        await page.locator(".swagger-ui .info .title", has_text="chatwatch").wait_for(
            timeout=15_000
        )
        await page.locator(".opblock-summary-path", has_text="/api/v1/auth/guest").first.wait_for()
        foreign = [u for u in watched.requests if not u.startswith(served.url + "/")]
        assert (foreign, watched.errors) == ([], [])
