"""The chat page in a real headless browser (Debian's Chromium driven by Playwright)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import LiveServer

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


async def test_visitor_chats_in_the_browser(live_server: LiveServer, tmp_path: Path) -> None:
    """A visitor opens /, asks a question, sees the streamed answer and quick actions."""
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
            page = await browser.new_page()
            await page.goto(live_server.url + "/")
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
        finally:
            await browser.close()
