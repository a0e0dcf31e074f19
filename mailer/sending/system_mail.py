"""Mail to one reader that is not an issue: the double opt-in confirmation, the welcome and
the preferences link.

One way for every entrance (the web's subscribe and confirm pages, `mailer subscribers add`
and import, the API): when each mail is due is here (what it says is
:mod:`mailer.sending.reader_mails`), and it goes out as a Delivery row of its own (``kind``
``confirm``, ``welcome`` or ``preferences``, no campaign) through
:mod:`mailer.sending.one_mail`, so a bounce or a complaint about it matches that row and
suppresses like any other.

Rules that live here, so no entrance can forget one:

* **welcome once**: :func:`welcome_due` moves ``subscriptions.welcomed_at`` from NULL in one
  conditional UPDATE; only the caller whose UPDATE hit sends. A replayed confirm link, two
  presses at once, or a re-confirm after an unsubscribe and resubscribe welcome nobody twice.
* **confirmation flood**: :func:`confirmation_allowed` counts the address's confirmation
  rows in the ledger over the last day, whoever asks (the form, an operator re-running an
  import, the API called in a loop), so nobody can bomb an inbox; the web also has its
  per-IP and per-address windows in front. Preferences-link mails have the same limit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import CursorResult, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from mailer.config import Settings
from mailer.errors import MailerError
from mailer.render.tokens import Signer
from mailer.sending.models import Delivery, DeliveryStatus
from mailer.sending.one_mail import Held, SystemMail, claim, deliver, mark
from mailer.sending.reader_mails import (
    ConfirmationMail,
    as_system_mail,
    confirmation_mail,
    preferences_link_mail,
    welcome_mail,
)
from mailer.transports.base import Transport
from subscribers.models import MailingList, Subscriber, Subscription, utcnow

log = logging.getLogger(__name__)

#: confirmation mails one address may get in CONFIRM_WINDOW, whoever asks
CONFIRM_PER_ADDRESS = 3
CONFIRM_WINDOW = timedelta(days=1)


def welcome_due(session: Session, subscription: Subscription, mlist: MailingList) -> bool:
    """True once per subscription, for the caller that should send the welcome mail: the
    list has one, and this call moved ``welcomed_at`` from NULL (the database decides, so
    two confirmations racing each other cannot both win). A list without a welcome mail
    leaves ``welcomed_at`` alone: a welcome added later still reaches later confirmations."""
    if not mlist.welcome_markdown:
        return False
    done = session.execute(
        update(Subscription)
        .where(Subscription.id == subscription.id, Subscription.welcomed_at.is_(None))
        .values(welcomed_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    assert isinstance(done, CursorResult)
    return done.rowcount == 1


# -- "mail me my preferences link" ----------------------------------------------------------


def send_preferences_link(
    sessions: sessionmaker[Session],
    settings: Settings,
    transport: Transport,
    address: str,
    *,
    now: datetime,
) -> bool:
    """Mail ``address`` a preferences link for its subscription (active first, then
    pending, oldest first), if it has one and had fewer than CONFIRM_PER_ADDRESS such
    mails today. Nobody else learns the outcome: the web calls this after its answer,
    which is the same for every address. True when a mail went out."""
    with sessions.begin() as session:
        subscriber = session.scalar(select(Subscriber).where(Subscriber.email == address))
        if subscriber is None:
            return False
        subscription = preferences_subscription(session, subscriber.id)
        if subscription is None or _sent_today(session, "preferences", subscriber.id, now):
            return False
        held = claim(session, "preferences", subscriber.id, now)
        mlist = session.get(MailingList, subscription.list_id)
        assert mlist is not None
        try:
            mail = preferences_link_mail(
                settings, Signer.from_settings(settings), mlist, subscriber, now=now
            )
        except MailerError as err:
            mark(session, held, DeliveryStatus.FAILED, error=err)
            return False
    return deliver(sessions, transport, mail, now=now, held=held)


def preferences_subscription(session: Session, subscriber_id: int) -> Subscription | None:
    """The subscription a preferences link is for: active first, then pending, oldest first."""
    return session.scalar(
        select(Subscription)
        .where(
            Subscription.subscriber_id == subscriber_id,
            Subscription.status.in_(("active", "pending")),
        )
        .order_by((Subscription.status == "active").desc(), Subscription.id)
        .limit(1)
    )


# -- flood limit ---------------------------------------------------------------------------


def confirmation_allowed(session: Session, subscriber_id: int, now: datetime) -> bool:
    """Fewer than CONFIRM_PER_ADDRESS confirmation mails went to this reader in the window."""
    return not _sent_today(session, "confirm", subscriber_id, now)


def _sent_today(session: Session, kind: str, subscriber_id: int, now: datetime) -> bool:
    """This reader had their CONFIRM_PER_ADDRESS mails of ``kind`` in the window.

    The reader's row is locked first, until the caller's transaction ends (which adds the
    claim): counting and then adding is otherwise a race, and a dozen requests at the same
    moment (several web processes, each with its own windows) all counted 'fewer than 3'."""
    _lock_reader(session, subscriber_id)
    sent = session.scalar(
        select(func.count())
        .select_from(Delivery)
        .where(
            Delivery.kind == kind,
            Delivery.subscriber_id == subscriber_id,
            Delivery.claimed_at > now - CONFIRM_WINDOW,
        )
    )
    return (sent or 0) >= CONFIRM_PER_ADDRESS


def _lock_reader(session: Session, subscriber_id: int) -> None:
    """Hold the reader's row until the transaction ends: a row lock on PostgreSQL, the
    write lock on SQLite (a write, so it is taken before the count is read). Changes
    nothing: ``updated_at`` set to itself keeps its onupdate from moving it."""
    session.execute(
        update(Subscriber)
        .where(Subscriber.id == subscriber_id)
        .values(updated_at=Subscriber.updated_at)
        .execution_options(synchronize_session=False)
    )


# -- claimed now, sent after the commit ------------------------------------------------------


@dataclass(frozen=True)
class Due:
    """A system mail whose ledger row is claimed in the caller's transaction (with the
    change that made it due); :func:`send_due` renders and sends it after the commit."""

    kind: str
    held: Held
    subscriber_id: int
    list_id: int

    @property
    def delivery_id(self) -> int:
        return self.held.delivery_id


def claim_welcome(
    session: Session, subscription: Subscription, mlist: MailingList, now: datetime
) -> Due | None:
    """In the confirming transaction: the welcome mail's row, if one is due (once)."""
    if not welcome_due(session, subscription, mlist):
        return None
    held = claim(session, "welcome", subscription.subscriber_id, now)
    return Due("welcome", held, subscription.subscriber_id, mlist.id)


def deliver_confirmation(
    sessions: sessionmaker[Session],
    settings: Settings,
    transport: Transport,
    mail: ConfirmationMail,
    *,
    now: datetime,
) -> bool:
    """Send a confirmation mail built by the caller (the web's forms, the API) through the
    ledger, unless the address had its share today. True when it went out."""
    with sessions.begin() as session:
        if not confirmation_allowed(session, mail.subscriber_id, now):
            log.info("confirmation for subscriber %d held back: flood limit", mail.subscriber_id)
            return False
        held = claim(session, "confirm", mail.subscriber_id, now)
    return deliver(sessions, transport, as_system_mail(mail, settings), now=now, held=held)


def claim_confirmation(session: Session, subscription: Subscription, now: datetime) -> Due | None:
    """For an operator's or the API's pending reader: the confirmation mail's row, unless
    the subscription is not pending or the address had its share today (then None)."""
    if subscription.status != "pending":
        return None
    if not confirmation_allowed(session, subscription.subscriber_id, now):
        log.info(
            "confirmation for subscriber %d held back: flood limit", subscription.subscriber_id
        )
        return None
    held = claim(session, "confirm", subscription.subscriber_id, now)
    return Due("confirm", held, subscription.subscriber_id, subscription.list_id)


def send_due(
    sessions: sessionmaker[Session],
    settings: Settings,
    signer: Signer,
    transport: Transport,
    due: Due,
    *,
    now: datetime,
) -> bool:
    """Render and send a claimed mail, and mark its row (see :func:`deliver`). A reader who
    was erased, or a subscription that changed, since the claim gets nothing: the row is
    marked skipped."""
    with sessions() as session:
        mlist = session.get(MailingList, due.list_id)
        subscriber = session.get(Subscriber, due.subscriber_id)
        subscription = session.scalar(
            select(Subscription).where(
                Subscription.subscriber_id == due.subscriber_id,
                Subscription.list_id == due.list_id,
            )
        )
        mail: SystemMail | None = None
        try:
            if mlist is not None and subscriber is not None and subscription is not None:
                if due.kind == "welcome" and subscription.status == "active":
                    mail = welcome_mail(settings, signer, mlist, subscriber, now=now)
                elif due.kind == "preferences" and subscription.status in ("active", "pending"):
                    mail = preferences_link_mail(settings, signer, mlist, subscriber, now=now)
                elif due.kind == "confirm" and subscription.status == "pending":
                    mail = as_system_mail(
                        confirmation_mail(
                            settings, signer, mlist, subscription, subscriber.email, now=now
                        ),
                        settings,
                    )
        except MailerError as err:  # a template that does not render
            log.error("%s mail (delivery %d) not rendered: %s", due.kind, due.delivery_id, err)
            with sessions.begin() as session:
                mark(session, due.held, DeliveryStatus.FAILED, error=err)
            return False
    if mail is None:
        with sessions.begin() as session:
            mark(session, due.held, DeliveryStatus.SKIPPED)
        return False
    return deliver(sessions, transport, mail, now=now, held=due.held)


# -- for the entrances: an operator's or the API's pending readers --------------------------


def request_confirmation(
    sessions: sessionmaker[Session],
    settings: Settings,
    transport: Transport,
    subscriber_id: int,
    list_id: int,
    *,
    now: datetime,
) -> bool:
    """After `subscribers add`, or the API, left a reader pending (its transaction
    committed): claim and send the confirmation mail, within the flood limit. True when a
    mail went out; False when none was due (not pending, limit reached) or it failed (the
    row says why)."""
    with sessions.begin() as session:
        subscription = session.scalar(
            select(Subscription).where(
                Subscription.subscriber_id == subscriber_id, Subscription.list_id == list_id
            )
        )
        due = None if subscription is None else claim_confirmation(session, subscription, now)
    if due is None:
        return False
    return send_due(sessions, settings, Signer.from_settings(settings), transport, due, now=now)


def confirm_unmailed(
    sessions: sessionmaker[Session],
    settings: Settings,
    transport: Transport,
    mlist: MailingList,
    *,
    now: datetime,
) -> tuple[int, int]:
    """After an import without ``--confirmed``: a confirmation mail to each pending reader
    of the list who was never sent one since subscribing (so re-running the import mails
    nobody twice, and readers left pending by earlier versions get theirs). (sent, held
    back or failed)."""
    mailed = (
        select(Delivery.id)
        .where(
            Delivery.kind == "confirm",
            Delivery.subscriber_id == Subscription.subscriber_id,
            Delivery.claimed_at >= Subscription.created_at,
        )
        .exists()
    )
    with sessions() as session:
        waiting = list(
            session.scalars(
                select(Subscription.subscriber_id)
                .where(Subscription.list_id == mlist.id, Subscription.status == "pending", ~mailed)
                .order_by(Subscription.id)
            )
        )
    sent = 0
    for subscriber_id in waiting:
        sent += request_confirmation(
            sessions, settings, transport, subscriber_id, mlist.id, now=now
        )
    return sent, len(waiting) - sent
