"""one live campaign per issue and list

* ``campaigns.generation``: 0 for a first send; a ``--force`` send of an issue that is live
  on the list takes the next number.
* ``uq_campaigns_live_issue``: unique (list_id, issue_key, generation) over campaigns that
  are not cancelled or expired. Two ``mailer send`` of one issue started at once both passed
  the check for an earlier send and both inserted (two campaigns, every reader twice); now
  the database lets one of them in, and the other is told which campaign won.

Existing campaigns are numbered per list and issue in id order (earlier ``--force`` sends, or
a race that got through before this migration, each keep a generation of their own), so the
index can be built on any database.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from subscribers.migrations.sqlite_keys import foreign_keys_off

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_INDEX = "uq_campaigns_live_issue"
# as each database reports the condition back (see mailer.sending.models)
_PG_WHERE = "status::text <> 'cancelled'::text AND status::text <> 'expired'::text"
_SQLITE_WHERE = "status <> 'cancelled' AND status <> 'expired'"
_NUMBER = """
UPDATE campaigns SET generation = (
    SELECT count(*) FROM campaigns AS earlier
    WHERE earlier.list_id = campaigns.list_id
      AND earlier.issue_key = campaigns.issue_key
      AND earlier.id < campaigns.id
)
"""


def upgrade() -> None:
    op.add_column(
        "campaigns", sa.Column("generation", sa.Integer(), server_default="0", nullable=False)
    )
    op.execute(_NUMBER)
    op.create_index(
        _INDEX,
        "campaigns",
        ["list_id", "issue_key", "generation"],
        unique=True,
        postgresql_where=sa.text(_PG_WHERE),
        sqlite_where=sa.text(_SQLITE_WHERE),
    )


def downgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name == "sqlite":
        # 0002's downgrade (next in a run down to 0001) rebuilds tables with foreign keys
        # off, and alembic's version update after this step opens a transaction, in
        # which SQLite would ignore the PRAGMA: so they go off here, first
        foreign_keys_off(conn, "0003")
    op.drop_index(_INDEX, table_name="campaigns")
    op.drop_column("campaigns", "generation")
