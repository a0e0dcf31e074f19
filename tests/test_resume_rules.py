"""Resuming a paused campaign: one rule for every entrance (the use case decides).

* a campaign paused before its scheduled time goes back to ``scheduled`` and waits for it
  (resuming used to make it due at once).

SQLite and PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta

from mailer.issue.files import parse_issue_file
from mailer.sending import campaigns, lifecycle, publish
from mailer.sending.models import Campaign, CampaignStatus
from mailer.sending.schedule import Schedule
from subscribers import store
from subscribers.models import utcnow
from tests.conftest import Database
from tests.delivery_helpers import ISSUE, seed_list


def _create(db: Database, schedule: Schedule) -> int:
    issue = parse_issue_file(ISSUE)
    with db.sessions() as s:
        mlist = store.get_list(s, "brief")
    rendered = publish.render_for(db.settings(), mlist, issue)
    return publish.create(db.sessions, mlist, issue, rendered, schedule).campaign_id


def _status(db: Database, campaign_id: int) -> str:
    with db.sessions() as s:
        campaign = s.get(Campaign, campaign_id)
        assert campaign is not None
        return campaign.status


# -- paused before its time ----------------------------------------------------------------


def test_a_campaign_paused_before_its_time_is_scheduled_again_on_resume(db: Database) -> None:
    seed_list(db.sessions, 2)
    at = utcnow() + timedelta(days=1)
    cid = _create(db, Schedule(at=at))
    assert publish.pause(db.sessions, cid, "wrong link").status == "paused"
    resumed = publish.resume(db.sessions, cid)
    assert resumed == publish.StateChange(cid, "scheduled")
    with db.sessions() as s:
        assert cid not in campaigns.runnable(s, utcnow())  # not due before its time
        assert cid in campaigns.runnable(s, at + timedelta(minutes=1))
        campaign = s.get(Campaign, cid)
        assert campaign is not None and campaign.pause_reason is None


def test_a_campaign_paused_after_its_time_sends_on_resume(db: Database) -> None:
    """The clock is injected: the same campaign resumed after its time is due at once."""
    seed_list(db.sessions, 2)
    at = utcnow() + timedelta(days=1)
    cid = _create(db, Schedule(at=at))
    publish.pause(db.sessions, cid, "hold")
    with db.sessions.begin() as s:
        later = lifecycle.resume(s, cid, now=at + timedelta(seconds=1))
        assert later.status == CampaignStatus.SENDING


def test_the_cli_resume_of_a_campaign_before_its_time_sends_nothing(db: Database) -> None:
    seed_list(db.sessions, 2)
    cid = _create(db, Schedule(at=utcnow() + timedelta(days=1)))
    publish.pause(db.sessions, cid, "wrong link")
    r = subprocess.run(
        [sys.executable, "-m", "mailer", "campaigns", "resume", str(cid)],
        env=db.env(COLUMNS="400"),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=db.tmp,
    )
    assert r.returncode == 0, r.stderr
    assert "scheduled" in r.stdout
    assert _status(db, cid) == "scheduled"
    assert not (db.tmp / "outbox" / str(cid)).exists()  # nobody was mailed
