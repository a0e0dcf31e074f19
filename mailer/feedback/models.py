"""Tables of the feedback loop: every SES event we took in, and the soft-bounce counters.

``feedback_events`` is the audit trail and the idempotency guard at once: an SNS MessageId
is stored unique, and so is a hash of the event itself, so the same event arriving twice
(SNS retry, webhook *and* queue, a replayed file, raw SQS delivery without an SNS id)
changes nothing the second time.

``feedback_poison`` holds queue messages the poller set aside (unreadable, forged, or still
failing after ``--max-attempts`` receives), with the error, so nothing is lost silently and
ops can look and replay them with ``mailer feedback ingest``.

``soft_bounce_counters`` counts transient/undetermined bounces per address in a window that
opens at the first bounce; a later Delivery to the address deletes the counter. It is a
row per address updated atomically (``INSERT .. ON CONFLICT DO UPDATE``), so concurrent
workers never lose a count.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from subscribers.models import NEVER_REUSE_IDS, Base, BigId, JSONType, UTCDateTime, utcnow


class FeedbackEvent(Base):
    __tablename__ = "feedback_events"
    __table_args__ = (
        Index("ix_feedback_events_email_type", "email", "event_type"),
        NEVER_REUSE_IDS,
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    sns_message_id: Mapped[str | None] = mapped_column(String(100), unique=True)
    #: sha256 of the event JSON (sorted keys): dedup across every way in.
    event_hash: Mapped[str] = mapped_column(String(64), unique=True)
    event_type: Mapped[str] = mapped_column(String(32))
    ses_message_id: Mapped[str] = mapped_column(String(255), index=True)
    delivery_id: Mapped[int | None] = mapped_column(
        ForeignKey("deliveries.id", ondelete="SET NULL"), index=True
    )
    #: The recipient the event is about (the first, when SES lists several).
    email: Mapped[str | None] = mapped_column(String(320))
    bounce_type: Mapped[str | None] = mapped_column(String(32))
    bounce_subtype: Mapped[str | None] = mapped_column(String(64))
    diagnostic: Mapped[str | None] = mapped_column(Text)
    complaint_type: Mapped[str | None] = mapped_column(String(64))
    #: What the rules did, for ops: "suppressed:hard_bounce", "soft:2/3", "reset", ...
    outcome: Mapped[str | None] = mapped_column(String(200))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    raw: Mapped[dict[str, Any]] = mapped_column(JSONType)


class SoftBounceCounter(Base):
    __tablename__ = "soft_bounce_counters"

    email: Mapped[str] = mapped_column(String(320), primary_key=True)
    count: Mapped[int] = mapped_column(Integer)
    window_started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_bounce_at: Mapped[datetime] = mapped_column(UTCDateTime())


class PoisonMessage(Base):
    __tablename__ = "feedback_poison"
    __table_args__ = NEVER_REUSE_IDS

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    source: Mapped[str] = mapped_column(String(1024))
    sqs_message_id: Mapped[str] = mapped_column(String(128), unique=True)
    body: Mapped[str] = mapped_column(Text)
    error: Mapped[str] = mapped_column(Text)
    receive_count: Mapped[int] = mapped_column(Integer)
    set_aside_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
