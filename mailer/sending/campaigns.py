"""Campaigns: create one (with a Delivery row per reader, set-based), find and report them.

The tables are in :mod:`mailer.sending.models`, every status change in
:mod:`mailer.sending.lifecycle`, the claims and marks of delivery rows in
:mod:`mailer.sending.ledger`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, exists, func, insert, literal, select, text
from sqlalchemy.orm import Session

from mailer.errors import ConflictError
from mailer.sending.ledger import state_counts
from mailer.sending.models import (
    Campaign,
    CampaignStatus,
    Delivery,
    DeliveryStatus,
    get_campaign,
)
from subscribers.db import is_sqlite
from subscribers.models import (
    MailingList,
    Subscriber,
    Subscription,
    Suppression,
)


def archive_url(base_url: str, list_slug: str, issue_key: str) -> str:
    """The issue's web edition, which the email's "view in browser" link points to."""
    return f"{base_url.rstrip('/')}/archive/{list_slug}/{issue_key[:16]}"


def recipients_query(list_id: int) -> Select[Any]:
    """Subscriber ids of the list's active, unsuppressed readers."""
    return (
        select(Subscription.subscriber_id)
        .join(Subscriber, Subscriber.id == Subscription.subscriber_id)
        .where(
            Subscription.list_id == list_id,
            Subscription.status == "active",
            ~exists().where(Suppression.email == Subscriber.email),
        )
    )


def count_recipients(session: Session, list_id: int) -> int:
    return (
        session.scalar(select(func.count()).select_from(recipients_query(list_id).subquery())) or 0
    )


def find_sent(session: Session, list_id: int, issue_key: str) -> Campaign | None:
    """An earlier campaign of the same issue to the same list (cancelled ones don't count)."""
    return session.scalar(
        select(Campaign)
        .where(
            Campaign.list_id == list_id,
            Campaign.issue_key == issue_key,
            Campaign.status != CampaignStatus.CANCELLED,
        )
        .order_by(Campaign.id.desc())
        .limit(1)
    )


def create_campaign(
    session: Session,
    *,
    mailing_list: MailingList,
    issue_key: str,
    issue: dict[str, Any],
    subject: str,
    html: str,
    text: str,
    archive_html: str,
    scheduled_at: datetime | None = None,
    expires_at: datetime | None = None,
    force: bool = False,
) -> tuple[Campaign, int]:
    """Create the campaign and enqueue one Delivery per active, unsuppressed reader in one
    INSERT ... SELECT. Returns the campaign and the number of rows enqueued."""
    earlier = find_sent(session, mailing_list.id, issue_key)
    if earlier is not None and not force:
        raise ConflictError(
            f"this issue was already sent to {mailing_list.slug} as campaign {earlier.id} "
            f"({earlier.status}); pass --force to send it again"
        )
    campaign = Campaign(
        list_id=mailing_list.id,
        issue_key=issue_key,
        subject=subject,
        issue=issue,
        html=html,
        text=text,
        archive_html=archive_html,
        status=CampaignStatus.SCHEDULED,
        scheduled_at=scheduled_at,
        expires_at=expires_at,
        reclaimed=0,
    )
    session.add(campaign)
    session.flush()
    enqueued = enqueue(session, campaign, fresh=True)
    return campaign, enqueued


def enqueue(session: Session, campaign: Campaign, *, fresh: bool = False) -> int:
    """One queued Delivery per recipient, set-based. Idempotent (unique per reader): rows
    already enqueued are left out, a check skipped for a ``fresh`` campaign (no rows yet)."""
    source = recipients_query(campaign.list_id)
    before = 0
    if not fresh:
        already = select(Delivery.subscriber_id).where(Delivery.campaign_id == campaign.id)
        source = source.where(Subscription.subscriber_id.not_in(already))
        before = _count(session, campaign.id)
    stmt = insert(Delivery).from_select(
        ["campaign_id", "subscriber_id", "status", "attempts"],
        select(
            literal(campaign.id),
            source.subquery().c.subscriber_id,
            literal(DeliveryStatus.QUEUED.value),
            literal(0),
        ),
    )
    session.execute(stmt)
    added = _count(session, campaign.id) - before  # rowcount is -1 for this on psycopg
    analyze(session, "deliveries", "subscribers", "subscriptions")
    return added


def _count(session: Session, campaign_id: int) -> int:
    query = select(func.count()).where(Delivery.campaign_id == campaign_id)
    return session.scalar(query) or 0


def analyze(session: Session, *tables: str) -> None:
    """Refresh planner statistics after a bulk change: with stale ones PostgreSQL plans the
    per-batch claim queries as scans of the whole list (seen: 160 ms instead of 1 ms)."""
    if is_sqlite(session):
        session.execute(text("ANALYZE"))
    else:
        session.execute(text("ANALYZE " + ", ".join(tables)))


def latest(session: Session, limit: int = 20) -> list[Campaign]:
    return list(session.scalars(select(Campaign).order_by(Campaign.id.desc()).limit(limit)))


def runnable(session: Session, now: datetime) -> list[int]:
    """Campaigns a worker should send now: sending ones, and scheduled ones that are due."""
    return list(
        session.scalars(
            select(Campaign.id)
            .where(
                (Campaign.status == CampaignStatus.SENDING)
                | (
                    (Campaign.status == CampaignStatus.SCHEDULED)
                    & ((Campaign.scheduled_at.is_(None)) | (Campaign.scheduled_at <= now))
                )
            )
            .order_by(Campaign.id)
        )
    )


@dataclass(frozen=True)
class CampaignReport:
    """What `campaigns show` prints."""

    campaign: Campaign
    list_slug: str
    counts: dict[str, int]
    rate: float  # sent per second between the first and the last send
    first_sent: datetime | None
    last_sent: datetime | None
    failures: list[tuple[int, str | None, str | None, str | None]]  # id, email, class, error

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def in_flight(self) -> int:
        return self.counts.get(DeliveryStatus.SENDING, 0)


def report(session: Session, campaign_id: int, *, failures: int = 20) -> CampaignReport:
    campaign = get_campaign(session, campaign_id)
    counts = state_counts(session, campaign_id)
    first, last = session.execute(
        select(func.min(Delivery.sent_at), func.max(Delivery.sent_at)).where(
            Delivery.campaign_id == campaign_id, Delivery.status == DeliveryStatus.SENT
        )
    ).one()
    start = campaign.started_at or first
    span = (last - start).total_seconds() if start and last else 0.0
    sent = counts.get(DeliveryStatus.SENT, 0)
    rows = session.execute(
        select(Delivery.id, Subscriber.email, Delivery.error_class, Delivery.error)
        .outerjoin(Subscriber, Subscriber.id == Delivery.subscriber_id)
        .where(Delivery.campaign_id == campaign_id, Delivery.status == DeliveryStatus.FAILED)
        .order_by(Delivery.id)
        .limit(failures)
    ).all()
    mlist = session.get(MailingList, campaign.list_id)
    return CampaignReport(
        campaign=campaign,
        list_slug=mlist.slug if mlist else "?",
        counts=counts,
        rate=sent / span if span > 0 else 0.0,
        first_sent=first,
        last_sent=last,
        failures=[tuple(r) for r in rows],  # type: ignore[misc]
    )
