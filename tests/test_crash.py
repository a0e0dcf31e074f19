"""kill -9 a sending process mid-campaign, resume, and check from the SES server's side:
every active reader got the issue, no suppressed one did, and duplicates stay within the
in-flight count the campaign reports. Then the other way round: the sender lives and its
database connections are killed (pg_terminate_backend); it reconnects and finishes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, event, make_url, text

from mailer.sending import campaigns as camp
from mailer.sending.engine import DB_TRIES, RECONNECT_FIRST_WAIT
from mailer.sending.engine import Engine as SendEngine
from mailer.transports import make_transport
from subscribers import store
from subscribers.db import make_engine, session_factory
from tests.conftest import Database
from tests.delivery_helpers import ISSUE, make_campaign, seed_list
from tests.support.ses_server import SesServer, SesServerProcess

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


# -- the database goes away under a live sender -------------------------------------------

CUT_READERS = 300
CUT_BATCH = 25


class Cutter:
    """Kills every connection of one application (pg_terminate_backend, waiting until each
    is gone) when the sender's Nth claim or Nth write of sent rows begins: the statement
    then runs on a dead connection."""

    def __init__(self, admin: Engine, app: str, marker: str, at: set[int]) -> None:
        self.admin, self.app, self.marker, self.at = admin, app, marker, at
        self.seen = 0
        self.killed = 0

    def __call__(self, conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if self.marker not in statement:
            return
        self.seen += 1
        if self.seen in self.at:
            with self.admin.connect() as c:
                self.killed += int(
                    c.execute(
                        text(
                            "SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity"
                            " WHERE application_name = :app"
                        ),
                        {"app": self.app},
                    ).scalar_one()
                )
                c.commit()


@pytest.mark.parametrize(
    ("where", "marker", "at"),
    [
        # a claim's transaction dies: nothing was claimed, the batches in flight are recorded
        ("claim", "WITH claimed AS", {3, 7}),
        # a sent batch's write dies DB_TRIES times in a row: its rows stay `sending`, and are
        # claimed again after the reconnect (sent twice, and counted)
        ("record", "FROM unnest(", {4, 5, 6}),
    ],
)
def test_engine_reconnects_when_its_connections_are_killed(
    db: Database,
    ses_server: SesServer,
    aws_env: dict[str, str],
    where: str,
    marker: str,
    at: set[int],
) -> None:
    if db.backend != "postgresql":
        pytest.skip("pg_terminate_backend is PostgreSQL's")
    _, emails = seed_list(db.sessions, CUT_READERS)
    settings = db.settings(
        transport="ses",
        ses_endpoint_url=ses_server.url,
        ses_region="us-east-1",
        send_concurrency=4,
        batch_size=CUT_BATCH,
    )
    cid, _, _ = make_campaign(db.sessions, settings)
    ses_server.configure(max_send_rate=0)
    app = f"brief-sender-{uuid.uuid4().hex[:8]}"
    sender_db = make_engine(db.url, connect_args={"application_name": app})
    cutter = Cutter(db.engine, app, marker, at)
    event.listen(sender_db, "before_cursor_execute", cutter)
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        threading.Event().wait(min(seconds, 0.05))

    transport = make_transport(settings)
    try:
        with SendEngine(settings, session_factory(sender_db), transport, sleep=sleep) as engine:
            progress = engine.run(cid)
    finally:
        transport.close()
        sender_db.dispose()
    assert cutter.killed >= len(at)  # the connections really were cut
    assert RECONNECT_FIRST_WAIT in waits  # the run waited and went on, it did not raise
    assert progress.status == "done"
    got = ses_server.recipients()
    assert set(got) == set(emails)
    with db.sessions() as s:
        rep = camp.report(s, cid)
    assert rep.campaign.status == "done"
    assert rep.counts == {"sent": CUT_READERS}
    duplicates = sum(n - 1 for n in got.values())
    assert duplicates <= rep.campaign.reclaimed
    if where == "claim":
        assert duplicates == 0  # the claim died before anything was claimed
    else:
        assert duplicates == CUT_BATCH  # the batch whose results could not be written
        assert DB_TRIES > 1 and 0.2 in waits  # the write was retried first


def test_worker_survives_cut_connections(db: Database, aws_env: dict[str, str]) -> None:
    """`mailer worker` while its busy connections are killed over and over: it reconnects
    (and says so), finishes the campaign and exits 0; every reader once, except re-claims."""
    if db.backend != "postgresql":
        pytest.skip("pg_terminate_backend is PostgreSQL's")
    _, emails = seed_list(db.sessions, READERS)
    cid, _, _ = make_campaign(db.sessions, db.settings())
    app = f"brief-worker-{uuid.uuid4().hex[:8]}"
    url = make_url(db.url).update_query_dict({"application_name": app})
    kill_busy = text(
        "SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity"
        " WHERE application_name = :app AND state <> 'idle'"
    )
    said: list[str] = []
    # slow enough (4 in flight, 30 ms each: ~5 s) that the kills land mid-campaign
    with SesServerProcess(latency=0.03, max_send_rate=0) as ses, open(db.tmp / "out", "w") as out:
        env = sender_env(db, ses)
        env["MAILER_DATABASE_URL"] = url.render_as_string(hide_password=False)
        worker = subprocess.Popen(
            [sys.executable, "-m", "mailer", "worker", "--once"],
            env=env,
            stdout=out,
            stderr=subprocess.PIPE,
            text=True,
        )
        listener = threading.Thread(target=lambda: said.extend(worker.stderr or []), daemon=True)
        listener.start()
        deadline = time.monotonic() + 60
        while not any("lost the database connection" in line for line in said):
            if worker.poll() is not None or time.monotonic() > deadline:
                break
            if accepted(ses) >= 50:  # mid-campaign: claims and writes are running
                with db.engine.connect() as c:
                    c.execute(kill_busy, {"app": app})
                    c.commit()
            time.sleep(0.01)
        worker.wait(timeout=120)
        listener.join(timeout=5)
        assert ses.control is not None
        got = ses.control.recipients()
    assert worker.returncode == 0, "".join(said)
    assert any("lost the database connection" in line for line in said), "".join(said)
    assert f"campaign {cid}: done" in (db.tmp / "out").read_text()
    assert set(got) == set(emails)
    with db.sessions() as s:
        rep = camp.report(s, cid)
    assert rep.counts == {"sent": READERS}
    assert sum(n - 1 for n in got.values()) <= rep.campaign.reclaimed
