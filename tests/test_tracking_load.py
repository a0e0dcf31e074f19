"""The redirect under load (issue 16): what keeps its tail short, shown without a clock.

- a flood past the intake's bound still gets its redirects, and the hits not kept are
  counted (``/metrics``) and logged;
- hits waiting in the queue add nothing to what the cycle collector walks;
- ``mailer serve`` freezes its start-up heap out of the cycle collector and hands the GIL
  over every 0.5 ms (the event loop waits less for it behind a writer thread);
- a batch re-marks its bursts with one statement, whatever their reasons.
"""

from __future__ import annotations

import gc
import logging
import re
import sys
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import uvicorn
from sqlalchemy import event, select
from sqlalchemy.orm import sessionmaker

from mailer.config import Settings
from mailer.feedback.tracking.classify import Hit
from mailer.feedback.tracking.intake import BATCH, TrackingIntake, flat
from mailer.feedback.tracking.models import HUMAN, MACHINE, TrackingEvent
from mailer.sending.models import Delivery
from mailer.web import server
from mailer.web.tracking import flush_tracking
from subscribers.models import utcnow
from tests.conftest import Database
from tests.test_tracking import BROWSER, R_LINK, _send, _sent_at, _track
from tests.test_tracking_sigterm import _paths
from tests.web_support import Web

ADMIN = "admin-token-0123456789abcdef"


@pytest.fixture
def web(db: object) -> Iterator[Web]:
    w = Web(db, admin_token=ADMIN)
    yield w
    w.close()


def test_a_flood_past_the_bound_is_answered_and_its_drops_are_counted(
    web: Web, caplog: pytest.LogCaptureFixture
) -> None:
    _track(web)
    cid, (html,) = _send(web)
    web.clock.now = _sent_at(web, cid) + timedelta(minutes=5)
    intake = web.app.state.tracking
    assert isinstance(intake, TrackingIntake)
    intake.max_pending = 3
    start_writer = intake.writer._ensure_thread
    intake.writer._ensure_thread = lambda: None  # type: ignore[method-assign]  # db "away"
    link = R_LINK.findall(html)[2]  # story 2 (each story has two links)
    with caplog.at_level(logging.ERROR, logger="mailer.feedback.tracking.intake"):
        answers = [web.client.get(link, headers=BROWSER) for _ in range(10)]
    assert [a.status_code for a in answers] == [302] * 10
    assert {a.headers["location"] for a in answers} == {"https://news.example.net/story/2?a=1&b=2"}
    assert intake.dropped == 7 and intake.writer.pending == 3
    assert "3 hits waiting for the database; 1 not kept so far" in caplog.text
    metrics = web.client.get("/metrics", headers={"Authorization": f"Bearer {ADMIN}"}).text
    assert "mailer_tracking_dropped_total 7.0" in metrics
    assert "mailer_tracking_queued 3.0" in metrics
    intake.writer._ensure_thread = start_writer  # type: ignore[method-assign]
    intake.writer._ensure_thread()
    assert flush_tracking(web.app, timeout=20)
    with web.db.sessions() as s:
        verdicts = s.scalars(select(TrackingEvent.verdict)).all()
    assert verdicts == [HUMAN] * 3  # the three kept, written once the database is back


def test_waiting_hits_add_nothing_to_what_the_cycle_collector_walks() -> None:
    intake = TrackingIntake(Settings(), sessionmaker())
    intake.writer._ensure_thread = lambda: None  # type: ignore[method-assign]  # no writing
    agent = "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0"
    hits = [Hit(1, n, n % 3, utcnow(), user_agent=agent, accept_language="en") for n in range(5000)]
    gc.collect()
    before = len(gc.get_objects())
    for hit in hits:
        intake.record(hit)
    del hits
    gc.collect()
    assert intake.writer.pending == 5000
    # as Hit objects they added ~5,000 tracked objects (measured on the code before)
    assert len(gc.get_objects()) - before < 100


def test_a_queued_hit_comes_back_whole() -> None:
    hit = Hit(7, 8, None, utcnow(), "pixel", "HEAD", "ua", None, "17.0.0.1")
    assert Hit(*flat(hit)) == hit


def test_serve_freezes_the_start_up_heap_and_hands_the_gil_over_sooner(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    frozen: list[int] = []
    switch: list[float] = []

    def run(self: uvicorn.Server, *_: Any) -> None:
        frozen.append(gc.get_freeze_count())
        switch.append(sys.getswitchinterval())

    async def app(scope: Any, receive: Any, send: Any) -> None:  # never called
        raise AssertionError

    monkeypatch.setattr(uvicorn.Server, "run", run)
    before = sys.getswitchinterval()
    gc.unfreeze()
    try:
        server.serve(app, Settings(), host="127.0.0.1", port=8765)
    finally:
        gc.unfreeze()
        sys.setswitchinterval(before)
    assert frozen and frozen[0] > 10_000
    assert switch == [server.SWITCH_INTERVAL] and before > server.SWITCH_INTERVAL


def test_a_batch_re_marks_its_bursts_with_one_statement(db: Database) -> None:
    assert _paths(db, 3)
    with db.sessions() as s:
        rows = s.execute(select(Delivery.id, Delivery.campaign_id, Delivery.sent_at)).all()
    intake = TrackingIntake(db.settings(), db.sessions)
    start_writer = intake.writer._ensure_thread
    intake.writer._ensure_thread = lambda: None  # type: ignore[method-assign]  # one batch
    at = max(r.sent_at for r in rows) + timedelta(hours=1)
    agent = "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0"
    # three bursts of different sizes (3, 4 and 5 clicks on the 3 stories): three reasons
    for n, (delivery, cid, _) in enumerate(rows):
        assert cid is not None
        for k in range(3 + n):
            when = at + timedelta(milliseconds=100 * k)
            intake.record(Hit(cid, delivery, k % 3, when, user_agent=agent, accept_language="en"))
    updates: list[str] = []

    def count(_c: Any, _cur: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE TRACKING_EVENTS"):
            updates.append(statement)

    engine = db.engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        start_writer()
        assert intake.flush(timeout=30)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert intake.writer.batches == 1 and len(updates) == 1
    with db.sessions() as s:
        found = s.execute(select(TrackingEvent.verdict, TrackingEvent.reason)).all()
    assert len(found) == 12 and {v for v, _ in found} == {MACHINE}
    reasons = {r for _, r in found}
    assert {r.split(" within")[0] for r in reasons} == {
        f"burst: {c} clicks on 3 links" for c in (3, 4, 5)
    }


def test_the_headline_index_stays_in_message_anchors_and_story_links_are_tracked(
    web: Web,
) -> None:
    """The index ("In today's brief") jumps inside the message: nothing to track there."""
    _track(web)
    _, (html,) = _send(web)
    index = re.findall(r'<a [^>]*href="(#item-\d)"[^>]*>Story \d</a>', html)
    assert index == ["#item-1", "#item-2", "#item-3"]
    tracked = [u for u in R_LINK.findall(html) if "/r/" in u]
    assert len(tracked) >= 6  # title and "Read more" of each story (the trap link besides)
    assert "news.example.net" not in html.split("In today", 1)[1].split("</ol>", 1)[0]


def test_a_backlog_is_written_in_batches_of_at_most_batch(db: Database) -> None:
    """Under a flood the writer takes BATCH hits a transaction: the window of clicks each
    batch reads back for the burst rule is paid once per 1024 hits, not per 256."""
    assert _paths(db, 2)
    with db.sessions() as s:
        delivery, cid, sent_at = s.execute(
            select(Delivery.id, Delivery.campaign_id, Delivery.sent_at)
        ).first() or (0, None, None)
    assert cid is not None and sent_at is not None
    intake = TrackingIntake(db.settings(), db.sessions)
    start_writer = intake.writer._ensure_thread
    intake.writer._ensure_thread = lambda: None  # type: ignore[method-assign]  # a backlog
    for n in range(2 * BATCH + 5):
        intake.record(Hit(cid, delivery, n % 3, sent_at, method="HEAD", user_agent="x"))
    sizes: list[int] = []
    commit = intake.writer._commit

    def counted(batch: list[Any]) -> list[Any]:
        sizes.append(len(batch))
        return commit(batch)

    intake.writer._commit = counted  # type: ignore[method-assign]
    start_writer()
    assert intake.flush(timeout=60)
    assert BATCH == 1024 and sizes == [BATCH, BATCH, 5]
