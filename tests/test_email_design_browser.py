"""The issue email in real headless Chromium (issue 15): the headline index at phone and
desktop widths with no horizontal overflow, index links that land on their item, dark mode
(prefers-color-scheme and Outlook's [data-ogsc]) with a readable source label, and no
greeting for a nameless reader. Screenshots go to artifacts/screenshots/."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from mailer.issue.files import parse_issue_file
from mailer.issue.model import Issue
from mailer.render.colours import contrast
from mailer.render.compiler import Branding, RenderedIssue, render_issue
from tests.browser import browser_fixture, new_page_fixture, save_screenshot  # noqa: F401

pytestmark = pytest.mark.browser

FULL = Path(__file__).parent / "fixtures" / "issues" / "brief-full.txt"
BASE = "https://north.example"
BRANDING = Branding(
    "The North Brief",
    BASE,
    "The North Brief Ltd\n12 Quay Street\nBristol BS1 4XY",
    archive_url=f"{BASE}/archive/north/0123456789abcdef",
)
VALUES = {
    "unsubscribe_url": f"{BASE}/unsubscribe/" + "t" * 90,
    "preferences_url": f"{BASE}/preferences/" + "p" * 90,
}


@pytest.fixture(scope="module")
def full() -> tuple[Issue, RenderedIssue]:
    issue = parse_issue_file(FULL)
    return issue, render_issue(issue, BRANDING)


def hex_of(css: str) -> str:
    r, g, b = (int(x) for x in re.findall(r"\d+", css)[:3])
    return f"#{r:02x}{g:02x}{b:02x}"


def no_overflow(page: Any) -> None:
    sizes = page.evaluate(
        "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert sizes[0] <= sizes[1], f"horizontal overflow: scrollWidth {sizes[0]} > {sizes[1]}"


@pytest.mark.parametrize("width", [375, 650])
def test_headline_index_fits_and_each_entry_lands_on_its_item(
    new_page: Any, full: tuple[Issue, RenderedIssue], width: int
) -> None:
    issue, r = full
    html, _ = r.personalize({**VALUES, "name": "Ana"})
    page = new_page(width=width, height=800)
    page.set_content(html, wait_until="load")
    assert page.blocked == [], f"external requests: {page.blocked}"
    no_overflow(page)
    index = page.locator("ol.index-list a.index-link")
    assert index.all_inner_texts() == [i.title for i in issue.items]
    for n in range(index.count()):
        box = index.nth(n).bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width + 0.5
    assert page.locator("a.topbar-link").inner_text() == "View in browser"
    save_screenshot(page, f"issue-index-{width}")
    index.nth(7).click()  # the eighth headline: the page scrolls to the eighth item
    page.wait_for_function("() => window.scrollY > 0")
    top = page.locator("#item-8 a.item-title-link").bounding_box()
    assert top is not None and 0 <= top["y"] < 120, top
    no_overflow(page)


def test_dark_mode_keeps_the_source_label_readable(
    new_page: Any, full: tuple[Issue, RenderedIssue]
) -> None:
    _, r = full
    html, _ = r.personalize({**VALUES, "name": "Ana"})
    seen = {}
    for scheme in ("light", "dark"):
        page = new_page(width=375, height=900, color_scheme=scheme)
        page.set_content(html, wait_until="load")
        no_overflow(page)
        card = hex_of(
            page.locator("div.card").first.evaluate("e => getComputedStyle(e).backgroundColor")
        )
        label = hex_of(
            page.locator("p.item-source").first.evaluate("e => getComputedStyle(e).color")
        )
        title = hex_of(
            page.locator("a.item-title-link").first.evaluate("e => getComputedStyle(e).color")
        )
        seen[scheme] = (card, label, title)
        save_screenshot(page, f"issue-full-375-{scheme}")
    for scheme, (card, label, title) in seen.items():
        assert contrast(label, card) >= 4.5, (scheme, label, card)
        assert contrast(title, card) >= 4.5, (scheme, title, card)
        r_, g_, b_ = (int(label[i : i + 2], 16) for i in (1, 3, 5))
        assert r_ > g_ + 40 and r_ > b_ + 40, f"{scheme}: the label lost its red ({label})"
    assert seen["dark"][0] != seen["light"][0]  # the card did switch


def test_outlook_dark_mode_attribute_keeps_the_label(
    new_page: Any, full: tuple[Issue, RenderedIssue]
) -> None:
    """Outlook.com marks what it recoloured with data-ogsc: our rule gives the label the
    dark-mode accent, as it would for prefers-color-scheme."""
    _, r = full
    html, _ = r.personalize({**VALUES, "name": "Ana"})
    page = new_page(width=650)
    page.set_content(html, wait_until="load")
    light = page.locator("p.item-source").first.evaluate("e => getComputedStyle(e).color")
    page.evaluate("() => document.body.setAttribute('data-ogsc', '')")
    marked = page.locator("p.item-source").first.evaluate("e => getComputedStyle(e).color")
    assert hex_of(marked) != hex_of(light)
    assert contrast(hex_of(marked), "#1e1e1e") >= 4.5


def test_a_nameless_reader_sees_no_hello(new_page: Any, full: tuple[Issue, RenderedIssue]) -> None:
    _, r = full
    for name, greeted in (("", False), ("Ana", True)):
        html, _ = r.personalize({**VALUES, "name": name})
        page = new_page(width=375)
        page.set_content(html, wait_until="load")
        shown = page.locator("body").inner_text()
        assert ("Hello Ana," in shown) is greeted
        assert ("Hello" in shown) is greeted
        greeting = page.locator("p.greeting")
        height = greeting.evaluate("e => e.getBoundingClientRect().height")
        assert (height > 0) is greeted  # no empty line where the greeting would be
        if not greeted:
            save_screenshot(page, "issue-nameless-375", full_page=False)


def test_web_edition_shows_the_title_and_fits(
    new_page: Any, full: tuple[Issue, RenderedIssue]
) -> None:
    issue, r = full
    page = new_page(width=375)
    page.set_content(r.for_archive(), wait_until="load")
    no_overflow(page)
    assert page.locator("h1.issue-title").inner_text() == issue.subject
    shown = page.locator("body").inner_text()
    assert "Reply to this email" not in shown and "Forwarded this" not in shown
    assert "Unsubscribe" not in shown and "View in browser" not in shown
    save_screenshot(page, "archive-full-375")
