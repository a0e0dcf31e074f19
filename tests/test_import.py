"""CSV import: every bad row reported with its line and reason, exact counts, any encoding
quirk of real exports (BOM, ';', CRLF, quoted newlines)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from mailer.errors import InputError
from subscribers import importer, store
from subscribers.importer import Problem
from subscribers.models import Subscriber, Subscription
from tests.conftest import Database


def run(db: Database, path: Path, **kw: bool) -> tuple[importer.ImportReport, list[Problem]]:
    problems: list[Problem] = []
    report = importer.import_csv(db.sessions, path, "brief", on_problem=problems.append, **kw)
    return report, problems


@pytest.fixture
def brief(db: Database) -> Database:
    with db.sessions.begin() as s:
        store.create_list(s, "brief", name="Brief", from_address="brief@example.org")
    return db


def test_mixed_bad_rows(brief: Database, tmp_path: Path) -> None:
    db = brief
    with db.sessions.begin() as s:
        store.suppress(s, "bounced@example.com", "hard_bounce")
        store.subscribe(s, "gone@example.com", store.get_list(s, "brief"), confirmed=True)
        store.erase(s, "gone@example.com")
        r = store.subscribe(s, "left@example.com", store.get_list(s, "brief"), confirmed=True)
        store.unsubscribe(s, r.subscriber.id, None, actor=store.CLI)
        store.subscribe(s, "known@example.com", store.get_list(s, "brief"), confirmed=True)
    csv_text = (
        "\ufeffEmail;Name;City\r\n"  # 1 BOM, ';', CRLF
        "alice@example.com;Alice;Beijing\r\n"  # 2 added
        "not-an-address;Bob;\r\n"  # 3 invalid
        "ALICE@example.com;Alice again;\r\n"  # 4 duplicate in file
        "bounced@example.com;B;\r\n"  # 5 suppressed
        "gone@example.com;G;\r\n"  # 6 erased
        "\r\n"  # 7 blank: ignored
        "left@example.com;L;\r\n"  # 8 unsubscribed
        ";no address;\r\n"  # 9 missing address
        "known@example.com;Known;Shanghai\r\n"  # 10 updated (new attribute)
        '"quoted@example.com";"Multi\r\nline";X\r\n'  # 11-12 added
        "zhang@例子.广告;张伟;北京\r\n"  # 13 added (IDN)
    )
    path = tmp_path / "mixed.csv"
    path.write_bytes(csv_text.encode("utf-8"))
    report, problems = run(db, path, confirmed=True)
    assert [(p.line, p.reason) for p in problems] == [
        (3, "invalid address"),
        (4, "duplicate in file"),
        (5, "suppressed"),
        (6, "erased"),
        (8, "unsubscribed"),
        (9, "missing address"),
    ]
    assert dict(report.skipped) == {
        "invalid address": 1,
        "duplicate in file": 1,
        "suppressed": 1,
        "erased": 1,
        "unsubscribed": 1,
        "missing address": 1,
    }
    assert (report.added, report.updated, report.unchanged) == (3, 1, 0)
    with db.sessions() as s:
        alice = store.get_subscriber(s, "alice@example.com")
        assert alice.name == "Alice" and alice.attributes == {"city": "Beijing"}
        assert store.get_subscriber(s, "known@example.com").attributes == {"city": "Shanghai"}
        assert store.get_subscriber(s, "quoted@example.com").name == "Multi\r\nline"
        assert store.get_subscriber(s, "zhang@例子.广告").name == "张伟"
        active = s.scalar(
            select(func.count()).select_from(Subscription).where(Subscription.status == "active")
        )
        assert active == 4  # alice, known, quoted, zhang
    # the same file again: nothing new, the bad rows reported again
    report2, problems2 = run(db, path, confirmed=True)
    assert (report2.added, report2.updated, report2.unchanged) == (0, 0, 4)
    assert len(problems2) == 6


def test_duplicates_across_chunks(
    brief: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(importer, "CHUNK", 3)
    rows = (
        ["email"] + [f"u{i}@example.com" for i in range(7)] + ["u1@example.com", "u6@example.com"]
    )
    path = tmp_path / "dups.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    report, problems = run(brief, path)
    assert [(p.line, p.reason) for p in problems] == [
        (9, "duplicate in file"),
        (10, "duplicate in file"),
    ]
    assert report.added == 7
    with brief.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Subscriber)) == 7
        pending = s.scalar(select(func.count()).where(Subscription.status == "pending"))
        assert pending == 7  # double opt-in list, no --confirmed


def test_resubscribe_flag(brief: Database, tmp_path: Path) -> None:
    with brief.sessions.begin() as s:
        store.suppress(s, "back@example.com", "complaint")
    path = tmp_path / "back.csv"
    path.write_text("email,name\nback@example.com,Back\n", encoding="utf-8")
    report, problems = run(brief, path, confirmed=True, resubscribe=True)
    assert report.added == 1 and problems == []
    with brief.sessions() as s:
        assert store.find_suppression(s, "back@example.com") is None


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty file"),
        (b"name,city\nx,y\n", "no 'email' column"),
        (b"email\nok@example.com\n\xff\xfe bad\n", "not UTF-8"),
    ],
)
def test_bad_files(brief: Database, tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(InputError, match=message):
        run(brief, path)


def test_missing_file(brief: Database, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        run(brief, tmp_path / "nope.csv")


def test_nul_byte_is_a_bad_row_not_a_crash(brief: Database, tmp_path: Path) -> None:
    path = tmp_path / "nul.csv"
    path.write_bytes(b"email,name\nok@example.com,Ok\nnul@example.com,Bad\x00Name\n")
    report, problems = run(brief, path, confirmed=True)
    assert [(p.line, p.reason) for p in problems] == [(3, "invalid characters")]
    assert report.added == 1


def test_problems_found_reading_are_reported_with_their_chunk(
    brief: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows without an address or with a NUL never reach a chunk: they are reported with the
    chunk being read, in line order with the chunk's other problems, whatever chunk it is."""
    monkeypatch.setattr(importer, "CHUNK", 2)
    path = tmp_path / "holes.csv"
    path.write_bytes(
        b"email,name\n"
        b"a@example.com,A\n"  # 2
        b",no address\n"  # 3
        b"b@example.com,B\n"  # 4
        b"c@example.com,C\n"  # 5
        b",no address\n"  # 6
        b"bad address,X\n"  # 7
        b"d@example.com,Bad\x00\n"  # 8
        b"e@example.com,E\n"  # 9
        b",no address\n"  # 10
    )
    report, problems = run(brief, path, confirmed=True)
    assert [(p.line, p.reason) for p in problems] == [
        (3, "missing address"),
        (6, "missing address"),
        (7, "invalid address"),
        (8, "invalid characters"),
        (10, "missing address"),
    ]
    assert dict(report.skipped) == {
        "missing address": 3,
        "invalid address": 1,
        "invalid characters": 1,
    }
    assert report.added == 4
