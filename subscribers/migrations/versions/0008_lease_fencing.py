"""lease fencing tokens (several hosts, issue 18)

* ``leases.generation``: the lease's fencing token. It goes up each time a lease is taken
  again after it lapsed (a worker partitioned, paused or suspended past its TTL), so a
  holder that comes back holds a new token, and its earlier claims an old one.
* ``deliveries.fence``: the generation of the claiming worker's lease, written with each
  claim. Every write of a claim's result (sent, failed, re-queued, skipped) checks worker
  and fence in its WHERE clause: a late result over a row another worker re-claimed
  changes nothing, and is counted.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 13:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from subscribers.migrations.sqlite_keys import foreign_keys_off

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "leases", sa.Column("generation", sa.Integer(), server_default="1", nullable=False)
    )
    op.add_column("deliveries", sa.Column("fence", sa.Integer(), nullable=True))


def downgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name == "sqlite":
        # an earlier revision's downgrade (next in a run down) may rebuild tables: keys off
        # first, outside a transaction (see subscribers.migrations.sqlite_keys)
        foreign_keys_off(conn, "0008")
    op.drop_column("deliveries", "fence")
    op.drop_column("leases", "generation")
