"""Bulk statements on PostgreSQL and SQLite: the CSV import's hot path, and the per-row
updates of the import and the send ledger.

Core's executemany spends most of its time on bookkeeping per parameter, and an IN list or
a multi-row VALUES whose length changes is a new statement to prepare (and to cache) each
time. So the hot statements are few, of a fixed shape, with the rows as JSON documents the
database takes apart itself. The rows' values are what the importer makes (str, int, None,
dicts for JSON columns); the values the same for every row (times, list, status) are bound
through their column type, as Core does.

- PostgreSQL: each column's values as one JSON array parameter, expanded by the server
  (ROWS FROM jsonb_array_elements...): psycopg adapts one string far faster than a list.
  New subscribers, their subscriptions and ledger events in one statement (CTEs).
- SQLite: the rows as one JSON array of arrays (json_each, json_extract); IN lists as one
  JSON array (json_each).
- Others (and a driver taking neither ? nor %s): Core executemany, a plain IN list.

Split from :mod:`subscribers.importer`, which decides what to write; this module only
knows how to write many rows at once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, TypeVarTuple

from sqlalchemy import Column, Connection, Dialect, Row, Select, Table, bindparam, insert, update
from sqlalchemy.orm import QueryableAttribute
from sqlalchemy.sql import sqltypes

from subscribers.db import id_in, is_sqlite
from subscribers.models import Base, Subscriber

_MARKS = {"qmark": "?", "format": "%s", "pyformat": "%s"}
_Ts = TypeVarTuple("_Ts")


def insert_rows(
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
    prep = dialect.identifier_preparer
    tail = f" RETURNING {', '.join(prep.quote(c) for c in returning)}" if returning else ""
    if dialect.name == "postgresql":
        sql, pg_params = _pg_insert(table, columns, constants, dialect)
        result = conn.exec_driver_sql(sql + tail, pg_params)
        return list(result.all()) if returning else []
    mark = _MARKS.get(dialect.paramstyle)
    if is_sqlite(conn) and mark is not None:
        sql, lite_params = _sqlite_insert(table, columns, constants, dialect, mark)
        result = conn.exec_driver_sql(sql + tail, lite_params)
        return list(result.all()) if returning else []
    params = [  # another database or driver: plain Core executemany
        {**dict(zip(columns, cells, strict=True)), **constants}
        for cells in zip(*columns.values(), strict=True)
    ]
    if not returning:
        conn.execute(insert(table), params)
        return []
    stmt = insert(table).returning(*(table.c[c] for c in returning))
    return list(conn.execute(stmt, params).all())


def _sqlite_insert(
    table: Table,
    columns: Mapping[str, Sequence[Any]],
    constants: Mapping[str, Any],
    dialect: Dialect,
    mark: str,
) -> tuple[str, tuple[Any, ...]]:
    """SQLite: ``INSERT INTO table (...) SELECT ... FROM json_each(?)`` of one row per
    position in ``columns``: the rows as one JSON array of arrays, taken apart by SQLite's
    own JSON functions (no Python work per value); and its parameters. A JSON column's
    values go in as JSON (stored as the JSON text SQLite writes for them)."""
    prep = dialect.identifier_preparer
    names = ", ".join(prep.quote(n) for n in [*columns, *constants])
    arrays: list[Sequence[Any]] = []
    for name, values in columns.items():
        impl = table.c[name].type.dialect_impl(dialect)
        proc = None if isinstance(impl, sqltypes.JSON) else _processor(table.c[name], dialect)
        arrays.append(values if proc is None else [proc(v) for v in values])
    if len(arrays) == 1:
        picks, doc = ["value"], json.dumps(list(arrays[0]), ensure_ascii=False)
    else:
        picks = [f"json_extract(value, '$[{i}]')" for i in range(len(arrays))]
        doc = json.dumps(list(zip(*arrays, strict=True)), ensure_ascii=False)
    picks += [mark] * len(constants)
    fixed = [_bind(table.c[name], dialect, v) for name, v in constants.items()]
    # identifiers come from the models (quoted); every value is a parameter
    sql = (
        f"INSERT INTO {prep.format_table(table)} ({names})"  # noqa: S608
        f" SELECT {', '.join(picks)} FROM json_each({mark})"
    )
    return sql, (*fixed, doc)


def _pg_insert(
    table: Table,
    columns: Mapping[str, Sequence[Any]],
    constants: Mapping[str, Any],
    dialect: Dialect,
) -> tuple[str, tuple[Any, ...]]:
    """PostgreSQL: ``INSERT INTO table (...) SELECT ...`` of one row per position in
    ``columns``, each column's values one JSON array parameter; and its parameters."""
    prep = dialect.identifier_preparer
    names = ", ".join(prep.quote(n) for n in [*columns, *constants])
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
        f"INSERT INTO {prep.format_table(table)} ({names}) SELECT {', '.join(picks)}"  # noqa: S608
        f" FROM ROWS FROM ({', '.join(sources)}) AS u({aliases})"
    )
    fixed = [_bind(table.c[name], dialect, v) for name, v in constants.items()]
    docs = [json.dumps(list(values)) for values in columns.values()]
    return sql, (*fixed, *docs)


def insert_people(
    conn: Connection,
    columns: Mapping[str, Sequence[Any]],
    constants: Mapping[str, Any],
    *,
    with_each: Sequence[tuple[type[Base], Mapping[str, Any]]],
) -> None:
    """INSERT subscribers as ``insert_rows`` does, and for each new subscriber one row of
    every model in ``with_each`` (its ``subscriber_id`` and the constants given).

    PostgreSQL: one statement (the subscribers' ids stay in the server, data-modifying
    CTEs); elsewhere the subscribers with RETURNING, then the other rows."""
    dialect = conn.dialect
    if dialect.name != "postgresql":
        ids = [
            sid
            for (sid,) in insert_rows(
                conn, Subscriber, columns, constants=constants, returning=("id",)
            )
        ]
        for model, values in with_each:
            insert_rows(conn, model, {"subscriber_id": ids}, constants=values)
        return
    parent = Subscriber.__table__
    assert isinstance(parent, Table)
    sql, params = _pg_insert(parent, columns, constants, dialect)
    prep = dialect.identifier_preparer
    parts = [f"p AS ({sql} RETURNING {prep.quote('id')})"]
    for i, (model, values) in enumerate(with_each):
        table = model.__table__
        assert isinstance(table, Table)
        names = ", ".join(prep.quote(n) for n in ["subscriber_id", *values])
        picks = ", ".join(["p.id", *(f"%s::{_sql_type(table.c[c], dialect)}" for c in values)])
        parts.append(
            f"c{i} AS (INSERT INTO {prep.format_table(table)} ({names}) SELECT {picks} FROM p)"  # noqa: S608
        )
        params += tuple(_bind(table.c[name], dialect, v) for name, v in values.items())
    # identifiers and types come from the models (quoted); every value is a parameter
    statement = f"WITH {', '.join(parts)} SELECT count(*) FROM p"  # noqa: S608
    conn.exec_driver_sql(statement, params)


def update_by_id(
    conn: Connection, model: type[Base], rows: Sequence[Mapping[str, Any]], **values: Any
) -> None:
    """One executemany ``UPDATE table SET ... WHERE id = :b_id`` over ``rows`` (each a
    ``b_id`` and the other ``b_*`` parameters that ``values`` bind); none for no rows.
    The import's and the send ledger's per-row updates."""
    if not rows:
        return
    table = model.__table__
    assert isinstance(table, Table)
    conn.execute(update(table).where(table.c.id == bindparam("b_id")).values(**values), rows)


def select_in(
    conn: Connection,
    query: Select[*_Ts],
    column: QueryableAttribute[Any],
    values: Collection[Any],
    *,
    semijoin: bool = False,
) -> list[Row[*_Ts]]:
    """The rows of ``query`` where ``column`` is one of ``values`` (strings or numbers; see
    :func:`subscribers.db.id_in` for the shapes and ``semijoin``)."""
    where = id_in(column, values, conn, as_json=True, semijoin=semijoin)
    return list(conn.execute(query.where(where)))


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
