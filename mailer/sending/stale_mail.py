"""System mails a crashed sender left ``sending``, claimed again and sent by a worker.

A confirmation, welcome or preferences-link mail is sent by the process that made it due
(a web request, a CLI command), which holds no worker lease. If that process dies between
the claim and the mark, the row stays ``sending`` and the reader waits for ever. Like an
issue row of a dead worker (:mod:`mailer.sending.ledger`), the row is claimed again once
its claim is older than ``MAILER_LEASE_SECONDS``, under the claiming worker's lease
generation (its fence), and sent; the first sender's late result is then refused by
:func:`mailer.sending.one_mail.mark` (docs/architecture.md principles 2 and 10).

A system-mail row names its reader but not its list (``deliveries`` has no list column),
so the list is found again by the rule that made the mail due: a confirmation for the
reader's newest pending subscription made before the claim, a welcome for the
subscription welcomed last, a preferences link as :func:`send_preferences_link` picks.
With one list per reader that is exact; with several pending lists a re-sent
confirmation may name another of them (each is a list the reader asked for).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import NamedTuple

from sqlalchemy import CursorResult, select, update
from sqlalchemy.orm import Session, sessionmaker

from mailer.config import Settings
from mailer.errors import TransportError
from mailer.render.tokens import Signer
from mailer.sending.leases import live_generation
from mailer.sending.models import Delivery, DeliveryStatus
from mailer.sending.one_mail import Held, mark
from mailer.sending.outcomes import Fence
from mailer.sending.system_mail import Due, preferences_subscription, send_due
from mailer.transports.base import Transport
from subscribers.models import Subscription

log = logging.getLogger(__name__)

SYSTEM_KINDS = ("confirm", "welcome", "preferences")
#: a mail claimed this many times without a result (its sender died each time) is failed
MAX_CLAIMS = 5
BATCH = 100  # rows looked at per pass; the rest wait for the next


class _Stale(NamedTuple):
    delivery_id: int
    kind: str
    subscriber_id: int | None
    claimed_at: datetime


def resend_stale(
    sessions: sessionmaker[Session],
    settings: Settings,
    signer: Signer,
    transport: Transport,
    worker_id: str,
    *,
    now: datetime,
) -> int:
    """Claim again the system mails left ``sending`` for longer than the lease, and send
    them (a worker's pass). Nothing while this worker's lease has lapsed at ``now``. The
    number of mails that went out."""
    with sessions() as s:
        generation = live_generation(s, worker_id, now)
    if generation is None:
        return 0
    fence = Fence(worker_id, generation)
    cutoff = now - timedelta(seconds=settings.lease_seconds)
    sent = 0
    for due in _reclaim(sessions, fence, cutoff, now):
        log.warning(
            "%s mail (delivery %d): its sender left it unfinished; sending it again",
            due.kind,
            due.delivery_id,
        )
        sent += send_due(sessions, settings, signer, transport, due, now=now)
    return sent


def _reclaim(
    sessions: sessionmaker[Session], fence: Fence, cutoff: datetime, now: datetime
) -> list[Due]:
    """Claim the stale rows under ``fence`` (one conditional UPDATE each: of two workers
    only one moves a row); the ones still to send, with their list."""
    with sessions() as s:
        stale = [
            _Stale(i, kind, subscriber_id, claimed_at or cutoff)
            for i, kind, subscriber_id, claimed_at in s.execute(
                select(Delivery.id, Delivery.kind, Delivery.subscriber_id, Delivery.claimed_at)
                .where(
                    Delivery.campaign_id.is_(None),
                    Delivery.status == DeliveryStatus.SENDING,
                    Delivery.kind.in_(SYSTEM_KINDS),
                    Delivery.claimed_at < cutoff,
                )
                .order_by(Delivery.id)
                .limit(BATCH)
            )
        ]
    due: list[Due] = []
    for row in stale:
        with sessions.begin() as s:
            attempts = _claim(s, row.delivery_id, fence, cutoff, now)
            if attempts is None:
                continue  # another worker claimed it first
            held = Held(row.delivery_id, fence)
            if attempts > MAX_CLAIMS:
                error = TransportError(f"its sender died {attempts - 1} times; not sent again")
                mark(s, held, DeliveryStatus.FAILED, error=error)
                continue
            list_id = _list_of(s, row)
            if list_id is None or row.subscriber_id is None:
                mark(s, held, DeliveryStatus.SKIPPED)  # erased, or no longer subscribed
                continue
            due.append(Due(row.kind, held, row.subscriber_id, list_id))
    return due


def _claim(
    s: Session, delivery_id: int, fence: Fence, cutoff: datetime, now: datetime
) -> int | None:
    """Take the row if it is still stale; its claims so far (with this one), or None."""
    done = s.execute(
        update(Delivery)
        .where(
            Delivery.id == delivery_id,
            Delivery.status == DeliveryStatus.SENDING,
            Delivery.claimed_at < cutoff,
        )
        .values(
            worker=fence.worker,
            fence=fence.generation,
            claimed_at=now,
            attempts=Delivery.attempts + 1,
        )
        .execution_options(synchronize_session=False)
    )
    assert isinstance(done, CursorResult)
    if done.rowcount != 1:
        return None
    return s.scalar(select(Delivery.attempts).where(Delivery.id == delivery_id))


def _list_of(s: Session, row: _Stale) -> int | None:
    """The list the mail was for, by the rule that made it due (see the module's docstring)."""
    if row.subscriber_id is None:
        return None
    if row.kind == "preferences":
        subscription = preferences_subscription(s, row.subscriber_id)
        return None if subscription is None else subscription.list_id
    mine = Subscription.subscriber_id == row.subscriber_id
    if row.kind == "welcome":
        query = (
            select(Subscription.list_id)
            .where(mine, Subscription.status == "active", Subscription.welcomed_at.is_not(None))
            .order_by(Subscription.welcomed_at.desc(), Subscription.id.desc())
        )
    else:
        before = Subscription.created_at <= row.claimed_at
        query = (
            select(Subscription.list_id)
            .where(mine, Subscription.status == "pending")
            .order_by(before.desc(), Subscription.created_at.desc(), Subscription.id.desc())
        )
    return s.scalar(query.limit(1))
