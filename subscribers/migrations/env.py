"""Alembic environment: one history for every table (subscribers, campaigns, feedback).

The URL comes from the Config's ``sqlalchemy.url`` (set by ``subscribers.migrate``) or, when
run as plain ``alembic upgrade head``, from MAILER_DATABASE_URL. Autogenerate compares with
``mailer.models_registry.metadata``: every table, whichever layer defines it (with the
store's own tables only, it would propose to drop the others). This is the one import of the
store package that reaches above the store; .importlinter names it."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from mailer.config import Settings
from mailer.models_registry import metadata
from subscribers.db import make_engine

target_metadata = metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run() -> None:
    config = context.config
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = config.get_main_option("sqlalchemy.url") or Settings.from_env().database_url
    engine = make_engine(url)
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (SQL script) migrations are not supported; run against a database")
run()
