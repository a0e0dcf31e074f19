"""PostgreSQL's own parts of the schema and its own SQL, without loading its dialect first.

Naming ``postgresql_where=`` on an ``Index``, or ``JSONB`` on a column, imports SQLAlchemy's
PostgreSQL dialect as the models are imported, and with it asyncio (its asyncpg module):
~30 ms of every command's start-up on a SQLite store, which never uses it (issue 17; 0.335 s
against 0.303 s for ``import sqlalchemy.orm, typer, rich`` with and without it). So:

* a partial index names its PostgreSQL WHERE here (:func:`postgresql_where`), and
  :func:`subscribers.db.make_engine` applies every one (:func:`use_postgresql`) when it makes
  a PostgreSQL engine, before DDL, a migration or a schema comparison can read them;
* JSON columns are :class:`JSONDocument`: JSONB on PostgreSQL, JSON elsewhere;
* :func:`insert_for` is the dialect's ``INSERT ... ON CONFLICT`` construct for a bind.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import JSON, Index
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement, TextClause
from sqlalchemy.types import TypeDecorator, TypeEngine

#: a WHERE clause: SQL text or an expression
Where = TextClause | ColumnElement[bool]
_WHERE: list[tuple[Index, Where]] = []
_in_use = False  # a PostgreSQL engine was made: apply each WHERE as it is declared


def postgresql_where(index: Index, where: Where) -> Index:
    """``index`` with ``where`` as its PostgreSQL WHERE clause (a partial index), applied
    once PostgreSQL is in use."""
    _WHERE.append((index, where))
    if _in_use:
        _apply(index, where)
    return index


def use_postgresql() -> None:
    """PostgreSQL's dialect is loaded (an engine for it was made): give every partial index
    its WHERE clause, and any declared from now on too."""
    global _in_use
    _in_use = True
    for index, where in _WHERE:
        _apply(index, where)


def _apply(index: Index, where: Where) -> None:
    if index.dialect_options["postgresql"]["where"] is None:
        index.dialect_kwargs["postgresql_where"] = where


class JSONDocument(TypeDecorator[Any]):
    """A JSON column: JSONB on PostgreSQL (imported there only), JSON elsewhere."""

    impl = JSON
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import JSONB

            return dialect.type_descriptor(JSONB())
        return dialect.type_descriptor(JSON())


def insert_for(session: Session) -> Callable[..., Any]:
    """The ``insert`` of the session's dialect (with ``on_conflict_do_nothing``/``_update``)."""
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert
