"""Resuming a paused campaign: one rule for every entrance (the use case decides).

* a campaign paused before its scheduled time goes back to ``scheduled`` and waits for it
  (resuming used to make it due at once);
* a reputation-guard pause is forced by the ops role only: an editor's token is refused
  with 403 on the API as on the desk, and the campaign stays paused.

SQLite and PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta

import pytest

from mailer.errors import ForbiddenError
from mailer.issue.files import parse_issue_file
from mailer.sending import campaigns, lifecycle, publish
from mailer.sending.guard import REASON_PREFIX
from mailer.sending.models import Campaign, CampaignStatus
from mailer.sending.schedule import Schedule
from subscribers import store
from subscribers.models import utcnow
from tests.conftest import Database
from tests.delivery_helpers import ISSUE, seed_list
from tests.desk_support import Desk, form_token


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
    resumed = publish.resume(db.sessions, cid, ops=False)
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


# -- a guard pause needs ops, whatever the entrance ----------------------------------------


def _guard_paused(desk: Desk) -> int:
    cid = _create(desk.db, Schedule())
    with desk.db.sessions.begin() as s:
        campaign = s.get(Campaign, cid)
        assert campaign is not None
        campaign.status = CampaignStatus.PAUSED.value
        campaign.pause_reason = REASON_PREFIX + " bounce rate 9% over 5%"
    return cid


def test_the_api_refuses_an_editor_forcing_a_guard_pause(desk: Desk) -> None:
    cid = _guard_paused(desk)
    c = desk.client()
    url = f"/api/v1/campaigns/{cid}/resume"
    editor = {"Authorization": f"Bearer {desk.editor_token}"}
    r = c.post(url, json={"force": True}, headers=editor)
    assert r.status_code == 403, r.text
    assert "needs an ops token" in r.json()["error"]
    assert _status(desk.db, cid) == "paused"
    ops = {"Authorization": f"Bearer {desk.ops_token}"}
    r = c.post(url, json={"force": True}, headers=ops)
    assert r.status_code == 200 and r.json()["status"] == "sending", r.text


def test_the_desk_refuses_an_editor_forcing_a_guard_pause_through_the_use_case(
    desk: Desk,
) -> None:
    cid = _guard_paused(desk)
    ops = desk.signed_in(desk.ops_token)
    page = ops.get(f"/desk/campaigns/{cid}").text
    token = form_token(page, f"/desk/campaigns/{cid}/resume")
    # an ops session, but the use case is asked as an editor: the rule is not the page's
    with pytest.raises(ForbiddenError, match="needs an ops token"):
        publish.resume(desk.db.sessions, cid, force=True, ops=False)
    r = ops.post(f"/desk/campaigns/{cid}/resume", data={"csrf_token": token, "force": "1"})
    assert r.status_code == 303
    assert _status(desk.db, cid) == "sending"


def test_an_editors_plain_resume_of_an_ordinary_pause_needs_no_ops(desk: Desk) -> None:
    cid = _create(desk.db, Schedule())
    publish.pause(desk.db.sessions, cid, "typo")
    r = desk.client().post(
        f"/api/v1/campaigns/{cid}/resume",
        json={"force": True},  # force is moot for a pause the guard did not make
        headers={"Authorization": f"Bearer {desk.editor_token}"},
    )
    assert r.status_code == 200 and r.json()["status"] == "sending", r.text
