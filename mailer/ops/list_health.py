"""The health of the list: how the suppression list grows, the newest bounces and
complaints, and feedback that matched no delivery.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mailer.feedback.models import FeedbackEvent
from mailer.ops.counts import as_date, utc_day, window_days
from mailer.ops.outcome_words import in_words
from mailer.sending.models import Delivery
from subscribers.models import ConsentEvent, Suppression

__all__ = [
    "FeedbackRow",
    "SuppressionDay",
    "SuppressionGrowth",
    "recent_feedback",
    "suppression_growth",
    "unmatched_events",
]


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

    @property
    def what_we_did(self) -> str:
        """The rules' actions in words (/admin's "What we did")."""
        return in_words(self.outcome)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["received_at"] = self.received_at.isoformat()
        out["occurred_at"] = self.occurred_at.isoformat()
        return out


def suppression_growth(
    session: Session, since: datetime, *, now: datetime | None = None
) -> SuppressionGrowth:
    """Suppressions added per day (by reason) and removed per day, with today's total."""
    now = now or datetime.now(UTC)
    added: dict[date, dict[str, int]] = {}
    day = utc_day(session, Suppression.created_at)
    for d, reason, n in session.execute(
        select(day, Suppression.reason, func.count())
        .where(Suppression.created_at >= since)
        .group_by(day, Suppression.reason)
    ):
        added.setdefault(as_date(d), {})[reason] = n
    removed: dict[date, int] = {}
    cday = utc_day(session, ConsentEvent.created_at)
    for d, n in session.execute(
        select(cday, func.count())
        .where(ConsentEvent.action == "unsuppress", ConsentEvent.created_at >= since)
        .group_by(cday)
    ):
        removed[as_date(d)] = n
    by_reason = {
        reason: n
        for reason, n in session.execute(
            select(Suppression.reason, func.count()).group_by(Suppression.reason)
        )
    }
    days = tuple(
        SuppressionDay(d, dict(sorted(added.get(d, {}).items())), removed.get(d, 0))
        for d in window_days(since, now)
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
