"""The ledger's tables: Campaign, Delivery, Lease and their status enums.

A Campaign is one issue snapshot (with its rendered bodies) going to one list. A Delivery is
one reader of that campaign; its row is claimed before the transport is called and marked
after, so a crash loses nobody (docs/architecture.md principle 2). Every change of a
campaign's status is in :mod:`mailer.sending.lifecycle`; claims and marks of delivery rows
in :mod:`mailer.sending.ledger`.

    Delivery.status:  queued (until release_at) -> sending -> sent | failed | skipped
    Campaign.status:  scheduled -> sending -> done
                                 \\-> paused (reason) -> sending ...
                                 \\-> cancelled | expired
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TextClause,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from mailer.errors import NotFoundError
from subscribers.models import (
    NEVER_REUSE_IDS,
    Base,
    BigId,
    JSONType,
    MailingList,
    UTCDateTime,
    utcnow,
)
from subscribers.pg_options import postgresql_where


class CampaignStatus(enum.StrEnum):
    SCHEDULED = "scheduled"
    SENDING = "sending"
    PAUSED = "paused"
    DONE = "done"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


class DeliveryStatus(enum.StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    SKIPPED = "skipped"


#: a campaign that ended in one of these no longer holds its issue: the list may get it again
RELEASED = (CampaignStatus.CANCELLED, CampaignStatus.EXPIRED)


def _holds_issue(cast: str) -> TextClause:
    """The one-live-campaign index's condition, spelled as each database reports it back
    (PostgreSQL adds the casts), so the migrations test compares like with like."""
    return text(" AND ".join(f"status{cast} <> '{s.value}'{cast}" for s in RELEASED))


class Campaign(Base):
    __tablename__ = "campaigns"
    __table_args__ = (
        CheckConstraint(
            "status IN ('scheduled', 'sending', 'paused', 'done', 'cancelled', 'expired')",
            name="status",
        ),
        # One live campaign per issue, list and generation: two sends of one issue racing
        # each other cannot both insert (docs/architecture.md principle 10); ``--force``
        # makes the next generation. A cancelled or expired campaign leaves the index.
        postgresql_where(
            Index(
                "uq_campaigns_live_issue",
                "list_id",
                "issue_key",
                "generation",
                unique=True,
                sqlite_where=_holds_issue(""),
            ),
            _holds_issue("::text"),
        ),
        NEVER_REUSE_IDS,
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("mailing_lists.id", ondelete="RESTRICT"))
    issue_key: Mapped[str] = mapped_column(String(64), index=True)
    # 0 for a first send; each ``--force`` send of a live issue takes the next number
    generation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    subject: Mapped[str] = mapped_column(String(998))
    issue: Mapped[dict[str, Any]] = mapped_column(JSONType)
    html: Mapped[str] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default=CampaignStatus.SCHEDULED.value)
    pause_reason: Mapped[str | None] = mapped_column(Text)
    scheduled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # Shared pacing cursor: each claim reserves its send slot here, so the campaign's rate
    # holds across any number of workers.
    rate_cursor: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Set by `campaigns resume --force`: ops looked at a reputation-guard pause.
    guard_ack_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The web edition (no personal links), served by the archive.
    archive_html: Mapped[str] = mapped_column(Text, default="")
    # Rows found claimed by a dead worker and claimed again: at most these were sent twice.
    reclaimed: Mapped[int] = mapped_column(Integer, default=0)
    # ``--at-local`` (issue 15, "their morning"): each reader's row is released at this local
    # time ("06:00") in the reader's zone, else the list's, else UTC (mailer.sending.waves);
    # NULL: every row at once.
    at_local: Mapped[str | None] = mapped_column(String(5))
    # with at_local: seconds after its own release a row is skipped unsent (per wave)
    wave_expiry: Mapped[int | None] = mapped_column(Integer)
    # with at_local: the waves computed at enqueue, [{"at": ISO UTC, "zones": [...]}]
    waves: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONType)

    mailing_list: Mapped[MailingList] = relationship()


class Delivery(Base):
    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("campaign_id", "subscriber_id", name="uq_deliveries_campaign_subscriber"),
        # claims scan one campaign's queued rows in id order
        Index("ix_deliveries_campaign_status", "campaign_id", "status", "id"),
        # waves (``--at-local``): the next release, a wave's expiry and a wave's counts are
        # index range scans; rows sent at once (NULL) are not in it and cost an enqueue nothing
        postgresql_where(
            Index(
                "ix_deliveries_campaign_release",
                "campaign_id",
                "status",
                "release_at",
                sqlite_where=text("release_at IS NOT NULL"),
            ),
            text("release_at IS NOT NULL"),
        ),
        CheckConstraint(
            "status IN ('queued', 'sending', 'sent', 'failed', 'skipped')", name="status"
        ),
        # an issue belongs to a campaign; a system mail to one reader (double opt-in
        # confirmation, welcome, preferences link: mailer.sending.system_mail) to none
        CheckConstraint(
            "(kind = 'issue' AND campaign_id IS NOT NULL)"
            " OR (kind IN ('confirm', 'welcome', 'preferences') AND campaign_id IS NULL)",
            name="kind",
        ),
        NEVER_REUSE_IDS,
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16), default="issue", server_default="issue")
    subscriber_id: Mapped[int | None] = mapped_column(
        ForeignKey("subscribers.id", ondelete="SET NULL"), index=True
    )
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.QUEUED.value)
    worker: Mapped[str | None] = mapped_column(String(64))
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # the claiming worker's lease generation (its fencing token): every write of the
    # claim's result checks it with ``worker`` (mailer.sending.ledger, issue 18)
    fence: Mapped[int | None] = mapped_column(Integer)
    not_before: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # ``--at-local``: not claimed before this time (the reader's local morning); NULL: at once.
    # Apart from not_before (a retry's backoff, reset by retry-failed): the wave is kept.
    release_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    message_id: Mapped[str | None] = mapped_column(String(255), index=True)
    error_class: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)


class Lease(Base):
    """A named, expiring lock (one SQLite worker at a time; scheduler leadership)."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # the fencing token: up by one each time the lease is taken again after it lapsed
    generation: Mapped[int] = mapped_column(Integer, default=1, server_default="1")


def get_campaign(session: Session, campaign_id: int) -> Campaign:
    """The campaign, or :class:`~mailer.errors.NotFoundError` (every lookup by id goes here)."""
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise NotFoundError(f"no campaign {campaign_id}")
    return campaign
