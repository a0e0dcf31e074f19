"""Outcome counts of Delivery rows, and the one aggregation every figure is built from.

:func:`ledger_counts` groups the rows of a scope by any key (a campaign, a recipient domain,
a day) in three aggregate queries, whatever the list size: rows by status, feedback events
(distinct rows per kind), and readers who unsubscribed after the send. What each count means
is in :mod:`mailer.ops.stats`.

The dialect helpers (UTC day, address domain) are here too, so no figure checks the
backend itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, literal, or_, select
from sqlalchemy.orm import Session

from mailer.feedback.models import FeedbackEvent
from mailer.ops.reputation import (
    BOUNCE_THRESHOLDS,
    COMPLAINT_THRESHOLDS,
    Level,
    RateCheck,
    check_rate,
)
from mailer.sending.models import Campaign, Delivery, DeliveryStatus
from subscribers.models import Subscriber, Subscription, SubscriptionStatus

__all__ = [
    "PENDING",
    "Counts",
    "as_date",
    "counts_since",
    "email_domain",
    "empty_counts",
    "iso",
    "ledger_counts",
    "per_sent",
    "scope",
    "tracking_enabled",
    "utc_day",
    "window_days",
]

PENDING = (DeliveryStatus.QUEUED.value, DeliveryStatus.SENDING.value)
"""Rows still to send: queued, or claimed and in flight."""


def per_sent(events: int, sent: int) -> float | None:
    """A rate as the reports give it: over the rows sent (bounce rate = hard bounces / sent,
    complaint rate = complaints / sent); None when nothing was sent."""
    return events / sent if sent else None


@dataclass(frozen=True)
class Counts:
    """Outcome counts of a set of Delivery rows (what each means: :mod:`mailer.ops.stats`)."""

    total: int = 0
    queued: int = 0  # queued or being sent right now
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    delivered: int = 0
    hard_bounced: int = 0
    soft_bounced: int = 0
    complained: int = 0
    rejected: int = 0
    unsubscribed: int = 0
    opened: int | None = None
    clicked: int | None = None

    @property
    def bounced(self) -> int:
        return self.hard_bounced + self.soft_bounced

    @property
    def bounce_rate(self) -> float | None:
        return per_sent(self.hard_bounced, self.sent)

    @property
    def complaint_rate(self) -> float | None:
        return per_sent(self.complained, self.sent)

    @property
    def progress(self) -> float | None:
        """Share of rows that reached a final state (sent, failed or skipped)."""
        if not self.total:
            return None
        return (self.total - self.queued) / self.total

    @property
    def checks(self) -> tuple[RateCheck, RateCheck]:
        return (
            check_rate("bounce", self.bounce_rate, BOUNCE_THRESHOLDS),
            check_rate("complaint", self.complaint_rate, COMPLAINT_THRESHOLDS),
        )

    @property
    def level(self) -> Level:
        return max(c.level for c in self.checks)

    def __add__(self, other: Counts) -> Counts:
        values: dict[str, Any] = {}
        for f in fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            values[f.name] = None if a is None and b is None else (a or 0) + (b or 0)
        return Counts(**values)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(
            bounced=self.bounced,
            bounce_rate=self.bounce_rate,
            complaint_rate=self.complaint_rate,
            progress=self.progress,
            checks=[c.to_json() for c in self.checks],
        )
        return out


# -- dialect helpers -------------------------------------------------------------------------


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def utc_day(session: Session, column: Any) -> ColumnElement[Any]:
    """The UTC calendar day of a UTCDateTime column, on either backend."""
    if _dialect(session) == "postgresql":
        return func.date(func.timezone("UTC", column))
    return func.date(column)


def as_date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def email_domain(session: Session, column: Any) -> ColumnElement[Any]:
    """The part of an address after the last '@' (addresses are stored normalized)."""
    if _dialect(session) == "postgresql":
        return func.split_part(column, "@", 2)
    return func.substr(column, func.instr(column, "@") + 1)


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def window_days(since: datetime, now: datetime) -> list[date]:
    """Every UTC day from ``since`` to ``now``, both included."""
    first, last = since.astimezone(UTC).date(), now.astimezone(UTC).date()
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


# -- the core aggregation --------------------------------------------------------------------

_Key = Any  # whatever the grouping expression yields (campaign id, domain, day)


def ledger_counts(
    session: Session,
    conditions: Sequence[ColumnElement[bool]],
    key: Any,
    *,
    with_subscriber: bool = False,
    tracking: bool | None = None,
) -> dict[_Key, Counts]:
    """Counts of the Delivery rows matching ``conditions``, grouped by ``key``.

    Three aggregate queries: rows by status, feedback events (distinct rows per kind), and
    readers who unsubscribed after the send.
    """

    def base(*cols: Any) -> Any:
        query = select(key, *cols).select_from(Delivery)
        if with_subscriber:
            query = query.outerjoin(Subscriber, Subscriber.id == Delivery.subscriber_id)
        return query

    where = and_(literal(True), *conditions)
    out: dict[_Key, dict[str, int]] = {}

    status_rows = session.execute(
        base(
            func.count(),
            func.count(case((Delivery.status.in_(PENDING), 1))),
            func.count(Delivery.sent_at),
            func.count(case((Delivery.status == DeliveryStatus.FAILED.value, 1))),
            func.count(case((Delivery.status == DeliveryStatus.SKIPPED.value, 1))),
        )
        .where(where)
        .group_by(key)
    )
    for k, total, queued, sent, failed, skipped in status_rows:
        out[k] = {
            "total": total,
            "queued": queued,
            "sent": sent,
            "failed": failed,
            "skipped": skipped,
        }

    fe = FeedbackEvent
    did = fe.delivery_id

    def distinct(cond: ColumnElement[bool]) -> Any:
        return func.count(func.distinct(case((cond, did))))

    is_bounce = fe.event_type == "Bounce"
    event_rows = session.execute(
        base(
            distinct(fe.event_type == "Delivery"),
            distinct(and_(is_bounce, fe.bounce_type == "Permanent")),
            distinct(and_(is_bounce, func.coalesce(fe.bounce_type, "") != "Permanent")),
            distinct(
                and_(
                    fe.event_type == "Complaint",
                    func.coalesce(fe.complaint_type, "") != "not-spam",
                )
            ),
            distinct(fe.event_type == "Reject"),
            distinct(fe.event_type == "Open"),
            distinct(fe.event_type == "Click"),
        )
        .join(fe, fe.delivery_id == Delivery.id)
        .where(where)
        .group_by(key)
    )
    for k, delivered, hard, soft, complained, rejected, opened, clicked in event_rows:
        row = out.setdefault(k, {})
        row.update(
            delivered=delivered,
            hard_bounced=hard,
            soft_bounced=soft,
            complained=complained,
            rejected=rejected,
            opened=opened,
            clicked=clicked,
        )

    # people, not rows: a reader who got three issues and then left is one who left
    unsub_rows = session.execute(
        base(func.count(func.distinct(Delivery.subscriber_id)))
        .join(Campaign, Campaign.id == Delivery.campaign_id)
        .join(
            Subscription,
            and_(
                Subscription.subscriber_id == Delivery.subscriber_id,
                Subscription.list_id == Campaign.list_id,
            ),
        )
        .where(
            where,
            Subscription.status == SubscriptionStatus.UNSUBSCRIBED.value,
            Subscription.unsubscribed_at >= Delivery.sent_at,
        )
        .group_by(key)
    )
    for k, n in unsub_rows:
        out.setdefault(k, {})["unsubscribed"] = n

    if tracking is None:
        tracking = tracking_enabled(session)
    result: dict[_Key, Counts] = {}
    for k, values in out.items():
        if not tracking:
            values.pop("opened", None)
            values.pop("clicked", None)
        else:
            values.setdefault("opened", 0)
            values.setdefault("clicked", 0)
        result[k] = Counts(**values)
    return result


def tracking_enabled(session: Session) -> bool:
    """True once any Open or Click event was ever stored (SES tracking is on)."""
    found = session.scalar(
        select(FeedbackEvent.id).where(FeedbackEvent.event_type.in_(("Open", "Click"))).limit(1)
    )
    return found is not None


def empty_counts(tracking: bool) -> Counts:
    return Counts(opened=0, clicked=0) if tracking else Counts()


# -- scopes ----------------------------------------------------------------------------------


def scope(
    session: Session, *, since: datetime | None, list_id: int | None, campaign_id: int | None
) -> list[ColumnElement[bool]]:
    conds: list[ColumnElement[bool]] = []
    if campaign_id is not None:
        conds.append(Delivery.campaign_id == campaign_id)
    if list_id is not None:
        conds.append(
            Delivery.campaign_id.in_(select(Campaign.id).where(Campaign.list_id == list_id))
        )
    if since is not None:
        # Rows sent in the window, and the unsent rows (queued, failed, skipped) of the
        # campaigns created in it.
        recent = select(Campaign.id).where(Campaign.created_at >= since)
        conds.append(
            or_(
                Delivery.sent_at >= since,
                and_(Delivery.sent_at.is_(None), Delivery.campaign_id.in_(recent)),
            )
        )
    return conds


def counts_since(
    session: Session,
    since: datetime | None = None,
    *,
    list_id: int | None = None,
    campaign_id: int | None = None,
) -> Counts:
    """Totals of the rows sent since ``since`` (all rows of the scope when None)."""
    tracking = tracking_enabled(session)
    conds = scope(session, since=since, list_id=list_id, campaign_id=campaign_id)
    found = ledger_counts(session, conds, literal(1), tracking=tracking)
    return found.get(1, empty_counts(tracking))
