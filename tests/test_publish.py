"""The editor's use cases (mailer.sending.publish) called as the CLI, an API or a desk call
them: objects in, small results out; every store test on SQLite and PostgreSQL."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from mailer.cli.exit_codes import ExitCode, of_outcome, of_outcomes
from mailer.config import Settings
from mailer.errors import ConflictError, InputError
from mailer.issue.files import parse_issue_file
from mailer.render.compiler import RenderedIssue
from mailer.sending import publish
from mailer.sending.models import Campaign, Delivery
from mailer.sending.publish import Ending, Outcome
from mailer.sending.schedule import Schedule
from mailer.transports.outbox import OutboxTransport
from subscribers import store
from subscribers.models import MailingList
from tests.conftest import Database
from tests.delivery_helpers import ISSUE, seed_list

FIXTURES = Path(__file__).parent / "fixtures" / "issues"
NOW = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)


def _list(db: Database, slug: str = "brief") -> MailingList:
    with db.sessions() as s:
        return store.get_list(s, slug)


def _rendered(db: Database, mlist: MailingList) -> RenderedIssue:
    return publish.render_for(db.settings(), mlist, parse_issue_file(ISSUE))


# -- issues, no store ------------------------------------------------------------------------


def test_check_renders_and_reports_sizes_and_warnings() -> None:
    settings = Settings(base_url="https://dispatch.example")
    issue = parse_issue_file(FIXTURES / "brief-tricky.txt")
    checked = publish.check(settings, issue, newsletter="The Brief", list_slug="brief")
    assert checked.key == issue.key() and checked.list_slug == "brief"
    assert checked.html_bytes == len(checked.rendered.html.encode()) > 0
    assert checked.text_bytes == len(checked.rendered.text.encode()) > 0
    assert checked.warnings and checked.warnings == checked.rendered.warnings


def test_preview_fills_a_sample_reader_into_a_real_message() -> None:
    settings = Settings(base_url="https://dispatch.example")
    issue = parse_issue_file(ISSUE)
    shown = publish.preview(settings, issue, newsletter="The Brief", to="ed@example.org")
    for body in (shown.html, shown.text):
        assert "%%" not in body and "Sample Reader" in body
        assert "https://dispatch.example/unsubscribe/SAMPLE-TOKEN" in body
    msg = email.message_from_bytes(shown.eml, policy=email.policy.default)
    assert msg["To"] == "ed@example.org"
    assert msg["From"] == "The Brief <news@dispatch.example>"
    assert msg["Subject"] == issue.subject
    assert "SAMPLE-TOKEN" not in shown.archive_html


@pytest.mark.parametrize(
    ("at", "expires", "want_at", "want_expires"),
    [
        (None, None, None, None),
        ("+2h", "6h", NOW + timedelta(hours=2), NOW + timedelta(hours=8)),
        ("2026-11-29T06:00+08:00", None, datetime(2026, 11, 28, 22, 0, tzinfo=UTC), None),
        (None, "90m", None, NOW + timedelta(minutes=90)),
    ],
)
def test_schedule_is_read_once_for_every_entrance(
    at: str | None, expires: str | None, want_at: datetime, want_expires: datetime
) -> None:
    schedule = Schedule.parse(at, expires, force=True, now=NOW)
    assert (schedule.at, schedule.expires_at, schedule.force) == (want_at, want_expires, True)
    assert schedule.is_due(NOW) is (want_at is None)


@pytest.mark.parametrize(("at", "expires"), [("tomorrow", None), (None, "soon")])
def test_a_bad_schedule_is_input_error_naming_the_option(
    at: str | None, expires: str | None
) -> None:
    with pytest.raises(InputError, match="--at" if at else "--expires-after"):
        Schedule.parse(at, expires, now=NOW)


# -- sends that are no campaign --------------------------------------------------------------


def test_dry_run_counts_active_unsuppressed_readers_and_writes_nothing(db: Database) -> None:
    _, emails = seed_list(db.sessions, 5)
    with db.sessions.begin() as s:
        store.suppress(s, emails[0], "complaint")
    mlist = _list(db)
    rendered = _rendered(db, mlist)
    counted = publish.dry_run(db.sessions, mlist, rendered)
    assert (counted.list_slug, counted.recipients) == ("brief", 4)
    assert counted.subject == rendered.subject
    assert counted.html_bytes == len(rendered.html.encode())
    with db.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Campaign)) == 0


def test_send_test_sends_the_real_issue_and_leaves_the_ledger_alone(db: Database) -> None:
    seed_list(db.sessions, 3)
    mlist = _list(db)
    rendered = _rendered(db, mlist)
    outbox = db.tmp / "outbox"
    sent = publish.send_test(
        db.settings(), OutboxTransport(outbox), mlist, rendered, ["Ed@Example.org", "x@example.net"]
    )
    assert [(one.to, one.ok) for one in sent] == [("ed@example.org", True), ("x@example.net", True)]
    files = sorted(outbox.rglob("*.eml"))
    assert len(files) == 2
    msg = email.message_from_bytes(files[0].read_bytes(), policy=email.policy.default)
    assert msg["Subject"] == "[TEST] " + rendered.subject
    with db.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Campaign)) == 0
        assert s.scalar(select(func.count()).select_from(Delivery)) == 0


# -- campaigns -------------------------------------------------------------------------------


def test_create_then_run_sends_everyone_once(db: Database) -> None:
    _, emails = seed_list(db.sessions, 7)
    mlist = _list(db)
    rendered = _rendered(db, mlist)
    created = publish.create(db.sessions, mlist, parse_issue_file(ISSUE), rendered)
    assert (created.list_slug, created.enqueued, created.due) == ("brief", 7, True)
    settings = db.settings()
    transport = OutboxTransport(settings.outbox_dir)
    outcome = publish.run(settings, db.sessions, transport, created.campaign_id)
    assert (outcome.status, outcome.sent, outcome.failed, outcome.left) == ("done", 7, 0, 0)
    assert outcome.ending is Ending.DONE and of_outcome(outcome) is ExitCode.OK
    files = (settings.outbox_dir / str(created.campaign_id)).glob("*.eml")
    to = sorted(email.message_from_bytes(f.read_bytes())["To"] for f in files)
    assert to == emails


def test_a_scheduled_campaign_is_not_due(db: Database) -> None:
    seed_list(db.sessions, 2)
    mlist = _list(db)
    later = Schedule(at=datetime.now(UTC) + timedelta(hours=1))
    created = publish.create(
        db.sessions, mlist, parse_issue_file(ISSUE), _rendered(db, mlist), later
    )
    assert not created.due and created.enqueued == 2


def test_one_live_campaign_per_issue_and_list(db: Database) -> None:
    """Sequential sends: a live campaign refuses the next; cancelled and expired ones do not;
    --force takes the next generation, and a cancelled generation can be taken again."""
    seed_list(db.sessions, 3)
    with db.sessions.begin() as s:
        store.create_list(s, "weekly", name="Weekly", from_address="w@example.org")
    mlist = _list(db)
    issue = parse_issue_file(ISSUE)
    rendered = _rendered(db, mlist)

    def send(force: bool = False) -> int:
        created = publish.create(db.sessions, mlist, issue, rendered, Schedule(force=force))
        return created.campaign_id

    first = send()
    with pytest.raises(ConflictError) as refused:
        send()
    assert str(refused.value) == (
        f"this issue was already sent to brief as campaign {first} (scheduled); "
        "pass --force to send it again"
    )
    # another list is another audience
    other = _list(db, "weekly")
    publish.create(db.sessions, other, issue, publish.render_for(db.settings(), other, issue))

    assert publish.cancel(db.sessions, first).status == "cancelled"
    second = send()  # a cancelled campaign holds nothing
    with db.sessions.begin() as s:
        s.execute(update(Campaign).where(Campaign.id == second).values(status="expired"))
    third = send()  # nor an expired one
    forced = send(force=True)
    with pytest.raises(ConflictError, match=f"as campaign {forced} "):
        send()
    publish.cancel(db.sessions, forced)
    send(force=True)
    with db.sessions() as s:
        mine = s.execute(
            select(Campaign.id, Campaign.generation, Campaign.status)
            .where(Campaign.list_id == mlist.id)
            .order_by(Campaign.id)
        ).all()
    assert [(g, st) for _, g, st in mine] == [
        (0, "cancelled"),
        (0, "expired"),
        (0, "scheduled"),
        (1, "cancelled"),
        (1, "scheduled"),
    ]
    assert mine[2][0] == third


def test_editor_changes_return_what_they_did(db: Database) -> None:
    seed_list(db.sessions, 4)
    mlist = _list(db)
    created = publish.create(db.sessions, mlist, parse_issue_file(ISSUE), _rendered(db, mlist))
    cid = created.campaign_id
    assert publish.pause(db.sessions, cid, "wrong link") == publish.StateChange(cid, "paused")
    assert publish.resume(db.sessions, cid, ops=False) == publish.StateChange(cid, "sending")
    with db.sessions.begin() as s:
        s.execute(
            update(Delivery)
            .where(Delivery.campaign_id == cid, Delivery.id.in_(select(func.min(Delivery.id))))
            .values(status="failed", error="boom")
        )
    assert publish.retry_failed(db.sessions, cid) == publish.StateChange(cid, "sending", 1)
    assert publish.cancel(db.sessions, cid) == publish.StateChange(cid, "cancelled", 4)
    with pytest.raises(ConflictError, match="already cancelled"):
        publish.cancel(db.sessions, cid)


# -- how a run ended -------------------------------------------------------------------------


def _outcome(status: str, failed_rows: int = 0, left: int = 0) -> Outcome:
    return Outcome(1, status, None, 0, 0, 0, failed_rows=failed_rows, left=left)


@pytest.mark.parametrize(
    ("status", "failed_rows", "ending", "code"),
    [
        ("done", 0, Ending.DONE, 0),
        ("done", 2, Ending.FAILED, 1),
        ("paused", 0, Ending.PAUSED, 3),
        ("expired", 0, Ending.EXPIRED, 4),
        ("cancelled", 0, Ending.CANCELLED, 5),
        ("sending", 0, Ending.STOPPED, 6),
    ],
)
def test_endings_and_their_exit_codes(
    status: str, failed_rows: int, ending: Ending, code: int
) -> None:
    outcome = _outcome(status, failed_rows)
    assert outcome.ending is ending
    assert of_outcome(outcome) == code


def test_a_worker_exits_with_the_most_urgent_ending() -> None:
    done, paused, failed = _outcome("done"), _outcome("paused"), _outcome("done", 1)
    assert of_outcomes([]) is ExitCode.OK
    assert of_outcomes([done, failed]) is ExitCode.ERROR
    assert of_outcomes([done, failed, paused]) is ExitCode.PAUSED
    assert of_outcomes([_outcome("cancelled"), _outcome("expired")]) is ExitCode.EXPIRED
