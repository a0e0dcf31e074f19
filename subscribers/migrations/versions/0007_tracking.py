"""click and open tracking (analytics, issue 16)

* ``list_tracking``: a list's ``track`` setting (clicks, opens); no row: nothing tracked.
* ``tracking_optouts``: readers who opted out of tracking on the preferences page.
* ``tracking_events``: every click and open seen (redirect, pixel or SES), classed human,
  machine or proxy with the reason; ``subscriber_id`` cascades, so erasing a reader
  deletes their events.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 13:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from subscribers.models import UTCDateTime

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BIG = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "list_tracking",
        sa.Column("list_id", sa.Integer(), nullable=False),
        sa.Column("clicks", sa.Boolean(), nullable=False),
        sa.Column("opens", sa.Boolean(), nullable=False),
        sa.Column("updated_at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["list_id"],
            ["mailing_lists.id"],
            name=op.f("fk_list_tracking_list_id_mailing_lists"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("list_id", name=op.f("pk_list_tracking")),
    )
    op.create_table(
        "tracking_optouts",
        sa.Column("subscriber_id", _BIG, nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name=op.f("fk_tracking_optouts_subscriber_id_subscribers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("subscriber_id", name=op.f("pk_tracking_optouts")),
    )
    op.create_table(
        "tracking_events",
        sa.Column("id", _BIG, nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("delivery_id", _BIG, nullable=False),
        sa.Column("subscriber_id", _BIG, nullable=True),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("link", sa.Integer(), nullable=True),
        sa.Column("at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("verdict", sa.String(length=8), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("method", sa.String(length=8), nullable=False),
        sa.Column("ua_digest", sa.String(length=16), nullable=False),
        sa.Column("ua", sa.String(length=80), nullable=False),
        sa.CheckConstraint("kind IN ('click', 'open')", name=op.f("ck_tracking_events_kind")),
        sa.CheckConstraint(
            "verdict IN ('human', 'machine', 'proxy')", name=op.f("ck_tracking_events_verdict")
        ),
        sa.CheckConstraint(
            "source IN ('redirect', 'pixel', 'ses')", name=op.f("ck_tracking_events_source")
        ),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name=op.f("fk_tracking_events_campaign_id_campaigns"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["deliveries.id"],
            name=op.f("fk_tracking_events_delivery_id_deliveries"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name=op.f("fk_tracking_events_subscriber_id_subscribers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tracking_events")),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "ix_tracking_events_campaign_kind", "tracking_events", ["campaign_id", "kind", "link"]
    )
    op.create_index(op.f("ix_tracking_events_delivery_id"), "tracking_events", ["delivery_id"])
    op.create_index(op.f("ix_tracking_events_subscriber_id"), "tracking_events", ["subscriber_id"])


def downgrade() -> None:
    op.drop_table("tracking_events")
    op.drop_table("tracking_optouts")
    op.drop_table("list_tracking")
