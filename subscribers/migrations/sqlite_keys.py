"""Foreign keys off on SQLite for a migration that rebuilds tables (copy, drop, rename).

Dropping a parent with foreign keys on would cascade into its children, so a rebuild runs
with them off, and the connection gets them back when it returns to its pool. One helper
for every revision that rebuilds: 0002 (every id table), 0003's downgrade (which runs
right before 0002's), 0006 (the deliveries kind check), the downgrades of 0008 and 0009.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa


def foreign_keys_off(conn: sa.Connection, revision: str) -> None:
    """Switch foreign keys off on ``conn`` until it goes back to its pool.

    SQLite ignores the PRAGMA inside a transaction. One is open here only when an earlier
    step of the same run wrote something (0001 on a new store, a later revision's
    downgrade); each step stamps alembic_version as it ends, so committing them first
    leaves the store at a consistent revision whatever happens next. ``revision`` names
    the migration in the error if SQLite keeps the keys on anyway."""
    if not conn.exec_driver_sql("PRAGMA foreign_keys").scalar():
        return
    dbapi = conn.connection.dbapi_connection
    if getattr(dbapi, "in_transaction", False):
        conn.exec_driver_sql("COMMIT")
    conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
    if conn.exec_driver_sql("PRAGMA foreign_keys").scalar():
        raise RuntimeError(
            f"migration {revision}: SQLite kept foreign keys on; nothing was changed"
        )
    ours = id(dbapi)

    def keys_on(dbapi_conn: Any, _record: Any) -> None:
        if id(dbapi_conn) == ours:
            dbapi_conn.execute("PRAGMA foreign_keys=ON")

    sa.event.listen(conn.engine.pool, "checkin", keys_on)
