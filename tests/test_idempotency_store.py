"""mailer.access.idempotency on SQLite and PostgreSQL: keys per token, one answer per key
(the database refuses a second), answers kept for a week."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.exc import IntegrityError

from mailer.access import idempotency
from mailer.access.idempotency import KEEP, Answer
from mailer.errors import InputError
from tests.conftest import Database

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def _answer(n: int) -> Answer:
    return Answer(201, {"id": n, "status": "scheduled", "recipients": 3}, f"print-{n}")


def test_one_answer_per_token_and_key(db: Database) -> None:
    with db.sessions.begin() as s:
        idempotency.record_answer(s, "pipeline", "k", _answer(1), now=T0)
        idempotency.record_answer(s, "desk", "k", _answer(2), now=T0)  # another token's key
    with db.sessions() as s:
        assert idempotency.find_answer(s, "pipeline", "k") == _answer(1)
        assert idempotency.find_answer(s, "desk", "k") == _answer(2)
        assert idempotency.find_answer(s, "pipeline", "other") is None
    with pytest.raises(IntegrityError), db.sessions.begin() as s:
        idempotency.record_answer(s, "pipeline", "k", _answer(3), now=T0)
    with db.sessions() as s:  # the refused one changed nothing
        assert idempotency.find_answer(s, "pipeline", "k") == _answer(1)


def test_answers_are_kept_for_a_week(db: Database) -> None:
    with db.sessions.begin() as s:
        idempotency.record_answer(s, "pipeline", "old", _answer(1), now=T0)
        idempotency.record_answer(s, "desk", "old", _answer(2), now=T0)
    with db.sessions.begin() as s:  # a week less a minute later: still there
        idempotency.record_answer(
            s, "pipeline", "a", _answer(3), now=T0 + KEEP - timedelta(minutes=1)
        )
    with db.sessions() as s:
        assert idempotency.find_answer(s, "pipeline", "old") is not None
    with db.sessions.begin() as s:
        idempotency.record_answer(
            s, "pipeline", "b", _answer(4), now=T0 + KEEP + timedelta(minutes=1)
        )
    with db.sessions() as s:
        assert idempotency.find_answer(s, "pipeline", "old") is None  # pruned with that token's
        assert idempotency.find_answer(s, "pipeline", "a") is not None
        assert idempotency.find_answer(s, "desk", "old") is not None  # not another token's


def test_keys_and_fingerprints() -> None:
    for good in ("a", "x" * 255, "send-2025-03-03", "'%;--/..\\"):
        assert idempotency.check_key(good) == good
    for bad in ("", " ", "a b", "x" * 256, "é", "tab\t", "nul\x00"):
        with pytest.raises(InputError, match="Idempotency-Key"):
            idempotency.check_key(bad)
    one = idempotency.fingerprint("post", "/p", {"a": 1, "b": [1, 2]})
    assert one == idempotency.fingerprint("POST", "/p", {"b": [1, 2], "a": 1})
    assert one != idempotency.fingerprint("POST", "/p", {"a": 1, "b": [2, 1]})
    assert one != idempotency.fingerprint("POST", "/q", {"a": 1, "b": [1, 2]})
