"""Delivery and reputation figures, computed once for the CLI, the dashboard and /metrics.

Everything is aggregated in SQL (a handful of GROUP BY queries, whatever the list size) and
returned as frozen dataclasses, so ``mailer stats``, ``/admin`` and ``/metrics`` can never
disagree about a number.

What the figures mean (all per Delivery row, so a reader counts once per campaign):

    sent          rows the transport accepted (``sent_at`` set), even if SES later rejected
    delivered     rows with an SES Delivery event
    hard_bounced  rows with a Permanent bounce        (SES's bounce rate counts these)
    soft_bounced  rows with a Transient/Undetermined bounce
    complained    rows with a Complaint ("not-spam" feedback is not a complaint)
    rejected      rows with an SES Reject event
    failed        rows whose send failed (transport refusal or SES Reject/Rendering Failure)
    unsubscribed  readers of the row who left its list after it was sent to them
                  (one-click, link, or a complaint's automatic unsubscribe)
    opened/clicked rows with an Open/Click event; None while no tracking event exists at all

Rates are over ``sent``: bounce rate = hard bounces / sent, complaint rate = complaints /
sent. They are judged against what the mailbox world enforces: SES reviews an account at a
5% bounce rate and pauses it at 10%; at 0.1% complaints it reviews, at 0.5% it pauses; Gmail
wants spam complaints under 0.1% and never at 0.3%.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, literal, or_, select
from sqlalchemy.orm import Session

from mailer.errors import NotFoundError
from mailer.feedback.models import FeedbackEvent
from mailer.sending.models import Campaign, CampaignStatus, Delivery, DeliveryStatus
from subscribers.models import (
    ConsentEvent,
    MailingList,
    Subscriber,
    Subscription,
    SubscriptionStatus,
    Suppression,
)

__all__ = [
    "BOUNCE_THRESHOLDS",
    "COMPLAINT_THRESHOLDS",
    "CampaignStats",
    "Counts",
    "DayRates",
    "DomainStats",
    "FeedbackRow",
    "Level",
    "RateCheck",
    "StatsReport",
    "SuppressionDay",
    "SuppressionGrowth",
    "Threshold",
    "assess",
    "campaign_stats",
    "collect",
    "counts_since",
    "daily_rates",
    "domain_stats",
    "queue_depths",
    "recent_feedback",
    "send_rate",
    "suppression_growth",
]

ACTIVE_CAMPAIGN_STATES = (
    CampaignStatus.SCHEDULED.value,
    CampaignStatus.SENDING.value,
    CampaignStatus.PAUSED.value,
)
ERASED_DOMAIN = "(erased)"
OTHER_DOMAIN = "(other)"


# -- thresholds ------------------------------------------------------------------------------


class Level(enum.IntEnum):
    """How bad a rate is; ordered so ``max()`` gives the worst."""

    NA = 0  # nothing sent: no rate
    OK = 1
    WARN = 2
    CRITICAL = 3

    @property
    def label(self) -> str:
        return {0: "n/a", 1: "ok", 2: "warn", 3: "critical"}[self.value]


@dataclass(frozen=True)
class Threshold:
    """A published limit: at or above ``limit`` the rate is at ``level``."""

    source: str
    limit: float
    level: Level


BOUNCE_THRESHOLDS: tuple[Threshold, ...] = (
    Threshold("SES review", 0.05, Level.WARN),
    Threshold("SES pause", 0.10, Level.CRITICAL),
)
COMPLAINT_THRESHOLDS: tuple[Threshold, ...] = (
    Threshold("Gmail target", 0.001, Level.WARN),
    Threshold("SES review", 0.001, Level.WARN),
    Threshold("Gmail never", 0.003, Level.CRITICAL),
    Threshold("SES pause", 0.005, Level.CRITICAL),
)


@dataclass(frozen=True)
class RateCheck:
    """One rate and what it crossed."""

    name: str  # "bounce" | "complaint"
    rate: float | None
    level: Level
    crossed: tuple[Threshold, ...]
    thresholds: tuple[Threshold, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "rate": self.rate,
            "level": self.level.label,
            "crossed": [t.source for t in self.crossed],
            "thresholds": {t.source: t.limit for t in self.thresholds},
        }


def _check(name: str, rate: float | None, thresholds: tuple[Threshold, ...]) -> RateCheck:
    if rate is None:
        return RateCheck(name, None, Level.NA, (), thresholds)
    crossed = tuple(t for t in thresholds if rate >= t.limit)
    level = max((t.level for t in crossed), default=Level.OK)
    return RateCheck(name, rate, level, crossed, thresholds)


# -- the figures -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Counts:
    """Outcome counts of a set of Delivery rows (see the module docstring)."""

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
        return self.hard_bounced / self.sent if self.sent else None

    @property
    def complaint_rate(self) -> float | None:
        return self.complained / self.sent if self.sent else None

    @property
    def progress(self) -> float | None:
        """Share of rows that reached a final state (sent, failed or skipped)."""
        if not self.total:
            return None
        return (self.total - self.queued) / self.total

    @property
    def checks(self) -> tuple[RateCheck, RateCheck]:
        return (
            _check("bounce", self.bounce_rate, BOUNCE_THRESHOLDS),
            _check("complaint", self.complaint_rate, COMPLAINT_THRESHOLDS),
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
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
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
        return self.hard_bounced / self.sent if self.sent else None

    @property
    def complaint_rate(self) -> float | None:
        return self.complained / self.sent if self.sent else None

    def to_json(self) -> dict[str, Any]:
        return {
            "day": self.day.isoformat(),
            "sent": self.sent,
            "hard_bounced": self.hard_bounced,
            "complained": self.complained,
            "bounce_rate": self.bounce_rate,
            "complaint_rate": self.complaint_rate,
        }


@dataclass(frozen=True)
class SuppressionDay:
    day: date
    added: Mapping[str, int]  # by reason
    removed: int

    @property
    def net(self) -> int:
        return sum(self.added.values()) - self.removed

    def to_json(self) -> dict[str, Any]:
        return {
            "day": self.day.isoformat(),
            "added": dict(self.added),
            "removed": self.removed,
            "net": self.net,
        }


@dataclass(frozen=True)
class SuppressionGrowth:
    total: int
    by_reason: Mapping[str, int]
    days: tuple[SuppressionDay, ...]  # oldest first, every day of the window

    @property
    def added(self) -> int:
        return sum(sum(d.added.values()) for d in self.days)

    @property
    def removed(self) -> int:
        return sum(d.removed for d in self.days)

    def to_json(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "by_reason": dict(self.by_reason),
            "added": self.added,
            "removed": self.removed,
            "days": [d.to_json() for d in self.days],
        }


@dataclass(frozen=True)
class FeedbackRow:
    """One recent bounce or complaint, for ops."""

    id: int
    received_at: datetime
    occurred_at: datetime
    event_type: str
    email: str | None
    bounce_type: str | None
    bounce_subtype: str | None
    complaint_type: str | None
    diagnostic: str | None
    outcome: str | None
    campaign_id: int | None

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["received_at"] = self.received_at.isoformat()
        out["occurred_at"] = self.occurred_at.isoformat()
        return out


@dataclass(frozen=True)
class StatsReport:
    """Everything ``mailer stats`` shows, for one scope (window, optional list/campaign)."""

    generated_at: datetime
    days: int
    since: datetime
    list_slug: str | None
    campaign_id: int | None
    totals: Counts
    campaigns: tuple[CampaignStats, ...]
    domains: tuple[DomainStats, ...]
    daily: tuple[DayRates, ...]
    suppressions: SuppressionGrowth
    unmatched_events: int

    def to_json(self) -> dict[str, Any]:
        return {
            "generated_at": self.generated_at.isoformat(),
            "days": self.days,
            "since": self.since.isoformat(),
            "list": self.list_slug,
            "campaign": self.campaign_id,
            "totals": self.totals.to_json(),
            "campaigns": [c.to_json() for c in self.campaigns],
            "domains": [d.to_json() for d in self.domains],
            "daily": [d.to_json() for d in self.daily],
            "suppressions": self.suppressions.to_json(),
            "unmatched_events": self.unmatched_events,
        }


def assess(counts: Counts) -> tuple[RateCheck, RateCheck]:
    """The bounce and complaint rate checks of ``counts``."""
    return counts.checks


# -- dialect helpers -------------------------------------------------------------------------


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def _day(session: Session, column: Any) -> ColumnElement[Any]:
    """The UTC calendar day of a UTCDateTime column, on either backend."""
    if _dialect(session) == "postgresql":
        return func.date(func.timezone("UTC", column))
    return func.date(column)


def _as_date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def _domain(session: Session, column: Any) -> ColumnElement[Any]:
    """The part of an address after the last '@' (addresses are stored normalized)."""
    if _dialect(session) == "postgresql":
        return func.split_part(column, "@", 2)
    return func.substr(column, func.instr(column, "@") + 1)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


# -- the core aggregation --------------------------------------------------------------------

_Key = Any  # whatever the grouping expression yields (campaign id, domain, day)


def _ledger_counts(
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
            func.count(case((Delivery.status.in_(_PENDING), 1))),
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

    unsub_rows = session.execute(
        base(func.count())
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


_PENDING = (DeliveryStatus.QUEUED.value, DeliveryStatus.SENDING.value)


def tracking_enabled(session: Session) -> bool:
    """True once any Open or Click event was ever stored (SES tracking is on)."""
    found = session.scalar(
        select(FeedbackEvent.id).where(FeedbackEvent.event_type.in_(("Open", "Click"))).limit(1)
    )
    return found is not None


def _empty(tracking: bool) -> Counts:
    return Counts(opened=0, clicked=0) if tracking else Counts()


# -- scopes ----------------------------------------------------------------------------------


def _list_id(session: Session, slug: str) -> int:
    found = session.scalar(select(MailingList.id).where(MailingList.slug == slug))
    if found is None:
        raise NotFoundError(f"no list {slug!r}")
    return found


def _scope(
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
    conds = _scope(session, since=since, list_id=list_id, campaign_id=campaign_id)
    found = _ledger_counts(session, conds, literal(1), tracking=tracking)
    return found.get(1, _empty(tracking))


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
    counts = _ledger_counts(
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
            counts=counts.get(c.id, _empty(tracking)),
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
    conds = _scope(session, since=since, list_id=list_id, campaign_id=campaign_id)
    key = _domain(session, Subscriber.email)
    found = _ledger_counts(session, conds, key, with_subscriber=True, tracking=tracking)
    ranked = sorted(found.items(), key=lambda kv: (-kv[1].sent, -kv[1].total, str(kv[0])))
    out = [DomainStats(ERASED_DOMAIN if k is None else str(k), c) for k, c in ranked[:top]]
    rest = [c for _, c in ranked[top:]]
    if rest:
        total = rest[0]
        for c in rest[1:]:
            total = total + c
        out.append(DomainStats(OTHER_DOMAIN, total))
    return out


def _window_days(since: datetime, now: datetime) -> list[date]:
    first, last = since.astimezone(UTC).date(), now.astimezone(UTC).date()
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


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
    conds = _scope(session, since=since, list_id=list_id, campaign_id=campaign_id)
    found = _ledger_counts(session, conds, _day(session, Delivery.sent_at), tracking=False)
    by_day = {_as_date(k): c for k, c in found.items() if k is not None}
    out = []
    for day in _window_days(since, now):
        c = by_day.get(day, Counts())
        out.append(DayRates(day, c.sent, c.hard_bounced, c.complained))
    return out


def suppression_growth(
    session: Session, since: datetime, *, now: datetime | None = None
) -> SuppressionGrowth:
    """Suppressions added per day (by reason) and removed per day, with today's total."""
    now = now or datetime.now(UTC)
    added: dict[date, dict[str, int]] = {}
    day = _day(session, Suppression.created_at)
    for d, reason, n in session.execute(
        select(day, Suppression.reason, func.count())
        .where(Suppression.created_at >= since)
        .group_by(day, Suppression.reason)
    ):
        added.setdefault(_as_date(d), {})[reason] = n
    removed: dict[date, int] = {}
    cday = _day(session, ConsentEvent.created_at)
    for d, n in session.execute(
        select(cday, func.count())
        .where(ConsentEvent.action == "unsuppress", ConsentEvent.created_at >= since)
        .group_by(cday)
    ):
        removed[_as_date(d)] = n
    by_reason = {
        reason: n
        for reason, n in session.execute(
            select(Suppression.reason, func.count()).group_by(Suppression.reason)
        )
    }
    days = tuple(
        SuppressionDay(d, dict(sorted(added.get(d, {}).items())), removed.get(d, 0))
        for d in _window_days(since, now)
    )
    return SuppressionGrowth(sum(by_reason.values()), dict(sorted(by_reason.items())), days)


def unmatched_events(session: Session, since: datetime) -> int:
    """Feedback events received since ``since`` that matched no Delivery row."""
    return int(
        session.scalar(
            select(func.count())
            .select_from(FeedbackEvent)
            .where(FeedbackEvent.delivery_id.is_(None), FeedbackEvent.received_at >= since)
        )
        or 0
    )


def recent_feedback(
    session: Session,
    *,
    types: Sequence[str] = ("Bounce", "Complaint"),
    limit: int = 50,
) -> list[FeedbackRow]:
    """The newest bounces and complaints (by arrival), with diagnostics and outcome."""
    rows = session.execute(
        select(FeedbackEvent, Delivery.campaign_id)
        .outerjoin(Delivery, Delivery.id == FeedbackEvent.delivery_id)
        .where(FeedbackEvent.event_type.in_(list(types)))
        .order_by(FeedbackEvent.received_at.desc(), FeedbackEvent.id.desc())
        .limit(limit)
    ).all()
    return [
        FeedbackRow(
            id=e.id,
            received_at=e.received_at,
            occurred_at=e.occurred_at,
            event_type=e.event_type,
            email=e.email,
            bounce_type=e.bounce_type,
            bounce_subtype=e.bounce_subtype,
            complaint_type=e.complaint_type,
            diagnostic=e.diagnostic,
            outcome=e.outcome,
            campaign_id=campaign_id,
        )
        for e, campaign_id in rows
    ]


def queue_depths(session: Session) -> dict[int, int]:
    """Rows still to send (queued or in flight) per campaign that has any."""
    rows = session.execute(
        select(Delivery.campaign_id, func.count())
        .where(Delivery.status.in_(_PENDING))
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


def collect(
    session: Session,
    *,
    days: int = 30,
    list_slug: str | None = None,
    campaign_id: int | None = None,
    now: datetime | None = None,
    top_domains: int = 10,
) -> StatsReport:
    """The whole report for ``mailer stats`` and the dashboard.

    ``campaign_id`` narrows everything to that campaign (all its rows, whatever ``days``);
    otherwise totals, domains and daily rates cover rows sent in the last ``days`` days
    (optionally of one list), and the campaign table the campaigns of that window.
    """
    if days < 1:
        raise ValueError("days must be >= 1")
    now = now or datetime.now(UTC)
    since = now - timedelta(days=days)
    list_id = _list_id(session, list_slug) if list_slug else None
    if campaign_id is not None:
        campaigns = campaign_stats(session, campaign_ids=[campaign_id])
        if not campaigns:
            raise NotFoundError(f"no campaign {campaign_id}")
        totals = campaigns[0].counts
        window_since: datetime | None = None
    else:
        campaigns = campaign_stats(session, since=since, list_id=list_id)
        totals = counts_since(session, since, list_id=list_id)
        window_since = since
    domains = domain_stats(
        session, since=window_since, list_id=list_id, campaign_id=campaign_id, top=top_domains
    )
    daily = daily_rates(session, since, now=now, list_id=list_id, campaign_id=campaign_id)
    return StatsReport(
        generated_at=now,
        days=days,
        since=since,
        list_slug=list_slug,
        campaign_id=campaign_id,
        totals=totals,
        campaigns=tuple(campaigns),
        domains=tuple(domains),
        daily=tuple(daily),
        suppressions=suppression_growth(session, since, now=now),
        unmatched_events=unmatched_events(session, since),
    )
