"""One mail to one reader through the ledger: claim a Delivery row, build the MIME, send,
mark the row (the system mails of :mod:`mailer.sending.system_mail`).

The row is claimed (``sending``) before the transport is called and marked after, like an
issue's, so a bounce or a complaint about the mail matches it by MessageId. Each message is
built with the stdlib ``email`` package and carries ``Auto-Submitted: auto-generated``
(RFC 3834) and no List-Unsubscribe (not a campaign).

A claim is fenced like an issue row's (issue 18): it records who holds it (:class:`Held`),
and :func:`mark` changes the row only while it still holds that claim. A process that
crashed mid-send leaves the row ``sending``; a worker claims it again after the lease
(:mod:`mailer.sending.stale_mail`) under its own fence, so a late result of the first
sender changes nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid
from typing import NamedTuple

from sqlalchemy import CursorResult, update
from sqlalchemy.orm import Session, sessionmaker

from mailer.errors import MailerError, TransportError
from mailer.render.message import sending_domain
from mailer.sending.leases import new_worker_id
from mailer.sending.models import Delivery, DeliveryStatus
from mailer.sending.outcomes import Fence
from mailer.transports.base import CampaignMessage, OutgoingMessage, Transport

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SystemMail:
    """What a one-reader mail says, before it becomes MIME."""

    kind: str  # 'confirm' | 'welcome' | 'preferences' (deliveries.kind)
    to: str
    subscriber_id: int
    subject: str
    from_address: str
    reply_to: str | None
    html: str
    text: str


def build_message(
    mail: SystemMail, *, delivery_id: int = 0, now: datetime | None = None
) -> tuple[CampaignMessage, OutgoingMessage]:
    """The transport's two halves: what SES bulk would template, and the raw MIME.
    ``campaign_id`` is 0 (no campaign); ``delivery_id`` the mail's ledger row."""
    msg = EmailMessage(policy=SMTP)
    msg["From"] = mail.from_address
    msg["To"] = mail.to
    if mail.reply_to:
        msg["Reply-To"] = mail.reply_to
    msg["Subject"] = mail.subject
    msg["Date"] = format_datetime(now or datetime.now(UTC))
    message_id = make_msgid(mail.kind, domain=sending_domain(mail.from_address))
    msg["Message-ID"] = message_id
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(mail.text)
    msg.add_alternative(mail.html, subtype="html")
    campaign = CampaignMessage(
        campaign_id=0,
        subject=mail.subject,
        from_address=mail.from_address,
        html=mail.html,
        text=mail.text,
        headers={"Auto-Submitted": "auto-generated"},
        reply_to=mail.reply_to,
        tags={"kind": mail.kind},
    )
    outgoing = OutgoingMessage(
        delivery_id=delivery_id,
        to=mail.to,
        raw=msg.as_bytes(),
        headers={"To": mail.to, "Message-ID": message_id},
        message_id=message_id,
    )
    return campaign, outgoing


def send_now(mail: SystemMail, transport: Transport, *, delivery_id: int = 0) -> str:
    """Build and send; the transport's message id, or TransportError."""
    campaign, outgoing = build_message(mail, delivery_id=delivery_id)
    result = transport.send(campaign, [outgoing])[0]
    if result.error is not None:
        raise result.error
    if not result.message_id:
        raise TransportError(f"the transport accepted the {mail.kind} mail without an id")
    return result.message_id


#: the generation of a claim made without a worker lease (a web request, a CLI command);
#: leases start at 1, so no worker's claim has it
INLINE_GENERATION = 0


class Held(NamedTuple):
    """A claimed system-mail row and the fence its result is written under."""

    delivery_id: int
    fence: Fence


def claim(session: Session, kind: str, subscriber_id: int, now: datetime) -> Held:
    """The mail's ledger row, claimed (``sending``) before the transport is called, by a
    holder of its own (this claim only): nobody else's result can be written over it."""
    fence = Fence(new_worker_id(), INLINE_GENERATION)
    row = Delivery(
        kind=kind,
        campaign_id=None,
        subscriber_id=subscriber_id,
        status=DeliveryStatus.SENDING,
        worker=fence.worker,
        fence=fence.generation,
        claimed_at=now,
        attempts=1,
    )
    session.add(row)
    session.flush()
    return Held(row.id, fence)


def mark(
    session: Session,
    held: Held,
    status: DeliveryStatus,
    *,
    message_id: str | None = None,
    at: datetime | None = None,
    error: MailerError | None = None,
) -> bool:
    """Write the claim's result, fenced: only while the row is still ``sending`` under this
    claim. False (logged) when another worker has claimed it again since (this holder was
    taken for dead after the lease)."""
    done = session.execute(
        update(Delivery)
        .where(
            Delivery.id == held.delivery_id,
            Delivery.status == DeliveryStatus.SENDING,
            Delivery.worker == held.fence.worker,
            Delivery.fence == held.fence.generation,
        )
        .values(
            status=status.value,
            message_id=message_id,
            sent_at=at,
            error_class=type(error).__name__[:64] if error else None,
            error=str(error) if error else None,
        )
        .execution_options(synchronize_session=False)
    )
    assert isinstance(done, CursorResult)
    if done.rowcount != 1:
        log.warning(
            "delivery %d: result %s rejected, the row was claimed again since",
            held.delivery_id,
            status.value,
        )
        return False
    return True


def deliver(
    sessions: sessionmaker[Session],
    transport: Transport,
    mail: SystemMail,
    *,
    now: datetime,
    held: Held | None = None,
) -> bool:
    """Claim a ledger row (unless the caller claimed it in its own transaction), send, mark
    it. Failures are logged and recorded on the row, never raised: the reader's request
    (or the operator's import) has succeeded either way. True when the mail went out."""
    if held is None:
        with sessions.begin() as session:
            held = claim(session, mail.kind, mail.subscriber_id, now)
    delivery_id = held.delivery_id
    try:
        message_id = send_now(mail, transport, delivery_id=delivery_id)
    except MailerError as err:
        log.error("%s mail (delivery %d) not sent: %s", mail.kind, delivery_id, err)
        with sessions.begin() as session:
            mark(session, held, DeliveryStatus.FAILED, error=err)
        return False
    with sessions.begin() as session:
        mark(session, held, DeliveryStatus.SENT, message_id=message_id, at=now)
    log.info("%s mail sent (delivery %d, %s)", mail.kind, delivery_id, message_id)
    return True
