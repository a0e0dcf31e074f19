"""CSV import: every bad row reported with its line and reason, exact counts, any encoding
quirk of real exports (BOM, ';', CRLF, quoted newlines)."""

from __future__ import annotations

import csv
import itertools
import operator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from mailer.errors import InputError
from subscribers import importer, store
from subscribers.csv_guard import FORMULA_STARTS, guard, unguard
from subscribers.db import make_engine, session_factory
from subscribers.importer import Problem
from subscribers.migrate import upgrade
from subscribers.models import ConsentEvent, Subscriber, Subscription
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
        '"quoted@example.com";"Quoted";"Multi\r\nline"\r\n'  # 11-12 added
        "zhang@例子.广告;张伟;北京\r\n"  # 13 added (IDN)
        "bell@example.com;Ring\x07Bell;\r\n"  # 14 a control character in the name
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
        (14, "invalid name"),
    ]
    assert problems[-1].value.startswith("contains") and "U+0007" in problems[-1].value
    assert dict(report.skipped) == {
        "invalid address": 1,
        "duplicate in file": 1,
        "suppressed": 1,
        "erased": 1,
        "unsubscribed": 1,
        "missing address": 1,
        "invalid name": 1,
    }
    assert (report.added, report.updated, report.unchanged) == (3, 1, 0)
    with db.sessions() as s:
        alice = store.get_subscriber(s, "alice@example.com")
        assert alice.name == "Alice" and alice.attributes == {"city": "Beijing"}
        assert store.get_subscriber(s, "known@example.com").attributes == {"city": "Shanghai"}
        quoted = store.get_subscriber(s, "quoted@example.com")
        assert quoted.name == "Quoted" and quoted.attributes == {"city": "Multi\r\nline"}
        assert store.get_subscriber(s, "zhang@例子.广告").name == "张伟"
        active = s.scalar(
            select(func.count()).select_from(Subscription).where(Subscription.status == "active")
        )
        assert active == 4  # alice, known, quoted, zhang
    # the same file again: nothing new, the bad rows reported again
    report2, problems2 = run(db, path, confirmed=True)
    assert (report2.added, report2.updated, report2.unchanged) == (0, 0, 4)
    assert len(problems2) == 7


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


def test_an_error_in_the_writer_stops_the_import(
    brief: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer thread's error comes out of import_csv; the chunks before it stay
    committed, its own is rolled back (its problems found so far are still reported), and
    no chunk after it is written."""
    monkeypatch.setattr(importer, "CHUNK", 3)
    write = importer._ChunkWriter.write
    calls = 0

    def failing_write(self: importer._ChunkWriter, session: Any, chunk: Any) -> None:
        nonlocal calls
        calls += 1
        write(self, session, chunk)
        if calls == 2:
            raise RuntimeError("the database went away")

    monkeypatch.setattr(importer._ChunkWriter, "write", failing_write)
    lines = ["email"] + [f"u{i}@example.com" for i in range(12)]
    lines[5] = "not an address"  # line 6: in the second chunk
    path = tmp_path / "file.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    problems: list[Problem] = []
    with pytest.raises(RuntimeError, match="went away"):
        importer.import_csv(brief.sessions, path, "brief", on_problem=problems.append)
    assert calls == 2
    assert [(p.line, p.reason) for p in problems] == [(6, "invalid address")]
    with brief.sessions() as s:
        emails = set(s.scalars(select(Subscriber.email)))
    assert emails == {"u0@example.com", "u1@example.com", "u2@example.com"}


def test_a_bad_byte_later_in_the_file_keeps_the_chunks_before_it(
    brief: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reading fails after some chunks went to the writer: they are committed (the one
    being written too) and reported; the rows read since are not written."""
    monkeypatch.setattr(importer, "CHUNK", 50)
    body = "".join(f"reader{i:05d}@example.com\n" for i in range(1000))  # 27 KB
    path = tmp_path / "file.csv"
    path.write_bytes(b"email\n" + body.encode() + b"\xff\xfe\n")
    seen: list[tuple[int, int]] = []
    with pytest.raises(InputError, match="not UTF-8"):
        importer.import_csv(brief.sessions, path, "brief", on_progress=lambda *p: seen.append(p))
    with brief.sessions() as s:
        stored = s.scalar(select(func.count()).select_from(Subscriber))
    assert stored is not None and 0 < stored < 1000 and stored % 50 == 0
    assert seen and seen[-1][1] == stored  # every committed chunk reported, and only those


def test_chunks_also_end_after_so_many_bytes(
    brief: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows with long cells make smaller chunks (memory stays bounded by bytes too)."""
    monkeypatch.setattr(importer, "CHUNK_BYTES", 64 * 1024)
    path = tmp_path / "long.csv"
    with path.open("w", encoding="utf-8", newline="") as f:
        out = csv.writer(f)
        out.writerow(["email", "notes"])
        for i in range(40):
            out.writerow([f"long{i}@example.com", f"{i} " + "é" * 10_000])  # ~20 KB a row
    seen: list[tuple[int, int]] = []
    report = importer.import_csv(
        brief.sessions, path, "brief", on_progress=lambda *p: seen.append(p)
    )
    assert report.added == 40
    assert len(seen) >= 10  # 800 KB in chunks of about 64 KB (read in blocks of 8 KB)
    assert seen[-1] == (path.stat().st_size, 40)
    with brief.sessions() as s:
        sub = store.get_subscriber(s, "long39@example.com")
        assert sub.attributes == {"notes": "39 " + "é" * 10_000}


def test_known_and_new_people_in_one_chunk(brief: Database, tmp_path: Path) -> None:
    """New people (one statement on PostgreSQL) and known ones (their own statements) in
    the same chunk: one subscription each, one ledger event per imported row, the same
    detail; --resubscribe brings back the unsubscribed and lifts the suppressed."""
    with brief.sessions.begin() as s:
        mlist = store.get_list(s, "brief")
        r = store.subscribe(s, "left@example.com", mlist, confirmed=True)
        store.unsubscribe(s, r.subscriber.id, None, actor=store.CLI)
        store.subscribe(s, "pending@example.com", mlist)
        store.subscribe(s, "active@example.com", mlist, confirmed=True, name="Active")
        store.suppress(s, "bounced@example.com", "hard_bounce")
        other = store.create_list(s, "other", name="Other", from_address="o@example.org")
        store.subscribe(s, "elsewhere@example.com", other, confirmed=True)
    path = tmp_path / "mixed.csv"
    path.write_text(
        "email,name,plan\n"
        "new1@example.com,New One,free\n"
        "left@example.com,,\n"
        "pending@example.com,,\n"
        "new2@example.com,,\n"
        "active@example.com,,\n"
        "bounced@example.com,,\n"
        "elsewhere@example.com,,paid\n",
        encoding="utf-8",
    )
    report, problems = run(brief, path, confirmed=True, resubscribe=True)
    assert problems == []
    # added: new1, new2, bounced (new person), elsewhere (new on this list)
    assert (report.added, report.updated, report.unchanged) == (4, 2, 1)
    with brief.sessions() as s:
        rows = s.execute(
            select(Subscriber.email, Subscription.status)
            .join(Subscription, Subscription.subscriber_id == Subscriber.id)
            .where(Subscription.list_id == mlist.id)
        ).all()
        assert sorted(rows) == sorted(
            (f"{who}@example.com", "active")
            for who in ("new1", "left", "pending", "new2", "active", "bounced", "elsewhere")
        )
        events = s.execute(
            select(Subscriber.email, ConsentEvent.list_id, ConsentEvent.detail)
            .join(Subscriber, Subscriber.id == ConsentEvent.subscriber_id)
            .where(ConsentEvent.action == "import")
        ).all()
        assert sorted(e for e, _, _ in events) == sorted(e for e, _ in rows)
        assert {(lid, str(d)) for _, lid, d in events} == {
            (mlist.id, str({"status": "active", "resubscribe": True}))
        }
        assert store.find_suppression(s, "bounced@example.com") is None
        assert store.get_subscriber(s, "new1@example.com").attributes == {"plan": "free"}
        assert store.get_subscriber(s, "elsewhere@example.com").attributes == {"plan": "paid"}


def test_in_memory_sqlite_is_written_from_the_calling_thread(tmp_path: Path) -> None:
    """An in-memory SQLite store is one connection per thread: a writer thread would find
    an empty database, so the import writes from the calling thread there."""
    engine = make_engine("sqlite://")
    upgrade(engine)
    sessions = session_factory(engine)
    with sessions.begin() as s:
        store.create_list(s, "brief", name="Brief", from_address="brief@example.org")
    path = tmp_path / "file.csv"
    path.write_text("email\na@example.com\nb@example.com\n", encoding="utf-8")
    report = importer.import_csv(sessions, path, "brief")
    assert report.added == 2
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(Subscriber)) == 2
    engine.dispose()


# -- export -> import: the formula guard comes off ----------------------------------------------

#: what the export guards (and quotes before it, which it guards with one more); a tab or CR
#: it guards too, but a name may not hold one (subscribers.addresses.clean_name)
_LEADS = ["", "'", "''", "=", "+", "-", "@", "'=", "'+", "'-", "'@", "''="]
_EMAIL_LEADS = ["", "'", "=", "+", "-", "'=", "''+", "'-", "=-"]
_examples = itertools.count()


def _keeps_its_form(name: str) -> bool:
    """A name an import keeps as it is: trimmed (the importer trims cells)."""
    return bool(name) and name == name.strip() and len(name) <= 200


names = st.builds(
    operator.add,
    st.sampled_from(_LEADS),
    st.text(st.characters(codec="utf-8", exclude_categories=["Cc"]), max_size=20),
).filter(_keeps_its_form)
locals_ = st.builds(
    operator.add, st.sampled_from(_EMAIL_LEADS), st.from_regex(r"[a-z0-9]{1,12}", fullmatch=True)
)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(local=locals_, name=names)
def test_export_then_import_is_the_same_person(
    db: Database, tmp_path_factory: pytest.TempPathFactory, local: str, name: str
) -> None:
    """Every address and name the export guards comes back from the import as it was, as the
    same subscriber; and no cell of the file starts a spreadsheet formula."""
    n = next(_examples)
    email = f"{local}@ex{n}.example.com"
    with db.sessions.begin() as s:
        source = store.create_list(s, f"from-{n}", name="From", from_address="f@example.org")
        store.create_list(s, f"into-{n}", name="Into", from_address="i@example.org")
        stored = store.subscribe(s, email, source, name=name, confirmed=True).subscriber.email
        people = s.scalar(select(func.count()).select_from(Subscriber))
    path = tmp_path_factory.mktemp("export") / "list.csv"
    with path.open("w", newline="", encoding="utf-8") as out, db.sessions() as s:
        writer = csv.writer(out)
        writer.writerow(store.EXPORT_COLUMNS)
        writer.writerows(store.export_rows(s, store.get_list(s, f"from-{n}")))
    with path.open(newline="", encoding="utf-8") as exported:
        cells = [cell for row in csv.reader(exported) for cell in row]
    assert not [cell for cell in cells if cell.startswith(FORMULA_STARTS)]
    with db.sessions.begin() as s:  # the import must bring the name back, not keep it
        store.get_subscriber(s, stored).name = "renamed meanwhile"
    problems: list[Problem] = []
    report = importer.import_csv(db.sessions, path, f"into-{n}", on_problem=problems.append)
    assert problems == [] and report.skipped_total == 0
    with db.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Subscriber)) == people
        members = s.execute(
            select(Subscriber.email, Subscriber.name)
            .join(Subscription, Subscription.subscriber_id == Subscriber.id)
            .where(Subscription.list_id == store.get_list(s, f"into-{n}").id)
        ).all()
    assert [tuple(m) for m in members] == [(stored, name)]


@pytest.mark.parametrize(
    ("cell", "value"),
    [
        ("'=evil@example.com", "=evil@example.com"),
        ("''=x", "'=x"),
        ("'\tx", "\tx"),
        ("'x", "'x"),  # not a guard: a quote before an ordinary character stays
        ("'", "'"),
        ("=x", "=x"),  # a third party's unguarded cell: taken as it is
        ("x'=", "x'="),
    ],
)
def test_only_the_exact_guard_comes_off(cell: str, value: str) -> None:
    assert unguard(cell) == value


@given(st.builds(operator.add, st.sampled_from(_LEADS), st.text(max_size=10)))
def test_every_value_has_one_guarded_form(value: str) -> None:
    assert not guard(value).startswith(FORMULA_STARTS)
    assert unguard(guard(value)) == value
