"""mailer.ops.stats on a seeded ledger (tests/ops_seed.py), on SQLite and PostgreSQL.

Every expected figure below is read off the table in ops_seed's docstring by hand.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from mailer.errors import NotFoundError
from mailer.ops import stats
from mailer.ops.stats import Counts, Level
from tests.conftest import Database
from tests.ops_seed import HARD_550, Seeded, seed

NOW = datetime(2025, 6, 18, 12, 0, tzinfo=UTC)
TODAY = NOW.date()


@pytest.fixture
def seeded(db: Database) -> Seeded:
    with db.sessions.begin() as session:
        return seed(session, NOW)


C1 = Counts(
    total=20,
    queued=0,
    sent=18,
    failed=2,
    skipped=1,
    delivered=14,
    hard_bounced=2,
    soft_bounced=1,
    complained=1,
    rejected=1,
    unsubscribed=2,
    opened=5,
    clicked=2,
)
C2 = Counts(
    total=10,
    queued=6,
    sent=4,
    failed=0,
    skipped=0,
    delivered=2,
    hard_bounced=0,
    soft_bounced=1,
    complained=0,
    rejected=0,
    unsubscribed=0,
    opened=0,
    clicked=0,
)
C3 = Counts(total=5, sent=5, delivered=4, hard_bounced=1, opened=0, clicked=0)


def test_campaign_figures(db: Database, seeded: Seeded) -> None:
    with db.sessions() as session:
        report = stats.collect(session, days=30, now=NOW)
    assert [c.id for c in report.campaigns] == [seeded.c2, seeded.c1]  # newest first; c3 too old
    c2, c1 = report.campaigns
    assert c1.counts == C1
    assert c2.counts == C2
    assert (c1.subject, c1.list_slug, c1.status) == ("Issue one", "brief", "done")
    assert (c2.status, c2.pause_reason) == ("sending", None)
    assert c1.counts.bounced == 3
    assert c1.counts.bounce_rate == pytest.approx(2 / 18)
    assert c1.counts.complaint_rate == pytest.approx(1 / 18)
    assert c1.counts.progress == 1.0
    assert c2.counts.progress == pytest.approx(4 / 10)
    bounce, complaint = c1.counts.checks
    assert bounce.level is Level.CRITICAL
    assert [t.source for t in bounce.crossed] == ["SES review", "SES pause"]
    assert complaint.level is Level.CRITICAL
    assert [t.source for t in complaint.crossed] == [
        "Gmail target",
        "SES review",
        "Gmail never",
        "SES pause",
    ]
    assert c2.counts.level is Level.OK


def test_window_totals(db: Database, seeded: Seeded) -> None:
    with db.sessions() as session:
        report = stats.collect(session, days=30, now=NOW)
    assert report.totals == Counts(
        total=30,
        queued=6,
        sent=22,
        failed=2,
        skipped=1,
        delivered=16,
        hard_bounced=2,
        soft_bounced=2,
        complained=1,
        rejected=1,
        unsubscribed=2,
        opened=5,
        clicked=2,
    )
    assert report.totals.bounce_rate == pytest.approx(2 / 22)
    assert report.totals.complaint_rate == pytest.approx(1 / 22)
    assert report.unmatched_events == 1
    assert report.since == NOW - timedelta(days=30)


def test_longer_window_takes_in_the_old_campaign(db: Database, seeded: Seeded) -> None:
    with db.sessions() as session:
        report = stats.collect(session, days=60, now=NOW)
    assert [c.id for c in report.campaigns] == [seeded.c2, seeded.c1, seeded.c3]
    assert report.campaigns[2].counts == C3
    assert report.totals == C1 + C2 + C3
    assert report.totals.sent == 27
    assert report.totals.hard_bounced == 3


def test_one_campaign(db: Database, seeded: Seeded) -> None:
    with db.sessions() as session:
        report = stats.collect(session, campaign_id=seeded.c1, days=7, now=NOW)
    assert report.totals == C1
    assert [c.id for c in report.campaigns] == [seeded.c1]
    by_domain = {d.domain: d.counts for d in report.domains}
    assert by_domain == {
        "gmail.com": Counts(
            total=10,
            sent=10,
            delivered=9,
            hard_bounced=1,
            complained=1,
            unsubscribed=2,
            opened=5,
            clicked=2,
        ),
        "outlook.com": Counts(
            total=6,
            sent=5,
            failed=2,
            delivered=3,
            hard_bounced=1,
            rejected=1,
            opened=0,
            clicked=0,
        ),
        "example.net": Counts(total=3, sent=3, delivered=2, soft_bounced=1, opened=0, clicked=0),
        "(erased)": Counts(total=1, skipped=1, opened=0, clicked=0),
    }
    with db.sessions() as session, pytest.raises(NotFoundError, match="no campaign 999"):
        stats.collect(session, campaign_id=999, now=NOW)


def test_domains_ranked_with_the_rest_as_other(db: Database, seeded: Seeded) -> None:
    with db.sessions() as session:
        ranked = stats.domain_stats(session, since=NOW - timedelta(days=30), top=3)
        full = stats.domain_stats(session, since=NOW - timedelta(days=30), top=10)
    assert [d.domain for d in ranked] == ["gmail.com", "outlook.com", "example.net", "(other)"]
    gmail, outlook, net, other = (d.counts for d in ranked)
    assert gmail == Counts(
        total=12,
        sent=12,
        delivered=11,
        hard_bounced=1,
        complained=1,
        unsubscribed=2,
        opened=5,
        clicked=2,
    )
    assert outlook == Counts(
        total=7,
        sent=6,
        failed=2,
        delivered=3,
        hard_bounced=1,
        soft_bounced=1,
        rejected=1,
        opened=0,
        clicked=0,
    )
    assert net == Counts(total=3, sent=3, delivered=2, soft_bounced=1, opened=0, clicked=0)
    assert other == Counts(total=8, queued=6, sent=1, skipped=1, opened=0, clicked=0)
    assert [d.domain for d in full] == [
        "gmail.com",
        "outlook.com",
        "example.net",
        "yahoo.com",
        "(erased)",
    ]
    assert full[3].counts == Counts(total=7, queued=6, sent=1, opened=0, clicked=0)


def test_list_filter(db: Database, seeded: Seeded) -> None:
    with db.sessions.begin() as session:
        from subscribers.models import MailingList

        session.add(MailingList(slug="other", name="Other", from_address="o@example.org"))
    with db.sessions() as session:
        brief = stats.collect(session, list_slug="brief", now=NOW)
        other = stats.collect(session, list_slug="other", now=NOW)
        with pytest.raises(NotFoundError, match="no list 'nope'"):
            stats.collect(session, list_slug="nope", now=NOW)
    assert brief.totals.sent == 22
    assert other.totals == Counts(opened=0, clicked=0)
    assert other.campaigns == ()
    assert other.totals.bounce_rate is None
    assert other.totals.checks[0].level is Level.NA


def test_daily_rates(db: Database, seeded: Seeded) -> None:
    with db.sessions() as session:
        report = stats.collect(session, days=30, now=NOW)
    days = report.daily
    assert len(days) == 31
    assert days[0].day == TODAY - timedelta(days=30)
    assert days[-1].day == TODAY
    by_day = {d.day: d for d in days if d.sent}
    assert set(by_day) == {TODAY - timedelta(days=2), TODAY}
    two_ago = by_day[TODAY - timedelta(days=2)]
    assert (two_ago.sent, two_ago.hard_bounced, two_ago.complained) == (18, 2, 1)
    assert two_ago.bounce_rate == pytest.approx(2 / 18)
    today = by_day[TODAY]
    assert (today.sent, today.hard_bounced, today.complained) == (4, 0, 0)
    assert sum(d.sent for d in days) == 22
    assert all(d.bounce_rate is None for d in days if not d.sent)


def test_suppression_growth(db: Database, seeded: Seeded) -> None:
    with db.sessions() as session:
        growth = stats.collect(session, days=30, now=NOW).suppressions
    assert growth.total == 5
    assert growth.by_reason == {
        "complaint": 1,
        "hard_bounce": 1,
        "manual": 2,
        "soft_bounce_limit": 1,
    }
    assert len(growth.days) == 31
    by_day = {d.day: d for d in growth.days if d.added or d.removed}
    assert set(by_day) == {TODAY, TODAY - timedelta(days=1), TODAY - timedelta(days=3)}
    assert by_day[TODAY].added == {"complaint": 1, "hard_bounce": 1}
    assert by_day[TODAY].removed == 1
    assert by_day[TODAY].net == 1
    assert by_day[TODAY - timedelta(days=1)].added == {"manual": 1}
    assert by_day[TODAY - timedelta(days=3)].added == {"soft_bounce_limit": 1}
    assert (growth.added, growth.removed) == (4, 1)


def test_recent_feedback(db: Database, seeded: Seeded) -> None:
    with db.sessions() as session:
        rows = stats.recent_feedback(session)
        complaints = stats.recent_feedback(session, types=("Complaint",), limit=1)
    assert len(rows) == 9
    assert [r.event_type for r in rows].count("Complaint") == 2
    newest = rows[0]
    assert (newest.email, newest.bounce_type, newest.campaign_id) == (
        "b1@outlook.com",
        "Transient",
        seeded.c2,
    )
    assert newest.diagnostic == "smtp; 421 4.7.0 try later"
    assert (rows[1].email, rows[1].campaign_id) == ("stranger@elsewhere.org", None)
    assert rows[-1].email == "f1@gmail.com"
    assert rows[-1].diagnostic == HARD_550
    assert len(complaints) == 1


def test_queue_depth_and_send_rate(db: Database, seeded: Seeded) -> None:
    with db.sessions() as session:
        assert stats.queue_depths(session) == {seeded.c2: 6}
        # c2's 4 sends happened at NOW-1h: in a 2-hour window, not in the last minute.
        assert stats.send_rate(session, window=7200, now=NOW) == pytest.approx(4 / 7200)
        assert stats.send_rate(session, now=NOW) == 0.0


def test_tracking_off_reports_no_opens(db: Database) -> None:
    with db.sessions.begin() as session:
        seeded = seed(session, NOW)
        from sqlalchemy import delete

        from mailer.feedback.models import FeedbackEvent

        session.execute(
            delete(FeedbackEvent).where(FeedbackEvent.event_type.in_(["Open", "Click"]))
        )
    with db.sessions() as session:
        report = stats.collect(session, now=NOW)
    assert report.totals.opened is None and report.totals.clicked is None
    c1 = next(c for c in report.campaigns if c.id == seeded.c1)
    assert c1.counts.opened is None
    assert c1.counts.delivered == 14


@pytest.mark.parametrize(
    ("counts", "bounce_level", "complaint_level"),
    [
        (Counts(sent=100, hard_bounced=4), Level.OK, Level.OK),
        (Counts(sent=100, hard_bounced=5), Level.WARN, Level.OK),
        (Counts(sent=100, hard_bounced=10), Level.CRITICAL, Level.OK),
        (Counts(sent=10_000, complained=9), Level.OK, Level.OK),
        (Counts(sent=10_000, complained=10), Level.OK, Level.WARN),
        (Counts(sent=10_000, complained=30), Level.OK, Level.CRITICAL),
        (Counts(), Level.NA, Level.NA),
    ],
)
def test_thresholds(counts: Counts, bounce_level: Level, complaint_level: Level) -> None:
    bounce, complaint = stats.assess(counts)
    assert bounce.level is bounce_level
    assert complaint.level is complaint_level


def test_json_shape(db: Database, seeded: Seeded) -> None:
    with db.sessions() as session:
        data = stats.collect(session, days=30, now=NOW).to_json()
    assert data["totals"]["sent"] == 22
    assert data["totals"]["checks"][0] == {
        "name": "bounce",
        "rate": pytest.approx(2 / 22),
        "level": "warn",  # 9.1%: past SES's review level, short of its pause level
        "crossed": ["SES review"],
        "thresholds": {"SES review": 0.05, "SES pause": 0.10},
    }
    assert [c["id"] for c in data["campaigns"]] == [seeded.c2, seeded.c1]
    assert data["suppressions"]["days"][-1] == {
        "day": TODAY.isoformat(),
        "added": {"complaint": 1, "hard_bounce": 1},
        "removed": 1,
        "net": 1,
    }
    assert date.fromisoformat(data["daily"][0]["day"]) == TODAY - timedelta(days=30)


# -- the command -------------------------------------------------------------------------------


def test_cli_json_and_text(db: Database) -> None:
    import json

    from click.testing import CliRunner

    from mailer.cli import command

    now = datetime.now(UTC).replace(microsecond=0)
    with db.sessions.begin() as session:
        seeded = seed(session, now)
    env = {"MAILER_DATABASE_URL": db.url, "COLUMNS": "220"}
    runner = CliRunner()
    r = runner.invoke(command(), ["stats", "--json"], env=env, prog_name="mailer")
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert data["totals"]["sent"] == 22 and data["totals"]["hard_bounced"] == 2
    assert [c["id"] for c in data["campaigns"]] == [seeded.c2, seeded.c1]
    r = runner.invoke(
        command(), ["stats", "--campaign", str(seeded.c1), "--json"], env=env, prog_name="mailer"
    )
    assert json.loads(r.output)["totals"]["sent"] == 18
    r = runner.invoke(command(), ["stats", "--days", "7"], env=env, prog_name="mailer")
    assert r.exit_code == 0, r.output
    out = r.output
    assert "sent 22  delivered 16  bounced 4 (hard 2, soft 2)  complained 1" in out
    assert "bounce rate 9.09% (SES review)" in out
    assert "complaint rate 4.55% (SES pause)" in out
    assert "gmail.com" in out and "Issue one" in out
    assert "suppression list: 5 (complaint 1, hard_bounce 1, manual 2, soft_bounce_limit 1)" in out
    assert "[green]" not in out and "\x1b[" not in out  # no markup or colors off a terminal
    r = runner.invoke(command(), ["stats", "--list", "nope"], env=env, prog_name="mailer")
    assert r.exit_code != 0
    assert "no list 'nope'" in str(r.exception)
