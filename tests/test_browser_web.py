"""The reader pages in real headless Chromium (Debian's, through Playwright), served by real
uvicorn: subscribe -> confirmation mail from the outbox -> its link -> the button -> active;
unsubscribe from a received issue (and "subscribe again" only mails a link to confirm);
keyboard only; axe-core finds no serious or critical problem.

Screenshots at 375 px land in artifacts/screenshots/web-*.png.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from sqlalchemy import select

from mailer.urls import archive_url
from subscribers import store
from subscribers.models import ConsentEvent
from tests.browser import chromium, chromium_available, open_page, save_screenshot
from tests.conftest import Database
from tests.web_support import (
    LiveServer,
    add_active,
    html_body,
    link_in,
    live_server,
    make_list,
    read_eml,
    sample_issue,
    send_issue,
    text_body,
    wait_for_mail,
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.parametrize("db", ["sqlite"], indirect=True),
]

PHONE = {"width": 375, "height": 812}


@pytest.fixture(scope="module")
def chromium_browser() -> Iterator[Any]:
    """Debian's Chromium through Playwright (tests.browser), one per module."""
    if not chromium_available():
        pytest.skip("headless Chromium (/usr/bin/chromium + playwright) is not available")
    with chromium() as b:
        yield b


@pytest.fixture
def new_page(chromium_browser: Any) -> Iterator[Callable[..., Any]]:
    """Factory of fresh pages (own context, no shared cookies, only local requests)."""
    with ExitStack() as stack:

        def make(**kwargs: Any) -> Any:
            return stack.enter_context(open_page(chromium_browser, **kwargs))

        yield make


class Site:
    def __init__(self, db: Database, server: LiveServer, settings: Any) -> None:
        self.db = db
        self.server = server
        self.settings = settings
        self.url = server.url

    def status(self, address: str, slug: str = "brief") -> str | None:
        with self.db.sessions() as s:
            sub = store.find_subscriber(s, address)
            if sub is None:
                return None
            mlist = store.get_list(s, slug)
            return next((x.status for x in sub.subscriptions if x.list_id == mlist.id), None)


@pytest.fixture
def site(db: Database) -> Iterator[Site]:
    make_list(db.sessions, "brief", name="The Test Brief")
    make_list(db.sessions, "other", name="Other Letter")
    with live_server(
        lambda url: db.settings(base_url=url, postal_address="1 Example Street\nSpringfield")
    ) as (server, settings):
        yield Site(db, server, settings)


def _no_js_page(browser: Any) -> Any:
    """A phone-sized page with JavaScript switched off (the pages must not need it)."""
    context = browser.new_context(viewport=PHONE, java_script_enabled=False)
    context.route(
        "**/*",
        lambda route: (
            route.continue_()
            if re.match(r"^https?://127\.0\.0\.1(:\d+)?/", route.request.url)
            else route.abort()
        ),
    )
    return context, context.new_page()


def test_subscribe_on_the_form_and_confirm_from_the_mail(site: Site, chromium_browser: Any) -> None:
    context, page = _no_js_page(chromium_browser)
    try:
        page.goto(f"{site.url}/subscribe/brief")
        assert page.title() == "Subscribe · The Test Brief"
        save_screenshot(page, "web-subscribe-375")
        page.get_by_label("Email address").fill("chromium.reader@example.com")
        page.get_by_label("Your name").fill("Chromium Reader")
        page.get_by_role("button", name="Subscribe").click()
        page.get_by_role("heading", name="Check your inbox").wait_for()
        save_screenshot(page, "web-subscribe-done-375")
        assert site.status("chromium.reader@example.com") == "pending"

        [mail] = wait_for_mail(site.settings.outbox_dir / "0")
        assert mail["To"] == "chromium.reader@example.com"
        link = link_in(text_body(mail), "confirm")
        assert f'href="{link}"' in html_body(mail)

        page.goto(link)  # opening the link (as mail scanners do) only shows the button
        page.get_by_role("heading", name="Confirm your subscription").wait_for()
        save_screenshot(page, "web-confirm-375")
        assert site.status("chromium.reader@example.com") == "pending"
        page.get_by_role("button", name="Confirm my subscription").click()
        page.get_by_role("heading", name="You are subscribed").wait_for()
        save_screenshot(page, "web-confirmed-375")
    finally:
        context.close()
    assert site.status("chromium.reader@example.com") == "active"
    with site.db.sessions() as s:
        ev = s.scalar(select(ConsentEvent).where(ConsentEvent.action == "confirm"))
    assert ev is not None
    assert (ev.source, ev.ip) == ("web:confirm", "127.0.0.1")
    assert "Chrome" in (ev.user_agent or "")


def test_unsubscribe_from_a_received_issue(site: Site, new_page: Any) -> None:
    add_active(site.db.sessions, "leaving@example.com")
    cid = send_issue(site.db.sessions, site.settings, sample_issue(1))
    [mail] = [read_eml(p) for p in (site.settings.outbox_dir / str(cid)).glob("*.eml")]
    footer = re.search(r'href="([^"]+/unsubscribe/[^"]+)"', html_body(mail))
    assert footer
    link = footer.group(1)
    assert mail["List-Unsubscribe"] == f"<{link}>"

    page = new_page(**PHONE)
    page.goto(link)
    page.get_by_role("heading", name="Unsubscribe from The Test Brief").wait_for()
    save_screenshot(page, "web-unsubscribe-375")
    assert site.status("leaving@example.com") == "active"  # opening the link changed nothing
    page.get_by_role("button", name="Unsubscribe").click()
    page.get_by_role("heading", name="You are unsubscribed").wait_for()
    save_screenshot(page, "web-unsubscribed-375")
    assert site.status("leaving@example.com") == "unsubscribed"

    page.get_by_role("button", name="Subscribe to The Test Brief again").click()
    page.get_by_role("heading", name="Check your inbox").wait_for()
    save_screenshot(page, "web-resubscribe-375")
    assert site.status("leaving@example.com") == "pending"  # until they confirm from the mail
    [again] = wait_for_mail(site.settings.outbox_dir / "0")
    assert again["To"] == "leaving@example.com"
    assert page.blocked == []


def test_subscribe_with_the_keyboard_only(site: Site, new_page: Any) -> None:
    page = new_page(**PHONE)
    page.goto(f"{site.url}/subscribe/brief")
    order = []
    for _ in range(4):
        page.keyboard.press("Tab")
        order.append(page.evaluate("document.activeElement.id || document.activeElement.tagName"))
        if order[-1] == "email":
            page.keyboard.type("keys@example.com")
    assert order == ["A", "email", "name", "BUTTON"]  # skip link, fields, button
    page.keyboard.press("Enter")
    page.get_by_role("heading", name="Check your inbox").wait_for()
    assert site.status("keys@example.com") == "pending"


def _axe(page: Any) -> list[dict[str, Any]]:
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    violations: list[dict[str, Any]] = results.response["violations"]
    return [v for v in violations if v.get("impact") in ("serious", "critical")]


def _report(found: list[dict[str, Any]]) -> str:
    return "\n".join(
        f"{v['id']} ({v['impact']}): {v['help']} -> {[n['target'] for n in v['nodes']][:3]}"
        for v in found
    )


def _pages(site: Site) -> list[tuple[str, str]]:
    """(name, url) of every kind of reader page, with the data behind them."""
    db, settings = site.db, site.settings
    sid = add_active(db.sessions, "axe@example.com")
    with db.sessions.begin() as s:
        store.subscribe(s, "axe@example.com", store.get_list(s, "other"))  # pending
        pending = store.subscribe(s, "waiting@example.com", store.get_list(s, "brief"))
        pending_id, version = pending.subscriber.id, pending.subscription.consent_version
        brief_id = store.get_list(s, "brief").id
    issue = sample_issue(2)
    send_issue(db.sessions, settings, issue)
    from mailer.render.tokens import Signer

    signer = Signer.from_settings(settings)
    from datetime import UTC, datetime, timedelta

    confirm = signer.sign(
        "confirm",
        pending_id,
        brief_id,
        expires_at=datetime.now(UTC) + timedelta(days=1),
        version=version,
    )
    expired = signer.sign(
        "confirm",
        pending_id,
        brief_id,
        expires_at=datetime.now(UTC) - timedelta(days=1),
        version=version,
    )
    unsub = signer.sign("unsubscribe", sid, brief_id)
    prefs = signer.preferences_token(sid, brief_id)
    u = site.url
    return [
        ("subscribe", f"{u}/subscribe/brief"),
        ("confirm", f"{u}/confirm/{confirm}"),
        ("confirm-expired", f"{u}/confirm/{expired}"),
        ("link-invalid", f"{u}/confirm/c.1.1.1.AAAAAAAAAAAAAAAAAAAAAA"),
        ("unsubscribe", f"{u}/unsubscribe/{unsub}"),
        ("preferences", f"{u}/preferences/{prefs}"),
        ("archive", f"{u}/archive/brief"),
        ("lists", f"{u}/subscribe"),
        ("not-found", f"{u}/archive/nope"),
    ]


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_pages_have_no_serious_accessibility_violations(
    site: Site, new_page: Any, scheme: str
) -> None:
    problems: dict[str, str] = {}
    for name, url in _pages(site):
        page = new_page(color_scheme=scheme, **PHONE)
        page.goto(url)
        found = _axe(page)
        if found:
            problems[name] = _report(found)
        if name != "archive-issue":  # the web edition is the email's own layout
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= PHONE["width"], f"{name}: scrolls sideways ({width}px)"
        if scheme == "light":
            save_screenshot(page, f"web-{name}-375")
        assert page.blocked == [], f"{name} fetched {page.blocked}"
    assert problems == {}, "\n".join(f"{k}:\n{v}" for k, v in problems.items())


#: Violations accepted on the web edition (the email's own layout): none.
WEB_EDITION_KNOWN: set[tuple[str, str]] = set()


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_web_edition_of_an_issue_passes_axe(site: Site, new_page: Any, scheme: str) -> None:
    add_active(site.db.sessions, "web-edition@example.com")
    issue = sample_issue(3)
    send_issue(site.db.sessions, site.settings, issue)
    page = new_page(color_scheme=scheme, **PHONE)
    page.goto(archive_url(site.settings, "brief", issue.key()))
    page.get_by_text("Story 3 <with markup>").first.wait_for()
    if scheme == "light":
        save_screenshot(page, "web-archive-issue-375")
    found = {(v["id"], ", ".join(t for n in v["nodes"] for t in n["target"])) for v in _axe(page)}
    assert found <= WEB_EDITION_KNOWN, found
    assert page.blocked == []


def test_forms_after_posts_pass_axe(site: Site, new_page: Any) -> None:
    """The states only a post reaches: form errors, the done pages, saved preferences."""
    sid = add_active(site.db.sessions, "posted@example.com")
    from mailer.render.tokens import Signer

    signer = Signer.from_settings(site.settings)
    with site.db.sessions() as s:
        brief_id = store.get_list(s, "brief").id
    page = new_page(**PHONE)
    checks: dict[str, list[dict[str, Any]]] = {}

    page.goto(f"{site.url}/subscribe/brief")
    page.get_by_label("Email address").fill("not an address")
    page.get_by_role("button", name="Subscribe").click()
    page.get_by_role("heading", name="Please check the form").wait_for()
    save_screenshot(page, "web-subscribe-error-375")
    checks["subscribe-error"] = _axe(page)
    page.get_by_label("Email address").fill("fixed@example.com")
    page.get_by_role("button", name="Subscribe").click()
    page.get_by_role("heading", name="Check your inbox").wait_for()
    checks["subscribe-done"] = _axe(page)

    page.goto(f"{site.url}/unsubscribe/{signer.sign('unsubscribe', sid, brief_id)}")
    page.get_by_role("button", name="Unsubscribe").click()
    page.get_by_role("heading", name="You are unsubscribed").wait_for()
    checks["unsubscribed"] = _axe(page)

    page.goto(f"{site.url}/preferences/{signer.preferences_token(sid, brief_id)}")
    page.get_by_label("The Test Brief").check()
    page.get_by_role("button", name="Save preferences").click()
    page.get_by_text("Your changes are saved").wait_for()
    save_screenshot(page, "web-preferences-saved-375")
    checks["preferences-saved"] = _axe(page)
    assert site.status("posted@example.com") == "pending"  # a fresh double opt-in

    [mail] = wait_for_mail(site.settings.outbox_dir / "0", count=2)[-1:]
    assert mail["To"] == "posted@example.com"
    page.goto(link_in(text_body(mail), "confirm"))
    page.get_by_role("button", name="Confirm my subscription").click()
    page.get_by_role("heading", name="You are subscribed").wait_for()
    checks["confirmed"] = _axe(page)
    assert site.status("posted@example.com") == "active"

    bad = {k: _report(v) for k, v in checks.items() if v}
    assert bad == {}, bad
