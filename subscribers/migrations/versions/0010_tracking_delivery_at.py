"""tracking events found by message and time

* ``ix_tracking_events_delivery_at`` (delivery_id, at) replaces ``ix_tracking_events_delivery_id``:
  the intake's burst check reads one message's clicks within a few seconds of a batch's
  (mailer.feedback.tracking.store). With the delivery index alone, SQLite and PostgreSQL
  found the message's rows and then filtered every one of them by time, so each batch read
  the message's whole click history. The new index serves lookups by delivery alone too
  (the foreign key's cascade, erase), so the old one goes.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 17:45:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_tracking_events_delivery_at", "tracking_events", ["delivery_id", "at"])
    op.drop_index("ix_tracking_events_delivery_id", table_name="tracking_events")


def downgrade() -> None:
    op.create_index("ix_tracking_events_delivery_id", "tracking_events", ["delivery_id"])
    op.drop_index("ix_tracking_events_delivery_at", table_name="tracking_events")
