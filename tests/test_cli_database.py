"""Every command against a database that is not there, not set up, not reachable or locked:
one line on stderr naming the cause, a non-zero exit, no traceback, and no file created.

The matrix runs each command through ``mailer.cli.main`` in this process (the console
script's own function, fast enough for every command x every case); a few run as real
``python -m mailer`` processes as well.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import make_url, text
from sqlalchemy.exc import OperationalError

from mailer.cli import command, iter_commands, main
from subscribers.db import SQLITE_BUSY_TIMEOUT, make_engine
from subscribers.db_errors import explain
from tests.conftest import PG_DEFAULT
from tests.plugins.aws import REGION
from tests.support.scratch import scratch_postgres
from tests.support.ses_server import SesServer

ROOT = Path(__file__).resolve().parents[1]
ISSUE = str(ROOT / "tests" / "fixtures" / "issues" / "brief-basic.txt")
EVENT = str(ROOT / "tests" / "fixtures" / "ses_events" / "event_bounce.json")
NOT_INITIALISED = "database not initialised: run `mailer init`"
LOCKED = "the database is locked by another process ("

#: every command that opens the store, with arguments that get it that far
DB_COMMANDS: dict[tuple[str, ...], tuple[str, ...]] = {
    ("campaigns", "cancel"): ("1",),
    ("campaigns", "list"): (),
    ("campaigns", "pause"): ("1",),
    ("campaigns", "resume"): ("1",),
    ("campaigns", "retry-failed"): ("1",),
    ("campaigns", "show"): ("1",),
    ("feedback", "ingest"): (EVENT,),
    ("feedback", "simulate"): ("1", "bounce"),
    ("lists", "create"): ("x", "--name", "X", "--from", "x@example.org"),
    ("lists", "set"): ("x", "--lang", "en"),
    ("lists", "show"): (),
    ("send",): (ISSUE, "--list", "x"),
    ("stats",): (),
    ("subscribers", "add"): ("a@example.com", "--list", "x"),
    ("subscribers", "erase"): ("a@example.com", "--yes"),
    ("subscribers", "export"): ("--list", "x"),
    ("subscribers", "import"): ("in.csv", "--list", "x"),
    ("subscribers", "show"): ("a@example.com",),
    ("suppressions", "add"): ("a@example.com",),
    ("suppressions", "list"): (),
    ("suppressions", "remove"): ("a@example.com",),
    ("tokens", "create"): ("--name", "pipeline", "--role", "editor"),
    ("tokens", "list"): (),
    ("tokens", "revoke"): ("pipeline",),
    ("webhooks", "add"): ("https://hooks.example.org/in", "--events", "campaign.done"),
    ("webhooks", "disable"): ("1",),
    ("webhooks", "enable"): ("1",),
    ("webhooks", "list"): (),
    ("webhooks", "log"): (),
    ("webhooks", "remove"): ("1",),
    ("webhooks", "retry"): (),
    ("webhooks", "test"): ("1",),
    ("worker",): ("--once",),
}
#: the other commands: tested on their own below, or not opening the store
ELSEWHERE = {
    ("init",): "creates the store: test_init_*",
    ("doctor",): "reports the database as a failed check: test_doctor_*",
    ("suppressions", "sync"): "asks SES first: test_suppressions_sync_*",
    ("feedback", "poll"): "a daemon: retries each message, logs, keeps polling",
    ("serve",): "the web app answers 503 (mailer.web.unavailable)",
    ("issue", "check"): "no database",
    ("issue", "render"): "no database",
    ("keygen",): "no database",
    ("ses", "setup"): "no database",
}


@dataclass
class Case:
    """A database that cannot be used, and what every command must say about it."""

    url: str
    says: str
    path: Path | None = None  # a SQLite file that must not come into being

    def env(self) -> dict[str, str]:
        return {
            "MAILER_DATABASE_URL": self.url,
            "MAILER_ENV": "test",
            "MAILER_SECRET_KEY": "test-secret-key",
            "MAILER_DB_TIMEOUT": "0.3s",
        }


def _admin_url() -> str:
    return os.environ.get("MAILER_TEST_POSTGRES_URL", PG_DEFAULT)


@pytest.fixture
def missing_sqlite(tmp_path: Path) -> Case:
    path = tmp_path / "nothing-here.db"
    return Case(f"sqlite:///{path}", f"{NOT_INITIALISED} (there is no file {path})", path)


@pytest.fixture
def empty_sqlite(tmp_path: Path) -> Case:
    path = tmp_path / "empty.db"
    path.touch()
    return Case(f"sqlite:///{path}", f"{NOT_INITIALISED} ({path}: no such table: ")


@pytest.fixture
def locked_sqlite(sqlite_template: Path, tmp_path: Path) -> Iterator[Case]:
    """A migrated file another process holds in exclusive locking mode."""
    path = tmp_path / "locked.db"
    shutil.copy(sqlite_template, path)
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        yield Case(f"sqlite:///{path}", f"{LOCKED}{path}; gave up after 0.3 s)")
    finally:
        holder.kill()
        holder.wait()


_HOLD_LOCK = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("PRAGMA locking_mode=EXCLUSIVE")
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(600)
"""


@pytest.fixture
def refused_postgres() -> Iterator[Case]:
    """A port bound but not listening: connecting is refused, and nobody else can take it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        yield Case(
            f"postgresql://postgres@127.0.0.1:{port}/test",
            f"cannot reach the database at 127.0.0.1:{port}: Connection refused",
        )


@pytest.fixture
def missing_postgres_database(pg_url: str) -> Case:
    name = f"no_such_db_{uuid.uuid4().hex[:8]}"
    url = make_url(pg_url).set(database=name)
    where = f"{url.host}:{url.port or 5432}"
    return Case(
        url.render_as_string(hide_password=False),
        f'cannot reach the database at {where}: database "{name}" does not exist',
    )


@pytest.fixture
def empty_postgres(pg_url: str) -> Iterator[Case]:
    with scratch_postgres(_admin_url(), "brief_empty", migrate=False) as url:
        yield Case(url, f"{NOT_INITIALISED} (")


CASES = [
    "missing_sqlite",
    "empty_sqlite",
    "locked_sqlite",
    "refused_postgres",
    "missing_postgres_database",
    "empty_postgres",
]


def run_main(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    env: dict[str, str],
    args: tuple[str, ...],
) -> tuple[int, str, str]:
    """``mailer ARGS`` through the console script's function: (exit code, stdout, stderr)."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as stopped:
        main(list(args))
    out = capsys.readouterr()
    code = stopped.value.code
    return (code if isinstance(code, int) else 1), out.out, out.err


def assert_one_line(err: str, says: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert lines[0].startswith("mailer: error: "), lines[0]
    assert says in lines[0], lines[0]


@pytest.mark.parametrize("case_name", CASES)
def test_every_command_says_one_line(
    case_name: str,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    case: Case = request.getfixturevalue(case_name)
    (tmp_path / "in.csv").write_text("email,name\na@example.com,A\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    for path, args in DB_COMMANDS.items():
        argv = (*path, *args)
        code, _out, err = run_main(monkeypatch, capsys, case.env(), argv)
        assert code == 1, (argv, err)
        assert_one_line(err, case.says)
        if case.path is not None:
            assert not case.path.exists(), f"mailer {' '.join(argv)} created {case.path}"


def test_every_command_is_in_the_matrix() -> None:
    """A new command joins DB_COMMANDS, or ELSEWHERE says why not."""
    every = {path for path, _ in iter_commands(command())}
    assert every == set(DB_COMMANDS) | set(ELSEWHERE)
    assert not set(DB_COMMANDS) & set(ELSEWHERE)


@pytest.mark.parametrize("case_name", ["missing_sqlite", "locked_sqlite", "refused_postgres"])
@pytest.mark.parametrize(
    "args", [("lists", "show"), ("subscribers", "add", "a@example.com", "--list", "x")]
)
def test_a_real_process_says_one_line(
    case_name: str, args: tuple[str, ...], request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    case: Case = request.getfixturevalue(case_name)
    result = subprocess.run(
        [sys.executable, "-m", "mailer", *args],
        env={**os.environ, **case.env()},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert result.stdout == ""
    assert_one_line(result.stderr, case.says)
    if case.path is not None:
        assert not case.path.exists()


@pytest.mark.parametrize("case_name", ["missing_sqlite", "empty_sqlite", "empty_postgres"])
def test_init_creates_what_the_others_refuse(
    case_name: str,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    case: Case = request.getfixturevalue(case_name)
    code, out, err = run_main(monkeypatch, capsys, case.env(), ("init",))
    assert (code, err) == (0, "")
    assert out.startswith("database ready: ")
    code, out, err = run_main(monkeypatch, capsys, case.env(), ("lists", "show"))
    assert (code, err) == (0, "")


@pytest.mark.parametrize(
    "case_name", ["locked_sqlite", "refused_postgres", "missing_postgres_database"]
)
def test_init_says_one_line_where_it_cannot(
    case_name: str,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    case: Case = request.getfixturevalue(case_name)
    code, _out, err = run_main(monkeypatch, capsys, case.env(), ("init",))
    assert code == 1
    assert_one_line(err, case.says)


@pytest.mark.parametrize("case_name", CASES)
def test_doctor_reports_the_database_as_one_failed_check(
    case_name: str,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    case: Case = request.getfixturevalue(case_name)
    code, out, err = run_main(monkeypatch, capsys, case.env(), ("doctor", "--no-ses"))
    assert code == 1
    assert "Traceback" not in out + err
    assert out.startswith("FAIL  database reachable and migrated")
    assert len(err.strip().splitlines()) == 1
    if case.path is not None:
        assert not case.path.exists()


@pytest.mark.parametrize("case_name", ["missing_sqlite", "refused_postgres"])
def test_suppressions_sync_says_one_line(
    case_name: str,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    ses_server: SesServer,
) -> None:
    case: Case = request.getfixturevalue(case_name)
    env = {**case.env(), "MAILER_SES_ENDPOINT_URL": ses_server.url, "MAILER_SES_REGION": REGION}
    code, _out, err = run_main(monkeypatch, capsys, env, ("suppressions", "sync"))
    assert code == 1
    assert_one_line(err, case.says)


# -- the engine underneath ---------------------------------------------------------------------


def test_an_engine_that_must_not_create_leaves_no_file(tmp_path: Path) -> None:
    path = tmp_path / "a b?c#d%e.db"  # characters a file: URI must escape
    engine = make_engine(f"sqlite:///{path}", create=False)
    with pytest.raises(OperationalError), engine.connect():
        pass
    engine.dispose()
    assert list(tmp_path.iterdir()) == []
    made = make_engine(f"sqlite:///{path}")  # create=True: the default, and `mailer init`'s
    with made.begin() as conn:
        conn.execute(text("CREATE TABLE t (x INTEGER)"))
        conn.execute(text("INSERT INTO t VALUES (7)"))
    made.dispose()
    opened = make_engine(f"sqlite:///{path}", create=False)
    with opened.connect() as conn:
        assert conn.execute(text("SELECT x FROM t")).scalar() == 7
    opened.dispose()


def test_a_short_open_timeout_keeps_the_writers_busy_timeout(tmp_path: Path) -> None:
    """Connecting waits ``open_timeout``; statements then wait SQLITE_BUSY_TIMEOUT for a
    writer, as with no open timeout at all."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    for engine in (make_engine(url, open_timeout=0.3), make_engine(url)):
        with engine.connect() as conn:
            busy = conn.exec_driver_sql("PRAGMA busy_timeout").scalar()
        engine.dispose()
        assert busy == int(SQLITE_BUSY_TIMEOUT * 1000)


def test_a_lock_met_by_a_statement_does_not_claim_the_open_timeout(tmp_path: Path) -> None:
    """A writer's INSERT that outwaits its busy timeout is 'locked' too, without the
    'gave up after' of a connection that could not open."""
    path = tmp_path / "store.db"
    url = f"sqlite:///{path}"
    holder = make_engine(url)
    with holder.begin() as conn:
        conn.execute(text("CREATE TABLE t (x INTEGER)"))
    waiting = make_engine(url, connect_args={"timeout": 0.05})
    with holder.connect() as held:
        held.exec_driver_sql("BEGIN IMMEDIATE")
        with pytest.raises(OperationalError) as caught, waiting.begin() as conn:
            conn.execute(text("INSERT INTO t VALUES (1)"))
        held.rollback()
    holder.dispose()
    waiting.dispose()
    said = str(explain(caught.value, url, waited=0.3))
    assert said.startswith(f"{LOCKED}{path})")
    assert "gave up" not in said
