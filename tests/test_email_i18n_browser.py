"""The zh-Hans issue email in real headless Chromium (issue 15): at a 375 px phone width
the translated index, links and footer show, the Chinese renders in a CJK font (Noto CJK,
installed by scripts/test) and nothing overflows. The screenshot goes to
artifacts/screenshots/issue-zh-Hans-375.png."""

from __future__ import annotations

from typing import Any

import pytest

from mailer.issue.files import parse_issue_file
from mailer.render.compiler import render_issue
from tests.browser import browser_fixture, new_page_fixture, save_screenshot  # noqa: F401
from tests.test_email_i18n import FULL, VALUES, branding

pytestmark = pytest.mark.browser


def test_zh_hans_email_at_375_px(new_page: Any) -> None:
    issue = parse_issue_file(FULL)
    html, _ = render_issue(issue, branding("zh-Hans")).personalize(VALUES)
    page = new_page(width=375, height=800)
    page.set_content(html, wait_until="load")
    assert page.blocked == [], f"external requests: {page.blocked}"
    sizes = page.evaluate(
        "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert sizes[0] <= sizes[1], f"horizontal overflow: {sizes}"
    assert page.evaluate("() => document.documentElement.lang") == "zh-Hans"
    assert page.locator("a.topbar-link").inner_text() == "在浏览器中查看"
    assert page.locator("p.index-heading").inner_text() == "今日要闻"
    assert page.locator("p.masthead-date").inner_text() == "2025年2月4日星期二"
    footer = page.locator("p.footer-links").inner_text()
    assert "退订" in footer and "管理订阅偏好" in footer
    # the Chinese is drawn in a font that has it (no tofu): a CJK run is as wide as
    # the same count of full-width characters in the page's fallback for Chinese
    wide = page.locator("p.index-heading").evaluate(
        "e => { const r = document.createRange(); r.selectNodeContents(e);"
        " return r.getBoundingClientRect().width / e.textContent.length; }"
    )
    size = page.locator("p.index-heading").evaluate("e => parseFloat(getComputedStyle(e).fontSize)")
    assert 0.8 * size <= wide <= 1.2 * size, (wide, size)
    path = save_screenshot(page, "issue-zh-Hans-375")
    assert path.stat().st_size > 10_000
