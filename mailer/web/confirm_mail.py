"""The reader pages' system mails: the double opt-in confirmation and the welcome mail.

Thin: what the mails say (:mod:`mailer.sending.reader_mails`), when they are due
(:mod:`mailer.sending.system_mail`) and how they go through the ledger
(:mod:`mailer.sending.one_mail`) are the same for the CLI and the API. Here the web's request
state (settings, signer, clock, transport) is handed to it, and the mails are sent after
the response (a background task), so timing tells nothing about the address.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailer.config import Settings
from mailer.sending import one_mail, reader_mails, system_mail
from mailer.sending.reader_mails import ConfirmationMail, expires_label
from mailer.sending.system_mail import Due
from mailer.transports.base import CampaignMessage, OutgoingMessage, Transport
from mailer.web.state import WebState
from subscribers.models import MailingList, Subscription

__all__ = [
    "ConfirmationMail",
    "Due",
    "build_message",
    "claim_welcome",
    "confirmation_for",
    "deliver",
    "deliver_all",
    "expires_label",
    "render_bodies",
    "send_confirmation",
    "send_due",
]


def render_bodies(mail: ConfirmationMail, settings: Settings) -> tuple[str, str]:
    """(html, text) of the confirmation mail."""
    return reader_mails.confirmation_bodies(mail, settings)


def build_message(
    mail: ConfirmationMail,
    settings: Settings,
    *,
    delivery_id: int = 0,
    now: datetime | None = None,
) -> tuple[CampaignMessage, OutgoingMessage]:
    """The transport's two halves of a confirmation mail (see one_mail.build_message)."""
    return one_mail.build_message(
        reader_mails.as_system_mail(mail, settings), delivery_id=delivery_id, now=now
    )


def send_confirmation(
    mail: ConfirmationMail, settings: Settings, transport: Transport, *, delivery_id: int = 0
) -> str:
    """Build and send; the transport's message id, or TransportError."""
    return one_mail.send_now(
        reader_mails.as_system_mail(mail, settings), transport, delivery_id=delivery_id
    )


def confirmation_for(
    state: WebState, mlist: MailingList, subscription: Subscription, address: str
) -> ConfirmationMail:
    """The mail for a pending subscription, its link bound to the consent version."""
    return reader_mails.confirmation_mail(
        state.settings, state.signer, mlist, subscription, address, now=state.now()
    )


def deliver(state: WebState, mail: ConfirmationMail) -> None:
    """Claim a ledger row, send, mark it (run after the response: a background task), within
    the ledger's limit per address. Failures are logged and recorded on the row, never
    raised to the reader."""
    system_mail.deliver_confirmation(
        state.sessions, state.settings, state.transport(), mail, now=state.now()
    )


def deliver_all(state: WebState, mails: list[ConfirmationMail]) -> None:
    """Send several (a preferences save may start a double opt-in on more than one list)."""
    for mail in mails:
        deliver(state, mail)


def claim_welcome(
    session: Session, subscriber_id: int, mlist: MailingList, now: datetime
) -> Due | None:
    """In the confirming transaction: the welcome mail's ledger row, if one is due (once
    per subscription; none when the list has no welcome text)."""
    subscription = session.scalar(
        select(Subscription).where(
            Subscription.subscriber_id == subscriber_id, Subscription.list_id == mlist.id
        )
    )
    if subscription is None:
        return None
    return system_mail.claim_welcome(session, subscription, mlist, now)


def send_due(state: WebState, due: Due) -> None:
    """Send a mail claimed with the change that made it due (the welcome after a confirm)."""
    system_mail.send_due(
        state.sessions, state.settings, state.signer, state.transport(), due, now=state.now()
    )
