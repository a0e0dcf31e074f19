"""The PostgreSQL store each test starts from (tests.conftest.truncate_all): empty, its ids
restarted, whether the previous test left a few rows (emptied row by row) or many
(truncated). Tests count on it: "campaign 1", the first reader's id."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select, text

from subscribers.models import Base, Subscriber
from tests.conftest import BIG_TABLE, Database, truncate_all
from tests.delivery_helpers import seed_list

PG_ONLY = pytest.mark.parametrize("db", ["postgresql"], indirect=True)


def _rows(db: Database) -> dict[str, int]:
    with db.engine.connect() as conn:
        return {
            t.name: conn.scalar(select(func.count()).select_from(t)) or 0
            for t in Base.metadata.sorted_tables
        }


@PG_ONLY
@pytest.mark.parametrize("readers", [3, BIG_TABLE + 1], ids=["few-rows", "many-rows"])
def test_the_store_is_empty_and_its_ids_start_again(db: Database, readers: int) -> None:
    seed_list(db.sessions, readers)
    seed_list(db.sessions, 2, slug="other", domain="example.net")
    assert _rows(db)["subscribers"] == readers + 2
    truncate_all(db.engine)
    assert set(_rows(db).values()) == {0}
    list_id, _ = seed_list(db.sessions, 2)
    with db.sessions() as s:
        first = s.scalar(select(func.min(Subscriber.id)))
    assert (list_id, first) == (1, 1)


@PG_ONLY
def test_sequences_outside_the_store_are_left_alone(db: Database) -> None:
    """Only the store's own id sequences restart, as with TRUNCATE ... RESTART IDENTITY."""
    with db.engine.begin() as conn:
        conn.execute(text("CREATE SEQUENCE IF NOT EXISTS suite_probe_seq"))
        conn.execute(text("SELECT nextval('suite_probe_seq')"))
    try:
        truncate_all(db.engine)
        with db.engine.begin() as conn:
            assert conn.scalar(text("SELECT nextval('suite_probe_seq')")) == 2
    finally:
        with db.engine.begin() as conn:
            conn.execute(text("DROP SEQUENCE suite_probe_seq"))
