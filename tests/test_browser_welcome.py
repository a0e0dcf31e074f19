"""The reader's first day in real headless Chromium (issue 15), in English and in zh-Hans:
the subscribe form -> the confirmation mail from the outbox -> its page -> the button ->
the welcome mail in the outbox; every page in the list's language with <html lang> right,
axe-core finding no serious or critical problem, and Chinese drawn with real glyphs
(fonts-noto-cjk, installed by scripts/setup).

Screenshots (pages at 375 px, the welcome mail at 650 px) are kept in tests/artifacts/
(git-ignored).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from axe_playwright_python.sync_playwright import Axe

from subscribers import list_settings, store
from subscribers.list_settings import ListChanges
from tests.browser import chromium, chromium_available, open_page
from tests.conftest import Database
from tests.web_support import html_body, link_in, live_server, make_list, text_body, wait_for_mail

pytestmark = [
    pytest.mark.browser,
    pytest.mark.parametrize("db", ["sqlite"], indirect=True),
]

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
# what each language's pages say at each step (the catalogs' own words)
WORDS = {
    "en": {
        "email": "Email address",
        "subscribe": "Subscribe",
        "done": "Check your inbox",
        "confirm_heading": "Confirm your subscription",
        "confirm_button": "Confirm my subscription",
        "confirmed": "You are subscribed",
        "welcome_subject": "Welcome to The Test Brief",
        "welcome": "# Welcome to the brief\n\nEvery morning, nine stories from China's press.",
    },
    "zh-Hans": {
        "email": "电子邮件地址",
        "subscribe": "订阅",
        "done": "请查看您的收件箱",
        "confirm_heading": "确认订阅",
        "confirm_button": "确认我的订阅",
        "confirmed": "您已订阅",
        "welcome_subject": "欢迎订阅《The Test Brief》",
        "welcome": "# 欢迎订阅\n\n每天早上，为您精选九条中国媒体的报道。",
    },
}


@pytest.fixture(scope="module")
def chromium_browser() -> Iterator[Any]:
    if not chromium_available():
        pytest.skip("headless Chromium (/usr/bin/chromium + playwright) is not available")
    with chromium() as b:
        yield b


def _shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _axe(page: Any) -> list[str]:
    violations = Axe().run(page).response["violations"]
    return [
        f"{v['id']}: {v['help']} {[n['target'] for n in v['nodes']][:3]}"
        for v in violations
        if v.get("impact") in ("serious", "critical")
    ]


def _glyphs_drawn(page: Any, text: str) -> bool:
    """The text is drawn wider than a run of the missing-glyph box would be: a CJK font is
    there (without one, Chromium draws every character as the same tofu box)."""
    widths = page.evaluate(
        """(t) => {
            const c = document.createElement('canvas').getContext('2d');
            c.font = '20px sans-serif';
            return [c.measureText(t).width, c.measureText('\\u{10FFFF}'.repeat(t.length)).width];
        }""",
        text,
    )
    return bool(widths[0] != widths[1])


@pytest.mark.parametrize("lang", ["en", "zh-Hans"])
def test_subscribe_confirm_and_welcome(db: Database, chromium_browser: Any, lang: str) -> None:
    words = WORDS[lang]
    make_list(db.sessions, "brief", name="The Test Brief")
    with db.sessions.begin() as s:
        list_settings.update_list(
            s, store.get_list(s, "brief"), ListChanges(lang=lang, welcome_markdown=words["welcome"])
        )
    with (
        live_server(lambda url: db.settings(base_url=url, postal_address="1 Example Street")) as (
            server,
            settings,
        ),
        open_page(chromium_browser, width=375, height=812) as page,
    ):
        problems: dict[str, list[str]] = {}
        page.goto(f"{server.url}/subscribe/brief")
        assert page.evaluate("document.documentElement.lang") == lang
        problems["form"] = _axe(page)
        _shot(page, f"welcome-flow-{lang}-1-form")
        page.get_by_label(words["email"]).fill(f"chromium.{lang.lower()}@example.com")
        page.get_by_role("button", name=words["subscribe"], exact=True).click()
        page.get_by_role("heading", name=words["done"]).wait_for()
        problems["done"] = _axe(page)
        _shot(page, f"welcome-flow-{lang}-2-done")

        [confirm] = wait_for_mail(settings.outbox_dir / "0")
        page.goto(link_in(text_body(confirm), "confirm"))
        page.get_by_role("heading", name=words["confirm_heading"]).wait_for()
        assert page.evaluate("document.documentElement.lang") == lang
        problems["confirm"] = _axe(page)
        _shot(page, f"welcome-flow-{lang}-3-confirm")
        page.get_by_role("button", name=words["confirm_button"]).click()
        page.get_by_role("heading", name=words["confirmed"]).wait_for()
        problems["confirmed"] = _axe(page)
        _shot(page, f"welcome-flow-{lang}-4-confirmed")

        mails = wait_for_mail(settings.outbox_dir / "0", count=2)
        welcome = next(m for m in mails if m["Subject"] == words["welcome_subject"])
        assert welcome["To"] == f"chromium.{lang.lower()}@example.com"
        assert words["welcome"].splitlines()[0].lstrip("# ") in text_body(welcome)
        assert page.blocked == []
    # the mail in a page of its own (the site's CSP would block the mail's inline styles)
    with open_page(chromium_browser, width=650, height=900) as mail_page:
        mail_page.set_content(html_body(welcome))
        assert mail_page.evaluate("document.documentElement.lang") == lang
        heading = words["welcome"].splitlines()[0].lstrip("# ")
        mail_page.get_by_role("heading", name=heading).wait_for()
        if lang == "zh-Hans":
            assert _glyphs_drawn(mail_page, heading)
        _shot(mail_page, f"welcome-flow-{lang}-5-welcome-mail")
        assert mail_page.blocked == []
    found = {name: p for name, p in problems.items() if p}
    assert found == {}, found
    assert re.search(r"/preferences/", html_body(welcome))
