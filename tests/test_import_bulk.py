"""The importer's bulk statements: every row of a chunk stored once, with the values Core
would store; the Core fallback gives the same store; progress is reported up to the end of
the file."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text

from subscribers import importer, store
from subscribers.addresses import control_char
from subscribers.db import make_engine, session_factory
from subscribers.models import ConsentEvent, Subscriber, Subscription
from tests.conftest import Database

CITIES = ["Beijing", "", "Zürich", "São Paulo", 'Quote "Q"', "a,b"]


def write_file(path: Path, rows: int) -> dict[str, tuple[str | None, dict[str, str]]]:
    """A CSV with names (some missing, some not ASCII) and attributes (some empty), and a
    duplicate every 50 rows; returns what the store must hold for each address."""
    lines = ["email,name,city,plan"]
    want: dict[str, tuple[str | None, dict[str, str]]] = {}
    for i in range(rows):
        if i % 50 == 49:
            lines.append(f"Reader{i - 30}@Example.org,Again,,")  # duplicate in the file
            continue
        name = "" if i % 7 == 0 else ("张伟" if i % 5 == 0 else f"Reader {i}")
        city, plan = CITIES[i % len(CITIES)], ("paid" if i % 3 else "")
        quoted = '"' + city.replace('"', '""') + '"'
        lines.append(f"reader{i}@example.org,{name},{quoted},{plan}")
        attrs = {k: v for k, v in (("city", city), ("plan", plan)) if v}
        want[f"reader{i}@example.org"] = (name or None, attrs)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return want


def stored(db: Database) -> dict[str, tuple[str | None, dict[str, Any]]]:
    with db.sessions() as s:
        return {
            e: (n, a)
            for e, n, a in s.execute(
                select(Subscriber.email, Subscriber.name, Subscriber.attributes)
            )
        }


def test_every_row_stored_once_across_chunks(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(importer, "CHUNK", 700)  # chunks of 700, 700 and 100 rows
    monkeypatch.setattr(importer, "ANALYZE_AFTER", 1000)  # a "big" import: statistics
    with db.sessions.begin() as s:
        store.create_list(s, "brief", name="Brief", from_address="brief@example.org")
        began = s.scalar(select(func.now()))
    path = tmp_path / "many.csv"
    want = write_file(path, 1500)
    report = importer.import_csv(db.sessions, path, "brief", confirmed=True)
    if db.backend == "postgresql":
        with db.sessions() as s:
            analyzed = s.scalar(
                text("SELECT last_analyze FROM pg_stat_user_tables WHERE relname = 'subscribers'")
            )
            assert analyzed is not None and analyzed >= began
    assert report.added == len(want) == 1470
    assert dict(report.skipped) == {"duplicate in file": 30}
    assert stored(db) == want
    with db.sessions() as s:
        rows = s.execute(
            select(Subscriber.created_at, Subscription.created_at, Subscription.confirmed_at)
            .join(Subscription, Subscription.subscriber_id == Subscriber.id)
            .where(Subscription.status == "active", Subscription.source == "import")
        ).all()
        assert len(rows) == 1470
        assert all(a == b == c and a.utcoffset() is not None for a, b, c in rows)
        events = s.execute(
            select(ConsentEvent.subscriber_id, ConsentEvent.detail).where(
                ConsentEvent.action == "import"
            )
        ).all()
        assert len({sid for sid, _ in events}) == len(events) == 1470
        assert all(detail == {"status": "active"} for _, detail in events)


def test_core_fallback_stores_the_same(sqlite_template: Path, tmp_path: Path) -> None:
    """A driver taking neither ? nor %s (here sqlite3 with :name) goes through Core."""
    path = tmp_path / "file.csv"
    want = write_file(path, 300)
    stores, reports = [], []
    for paramstyle in ("qmark", "named"):
        copy = tmp_path / f"{paramstyle}.db"
        shutil.copy(sqlite_template, copy)
        engine = make_engine(f"sqlite:///{copy}", paramstyle=paramstyle)
        assert engine.dialect.paramstyle == paramstyle
        target = Database("sqlite", str(copy), engine, session_factory(engine), tmp_path)
        with target.sessions.begin() as s:
            store.create_list(s, "brief", name="Brief", from_address="brief@example.org")
        reports.append(importer.import_csv(target.sessions, path, "brief"))
        stores.append(stored(target))
        engine.dispose()
    assert reports[0] == reports[1]
    assert stores[0] == stores[1] == want


def test_progress_reported_to_the_end(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(importer, "CHUNK", 100)
    with db.sessions.begin() as s:
        store.create_list(s, "brief", name="Brief", from_address="brief@example.org")
    path = tmp_path / "file.csv"
    write_file(path, 450)
    seen: list[tuple[int, int]] = []
    importer.import_csv(db.sessions, path, "brief", on_progress=lambda b, r: seen.append((b, r)))
    assert seen[-1] == (path.stat().st_size, 450)
    assert seen == sorted(seen) and len(seen) == 5


AWKWARD = [
    "tab\there",
    "back\\slash \\\\ \\n \\u0000 \\t",
    "new\nline and\r\nCRLF",
    "quotes \"double\" and 'single', commas, ; semicolons",
    "张伟 שלום e\u0301 \u2028\u2029 \ufeffbom",
    "astral 😀 👨‍👩‍👧 𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
    "controls \x01 \x1b \x7f",
    '{"looks": "like json"}',
    "null",
    "[1, 2]",
    "$[0]",
    "'; DROP TABLE subscribers; --",
    "%s %(name)s ? :name",
]


def test_awkward_values_stored_exactly(db: Database, tmp_path: Path) -> None:
    """Every kind of text a spreadsheet can hold goes through the bulk statements' JSON
    documents unchanged (names, attributes, new and known people); a NUL is refused."""
    with db.sessions.begin() as s:
        store.create_list(s, "brief", name="Brief", from_address="brief@example.org")
    long_value = ("x" * 999 + "€") * 100  # 100,000 characters (the csv module's limit: 131,072)
    long_name = "n" * 199 + "😀" + "cut off"
    want: dict[str, tuple[str | None, dict[str, Any]]] = {}
    records = []
    for i, value in enumerate([*AWKWARD, long_value]):
        email = f"awkward{i}@example.org"
        # a name may not hold a control character (tests/test_name_controls.py)
        name = value if control_char(value) is None else f"Name {i}"
        records.append([email, name, value, f"  {value}  "])
        want[email] = (name.strip()[:200], {"straße": value.strip(), "note": value.strip()})
    records.append(["long@example.org", long_name, long_value, ""])
    want["long@example.org"] = (long_name[:200], {"straße": long_value})
    records.append(["nul@example.org", "Nul", "a\x00b", ""])
    first = tmp_path / "first.csv"
    with first.open("w", encoding="utf-8", newline="") as f:
        out = csv.writer(f)
        out.writerow(["email", "name", "Straße", "note"])
        out.writerows(records)
    problems: list[importer.Problem] = []
    report = importer.import_csv(
        db.sessions, first, "brief", confirmed=True, on_problem=problems.append
    )
    nul_line = 2 + sum(1 + sum(c.count("\n") for c in r) for r in records[:-1])
    assert [(p.line, p.reason) for p in problems] == [(nul_line, "invalid characters")]
    assert report.added == len(want)
    assert stored(db) == want
    # the same people again with other awkward values: known people, merged attributes
    second = tmp_path / "second.csv"
    with second.open("w", encoding="utf-8", newline="") as f:
        out = csv.writer(f)
        out.writerow(["email", "name", "extra"])
        for i, value in enumerate(reversed(AWKWARD)):
            out.writerow([f"awkward{i}@example.org", "", value])
            name, attrs = want[f"awkward{i}@example.org"]
            want[f"awkward{i}@example.org"] = (name, {**attrs, "extra": value.strip()})
    report = importer.import_csv(db.sessions, second, "brief", confirmed=True)
    assert (report.added, report.updated) == (0, len(AWKWARD))
    assert stored(db) == want
