"""Outgoing webhooks, the store's part: endpoints, the event outbox, the delivery log, and
:func:`emit`, which appends an event in the caller's transaction.

It lives at the bottom of the stack so that everything that changes what a webhook reports
(the store's consent changes, the campaign lifecycle, the guard) can call :func:`emit` inside
the transaction that makes the change: a rolled-back change leaves no event, a committed one
cannot lose its event. :mod:`mailer.webhooks` (above) signs and delivers them.

:func:`emit` fans the event out to the enabled endpoints that asked for its type, as one
``webhook_deliveries`` row each; with no such endpoint it writes nothing, and it looks the
endpoints up once per transaction (``session.info``), so a session that emits many events
(a feedback batch) pays for one small query.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from mailer.errors import InputError
from subscribers.models import NEVER_REUSE_IDS, Base, BigId, JSONType, UTCDateTime, utcnow

__all__ = [
    "EVENT_TYPES",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WebhookEvent",
    "emit",
    "forget_endpoints",
    "parse_event_types",
    "redact_address",
    "wanted",
]

#: every event a webhook can ask for (README: Webhooks out)
EVENT_TYPES: tuple[str, ...] = (
    "campaign.scheduled",
    "campaign.started",
    "campaign.paused",
    "campaign.resumed",
    "campaign.done",
    "campaign.expired",
    "campaign.cancelled",
    "subscriber.confirmed",
    "subscriber.unsubscribed",
    "subscriber.erased",
    "suppression.added",
    "suppression.removed",
    "guard.tripped",
)


class DeliveryState:
    PENDING = "pending"
    DELIVERED = "delivered"
    #: every attempt failed (MAILER_WEBHOOK_MAX_ATTEMPTS); kept, with its log
    FAILED = "failed"


class WebhookEndpoint(Base):
    """A receiver: where events go, which ones, and the ``whsec_`` secret they are signed
    with (shown once when added; stored as is, since signing needs it)."""

    __tablename__ = "webhook_endpoints"
    __table_args__ = NEVER_REUSE_IDS

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    url: Mapped[str] = mapped_column(String(2000))
    #: comma-separated event types, each from EVENT_TYPES
    events: Mapped[str] = mapped_column(Text)
    secret: Mapped[str] = mapped_column(String(100))
    enabled: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    @property
    def event_types(self) -> list[str]:
        return [e for e in self.events.split(",") if e]


class WebhookEvent(Base):
    """The outbox: one row per event, written with the change that caused it."""

    __tablename__ = "webhook_events"
    __table_args__ = NEVER_REUSE_IDS

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    #: the ``webhook-id`` header: the same on every retry, so receivers can drop repeats
    uid: Mapped[str] = mapped_column(String(40), unique=True)
    type: Mapped[str] = mapped_column(String(40))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    #: the reader the event is about, so an erasure can scrub the payload (never sent)
    email: Mapped[str | None] = mapped_column(String(320), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class WebhookDelivery(Base):
    """One event for one endpoint: pending until a 2xx, retried with backoff."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("event_id", "endpoint_id", name="uq_webhook_deliveries_event_endpoint"),
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
        NEVER_REUSE_IDS,
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("webhook_events.id", ondelete="CASCADE"))
    endpoint_id: Mapped[int] = mapped_column(
        ForeignKey("webhook_endpoints.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[str] = mapped_column(String(16), default=DeliveryState.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    #: when a worker may try it next; a claim moves it past the attempt's deadline
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class WebhookAttempt(Base):
    """The delivery log: every attempt, its answer (status code or error) and what next."""

    __tablename__ = "webhook_attempts"
    __table_args__ = NEVER_REUSE_IDS

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    delivery_id: Mapped[int] = mapped_column(
        ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), index=True
    )
    attempt: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(String(500))
    #: None: delivered, or no more attempts
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


def parse_event_types(text: str) -> list[str]:
    """``'campaign.done, guard.tripped'`` -> the list; an unknown name is an InputError
    listing the valid ones."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise InputError("no events given; valid events: " + ", ".join(EVENT_TYPES))
    unknown = [n for n in names if n not in EVENT_TYPES]
    if unknown:
        raise InputError(
            f"unknown event {', '.join(repr(n) for n in unknown)}; valid events: "
            + ", ".join(EVENT_TYPES)
        )
    return list(dict.fromkeys(names))


_CACHE_KEY = "webhook_endpoints"
_T = WebhookEndpoint.__table__
_ENABLED = select(_T.c.id, _T.c.events).where(_T.c.enabled)


def _subscribed(session: Session) -> list[tuple[int, frozenset[str]]]:
    """The enabled endpoints and their event types, read once per transaction."""
    conn = session.connection()  # begins the transaction if none has begun yet
    tx = session.get_transaction()
    cached = session.info.get(_CACHE_KEY)
    if cached is not None and cached[0] is tx:
        endpoints: list[tuple[int, frozenset[str]]] = cached[1]
        return endpoints
    # Core on the session's connection: no ORM query building, no autoflush (about a
    # quarter of the ORM select's cost on SQLite, scripts/bench_webhooks.py)
    rows = conn.execute(_ENABLED).all()
    endpoints = [(i, frozenset(e.split(","))) for i, e in rows]
    session.info[_CACHE_KEY] = (tx, endpoints)
    return endpoints


def forget_endpoints(session: Session) -> None:
    """Drop the per-transaction cache (after adding or removing an endpoint in it)."""
    session.info.pop(_CACHE_KEY, None)


def wanted(session: Session, type_: str) -> bool:
    """True when an enabled endpoint asked for ``type_`` (callers that must query to build
    an event's data ask first)."""
    return any(type_ in types for _, types in _subscribed(session))


def emit(
    session: Session, type_: str, data: dict[str, Any], *, email: str | None = None
) -> WebhookEvent | None:
    """Append event ``type_`` with ``data`` to the outbox in the caller's transaction, one
    delivery per endpoint that asked for it; None (nothing written) when none did.
    ``email`` names the reader the event is about (kept beside it for erasure)."""
    if type_ not in EVENT_TYPES:  # a programming error, never input
        raise ValueError(f"not a webhook event type: {type_!r}")
    targets = [i for i, types in _subscribed(session) if type_ in types]
    if not targets:
        return None
    now = utcnow()
    event = WebhookEvent(
        uid="msg_" + secrets.token_urlsafe(18),
        type=type_,
        payload={"type": type_, "timestamp": now.isoformat(), "data": data},
        email=email,
        created_at=now,
    )
    session.add(event)
    session.flush()
    session.add_all(
        WebhookDelivery(event_id=event.id, endpoint_id=i, next_attempt_at=now) for i in targets
    )
    session.flush()
    return event


def redact_address(session: Session, email: str) -> None:
    """Erasure: events about ``email`` keep their type and time, not the reader."""
    for event in session.scalars(select(WebhookEvent).where(WebhookEvent.email == email)):
        event.email = None
        event.payload = {**event.payload, "data": {"redacted": "subscriber erased"}}
    session.flush()
