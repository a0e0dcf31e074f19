"""SQLAlchemy 2.0 typed models of the subscriber store.

One declarative ``Base`` holds every table of the project (the campaign tables in
``mailer.sending.models`` use it too), so one Alembic history covers the whole schema.
Times are stored as UTC and always come back timezone-aware, on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from subscribers.pg_options import JSONDocument, postgresql_where

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Store UTC, return aware UTC datetimes on every backend."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JSONType = JSONDocument()
BigId = BigInteger().with_variant(Integer(), "sqlite")
#: ``__table_args__`` entry of every table with an integer id: SQLite then never hands out
#: an id again (without AUTOINCREMENT it reuses the highest one after a delete, so an erased
#: reader's old links would open the next reader's page). PostgreSQL sequences never reuse.
NEVER_REUSE_IDS: dict[str, Any] = {"sqlite_autoincrement": True}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class SubscriptionStatus(enum.StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    UNSUBSCRIBED = "unsubscribed"


class SuppressionReason(enum.StrEnum):
    HARD_BOUNCE = "hard_bounce"
    COMPLAINT = "complaint"
    MANUAL = "manual"
    SOFT_BOUNCE_LIMIT = "soft_bounce_limit"
    ERASED = "erased"
    SES_ACCOUNT = "ses_account"


class MailingList(Base):
    __tablename__ = "mailing_lists"
    __table_args__ = NEVER_REUSE_IDS

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    from_address: Mapped[str] = mapped_column(String(320))
    reply_to: Mapped[str | None] = mapped_column(String(320))
    double_opt_in: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # How the list's mail looks and speaks (`mailer lists set`, subscribers.list_settings
    # validates every value); NULL means the default.
    logo_url: Mapped[str | None] = mapped_column(String(2000))
    accent_color: Mapped[str | None] = mapped_column(String(7))  # '#rrggbb'
    lang: Mapped[str] = mapped_column(String(16), default="en", server_default="en")
    #: opens each mail before the reader's name; NULL: the language's default, '': none
    greeting: Mapped[str | None] = mapped_column(String(60))
    #: Markdown of the welcome mail sent once after a confirmation; NULL: no welcome mail
    welcome_markdown: Mapped[str | None] = mapped_column(Text)
    subject_template: Mapped[str | None] = mapped_column(String(200))
    #: IANA zone for readers who have none of their own; NULL: UTC
    time_zone: Mapped[str | None] = mapped_column(String(64))


class Subscriber(Base):
    __tablename__ = "subscribers"
    __table_args__ = NEVER_REUSE_IDS

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str | None] = mapped_column(String(200))
    attributes: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    #: the reader's IANA zone (subscribe form, preferences, import); NULL: the list's
    time_zone: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    subscriptions: Mapped[list[Subscription]] = relationship(
        back_populates="subscriber", cascade="all, delete-orphan", passive_deletes=True
    )


class Subscription(Base):
    __tablename__ = "subscriptions"
    __table_args__ = (
        UniqueConstraint("subscriber_id", "list_id", name="uq_subscriptions_subscriber_list"),
        CheckConstraint("status IN ('pending', 'active', 'unsubscribed')", name="status"),
        Index("ix_subscriptions_list_status", "list_id", "status"),
        NEVER_REUSE_IDS,
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # no index of its own: uq_subscriptions_subscriber_list leads with it
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id", ondelete="CASCADE"))
    list_id: Mapped[int] = mapped_column(ForeignKey("mailing_lists.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16), default=SubscriptionStatus.PENDING.value)
    source: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    unsubscribed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: Bumped by every change of ``status``. A confirm link carries the version it was sent
    #: for, so it works once, and never after a later unsubscribe or a newer opt-in.
    consent_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    #: when the list's welcome mail was due for this subscription; set once (a conditional
    #: UPDATE), so a replayed link or a re-confirm after a resubscribe never welcomes twice
    welcomed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    subscriber: Mapped[Subscriber] = relationship(back_populates="subscriptions")
    mailing_list: Mapped[MailingList] = relationship()


class Suppression(Base):
    """Addresses that must never be mailed. ``email_hash`` (salted) is the key, so an erased
    person leaves only a tombstone with ``email`` set to NULL."""

    __tablename__ = "suppressions"
    __table_args__ = NEVER_REUSE_IDS

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    email_hash: Mapped[str] = mapped_column(String(64), unique=True)
    email: Mapped[str | None] = mapped_column(String(320), unique=True)
    reason: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ConsentEvent(Base):
    """Append-only ledger of what each person agreed to, and when, and how we knew.

    Rows are never updated; erasure deletes a person's rows and writes one ``erase`` row that
    carries only the salted hash."""

    __tablename__ = "consent_events"
    __table_args__ = (
        # only erase rows carry a hash: the other rows (one per import row) stay out of it
        postgresql_where(
            Index(
                "ix_consent_events_email_hash",
                "email_hash",
                sqlite_where=text("email_hash IS NOT NULL"),
            ),
            text("email_hash IS NOT NULL"),
        ),
        NEVER_REUSE_IDS,
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    subscriber_id: Mapped[int | None] = mapped_column(
        ForeignKey("subscribers.id", ondelete="SET NULL"), index=True
    )
    email_hash: Mapped[str | None] = mapped_column(String(64))
    list_id: Mapped[int | None] = mapped_column(ForeignKey("mailing_lists.id", ondelete="SET NULL"))
    action: Mapped[str] = mapped_column(String(32))
    source: Mapped[str | None] = mapped_column(String(200))
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(400))
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)


class StoreMeta(Base):
    """Small key/value facts about this store (the erasure-hash salt)."""

    __tablename__ = "store_meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
