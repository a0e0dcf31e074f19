"""Exit codes through the real entry point (issue #13 item 13): a send that ends paused used
to exit 0 like a finished one, so cron never alerted. `mailer send`, `mailer worker --once`
and `mailer campaigns resume` now exit with how the campaign ended (README: Exit codes):
0 done, 1 error or failed rows, 2 usage, 3 paused, 4 expired, 5 cancelled, 6 stopped."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from mailer.sending import campaigns as camp
from mailer.sending import publish
from mailer.sending.models import Campaign
from tests.conftest import Database
from tests.delivery_helpers import ISSUE, make_campaign, seed_list
from tests.support.ses_server import SesServer

READERS = 12


def _env(db: Database, ses: SesServer | None, **extra: str) -> dict[str, str]:
    if ses is None:
        return db.env(COLUMNS="200", **extra)
    return db.env(
        COLUMNS="200",
        MAILER_TRANSPORT="ses",
        MAILER_SES_ENDPOINT_URL=ses.url,
        MAILER_SES_REGION="us-east-1",
        MAILER_SEND_CONCURRENCY="2",
        MAILER_BATCH_SIZE="4",
        **extra,
    )


def _mailer(
    db: Database, ses: SesServer | None, *args: str, **extra: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mailer", *args],
        env=_env(db, ses, **extra),
        capture_output=True,
        text=True,
        timeout=180,
        cwd=db.tmp,
    )


def _status(db: Database) -> list[str]:
    with db.sessions() as s:
        return list(s.scalars(select(Campaign.status).order_by(Campaign.id)))


def _errors(stderr: str) -> list[str]:
    """What stderr says went wrong: `mailer: ...` lines and tracebacks (not the editor's
    warnings about the fixture issue, nor the engine's log of a pause)."""
    return [line for line in stderr.splitlines() if line.startswith(("mailer:", "Traceback"))]


@pytest.mark.parametrize(
    ("case", "code", "status"),
    [
        ("done", 0, "done"),
        ("rejected address", 1, "done"),
        ("sending paused", 3, "paused"),
    ],
)
def test_send_exits_with_how_the_campaign_ended(
    db: Database,
    ses_server: SesServer,
    aws_env: dict[str, str],
    case: str,
    code: int,
    status: str,
) -> None:
    _, emails = seed_list(db.sessions, READERS)
    switches: dict[str, Any] = {"max_send_rate": 0}
    if case == "rejected address":
        switches["reject_addresses"] = [emails[3]]
    if case == "sending paused":
        switches["sending_paused"] = True
    ses_server.configure(**switches)
    r = _mailer(db, ses_server, "send", str(ISSUE), "--list", "brief")
    assert r.returncode == code, r.stderr
    assert _errors(r.stderr) == []  # an ending is not an error: the report tells it
    assert _status(db) == [status]
    assert f"campaign 1: {READERS} readers of brief queued" in r.stdout
    assert re.search(rf"\bstatus\s+│\s+{status}\b", r.stdout), r.stdout  # the summary table
    if status == "paused":
        assert "SendingPausedException" in r.stdout


def test_a_send_that_starts_too_late_exits_4(db: Database) -> None:
    seed_list(db.sessions, 3)
    # started 3 minutes ago (inside --at's 5-minute grace; an older time is refused),
    # expired 2 minutes ago
    at = (datetime.now(UTC) - timedelta(minutes=3)).isoformat(timespec="seconds")
    r = _mailer(
        db, None, "send", str(ISSUE), "--list", "brief", "--at", at, "--expires-after", "1m",
    )  # fmt: skip
    assert r.returncode == 4, r.stderr
    assert _status(db) == ["expired"]
    assert not (db.tmp / "outbox").exists() or not any((db.tmp / "outbox").rglob("*.eml"))


def test_refusals_and_usage(db: Database) -> None:
    seed_list(db.sessions, 2)
    assert _mailer(db, None, "send", str(ISSUE), "--list", "brief").returncode == 0
    again = _mailer(db, None, "send", str(ISSUE), "--list", "brief")
    assert again.returncode == 1
    assert _errors(again.stderr) == [
        "mailer: error: this issue was already sent to brief as campaign 1 (done); "
        "pass --force to send it again"
    ]
    usage = _mailer(db, None, "send", str(ISSUE))  # no --list
    assert usage.returncode == 2 and "--list" in usage.stderr
    # a scheduled send is a success: the worker sends it later
    later = _mailer(db, None, "send", str(ISSUE), "--list", "brief", "--force", "--at", "+2h")
    assert later.returncode == 0, later.stderr
    assert "`mailer worker` sends it then" in later.stdout


def test_worker_once_exits_with_the_most_urgent_ending(
    db: Database, ses_server: SesServer, aws_env: dict[str, str]
) -> None:
    """Two due campaigns: the account refuses the first one's first call (paused), the
    second goes out (done): exit 3. Run again with nothing due: exit 0."""
    seed_list(db.sessions, READERS)
    settings = db.settings()
    first, _, _ = make_campaign(db.sessions, settings)
    second, _, _ = make_campaign(db.sessions, settings, force=True)
    ses_server.configure(max_send_rate=0)
    ses_server.fail_next("SendingPausedException", status=400, operation="SendEmail")
    r = _mailer(db, ses_server, "worker", "--once")
    assert r.returncode == 3, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith(f"campaign {first}: paused, sent ")
    assert "SendingPausedException" in lines[0]
    assert lines[1] == f"campaign {second}: done, sent {READERS}, failed 0, skipped 0"
    assert _status(db) == ["paused", "done"]
    idle = _mailer(db, ses_server, "worker", "--once")
    assert (idle.returncode, idle.stdout) == (
        0,
        "nothing due: no campaign is sending or scheduled before now\n",
    )
    # resumed and finished by `campaigns resume`: done, exit 0
    done = _mailer(db, ses_server, "campaigns", "resume", str(first))
    assert done.returncode == 0, done.stderr
    assert _status(db) == ["done", "done"]


@pytest.mark.parametrize(
    ("action", "code", "status"), [("sigterm", 6, "sending"), ("cancel", 5, "cancelled")]
)
def test_a_send_stopped_midway_says_so(
    db: Database,
    ses_server: SesServer,
    aws_env: dict[str, str],
    action: str,
    code: int,
    status: str,
) -> None:
    """SIGTERM: the batch in flight is finished, the rest stays queued, exit 6. An editor's
    cancel while it sends: exit 5."""
    seed_list(db.sessions, 200)
    ses_server.configure(max_send_rate=0, latency=0.05)
    proc = subprocess.Popen(
        [sys.executable, "-m", "mailer", "send", str(ISSUE), "--list", "brief"],
        env=_env(db, ses_server),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while len(ses_server.messages()) < 8:  # sending: the SIGTERM handler is in place
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr
        time.sleep(0.02)
    if action == "sigterm":
        proc.send_signal(signal.SIGTERM)
    else:
        publish.cancel(db.sessions, 1)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert _errors(err) == []
    assert _status(db) == [status]
    with db.sessions() as s:
        counts = camp.report(s, 1).counts
    assert counts["sent"] == len(ses_server.messages()) < 200
    left = "queued" if action == "sigterm" else "skipped"
    assert counts[left] == 200 - counts["sent"], counts
