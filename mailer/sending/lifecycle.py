"""Every change of a campaign's status, in one place.

    scheduled -> sending -> done                        start, finish
                        \\-> paused (reason) -> sending  pause, auto_pause, guard_pause, resume
                        \\-> cancelled | expired         cancel, expire
    paused -> scheduled                                 resume before its scheduled time
    done -> sending                                     retry_failed

Editors' changes (:func:`pause`, :func:`resume`, :func:`cancel`, :func:`retry_failed`) take a
campaign id, read the campaign under its row lock, refuse a change its state does not allow
(``ConflictError``) and are what every entrance calls. The send engine's own changes
(:func:`start`, :func:`auto_pause`, :func:`guard_pause`, :func:`expire`, :func:`finish`,
:func:`close_ledger`) take the campaign row it holds locked, inside the transaction where it
judged the campaign, and move a campaign only out of ``scheduled`` or ``sending``
(anything else they leave as it is). So neither side writes over a change it did not see.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import update
from sqlalchemy.orm import Session

from mailer.errors import ConflictError, ForbiddenError
from mailer.sending import campaign_events, guard
from mailer.sending.models import Campaign, CampaignStatus, Delivery, DeliveryStatus, get_campaign
from subscribers.models import utcnow

log = logging.getLogger(__name__)

#: the states an editor can pause
PAUSABLE = (CampaignStatus.SENDING, CampaignStatus.SCHEDULED)
#: the states nothing but ``retry_failed`` (done) leaves
FINAL = (CampaignStatus.DONE, CampaignStatus.CANCELLED, CampaignStatus.EXPIRED)
#: the error of a row a cancel skipped
CANCELLED = "campaign cancelled"


# -- the engine's changes, on the row it holds ---------------------------------------------


def start(campaign: Campaign) -> None:
    """A worker picks the campaign up: scheduled -> sending, and the first start is noted
    (a paused, done, cancelled or expired campaign is left as it is)."""
    if campaign.status not in (CampaignStatus.SCHEDULED, CampaignStatus.SENDING):
        return
    first = campaign.started_at is None
    campaign.status = CampaignStatus.SENDING
    campaign.started_at = campaign.started_at or utcnow()
    if first:
        campaign_events.emit(campaign, "campaign.started")


def auto_pause(campaign: Campaign, reason: str) -> None:
    """The engine stops by itself (an account-level refusal, the daily quota): paused with
    the reason, which ``campaigns show`` prints and ``resume`` clears. Only a sending
    campaign pauses: one cancelled, expired or done meanwhile stays so, and one paused
    meanwhile keeps its reason (a guard pause must still need ``resume --force``)."""
    if campaign.status != CampaignStatus.SENDING:
        log.warning(
            "campaign %s is %s; not pausing it for: %s", campaign.id, campaign.status, reason
        )
        return
    campaign.status = CampaignStatus.PAUSED
    campaign.pause_reason = reason[:2000]
    log.warning("campaign %s paused: %s", campaign.id, reason)
    campaign_events.emit(campaign, "campaign.paused")


def guard_pause(campaign: Campaign, verdict: str) -> None:
    """The reputation guard's verdict: a pause that only ``resume --force`` lifts."""
    auto_pause(campaign, guard.pause_reason(verdict))
    campaign_events.emit(campaign, "guard.tripped", verdict=verdict)


def expire(session: Session, campaign: Campaign, reason: str) -> None:
    """Too late to send: the rest of the list is skipped so the ledger is final."""
    campaign.status = CampaignStatus.EXPIRED
    campaign.pause_reason = reason
    campaign.finished_at = utcnow()
    _skip(session, campaign.id, (DeliveryStatus.QUEUED, DeliveryStatus.SENDING), "Expired", reason)
    campaign_events.emit(campaign, "campaign.expired")


def close_ledger(session: Session, campaign: Campaign) -> int:
    """After a run stops: a campaign cancelled or expired while batches were at the
    transport got rows handed back to the queue (not attempted, or to retry); they are
    skipped as the cancel or expiry skipped the others, so its ledger is final."""
    if campaign.status == CampaignStatus.CANCELLED:
        return _skip(session, campaign.id, (DeliveryStatus.QUEUED,), "Cancelled", CANCELLED)
    if campaign.status == CampaignStatus.EXPIRED:
        reason = campaign.pause_reason or "expired"
        return _skip(session, campaign.id, (DeliveryStatus.QUEUED,), "Expired", reason)
    return 0


def _skip(
    session: Session,
    campaign_id: int,
    statuses: tuple[DeliveryStatus, ...],
    error_class: str,
    error: str,
) -> int:
    result = session.execute(
        update(Delivery)
        .where(Delivery.campaign_id == campaign_id, Delivery.status.in_(statuses))
        .values(status=DeliveryStatus.SKIPPED, error_class=error_class, error=error)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def finish(campaign: Campaign) -> None:
    """Nothing left queued or in flight: a sending campaign is done (a paused, cancelled or
    expired one keeps its state)."""
    if campaign.status == CampaignStatus.SENDING:
        campaign.status = CampaignStatus.DONE
        campaign.finished_at = utcnow()
        campaign_events.emit(campaign, "campaign.done")


# -- editors' changes, by id ---------------------------------------------------------------


def _locked(session: Session, campaign_id: int) -> Campaign:
    """The campaign as it is now, its row locked until the change commits (PostgreSQL):
    an editor's change judges the state a worker may have just changed (expired, paused,
    done), never an older read that its write would then undo."""
    campaign = get_campaign(session, campaign_id)
    session.refresh(campaign, with_for_update=True)
    return campaign


def pause(session: Session, campaign_id: int, reason: str) -> Campaign:
    """Workers stop after the batch in flight."""
    campaign = _locked(session, campaign_id)
    if campaign.status not in PAUSABLE:
        raise ConflictError(
            f"campaign {campaign_id} is {campaign.status}; only a sending or "
            "scheduled campaign can be paused"
        )
    campaign.status = CampaignStatus.PAUSED
    campaign.pause_reason = reason
    campaign_events.emit(campaign, "campaign.paused")
    return campaign


def resume(
    session: Session,
    campaign_id: int,
    *,
    force: bool = False,
    ops: bool = False,
    now: datetime | None = None,
) -> Campaign:
    """Paused -> sending, or back to scheduled when its time has not come (a campaign paused
    before its ``--at`` waits for it again, never starts early). A reputation-guard pause
    needs ``force`` from a caller with the ops role (``ops``: ops have looked), whichever
    entrance it comes through; from then on the guard judges only what happens after this
    moment."""
    now = now or utcnow()
    campaign = _locked(session, campaign_id)
    if campaign.status == CampaignStatus.SENDING:
        return campaign
    if campaign.status != CampaignStatus.PAUSED:
        raise ConflictError(f"campaign {campaign_id} is {campaign.status}; cannot resume it")
    if guard.is_guard_pause(campaign.pause_reason):
        if not force:
            raise ConflictError(
                f"campaign {campaign_id} was paused by the {campaign.pause_reason}; look at "
                "`mailer stats` first, then resume with --force"
            )
        if not ops:
            raise ForbiddenError(
                f"campaign {campaign_id} was paused by the {campaign.pause_reason}; resuming "
                "it anyway needs an ops token"
            )
        guard.acknowledge(session, campaign_id)
    if campaign.expires_at is not None and campaign.expires_at <= now:
        raise ConflictError(
            f"campaign {campaign_id} expired at {campaign.expires_at:%Y-%m-%d %H:%M}Z"
        )
    waiting = campaign.scheduled_at is not None and campaign.scheduled_at > now
    campaign.status = CampaignStatus.SCHEDULED if waiting else CampaignStatus.SENDING
    campaign.pause_reason = None
    campaign_events.emit(campaign, "campaign.resumed")
    return campaign


def cancel(session: Session, campaign_id: int) -> int:
    """Cancel: queued rows become skipped. Returns how many were skipped."""
    campaign = _locked(session, campaign_id)
    if campaign.status in FINAL:
        raise ConflictError(f"campaign {campaign_id} is already {campaign.status}")
    campaign.status = CampaignStatus.CANCELLED
    campaign.finished_at = utcnow()
    skipped = _skip(session, campaign_id, (DeliveryStatus.QUEUED,), "Cancelled", CANCELLED)
    campaign_events.emit(campaign, "campaign.cancelled")
    return skipped


def retry_failed(session: Session, campaign_id: int) -> int:
    """Failed rows go back to the queue and a done campaign to sending."""
    campaign = _locked(session, campaign_id)
    if campaign.status in (CampaignStatus.CANCELLED, CampaignStatus.EXPIRED):
        raise ConflictError(f"campaign {campaign_id} is {campaign.status}")
    result = session.execute(
        update(Delivery)
        .where(Delivery.campaign_id == campaign_id, Delivery.status == DeliveryStatus.FAILED)
        .values(status=DeliveryStatus.QUEUED, not_before=None, attempts=0)
    )
    n = int(getattr(result, "rowcount", 0) or 0)
    if n and campaign.status == CampaignStatus.DONE:
        campaign.status = CampaignStatus.SENDING
        campaign.finished_at = None
        campaign_events.emit(campaign, "campaign.resumed", retry_failed=n)
    return n
