"""Fencing (issue 18): a worker whose lease lapsed (partitioned, paused) claims nothing until
it renews, and its late results over rows another worker claimed again are rejected by the
fence and counted; a host back from a partition does not burst to catch up.

Time is injected: claims take ``now``, a lapse is the worker's lease row running out (as
when its heartbeat cannot reach the database), and the pacing tests use a clock that stands
still until moved."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import cast

import pytest
from sqlalchemy import event, select, update

from mailer.errors import RetryableSendError
from mailer.sending import lifecycle
from mailer.sending.leases import beat
from mailer.sending.ledger import Ledger, lock_campaign
from mailer.sending.models import Campaign, Delivery, Lease
from mailer.sending.outcomes import Failure, Fence, Results, Retry, Sent, record
from mailer.sending.pacing import STALE_SLOT_SECONDS, Pacer, Pacing
from mailer.sending.progress import Progress
from subscribers.models import utcnow
from tests.conftest import Database
from tests.delivery_helpers import make_campaign, seed_list


def _claim(db: Database, ledger: Ledger, cid: int, size: int, now: datetime) -> list[int]:
    with db.sessions.begin() as s:
        campaign = lock_campaign(s, cid, ledger.sqlite)
        list_id = s.scalars(select(Campaign.list_id).where(Campaign.id == cid)).one()
        rows, _ = ledger.claim(s, campaign, list_id, size, now, monotonic=0.0)
        return [r.delivery_id for r in rows]


def _lapse(db: Database, worker: str, at: datetime) -> None:
    """The worker's heartbeat could not reach the database: its lease ran out at ``at``."""
    with db.sessions.begin() as s:
        s.execute(update(Lease).where(Lease.name == f"worker:{worker}").values(expires_at=at))


def _write(db: Database, results: Results, fence: Fence) -> tuple[int, int]:
    with db.sessions.begin() as s:
        tally = record(s.connection(), results, utcnow(), fence)
    return tally.sent + tally.failed + tally.skipped + tally.retried, tally.rejected


def _rows(db: Database, ids: list[int]) -> dict[int, tuple[str, str | None, int | None]]:
    with db.sessions() as s:
        found = s.execute(
            select(Delivery.id, Delivery.status, Delivery.worker, Delivery.fence).where(
                Delivery.id.in_(ids)
            )
        )
        return {i: (status, worker, fence) for i, status, worker, fence in found}


def test_a_lapsed_workers_late_results_are_rejected_and_counted(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    seed_list(db.sessions, 12)
    cid, enqueued, _ = make_campaign(db.sessions, db.settings())
    assert enqueued == 12
    sqlite = db.backend == "sqlite"
    a, b = (
        Ledger("host-a:1:0001", sqlite=sqlite, lease_seconds=600),
        Ledger("host-b:2:0002", sqlite=sqlite, lease_seconds=600),
    )
    with db.sessions.begin() as s:
        assert beat(s, a.worker_id) == 1
        assert beat(s, b.worker_id) == 1
    t0 = utcnow()
    held_by_a = _claim(db, a, cid, 4, t0)
    fence_a1 = a.fence
    assert len(held_by_a) == 4 and fence_a1 == Fence(a.worker_id, 1)
    assert {r[2] for r in _rows(db, held_by_a).values()} == {1}

    # A is cut off: its lease runs out, and at t1 it may not claim
    _lapse(db, a.worker_id, t0 - timedelta(seconds=1))
    t1 = t0 + timedelta(seconds=2)
    with caplog.at_level(logging.WARNING, logger="mailer.sending.ledger"):
        assert _claim(db, a, cid, 4, t1) == []
    assert a.fence is None
    assert "lease lapsed" in caplog.text

    # B finds A's rows (its lease is gone) and claims them again, under its own fence
    taken = _claim(db, b, cid, 4, t1)
    assert taken == held_by_a
    assert {r[1:] for r in _rows(db, taken).values()} == {(b.worker_id, 1)}
    with db.sessions() as s:
        assert s.scalars(select(Campaign.reclaimed).where(Campaign.id == cid)).one() == 4

    # A's late results, every kind of write, change nothing and are counted
    assert fence_a1 is not None
    late = Results(
        sent=[Sent(held_by_a[0], "late-0")],
        failed=[Failure(held_by_a[1], "RejectedError", "no")],
        retryable=[Retry(held_by_a[2], t1, "again")],
        unsent=[held_by_a[3]],
    )
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="mailer.sending.ledger"):
        assert _write(db, late, fence_a1) == (0, 4)
    assert "4 late results rejected by the fence" in caplog.text
    assert {r for r in _rows(db, taken).values()} == {("sending", b.worker_id, 1)}
    progress = Progress(cid)
    with db.sessions.begin() as s:
        progress.add(record(s.connection(), late, utcnow(), fence_a1))
    assert progress.fenced == 4 and progress.sent == 0

    # A renews: a new generation; its next claims carry it
    with db.sessions.begin() as s:
        assert beat(s, a.worker_id) == 2
        assert beat(s, a.worker_id) == 2  # a renewal in time keeps it
    fresh = _claim(db, a, cid, 4, utcnow())
    assert len(fresh) == 4 and not set(fresh) & set(taken)
    fence_a2 = a.fence
    assert fence_a2 is not None and fence_a2 == Fence(a.worker_id, 2)
    # a result under A's old token is refused even on A's own rows: only the token counts
    assert _write(db, Results(sent=[Sent(fresh[0], "old")]), fence_a1) == (0, 1)
    assert _write(db, Results(sent=[Sent(i, f"a-{i}") for i in fresh]), fence_a2) == (4, 0)
    assert _write(db, Results(sent=[Sent(i, f"b-{i}") for i in taken]), Fence(b.worker_id, 1)) == (
        4,
        0,
    )
    with db.sessions() as s:
        query = select(Delivery.id, Delivery.message_id).where(Delivery.id.in_(taken))
        mids = {row_id: mid for row_id, mid in s.execute(query)}
    assert mids == {i: f"b-{i}" for i in taken}  # B's answers, not A's late ones


def test_a_retry_under_the_fence_requeues_only_held_rows(db: Database) -> None:
    seed_list(db.sessions, 3)
    cid, _, _ = make_campaign(db.sessions, db.settings())
    ledger = Ledger("host-c:3:0003", sqlite=db.backend == "sqlite", lease_seconds=600)
    with db.sessions.begin() as s:
        beat(s, ledger.worker_id)
    ids = _claim(db, ledger, cid, 3, utcnow())
    assert ledger.fence is not None
    err = RetryableSendError("throttled", throttled=True)
    retry = Results(retryable=[Retry(ids[0], utcnow(), str(err))], unsent=[ids[1]])
    forged = Fence(ledger.worker_id, ledger.fence.generation + 1)  # a token never issued
    assert _write(db, retry, forged) == (0, 2)
    assert _write(db, retry, ledger.fence) == (1, 0)  # a retry counts; unsent rows do not
    assert [r[0] for r in _rows(db, ids[:2]).values()] == ["queued", "queued"]


def test_an_expiry_in_flight_does_not_fence_out_the_batchs_answer(db: Database) -> None:
    """Expiry skips rows in flight; the fence is whose claim a row is, not its status, so
    the batch's answer still records what went out (a sent row is sent)."""
    seed_list(db.sessions, 2)
    cid, _, _ = make_campaign(db.sessions, db.settings())
    ledger = Ledger("host-d:4:0004", sqlite=db.backend == "sqlite", lease_seconds=600)
    with db.sessions.begin() as s:
        beat(s, ledger.worker_id)
    ids = _claim(db, ledger, cid, 2, utcnow())
    assert ledger.fence is not None
    with db.sessions.begin() as s:
        campaign = s.get(Campaign, cid)
        assert campaign is not None
        lifecycle.expire(s, campaign, "too late")
    assert [r[0] for r in _rows(db, ids).values()] == ["skipped", "skipped"]
    answer = Results(sent=[Sent(ids[0], "m-0")], unsent=[ids[1]])
    assert _write(db, answer, ledger.fence) == (1, 0)
    assert sorted(r[0] for r in _rows(db, ids).values()) == ["queued", "sent"]


def test_every_write_of_a_batch_carries_the_one_fence_decision(db: Database) -> None:
    """record() decides once how the fence holds: on PostgreSQL the held rows are locked
    FOR UPDATE before the writes, which then carry no fence terms; on SQLite (no row locks)
    every write carries them, whatever the kind of result."""
    seed_list(db.sessions, 5)
    cid, _, _ = make_campaign(db.sessions, db.settings())
    ledger = Ledger("host-e:5:0005", sqlite=db.backend == "sqlite", lease_seconds=600)
    with db.sessions.begin() as s:
        beat(s, ledger.worker_id)
    ids = _claim(db, ledger, cid, 5, utcnow())
    assert ledger.fence is not None and len(ids) == 5
    every_kind = Results(
        sent=[Sent(ids[0], "m-0")],
        failed=[Failure(ids[1], "RejectedError", "no")],
        retryable=[Retry(ids[2], utcnow(), "again")],
        unsent=[ids[3]],
        skipped=[ids[4]],
    )
    seen: list[str] = []

    def capture(*args: object) -> None:
        statement = str(args[2])
        if statement.lstrip().upper().startswith("UPDATE"):
            seen.append(statement)

    event.listen(db.engine, "before_cursor_execute", capture)
    try:
        assert _write(db, every_kind, ledger.fence) == (4, 0)  # unsent rows are no attempt
    finally:
        event.remove(db.engine, "before_cursor_execute", capture)
    assert len(seen) == 5  # one write per kind
    fenced = ["deliveries.fence" in statement for statement in seen]
    assert fenced == [db.backend == "sqlite"] * 5
    assert sorted(r[0] for r in _rows(db, ids).values()) == [
        "failed",
        "queued",
        "queued",
        "sent",
        "skipped",
    ]


# -- no burst after a partition (injected clock) --------------------------------------------


class StillClock:
    """Stands still until moved; each sleep is recorded as the slot it waits for."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.slots: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slots.append(self.now + seconds)


def test_a_host_back_from_a_partition_does_not_burst() -> None:
    clock = StillClock()
    pacer = Pacer(clock.sleep, clock)
    pacer.rate = 10.0
    start = clock.now
    for _ in range(5):
        assert pacer.wait(start, 1)
    assert clock.slots == pytest.approx([1000.0 + i / 10 for i in range(1, 5)])
    # cut off longer than a lease: the batch's remaining calls belong to a missed slot
    clock.now += STALE_SLOT_SECONDS + 5
    made = [pacer.wait(start, 1) for _ in range(20)]
    assert made == [False] * 20  # not sent in a rush: their rows go back to the queue
    # a fresh claim's slot: calls spaced at the rate again, from now, none before
    clock.slots.clear()
    fresh = clock.now
    assert all(pacer.wait(fresh, 1) for _ in range(5))
    assert clock.slots == pytest.approx([fresh + i / 10 for i in range(1, 5)])


class PausingClock(StillClock):
    """A sleep the process is stopped in: the clock moves on by ``pause`` more than asked."""

    def __init__(self, pause: float) -> None:
        super().__init__()
        self.pause = pause

    def sleep(self, seconds: float) -> None:
        super().sleep(seconds)
        self.now += seconds + self.pause


def test_a_call_woken_late_from_its_wait_is_not_made() -> None:
    paused = PausingClock(pause=STALE_SLOT_SECONDS + 1)
    pacer = Pacer(paused.sleep, paused)
    pacer.rate = 10.0
    assert pacer.wait(paused.now, 1)  # on time: no sleep
    assert not pacer.wait(paused.now, 1)  # slept, and woke a lease later: not sent
    brief = PausingClock(pause=0.5)  # a busy machine's late wake-up is still sent
    pacer = Pacer(brief.sleep, brief)
    pacer.rate = 10.0
    assert all(pacer.wait(brief.now, 1) for _ in range(5))


def test_the_shared_cursor_gives_a_returning_host_no_catch_up_time() -> None:
    """Two hosts' claims on one campaign row: while B is away A reserves the time; B's first
    claim back starts after A's slots, so over any span the reserved sends stay within the
    rate (plus one batch)."""
    rate, batch = 20.0, 10
    a, b = Pacing(rate), Pacing(rate)
    campaign = SimpleNamespace(rate_cursor=None)
    row = cast("Campaign", campaign)
    t0 = datetime(2026, 12, 3, 12, 0, 0)
    slots: list[tuple[datetime, int]] = []
    b_start = b.reserve(row, batch, t0)
    slots.append((t0 + timedelta(seconds=b_start), batch))
    for i in range(40):  # A claims every half second while B is partitioned for 20 s
        now = t0 + timedelta(seconds=0.5 * i)
        slots.append((now + timedelta(seconds=a.reserve(row, batch, now)), batch))
    back = t0 + timedelta(seconds=20)
    start_in = b.reserve(row, batch, back)
    b_slot = back + timedelta(seconds=start_in)
    assert start_in >= 0 and b_slot >= max(at for at, _ in slots)  # after A's, not in the past
    slots.append((b_slot, batch))
    slots.sort()
    first = slots[0][0]
    for end in range(len(slots)):
        span = (slots[end][0] - first).total_seconds()
        sent = sum(n for _, n in slots[: end + 1])
        assert sent <= rate * span + batch
