"""A second attacker's (and a fault's) pass: edges nobody attacked yet. Each test says what
it tries; those that found something failed before their fix (named in the commit)."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from mailer.cli.context import AppContext
from mailer.config import Settings
from mailer.errors import ConfigError
from mailer.web.app import create_app
from subscribers.db import make_engine


def _wait_until(done: object, what: str, limit: float = 20.0) -> None:
    """Poll ``done()`` until true; the limit only stops a broken test from hanging."""
    deadline = time.monotonic() + limit
    while not done():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting for {what}")
        time.sleep(0.05)


# -- 6. a PostgreSQL session of a vanished host must not hold its locks forever -------------


def test_a_session_idle_inside_a_transaction_is_ended_and_its_locks_released(
    pg_url: str,
) -> None:
    """A client that took a row lock and then went silent (its host gone, TCP not yet
    noticed) held the lock until the server's TCP keepalive gave up, hours: every worker
    claiming that row waited. The server now ends such a session."""
    vanished = make_engine(pg_url, idle_timeout=0.3)
    other = make_engine(pg_url)
    try:
        conn = vanished.connect()
        conn.execute(text("CREATE TABLE IF NOT EXISTS attack_lock (id int PRIMARY KEY)"))
        conn.execute(text("INSERT INTO attack_lock VALUES (1) ON CONFLICT DO NOTHING"))
        conn.commit()
        conn.execute(text("SELECT id FROM attack_lock WHERE id = 1 FOR UPDATE"))
        pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        with other.connect() as watcher:

            def ended() -> bool:
                alive = watcher.execute(
                    text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}
                ).scalar_one()
                watcher.rollback()
                return bool(alive == 0)

            _wait_until(ended, "the server to end the idle-in-transaction session")
            # the row is free again: another session locks it without waiting
            watcher.execute(text("SET lock_timeout = '1s'"))
            got = watcher.execute(
                text("SELECT id FROM attack_lock WHERE id = 1 FOR UPDATE")
            ).scalar_one()
            assert got == 1
            watcher.execute(text("DROP TABLE attack_lock"))
            watcher.commit()
        with pytest.raises(DBAPIError):  # the vanished client's next word finds it gone
            conn.execute(text("SELECT 1"))
        conn.close()
    finally:
        vanished.dispose()
        other.dispose()


def _idle_setting(engine_url: str, **kwargs: object) -> str:
    engine = make_engine(engine_url, **kwargs)  # type: ignore[arg-type]
    try:
        with engine.connect() as conn:
            return str(conn.execute(text("SHOW idle_in_transaction_session_timeout")).scalar())
    finally:
        engine.dispose()


def test_every_entrance_sets_the_idle_timeout_from_its_setting(
    pg_url: str, tmp_path: object
) -> None:
    """The web app and the CLI (hence `mailer worker`) open PostgreSQL with
    MAILER_DB_IDLE_TIMEOUT; the default is 10 minutes; 0 leaves the server's own."""
    assert _idle_setting(pg_url) == "10min"
    assert _idle_setting(pg_url, idle_timeout=0) == "0"
    # options given in the URL are kept, and win
    url = pg_url + "?options=-c%20idle_in_transaction_session_timeout%3D7s"
    assert _idle_setting(url) == "7s"

    settings = Settings.from_env(
        {
            "MAILER_DATABASE_URL": pg_url,
            "MAILER_DB_IDLE_TIMEOUT": "90s",
            "MAILER_SECRET_KEY": "test-secret-key-4f9c2a7e1b8d6053",
            "MAILER_ENV": "test",
        }
    )
    app = create_app(settings)
    web = app.state.web
    try:
        with web.engine.connect() as conn:
            shown = conn.execute(text("SHOW idle_in_transaction_session_timeout")).scalar()
        assert shown == "90s"
    finally:
        web.close()
    cli = AppContext(settings=settings)
    try:
        with cli.engine.connect() as conn:
            shown = conn.execute(text("SHOW idle_in_transaction_session_timeout")).scalar()
        assert shown == "90s"
    finally:
        cli.engine.dispose()
    with pytest.raises(ConfigError, match="MAILER_DB_IDLE_TIMEOUT"):
        Settings(db_idle_timeout=-1).validate()
