"""/admin in real headless Chromium (Debian's, through Playwright) against real uvicorn, with
the seeded ledger: the dashboard renders its charts without any network beyond our server,
and a suppression is removed through the real form. Screenshots land in
artifacts/screenshots/admin-dashboard.png and admin-suppressions.png.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from subscribers import store
from tests.browser import SCREENSHOT_DIR, chromium, chromium_available, save_screenshot
from tests.conftest import Database
from tests.ops_seed import seed
from tests.web_support import live_server

pytestmark = [
    pytest.mark.browser,
    pytest.mark.parametrize("db", ["sqlite"], indirect=True),
]

TOKEN = "browser-admin-token-0123456789"
_LOCAL = re.compile(r"^(?:data:|about:|https?://127\.0\.0\.1(?::\d+)?/)")


@pytest.fixture(scope="module")
def chromium_browser() -> Iterator[Any]:
    if not chromium_available():
        pytest.skip("headless Chromium (/usr/bin/chromium + playwright) is not available")
    with chromium() as b:
        yield b


def _page(browser: Any, *, credentials: bool, blocked: list[str], errors: list[str]) -> Any:
    context = browser.new_context(
        viewport={"width": 1280, "height": 900},
        device_scale_factor=1,
        http_credentials={"username": "ops", "password": TOKEN} if credentials else None,
    )

    def route(r: Any) -> None:
        if _LOCAL.match(r.request.url):
            r.continue_()
        else:
            blocked.append(r.request.url)
            r.abort()

    context.route("**/*", route)
    page = context.new_page()
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    return page


def test_dashboard_and_suppression_remove_in_chromium(db: Database, chromium_browser: Any) -> None:
    with db.sessions.begin() as session:
        seed(session, datetime.now(UTC).replace(microsecond=0))

    def settings_for(url: str) -> Any:
        return db.settings(base_url=url, admin_token=TOKEN)

    with live_server(settings_for) as (server, _settings):
        blocked: list[str] = []
        errors: list[str] = []
        anonymous = _page(chromium_browser, credentials=False, blocked=blocked, errors=errors)
        try:
            # (navigating would open the browser's password prompt; ask without one)
            denied = anonymous.request.get(server.url + "/admin")
            assert denied.status == 401
            assert denied.headers["www-authenticate"].startswith("Basic ")
        finally:
            anonymous.context.close()

        page = _page(chromium_browser, credentials=True, blocked=blocked, errors=errors)
        try:
            response = page.goto(server.url + "/admin")
            assert response.status == 200
            assert page.title() == "Dashboard · brief-mailer admin"
            assert page.locator("h1").inner_text() == "Delivery and reputation"
            charts = page.locator("svg.chart")
            assert charts.count() == 4
            for i in range(4):
                box = charts.nth(i).bounding_box()
                assert box is not None and box["width"] > 300 and box["height"] > 80
            # the style block ran under the CSP nonce: the header bar is dark
            bar = page.locator("header.bar").evaluate("e => getComputedStyle(e).backgroundColor")
            assert bar == "rgb(17, 24, 39)"
            assert page.get_by_text("Issue one").count() >= 1
            assert page.get_by_text("smtp; 550 5.1.1 user unknown").count() >= 1
            shot = save_screenshot(page, "admin-dashboard")
            assert shot.parent == SCREENSHOT_DIR and shot.stat().st_size > 20_000

            page.goto(server.url + "/admin/suppressions?q=a8")
            page.get_by_role("button", name="Remove a8@gmail.com").click()
            page.wait_for_url(re.compile(r".*removed=a8%40gmail\.com"))
            assert "Removed a8@gmail.com" in page.locator("p.flash").inner_text()
            page.goto(server.url + "/admin/suppressions")
            save_screenshot(page, "admin-suppressions")
        finally:
            page.context.close()
        assert blocked == []
        assert errors == []
    with db.sessions() as session:
        assert store.find_suppression(session, "a8@gmail.com") is None
