"""kill -9 a sending process mid-campaign, resume, and check from the SES server's side:
every active reader got the issue, no suppressed one did, and duplicates stay within the
in-flight count the campaign reports."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from mailer.sending import campaigns as camp
from subscribers import store
from tests.conftest import Database
from tests.delivery_helpers import ISSUE, seed_list
from tests.support.ses_server import SesServerProcess

READERS = 600


@pytest.fixture
def ses_proc(aws_env: dict[str, str]) -> Iterator[SesServerProcess]:
    with SesServerProcess(latency=0.004, max_send_rate=0) as proc:
        yield proc


def sender_env(db: Database, ses: SesServerProcess) -> dict[str, str]:
    return db.env(
        MAILER_TRANSPORT="ses",
        MAILER_SES_ENDPOINT_URL=ses.url,
        MAILER_SES_REGION="us-east-1",
        MAILER_SEND_CONCURRENCY="4",
        MAILER_BATCH_SIZE="25",
    )


def accepted(ses: SesServerProcess) -> int:
    assert ses.control is not None
    return sum(ses.control.recipients().values())


def kill_after(proc: subprocess.Popen[bytes], ses: SesServerProcess, count: int) -> None:
    deadline = time.monotonic() + 60
    while accepted(ses) < count:
        if proc.poll() is not None:
            pytest.fail(f"sender exited before {count} messages (rc={proc.returncode})")
        if time.monotonic() > deadline:
            pytest.fail("sender made no progress")
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.mark.parametrize("kill_points", [(5,), (250,), (40, 400)])
def test_kill_and_resume(
    db: Database, ses_proc: SesServerProcess, kill_points: tuple[int, ...]
) -> None:
    _, emails = seed_list(db.sessions, READERS)
    suppressed = set(emails[:10])
    with db.sessions.begin() as s:
        for e in suppressed:
            store.suppress(s, e, "complaint")
    env = sender_env(db, ses_proc)
    cmd = [sys.executable, "-m", "mailer"]
    first = subprocess.Popen(
        [*cmd, "send", str(ISSUE), "--list", "brief"], env=env, stdout=subprocess.DEVNULL
    )
    kill_after(first, ses_proc, kill_points[0])
    with db.sessions() as s:
        cid = camp.latest(s, 1)[0].id
    for point in kill_points[1:]:  # resume, and kill the resumer too
        again = subprocess.Popen(
            [*cmd, "campaigns", "resume", str(cid)], env=env, stdout=subprocess.DEVNULL
        )
        kill_after(again, ses_proc, point)
    done = subprocess.run(
        [*cmd, "campaigns", "resume", str(cid)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert ses_proc.control is not None
    got = ses_proc.control.recipients()
    with db.sessions() as s:
        rep = camp.report(s, cid)
    active = set(emails) - suppressed
    assert set(got) == active  # lost = 0, and no suppressed reader got it
    duplicates = sum(n - 1 for n in got.values())
    assert duplicates <= rep.campaign.reclaimed
    assert rep.campaign.status == "done"
    assert rep.counts == {"sent": len(active)}
    assert "in flight at a crash (re-claimed)" in done.stdout
