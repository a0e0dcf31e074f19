"""Migration 0002 on a store with data: SQLite tables rebuilt with AUTOINCREMENT lose no row
(a parent's rebuild must not cascade into its children), foreign keys are on again after it,
and from then on an erased reader's id is never handed out again."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from sqlalchemy import Engine, inspect, text

import mailer.models_registry  # noqa: F401
from subscribers.db import make_engine
from subscribers.migrate import alembic_config, upgrade
from subscribers.models import Base


def _seed_0001(engine: Engine) -> None:
    """Three readers on a list, a campaign with a delivery, a consent row: at 0001."""
    upgrade(engine, "0001")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO mailing_lists (id, slug, name, from_address, double_opt_in,"
                " created_at) VALUES (1, 'brief', 'Brief', 'b@example.org', 1, '2026-01-01')"
            )
        )
        for i in (1, 2, 3):
            conn.execute(
                text(
                    "INSERT INTO subscribers (id, email, attributes, created_at, updated_at)"
                    f" VALUES ({i}, 'r{i}@example.org', '{{}}', '2026-01-01', '2026-01-01')"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO subscriptions (subscriber_id, list_id, status, created_at)"
                    f" VALUES ({i}, 1, 'active', '2026-01-01')"
                )
            )
        conn.execute(
            text(
                "INSERT INTO campaigns (id, list_id, issue_key, subject, issue, html, text,"
                " status, created_at, archive_html, reclaimed) VALUES (1, 1, 'k', 's', '{}',"
                " 'h', 't', 'done', '2026-01-01', '', 0)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO deliveries (campaign_id, subscriber_id, status, attempts)"
                " VALUES (1, 3, 'sent', 1)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO consent_events (subscriber_id, list_id, action, created_at)"
                " VALUES (2, 1, 'subscribe', '2026-01-01')"
            )
        )


def _count(engine: Engine, table: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


def test_sqlite_upgrade_keeps_every_row_and_never_reuses_ids(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    _seed_0001(engine)
    upgrade(engine)
    assert [_count(engine, t) for t in ("subscribers", "subscriptions", "deliveries")] == [3, 3, 1]
    assert _count(engine, "consent_events") == 1
    with engine.begin() as conn:
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA foreign_key_check")).all() == []
        kinds = conn.execute(text("SELECT kind, subscriber_id FROM deliveries")).all()
        assert [tuple(k) for k in kinds] == [("issue", 3)]
        versions = conn.execute(text("SELECT DISTINCT consent_version FROM subscriptions"))
        assert versions.scalars().all() == [0]
        # the newest reader goes; the next one gets a new id, not theirs
        conn.execute(text("DELETE FROM subscribers WHERE id = 3"))
        conn.execute(
            text(
                "INSERT INTO subscribers (email, attributes, created_at, updated_at)"
                " VALUES ('next@example.org', '{}', '2026-02-01', '2026-02-01')"
            )
        )
        new_id = conn.execute(
            text("SELECT id FROM subscribers WHERE email = 'next@example.org'")
        ).scalar_one()
        assert new_id == 4
        # the delete cascaded as it should: keys are on again
        assert conn.execute(text("SELECT count(*) FROM subscriptions")).scalar_one() == 2
    engine.dispose()


def test_every_sqlite_id_table_is_autoincrement(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'new.db'}")
    upgrade(engine)
    with engine.connect() as conn:
        sql = dict(
            conn.execute(text("SELECT name, sql FROM sqlite_master WHERE type='table'")).all()
        )
    id_tables = [
        t.name
        for t in Base.metadata.sorted_tables
        if "id" in t.c and t.c.id.primary_key and str(t.c.id.type) in ("INTEGER", "BIGINT")
    ]
    assert len(id_tables) >= 9
    for name in id_tables:
        assert "AUTOINCREMENT" in sql[name], name
        assert Base.metadata.tables[name].dialect_options["sqlite"]["autoincrement"], name
    engine.dispose()


def test_sqlite_downgrade_and_upgrade_again(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'round.db'}")
    _seed_0001(engine)
    upgrade(engine)
    with engine.begin() as conn:
        cfg = alembic_config(engine)
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0001")
    assert "consent_version" not in {
        c["name"] for c in inspect(engine).get_columns("subscriptions")
    }
    assert _count(engine, "subscriptions") == 3
    upgrade(engine)
    assert _count(engine, "subscriptions") == 3 and _count(engine, "deliveries") == 1
    engine.dispose()
