"""`mailer subscribers export` carries each reader's time zone (issue 15): the column the
import reads (``time_zone``), so export -> import brings every zone back; a reader without
one exports an empty cell and keeps following the list's zone. SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select, update

from subscribers import store
from subscribers.models import Subscriber, Subscription
from tests.conftest import Database

READERS = {
    "ann@example.com": ("Ann", "Asia/Shanghai"),
    "bo@example.com": ("Bo", "America/New_York"),
    "cy@example.com": ("", None),
}


def mailer(db: Database, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mailer", *args],
        env=db.env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def members(db: Database, slug: str) -> set[tuple[str, str | None, str | None]]:
    with db.sessions() as s:
        rows = s.execute(
            select(Subscriber.email, Subscriber.name, Subscriber.time_zone)
            .join(Subscription, Subscription.subscriber_id == Subscriber.id)
            .where(Subscription.list_id == store.get_list(s, slug).id)
        ).all()
    return {(e, n, z) for e, n, z in rows}


def test_export_has_the_zone_and_the_import_takes_it_back(db: Database, tmp_path: Path) -> None:
    with db.sessions.begin() as s:
        brief = store.create_list(s, "brief", name="Brief", from_address="b@example.org")
        store.create_list(s, "into", name="Into", from_address="i@example.org")
        for email, (name, zone) in READERS.items():
            who = store.subscribe(s, email, brief, name=name or None, confirmed=True).subscriber
            who.time_zone = zone
    before = members(db, "brief")
    assert ("ann@example.com", "Ann", "Asia/Shanghai") in before

    out = tmp_path / "brief.csv"
    r = mailer(db, "subscribers", "export", "--list", "brief", "-o", str(out))
    assert r.returncode == 0, r.stderr
    with out.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["email", "name", "status", "since", "time_zone"]
    assert {row[0]: row[4] for row in rows[1:]} == {
        email: zone or "" for email, (_, zone) in READERS.items()
    }

    # as if the file went to another installation: the store forgets every zone
    with db.sessions.begin() as s:
        s.execute(update(Subscriber).values(time_zone=None))
    r = mailer(db, "subscribers", "import", str(out), "--list", "into", "--confirmed")
    assert r.returncode == 0, r.stdout + r.stderr
    assert members(db, "into") == before
