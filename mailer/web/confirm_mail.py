"""The double opt-in confirmation mail: its own small MJML template, sent by the transport.

``templates/email/confirm.mjml`` (HTML, through the renderer's pipeline: Jinja2 -> MJML ->
premailer) and ``confirm.txt.j2`` (plain text). The message is built with the stdlib
``email`` package: it is one message to one person, not a campaign, so it carries no
List-Unsubscribe, and ``Auto-Submitted: auto-generated`` (RFC 3834) keeps auto-responders
from answering it.

Every confirmation mail is a Delivery row of its own (``kind='confirm'``, no campaign),
claimed before the transport is called and marked after, like an issue's: a bounce or a
complaint about it matches that row by MessageId, and suppresses like any other.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid

from sqlalchemy import update
from sqlalchemy.orm import Session

from mailer.config import Settings
from mailer.errors import MailerError, TransportError
from mailer.render.compiler import compile_email, date_label, render_text_template
from mailer.render.message import sending_domain
from mailer.sending.models import Delivery, DeliveryStatus
from mailer.transports.base import CampaignMessage, OutgoingMessage, Transport
from mailer.web.state import WebState
from subscribers.models import MailingList, Subscription

log = logging.getLogger(__name__)

HTML_TEMPLATE = "confirm.mjml"
TEXT_TEMPLATE = "confirm.txt.j2"


@dataclass(frozen=True)
class ConfirmationMail:
    """What a confirmation mail says, before it becomes MIME."""

    to: str
    subscriber_id: int
    list_name: str
    from_address: str
    reply_to: str | None
    confirm_url: str
    expires_at: datetime

    @property
    def subject(self) -> str:
        return f"Confirm your subscription to {self.list_name}"


def expires_label(at: datetime) -> str:
    """'Monday, March 3, 2025 at 14:05 UTC'."""
    at = at.astimezone(UTC)
    return f"{date_label(at.date())} at {at:%H:%M} UTC"


def render_bodies(mail: ConfirmationMail, settings: Settings) -> tuple[str, str]:
    """(html, text) of the mail."""
    context = {
        "title": mail.subject,
        "preheader": f"One click to start receiving {mail.list_name}.",
        "preview_filler": "",
        "newsletter_name": mail.list_name,
        "email": mail.to,
        "confirm_url": mail.confirm_url,
        "expires_label": expires_label(mail.expires_at),
        "address_lines": [ln.strip() for ln in settings.postal_address.splitlines() if ln.strip()],
    }
    templates = settings.template_dir  # MAILER_TEMPLATE_DIR's email/ files come first
    html = compile_email(HTML_TEMPLATE, context, template_dir=templates)
    return html, render_text_template(TEXT_TEMPLATE, context, template_dir=templates)


def build_message(
    mail: ConfirmationMail,
    settings: Settings,
    *,
    delivery_id: int = 0,
    now: datetime | None = None,
) -> tuple[CampaignMessage, OutgoingMessage]:
    """The transport's two halves: what SES bulk would template, and the raw MIME.
    ``campaign_id`` is 0 (no campaign); ``delivery_id`` the mail's ledger row."""
    html, text = render_bodies(mail, settings)
    msg = EmailMessage(policy=SMTP)
    msg["From"] = mail.from_address
    msg["To"] = mail.to
    if mail.reply_to:
        msg["Reply-To"] = mail.reply_to
    msg["Subject"] = mail.subject
    msg["Date"] = format_datetime(now or datetime.now(UTC))
    message_id = make_msgid("confirm", domain=sending_domain(mail.from_address))
    msg["Message-ID"] = message_id
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(text)
    msg.add_alternative(html, subtype="html")
    headers = {"Auto-Submitted": "auto-generated"}
    campaign = CampaignMessage(
        campaign_id=0,
        subject=mail.subject,
        from_address=mail.from_address,
        html=html,
        text=text,
        headers=headers,
        reply_to=mail.reply_to,
        tags={"kind": "confirm"},
    )
    outgoing = OutgoingMessage(
        delivery_id=delivery_id,
        to=mail.to,
        raw=msg.as_bytes(),
        headers={"To": mail.to, "Message-ID": message_id},
        message_id=message_id,
    )
    return campaign, outgoing


def send_confirmation(
    mail: ConfirmationMail, settings: Settings, transport: Transport, *, delivery_id: int = 0
) -> str:
    """Build and send; the transport's message id, or TransportError."""
    campaign, outgoing = build_message(mail, settings, delivery_id=delivery_id)
    result = transport.send(campaign, [outgoing])[0]
    if result.error is not None:
        raise result.error
    if not result.message_id:
        raise TransportError("the transport accepted the confirmation mail without an id")
    return result.message_id


def confirmation_for(
    state: WebState, mlist: MailingList, subscription: Subscription, address: str
) -> ConfirmationMail:
    """The mail for a pending subscription: its link is bound to the subscription's current
    consent version, so it works once and never after a later change."""
    expires_at = state.now() + timedelta(seconds=state.settings.confirm_ttl)
    token = state.signer.sign(
        "confirm",
        subscription.subscriber_id,
        mlist.id,
        expires_at=expires_at,
        version=subscription.consent_version,
    )
    return ConfirmationMail(
        to=address,
        subscriber_id=subscription.subscriber_id,
        list_name=mlist.name,
        from_address=mlist.from_address,
        reply_to=mlist.reply_to,
        confirm_url=f"{state.settings.public_base}/confirm/{token}",
        expires_at=expires_at,
    )


def deliver(state: WebState, mail: ConfirmationMail) -> None:
    """Claim a ledger row, send, mark it (run after the response: a background task).
    Failures are logged and recorded on the row, never raised to the reader."""
    with state.sessions.begin() as session:
        delivery_id = _claim(session, mail.subscriber_id, state.now())
    try:
        message_id = send_confirmation(
            mail, state.settings, state.transport(), delivery_id=delivery_id
        )
    except MailerError as err:
        log.error("confirmation mail (delivery %d) not sent: %s", delivery_id, err)
        with state.sessions.begin() as session:
            _mark(session, delivery_id, DeliveryStatus.FAILED, error=err)
        return
    with state.sessions.begin() as session:
        _mark(session, delivery_id, DeliveryStatus.SENT, message_id=message_id, at=state.now())
    log.info("confirmation mail sent (delivery %d, %s)", delivery_id, message_id)


def _claim(session: Session, subscriber_id: int, now: datetime) -> int:
    row = Delivery(
        kind="confirm",
        campaign_id=None,
        subscriber_id=subscriber_id,
        status=DeliveryStatus.SENDING,
        claimed_at=now,
        attempts=1,
    )
    session.add(row)
    session.flush()
    return row.id


def _mark(
    session: Session,
    delivery_id: int,
    status: DeliveryStatus,
    *,
    message_id: str | None = None,
    at: datetime | None = None,
    error: MailerError | None = None,
) -> None:
    session.execute(
        update(Delivery)
        .where(Delivery.id == delivery_id)
        .values(
            status=status.value,
            message_id=message_id,
            sent_at=at,
            error_class=type(error).__name__[:64] if error else None,
            error=str(error) if error else None,
        )
    )


def deliver_all(state: WebState, mails: list[ConfirmationMail]) -> None:
    """Send several (a preferences save may start a double opt-in on more than one list)."""
    for mail in mails:
        deliver(state, mail)
