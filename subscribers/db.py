"""Engine and session factory from a URL: SQLite is the embedded default, PostgreSQL what
several workers share. Built on demand, never at import time."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session, sessionmaker

from mailer.errors import ConfigError

T = TypeVar("T")


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


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


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
