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
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from sqlalchemy import bindparam, delete, insert, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from mailer.errors import InputError
from subscribers.addresses import try_normalize
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


@dataclass
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
            if not cells or not any(c.strip() for c in cells):
                continue
            if len(cells) <= email_col or not cells[email_col].strip():
                on_problem(Problem(start, "missing address", ",".join(cells)[:200]))
                continue
            name = cells[name_col].strip() if name_col is not None and name_col < len(cells) else ""
            attrs = {n: cells[i].strip() for i, n in extra if i < len(cells) and cells[i].strip()}
            yield _Row(start, cells[email_col].strip(), name[:200] or None, attrs)
    except UnicodeDecodeError as err:
        raise InputError(
            f"{source}: not UTF-8 near byte {err.start} (save the file as UTF-8 and retry)"
        ) from err
    except csv.Error as err:
        raise InputError(f"{source}: malformed CSV: {err}") from err


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
        blocked = conn.execute(
            select(Suppression.email_hash, Suppression.reason).where(
                Suppression.email_hash.in_(hashes)
            )
        ).all()
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
        existing = {
            email: (sid, name, attrs)
            for sid, email, name, attrs in conn.execute(
                select(
                    Subscriber.id, Subscriber.email, Subscriber.name, Subscriber.attributes
                ).where(Subscriber.email.in_(valid))
            )
        }
        if existing:
            seen = set(
                conn.scalars(
                    select(ConsentEvent.subscriber_id).where(
                        ConsentEvent.action == "import",
                        ConsentEvent.source == self.run,
                        ConsentEvent.subscriber_id.in_([v[0] for v in existing.values()]),
                    )
                )
            )
            for email, (sid, _, _) in list(existing.items()):
                if sid in seen:
                    problem(Problem(valid.pop(email).line, "duplicate in file", email))
                    del existing[email]
        now = utcnow()
        # 4. new subscribers
        new = [a for a in valid if a not in existing]
        ids: dict[str, int] = {e: v[0] for e, v in existing.items()}
        if new:
            inserted = conn.execute(
                insert(Subscriber).returning(Subscriber.id, Subscriber.email),
                [
                    {
                        "email": a,
                        "name": valid[a].name,
                        "attributes": valid[a].attrs,
                        "created_at": now,
                        "updated_at": now,
                    }
                    for a in new
                ],
            )
            ids.update({email: sid for sid, email in inserted})
        changed_people = self._update_people(conn, valid, existing, now)
        # 5. subscriptions
        current = {
            sid: (subn_id, status)
            for subn_id, sid, status in conn.execute(
                select(Subscription.id, Subscription.subscriber_id, Subscription.status).where(
                    Subscription.list_id == self.list_id,
                    Subscription.subscriber_id.in_(list(ids.values())),
                )
            )
        }
        target = SubscriptionStatus.ACTIVE if self.activate else SubscriptionStatus.PENDING
        to_insert: list[dict[str, Any]] = []
        to_update: list[dict[str, Any]] = []
        imported: list[int] = []
        for address, row in valid.items():
            sid = ids[address]
            if sid not in current:
                to_insert.append(
                    {
                        "subscriber_id": sid,
                        "list_id": self.list_id,
                        "status": target.value,
                        "source": "import",
                        "created_at": now,
                        "confirmed_at": now if self.activate else None,
                    }
                )
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
            conn.execute(insert(Subscription), to_insert)
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
            conn.execute(
                insert(ConsentEvent),
                [
                    {
                        "subscriber_id": sid,
                        "list_id": self.list_id,
                        "action": "import",
                        "source": self.run,
                        "detail": {"status": target.value}
                        if not self.resubscribe
                        else {"status": target.value, "resubscribe": True},
                        "created_at": now,
                    }
                    for sid in imported
                ],
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
