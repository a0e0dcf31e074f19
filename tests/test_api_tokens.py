"""API tokens (mailer.access.tokens and `mailer tokens`) on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from mailer.access import tokens
from mailer.access.models import ApiToken, Role
from mailer.errors import ConflictError, InputError, NotFoundError
from subscribers.db import make_engine, session_factory
from tests.cli_support import run_cli
from tests.conftest import Database

ADMIN = "admin-token-for-tests-0123456789"
T0 = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)


def test_create_authenticate_revoke(db: Database) -> None:
    raw = tokens.create_token(db.sessions, "pipeline", "editor")
    assert raw.startswith("bm_") and len(raw) > 40
    principal = tokens.authenticate(db.sessions, raw, ADMIN, now=T0)
    assert principal == tokens.Principal("pipeline", Role.EDITOR)
    with db.sessions() as s:
        row = s.scalars(select(ApiToken)).one()
        assert raw not in (row.token_hash, row.name)  # only the hash is kept
        assert row.token_hash == tokens.hash_token(raw)
        assert row.last_used_at == T0
    tokens.revoke_token(db.sessions, "pipeline")
    assert tokens.authenticate(db.sessions, raw, ADMIN) is None
    with pytest.raises(ConflictError, match="revoked already"):
        tokens.revoke_token(db.sessions, "pipeline")
    (info,) = tokens.list_tokens(db.sessions)
    assert info.name == "pipeline" and not info.active


def test_last_used_is_written_at_most_once_a_minute(db: Database) -> None:
    raw = tokens.create_token(db.sessions, "desk", Role.OPS)
    for seconds in (0, 10, 59):
        tokens.authenticate(db.sessions, raw, "", now=T0 + timedelta(seconds=seconds))
    assert tokens.list_tokens(db.sessions)[0].last_used_at == T0
    tokens.authenticate(db.sessions, raw, "", now=T0 + timedelta(seconds=61))
    assert tokens.list_tokens(db.sessions)[0].last_used_at == T0 + timedelta(seconds=61)


def test_a_busy_store_does_not_refuse_a_valid_token(db: Database) -> None:
    """Another transaction holds the write lock (SQLite) or the token's row (PostgreSQL)
    while the token is used: the caller gets in; only the last use goes unrecorded."""
    raw = tokens.create_token(db.sessions, "pipeline", "editor")
    short = {"timeout": 0.2} if db.backend == "sqlite" else {"options": "-c lock_timeout=200"}
    engine = make_engine(db.url, connect_args=short)
    try:
        with db.engine.connect() as blocker:
            blocker.begin()
            blocker.execute(update(ApiToken).values(role="editor"))  # takes the lock
            who = tokens.authenticate(session_factory(engine), raw, "", now=T0)
            blocker.rollback()
    finally:
        engine.dispose()
    assert who == tokens.Principal("pipeline", Role.EDITOR)
    assert tokens.list_tokens(db.sessions)[0].last_used_at is None
    tokens.authenticate(db.sessions, raw, "", now=T0)  # the next use records it
    assert tokens.list_tokens(db.sessions)[0].last_used_at == T0


def test_admin_token_is_ops_and_nothing_else_gets_in(db: Database) -> None:
    raw = tokens.create_token(db.sessions, "ed", "editor")
    assert tokens.authenticate(db.sessions, ADMIN, ADMIN) == tokens.Principal(
        tokens.ADMIN_PRINCIPAL, Role.OPS
    )
    for bad in (
        None,
        "",
        ADMIN[:-1],
        ADMIN + "x",
        raw[:-1],
        raw + "A",
        raw.upper(),
        "bm_" + "A" * 43,
        "x" * 10_000,
        tokens.hash_token(raw),  # the stored hash is not a token
        "' OR 1=1 --",
        "bm_\x00" + raw[3:],
    ):
        assert tokens.authenticate(db.sessions, bad, ADMIN) is None, bad
    # without MAILER_ADMIN_TOKEN an empty presented token is no admin
    assert tokens.authenticate(db.sessions, "", "") is None


def test_principal_may() -> None:
    editor = tokens.Principal("e", Role.EDITOR)
    ops = tokens.Principal("o", Role.OPS)
    assert editor.may(Role.EDITOR) and not editor.may(Role.OPS)
    assert ops.may(Role.EDITOR) and ops.may(Role.OPS)


def test_names_and_roles_are_checked(db: Database) -> None:
    tokens.create_token(db.sessions, "pipeline", "editor")
    with pytest.raises(ConflictError, match="exists already"):
        tokens.create_token(db.sessions, "pipeline", "ops")
    tokens.revoke_token(db.sessions, "pipeline")
    with pytest.raises(ConflictError):  # a revoked name stays taken
        tokens.create_token(db.sessions, "pipeline", "editor")
    for bad_name in ("", "Upper", "-x", "a b", "x" * 65, "é", "MAILER_ADMIN_TOKEN", "a\nb"):
        with pytest.raises(InputError, match="token name"):
            tokens.create_token(db.sessions, bad_name, "editor")
    with pytest.raises(InputError, match="unknown role"):
        tokens.create_token(db.sessions, "x", "root")
    with pytest.raises(NotFoundError):
        tokens.revoke_token(db.sessions, "nobody")
    assert [t.name for t in tokens.list_tokens(db.sessions)] == ["pipeline"]


def test_tokens_cli(db: Database, tmp_path: Path) -> None:
    made = run_cli(db, "tokens", "create", "--name", "pipeline", "--role", "editor")
    assert made.returncode == 0, made.stderr
    raw = made.stdout.strip()
    assert raw.startswith("bm_") and "\n" not in raw  # stdout is the token alone
    assert "shown once" in made.stderr
    assert tokens.authenticate(db.sessions, raw, "") == tokens.Principal("pipeline", Role.EDITOR)
    again = run_cli(db, "tokens", "create", "--name", "pipeline", "--role", "ops")
    assert again.returncode == 1 and "exists already" in again.stderr
    bad = run_cli(db, "tokens", "create", "--name", "x", "--role", "admin")
    assert bad.returncode == 1 and "unknown role 'admin'" in bad.stderr
    listed = run_cli(db, "tokens", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    (row,) = json.loads(listed.stdout)
    assert row["name"] == "pipeline" and row["role"] == "editor" and row["revoked_at"] is None
    assert raw not in listed.stdout
    revoked = run_cli(db, "tokens", "revoke", "pipeline")
    assert revoked.returncode == 0, revoked.stderr
    assert tokens.authenticate(db.sessions, raw, "") is None
    missing = run_cli(db, "tokens", "revoke", "nobody")
    assert missing.returncode == 1 and "no token named 'nobody'" in missing.stderr
