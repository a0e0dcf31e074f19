"""The webhook events of a campaign's status changes (``campaign.*``, ``guard.tripped``).

:mod:`mailer.sending.lifecycle` calls :func:`emit` at each change, on the campaign row it
holds, so the event joins the outbox (:mod:`subscribers.outbox`) in the transaction of the
change. Nothing is queried unless an endpoint asked for the event: once per campaign change,
never per delivery.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, object_session

from mailer.sending.models import Campaign, Delivery
from subscribers import outbox
from subscribers.models import MailingList

__all__ = ["campaign_data", "emit"]


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


def campaign_data(session: Session, campaign: Campaign) -> dict[str, Any]:
    """What every campaign event says about its campaign (README: Webhooks out)."""
    slug = session.scalar(select(MailingList.slug).where(MailingList.id == campaign.list_id))
    counts = dict(
        session.execute(
            select(Delivery.status, func.count())
            .where(Delivery.campaign_id == campaign.id)
            .group_by(Delivery.status)
        ).all()
    )
    return {
        "id": campaign.id,
        "list": slug,
        "issue_key": campaign.issue_key,
        "subject": campaign.subject,
        "status": campaign.status,
        "pause_reason": campaign.pause_reason,
        "scheduled_at": _iso(campaign.scheduled_at),
        "started_at": _iso(campaign.started_at),
        "finished_at": _iso(campaign.finished_at),
        "expires_at": _iso(campaign.expires_at),
        "counts": {str(k): int(v) for k, v in counts.items()},
    }


def emit(campaign: Campaign, type_: str, **extra: Any) -> None:
    """Append ``type_`` about ``campaign`` in the transaction of the session holding it."""
    session = object_session(campaign)
    if session is None or not outbox.wanted(session, type_):
        return
    session.flush()  # the counts see the change being made
    data = {"campaign": campaign_data(session, campaign), **extra}
    outbox.emit(session, type_, data)
