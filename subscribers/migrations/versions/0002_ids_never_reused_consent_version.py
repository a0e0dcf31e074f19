"""ids never reused, consent version, confirmation mails in the ledger

* SQLite: every table with an integer id is rebuilt with ``AUTOINCREMENT``, so a deleted
  (erased) reader's id is never handed to the next reader and old links open nothing.
  Ids already freed before this migration cannot be recovered. PostgreSQL sequences never
  reuse ids, so nothing changes there.
* ``subscriptions.consent_version``: bumped by every status change; confirm links carry it.
* ``deliveries.kind`` (``issue`` | ``confirm``) and ``deliveries.campaign_id`` nullable:
  a confirmation mail is a delivery of its own, so feedback on it matches a row.

SQLite rebuilds a table by copy, drop, rename. Dropping a parent with foreign keys on
would cascade into its children, so keys are switched off for the rebuild (see
``subscribers.migrations.sqlite_keys``), and the connection gets them back when it returns
to its pool.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from subscribers.migrations.sqlite_keys import foreign_keys_off

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: parents before children
_ID_TABLES = (
    "mailing_lists",
    "subscribers",
    "suppressions",
    "subscriptions",
    "consent_events",
    "campaigns",
    "deliveries",
    "feedback_events",
    "feedback_poison",
)
_KIND_CHECK = (
    "(kind = 'issue' AND campaign_id IS NOT NULL) OR (kind = 'confirm' AND campaign_id IS NULL)"
)


def upgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != "sqlite":
        op.add_column(
            "subscriptions",
            sa.Column("consent_version", sa.Integer(), server_default="0", nullable=False),
        )
        op.add_column(
            "deliveries",
            sa.Column("kind", sa.String(length=16), server_default="issue", nullable=False),
        )
        op.alter_column("deliveries", "campaign_id", existing_type=sa.Integer(), nullable=True)
        op.create_check_constraint(op.f("ck_deliveries_kind"), "deliveries", _KIND_CHECK)
        return
    foreign_keys_off(conn, "0002")
    for table in _ID_TABLES:
        with op.batch_alter_table(
            table, recreate="always", table_kwargs={"sqlite_autoincrement": True}
        ) as batch:
            if table == "subscriptions":
                batch.add_column(
                    sa.Column("consent_version", sa.Integer(), server_default="0", nullable=False)
                )
            elif table == "deliveries":
                batch.add_column(
                    sa.Column("kind", sa.String(length=16), server_default="issue", nullable=False)
                )
                batch.alter_column("campaign_id", existing_type=sa.Integer(), nullable=True)
                batch.create_check_constraint(op.f("ck_deliveries_kind"), _KIND_CHECK)
    problems = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if problems:
        raise RuntimeError(f"migration 0002 left broken foreign keys: {problems[:5]}")


def downgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != "sqlite":
        op.execute("DELETE FROM deliveries WHERE kind = 'confirm'")
        op.drop_constraint(op.f("ck_deliveries_kind"), "deliveries", type_="check")
        op.alter_column("deliveries", "campaign_id", existing_type=sa.Integer(), nullable=False)
        op.drop_column("deliveries", "kind")
        op.drop_column("subscriptions", "consent_version")
        return
    foreign_keys_off(conn, "0002")
    op.execute("DELETE FROM deliveries WHERE kind = 'confirm'")
    for table in _ID_TABLES:
        with op.batch_alter_table(
            table, recreate="always", table_kwargs={"sqlite_autoincrement": False}
        ) as batch:
            if table == "subscriptions":
                batch.drop_column("consent_version")
            elif table == "deliveries":
                batch.drop_constraint(op.f("ck_deliveries_kind"), type_="check")
                batch.alter_column("campaign_id", existing_type=sa.Integer(), nullable=False)
                batch.drop_column("kind")
