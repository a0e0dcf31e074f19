"""Delivery and reputation figures, computed once for the CLI, the dashboard and /metrics.

Everything is aggregated in SQL (a handful of GROUP BY queries, whatever the list size) and
returned as frozen dataclasses, so ``mailer stats``, ``/admin`` and ``/metrics`` can never
disagree about a number. This module is the figures' public face: :func:`collect` builds the
whole report; the parts live along their seams and are re-exported here —
:mod:`~mailer.ops.reputation` (thresholds and rate checks), :mod:`~mailer.ops.counts` (the
one aggregation), :mod:`~mailer.ops.campaign_figures` (per campaign, domain and day) and
:mod:`~mailer.ops.list_health` (suppression growth, recent feedback).

What the figures mean (all per Delivery row, so a reader counts once per campaign):

    sent          rows the transport accepted (``sent_at`` set), even if SES later rejected
    delivered     rows with an SES Delivery event
    hard_bounced  rows with a Permanent bounce        (SES's bounce rate counts these)
    soft_bounced  rows with a Transient/Undetermined bounce
    complained    rows with a Complaint ("not-spam" feedback is not a complaint)
    rejected      rows with an SES Reject event
    failed        rows whose send failed (transport refusal or SES Reject/Rendering Failure)
    unsubscribed  people (distinct readers) of the rows who left the list after it was sent to them
                  (one-click, link, or a complaint's automatic unsubscribe)
    opened/clicked rows with an Open/Click event; None while no tracking event exists at all

Rates are over ``sent``: bounce rate = hard bounces / sent, complaint rate = complaints /
sent, judged by :mod:`mailer.ops.reputation`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailer.errors import NotFoundError
from mailer.ops.campaign_figures import (
    CampaignStats,
    DayRates,
    DomainStats,
    campaign_stats,
    daily_rates,
    domain_stats,
    queue_depths,
    send_rate,
)
from mailer.ops.counts import Counts, counts_since
from mailer.ops.list_health import (
    FeedbackRow,
    SuppressionDay,
    SuppressionGrowth,
    recent_feedback,
    suppression_growth,
    unmatched_events,
)
from mailer.ops.reputation import (
    BOUNCE_THRESHOLDS,
    COMPLAINT_THRESHOLDS,
    Level,
    RateCheck,
    Threshold,
)
from subscribers.models import MailingList

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


def _list_id(session: Session, slug: str) -> int:
    found = session.scalar(select(MailingList.id).where(MailingList.slug == slug))
    if found is None:
        raise NotFoundError(f"no list {slug!r}")
    return found


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
