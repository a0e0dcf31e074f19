"""Status changes the engine makes while others act on the same campaign: an account-level
refusal (FatalSendError) pauses only a campaign that is still sending (one cancelled, or
paused by the guard, while its batch was at SES keeps that state; real SES-compatible
server through boto3, on SQLite and PostgreSQL), and two workers starting it at once keep
the first start."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text

from mailer.errors import ConflictError
from mailer.sending import campaigns as camp
from mailer.sending import guard, lifecycle
from mailer.sending.engine import Engine
from mailer.sending.models import Campaign
from mailer.transports import make_transport
from mailer.transports.base import CampaignMessage, OutgoingMessage, SendQuota, SendResult
from subscribers.models import utcnow
from tests.conftest import Database
from tests.delivery_helpers import make_campaign, seed_list
from tests.support.ses_server import SesServer


class _Meanwhile:
    """The real SES transport, with ``act`` run (and committed) right before its second
    call goes out: what an editor or another worker does while a batch is at SES."""

    def __init__(self, inner: Any, act: Callable[[], None]) -> None:
        self.inner = inner
        self.name = inner.name
        self.max_batch = inner.max_batch
        self.wants_raw = inner.wants_raw
        self.concurrent_batch = inner.concurrent_batch
        self.act = act
        self.calls = 0

    def send(self, campaign: CampaignMessage, batch: Sequence[OutgoingMessage]) -> list[SendResult]:
        self.calls += 1
        if self.calls == 2:
            self.act()
        result: list[SendResult] = self.inner.send(campaign, batch)
        return result

    def quota(self) -> SendQuota | None:
        quota: SendQuota | None = self.inner.quota()
        return quota

    def close(self) -> None:
        self.inner.close()


def _run(db: Database, server: SesServer, act: Callable[[int], None]) -> tuple[int, str]:
    settings = db.settings(
        transport="ses",
        ses_endpoint_url=server.url,
        ses_region="us-east-1",
        send_concurrency=1,
        batch_size=10,
    )
    seed_list(db.sessions, 40)
    cid, _, _ = make_campaign(db.sessions, settings)
    server.configure(max_send_rate=0)

    def meanwhile() -> None:
        act(cid)
        server.configure(account_suspended=True)  # so this very call is refused

    transport = _Meanwhile(make_transport(settings), meanwhile)
    with Engine(settings, db.sessions, transport) as engine:
        progress = engine.run(cid)
    assert transport.calls >= 2
    return cid, progress.status


def test_a_cancel_during_the_refused_call_stays_cancelled(
    db: Database, ses_server: SesServer, aws_env: dict[str, str]
) -> None:
    def cancel(cid: int) -> None:
        with db.sessions.begin() as s:
            lifecycle.cancel(s, cid)

    cid, status = _run(db, ses_server, cancel)
    assert status == "cancelled"
    with db.sessions() as s:
        rep = camp.report(s, cid)
    assert rep.campaign.status == "cancelled"
    assert rep.campaign.pause_reason is None
    assert "queued" not in rep.counts and "sending" not in rep.counts
    assert rep.counts["sent"] == len(ses_server.messages()) >= 10


def test_a_guard_pause_during_the_refused_call_keeps_its_reason(
    db: Database, ses_server: SesServer, aws_env: dict[str, str]
) -> None:
    reason = guard.pause_reason("complaint rate 1.0% over 0.1%")

    def guard_pause(cid: int) -> None:
        with db.sessions.begin() as s:
            campaign = s.get(Campaign, cid)
            assert campaign is not None
            lifecycle.guard_pause(campaign, "complaint rate 1.0% over 0.1%")

    cid, status = _run(db, ses_server, guard_pause)
    assert status == "paused"
    with db.sessions() as s:
        campaign = s.get(Campaign, cid)
        assert campaign is not None
        assert campaign.pause_reason == reason
        assert guard.is_guard_pause(campaign.pause_reason)


def test_a_sending_campaign_still_pauses_with_the_refusal(
    db: Database, ses_server: SesServer, aws_env: dict[str, str]
) -> None:
    cid, status = _run(db, ses_server, lambda cid: None)
    assert status == "paused"
    with db.sessions() as s:
        campaign = s.get(Campaign, cid)
        assert campaign is not None
        assert "AccountSuspended" in (campaign.pause_reason or "")


def test_two_workers_starting_at_once_keep_the_first_start(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Worker A has started the campaign (not committed yet) when worker B opens it: B
    waits for A's row lock and keeps A's started_at (and A's one campaign.started),
    instead of reading the campaign as never started and writing its own start over A's."""
    if db.backend != "postgresql":
        pytest.skip("several workers need PostgreSQL (SQLite allows one sender)")
    seed_list(db.sessions, 20)
    settings = db.settings()
    cid, _, _ = make_campaign(db.sessions, settings)
    real_start = lifecycle.start
    starts: list[datetime | None] = []
    entered = [threading.Event(), threading.Event()]
    release = [threading.Event(), threading.Event()]
    lock = threading.Lock()

    def start(campaign: Campaign) -> None:  # inside the worker's open transaction
        real_start(campaign)
        with lock:
            starts.append(campaign.started_at)
            me = len(starts) - 1
        entered[me].set()
        release[me].wait(timeout=30)

    monkeypatch.setattr(lifecycle, "start", start)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            with Engine(settings, db.sessions, make_transport(settings)) as engine:
                engine.run(cid)
        except BaseException as err:  # reported by the main thread
            errors.append(err)

    a = threading.Thread(target=work)
    a.start()
    assert entered[0].wait(timeout=30)
    b = threading.Thread(target=work)
    b.start()
    deadline = time.monotonic() + 30
    while not (entered[1].is_set() or _someone_waits_for_a_lock(db)):  # B read, or waits
        assert time.monotonic() < deadline, "worker B neither read the campaign nor waited"
        time.sleep(0.01)
    release[0].set()  # A commits its start
    release[1].set()
    a.join(timeout=60)
    b.join(timeout=60)
    assert not errors, errors
    with db.sessions() as s:
        campaign = s.get(Campaign, cid)
        assert campaign is not None
        assert campaign.started_at == starts[0], (campaign.started_at, starts)
        assert camp.report(s, cid).counts == {"sent": 20}


def _someone_waits_for_a_lock(db: Database) -> bool:
    with db.engine.connect() as conn:
        waiting = conn.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE wait_event_type = 'Lock' AND datname = current_database()"
            )
        ).scalar()
    return bool(waiting)


def test_a_cancel_racing_the_finish_is_kept_or_refused(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The editor cancels while the engine marks the drained campaign done: either the
    cancel is refused (the campaign is done) or it holds (cancelled), never "cancelled"
    told to the editor and "done" in the database."""
    if db.backend != "postgresql":
        pytest.skip("a concurrent writer needs PostgreSQL (SQLite's snapshot refuses it)")
    seed_list(db.sessions, 10)
    settings = db.settings()
    cid, _, _ = make_campaign(db.sessions, settings)
    real_finish = lifecycle.finish
    told: list[str] = []

    def cancel() -> None:
        try:
            with db.sessions.begin() as s:
                lifecycle.cancel(s, cid)
            told.append("cancelled")
        except ConflictError as err:
            told.append(f"refused: {err}")

    def finish(campaign: Campaign) -> None:  # the engine holds the campaign it read
        editor = threading.Thread(target=cancel)
        editor.start()
        deadline = time.monotonic() + 30
        while editor.is_alive() and not _someone_waits_for_a_lock(db):
            assert time.monotonic() < deadline, "the cancel neither finished nor waited"
            time.sleep(0.01)
        real_finish(campaign)
        threads.append(editor)

    threads: list[threading.Thread] = []
    monkeypatch.setattr(lifecycle, "finish", finish)
    with Engine(settings, db.sessions, make_transport(settings)) as engine:
        engine.run(cid)
    for editor in threads:
        editor.join(timeout=30)
    assert len(told) == 1, told
    with db.sessions() as s:
        campaign = s.get(Campaign, cid)
        assert campaign is not None
        final = campaign.status
    if told[0] == "cancelled":
        assert final == "cancelled"
    else:
        assert final == "done" and "already done" in told[0], (final, told)


def test_a_pause_racing_an_expiry_is_refused(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker expires the campaign while the editor pauses it: the pause waits for the
    worker's change and is refused (the campaign is expired), instead of writing "paused"
    over the expiry it never saw."""
    if db.backend != "postgresql":
        pytest.skip("a concurrent writer needs PostgreSQL (SQLite's snapshot refuses it)")
    seed_list(db.sessions, 10)
    settings = db.settings()
    cid, _, _ = make_campaign(db.sessions, settings)
    with db.sessions.begin() as s:
        campaign = s.get(Campaign, cid)
        assert campaign is not None
        campaign.expires_at = utcnow() - timedelta(minutes=1)
    real_expire = lifecycle.expire
    told: list[str] = []
    threads: list[threading.Thread] = []

    def pause() -> None:
        try:
            with db.sessions.begin() as s:
                lifecycle.pause(s, cid, "editor")
            told.append("paused")
        except ConflictError as err:
            told.append(f"refused: {err}")

    def expire(session: Any, campaign: Campaign, reason: str) -> None:  # engine holds the row
        editor = threading.Thread(target=pause)
        editor.start()
        threads.append(editor)
        deadline = time.monotonic() + 30
        while editor.is_alive() and not _someone_waits_for_a_lock(db):
            assert time.monotonic() < deadline, "the pause neither finished nor waited"
            time.sleep(0.01)
        real_expire(session, campaign, reason)

    monkeypatch.setattr(lifecycle, "expire", expire)
    with Engine(settings, db.sessions, make_transport(settings)) as engine:
        assert engine.run(cid).status == "expired"
    for editor in threads:
        editor.join(timeout=30)
    assert told and told[0].startswith("refused") and "expired" in told[0], told
    with db.sessions() as s:
        campaign = s.get(Campaign, cid)
        assert campaign is not None and campaign.status == "expired"


def test_a_second_sqlite_sender_waits_on_the_injected_clock(db: Database) -> None:
    """`mailer worker --wait` on SQLite: the second sender tries for the single-sender
    lease once a second until ``wait`` has passed on the engine's own clock, then says
    why it gives up; the first one's lease is untouched."""
    if db.backend != "sqlite":
        pytest.skip("the single-sender lease is SQLite's")
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    settings = db.settings()
    first = Engine(settings, db.sessions, make_transport(settings))
    first.start()
    try:
        second = Engine(
            settings, db.sessions, make_transport(settings), sleep=sleep, clock=lambda: now[0]
        )
        with pytest.raises(ConflictError, match="one sending worker"):
            second.start(wait=5.0)
        assert slept == [1.0] * 5
    finally:
        first.close()
