"""`mailer suppressions sync` against the SES-v2 test server, and `mailer feedback ingest`."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from mailer.feedback.models import FeedbackEvent
from mailer.feedback.suppression_sync import sync_suppressions
from subscribers import store
from tests.cli_support import InProcess
from tests.conftest import Database
from tests.plugins.aws import REGION
from tests.support.ses_server import SesServer

FIXTURES = Path(__file__).parent / "fixtures" / "ses_events"


SQLITE_ONLY = pytest.mark.parametrize("db", ["sqlite"], indirect=True)


def remote(client: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    token = None
    while True:
        page = client.list_suppressed_destinations(**({"NextToken": token} if token else {}))
        for item in page["SuppressedDestinationSummaries"]:
            out[item["EmailAddress"]] = item["Reason"]
        token = page.get("NextToken")
        if not token:
            return out


def local(db: Database) -> dict[str, str]:
    with db.sessions() as s:
        return {r.email: r.reason for r in store.list_suppressions(s, limit=1000) if r.email}


def test_sync_pulls_and_pushes_once(
    db: Database, ses_server: SesServer, sesv2_client: Callable[..., Any]
) -> None:
    client = sesv2_client(ses_server.url)
    ses_server.suppress("old-bounce@example.net", "BOUNCE")
    ses_server.suppress("angry@example.net", "COMPLAINT")
    ses_server.suppress("both@example.net", "BOUNCE")
    with db.sessions.begin() as s:
        store.suppress(s, "hard@example.net", "hard_bounce")
        store.suppress(s, "soft@example.net", "soft_bounce_limit")
        store.suppress(s, "complained@example.net", "complaint")
        store.suppress(s, "editor-said-so@example.net", "manual")
        store.suppress(s, "both@example.net", "hard_bounce")

    report = sync_suppressions(client, db.sessions, page_size=2)
    assert report.ses_listed == 3
    assert report.pulled == ["angry@example.net", "old-bounce@example.net"]
    assert report.pushed == ["complained@example.net", "hard@example.net", "soft@example.net"]
    assert local(db)["angry@example.net"] == "ses_account"
    with db.sessions() as s:
        row = store.find_suppression(s, "angry@example.net")
        assert row is not None and row.detail == "SES account suppression list: COMPLAINT"
    assert remote(client) == {
        "old-bounce@example.net": "BOUNCE",
        "angry@example.net": "COMPLAINT",
        "both@example.net": "BOUNCE",
        "hard@example.net": "BOUNCE",
        "soft@example.net": "BOUNCE",
        "complained@example.net": "COMPLAINT",
    }, "manual suppressions stay local"

    again = sync_suppressions(client, db.sessions, page_size=2)
    assert (again.pulled, again.pushed) == ([], [])


def test_dry_run_changes_nothing(
    db: Database, ses_server: SesServer, sesv2_client: Callable[..., Any]
) -> None:
    client = sesv2_client(ses_server.url)
    ses_server.suppress("angry@example.net", "COMPLAINT")
    with db.sessions.begin() as s:
        store.suppress(s, "hard@example.net", "hard_bounce")
    report = sync_suppressions(client, db.sessions, dry_run=True)
    assert (report.pulled, report.pushed) == (["angry@example.net"], ["hard@example.net"])
    assert local(db) == {"hard@example.net": "hard_bounce"}
    assert remote(client) == {"angry@example.net": "COMPLAINT"}


@SQLITE_ONLY
def test_cli_sync(
    db: Database, ses_server: SesServer, aws_env: dict[str, str], mailer_in_process: InProcess
) -> None:
    ses_server.suppress("angry@example.net", "COMPLAINT")
    env = {
        **aws_env,
        "MAILER_SES_ENDPOINT_URL": ses_server.url,
        "MAILER_SES_REGION": REGION,
    }
    first = mailer_in_process(db, "suppressions", "sync", **env)
    assert first.returncode == 0, first.stderr
    assert "pulled 1 new into ours, pushed 0" in first.stdout
    second = mailer_in_process(db, "suppressions", "sync", **env)
    assert "pulled 0 new into ours, pushed 0" in second.stdout


@SQLITE_ONLY
def test_cli_sync_unreachable_ses_is_one_line(
    db: Database, aws_env: dict[str, str], mailer_in_process: InProcess
) -> None:
    env = {**aws_env, "MAILER_SES_ENDPOINT_URL": "http://127.0.0.1:9", "MAILER_SES_REGION": REGION}
    result = mailer_in_process(db, "suppressions", "sync", **env)
    assert result.returncode == 1
    assert result.stderr.startswith("mailer: error: SES ListSuppressedDestinations failed")
    assert "Traceback" not in result.stderr


@SQLITE_ONLY
def test_cli_ingest_files_of_every_shape(
    db: Database, tmp_path: Path, mailer_in_process: InProcess
) -> None:
    with db.sessions.begin() as s:
        mlist = store.create_list(s, "brief", name="Brief", from_address="b@newsletter.example")
        store.subscribe(s, "reader@example.net", mlist, confirmed=True)
    bounce = json.loads((FIXTURES / "event_bounce.json").read_text())
    complaint = (FIXTURES / "notification_complaint_feedback.json").read_text()
    delivery = json.loads((FIXTURES / "event_delivery.json").read_text())
    single = tmp_path / "bounce.json"
    single.write_text(json.dumps(bounce))
    array = tmp_path / "array.json"
    envelope = {"Type": "Notification", "MessageId": "sns-9", "Message": complaint}
    array.write_text(json.dumps([envelope, delivery]))
    lines = tmp_path / "events.jsonl"
    open_event = (FIXTURES / "event_open.json").read_text().replace("\n", "")
    lines.write_text(
        open_event
        + "\nSuccessfully validated SNS topic for Amazon SES event publishing.\n"
        + '{"eventType": "Bounce"}\n'
    )
    result = mailer_in_process(db, "feedback", "ingest", str(single), str(array), str(lines))
    assert result.returncode == 1
    assert "applied 4, already seen 0, setup notices 1, failed 1" in result.stdout
    assert f"{lines}:3: SES event has no 'mail' object" in result.stderr
    with db.sessions() as s:
        assert s.scalar(select(func.count()).select_from(FeedbackEvent)) == 4
        row = store.find_suppression(s, "reader@example.net")
        assert row is not None and row.reason == "hard_bounce"

    again = mailer_in_process(db, "feedback", "ingest", str(single), str(array))
    assert again.returncode == 0
    assert "applied 0, already seen 3" in again.stdout


@SQLITE_ONLY
def test_cli_ingest_unreadable_file(
    db: Database, tmp_path: Path, mailer_in_process: InProcess
) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    result = mailer_in_process(db, "feedback", "ingest", str(broken))
    assert result.returncode == 1
    assert f"{broken}: SES payload is not JSON" in result.stderr
