"""Engine and session factory from a URL: SQLite is the embedded default, PostgreSQL what
several workers share. Built on demand, never at import time."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import Executor, Future
from contextlib import contextmanager
from typing import Any, TypeAlias, TypeVar
from urllib.parse import quote

from sqlalchemy import (
    ARRAY,
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
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import QueryableAttribute, Session, sessionmaker
from sqlalchemy.sql import sqltypes

from mailer.errors import ConfigError
from subscribers import pg_options

T = TypeVar("T")
#: what can say which database it talks to
Bind: TypeAlias = Engine | Connection | Session


def normalize_url(url: str) -> str:
    """Map plain ``postgresql://`` / ``postgres://`` to the psycopg 3 driver."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


#: seconds a SQLite statement waits for another writer before "database is locked"
SQLITE_BUSY_TIMEOUT = 30.0
#: seconds a PostgreSQL session may sit idle inside a transaction before the server ends it
#: (MAILER_DB_IDLE_TIMEOUT): a worker whose host vanished mid-transaction would otherwise
#: hold its row locks (claims, the fence's FOR UPDATE) until TCP gives up, hours later
PG_IDLE_IN_TRANSACTION_TIMEOUT = 600.0


def make_engine(
    url: str,
    *,
    create: bool = True,
    open_timeout: float | None = None,
    idle_timeout: float = PG_IDLE_IN_TRANSACTION_TIMEOUT,
    **kwargs: Any,
) -> Engine:
    """Create an engine; SQLite gets WAL, foreign keys and a busy timeout.

    ``create=False`` opens a SQLite file only if it is there (a ``mode=rw`` URI): a command
    pointed at a wrong path, or run before ``mailer init``, fails instead of leaving an
    empty database behind. ``open_timeout`` is how long connecting may wait for the
    database (a SQLite file another process holds exclusively, a PostgreSQL server that
    does not answer); SQLite statements then still wait ``SQLITE_BUSY_TIMEOUT`` for another
    writer, as they do without it. ``idle_timeout`` (PostgreSQL; 0: none) is the server's
    ``idle_in_transaction_session_timeout`` for every connection, so the locks of a session
    whose client vanished mid-transaction are released.
    """
    try:
        parsed = make_url(normalize_url(url))
    except ArgumentError as err:
        raise ConfigError(f"MAILER_DATABASE_URL: cannot parse {url!r}") from err
    connect_args = dict(kwargs.pop("connect_args", {}))
    if parsed.get_backend_name() == "sqlite":
        if open_timeout is not None:
            connect_args["timeout"] = open_timeout
        connect_args.setdefault("timeout", SQLITE_BUSY_TIMEOUT)
        engine = create_engine(parsed, connect_args=connect_args, **kwargs)
        busy = SQLITE_BUSY_TIMEOUT if open_timeout is not None else None
        event.listen(engine, "connect", _sqlite_pragmas(busy))
        if not create:
            event.listen(engine, "do_connect", _sqlite_existing_only)
        return engine
    if open_timeout is not None and parsed.get_backend_name() == "postgresql":
        connect_args["connect_timeout"] = max(2, math.ceil(open_timeout))  # libpq: whole s
    if idle_timeout > 0 and parsed.get_backend_name() == "postgresql":
        connect_args["options"] = _with_idle_timeout(
            connect_args.get("options", parsed.query.get("options", "")), idle_timeout
        )
    kwargs.setdefault("pool_pre_ping", True)
    try:
        engine = create_engine(parsed, connect_args=connect_args, **kwargs)
    except Exception as err:  # missing driver, bad option
        raise ConfigError(f"MAILER_DATABASE_URL: {err}") from err
    if engine.dialect.name == "postgresql":
        pg_options.use_postgresql()  # its dialect is loaded now: the partial indexes' WHERE
    return engine


def _with_idle_timeout(options: object, seconds: float) -> str:
    """libpq ``options`` with ``idle_in_transaction_session_timeout`` (milliseconds) added;
    one the URL or caller set already is kept (theirs is the later, winning ``-c``)."""
    given = " ".join(options) if isinstance(options, tuple) else str(options or "")
    ours = f"-c idle_in_transaction_session_timeout={max(1, round(seconds * 1000))}"
    return f"{ours} {given}".strip()


def _sqlite_pragmas(busy_timeout: float | None) -> Callable[[Any, Any], None]:
    """The connect hook: pragmas every connection needs, then (when the connection was
    opened with a shorter wait) the busy timeout its statements get."""

    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        if busy_timeout is not None:
            cur.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        cur.close()

    return on_connect


def _sqlite_existing_only(
    _dialect: Dialect, _record: Any, cargs: list[Any], cparams: dict[str, Any]
) -> None:
    """Open the SQLite file as a ``mode=rw`` URI, which fails where there is no file
    (a URL that is a URI already, or an in-memory database, is left as it is)."""
    if cparams.get("uri") or not cargs or cargs[0] in ("", ":memory:"):
        return
    cargs[0] = f"file:{quote(str(cargs[0]))}?mode=rw"
    cparams["uri"] = True


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
        from sqlalchemy.dialects.postgresql import JSONB  # loaded: the bind is PostgreSQL

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
