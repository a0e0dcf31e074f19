"""Which errors mean "the database is away" (answered 503 + Retry-After, not 500).

PostgreSQL down or refusing connections, a locked or unreadable SQLite file, a pool with no
connection left: none of these is a bug in the request or in our code, and the reader (or
SNS, or an API client) should simply come back later. :mod:`mailer.web.errors` maps them;
``/healthz`` says 503 in the same situation.
"""

from __future__ import annotations

from sqlalchemy import exc as sa_exc

__all__ = ["RETRY_AFTER", "UNAVAILABLE_ERRORS", "database_unavailable"]

RETRY_AFTER = 30
"""Seconds a client is asked to wait (the ``Retry-After`` header)."""

UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
    sa_exc.OperationalError,  # connection refused or lost, database is locked, disk I/O
    sa_exc.InterfaceError,  # the driver's connection is closed
    sa_exc.TimeoutError,  # the pool had no connection to give within its timeout
    sa_exc.DisconnectionError,
)


def database_unavailable(err: BaseException) -> bool:
    """True when ``err``, or an error it was raised from or during, says the database cannot
    be reached right now."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, UNAVAILABLE_ERRORS):
            return True
        if isinstance(current, sa_exc.DBAPIError) and current.connection_invalidated:
            return True
        current = current.__cause__ or current.__context__
    return False
