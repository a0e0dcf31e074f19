"""The double opt-in confirmation mail: its own small MJML template, sent by the transport.

``templates/email/confirm.mjml`` (HTML, through the renderer's pipeline: Jinja2 -> MJML ->
premailer) and ``confirm.txt.j2`` (plain text). The message is built with the stdlib
``email`` package: it is one message to one person, not a campaign, so it carries no
List-Unsubscribe, and ``Auto-Submitted: auto-generated`` (RFC 3834) keeps auto-responders
from answering it. It goes through the configured transport with campaign and delivery id
0, like a test send.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid

from mailer.config import Settings
from mailer.errors import TransportError
from mailer.render.compiler import compile_email, date_label, render_text_template
from mailer.render.message import sending_domain
from mailer.transports.base import CampaignMessage, OutgoingMessage, Transport

HTML_TEMPLATE = "confirm.mjml"
TEXT_TEMPLATE = "confirm.txt.j2"


@dataclass(frozen=True)
class ConfirmationMail:
    """What a confirmation mail says, before it becomes MIME."""

    to: str
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
    return compile_email(HTML_TEMPLATE, context), render_text_template(TEXT_TEMPLATE, context)


def build_message(
    mail: ConfirmationMail, settings: Settings, *, now: datetime | None = None
) -> tuple[CampaignMessage, OutgoingMessage]:
    """The transport's two halves: what SES bulk would template, and the raw MIME."""
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
        delivery_id=0,
        to=mail.to,
        raw=msg.as_bytes(),
        headers={"To": mail.to, "Message-ID": message_id},
        message_id=message_id,
    )
    return campaign, outgoing


def send_confirmation(mail: ConfirmationMail, settings: Settings, transport: Transport) -> str:
    """Build and send; the transport's message id, or TransportError."""
    campaign, outgoing = build_message(mail, settings)
    result = transport.send(campaign, [outgoing])[0]
    if result.error is not None:
        raise result.error
    if not result.message_id:
        raise TransportError("the transport accepted the confirmation mail without an id")
    return result.message_id
