"""One live campaign per issue and list, whatever runs at once (issue #13 item 1).

Before: `create_campaign` looked for an earlier send and then inserted, with nothing in
between; two `mailer send` of one issue started together made two campaigns (SQLite), six
made three (PostgreSQL), and readers got the issue twice or three times. Now a unique
partial index lets one campaign in, and the others get the "already sent" answer a second
send one after the other gets. Every test here runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import email
import re
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, insert, select, text
from sqlalchemy.exc import IntegrityError

from mailer.errors import ConflictError
from mailer.issue.files import parse_issue_file
from mailer.sending import campaigns, publish
from mailer.sending.models import Campaign
from mailer.sending.schedule import Schedule
from subscribers import store
from subscribers.db import make_engine, session_factory
from subscribers.migrate import upgrade
from tests.conftest import Database
from tests.delivery_helpers import ISSUE, bare_rendered, make_campaign, seed_list

READERS = 30
ALREADY = re.compile(
    r"mailer: error: this issue was already sent to brief as campaign (\d+) \(\w+\); (.+)"
)


def _refusal(stderr: str) -> re.Match[str] | None:
    """The one error line after the editor's warnings (subject length, http links)."""
    *warnings, last = stderr.splitlines()
    assert all(w.startswith("warning: ") for w in warnings), stderr
    return ALREADY.fullmatch(last)


def _start_sends(db: Database, n: int, *extra: str) -> list[subprocess.Popen[str]]:
    """``n`` real `mailer send` processes (the console entry point), started together."""
    return [
        subprocess.Popen(
            [sys.executable, "-m", "mailer", "send", str(ISSUE), "--list", "brief", *extra],
            env=db.env(COLUMNS="200"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=db.tmp,
        )
        for _ in range(n)
    ]


def _finish(procs: list[subprocess.Popen[str]]) -> list[tuple[int, str, str]]:
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=240)
        results.append((proc.returncode, out, err))
    return results


def _campaign_ids(db: Database) -> list[int]:
    with db.sessions() as s:
        return list(s.scalars(select(Campaign.id).order_by(Campaign.id)))


def _outbox_recipients(db: Database) -> Counter[str]:
    """Who got a message, from the files the outbox transport wrote."""
    files = (db.tmp / "outbox").rglob("*.eml")
    return Counter(str(email.message_from_bytes(f.read_bytes())["To"]) for f in files)


def test_six_sends_at_once_make_one_campaign(db: Database) -> None:
    _, emails = seed_list(db.sessions, READERS)
    results = _finish(_start_sends(db, 6))

    [cid] = _campaign_ids(db)
    winners = [r for r in results if r[0] == 0]
    losers = [r for r in results if r[0] != 0]
    assert len(winners) == 1, [r[2] for r in results]
    assert f"campaign {cid}: {READERS} readers of brief queued" in winners[0][1]
    for code, out, err in losers:
        assert code == 1
        said = _refusal(err)
        assert said is not None, err
        assert int(said.group(1)) == cid and said.group(2) == "pass --force to send it again"
        assert "readers of brief queued" not in out
    assert _outbox_recipients(db) == Counter({e: 1 for e in emails})


@contextmanager
def _watching_inserts(url: str) -> Iterator[tuple[Engine, threading.Event]]:
    """An engine of its own whose Event is set when it starts inserting a campaign row: by
    then its check for an earlier send is behind it."""
    engine = make_engine(url)
    reached = threading.Event()

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO CAMPAIGNS"):
            reached.set()

    event.listen(engine, "before_cursor_execute", seen)
    try:
        yield engine, reached
    finally:
        engine.dispose()


@pytest.mark.parametrize("force", [False, True], ids=["send", "force"])
def test_the_loser_of_a_race_waits_and_is_told_the_winner(db: Database, force: bool) -> None:
    """Deterministic: B checks for an earlier send while A's campaign is not committed (so it
    finds none), inserts, waits for A, and gets the ConflictError naming A's campaign."""
    seed_list(db.sessions, 5)
    issue = parse_issue_file(ISSUE)
    rendered = bare_rendered(issue.subject, "<p>hi %%name%%</p>", "hi %%name%%")
    with db.sessions() as s:
        mlist = store.get_list(s, "brief")
    if force:  # a first send is live: both forced sends take generation 1
        make_campaign(db.sessions, db.settings())
    schedule = Schedule(force=force)
    failure: list[BaseException] = []

    with _watching_inserts(db.url) as (engine_b, b_inserting):

        def b() -> None:
            try:
                publish.create(session_factory(engine_b), mlist, issue, rendered, schedule)
            except BaseException as err:  # handed to the test thread
                failure.append(err)

        racer = threading.Thread(target=b)
        with db.sessions.begin() as a:
            won, _ = campaigns.create_campaign(a, mlist, issue, rendered, schedule)
            racer.start()
            assert b_inserting.wait(30), "B never got to its insert"
            racer.join(0.5)
            assert racer.is_alive(), "B must wait for A's transaction"
        racer.join(60)
    assert not racer.is_alive()

    [err] = failure
    assert isinstance(err, ConflictError)
    again = "another --force send of it started" if force else "pass --force"
    assert f"already sent to brief as campaign {won.id} (scheduled); {again}" in str(err)
    with db.sessions() as s:
        live = s.scalars(select(Campaign.generation).order_by(Campaign.id)).all()
    assert live == ([0, 1] if force else [0])


def test_the_index_itself_refuses_a_second_live_campaign(db: Database) -> None:
    """The guarantee is the database's, not a check in Python: a raw insert is refused too."""
    seed_list(db.sessions, 1)
    cid, _, _ = make_campaign(db.sessions, db.settings())
    with db.sessions() as s:
        row = {c: v for c, v in s.execute(select(Campaign.__table__)).one()._mapping.items()}
    row.pop("id")
    refused = r"uq_campaigns_live_issue|UNIQUE constraint failed: campaigns\.list_id"
    with pytest.raises(IntegrityError, match=refused), db.engine.begin() as conn:
        conn.execute(insert(Campaign.__table__).values(row))
    with db.engine.begin() as conn:  # a cancelled one is out of the index
        conn.execute(insert(Campaign.__table__).values({**row, "status": "cancelled"}))
    assert len(_campaign_ids(db)) == 2 and _campaign_ids(db)[0] == cid


# -- migration 0003 on a store that already has repeated sends -------------------------------


def _campaign_row(cid: int, key: str, status: str) -> str:
    return (
        "INSERT INTO campaigns (id, list_id, issue_key, subject, issue, html, text, status,"
        f" created_at, archive_html, reclaimed) VALUES ({cid}, 1, '{key}', 's', '{{}}', 'h',"
        f" 't', '{status}', '2026-01-01', '', 0)"
    )


@contextmanager
def _empty_store(db: Database, tmp_path: Path) -> Iterator[Engine]:
    """An empty database of the test's backend (a schema of its own on PostgreSQL)."""
    if db.backend == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'm3.db'}")
        yield engine
        engine.dispose()
        return
    with db.engine.begin() as conn:
        conn.execute(text("DROP SCHEMA IF EXISTS mig3 CASCADE; CREATE SCHEMA mig3"))
    engine = make_engine(db.url, connect_args={"options": "-csearch_path=mig3"})
    try:
        yield engine
    finally:
        engine.dispose()
        with db.engine.begin() as conn:
            conn.execute(text("DROP SCHEMA mig3 CASCADE"))


def test_migration_numbers_earlier_repeats(db: Database, tmp_path: Path) -> None:
    with _empty_store(db, tmp_path) as engine:
        upgrade(engine, "0002")
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO mailing_lists (id, slug, name, from_address, double_opt_in,"
                    " created_at) VALUES (1, 'brief', 'Brief', 'b@example.org', true,"
                    " '2026-01-01')"
                )
            )
            for cid, key, status in [
                (1, "a", "done"),
                (2, "a", "cancelled"),
                (3, "a", "done"),  # a --force send, or a race before the index
                (4, "b", "done"),
                (5, "a", "sending"),
            ]:
                conn.execute(text(_campaign_row(cid, key, status)))
        upgrade(engine)
        with engine.connect() as conn:
            got = conn.execute(text("SELECT id, generation FROM campaigns ORDER BY id")).all()
        assert [tuple(r) for r in got] == [(1, 0), (2, 1), (3, 2), (4, 0), (5, 3)]
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(text("UPDATE campaigns SET generation = 0 WHERE id = 3"))
