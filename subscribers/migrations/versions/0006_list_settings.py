"""per-list settings, reader time zones and lifecycle mails (issue 15)

* ``mailing_lists``: ``logo_url``, ``accent_color``, ``lang`` (default ``en``),
  ``greeting``, ``welcome_markdown``, ``subject_template``, ``time_zone`` (`mailer lists
  set`; NULL means the default).
* ``subscribers.time_zone``: the reader's IANA zone (NULL: the list's).
* ``subscriptions.welcomed_at``: set once when the welcome mail is due, so it never goes
  out twice for one subscription.
* ``deliveries.kind`` also takes ``welcome`` and ``preferences`` (system mails to one
  reader, no campaign, like ``confirm``).

SQLite cannot alter a CHECK constraint: ``deliveries`` is rebuilt (copy, drop, rename) with
foreign keys off (``subscribers.migrations.sqlite_keys``), or dropping it would set every
``feedback_events.delivery_id`` to NULL; they come back on when the connection returns to
its pool.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 13:00:00
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

from subscribers.migrations.sqlite_keys import foreign_keys_off
from subscribers.models import UTCDateTime

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD_KIND = (
    "(kind = 'issue' AND campaign_id IS NOT NULL) OR (kind = 'confirm' AND campaign_id IS NULL)"
)
_NEW_KIND = (
    "(kind = 'issue' AND campaign_id IS NOT NULL)"
    " OR (kind IN ('confirm', 'welcome', 'preferences') AND campaign_id IS NULL)"
)
_LIST_COLUMNS = (
    ("logo_url", sa.String(length=2000)),
    ("accent_color", sa.String(length=7)),
    ("greeting", sa.String(length=60)),
    ("welcome_markdown", sa.Text()),
    ("subject_template", sa.String(length=200)),
    ("time_zone", sa.String(length=64)),
)


def _set_kind_check(check: str) -> None:
    conn = op.get_bind()
    if conn.dialect.name != "sqlite":
        op.drop_constraint(op.f("ck_deliveries_kind"), "deliveries", type_="check")
        op.create_check_constraint(op.f("ck_deliveries_kind"), "deliveries", check)
        return
    foreign_keys_off(conn, "0006")
    with op.batch_alter_table(
        "deliveries", recreate="always", table_kwargs={"sqlite_autoincrement": True}
    ) as batch:
        batch.drop_constraint(op.f("ck_deliveries_kind"), type_="check")
        batch.create_check_constraint(op.f("ck_deliveries_kind"), check)
    problems = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if problems:
        raise RuntimeError(f"migration 0006 left broken foreign keys: {problems[:5]}")


def upgrade() -> None:
    with op.batch_alter_table("mailing_lists") as batch:
        for name, type_ in _LIST_COLUMNS:
            batch.add_column(sa.Column(name, type_, nullable=True))
        batch.add_column(
            sa.Column("lang", sa.String(length=16), server_default="en", nullable=False)
        )
    op.add_column("subscribers", sa.Column("time_zone", sa.String(length=64), nullable=True))
    op.add_column("subscriptions", sa.Column("welcomed_at", UTCDateTime(timezone=True)))
    _set_kind_check(_NEW_KIND)


def downgrade() -> None:
    op.execute("DELETE FROM deliveries WHERE kind IN ('welcome', 'preferences')")
    _set_kind_check(_OLD_KIND)  # on SQLite: foreign keys are off from here on
    # dropping a column rebuilds the table on SQLite: keep its ids never reused
    keep: dict[str, Any] = {"sqlite_autoincrement": True}
    with op.batch_alter_table("subscriptions", table_kwargs=keep) as batch:
        batch.drop_column("welcomed_at")
    with op.batch_alter_table("subscribers", table_kwargs=keep) as batch:
        batch.drop_column("time_zone")
    with op.batch_alter_table("mailing_lists", table_kwargs=keep) as batch:
        batch.drop_column("lang")
        for name, _ in reversed(_LIST_COLUMNS):
            batch.drop_column(name)
