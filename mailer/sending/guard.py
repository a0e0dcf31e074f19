"""The reputation guard: pause a campaign by itself when its bounces or complaints spike.

SES reviews an account at a 5% bounce rate and a 0.1% complaint rate and pauses it at 10%
and 0.5%; an account under review is a bad day for every list it sends. The send engine
calls :func:`check_campaign` before each claim; a returned verdict means: pause the campaign
now (``lifecycle.guard_pause``, with :func:`pause_reason` of it) and send nothing more.

The rates are the campaign's, over every row sent so far: hard bounces / sent and
complaints / sent (events matched to the campaign's rows). Nothing is judged before
``MAILER_GUARD_MIN_SAMPLE`` sends; a threshold of 0 turns that check off.

After ops have looked, ``mailer campaigns resume ID --force`` sets ``guard_ack_at``; from
then on only sends made and events received after that moment count, so the spike that
caused the pause does not pause the campaign again at once.

It is one aggregate query on indexed columns (``deliveries.campaign_id``,
``feedback_events.delivery_id``), cheap enough to run after every batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, case, func, select
from sqlalchemy.orm import Session

from mailer.config import Settings
from mailer.feedback.models import FeedbackEvent
from mailer.sending.models import Campaign, Delivery, get_campaign
from subscribers.models import utcnow

__all__ = [
    "REASON_PREFIX",
    "GuardSample",
    "acknowledge",
    "check_campaign",
    "is_guard_pause",
    "pause_reason",
    "sample",
]

CLOCK_SKEW = timedelta(hours=1)
REASON_PREFIX = "reputation guard:"
"""Only :func:`pause_reason` writes it and :func:`is_guard_pause` reads it (the engine pauses
with the one, ``campaigns resume`` asks the other)."""


@dataclass(frozen=True)
class GuardSample:
    """What the guard judged: sends and events since the campaign began or was acknowledged."""

    campaign_id: int
    since: datetime | None
    sent: int
    hard_bounced: int
    complained: int

    @property
    def bounce_rate(self) -> float:
        return self.hard_bounced / self.sent if self.sent else 0.0

    @property
    def complaint_rate(self) -> float:
        return self.complained / self.sent if self.sent else 0.0


def sample(session: Session, campaign_id: int, *, lazy: bool = False) -> GuardSample:
    """The campaign's sends, hard bounces and complaints since ``guard_ack_at``.

    Events are only looked for since the acknowledgement, or since the campaign started
    (less an hour for clock skew between hosts): none of its messages can bounce earlier,
    and the ``received_at`` index keeps old history out of the scan. The events are counted
    first; with ``lazy`` and none of them, the sends are not counted (``sent`` is 0): that
    count walks every row of the campaign, and the engine asks before every batch.
    """
    campaign = get_campaign(session, campaign_id)  # the engine has it loaded already
    ack = campaign.guard_ack_at
    sent_where = [Delivery.campaign_id == campaign_id, Delivery.sent_at.is_not(None)]
    fe = FeedbackEvent
    if ack is not None:
        sent_where.append(Delivery.sent_at > ack)
        since = fe.received_at > ack
    else:
        started = campaign.started_at or campaign.created_at
        since = fe.received_at >= started - CLOCK_SKEW
    hard = and_(fe.event_type == "Bounce", fe.bounce_type == "Permanent")
    complaint = and_(
        fe.event_type == "Complaint", func.coalesce(fe.complaint_type, "") != "not-spam"
    )
    events = (
        select(
            func.count(func.distinct(case((hard, fe.delivery_id)))),
            func.count(func.distinct(case((complaint, fe.delivery_id)))),
        )
        .select_from(fe)
        .join(Delivery, Delivery.id == fe.delivery_id)
        .where(
            Delivery.campaign_id == campaign_id,
            fe.event_type.in_(("Bounce", "Complaint")),
            since,
        )
    )
    hard_n, complaint_n = session.execute(events).one()
    n_sent: int | None = 0
    if hard_n or complaint_n or not lazy:
        n_sent = session.scalar(select(func.count()).select_from(Delivery).where(*sent_where))
    return GuardSample(campaign_id, ack, int(n_sent or 0), int(hard_n), int(complaint_n))


def check_campaign(session: Session, campaign_id: int, settings: Settings) -> str | None:
    """A pause reason when the campaign's bounce or complaint rate crossed its threshold
    after at least ``settings.guard_min_sample`` sends; None while all is well."""
    s = sample(session, campaign_id, lazy=True)
    if s.sent < max(settings.guard_min_sample, 1):
        return None
    problems = []
    if settings.guard_bounce_rate > 0 and s.bounce_rate >= settings.guard_bounce_rate:
        problems.append(
            f"bounce rate {s.bounce_rate:.2%} ({s.hard_bounced} hard bounces / {s.sent} sent)"
            f" >= MAILER_GUARD_BOUNCE_RATE {settings.guard_bounce_rate:.2%}"
        )
    if settings.guard_complaint_rate > 0 and s.complaint_rate >= settings.guard_complaint_rate:
        problems.append(
            f"complaint rate {s.complaint_rate:.2%} ({s.complained} complaints / {s.sent} sent)"
            f" >= MAILER_GUARD_COMPLAINT_RATE {settings.guard_complaint_rate:.2%}"
        )
    if not problems:
        return None
    return (
        f"{'; '.join(problems)}. Look at `mailer stats --campaign {campaign_id}`,"
        f" then `mailer campaigns resume {campaign_id} --force`"
    )


def pause_reason(reason: str) -> str:
    """The campaign's pause reason for a guard verdict."""
    return f"{REASON_PREFIX} {reason}"


def is_guard_pause(reason: str | None) -> bool:
    """True when a campaign was paused by the guard (resuming it needs ``--force``)."""
    return bool(reason) and str(reason).startswith(REASON_PREFIX)


def acknowledge(session: Session, campaign_id: int, at: datetime | None = None) -> Campaign:
    """Ops looked at a guard pause: judge only what happens from ``at`` (now) on."""
    campaign = get_campaign(session, campaign_id)
    campaign.guard_ack_at = at or utcnow()
    session.flush()
    return campaign
