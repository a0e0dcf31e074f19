"""CSV import that streams: constant memory on any file size, every bad row reported.

The file needs a header row with an ``email`` column; ``name`` is optional and every other
column is kept as a subscriber attribute. UTF-8 with or without BOM; ``,`` ``;`` or tab
separated (taken from the header line). Rows are validated in Python and written in chunks
with set-based statements, one transaction per chunk; a row that is bad (invalid address,
duplicate in the file, suppressed, erased, unsubscribed) is skipped and reported with its
line number, and never stops the import.

Duplicates across chunks are found through the consent ledger (each imported row writes an
``import`` event tagged with this run), so memory does not grow with the file.
"""

from __future__ import annotations

import csv
import io
import json
import re
import uuid
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain, repeat
from pathlib import Path
from typing import IO, Any, TypeVarTuple

from sqlalchemy import (
    Column,
    ColumnElement,
    Connection,
    Dialect,
    Row,
    Select,
    Table,
    any_,
    bindparam,
    cast,
    delete,
    func,
    insert,
    literal,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import QueryableAttribute, Session, sessionmaker
from sqlalchemy.sql import sqltypes

from mailer.errors import InputError
from subscribers.addresses import try_normalize
from subscribers.models import (
    Base,
    ConsentEvent,
    Subscriber,
    Subscription,
    SubscriptionStatus,
    Suppression,
    SuppressionReason,
    utcnow,
)
from subscribers.store import email_hash, get_list, hash_salt

CHUNK = 2000
EMAIL_HEADERS = ("email", "e-mail", "email address", "email_address", "mail")


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
        extra = [(i, n) for i, n in enumerate(names) if i not in (email_col, name_col) and n]
        reader = csv.reader(text, delimiter=delimiter)
        end = 1  # physical line where the previous record ended (the header)
        for cells in reader:
            start, end = end + 1, reader.line_num + 1  # a quoted newline spans lines
            size = len(cells)
            email = cells[email_col].strip() if size > email_col else ""
            if not email:
                if any(c.strip() for c in cells):  # else a blank line: ignored
                    on_problem(Problem(start, "missing address", ",".join(cells)[:200]))
                continue
            if any("\x00" in c for c in cells):  # no database stores NUL in text
                on_problem(Problem(start, "invalid characters", "a cell contains a NUL byte"))
                continue
            name = cells[name_col].strip()[:200] if name_col is not None and size > name_col else ""
            attrs = {}
            for i, key in extra:
                if i < size and (value := cells[i].strip()):
                    attrs[key] = value
            yield _Row(start, email, name or None, attrs)
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
    """Import ``path`` into the list; returns the counts. See the module docstring."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    report = ImportReport()
    run = f"import:{path.name[:150]}:{uuid.uuid4().hex[:12]}"

    def problem(p: Problem) -> None:
        report.skipped[p.reason] += 1
        if on_problem is not None:
            on_problem(p)

    with sessions() as session:
        mlist = get_list(session, list_slug)
        list_id, double_opt_in = mlist.id, mlist.double_opt_in
        salt = hash_salt(session)
        session.commit()
    writer = _ChunkWriter(list_id, confirmed or not double_opt_in, resubscribe, salt, run)
    early: list[Problem] = []  # problems found while reading, reported with their chunk

    def flush(chunk: list[_Row]) -> None:
        with sessions() as session, session.begin():
            writer.write(session, chunk, report, problem, early)
        early.clear()

    with path.open("rb") as raw:
        chunk: list[_Row] = []
        for row in read_rows(raw, str(path), early.append):
            report.rows += 1
            chunk.append(row)
            if len(chunk) >= CHUNK:
                flush(chunk)
                chunk = []
                if on_progress is not None:
                    on_progress(raw.tell(), report.rows)
        flush(chunk)
        if on_progress is not None:
            on_progress(raw.tell(), report.rows)
    if report.rows >= 10 * CHUNK:  # a big import changes the planner's picture
        with sessions.begin() as session:
            if session.get_bind().dialect.name == "postgresql":
                session.execute(text("ANALYZE subscribers, subscriptions, consent_events"))
    return report


@dataclass
class _ChunkWriter:
    list_id: int
    activate: bool
    resubscribe: bool
    salt: str
    run: str

    def write(
        self,
        session: Session,
        rows: list[_Row],
        report: ImportReport,
        report_problem: OnProblem,
        early: list[Problem],
    ) -> None:
        """Write one chunk; its problems (and those found reading it) go out in line order."""
        found = list(early)
        try:
            if rows:
                self._write(session, rows, report, found.append)
        finally:
            for p in sorted(found, key=lambda p: p.line):
                report_problem(p)

    def _write(
        self, session: Session, rows: list[_Row], report: ImportReport, problem: OnProblem
    ) -> None:
        # 1. validate and de-duplicate within the chunk
        valid: dict[str, _Row] = {}
        for row in rows:
            address, why = try_normalize(row.email)
            if address is None:
                problem(Problem(row.line, "invalid address", (why or row.email)[:300]))
                continue
            if address in valid:
                problem(Problem(row.line, "duplicate in file", address))
                continue
            valid[address] = row
        if not valid:
            return
        conn = session.connection()
        # 2. suppressed and erased addresses
        hashes = {email_hash(self.salt, a): a for a in valid}
        blocked = _select_in(
            conn, select(Suppression.email_hash, Suppression.reason), Suppression.email_hash, hashes
        )
        for digest, reason in blocked:
            address = hashes[digest]
            if self.resubscribe:
                continue
            kind = "erased" if reason == SuppressionReason.ERASED else "suppressed"
            problem(Problem(valid.pop(address).line, kind, address))
        if self.resubscribe and blocked:
            conn.execute(
                delete(Suppression).where(Suppression.email_hash.in_([d for d, _ in blocked]))
            )
        if not valid:
            return
        # 3. existing subscribers, and those this run already imported (duplicates)
        people = select(Subscriber.id, Subscriber.email, Subscriber.name, Subscriber.attributes)
        existing = {
            email: (sid, name, attrs)
            for sid, email, name, attrs in _select_in(conn, people, Subscriber.email, valid)
        }
        if existing:
            imported_here = select(ConsentEvent.subscriber_id).where(
                ConsentEvent.action == "import", ConsentEvent.source == self.run
            )
            known = [v[0] for v in existing.values()]
            seen = {
                sid for (sid,) in _select_in(conn, imported_here, ConsentEvent.subscriber_id, known)
            }
            for email, (sid, _, _) in list(existing.items()):
                if sid in seen:
                    problem(Problem(valid.pop(email).line, "duplicate in file", email))
                    del existing[email]
        now = utcnow()
        # 4. new subscribers
        new = [a for a in valid if a not in existing]
        ids: dict[str, int] = {e: v[0] for e, v in existing.items()}
        if new:
            inserted = _insert_rows(
                conn,
                Subscriber,
                {
                    "email": new,
                    "name": [valid[a].name for a in new],
                    "attributes": [valid[a].attrs for a in new],
                },
                constants={"created_at": now, "updated_at": now},
                returning=("id", "email"),
            )
            ids.update({email: sid for sid, email in inserted})  # (id, email) rows
        changed_people = self._update_people(conn, valid, existing, now)
        # 5. subscriptions (only people known before this chunk can have one already)
        current: dict[int, tuple[int, str]] = {}
        if existing:
            theirs = select(Subscription.id, Subscription.subscriber_id, Subscription.status).where(
                Subscription.list_id == self.list_id
            )
            known = [v[0] for v in existing.values()]
            current = {
                sid: (subn_id, status)
                for subn_id, sid, status in _select_in(
                    conn, theirs, Subscription.subscriber_id, known
                )
            }
        target = SubscriptionStatus.ACTIVE if self.activate else SubscriptionStatus.PENDING
        to_insert: list[int] = []
        to_update: list[dict[str, Any]] = []
        imported: list[int] = []
        for address, row in valid.items():
            sid = ids[address]
            if sid not in current:
                to_insert.append(sid)
                report.added += 1
                imported.append(sid)
                continue
            subn_id, status = current[sid]
            if status == SubscriptionStatus.UNSUBSCRIBED and not self.resubscribe:
                problem(Problem(row.line, "unsubscribed", address))
                continue
            imported.append(sid)
            if status == target or status == SubscriptionStatus.ACTIVE:
                if sid in changed_people:
                    report.updated += 1
                else:
                    report.unchanged += 1
                continue
            to_update.append({"b_id": subn_id, "b_status": target.value, "b_at": now})
            report.updated += 1
        if to_insert:
            _insert_rows(
                conn,
                Subscription,
                {"subscriber_id": to_insert},
                constants={
                    "list_id": self.list_id,
                    "status": target.value,
                    "source": "import",
                    "created_at": now,
                    "confirmed_at": now if self.activate else None,
                },
            )
        if to_update:
            conn.execute(
                update(Subscription)
                .where(Subscription.id == bindparam("b_id"))
                .values(
                    status=bindparam("b_status"),
                    confirmed_at=bindparam("b_at"),
                    unsubscribed_at=None,
                ),
                to_update,
            )
        # 6. the consent ledger: one event per imported row (also our duplicate detector)
        if imported:
            detail: dict[str, Any] = {"status": target.value}
            if self.resubscribe:
                detail["resubscribe"] = True
            _insert_rows(
                conn,
                ConsentEvent,
                {"subscriber_id": imported},
                constants={
                    "list_id": self.list_id,
                    "action": "import",
                    "source": self.run,
                    "detail": detail,
                    "created_at": now,
                },
            )

    def _update_people(
        self,
        conn: Any,
        valid: dict[str, _Row],
        existing: dict[str, tuple[int, str | None, dict[str, Any]]],
        now: Any,
    ) -> set[int]:
        """Update name/attributes of known people where the file brings something new."""
        changes = []
        for email, (sid, name, attrs) in existing.items():
            row = valid[email]
            merged = {**(attrs or {}), **row.attrs}
            new_name = row.name or name
            if new_name != name or merged != (attrs or {}):
                changes.append({"b_id": sid, "b_name": new_name, "b_attrs": merged, "b_at": now})
        if changes:
            conn.execute(
                update(Subscriber)
                .where(Subscriber.id == bindparam("b_id"))
                .values(
                    name=bindparam("b_name"),
                    attributes=bindparam("b_attrs"),
                    updated_at=bindparam("b_at"),
                ),
                changes,
            )
        return {c["b_id"] for c in changes}


# -- bulk statements: the import's hot path ----------------------------------------------
#
# Core's executemany spends most of its time on bookkeeping per parameter, and an IN list or
# a multi-row VALUES whose length changes is a new statement to prepare (and to cache) each
# time. So the hot statements are sent in few statements of a fixed shape. The rows' values
# are what the importer makes (str, int, None, dicts for JSON columns); the values the same
# for every row (times, list, status) are bound through their column type, as Core does.
#   PostgreSQL: each column's values as one JSON array parameter, expanded by the server
#     (ROWS FROM jsonb_array_elements...): psycopg adapts one string far faster than a list.
#   Others: multi-row VALUES in power-of-two sizes, each value through its column type's
#     bind processor (Core executemany if the driver takes neither ? nor %s); IN lists as
#     one JSON array on SQLite (json_each), a plain IN list elsewhere.

_MARKS = {"qmark": "?", "format": "%s", "pyformat": "%s"}
_Ts = TypeVarTuple("_Ts")


def _insert_rows(
    conn: Connection,
    model: type[Base],
    columns: Mapping[str, Sequence[Any]],
    *,
    constants: Mapping[str, Any],
    returning: Sequence[str] = (),
) -> list[Sequence[Any]]:
    """INSERT one row per position in ``columns`` (name -> that column's values, all the
    same length) with ``constants`` (the same in every row); returns the raw ``returning``
    columns of the inserted rows, in no particular order."""
    table = model.__table__
    assert isinstance(table, Table)
    count = len(next(iter(columns.values())))
    if not count:
        return []
    dialect = conn.dialect
    fixed = [_bind(table.c[name], dialect, v) for name, v in constants.items()]
    prep = dialect.identifier_preparer
    names = ", ".join(prep.quote(n) for n in [*columns, *constants])
    head = f"INSERT INTO {prep.format_table(table)} ({names}) "
    tail = f" RETURNING {', '.join(prep.quote(c) for c in returning)}" if returning else ""
    if dialect.name == "postgresql":
        picks, sources = [], []
        for i, name in enumerate(columns):
            json_column = isinstance(table.c[name].type.dialect_impl(dialect), sqltypes.JSON)
            each = "jsonb_array_elements" if json_column else "jsonb_array_elements_text"
            sources.append(f"{each}(%s::jsonb)")
            picks.append(f"c{i}::{_sql_type(table.c[name], dialect)}")
        picks += [f"%s::{_sql_type(table.c[c], dialect)}" for c in constants]
        aliases = ", ".join(f"c{i}" for i in range(len(columns)))
        # identifiers and types come from the models (quoted); every value is a parameter
        sql = (
            f"{head}SELECT {', '.join(picks)}"  # noqa: S608
            f" FROM ROWS FROM ({', '.join(sources)}) AS u({aliases}){tail}"
        )
        docs = [json.dumps(list(values)) for values in columns.values()]
        result = conn.exec_driver_sql(sql, (*fixed, *docs))
        return list(result.all()) if returning else []
    mark = _MARKS.get(dialect.paramstyle)
    if mark is None:  # another driver: plain Core executemany
        params = [
            {**dict(zip(columns, cells, strict=True)), **constants}
            for cells in zip(*columns.values(), strict=True)
        ]
        if not returning:
            conn.execute(insert(table), params)
            return []
        stmt = insert(table).returning(*(table.c[c] for c in returning))
        return list(conn.execute(stmt, params).all())
    arrays = []
    for name, values in columns.items():
        proc = _processor(table.c[name], dialect)
        arrays.append(values if proc is None else [proc(v) for v in values])
    width = len(columns) + len(constants)
    group = "(" + ", ".join([mark] * width) + ")"
    most = min(dialect.insertmanyvalues_page_size, dialect.insertmanyvalues_max_parameters // width)
    rows: list[Sequence[Any]] = []
    for start, size in _pages(count, max(1, most)):
        page = zip(
            *(a[start : start + size] for a in arrays),
            *(repeat(v, size) for v in fixed),
            strict=True,
        )
        sql = f"{head}VALUES {', '.join([group] * size)}{tail}"
        result = conn.exec_driver_sql(sql, tuple(chain.from_iterable(page)))
        if returning:
            rows.extend(result.all())
    return rows


def _pages(total: int, most: int) -> Iterator[tuple[int, int]]:
    """(start, size) covering ``total`` items in sizes that are powers of two up to ``most``,
    so a few statement shapes serve every chunk."""
    start, top = 0, 1 << (most.bit_length() - 1)
    while start < total:
        size = top
        while size > total - start:
            size >>= 1
        yield start, size
        start += size


def _select_in(
    conn: Connection,
    query: Select[*_Ts],
    column: QueryableAttribute[Any],
    values: Collection[Any],
) -> list[Row[*_Ts]]:
    """The rows of ``query`` where ``column`` is one of ``values`` (strings or numbers)."""
    return list(conn.execute(query.where(_in(conn, column, values))))


def _in(
    conn: Connection, column: QueryableAttribute[Any], values: Collection[Any]
) -> ColumnElement[bool]:
    """``column IN values`` with the values as one JSON array parameter where the database
    can expand it (one statement shape for any number of values)."""
    dialect = conn.dialect.name
    doc = literal(json.dumps(list(values)))
    if dialect == "sqlite":
        return column.in_(select(func.json_each(doc).table_valued("value").c.value))
    if dialect == "postgresql":
        # = ANY(ARRAY(subquery)) is an index condition whatever the table's statistics say
        # (IN (subquery) was planned as a scan of the whole ledger while it grew)
        value: ColumnElement[Any] = (
            func.jsonb_array_elements_text(cast(doc, JSONB)).table_valued("value").c.value
        )
        if not isinstance(column.type, sqltypes.String):  # text compares with varchar
            value = cast(value, column.type)
        return column == any_(func.array(select(value).scalar_subquery()))
    return column.in_(list(values))


def _processor(column: Column[Any], dialect: Dialect) -> Callable[[Any], Any] | None:
    proc: Callable[[Any], Any] | None = column.type.dialect_impl(dialect).bind_processor(dialect)
    return proc


def _bind(column: Column[Any], dialect: Dialect, value: Any) -> Any:
    """``value`` as the driver should receive it for ``column``."""
    proc = _processor(column, dialect)
    return value if proc is None else proc(value)


def _sql_type(column: Column[Any], dialect: Dialect) -> str:
    """The column's SQL type for a cast; no length, so an overlong value still fails."""
    return re.sub(r"\(\d+\)$", "", column.type.dialect_impl(dialect).compile(dialect=dialect))
