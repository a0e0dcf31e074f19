"""waves: each reader's morning (``mailer send --at-local``, issue 15)

* ``deliveries.release_at``: the row is not claimed before this time (UTC; NULL: at once),
  the reader's local time in the reader's zone (else the list's, else UTC).
* ``ix_deliveries_campaign_release``: (campaign_id, status, release_at) over rows that have
  one: the next wave, a wave's expiry and its counts are index range scans.
* ``campaigns.at_local`` ("06:00"), ``campaigns.wave_expiry`` (seconds after a row's own
  release it is skipped unsent), ``campaigns.waves`` (the waves computed at enqueue: time
  and zones).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 16:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from subscribers.migrations.sqlite_keys import foreign_keys_off
from subscribers.models import JSONType, UTCDateTime

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("deliveries", sa.Column("release_at", UTCDateTime(timezone=True), nullable=True))
    op.create_index(
        "ix_deliveries_campaign_release",
        "deliveries",
        ["campaign_id", "status", "release_at"],
        postgresql_where=sa.text("release_at IS NOT NULL"),
        sqlite_where=sa.text("release_at IS NOT NULL"),
    )
    op.add_column("campaigns", sa.Column("at_local", sa.String(5), nullable=True))
    op.add_column("campaigns", sa.Column("wave_expiry", sa.Integer(), nullable=True))
    op.add_column("campaigns", sa.Column("waves", JSONType, nullable=True))


def downgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name == "sqlite":
        # an earlier revision's downgrade (next in a run down) may rebuild tables: keys off
        # first, outside a transaction (see subscribers.migrations.sqlite_keys)
        foreign_keys_off(conn, "0009")
    op.drop_column("campaigns", "waves")
    op.drop_column("campaigns", "wave_expiry")
    op.drop_column("campaigns", "at_local")
    op.drop_index("ix_deliveries_campaign_release", table_name="deliveries")
    op.drop_column("deliveries", "release_at")
