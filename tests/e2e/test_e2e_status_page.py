"""The status page in a real headless Chromium (Debian's, driven by Playwright; no browser download),
against the whole stack: sign-in by the form, every account shown, a finished task's thumbnail
loaded, the page refreshing itself, no console error, and screenshots at 1280 px and on a phone."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from e2e_support import ADMIN_SECRET, Stack
from playwright.async_api import ConsoleMessage, Error, Page, async_playwright

from broker.api.sessions import COOKIE_NAME

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ADMIN = {"mj-api-secret": ADMIN_SECRET}


async def _finished_task(stack: Stack) -> dict[str, Any]:
    reply = await stack.post(
        "/mj/submit/imagine",
        {"prompt": "a lighthouse for the status page", "accountFilter": {"instanceId": "a0"}},
    )
    assert reply["code"] in (1, 22), reply
    task = await stack.wait_task(str(reply["result"]), ("SUCCESS",))
    assert task["imageUrl"], task
    # the page reads finished tasks from the ledger, which the workers append just after the end
    deadline = time.monotonic() + 15
    while f'data-task="{task["id"]}"' not in (await stack.api.get("/admin/fragment", headers=ADMIN)).text:
        assert time.monotonic() < deadline, "the finished task did not reach the status page"
        await asyncio.sleep(0.2)
    return task


async def _sign_in(page: Page, base: str) -> None:
    await page.goto(f"{base}/admin")
    assert page.url == f"{base}/admin/login", page.url  # no session yet: the form
    await page.fill("#key", ADMIN_SECRET)
    async with page.expect_navigation():
        await page.click("button[type=submit]")
    assert page.url == f"{base}/admin", page.url


async def test_status_page_in_chromium_shows_accounts_and_a_finished_tasks_thumbnail(
    stack: Stack, tmp_path: Path
) -> None:
    task = await _finished_task(stack)
    base = f"http://127.0.0.1:{stack.web_port}"
    problems: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        where = message.location.get("url", "")
        if message.text.startswith("Failed to load resource") and where and not where.startswith(base):
            # a thumbnail of an earlier test's task whose host no longer has the image: what the
            # page shows, not an error of the page (this test's own thumbnail must load, below)
            return
        problems.append(f"console: {message.text} ({where})")

    def on_page_error(error: Error) -> None:
        problems.append(f"page error: {error}")

    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"),  # a fresh profile: nothing cached, no session yet
            executable_path=CHROMIUM,
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": 1280, "height": 900},
        )
        try:
            page = context.pages[0] if context.pages else await context.new_page()
            page.on("console", on_console)
            page.on("pageerror", on_page_error)
            await _sign_in(page, base)
            session = [c for c in await context.cookies() if c["name"] == COOKIE_NAME]
            assert session and session[0]["httpOnly"] and session[0]["sameSite"] == "Strict", session

            shown = await page.locator("td[data-label=account] b").all_inner_texts()
            assert shown == [f"a{i}" for i in range(stack.n_accounts)], shown
            image = page.locator(f'li[data-task="{task["id"]}"] img.thumb')
            await image.scroll_into_view_if_needed()  # lazy: loads when near the viewport
            await page.wait_for_function(
                "img => img.complete && img.naturalWidth > 0",
                arg=await image.element_handle(),
                timeout=10_000,
            )
            assert await image.get_attribute("src") == task["imageUrl"]
            card = await page.locator(f'li[data-task="{task["id"]}"]').inner_text()
            assert "SUCCESS" in card and "IMAGINE" in card, card

            # it refreshes itself (the script, allowed by the page's Content-Security-Policy)
            before = await page.locator("#updated").inner_text()
            await page.wait_for_function(
                "before => document.getElementById('updated').innerText !== before",
                arg=before,
                timeout=15_000,
            )
            # the refreshed content still has the thumbnail, at its fixed size
            box = await page.locator(f'li[data-task="{task["id"]}"] img.thumb').bounding_box()
            assert box is not None and round(box["width"]) == 96, box

            await page.screenshot(path=str(tmp_path / "status-1280.png"), full_page=True)
            await page.set_viewport_size({"width": 390, "height": 844})
            await page.reload()
            overflow = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, f"the phone layout scrolls sideways by {overflow} px"
            await page.screenshot(path=str(tmp_path / "status-phone.png"), full_page=True)
        finally:
            await context.close()
    assert (tmp_path / "status-1280.png").stat().st_size > 0 and (
        tmp_path / "status-phone.png"
    ).stat().st_size > 0
    assert problems == [], problems
