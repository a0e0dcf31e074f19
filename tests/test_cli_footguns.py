"""Footguns a newcomer met in the first hour (issue 17), each through the real `mailer`
process: a past --at, a duration without a unit, a scheduled issue sent again, a send while a
worker runs on SQLite, and the Markdown front matter's `list:`."""

from __future__ import annotations

import email
import email.policy
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from mailer.errors import InputError
from mailer.sending.models import Campaign, Delivery, Lease
from mailer.sending.schedule import PAST_GRACE, Schedule
from tests.cli_support import run_cli
from tests.conftest import Database
from tests.delivery_helpers import ISSUE, seed_list

NOW = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)

MARKDOWN = """---
subject: Front matter brief
list: {slug}
---
A short intro paragraph.

## The first headline
Source: Example Wire
https://example.com/first

What happened, in two sentences. And why it matters.
"""


def campaigns(db: Database) -> list[tuple[int, str]]:
    with db.sessions() as s:
        rows = s.execute(select(Campaign.id, Campaign.status).order_by(Campaign.id))
        return [(int(cid), str(status)) for cid, status in rows]


def outbox(db: Database) -> list[Path]:
    return sorted((db.tmp / "outbox").rglob("*.eml"))


# -- --at in the past ---------------------------------------------------------------------


def test_a_past_at_is_refused_beyond_the_grace_window() -> None:
    assert timedelta(minutes=5) == PAST_GRACE
    just_typed = NOW - PAST_GRACE + timedelta(seconds=1)
    assert Schedule.parse(just_typed.isoformat(), now=NOW).at == just_typed
    with pytest.raises(InputError, match=r"--at: .* is 5 minutes ago .* within 5 minutes"):
        Schedule.parse((NOW - PAST_GRACE - timedelta(seconds=1)).isoformat(), now=NOW)
    with pytest.raises(InputError, match="6 years ago"):
        Schedule.parse("2020-01-01T06:00Z", now=NOW)


def test_send_with_a_typod_past_date_sends_nothing(db: Database) -> None:
    seed_list(db.sessions, 3)
    r = run_cli(db, "send", str(ISSUE), "--list", "brief", "--at", "2020-01-01T06:00")
    assert r.returncode == 1
    assert r.stderr.strip().startswith("mailer: error: --at: '2020-01-01T06:00' is 6 years ago")
    assert "leave out --at" in r.stderr
    assert campaigns(db) == [] and outbox(db) == []


# -- durations need a unit ----------------------------------------------------------------


@pytest.mark.parametrize(("at", "expires"), [(None, "6"), ("+6", None), (None, " 2.5 ")])
def test_a_duration_without_a_unit_is_refused(at: str | None, expires: str | None) -> None:
    option = "--at" if at else "--expires-after"
    with pytest.raises(InputError, match=f"{option}: .* has no unit: write .*h"):
        Schedule.parse(at, expires, now=NOW)


def test_send_expires_after_6_is_refused(db: Database) -> None:
    seed_list(db.sessions, 2)
    r = run_cli(db, "send", str(ISSUE), "--list", "brief", "--expires-after", "6")
    assert r.returncode == 1
    assert r.stderr.strip() == (
        "mailer: error: --expires-after: '6' has no unit: write 6m, 6h or 6d (or 6s)"
    )
    assert campaigns(db) == []
    ok = run_cli(db, "send", str(ISSUE), "--list", "brief", "--expires-after", "6h")
    assert ok.returncode == 0, ok.stderr


# -- a scheduled issue sent again -----------------------------------------------------------


def test_a_scheduled_issue_sent_again_points_at_cancel_even_forced(db: Database) -> None:
    seed_list(db.sessions, 2)
    first = run_cli(db, "send", str(ISSUE), "--list", "brief", "--at", "+2h")
    assert first.returncode == 0, first.stderr
    for extra in ((), ("--force",)):
        again = run_cli(db, "send", str(ISSUE), "--list", "brief", *extra)
        assert again.returncode == 1, extra
        line = again.stderr.strip()
        assert "already scheduled to brief as campaign 1 for " in line, line
        assert "`mailer campaigns cancel 1`" in line and "--force" not in line, line
    assert campaigns(db) == [(1, "scheduled")]
    # once cancelled, the same send goes through
    assert run_cli(db, "campaigns", "cancel", "1").returncode == 0
    assert run_cli(db, "send", str(ISSUE), "--list", "brief").returncode == 0
    assert campaigns(db) == [(1, "cancelled"), (2, "done")]


# -- a send while a worker runs --------------------------------------------------------------


def _wait_for_lease(db: Database, worker: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert worker.poll() is None, worker.communicate()
        with db.sessions() as s:
            if s.scalar(select(func.count()).select_from(Lease)):
                return
        time.sleep(0.1)
    raise AssertionError("the worker never registered")


def test_send_while_a_worker_runs_hands_the_campaign_to_it(db: Database) -> None:
    seed_list(db.sessions, 6)
    worker = subprocess.Popen(
        [sys.executable, "-m", "mailer", "worker", "--poll", "0.2"],
        env=db.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=db.tmp,
    )
    try:
        _wait_for_lease(db, worker)
        r = run_cli(db, "send", str(ISSUE), "--list", "brief")
    finally:
        worker.terminate()
        worker.communicate(timeout=60)
    assert r.returncode == 0, r.stderr
    assert "another worker is sending" not in r.stderr
    if db.backend == "sqlite":  # one sender: the worker sent it, this command followed
        assert "is queued for it; following its progress" in r.stdout
    assert campaigns(db) == [(1, "done")]
    with db.sessions() as s:
        sent = s.scalar(select(func.count()).select_from(Delivery).where(Delivery.status == "sent"))
    assert sent == 6 and len(outbox(db)) == 6  # every reader once, by one of the two


# -- the front matter's list -----------------------------------------------------------------


def test_front_matter_list_is_honoured_by_send_and_render(db: Database, tmp_path: Path) -> None:
    seed_list(db.sessions, 2, slug="fm-brief")
    issue = tmp_path / "issue.md"
    issue.write_text(MARKDOWN.format(slug="fm-brief"), encoding="utf-8")
    shown = run_cli(db, "issue", "render", str(issue), "--out", str(tmp_path / "preview"))
    assert shown.returncode == 0, shown.stderr
    eml = (tmp_path / "preview" / "message.eml").read_bytes()
    msg = email.message_from_bytes(eml, policy=email.policy.default)
    assert msg["From"] == "The Test Brief <brief@example.org>"
    wrong = run_cli(db, "send", str(issue), "--list", "other")
    assert wrong.returncode == 2  # a usage error
    assert "--list: other but" in wrong.stderr and "says list: fm-brief" in wrong.stderr
    assert campaigns(db) == []
    sent = run_cli(db, "send", str(issue))  # no --list
    assert sent.returncode == 0, sent.stderr
    assert "2 readers of fm-brief queued" in sent.stdout
    assert len(outbox(db)) == 2


def test_no_list_anywhere_is_one_clear_line(db: Database) -> None:
    seed_list(db.sessions, 1)
    r = run_cli(db, "send", str(ISSUE))  # a brief text file: no front matter
    assert r.returncode == 2  # a usage error
    assert (
        f"no list to send to: pass --list SLUG or put 'list: SLUG' in {ISSUE}'s front matter"
        in r.stderr
    )
