"""Per-campaign figures: each campaign's counts, per recipient domain, per day of sending,
and what is still queued or going out right now.

Every count comes from :func:`mailer.ops.counts.ledger_counts`, so a campaign's row in
``mailer stats``, on ``/admin`` and in ``/metrics`` is the same number.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from mailer.ops.counts import (
    PENDING,
    Counts,
    as_date,
    email_domain,
    empty_counts,
    iso,
    ledger_counts,
    per_sent,
    scope,
    tracking_enabled,
    utc_day,
    window_days,
)
from mailer.sending.models import Campaign, CampaignStatus, Delivery
from subscribers.models import MailingList, Subscriber

__all__ = [
    "CampaignStats",
    "DayRates",
    "DomainStats",
    "campaign_stats",
    "daily_rates",
    "domain_stats",
    "queue_depths",
    "send_rate",
]

ACTIVE_CAMPAIGN_STATES = (
    CampaignStatus.SCHEDULED.value,
    CampaignStatus.SENDING.value,
    CampaignStatus.PAUSED.value,
)
ERASED_DOMAIN = "(erased)"
OTHER_DOMAIN = "(other)"


@dataclass(frozen=True)
class CampaignStats:
    id: int
    subject: str
    list_slug: str
    status: str
    pause_reason: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    counts: Counts

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "subject": self.subject,
            "list": self.list_slug,
            "status": self.status,
            "pause_reason": self.pause_reason,
            "created_at": self.created_at.isoformat(),
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            **self.counts.to_json(),
        }


@dataclass(frozen=True)
class DomainStats:
    domain: str
    counts: Counts

    def to_json(self) -> dict[str, Any]:
        return {"domain": self.domain, **self.counts.to_json()}


@dataclass(frozen=True)
class DayRates:
    """Sends of one UTC day and what became of them (events dated by the send)."""

    day: date
    sent: int
    hard_bounced: int
    complained: int

    @property
    def bounce_rate(self) -> float | None:
        return per_sent(self.hard_bounced, self.sent)

    @property
    def complaint_rate(self) -> float | None:
        return per_sent(self.complained, self.sent)

    def to_json(self) -> dict[str, Any]:
        return {
            "day": self.day.isoformat(),
            "sent": self.sent,
            "hard_bounced": self.hard_bounced,
            "complained": self.complained,
            "bounce_rate": self.bounce_rate,
            "complaint_rate": self.complaint_rate,
        }


def campaign_stats(
    session: Session,
    *,
    campaign_ids: Iterable[int] | None = None,
    since: datetime | None = None,
    list_id: int | None = None,
) -> list[CampaignStats]:
    """Campaigns (newest first) with their full counts.

    With ``since``: campaigns created since then, plus any still scheduled, sending or
    paused. ``campaign_ids`` picks exact campaigns instead.
    """
    query = select(Campaign, MailingList.slug).join(MailingList, MailingList.id == Campaign.list_id)
    if campaign_ids is not None:
        query = query.where(Campaign.id.in_(list(campaign_ids)))
    else:
        if since is not None:
            query = query.where(
                or_(Campaign.created_at >= since, Campaign.status.in_(ACTIVE_CAMPAIGN_STATES))
            )
        if list_id is not None:
            query = query.where(Campaign.list_id == list_id)
    rows = session.execute(query.order_by(Campaign.created_at.desc(), Campaign.id.desc())).all()
    if not rows:
        return []
    tracking = tracking_enabled(session)
    ids = [c.id for c, _ in rows]
    counts = ledger_counts(
        session, [Delivery.campaign_id.in_(ids)], Delivery.campaign_id, tracking=tracking
    )
    return [
        CampaignStats(
            id=c.id,
            subject=c.subject,
            list_slug=slug,
            status=c.status,
            pause_reason=c.pause_reason,
            created_at=c.created_at,
            started_at=c.started_at,
            finished_at=c.finished_at,
            counts=counts.get(c.id, empty_counts(tracking)),
        )
        for c, slug in rows
    ]


def domain_stats(
    session: Session,
    *,
    since: datetime | None = None,
    list_id: int | None = None,
    campaign_id: int | None = None,
    top: int = 10,
) -> list[DomainStats]:
    """Counts per recipient domain, the ``top`` by sent volume, the rest as "(other)"."""
    tracking = tracking_enabled(session)
    conds = scope(session, since=since, list_id=list_id, campaign_id=campaign_id)
    key = email_domain(session, Subscriber.email)
    found = ledger_counts(session, conds, key, with_subscriber=True, tracking=tracking)
    ranked = sorted(found.items(), key=lambda kv: (-kv[1].sent, -kv[1].total, str(kv[0])))
    out = [DomainStats(ERASED_DOMAIN if k is None else str(k), c) for k, c in ranked[:top]]
    rest = [c for _, c in ranked[top:]]
    if rest:
        total = rest[0]
        for c in rest[1:]:
            total = total + c
        out.append(DomainStats(OTHER_DOMAIN, total))
    return out


def daily_rates(
    session: Session,
    since: datetime,
    *,
    now: datetime | None = None,
    list_id: int | None = None,
    campaign_id: int | None = None,
) -> list[DayRates]:
    """Bounce and complaint rates per UTC day of sending, every day of the window."""
    now = now or datetime.now(UTC)
    conds = scope(session, since=since, list_id=list_id, campaign_id=campaign_id)
    found = ledger_counts(session, conds, utc_day(session, Delivery.sent_at), tracking=False)
    by_day = {as_date(k): c for k, c in found.items() if k is not None}
    out = []
    for day in window_days(since, now):
        c = by_day.get(day, Counts())
        out.append(DayRates(day, c.sent, c.hard_bounced, c.complained))
    return out


def queue_depths(session: Session) -> dict[int, int]:
    """Rows still to send (queued or in flight) per campaign that has any."""
    rows = session.execute(
        select(Delivery.campaign_id, func.count())
        .where(Delivery.status.in_(PENDING))
        .group_by(Delivery.campaign_id)
    )
    return {cid: n for cid, n in rows if cid is not None}  # confirmation mails: no campaign


def send_rate(session: Session, *, window: float = 60.0, now: datetime | None = None) -> float:
    """Messages accepted per second over the last ``window`` seconds, all campaigns."""
    now = now or datetime.now(UTC)
    n = session.scalar(
        select(func.count())
        .select_from(Delivery)
        .where(Delivery.sent_at >= now - timedelta(seconds=window), Delivery.sent_at <= now)
    )
    return (n or 0) / window
