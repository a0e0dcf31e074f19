"""The rendered email in real headless Chromium: phone and desktop widths, dark mode."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from mailer.issue.files import parse_issue_file
from mailer.issue.model import Issue, Item
from mailer.render.compiler import Branding, RenderedIssue, render_issue
from tests.browser import browser_fixture, new_page_fixture, save_screenshot  # noqa: F401

pytestmark = pytest.mark.browser

FIXTURES = Path(__file__).parent / "fixtures" / "issues"
BRANDING = Branding(
    newsletter_name="The Harbour Dispatch",
    base_url="https://dispatch.example",
    postal_address="Harbour Dispatch Ltd, 12 Quay Street, Bristol BS1 4XY",
    archive_url="https://dispatch.example/archive/2025-03-03",
)
VALUES = {
    "unsubscribe_url": "https://dispatch.example/unsubscribe/" + "t" * 90,
    "preferences_url": "https://dispatch.example/preferences/" + "p" * 90,
    "name": "Ana",
}


def stress_issue() -> Issue:
    """What could push a phone layout sideways: unbreakable words, long URLs, CJK, emoji."""
    long_word = "Supercalifragilisticexpialidocious" * 5
    url = "https://example.com/" + "very-long-path-segment/" * 12 + "?q=" + "x" * 80
    return Issue(
        subject="Stress test; long words and links",
        preheader="Layout under pressure",
        date=None,
        intro=(f"An intro with {long_word} and a bare link {url} in the middle.",),
        items=(
            Item(
                title="A title with an unbreakable " + long_word,
                source="Source with a fairly long name for a label",
                paragraphs=(f"See {url} for details.", "深圳经济新闻" * 40, "😀🚀☕" * 30),
                url=url,
            ),
            Item("短标题", "新华社", ("一段中文摘要。" * 10,), "https://example.cn/a"),
        ),
        closing=(long_word,),
    )


Case = tuple[Issue, RenderedIssue]


@pytest.fixture(scope="module")
def cases() -> dict[str, Case]:
    basic = parse_issue_file(FIXTURES / "brief-basic.txt")
    stress = stress_issue()
    return {
        "basic": (basic, render_issue(basic, BRANDING)),
        "stress": (stress, render_issue(stress, BRANDING)),
    }


def titles_of(issue: Issue) -> list[str]:
    return [item.title for item in issue.items]


def check_layout(page: Any, width: int, titles: list[str]) -> None:
    assert page.blocked == [], f"external requests: {page.blocked}"
    scroll_width = page.evaluate("document.documentElement.scrollWidth")
    assert scroll_width <= width, f"horizontal overflow: {scroll_width} > {width}"
    links = page.locator("a.item-title-link")
    assert links.all_inner_texts() == titles
    for n in range(links.count()):
        link = links.nth(n)
        assert link.is_visible(), f"title {n + 1} not visible"
        box = link.bounding_box()
        assert box is not None and box["width"] > 0 and box["height"] > 0
        assert box["x"] >= 0 and box["x"] + box["width"] <= width + 0.5, (n, box)
        font_px = float(link.evaluate("e => getComputedStyle(e).fontSize").removesuffix("px"))
        assert font_px >= 16, f"title {n + 1} is {font_px}px"


@pytest.mark.parametrize("width", [375, 650])
@pytest.mark.parametrize("case", ["basic", "stress"])
def test_email_fits_and_shows_every_title(
    new_page: Any, cases: dict[str, Case], case: str, width: int
) -> None:
    issue, r = cases[case]
    html, _ = r.personalize(VALUES)
    page = new_page(width=width, height=900)
    page.set_content(html, wait_until="load")
    check_layout(page, width, titles_of(issue))
    path = save_screenshot(page, f"issue-{case}-{width}")
    assert path.stat().st_size > 1000


def luminance(css_color: str) -> float:
    r, g, b = (int(x) for x in re.findall(r"\d+", css_color)[:3])
    return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255


def test_dark_mode_switches_colours(new_page: Any, cases: dict[str, Case]) -> None:
    issue, r = cases["basic"]
    html, _ = r.personalize(VALUES)
    seen = {}
    for scheme in ("light", "dark"):
        page = new_page(width=375, color_scheme=scheme)
        page.set_content(html, wait_until="load")
        card = page.locator("div.card").first
        seen[scheme] = (
            luminance(card.evaluate("e => getComputedStyle(e).backgroundColor")),
            luminance(page.locator("p.item-text").first.evaluate("e => getComputedStyle(e).color")),
        )
        check_layout(page, 375, titles_of(issue))
        save_screenshot(page, f"issue-basic-375-{scheme}")
    assert seen["light"][0] > 0.9 and seen["light"][1] < 0.3  # dark text on white
    assert seen["dark"][0] < 0.2 and seen["dark"][1] > 0.7  # light text on dark


def test_web_edition_fits_on_a_phone(new_page: Any, cases: dict[str, Case]) -> None:
    issue, r = cases["basic"]
    page = new_page(width=375)
    page.set_content(r.for_archive(), wait_until="load")
    check_layout(page, 375, titles_of(issue))
    footer = page.locator("a.footer-link")
    assert footer.all_inner_texts() == ["Subscribe", "Past issues"]
    save_screenshot(page, "archive-basic-375")
