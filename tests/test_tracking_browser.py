"""Tracking in real headless Chromium (Debian's, through Playwright) against real uvicorn:
a reader opens a sent message's HTML from the outbox and clicks a story; the browser lands
on the story's own URL (a second local server stands in for the news site), the pixel is
fetched, and the click is counted once, as a person's, after MAILER_TRACK_MIN_DELAY (the
app's clock is injected and moved past it). Nothing invisible is clicked: the trap stays."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest
from sqlalchemy import select

from mailer.feedback.tracking.models import TrackingEvent
from mailer.issue.model import Issue, Item
from mailer.sending.models import Delivery
from mailer.web.app import create_app
from mailer.web.tracking import flush_tracking
from subscribers import store
from subscribers.tracking import Track, set_tracking
from tests.browser import chromium, chromium_available
from tests.conftest import Database
from tests.web_support import (
    Clock,
    LiveServer,
    add_active,
    html_body,
    make_list,
    send_issue,
    wait_for_mail,
)

pytestmark = [pytest.mark.browser, pytest.mark.parametrize("db", ["sqlite"], indirect=True)]


READER_UA = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36"
)
_LOCAL = re.compile(r"^(?:about:|data:|http://127\.0\.0\.1:\d+/)")


def _local_only(route: Any, blocked: list[str]) -> None:
    if _LOCAL.match(route.request.url):
        route.continue_()
    else:
        blocked.append(route.request.url)
        route.abort()


class _Stories(BaseHTTPRequestHandler):
    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        _Stories.seen.append(self.path)
        body = f"<!doctype html><title>Story</title><h1>Story at {self.path}</h1>".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        return


@pytest.fixture
def news_site() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Stories)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Stories.seen = []
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not chromium_available():
        pytest.skip("headless Chromium (/usr/bin/chromium + playwright) is not available")
    with chromium() as b:
        yield b


def test_a_click_in_chromium_lands_on_the_story_and_counts_once_as_human(
    db: Database, news_site: str, browser: Any
) -> None:
    make_list(db.sessions)
    add_active(db.sessions, "reader@example.com")
    with db.sessions.begin() as s:
        set_tracking(s, store.get_list(s, "brief").id, Track(clicks=True, opens=True))
    server = LiveServer()
    clock = Clock()
    settings = db.settings(base_url=server.url, postal_address="1 Example Street")
    app = create_app(settings, clock=clock)
    server.start(app)
    try:
        story = f"{news_site}/world/harbour?id=7&src=brief"
        issue = Issue(
            subject="A tracked issue",
            preheader="One story",
            date=None,
            intro=("Good morning.",),
            items=(Item("Harbour reopens", "Wire", ("It does.",), story),),
            closing=("Bye.",),
        )
        cid = send_issue(db.sessions, settings, issue)
        (mail,) = wait_for_mail(settings.outbox_dir / str(cid))
        with db.sessions() as s:
            sent_at = s.scalar(select(Delivery.sent_at).where(Delivery.campaign_id == cid))
        assert sent_at is not None
        clock.now = sent_at + timedelta(seconds=settings.track_min_delay + 30)

        # a reader's Chromium: headless Chromium says "HeadlessChrome", a scanner's signature
        context = browser.new_context(user_agent=READER_UA, locale="en-GB")
        blocked: list[str] = []
        context.route("**/*", lambda route: _local_only(route, blocked))
        try:
            page = context.new_page()
            page.set_content(html_body(mail), wait_until="load")
            # the story's title link (the headline index above points at #item-1 in the page)
            link = page.get_by_role("heading", name="Harbour reopens").get_by_role("link")
            assert "/r/" in (link.get_attribute("href") or "")
            link.click()
            page.wait_for_url(story)
            assert page.url == story
            heading = page.get_by_role("heading").inner_text()
            assert heading == "Story at /world/harbour?id=7&src=brief"
            assert blocked == []
        finally:
            context.close()

        assert flush_tracking(app, timeout=20)
        with db.sessions() as s:
            events = list(s.scalars(select(TrackingEvent).order_by(TrackingEvent.id)))
        clicks = [e for e in events if e.kind == "click"]
        opens = [e for e in events if e.kind == "open"]
        assert [(e.link, e.verdict, e.reason) for e in clicks] == [(0, "human", "")]
        assert clicks[0].ua == READER_UA[:80]
        assert [e.verdict for e in opens] == ["human"]  # the pixel, fetched by the browser
        assert _Stories.seen == ["/world/harbour?id=7&src=brief"]
    finally:
        server.stop()
