"""CSV import that streams: constant memory on any file size, every bad row reported.

The file needs a header row with an ``email`` column; ``name`` and ``time_zone`` (an IANA
zone such as ``Asia/Shanghai``; a row with another value is skipped as "unknown time zone")
are optional and every other column is kept as a subscriber attribute. UTF-8 with or
without BOM; ``,`` ``;`` or tab separated (taken from the header line). Rows are validated
in Python and written in chunks with set-based statements, one transaction per chunk; a
row that is bad (invalid address, duplicate in the file, suppressed, erased, unsubscribed,
unknown time zone, a name with a control character) is skipped and reported with its line
number, and never stops the import. A cell the export guarded against spreadsheet
formulas (``'=...``) is read as the value it guards, so an export imports as itself.

Duplicates across chunks are found through the consent ledger (each imported row writes an
``import`` event tagged with this run), so memory does not grow with the file.

A writer thread writes one chunk while the calling thread reads and validates the next
(most of a chunk's write is the database's time: foreign-key checks and index entries), so
at most three chunks are in memory; chunks are committed one at a time, in file order.
The statements that write a chunk's many rows at once are :mod:`subscribers.bulk`'s.
"""

from __future__ import annotations

import csv
import io
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from sqlalchemy import bindparam, delete, select, text
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import SingletonThreadPool

from mailer.errors import InputError
from subscribers.addresses import clean_name, try_normalize
from subscribers.bulk import insert_people, insert_rows, select_in, update_by_id
from subscribers.csv_guard import unguard
from subscribers.db import InlineExecutor
from subscribers.list_settings import clean_time_zone
from subscribers.models import (
    ConsentEvent,
    Subscriber,
    Subscription,
    SubscriptionStatus,
    Suppression,
    SuppressionReason,
    utcnow,
)
from subscribers.store import email_hash, get_list, hash_salt

CHUNK = 5000  # rows written in one transaction
CHUNK_BYTES = 4 << 20  # or fewer, if they take more of the file (long cells: constant memory)
ANALYZE_AFTER = 20_000  # rows imported: then the tables' statistics are refreshed
EMAIL_HEADERS = ("email", "e-mail", "email address", "email_address", "mail")
ZONE_HEADERS = ("time_zone", "timezone", "time zone", "tz")


@dataclass(frozen=True)
class Problem:
    line: int
    reason: str
    value: str


@dataclass
class ImportReport:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    rows: int = 0

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())


@dataclass(slots=True)
class _Row:
    line: int
    email: str
    name: str | None
    attrs: dict[str, str]
    time_zone: str | None = None  # as written: checked with the address, in prepare()


def _zone(row: _Row) -> bool:
    """The row's time zone is an IANA name (then spelled as the zone database does)."""
    assert row.time_zone is not None
    try:
        row.time_zone = clean_time_zone(row.time_zone)
    except InputError:
        return False
    return True


OnProblem = Callable[[Problem], None]
OnProgress = Callable[[int, int], None]  # (bytes read, rows seen)


def _open_text(raw: IO[bytes]) -> io.TextIOWrapper:
    return io.TextIOWrapper(raw, encoding="utf-8-sig", newline="", errors="strict")


def _header(first_line: str, source: str) -> tuple[str, list[str]]:
    counts = {d: first_line.count(d) for d in (",", ";", "\t")}
    delimiter = max(counts, key=lambda d: counts[d]) if any(counts.values()) else ","
    columns = next(csv.reader([first_line], delimiter=delimiter))
    names = [c.strip().lower() for c in columns]
    if not any(n in EMAIL_HEADERS for n in names):
        raise InputError(
            f"{source}:1: header row has no 'email' column"
            f" (found: {', '.join(columns) or 'nothing'})"
        )
    return delimiter, names


def read_rows(raw: IO[bytes], source: str, on_problem: OnProblem) -> Iterator[_Row]:
    """Parse the CSV stream into rows; structural problems are reported, not raised."""
    text = _open_text(raw)
    try:
        first = text.readline()
        if not first.strip():
            raise InputError(f"{source}: empty file (expected a header row with 'email')")
        delimiter, names = _header(first.rstrip("\r\n"), source)
        email_col = next(i for i, n in enumerate(names) if n in EMAIL_HEADERS)
        name_col = names.index("name") if "name" in names else None
        zone_col = next((i for i, n in enumerate(names) if n in ZONE_HEADERS), None)
        extra = [
            (i, n) for i, n in enumerate(names) if i not in (email_col, name_col, zone_col) and n
        ]
        reader = csv.reader(text, delimiter=delimiter)
        end = 1  # physical line where the previous record ended (the header)
        for cells in reader:
            start, end = end + 1, reader.line_num + 1  # a quoted newline spans lines
            size = len(cells)
            # an exported file's formula guard comes off (the export -> import round trip)
            email = unguard(cells[email_col].strip()) if size > email_col else ""
            if not email:
                if any(c.strip() for c in cells):  # else a blank line: ignored
                    on_problem(Problem(start, "missing address", ",".join(cells)[:200]))
                continue
            if any("\x00" in c for c in cells):  # no database stores NUL in text
                on_problem(Problem(start, "invalid characters", "a cell contains a NUL byte"))
                continue
            name = (
                unguard(cells[name_col].strip())[:200]
                if name_col is not None and size > name_col
                else ""
            )
            try:
                name = clean_name(name) or ""  # the rule `subscribers add --name` follows
            except InputError as err:
                # "line 3: invalid name: contains '\x07' (U+0007), a control character"
                on_problem(Problem(start, "invalid name", str(err).removeprefix("name: ")))
                continue
            attrs = {}
            for i, key in extra:
                if i < size and (value := cells[i].strip()):
                    attrs[key] = value
            zone = (
                unguard(cells[zone_col].strip()) if zone_col is not None and size > zone_col else ""
            )
            yield _Row(start, email, name or None, attrs, zone or None)
    except UnicodeDecodeError as err:
        raise InputError(
            f"{source}: not UTF-8 near byte {err.start} (save the file as UTF-8 and retry)"
        ) from err
    except csv.Error as err:
        raise InputError(f"{source}: malformed CSV: {err}") from err
    finally:
        if not raw.closed:
            text.detach()  # the caller owns ``raw``: leave it open (it reports progress from it)


def import_csv(
    sessions: sessionmaker[Session],
    path: Path | str,
    list_slug: str,
    *,
    confirmed: bool = False,
    resubscribe: bool = False,
    on_problem: OnProblem | None = None,
    on_progress: OnProgress | None = None,
) -> ImportReport:
    """Import ``path`` into the list; returns the counts. See the module docstring.

    Reading and validating a chunk (Python) overlaps with writing the previous one (mostly
    the database's time) in a writer thread; chunks are written one at a time, in file
    order, and each one's problems and progress are reported here once it is committed."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    report = ImportReport()
    run = f"import:{path.name[:150]}:{uuid.uuid4().hex[:12]}"

    with sessions() as session:
        mlist = get_list(session, list_slug)
        list_id, double_opt_in = mlist.id, mlist.double_opt_in
        salt = hash_salt(session)
        # a connection per thread (in-memory SQLite): the writer would see another database
        per_thread = isinstance(session.connection().engine.pool, SingletonThreadPool)
        session.commit()
    writer = _ChunkWriter(list_id, confirmed or not double_opt_in, resubscribe, salt, run)

    def store(chunk: _Chunk) -> None:  # in the writer thread
        try:
            if chunk.valid:
                with sessions() as session, session.begin():
                    writer.write(session, chunk)
        finally:
            chunk.inserting.set()

    def finish(job: _Job) -> None:
        """Wait for a chunk's write, then report it: problems in line order, counts, progress."""
        future, chunk = job
        try:
            future.result()
        finally:  # what was found before a failure is reported too
            for p in sorted(chunk.problems, key=lambda p: p.line):
                report.skipped[p.reason] += 1
                if on_problem is not None:
                    on_problem(p)
        report.added += chunk.added
        report.updated += chunk.updated
        report.unchanged += chunk.unchanged
        if on_progress is not None:
            on_progress(*chunk.progress)

    pending: _Job | None = None

    def hand_over(pool: Executor, chunk: _Chunk) -> None:
        nonlocal pending
        previous, pending = pending, None
        if previous is not None:
            finish(previous)
        pending = (pool.submit(store, chunk), chunk)
        # Read on once the writer is past its lookups: Python's work then overlaps the
        # chunk's long INSERT instead of delaying, through the GIL, each lookup's return.
        chunk.inserting.wait()

    pool = InlineExecutor() if per_thread else ThreadPoolExecutor(1, "import-writer")
    with path.open("rb") as raw, pool:
        try:
            rows: list[_Row] = []
            early: list[Problem] = []  # problems found while reading, reported with their chunk
            start = 0  # where the chunk begins in the file
            for row in read_rows(raw, str(path), early.append):
                report.rows += 1
                rows.append(row)
                if len(rows) >= CHUNK or raw.tell() - start >= CHUNK_BYTES:
                    start = raw.tell()
                    hand_over(pool, writer.prepare(rows, early, (start, report.rows)))
                    rows = []
                    early.clear()  # read_rows appends to this very list
            hand_over(pool, writer.prepare(rows, early, (raw.tell(), report.rows)))
        finally:  # also on an error: the chunk being written is committed and reported
            if pending is not None:
                last, pending = pending, None
                finish(last)
    if report.rows >= ANALYZE_AFTER:  # a big import changes the planner's picture
        with sessions.begin() as session:
            if session.get_bind().dialect.name == "postgresql":
                session.execute(text("ANALYZE subscribers, subscriptions, consent_events"))
    return report


@dataclass(slots=True)
class _Chunk:
    """Rows of the file, validated and de-duplicated within the chunk, to be written."""

    valid: dict[str, _Row]  # normalized address -> its row
    hashes: dict[str, str]  # salted hash -> address, for the suppression list
    problems: list[Problem]  # found reading, validating and writing these rows
    progress: tuple[int, int]  # (bytes read, rows seen) when the chunk was cut
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    inserting: threading.Event = field(default_factory=threading.Event)  # past lookups, or done


_Job = tuple[Future[None], _Chunk]


@dataclass
class _ChunkWriter:
    list_id: int
    activate: bool
    resubscribe: bool
    salt: str
    run: str

    def prepare(self, rows: list[_Row], early: list[Problem], progress: tuple[int, int]) -> _Chunk:
        """Validate and de-duplicate the rows: Python only, no database."""
        problems = list(early)
        valid: dict[str, _Row] = {}
        for row in rows:
            address, why = try_normalize(row.email)
            if address is None:
                problems.append(Problem(row.line, "invalid address", (why or row.email)[:300]))
            elif row.time_zone is not None and not _zone(row):
                problems.append(Problem(row.line, "unknown time zone", row.time_zone[:100]))
            elif address in valid:
                problems.append(Problem(row.line, "duplicate in file", address))
            else:
                valid[address] = row
        salt = self.salt
        hashes = {email_hash(salt, a): a for a in valid}
        return _Chunk(valid, hashes, problems, progress)

    def write(self, session: Session, chunk: _Chunk) -> None:
        """Write one chunk in the session's transaction; problems go to ``chunk.problems``."""
        problem = chunk.problems.append
        valid, hashes = chunk.valid, chunk.hashes
        conn = session.connection()
        # 1. suppressed and erased addresses
        blocked = select_in(
            conn,
            select(Suppression.email_hash, Suppression.reason),
            Suppression.email_hash,
            hashes,
            semijoin=True,
        )
        for digest, reason in blocked:
            address = hashes[digest]
            if self.resubscribe:
                continue
            kind = "erased" if reason == SuppressionReason.ERASED else "suppressed"
            problem(Problem(valid.pop(address).line, kind, address))
        # lifted only for rows active at once; pending ones keep it until confirmed
        # (store.subscribe: a suppression covers every list)
        if self.resubscribe and self.activate and blocked:
            conn.execute(
                delete(Suppression).where(Suppression.email_hash.in_([d for d, _ in blocked]))
            )
        if not valid:
            return
        # 2. existing subscribers, and those this run already imported (duplicates)
        people = select(
            Subscriber.id,
            Subscriber.email,
            Subscriber.name,
            Subscriber.attributes,
            Subscriber.time_zone,
        )
        existing = {
            email: (sid, name, attrs, zone)
            for sid, email, name, attrs, zone in select_in(conn, people, Subscriber.email, valid)
        }
        if existing:
            imported_here = select(ConsentEvent.subscriber_id).where(
                ConsentEvent.action == "import", ConsentEvent.source == self.run
            )
            known = [v[0] for v in existing.values()]
            seen = {
                sid for (sid,) in select_in(conn, imported_here, ConsentEvent.subscriber_id, known)
            }
            for email, (sid, _, _, _) in list(existing.items()):
                if sid in seen:
                    problem(Problem(valid.pop(email).line, "duplicate in file", email))
                    del existing[email]
        now = utcnow()
        chunk.inserting.set()  # the reader may go on (see import_csv)
        # 3. new people: subscriber, subscription and ledger event (one statement on PostgreSQL)
        target = SubscriptionStatus.ACTIVE if self.activate else SubscriptionStatus.PENDING
        subscription = {
            "list_id": self.list_id,
            "status": target.value,
            "source": "import",
            "created_at": now,
            "confirmed_at": now if self.activate else None,
        }
        detail: dict[str, Any] = {"status": target.value}
        if self.resubscribe:
            detail["resubscribe"] = True
        event = {
            "list_id": self.list_id,
            "action": "import",
            "source": self.run,
            "detail": detail,
            "created_at": now,
        }
        new = [a for a in valid if a not in existing]
        if new:
            insert_people(
                conn,
                {
                    "email": new,
                    "name": [valid[a].name for a in new],
                    "attributes": [valid[a].attrs for a in new],
                    "time_zone": [valid[a].time_zone for a in new],
                },
                {"created_at": now, "updated_at": now},
                with_each=[(Subscription, subscription), (ConsentEvent, event)],
            )
            chunk.added += len(new)
        if not existing:
            return
        # 4. people known before this chunk: details, subscription (they may have one already)
        changed_people = self._update_people(conn, valid, existing, now)
        theirs = select(Subscription.id, Subscription.subscriber_id, Subscription.status).where(
            Subscription.list_id == self.list_id
        )
        known = [v[0] for v in existing.values()]
        current = {
            sid: (subn_id, status)
            for subn_id, sid, status in select_in(conn, theirs, Subscription.subscriber_id, known)
        }
        to_insert: list[int] = []
        to_update: list[dict[str, Any]] = []
        imported: list[int] = []
        for address, (sid, _, _, _) in existing.items():
            if sid not in current:
                to_insert.append(sid)
                chunk.added += 1
                imported.append(sid)
                continue
            subn_id, status = current[sid]
            if status == SubscriptionStatus.UNSUBSCRIBED and not self.resubscribe:
                problem(Problem(valid[address].line, "unsubscribed", address))
                continue
            imported.append(sid)
            if status == target or status == SubscriptionStatus.ACTIVE:
                if sid in changed_people:
                    chunk.updated += 1
                else:
                    chunk.unchanged += 1
                continue
            to_update.append({"b_id": subn_id, "b_status": target.value, "b_at": now})
            chunk.updated += 1
        if to_insert:
            insert_rows(conn, Subscription, {"subscriber_id": to_insert}, constants=subscription)
        update_by_id(
            conn,
            Subscription,
            to_update,
            status=bindparam("b_status"),
            confirmed_at=bindparam("b_at"),
            unsubscribed_at=None,
            # a status change retires confirm links sent before it (store._set_status)
            consent_version=Subscription.consent_version + 1,
        )
        # 5. their ledger events: one per imported row (also our duplicate detector)
        if imported:
            insert_rows(conn, ConsentEvent, {"subscriber_id": imported}, constants=event)

    def _update_people(
        self,
        conn: Any,
        valid: dict[str, _Row],
        existing: dict[str, tuple[int, str | None, dict[str, Any], str | None]],
        now: Any,
    ) -> set[int]:
        """Update name/attributes/time zone of known people where the file brings something
        new (an empty cell keeps what is held)."""
        changes = []
        for email, (sid, name, attrs, zone) in existing.items():
            row = valid[email]
            merged = {**(attrs or {}), **row.attrs}
            new_name = row.name or name
            new_zone = row.time_zone or zone
            if new_name != name or merged != (attrs or {}) or new_zone != zone:
                changes.append(
                    {
                        "b_id": sid,
                        "b_name": new_name,
                        "b_attrs": merged,
                        "b_zone": new_zone,
                        "b_at": now,
                    }
                )
        update_by_id(
            conn,
            Subscriber,
            changes,
            name=bindparam("b_name"),
            attributes=bindparam("b_attrs"),
            time_zone=bindparam("b_zone"),
            updated_at=bindparam("b_at"),
        )
        return {c["b_id"] for c in changes}
