"""Shared fixtures: the store on SQLite *and* PostgreSQL, and settings pointing at them.

``db`` is parametrized over both backends. PostgreSQL comes from MAILER_TEST_POSTGRES_URL
(default: the local server); each test run creates its own database and drops it at the
end. With CI=true an unreachable PostgreSQL fails the run instead of skipping.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

import mailer.models_registry  # noqa: F401  (all tables on Base.metadata)
from mailer.config import Settings
from subscribers.db import make_engine, normalize_url, session_factory
from subscribers.migrate import upgrade
from subscribers.models import Base

# Every module in tests/plugins/ is a fixture plugin (aws servers, SNS certificates, ...).
pytest_plugins = sorted(
    f"tests.plugins.{p.stem}"
    for p in (Path(__file__).parent / "plugins").glob("*.py")
    if p.stem != "__init__"
)

PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
BACKENDS = ["sqlite", "postgresql"]
#: strong enough for the real transports (mailer.config.weak_key_reason), fixed for the suite
TEST_SECRET_KEY = "test-secret-key-4f9c2a7e1b8d6053"


@dataclass
class Database:
    """A migrated, empty store for one test."""

    backend: str
    url: str
    engine: Engine
    sessions: sessionmaker[Session]
    tmp: Path

    def settings(self, **overrides: Any) -> Settings:
        base: dict[str, Any] = {
            "database_url": self.url,
            "outbox_dir": self.tmp / "outbox",
            "secret_key": TEST_SECRET_KEY,
            "env": "test",
        }
        base.update(overrides)
        return Settings(**base)

    def env(self, **extra: str) -> dict[str, str]:
        """Environment for a subprocess (the CLI, a worker) using this store."""
        env = dict(os.environ)
        env.update(
            MAILER_DATABASE_URL=self.url,
            MAILER_OUTBOX_DIR=str(self.tmp / "outbox"),
            MAILER_SECRET_KEY=TEST_SECRET_KEY,
            MAILER_ENV="test",
        )
        env.update(extra)
        return env


def _pg_unreachable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"PostgreSQL is required in CI but unreachable: {reason}")
    pytest.skip(f"PostgreSQL unreachable: {reason}")


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test run, migrated once, dropped at the end."""
    admin_url = normalize_url(os.environ.get("MAILER_TEST_POSTGRES_URL", PG_DEFAULT))
    name = f"brief_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = make_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as err:
        admin.dispose()
        _pg_unreachable(str(err).splitlines()[0])
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def pg_engine(pg_url: str) -> Iterator[Engine]:
    engine = make_engine(pg_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test (cheaper than migrating each time)."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    return path


#: more rows than this in any table and the store is truncated instead of emptied row by row
BIG_TABLE = 1000

#: the id sequences of the store's tables (what TRUNCATE ... RESTART IDENTITY restarts) that
#: have been used, each set back to its start
_RESTART_USED_SEQUENCES = """
WITH owned AS MATERIALIZED (
    SELECT q.seqrelid AS seq, q.seqstart AS start
    FROM pg_sequence q
    JOIN pg_depend d ON d.objid = q.seqrelid AND d.classid = 'pg_class'::regclass
        AND d.deptype IN ('a', 'i')
    JOIN pg_class t ON t.oid = d.refobjid
    WHERE t.relname = ANY(:tables)
)
SELECT setval(seq, start, false) FROM owned WHERE pg_sequence_last_value(seq) IS NOT NULL
"""


def truncate_all(engine: Engine) -> None:
    """Empty every table and restart their ids, as TRUNCATE ... RESTART IDENTITY does.

    Most tests leave a few rows: DELETE them (children first) and set the used sequences
    back, 20-40 ms, where TRUNCATE makes new files for all 22 tables and their indexes
    (0.7-1 s a PostgreSQL test on the loaded 2-core machine). A store left with many rows
    is still truncated, so no test plans its queries over another's dead rows."""
    tables = Base.metadata.sorted_tables
    sizes = " UNION ALL ".join(
        f'SELECT count(*) FROM (SELECT 1 FROM "{t.name}" LIMIT {BIG_TABLE + 1}) AS rows'
        for t in tables
    )
    with engine.begin() as conn:
        if any(n > BIG_TABLE for n in conn.execute(text(sizes)).scalars()):
            names = ", ".join(f'"{t.name}"' for t in tables)
            conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
            return
        for table in reversed(tables):
            conn.execute(table.delete())
        conn.execute(text(_RESTART_USED_SEQUENCES), {"tables": [t.name for t in tables]})


@pytest.fixture(params=BACKENDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """An empty, migrated store on each backend."""
    if request.param == "sqlite":
        path = tmp_path / "store.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        url = f"sqlite:///{path}"
        engine = make_engine(url)
        yield Database("sqlite", url, engine, session_factory(engine), tmp_path)
        engine.dispose()
    else:
        engine = request.getfixturevalue("pg_engine")
        truncate_all(engine)
        url = request.getfixturevalue("pg_url")
        yield Database("postgresql", url, engine, session_factory(engine), tmp_path)
