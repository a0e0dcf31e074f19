"""What a database driver's error means to the person who ran the command.

A driver error is many lines (SQL, parameters, a link) and names a symptom ("no such
table", "Connection refused"); the operator needs the cause and what to do next.
:func:`explain` turns one into a MailerError of a single line:

- the schema is not there (a new SQLite file, an empty database): ``ConflictError``
  "database not initialised: run `mailer init`";
- the server cannot be reached (nobody listening, no such database, login refused) or a
  SQLite file cannot be opened: ``UnavailableError`` "cannot reach the database at ...";
- another process holds a SQLite file locked: ``UnavailableError`` "the database is
  locked by another process (...)";
- a file that is not a database: ``ConfigError``; anything else: ``StoreError`` with the
  driver's first line.

It does not change what the store raises (the send engine waits out a lost connection by
catching the driver's errors); entrances call it where an error is about to reach a user.
"""

from __future__ import annotations

import os

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, InterfaceError, OperationalError

from mailer.errors import ConfigError, ConflictError, MailerError, StoreError, UnavailableError
from subscribers.db import normalize_url

__all__ = ["INIT_HINT", "explain"]

INIT_HINT = "database not initialised: run `mailer init`"

# PostgreSQL SQLSTATEs: undefined_table, invalid_schema_name / undefined_column.
_NO_SCHEMA = frozenset({"42P01", "3F000"})
_OLD_SCHEMA = frozenset({"42703"})
# ... and the classes that mean the connection is not there: connection exception,
# operator intervention (shut down, terminated), invalid catalog, invalid authorization.
_AWAY_CLASSES = ("08", "57", "3D", "28")


def explain(err: DBAPIError, url: str, *, waited: float | None = None) -> MailerError:
    """The one-line error for ``err``, raised by an engine on ``url``; ``waited`` is how
    long connecting was allowed to wait (named when a lock outlasted it while connecting)."""
    try:
        parsed = make_url(normalize_url(url))
    except ArgumentError:
        return StoreError(f"database error: {_first_line(err.orig)}")
    if parsed.get_backend_name() == "sqlite":
        return _explain_sqlite(err, parsed, waited)
    return _explain_server(err, parsed)


def _explain_sqlite(err: DBAPIError, url: URL, waited: float | None) -> MailerError:
    path = _sqlite_path(url)
    message = _first_line(err.orig)
    code = str(getattr(err.orig, "sqlite_errorname", ""))
    if code.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "database is locked" in message:
        connecting = err.statement is None  # else it waited a statement's busy timeout
        after = f"; gave up after {waited:g} s" if connecting and waited is not None else ""
        return UnavailableError(
            f"the database is locked by another process ({path}{after}): "
            "try again when it has finished"
        )
    if code.startswith("SQLITE_CANTOPEN"):
        if path != ":memory:" and not os.path.exists(path):
            return ConflictError(f"{INIT_HINT} (there is no file {path})")
        return UnavailableError(f"cannot reach the database at {path}: {message}")
    if code.startswith("SQLITE_NOTADB"):
        return ConfigError(f"MAILER_DATABASE_URL: {path} is not a SQLite database ({message})")
    if message.startswith("no such table"):
        return ConflictError(f"{INIT_HINT} ({path}: {message})")
    if message.startswith("no such column"):
        return ConflictError(f"database schema is out of date: run `mailer init` ({message})")
    return StoreError(f"database error ({path}): {message}")


def _explain_server(err: DBAPIError, url: URL) -> MailerError:
    target = _server(url)
    sqlstate = str(getattr(err.orig, "sqlstate", "") or "")
    message = _first_line(err.orig)
    if sqlstate in _NO_SCHEMA:
        return ConflictError(f"{INIT_HINT} ({target}/{url.database}: {message})")
    if sqlstate in _OLD_SCHEMA:
        return ConflictError(f"database schema is out of date: run `mailer init` ({message})")
    connecting = err.statement is None or err.connection_invalidated
    if (
        connecting
        or isinstance(err, InterfaceError)
        or (isinstance(err, OperationalError) and (not sqlstate or sqlstate[:2] in _AWAY_CLASSES))
    ):
        return UnavailableError(f"cannot reach the database at {target}: {_reason(message)}")
    return StoreError(f"database error: {message}")


def _sqlite_path(url: URL) -> str:
    name = url.database or ":memory:"
    return name if name == ":memory:" or name.startswith("file:") else os.path.abspath(name)


def _server(url: URL) -> str:
    """HOST:PORT as libpq would use them (no host: the local socket)."""
    default_port = {"postgresql": 5432, "mysql": 3306}.get(url.get_backend_name())
    host = url.host or "localhost"
    port = url.port or default_port
    return f"{host}:{port}" if port else host


def _first_line(orig: BaseException | None) -> str:
    text = str(orig or "").strip()
    return text.splitlines()[0].strip() if text else type(orig).__name__


def _reason(message: str) -> str:
    """libpq's reason without its preamble: 'connection failed: connection to server at
    "h", port p failed: FATAL:  database "x" does not exist' -> 'database "x" does not exist'."""
    reason = message.rpartition("failed: ")[2] or message
    return reason.removeprefix("FATAL:").strip()
