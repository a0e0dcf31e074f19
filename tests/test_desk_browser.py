"""The whole desk flow in real headless Chromium (Debian's, through Playwright) against real
uvicorn: sign in -> paste (a broken issue first: the line is named) -> check and previews
-> test send -> schedule -> the campaign page follows a real `mailer worker --once` by
reloading itself (no script) -> done; then pause, resume and cancel another campaign, and
sign out. axe-core finds no serious or critical problem on any desk page; a screenshot of
every step is kept in artifacts/desk/ (git-ignored).

The desk's clock runs an hour behind the worker's (an injected clock): what the desk
schedules "in 30 minutes" is due for the worker now, so no test waits for wall time.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from mailer.access.tokens import create_token
from mailer.sending.models import Campaign
from tests.browser import chromium, chromium_available
from tests.conftest import Database
from tests.desk_support import issue_text
from tests.web_support import Clock, add_active, live_server, make_list, read_eml

pytestmark = [
    pytest.mark.browser,
    pytest.mark.parametrize("db", ["sqlite"], indirect=True),
]

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "desk"
_LOCAL = re.compile(r"^(?:data:|about:|https?://127\.0\.0\.1(?::\d+)?/)")


@pytest.fixture(scope="module")
def chromium_browser() -> Iterator[Any]:
    if not chromium_available():
        pytest.skip("headless Chromium (/usr/bin/chromium + playwright) is not available")
    for old in ARTIFACTS.glob("*.png"):  # the folder shows this run's steps only
        old.unlink()
    with chromium() as b:
        yield b


class Run:
    """One browser context on the desk: pages, blocked requests, console errors, findings."""

    def __init__(
        self,
        browser: Any,
        *,
        javascript: bool = True,
        width: int = 1280,
        color_scheme: str = "light",
    ) -> None:
        self.blocked: list[str] = []
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.problems: dict[str, str] = {}
        self.context = browser.new_context(
            viewport={"width": width, "height": 900},
            device_scale_factor=1,
            java_script_enabled=javascript,
            color_scheme=color_scheme,
        )
        self.context.route("**/*", self._route)
        self.page = self.context.new_page()
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("dialog", self._dialog)

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def _route(self, route: Any) -> None:
        if _LOCAL.match(route.request.url):
            route.continue_()
        else:
            self.blocked.append(route.request.url)
            route.abort()

    def step(self, name: str, *, followed: bool = False) -> None:
        """Screenshot the page as artifacts/desk/<name>.png and run axe on it."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
        found = _axe(self.page, followed=followed)
        if found:
            self.problems[name] = found

    def close(self) -> None:
        self.context.close()


def _axe(page: Any, *, followed: bool = False) -> str:
    """Serious and critical findings. The previews are sandboxed frames without script,
    so axe checks the desk page itself. ``followed``: the campaign page the editor chose
    to follow ("Follow live", with "Stop following" beside the status) reloads by
    <meta http-equiv=refresh>, which axe's meta-refresh rule reports whatever the page
    offers; the unfollowed page, checked in full, is the default."""
    from axe_playwright_python.sync_playwright import Axe

    options: dict[str, Any] = {"iframes": False}
    if followed:
        options["rules"] = {"meta-refresh": {"enabled": False}}
    results = Axe().run(page, options=options)
    bad = [v for v in results.response["violations"] if v.get("impact") in ("serious", "critical")]
    return "\n".join(
        f"{v['id']} ({v['impact']}): {v['help']} -> {[n['target'] for n in v['nodes']][:3]}"
        for v in bad
    )


def _worker(db: Database, base_url: str) -> subprocess.CompletedProcess[str]:
    """The real `mailer worker --once`, as an operator runs it beside `mailer serve`."""
    return subprocess.run(
        [sys.executable, "-m", "mailer", "worker", "--once"],
        env=db.env(MAILER_BASE_URL=base_url),
        capture_output=True,
        text=True,
        timeout=180,
        cwd=db.tmp,
    )


def _statuses(db: Database) -> list[str]:
    with db.sessions() as s:
        return list(s.scalars(select(Campaign.status).order_by(Campaign.id)))


def test_the_whole_desk_flow_in_chromium(db: Database, chromium_browser: Any) -> None:
    make_list(db.sessions, "brief", name="The Test Brief")
    for n in range(3):
        add_active(db.sessions, f"reader{n}@example.com")
    token = create_token(db.sessions, "desk-editor", "editor")
    clock = Clock()
    clock.now = datetime.now(UTC) - timedelta(hours=1)

    def settings_for(url: str) -> Any:
        return db.settings(base_url=url)

    with live_server(settings_for, clock=clock) as (server, _settings):
        run = Run(chromium_browser)
        page = run.page
        try:
            page.goto(server.url + "/desk")
            assert page.url == server.url + "/desk/sign-in?next=/desk"
            run.step("01-sign-in")
            page.get_by_label("Token").fill("bm_not-a-token")
            page.get_by_role("button", name="Sign in").click()
            page.get_by_text("That token is not valid").wait_for()
            run.step("02-sign-in-refused")
            page.get_by_label("Token").fill(token)
            page.get_by_role("button", name="Sign in").click()
            page.get_by_role("heading", name="New issue").wait_for()
            assert page.url == server.url + "/desk"
            run.step("03-new-issue")

            broken = issue_text().replace("https://news.example.net/harbour", "ftp://x.example/h")
            page.get_by_label("Issue text").fill(broken)
            page.get_by_role("button", name="Check the issue").click()
            page.get_by_role("heading", name=re.compile("^Line 7:")).wait_for()
            assert "ftp://x.example/h" in page.get_by_label("Issue text").input_value()
            run.step("04-parse-error")

            page.get_by_label("Issue text").fill(issue_text())
            page.get_by_role("button", name="Check the issue").click()
            page.get_by_role("heading", name=re.compile("^Check: Harbour reopens")).wait_for()
            desktop = page.frame_locator("iframe[title^='Desktop preview']")
            phone = page.frame_locator("iframe[title^='Phone preview']")
            desktop.get_by_text("The harbour reopened").first.wait_for()
            phone.get_by_text("The harbour reopened").first.wait_for()
            phone_box = page.locator("iframe[title^='Phone preview']").bounding_box()
            desktop_box = page.locator("iframe[title^='Desktop preview']").bounding_box()
            assert phone_box is not None and desktop_box is not None
            assert phone_box["width"] == 377  # 375 px of email and the two border pixels
            assert desktop_box["width"] > 600 and desktop_box["x"] < phone_box["x"]
            assert (
                "Good morning." in page.get_by_label("Plain-text version of the email").inner_text()
            )
            run.step("05-check-and-previews")

            page.get_by_label("Send the real issue, subject [TEST], to").fill("editor@example.org")
            page.get_by_role("button", name="Send test").click()
            page.get_by_text("Test sent to editor@example.org").wait_for()
            run.step("06-test-sent")
            [test_mail] = [read_eml(p) for p in (db.tmp / "outbox").rglob("*.eml")]
            assert test_mail["Subject"].startswith("[TEST] ")
            assert _statuses(db) == []

            start = clock.now + timedelta(minutes=30)
            page.get_by_label("At the time below").check()
            page.get_by_label("Start at").fill(start.strftime("%Y-%m-%dT%H:%M"))
            page.get_by_label("Time zone of that time").fill("UTC")
            page.get_by_label("Stop sending after").fill("6h")
            page.get_by_role("button", name="Review and confirm").click()
            page.get_by_role("heading", name="Confirm: schedule").wait_for()
            assert page.locator("#readers").inner_text() == "3"
            run.step("07-confirm")

            page.get_by_role("button", name="Schedule to 3 readers").click()
            page.wait_for_url(re.compile(r".*/desk/campaigns/\d+$"))
            assert page.locator("#status").inner_text() == "scheduled"
            assert page.locator("meta[http-equiv='refresh']").count() == 0
            run.step("08-scheduled")
            page.get_by_role("link", name=re.compile("^Follow live")).click()
            page.wait_for_url(re.compile(r".*/desk/campaigns/\d+\?follow=1$"))
            campaign_url = page.url
            run.step("09-following", followed=True)

            worker = _worker(db, server.url)
            assert worker.returncode == 0, worker.stderr
            # no navigation by the test: the page reloads itself until the campaign is done
            page.locator("#status", has_text="done").wait_for(timeout=20_000)
            assert page.url == campaign_url
            assert page.locator("#count-sent").inner_text() == "3"
            assert page.locator("meta[http-equiv='refresh']").count() == 0
            run.step("10-done")

            page.get_by_role("link", name="Campaigns", exact=True).click()
            page.get_by_role("heading", name="Campaigns").wait_for()
            run.step("11-campaigns")

            # another issue, sent now: pause, resume, cancel (no worker runs meanwhile)
            page.get_by_role("link", name="New issue").click()
            page.get_by_role("heading", name="Issues kept recently").wait_for()
            run.step("11b-new-issue-with-kept-issues")
            page.get_by_label("Issue text").fill(issue_text(" again"))
            page.get_by_role("button", name="Check the issue").click()
            page.get_by_role("button", name="Review and confirm").click()
            page.get_by_role("button", name="Send to 3 readers").click()
            page.wait_for_url(re.compile(r".*/desk/campaigns/\d+$"))
            page.get_by_role("button", name="Pause").click()
            page.locator("#status", has_text="paused").wait_for()
            run.step("12-paused")
            page.get_by_role("button", name="Resume").click()
            page.locator("#status", has_text="sending").wait_for()
            page.get_by_role("button", name="Cancel the rest").click()
            page.locator("#status", has_text="cancelled").wait_for()
            run.step("13-cancelled")
            assert _statuses(db) == ["done", "cancelled"]

            page.get_by_role("button", name="Sign out").click()
            page.get_by_role("heading", name="Sign in to the desk").wait_for()
            page.goto(server.url + "/desk/campaigns")
            assert "/desk/sign-in" in page.url
        finally:
            run.close()
        assert run.problems == {}, "\n".join(f"{k}:\n{v}" for k, v in run.problems.items())
        assert run.blocked == []
        # the refused sign-in (401) and the broken issue (422) answer with their status
        assert [e for e in run.errors if not re.search(r"status of (401|422)\b", e)] == []


def test_upload_and_follow_a_campaign_without_javascript(
    db: Database, chromium_browser: Any
) -> None:
    make_list(db.sessions, "brief", name="The Test Brief")
    add_active(db.sessions, "reader@example.com")
    token = create_token(db.sessions, "nojs", "editor")

    def settings_for(url: str) -> Any:
        return db.settings(base_url=url)

    with live_server(settings_for) as (server, _settings):
        run = Run(chromium_browser, javascript=False, width=375)
        page = run.page
        try:
            page.goto(server.url + "/desk/sign-in")
            page.get_by_label("Token").fill(token)
            page.get_by_role("button", name="Sign in").click()
            upload = db.tmp / "2025-03-03.txt"
            upload.write_text(issue_text(" uploaded"), encoding="utf-8")
            page.get_by_label("Or upload the issue file").set_input_files(str(upload))
            page.get_by_role("button", name="Check the issue").click()
            page.get_by_role(
                "heading", name=re.compile("^Check: Harbour reopens uploaded")
            ).wait_for()
            page.get_by_role("button", name="Review and confirm").click()
            page.get_by_role("button", name="Send to 1 reader").click()
            page.wait_for_url(re.compile(r".*/desk/campaigns/\d+$"))
            page.get_by_role("link", name=re.compile("^Follow live")).click()
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "nojs-campaign-375.png"), full_page=True)
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 375, f"the campaign page scrolls sideways ({width}px)"
            with page.expect_event("load", timeout=15_000):
                pass  # the meta refresh, with scripts off
            assert page.locator("#status").inner_text() == "scheduled"
        finally:
            run.close()
        assert run.blocked == []


XSS = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'


def test_markup_in_an_issue_runs_nowhere_and_dark_pages_pass_axe(
    db: Database, chromium_browser: Any
) -> None:
    """The issue's title carries script and an image with a handler: no dialog opens on any
    desk page or preview, nothing is fetched for it, and every page passes axe in the dark
    colour scheme (the flow test checks the light one)."""
    make_list(db.sessions, "brief", name="The Test Brief")
    add_active(db.sessions, "reader@example.com")
    token = create_token(db.sessions, "dark", "editor")

    def settings_for(url: str) -> Any:
        return db.settings(base_url=url)

    with live_server(settings_for) as (server, _settings):
        run = Run(chromium_browser, color_scheme="dark")
        page = run.page
        try:
            page.goto(server.url + "/desk/sign-in")
            run.step("dark-sign-in")
            page.get_by_label("Token").fill(token)
            page.get_by_role("button", name="Sign in").click()
            run.step("dark-new-issue")
            page.get_by_label("Issue text").fill(issue_text(title_extra=" " + XSS))
            page.get_by_role("button", name="Check the issue").click()
            page.get_by_role("heading", name=re.compile("^Check: ")).wait_for()
            frame = page.frame_locator("iframe[title^='Desktop preview']")
            frame.get_by_text("The harbour reopened").first.wait_for()
            assert XSS in page.get_by_role("heading", level=1).inner_text()
            run.step("dark-check")
            page.set_viewport_size({"width": 375, "height": 800})  # the desk on a phone
            page.reload()
            page.frame_locator("iframe[title^='Phone preview']").get_by_text(
                "The harbour reopened"
            ).first.wait_for()
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 375, f"the check page scrolls sideways on a phone ({width}px)"
            run.step("dark-check-375")
            page.set_viewport_size({"width": 1280, "height": 900})
            page.get_by_label("Send the real issue, subject [TEST], to").fill(XSS)
            page.get_by_role("button", name="Send test").click()
            page.get_by_text("is not an address we can send to").wait_for()
            run.step("dark-test-refused")
            page.get_by_role("button", name="Review and confirm").click()
            run.step("dark-confirm")
            page.get_by_role("button", name="Send to 1 reader").click()
            page.wait_for_url(re.compile(r".*/desk/campaigns/\d+$"))
            run.step("dark-campaign")
            page.get_by_role("link", name="Campaigns", exact=True).click()
            run.step("dark-campaigns")
            page.goto(page.url.replace("/desk/campaigns", "/desk/campaigns/999"))
            assert page.get_by_role("heading", level=1).inner_text() == "Page not found"
        finally:
            run.close()
        assert run.dialogs == []
        assert run.problems == {}, "\n".join(f"{k}:\n{v}" for k, v in run.problems.items())
        assert run.blocked == []
        assert [e for e in run.errors if not re.search(r"status of (404|422)\b", e)] == []


def test_the_states_only_a_fault_reaches_pass_axe(db: Database, chromium_browser: Any) -> None:
    """A list without readers at the confirmation, a send refused as already sent (409), a
    schedule in the past (422), and a form posted after the session ended (the sign-in
    page, 401): each a clear page that passes axe."""
    make_list(db.sessions, "brief", name="The Test Brief")
    make_list(db.sessions, "empty", name="An Empty List")
    add_active(db.sessions, "reader@example.com")
    token = create_token(db.sessions, "faults", "editor")

    def settings_for(url: str) -> Any:
        return db.settings(base_url=url)

    with live_server(settings_for) as (server, _settings):
        run = Run(chromium_browser)
        page = run.page
        try:
            page.goto(server.url + "/desk/sign-in")
            page.get_by_label("Token").fill(token)
            page.get_by_role("button", name="Sign in").click()
            page.get_by_label("Issue text").fill(issue_text())
            page.get_by_role("button", name="Check the issue").click()
            check_url = page.url.split("?")[0]

            page.goto(check_url + "?list=empty")
            page.get_by_role("button", name="Review and confirm").click()
            page.locator("#no-readers").wait_for()
            run.step("fault-no-readers")

            page.goto(check_url + "?list=brief")
            page.get_by_label("At the time below").check()
            page.get_by_label("Start at").fill("2020-01-01T06:00")
            page.get_by_role("button", name="Review and confirm").click()
            page.locator("#send-error").wait_for()
            assert "has passed" in page.locator("#send-error").inner_text()
            run.step("fault-time-passed")

            for _ in range(2):  # the second send of the issue to the list is refused
                page.goto(check_url + "?list=brief")
                page.get_by_role("button", name="Review and confirm").click()
                page.get_by_role("button", name="Send to 1 reader").click()
            page.locator("#send-error").wait_for()
            assert "already sent to brief" in page.locator("#send-error").inner_text()
            run.step("fault-already-sent")

            page.goto(check_url + "?list=brief")
            run.context.clear_cookies()  # the session ends with the page still open
            page.get_by_label("Send the real issue, subject [TEST], to").fill("ed@example.org")
            page.get_by_role("button", name="Send test").click()
            page.get_by_text("nothing was done").wait_for()
            run.step("fault-session-ended")
        finally:
            run.close()
        assert run.problems == {}, "\n".join(f"{k}:\n{v}" for k, v in run.problems.items())
        assert run.blocked == []
        assert [e for e in run.errors if not re.search(r"status of (401|409|422)\b", e)] == []
