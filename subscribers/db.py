"""Engine and session factory from a URL: SQLite is the embedded default, PostgreSQL what
several workers share. Built on demand, never at import time."""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import Executor, Future
from contextlib import contextmanager
from typing import Any, TypeAlias, TypeVar

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    Dialect,
    Engine,
    any_,
    bindparam,
    cast,
    create_engine,
    event,
    func,
    literal,
    select,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import QueryableAttribute, Session, sessionmaker
from sqlalchemy.sql import sqltypes

from mailer.errors import ConfigError

T = TypeVar("T")
#: what can say which database it talks to
Bind: TypeAlias = Engine | Connection | Session


def normalize_url(url: str) -> str:
    """Map plain ``postgresql://`` / ``postgres://`` to the psycopg 3 driver."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine; SQLite gets WAL, foreign keys and a busy timeout."""
    try:
        parsed = make_url(normalize_url(url))
    except ArgumentError as err:
        raise ConfigError(f"MAILER_DATABASE_URL: cannot parse {url!r}") from err
    if parsed.get_backend_name() == "sqlite":
        kwargs.setdefault("connect_args", {"timeout": 30})
        engine = create_engine(parsed, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    try:
        return create_engine(parsed, **kwargs)
    except Exception as err:  # missing driver, bad option
        raise ConfigError(f"MAILER_DATABASE_URL: {err}") from err


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def is_sqlite(bind: Bind) -> bool:
    """True on SQLite: one writer at a time, no row locks, no arrays. The one place that
    asks a database which it is (a session asks the engine or connection it is bound to)."""
    return _dialect(bind).name == "sqlite"


def id_in(
    column: QueryableAttribute[Any],
    ids: Collection[Any],
    bind: Bind,
    *,
    as_json: bool = False,
    semijoin: bool = False,
) -> ColumnElement[bool]:
    """``column IN ids``, in the shape each database plans best.

    Default (integer ids, a batch of at most a few thousand): SQLite gets an IN list;
    PostgreSQL ``column = ANY(:ids)`` with the ids as one bigint array parameter, so the
    statement is the same for every batch (an IN list of 1,000 placeholders was re-parsed by
    the driver for each one).

    ``as_json`` (strings or numbers, any count: the importer's chunks): the values travel as
    one JSON array parameter, taken apart by the database (SQLite ``json_each``, PostgreSQL
    ``jsonb_array_elements_text`` cast to the column's type). On PostgreSQL that is ``=
    ANY(ARRAY(subquery))``, an index condition whatever the table's statistics say (IN
    (subquery) was planned as a scan of the whole ledger while it grew during an import).
    Where the table is small that is a sequential scan testing every row against every
    value (13 ms a chunk on 400 suppressions), so a table that does not grow meanwhile (the
    suppression list) is asked with ``semijoin``: IN (subquery), which the planner hashes
    for a small table and probes by index for a big one. Another database gets a plain IN.
    """
    if not as_json:
        if is_sqlite(bind):
            return column.in_(ids)
        return column == any_(bindparam(None, list(ids), type_=ARRAY(BigInteger)))
    name = _dialect(bind).name
    doc = literal(json.dumps(list(ids)))
    if name == "sqlite":
        return column.in_(select(func.json_each(doc).table_valued("value").c.value))
    if name == "postgresql":
        value: ColumnElement[Any] = (
            func.jsonb_array_elements_text(cast(doc, JSONB)).table_valued("value").c.value
        )
        if not isinstance(column.type, sqltypes.String):  # text compares with varchar
            value = cast(value, column.type)
        if semijoin:
            return column.in_(select(value))
        return column == any_(func.array(select(value).scalar_subquery()))
    return column.in_(list(ids))


def _dialect(bind: Bind) -> Dialect:
    if isinstance(bind, Session):
        bind = bind.get_bind()
    return bind.dialect


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any error."""
    with factory() as session, session.begin():
        yield session


class InlineExecutor(Executor):
    """Runs each job at once, on the calling thread, its result or error in the future.

    For a database that takes one writer at a time (SQLite), or one connection per thread
    (in-memory SQLite): where a writer thread would only queue for the lock, or see another
    database, the same code writes in turn instead."""

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        future: Future[T] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as err:  # handed over like a worker thread's error
            future.set_exception(err)
        return future
