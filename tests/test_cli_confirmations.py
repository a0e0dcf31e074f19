"""Readers an operator adds pending get their confirmation mail (issue 15): `subscribers
add` and `subscribers import` without --confirmed, through the real process, on SQLite and
PostgreSQL; at most 3 a day per address; an import run again mails nobody twice."""

from __future__ import annotations

import subprocess
import sys
from email.message import EmailMessage

from sqlalchemy import select

from mailer.sending.models import Delivery
from subscribers import store
from tests.cli_support import run_cli
from tests.conftest import Database
from tests.web_support import confirmation_mails, link_in, text_body


def _mails(db: Database) -> list[EmailMessage]:
    return confirmation_mails(db.settings())


def _setup(db: Database) -> None:
    with db.sessions.begin() as s:
        store.create_list(s, "brief", name="The Brief", from_address="Brief <b@example.org>")


def test_add_pending_sends_the_confirmation_within_the_limit(db: Database) -> None:
    _setup(db)
    first = run_cli(db, "subscribers", "add", "reader@example.org", "--list", "brief")
    assert first.returncode == 0, first.stderr
    assert "pending on brief (confirmation mail sent)" in first.stdout
    [msg] = _mails(db)
    assert msg["To"] == "reader@example.org"
    assert msg["Subject"] == "Confirm your subscription to The Brief"
    assert "/confirm/" in link_in(text_body(msg), "confirm")
    for _ in range(3):
        again = run_cli(db, "subscribers", "add", "reader@example.org", "--list", "brief")
        assert again.returncode == 0, again.stderr
    assert "no confirmation mail" in again.stdout
    assert len(_mails(db)) == 3  # the flood limit: 3 a day per address
    quiet = run_cli(db, "subscribers", "add", "other@example.org", "--list", "brief", "--no-mail")
    assert quiet.returncode == 0 and "confirmation" not in quiet.stdout
    confirmed = run_cli(db, "subscribers", "add", "c@example.org", "--list", "brief", "--confirmed")
    assert confirmed.returncode == 0 and "active on brief" in confirmed.stdout
    assert len(_mails(db)) == 3
    with db.sessions() as s:
        rows = list(s.scalars(select(Delivery)))
    assert [(r.kind, r.status) for r in rows] == [("confirm", "sent")] * 3


def test_import_without_confirmed_mails_each_pending_reader_once(db: Database) -> None:
    _setup(db)
    csv = db.tmp / "readers.csv"
    csv.write_text("email,name\na@example.org,A\nb@example.org,B\n", encoding="utf-8")
    done = run_cli(db, "subscribers", "import", str(csv), "--list", "brief")
    assert done.returncode == 0, done.stderr
    assert "confirmation mails: 2 sent" in done.stdout
    assert sorted(m["To"] for m in _mails(db)) == ["a@example.org", "b@example.org"]
    again = run_cli(db, "subscribers", "import", str(csv), "--list", "brief")
    assert again.returncode == 0, again.stderr
    assert "confirmation mails" not in again.stdout
    assert len(_mails(db)) == 2
    confirmed = db.tmp / "c.csv"
    confirmed.write_text("email\nc@example.org\n", encoding="utf-8")
    done = run_cli(db, "subscribers", "import", str(confirmed), "--list", "brief", "--confirmed")
    assert done.returncode == 0 and "confirmation mails" not in done.stdout
    assert len(_mails(db)) == 2


def test_subscribers_show_tells_the_time_zone(db: Database) -> None:
    _setup(db)
    with db.sessions.begin() as s:
        store.subscribe(s, "tz@example.org", store.get_list(s, "brief"), confirmed=True)
        store.get_subscriber(s, "tz@example.org").time_zone = "Asia/Shanghai"
    shown = run_cli(db, "subscribers", "show", "tz@example.org")
    assert shown.returncode == 0, shown.stderr
    assert "time zone: Asia/Shanghai" in shown.stdout


def test_a_transport_that_cannot_be_made_says_what_was_stored(db: Database) -> None:
    """SMTP with a weak key: the reader is stored pending, the error says so, and the same
    command with a working transport mails them."""
    _setup(db)
    env = db.env(MAILER_TRANSPORT="smtp", MAILER_SECRET_KEY="short")
    done = subprocess.run(
        [sys.executable, "-m", "mailer", "subscribers", "add", "p@example.org", "--list", "brief"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=db.tmp,
    )
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "p@example.org: pending on brief, but no confirmation mail can be sent" in done.stderr
    with db.sessions() as s:
        assert store.get_subscriber(s, "p@example.org").subscriptions[0].status == "pending"
    again = run_cli(db, "subscribers", "add", "p@example.org", "--list", "brief")
    assert again.returncode == 0 and "(confirmation mail sent)" in again.stdout
