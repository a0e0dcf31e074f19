"""Reading a campaign's progress: the newest campaigns, one campaign's report, its rows per
state. Its own module, importing only the tables, so that `mailer campaigns show` and
`campaigns list` do not import the write side (enqueue, lifecycle events, the webhook
outbox, the claim and result writes: ~12 ms of their start-up, issue 17);
:mod:`mailer.sending.campaigns` and :mod:`mailer.sending.ledger` re-export these.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mailer.sending.models import Campaign, Delivery, DeliveryStatus, get_campaign
from subscribers.models import MailingList, Subscriber


def latest(session: Session, limit: int = 20) -> list[Campaign]:
    return list(session.scalars(select(Campaign).order_by(Campaign.id.desc()).limit(limit)))


def state_counts(s: Session, campaign_id: int) -> dict[str, int]:
    """Rows per delivery status of one campaign."""
    rows = s.execute(
        select(Delivery.status, func.count())
        .where(Delivery.campaign_id == campaign_id)
        .group_by(Delivery.status)
    )
    return {status: n for status, n in rows}


@dataclass(frozen=True)
class CampaignReport:
    """What `campaigns show` prints."""

    campaign: Campaign
    list_slug: str
    counts: dict[str, int]
    rate: float  # sent per second between the start and the last send
    failures: list[tuple[int, str | None, str | None, str | None]]  # id, email, class, error

    @property
    def total(self) -> int:
        return sum(self.counts.values())


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
        failures=[tuple(r) for r in rows],  # type: ignore[misc]
    )
