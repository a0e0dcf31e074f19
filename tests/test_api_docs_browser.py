"""/api/v1/docs in real Chromium: Swagger UI loads from the server itself under the page's
CSP (nothing from a CDN, no CSP violation), shows every operation, and a call made from
the page with a token works."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api_support import running_api
from tests.browser import browser_fixture, new_page_fixture, save_screenshot  # noqa: F401
from tests.conftest import Database


@pytest.mark.browser
def test_swagger_ui_runs_offline_under_its_csp(db: Database, new_page: Any) -> None:
    if db.backend != "sqlite":
        pytest.skip("the docs page does not touch the store")
    with running_api(db) as api:
        page = new_page(width=1280)
        problems: list[str] = []
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.goto(f"{api.url}/api/v1/docs")
        try:
            page.wait_for_selector(".swagger-ui .info .title", timeout=20_000)
        except Exception:
            raise AssertionError((problems, page.blocked, page.content()[:2000])) from None
        assert "brief-mailer API" in page.inner_text(".swagger-ui .info .title")
        page.wait_for_selector(".opblock", timeout=20_000)
        assert page.locator(".opblock").count() == 17
        save_screenshot(page, "api-docs")

        # Authorize with the editor token, then "Try it out" on GET /api/v1/lists
        page.click("button.authorize")
        page.fill(".auth-container input", api.editor)
        page.click(".auth-btn-wrapper button.authorize")
        page.click(".btn-done")
        op = page.locator("#operations-lists-get_lists_api_v1_lists_get")
        op.locator(".opblock-summary").click()
        op.locator(".try-out__btn").click()
        op.locator(".execute").click()
        cell = op.locator(".live-responses-table tbody .response-col_status").first
        cell.wait_for(timeout=20_000)
        status = cell.inner_text()
        assert status.strip().startswith("200"), status
        body = op.locator(".live-responses-table tbody .response-col_description pre").first
        assert '"slug": "brief"' in body.inner_text()
        save_screenshot(page, "api-docs-try-it")

        assert page.blocked == []  # nothing outside the server was asked for
        assert not [p for p in problems if "Content Security Policy" in p], problems
