"""Their morning (issue 15): `mailer send --at-local 06:00` releases each reader's row at
06:00 in the reader's zone (else the list's, else UTC), within one campaign and one ledger.

Readers in four zones (Asia/Shanghai, Europe/London, America/New_York, none -> the list's
Asia/Tokyo); the engine's wall clock is injected and stepped through the day. On SQLite and
PostgreSQL."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, update

from mailer.errors import InputError
from mailer.ops.campaign_view import campaign_view
from mailer.sending import campaigns as camp
from mailer.sending import publish
from mailer.sending.engine import Engine
from mailer.sending.models import Campaign, Delivery
from mailer.sending.schedule import Schedule, parse_at_local
from mailer.sending.waves import WAVE_EXPIRED, next_release, release_at
from mailer.transports import make_transport
from subscribers import store
from subscribers.models import MailingList, Subscriber, utcnow
from tests.conftest import Database
from tests.delivery_helpers import ISSUE, fixture_issue, seed_list

#: a Thursday in winter: London UTC+0, New York UTC-5, Shanghai UTC+8, Tokyo UTC+9
START = datetime(2026, 12, 10, 12, 0, tzinfo=UTC)
ZONES = ["Asia/Shanghai", "Europe/London", "America/New_York", None]
TOKYO = datetime(2026, 12, 10, 21, 0, tzinfo=UTC)  # 06:00 Dec 11 in Tokyo (the list's zone)
SHANGHAI = datetime(2026, 12, 10, 22, 0, tzinfo=UTC)
LONDON = datetime(2026, 12, 11, 6, 0, tzinfo=UTC)
NEW_YORK = datetime(2026, 12, 11, 11, 0, tzinfo=UTC)


def _readers(db: Database, per_zone: int = 2) -> dict[str, str | None]:
    """A list in Asia/Tokyo with ``per_zone`` readers in each of ZONES: email -> zone."""
    _, emails = seed_list(db.sessions, per_zone * len(ZONES))
    zones = {e: ZONES[i % len(ZONES)] for i, e in enumerate(emails)}
    with db.sessions.begin() as s:
        s.execute(update(MailingList).values(time_zone="Asia/Tokyo"))
        for email, zone in zones.items():
            s.execute(update(Subscriber).where(Subscriber.email == email).values(time_zone=zone))
    return zones


def _create(db: Database, expiry: timedelta | None = None) -> int:
    settings = db.settings()
    with db.sessions() as s:
        mlist = store.get_list(s, "brief")
    issue = fixture_issue()
    rendered = publish.render_for(settings, mlist, issue)
    schedule = Schedule(at=START, at_local="06:00", wave_expiry=expiry)
    created = publish.create(db.sessions, mlist, issue, rendered, schedule)
    assert created.schedule.at == TOKYO  # it starts with the first reader's morning
    return created.campaign_id


class Wall:
    """The injected wall clock, stepped by the test."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def _sent(db: Database, cid: int) -> set[str]:
    """Readers with a message in the outbox (each file is one message)."""
    files = list((db.tmp / "outbox" / str(cid)).glob("*.eml"))
    got = [line for f in files for line in f.read_text().splitlines() if line.startswith("To: ")]
    assert len(got) == len(files)
    return {line[4:].strip() for line in got}


def _runner(db: Database, wall: Wall) -> Callable[[int], publish.Outcome]:
    settings = db.settings()
    transport = make_transport(settings)

    def run(cid: int) -> publish.Outcome:
        """What a worker does at the wall clock's time: run the campaign if it is due."""
        with db.sessions() as s:
            due = camp.runnable(s, wall())
        with Engine(settings, db.sessions, transport, wall=wall) as engine:
            outcomes = list(publish.run_due(engine, db.sessions))
        assert [o.campaign_id for o in outcomes] == ([cid] if cid in due else [])
        return outcomes[0] if outcomes else publish.Outcome(cid, "", None, 0, 0, 0, 0, 0)

    return run


def test_release_is_the_first_local_time_at_or_after_the_start() -> None:
    london = ZoneInfo("Europe/London")
    assert release_at("06:00", london, START) == LONDON  # 12:00 London: tomorrow
    at_six = datetime(2026, 12, 10, 6, 0, tzinfo=UTC)
    assert release_at("06:00", london, at_six) == at_six  # at the start itself: now
    # the spring-forward gap (New York, 2027-03-14 02:00 -> 03:00): 02:30 is taken with the
    # offset before the change, so it comes at 07:30 UTC (03:30 EDT)
    ny = ZoneInfo("America/New_York")
    march = datetime(2027, 3, 14, 0, 0, tzinfo=UTC)
    assert release_at("02:30", ny, march) == datetime(2027, 3, 14, 7, 30, tzinfo=UTC)


@pytest.mark.parametrize("text", ["25:00", "6", "06:60", "6am", "", "06:00:00", "٠٦:٠٠"])
def test_at_local_refuses_what_is_not_a_time_of_day(text: str) -> None:
    with pytest.raises(InputError, match=r"--at-local: .* HH:MM"):
        parse_at_local(text)
    assert parse_at_local(" 6:05 ") == "06:05"


def test_each_row_is_sent_only_after_its_morning(db: Database) -> None:
    zones = _readers(db)
    cid = _create(db)
    with db.sessions() as s:
        released = dict(
            s.execute(
                select(Subscriber.email, Delivery.release_at).join(
                    Subscriber, Subscriber.id == Delivery.subscriber_id
                )
            ).all()
        )
    slot = {"Asia/Shanghai": SHANGHAI, "Europe/London": LONDON, "America/New_York": NEW_YORK}
    assert released == {e: slot.get(z or "", TOKYO) for e, z in zones.items()}
    wall = Wall(START)
    run = _runner(db, wall)
    # (the wall clock, the zones sent by then, whether a worker runs it: not between waves)
    steps: list[tuple[datetime, set[str | None], bool]] = [
        (TOKYO - timedelta(minutes=1), set(), False),
        (TOKYO, {None}, True),
        (SHANGHAI - timedelta(seconds=1), {None}, False),
        (SHANGHAI + timedelta(minutes=30), {None, "Asia/Shanghai"}, True),
        (LONDON, {None, "Asia/Shanghai", "Europe/London"}, True),
        (NEW_YORK - timedelta(minutes=5), {None, "Asia/Shanghai", "Europe/London"}, False),
    ]
    for now, sent_zones, runs in steps:
        wall.now = now
        outcome = run(cid)
        assert _sent(db, cid) == {e for e, z in zones.items() if z in sent_zones}, now
        with db.sessions() as s:
            status = s.get(Campaign, cid).status  # type: ignore[union-attr]
        assert status == ("scheduled" if now < TOKYO else "sending")
        assert bool(outcome.status) == runs, now  # runnable() skips it between waves
        if runs:  # its wave sent, it waits for the next one
            assert outcome.ending == publish.Ending.WAITING and outcome.next_release is not None
            assert outcome.next_release > now
    wall.now = NEW_YORK
    outcome = run(cid)
    assert outcome.ending == publish.Ending.DONE and outcome.next_release is None
    assert _sent(db, cid) == set(zones)
    with db.sessions() as s:
        view = campaign_view(s, cid).to_json()
    assert view["status"] == "done" and view["at_local"] == "06:00"
    assert [(w["release_at"], w["counts"]["sent"]) for w in view["waves"]] == [
        (t.isoformat(), 2) for t in (TOKYO, SHANGHAI, LONDON, NEW_YORK)
    ]
    assert view["waves"][0]["zones"] == ["Asia/Tokyo (list)"]


def test_expiry_is_per_wave_not_the_campaign(db: Database) -> None:
    zones = _readers(db)
    cid = _create(db, expiry=timedelta(hours=1))
    wall = Wall(TOKYO)
    run = _runner(db, wall)
    run(cid)  # Tokyo's wave at 21:00
    wall.now = SHANGHAI + timedelta(hours=1)  # Shanghai's wave was due 22:00: now too late
    outcome = run(cid)
    assert outcome.skipped == 2 and outcome.ending == publish.Ending.WAITING
    wall.now = LONDON + timedelta(minutes=59)
    run(cid)
    wall.now = NEW_YORK + timedelta(hours=2)  # New York's too
    outcome = run(cid)
    assert outcome.ending == publish.Ending.DONE  # done, with two waves skipped: not expired
    sent = {e for e, z in zones.items() if z in (None, "Europe/London")}
    assert _sent(db, cid) == sent
    with db.sessions() as s:
        skipped = s.execute(
            select(Subscriber.email, Delivery.error_class, Delivery.error)
            .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
            .where(Delivery.status == "skipped")
        ).all()
        waves = campaign_view(s, cid).waves
    assert {e for e, _, _ in skipped} == set(zones) - sent
    assert {(c, m) for _, c, m in skipped} == {("Expired", WAVE_EXPIRED)}
    assert [(w.counts.get("sent", 0), w.counts.get("skipped", 0)) for w in waves] == [
        (2, 0),
        (0, 2),
        (2, 0),
        (0, 2),
    ]


def test_a_dead_workers_rows_of_an_expired_wave_are_skipped_not_sent_late(db: Database) -> None:
    """A worker died with Shanghai's wave in flight (rows `sending` under its claim, no lease
    left). When the next worker comes after that wave's expiry, those rows are skipped as the
    wave's queued rows are, not claimed again and sent hours late."""
    zones = _readers(db)
    cid = _create(db, expiry=timedelta(hours=1))
    wall = Wall(TOKYO)
    run = _runner(db, wall)
    run(cid)  # Tokyo's wave
    shanghai = {e for e, z in zones.items() if z == "Asia/Shanghai"}
    with db.sessions.begin() as s:
        ids = s.scalars(select(Subscriber.id).where(Subscriber.email.in_(shanghai))).all()
        s.execute(
            update(Delivery)
            .where(Delivery.campaign_id == cid, Delivery.subscriber_id.in_(ids))
            .values(status="sending", worker="gone-host:4242:dead", fence=1, claimed_at=SHANGHAI)
        )
    wall.now = SHANGHAI + timedelta(hours=2)  # that wave expired an hour ago
    outcome = run(cid)
    assert outcome.skipped == 2
    assert not (_sent(db, cid) & shanghai)
    with db.sessions() as s:
        rows = s.execute(
            select(Delivery.status, Delivery.error_class, Delivery.error).where(
                Delivery.campaign_id == cid, Delivery.subscriber_id.in_(ids)
            )
        ).all()
    assert set(rows) == {("skipped", "Expired", WAVE_EXPIRED)}
    wall.now = LONDON
    run(cid)  # London's wave still goes out in its slot
    assert {e for e, z in zones.items() if z == "Europe/London"} <= _sent(db, cid)


def test_a_plain_send_has_no_waves(db: Database) -> None:
    seed_list(db.sessions, 3)
    settings = db.settings()
    with db.sessions() as s:
        mlist = store.get_list(s, "brief")
    issue = fixture_issue()
    rendered = publish.render_for(settings, mlist, issue)
    created = publish.create(db.sessions, mlist, issue, rendered, Schedule())
    with db.sessions() as s:
        assert s.scalars(select(Delivery.release_at)).all() == [None] * 3
        view = campaign_view(s, created.campaign_id).to_json()
    assert view["waves"] == [] and view["at_local"] is None


# -- through the real `mailer` process ------------------------------------------------------


def mailer(db: Database, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mailer", *args],
        env=db.env(COLUMNS="200"),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=db.tmp,
    )


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--at-local", "25:00"], "--at-local: '25:00' is not a time of day"),
        (["--at-local", "six"], "--at-local: 'six' is not a time of day"),
        (["--at-local", "06:00", "--expires-after", "6"], "--expires-after: '6' has no unit"),
    ],
)
def test_cli_refuses_a_bad_at_local_with_one_line(
    db: Database, args: list[str], error: str
) -> None:
    seed_list(db.sessions, 2)
    r = mailer(db, "send", str(ISSUE), "--list", "brief", *args)
    assert r.returncode == 1, r.stderr  # an InputError, as a bad --at is
    assert error in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    with db.sessions() as s:
        assert s.scalars(select(Campaign.id)).all() == []  # nothing created


def test_cli_send_at_local_hands_the_waves_to_the_worker(db: Database) -> None:
    _readers(db)
    r = mailer(db, "send", str(ISSUE), "--list", "brief", "--at-local", "06:00")
    assert r.returncode == 0, r.stderr
    assert "8 readers of brief queued" in r.stdout
    assert r.stdout.count("  wave ") == 4  # Tokyo/list, Shanghai, London, New York
    with db.sessions() as s:
        c = s.scalars(select(Campaign)).one()
        assert c.at_local == "06:00" and c.expires_at is None
        first = min(s.scalars(select(Delivery.release_at)).all(), key=lambda t: t or START)
    assert c.scheduled_at == first
    shown = mailer(db, "campaigns", "show", str(c.id))
    assert shown.returncode == 0 and "waves" in shown.stdout, shown.stderr
    assert "Asia/Tokyo (list)" in shown.stdout and "at local" in shown.stdout
    as_json = json.loads(mailer(db, "campaigns", "show", str(c.id), "--json").stdout)
    assert len(as_json["waves"]) == 4
    assert sum(w["counts"]["queued"] for w in as_json["waves"]) == 8


def _wait_for(what: str, check: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _worker(db: Database) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "mailer", "worker", "--poll", "0.2"],
        env=db.env(),
        cwd=db.tmp,
        stdout=subprocess.DEVNULL,
        stderr=(db.tmp / "worker.err").open("ab"),
    )


def test_kill_9_of_a_worker_between_waves_loses_nothing(db: Database) -> None:
    """The day compressed: the real worker's clock is the real one, so the test moves each
    wave's release_at to now when it is its turn. The worker sends the first wave and waits;
    it is killed (SIGKILL) while it waits; a new worker sends the other waves: every reader
    once, the campaign done."""
    zones = _readers(db, per_zone=3)
    cid = _create(db)
    order = [TOKYO, SHANGHAI, LONDON, NEW_YORK]

    def release(wave: datetime, at: datetime) -> None:
        with db.sessions.begin() as s:
            s.execute(update(Delivery).where(Delivery.release_at == wave).values(release_at=at))

    def left() -> int:
        with db.sessions() as s:
            return len(s.scalars(select(Delivery.id).where(Delivery.status != "sent")).all())

    far = utcnow() + timedelta(hours=6)
    moved = {wave: far + timedelta(hours=i) for i, wave in enumerate(order)}
    for wave, at in moved.items():
        release(wave, at)
    release(moved[TOKYO], utcnow() - timedelta(seconds=1))
    with db.sessions.begin() as s:  # START is in the future of the real clock: now instead
        s.execute(update(Campaign).values(scheduled_at=utcnow() - timedelta(seconds=1)))
    first = _worker(db)
    try:
        _wait_for("the first wave", lambda: left() == 9)
        with db.sessions() as s:
            assert next_release(s, cid, utcnow()) == moved[SHANGHAI]  # it waits, idle
        first.send_signal(signal.SIGKILL)
        assert first.wait(timeout=10) == -signal.SIGKILL
    finally:
        if first.poll() is None:
            first.kill()
    with db.sessions() as s:
        assert s.get(Campaign, cid).status == "sending"  # type: ignore[union-attr]
    second = _worker(db)
    try:
        release(moved[SHANGHAI], utcnow())
        _wait_for("the second wave", lambda: left() == 6)
        release(moved[LONDON], utcnow())
        release(moved[NEW_YORK], utcnow())
        _wait_for("the last waves", lambda: left() == 0)

        def done() -> bool:
            with db.sessions() as s:
                return s.get(Campaign, cid).status == "done"  # type: ignore[union-attr]

        _wait_for("the campaign to be done", done)
    finally:
        second.terminate()
        second.wait(timeout=30)
    files = list((db.tmp / "outbox" / str(cid)).glob("*.eml"))
    assert len(files) == len(zones) and _sent(db, cid) == set(zones)  # each reader once
