"""`mailer serve` as a real process (SQLite and PostgreSQL): the redirect answers while the
database holds the tracking table locked, and a SIGTERM in the middle of the load loses no
click: every 302 a client received is an event once the process has exited."""

from __future__ import annotations

import http.client
import re
import sqlite3
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

from sqlalchemy import create_engine, func, select, text

from mailer.feedback.tracking.classify import Hit
from mailer.feedback.tracking.intake import TrackingIntake
from mailer.feedback.tracking.models import TrackingEvent
from mailer.sending.models import Delivery
from subscribers import store
from subscribers.models import utcnow
from subscribers.tracking import Track, set_tracking
from tests.conftest import Database
from tests.plugins.mailer_server import mailer_serve_process
from tests.test_tracking import three_items
from tests.web_support import html_body, make_list, send_issue, wait_for_mail

CLICKED = {200, 302}
_PATH = re.compile(r'href="https?://[^/"]+(/r/[^"]+)"')
BROWSER = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0", "Accept-Language": "en"}


def _paths(db: Database, readers: int) -> list[str]:
    make_list(db.sessions)
    with db.sessions.begin() as s:
        mlist = store.get_list(s, "brief")
        for n in range(readers):
            store.subscribe(s, f"reader{n}@example.com", mlist, confirmed=True)
        set_tracking(s, mlist.id, Track(clicks=True))
    settings = db.settings(base_url="http://127.0.0.1:8000")
    cid = send_issue(db.sessions, settings, three_items())
    paths: list[str] = []
    for mail in wait_for_mail(settings.outbox_dir / str(cid), readers):
        paths.extend(dict.fromkeys(_PATH.findall(html_body(mail))))
    return paths


@contextmanager
def _locked(db: Database) -> Iterator[None]:
    """The tracking table locked against writes by another connection while inside."""
    if db.backend == "sqlite":
        raw = sqlite3.connect(db.url.removeprefix("sqlite:///"), isolation_level=None)
        raw.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            raw.execute("ROLLBACK")
            raw.close()
        return
    engine = create_engine(db.url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.connect() as conn:
        conn.execute(text("LOCK TABLE tracking_events IN EXCLUSIVE MODE"))
        try:
            yield
        finally:
            conn.rollback()
    engine.dispose()


def _get(port: int, path: str) -> tuple[int, float]:
    started = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers=BROWSER)
        status = conn.getresponse().status
    except OSError:
        status = 0  # refused or cut: the server is going away
    finally:
        conn.close()
    return status, time.monotonic() - started


def test_sigterm_mid_load_loses_no_click_and_redirects_work_on_a_locked_database(
    db: Database,
) -> None:
    paths = _paths(db, 12)
    answered: list[tuple[int, float]] = []
    with mailer_serve_process(db.env(MAILER_DB_TIMEOUT="20"), db.tmp) as (base, proc):
        port = int(base.rsplit(":", 1)[1])
        assert _get(port, paths[0])[0] == 302  # the link table is read; a click like others
        answered.append((302, 0.0))
        with _locked(db), ThreadPoolExecutor(8) as pool:
            # while nothing can be written: every click is still answered, and fast
            locked = list(pool.map(lambda p: _get(port, p), paths * 3))
            assert {status for status, _ in locked} == CLICKED  # the trap answers 200
            assert max(seconds for _, seconds in locked) < 5.0
            answered.extend(locked)
            # more load, and SIGTERM in the middle of it, still locked
            later = [pool.submit(_get, port, p) for p in paths * 4]
            time.sleep(0.2)
            proc.terminate()
            answered.extend(f.result() for f in later)
            time.sleep(1.0)  # the shutdown waits for the database ...
            assert proc.poll() is None, "the server exited before its queue was written"
        # ... which is free again here: the queue is written, then the process exits
        proc.wait(timeout=60)
    redirects = sum(1 for status, _ in answered if status in CLICKED)
    assert redirects >= len(paths) * 3 + 1
    with db.sessions() as s:
        events = s.scalar(select(func.count()).select_from(TrackingEvent))
    assert events == redirects, f"{redirects} redirects answered, {events} events written"


def test_the_writer_waits_out_a_lock_in_process(db: Database) -> None:
    """The intake's writer keeps a batch while the database is locked (no split, no loss)."""
    assert _paths(db, 2)
    with db.sessions() as s:
        rows = s.execute(select(Delivery.id, Delivery.campaign_id).order_by(Delivery.id)).all()
    delivery, cid = rows[0]
    assert cid is not None
    intake = TrackingIntake(db.settings(), db.sessions)
    with _locked(db):
        for n in range(5):
            intake.record(Hit(cid, delivery, n % 3, utcnow(), user_agent="x"))
        assert not intake.flush(timeout=1.5)  # still waiting for the lock
        assert intake.writer.pending == 5
    assert intake.flush(timeout=30)
    assert intake.writer.failed == 0
    with db.sessions() as s:
        assert s.scalar(select(func.count()).select_from(TrackingEvent)) == 5


def test_a_flood_while_the_database_is_away_stays_bounded(db: Database) -> None:
    """Past max_pending hits waiting, new ones are counted and not kept; the first ones
    are written once the database is back."""
    assert _paths(db, 1)
    with db.sessions() as s:
        delivery, cid = s.execute(select(Delivery.id, Delivery.campaign_id)).one()
    assert cid is not None
    intake = TrackingIntake(db.settings(), db.sessions, max_pending=4, batch=2)
    with _locked(db):
        for n in range(10):
            intake.record(Hit(cid, delivery, n % 3, utcnow(), user_agent="x"))
        assert intake.writer.pending <= 4 and intake.dropped == 6
    assert intake.flush(timeout=30)
    with db.sessions() as s:
        assert s.scalar(select(func.count()).select_from(TrackingEvent)) == 4
