"""``tracking_events``: one row per click or open we saw, people and machines alike.

Nothing is thrown away: a scanner's click is stored like a reader's, with ``verdict``
(``human``, ``machine`` or ``proxy``) and the ``reason`` that decided it, so reports count
people and still show the machines apart (docs/architecture.md principle 12). The reader is named by
``subscriber_id`` with ``ON DELETE CASCADE``: erasing a reader deletes their events in the
database itself. The user agent is kept only as a digest and a short prefix.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from subscribers.models import NEVER_REUSE_IDS, Base, BigId, UTCDateTime

__all__ = ["CLICK", "HUMAN", "MACHINE", "OPEN", "PROXY", "TrackingEvent"]

CLICK = "click"
OPEN = "open"
HUMAN = "human"
MACHINE = "machine"
PROXY = "proxy"


class TrackingEvent(Base):
    __tablename__ = "tracking_events"
    __table_args__ = (
        CheckConstraint("kind IN ('click', 'open')", name="kind"),
        CheckConstraint("verdict IN ('human', 'machine', 'proxy')", name="verdict"),
        CheckConstraint("source IN ('redirect', 'pixel', 'ses')", name="source"),
        # the reports: one campaign's clicks per link and opens
        Index("ix_tracking_events_campaign_kind", "campaign_id", "kind", "link"),
        # the intake's burst check: one message's clicks within seconds of a batch's
        Index("ix_tracking_events_delivery_at", "delivery_id", "at"),
        NEVER_REUSE_IDS,
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    delivery_id: Mapped[int] = mapped_column(ForeignKey("deliveries.id", ondelete="CASCADE"))
    subscriber_id: Mapped[int | None] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(8))
    #: the link's index in the campaign's link table (mailer.render.tracking); NULL: an open
    link: Mapped[int | None] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    source: Mapped[str] = mapped_column(String(16))
    verdict: Mapped[str] = mapped_column(String(8))
    reason: Mapped[str] = mapped_column(String(200), default="")
    method: Mapped[str] = mapped_column(String(8), default="GET")
    #: first 16 hex digits of sha256(User-Agent), and its first 80 characters
    ua_digest: Mapped[str] = mapped_column(String(16), default="")
    ua: Mapped[str] = mapped_column(String(80), default="")
