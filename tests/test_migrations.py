"""`alembic upgrade head` on an empty database yields exactly the models' schema."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect, text

import mailer.models_registry  # noqa: F401
from subscribers.db import make_engine
from subscribers.migrate import head_revision, is_current, upgrade
from subscribers.models import Base
from tests.conftest import Database


def _diff(engine: Engine) -> list[object]:
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(ctx, Base.metadata))


def test_sqlite_upgrade_matches_models(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    upgrade(engine)
    assert is_current(engine)
    assert _diff(engine) == []
    upgrade(engine)  # idempotent
    assert set(inspect(engine).get_table_names()) == set(Base.metadata.tables) | {"alembic_version"}


def test_postgres_upgrade_matches_models(pg_url: str) -> None:
    # pg_url is migrated by the fixture; use a fresh schema to test from empty
    engine = make_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA IF EXISTS migtest CASCADE; CREATE SCHEMA migtest"))
    scoped = make_engine(pg_url, connect_args={"options": "-csearch_path=migtest"})
    try:
        upgrade(scoped)
        assert is_current(scoped)
        assert _diff(scoped) == []
        assert set(inspect(scoped).get_table_names(schema="migtest")) == set(
            Base.metadata.tables
        ) | {"alembic_version"}
    finally:
        scoped.dispose()
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA migtest CASCADE"))
        engine.dispose()


def _where(clause: object) -> str | None:
    """A partial index's condition, comparable between model and reflection."""
    if clause is None:
        return None
    return str(clause).replace("(", "").replace(")", "").strip().lower()


def test_partial_indexes_match_models(db: Database) -> None:
    """compare_metadata ignores an index's WHERE clause: compare those here."""
    partial = 0
    for table in Base.metadata.sorted_tables:
        want = {i.name: _where(i.dialect_options[db.backend]["where"]) for i in table.indexes}
        got = {
            i["name"]: _where(i.get("dialect_options", {}).get(f"{db.backend}_where"))
            for i in inspect(db.engine).get_indexes(table.name)
            if "duplicates_constraint" not in i
        }
        assert got == want, table.name
        partial += sum(w is not None for w in want.values())
    assert partial >= 1  # consent_events.email_hash: only erase rows carry a hash


def test_single_head() -> None:
    assert head_revision() is not None


@pytest.mark.parametrize("bad", ["nonsense://", "postgresql+nodriver://x/y"])
def test_bad_database_url(bad: str) -> None:
    from mailer.errors import ConfigError

    with pytest.raises(ConfigError, match="MAILER_DATABASE_URL"):
        make_engine(bad)
