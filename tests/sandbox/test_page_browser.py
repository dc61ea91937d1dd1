"""The /sandbox page in a real browser (Debian's chromium driven by Playwright).

Needs ``apt-get install chromium`` and the dev extra (playwright); it never downloads a browser.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from crm.models import Conversation
from crm.settings import Settings
from tests.support.bot import LEAD, lead_writes, onboard_owner, sent, whatsapp_connection
from tests.support.polling import eventually
from tests.support.service import RunningService, running_service

CHROMIUM = Path("/usr/bin/chromium")
HAVE_CHROMIUM = CHROMIUM.is_file()
OWNER, RIVAL = 5201, 5202


def _sign_in_link(text: str) -> str:
    match = re.search(r"(http://\S+/sandbox\?signin=\S+)", text)
    assert match is not None, text
    return match.group(1)


async def _rival_writes_to_the_same_lead(service: RunningService) -> None:
    """Another workspace answers the same WhatsApp number: its text must stay out of the page."""
    rival = await onboard_owner(service, RIVAL, "Rita")
    await lead_writes(service, await whatsapp_connection(rival.current_tenant_id or 0), "A", "hi")
    token = _sign_in_link((await sent(service, RIVAL))[0]["text"]).split("signin=")[1]
    key = (await service.http.post("/sandbox/session", json={"token": token})).json()["api_key"]

    async def stored() -> bool:
        return await Conversation.filter(tenant_id=rival.current_tenant_id).exists()

    await eventually(stored)
    conversation = await Conversation.get(tenant_id=rival.current_tenant_id)
    posted = await service.http.post(
        f"/api/v1/conversations/{conversation.id}/messages",
        json={"text": "Secret from the rival workspace"},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert posted.status_code == 202, posted.text


async def test_sign_in_chat_both_ways_and_nothing_from_elsewhere(
    settings: Settings, tmp_path: Path
) -> None:
    playwright_api = pytest.importorskip("playwright.async_api")
    assert HAVE_CHROMIUM, "the browser test needs Debian's chromium: apt-get install chromium"
    async with running_service(settings, media_dir=tmp_path / "media") as service:
        await onboard_owner(service, OWNER, "Olga")
        link = _sign_in_link((await sent(service, OWNER))[0]["text"])
        await _rival_writes_to_the_same_lead(service)

        origin = urlsplit(service.base_url).netloc
        requests: list[str] = []
        failed: list[tuple[str, int]] = []
        problems: list[str] = []
        async with playwright_api.async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=["--no-sandbox", "--headless"]
            )
            try:
                page = await browser.new_page()
                page.on("request", lambda request: requests.append(request.url))
                page.on(
                    "response",
                    lambda r: (
                        failed.append((urlsplit(r.url).path, r.status)) if r.status >= 400 else None
                    ),
                )
                page.on("pageerror", lambda error: problems.append(str(error)))

                def on_console(message: Any) -> None:
                    if message.type == "error":
                        problems.append(message.text)

                page.on("console", on_console)
                await page.goto(link)
                banner = page.locator("#signin")
                await playwright_api.expect(banner).to_contain_text("Signed in to Olga's workspace")
                assert "signin=" not in page.url  # the used token leaves the address bar
                await playwright_api.expect(page.locator("#status")).to_have_text("connected")

                await page.fill("#lead", LEAD)
                await page.fill("#leadtext", "Hello from the lead")
                await page.press("#leadtext", "Enter")
                crm = page.locator("#crmlog")
                await playwright_api.expect(crm).to_contain_text(
                    "Hello from the lead", timeout=30_000
                )

                await page.fill("#replytext", "Hello from Olga")
                await page.click("#reply")
                lead = page.locator("#leadlog")
                await playwright_api.expect(lead).to_contain_text("Hello from Olga", timeout=30_000)
                assert "Secret from the rival" not in await lead.inner_text()

                # The link works once: opened again, it says so.
                again = await browser.new_page()
                again.on(
                    "response",
                    lambda r: (
                        failed.append((urlsplit(r.url).path, r.status)) if r.status >= 400 else None
                    ),
                )
                await again.goto(link)
                await playwright_api.expect(again.locator("#signin")).to_contain_text(
                    "already used"
                )
            finally:
                await browser.close()
        assert requests and all(urlsplit(url).netloc == origin for url in requests), requests
        # The reused link's refusal is a 410 the page reports; nothing else may go wrong.
        assert failed == [("/sandbox/session", 410)]
        assert [p for p in problems if "410" not in p] == []
