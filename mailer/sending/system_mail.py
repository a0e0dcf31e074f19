"""Mail to one reader that is not an issue: the double opt-in confirmation and the welcome.

One way for every entrance (the web's subscribe and confirm pages, `mailer subscribers add`
and import, the API): what each mail says is here, and it goes out as a Delivery row of its
own (``kind`` ``confirm`` or ``welcome``, no campaign) through :mod:`mailer.sending.one_mail`,
so a bounce or a complaint about it matches that row and suppresses like any other. The
mails speak the list's language (:mod:`mailer.render.i18n`).

Rules that live here, so no entrance can forget one:

* **welcome once**: :func:`welcome_due` moves ``subscriptions.welcomed_at`` from NULL in one
  conditional UPDATE; only the caller whose UPDATE hit sends. A replayed confirm link, two
  presses at once, or a re-confirm after an unsubscribe and resubscribe welcome nobody twice.
* **confirmation flood**: :func:`confirmation_allowed` counts the address's confirmation
  rows in the ledger over the last day, so an operator re-running an import, or the API
  called in a loop, cannot bomb an inbox (the web also has its per-IP and per-address
  windows in front).
"""

from __future__ import annotations

import dataclasses
import functools
import html as htmlmod
import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from babel.dates import format_datetime as babel_datetime
from markdown_it import MarkdownIt
from sqlalchemy import CursorResult, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from mailer.config import Settings
from mailer.errors import MailerError, RenderError
from mailer.render import i18n
from mailer.render.compiler import (
    DEFAULT_ACCENT,
    accent_colours,
    compile_email,
    date_label,
    render_text_template,
)
from mailer.render.i18n import gettext_for
from mailer.render.tokens import Signer, preferences_url
from mailer.sending.models import Delivery, DeliveryStatus
from mailer.sending.one_mail import SystemMail, claim, deliver, mark
from mailer.transports.base import Transport
from mailer.urls import archive_index_url
from subscribers.models import MailingList, Subscriber, Subscription, utcnow

log = logging.getLogger(__name__)

CONFIRM_HTML = "confirm.mjml"
CONFIRM_TEXT = "confirm.txt.j2"
WELCOME_HTML = "welcome.mjml.j2"
WELCOME_TEXT = "welcome.txt.j2"
#: confirmation mails one address may get in CONFIRM_WINDOW, whoever asks
CONFIRM_PER_ADDRESS = 3
CONFIRM_WINDOW = timedelta(days=1)


@dataclass(frozen=True)
class ConfirmationMail:
    """The double opt-in mail for a pending subscription."""

    to: str
    subscriber_id: int
    list_name: str
    from_address: str
    reply_to: str | None
    confirm_url: str
    expires_at: datetime
    lang: str = "en"
    logo_url: str = ""  # the list's branding (mailer lists set --logo/--accent)
    accent_color: str = ""

    @property
    def subject(self) -> str:
        _ = gettext_for(self.lang)
        return _("Confirm your subscription to %(newsletter)s") % {"newsletter": self.list_name}


def expires_label(at: datetime, lang: str = "en") -> str:
    """'Monday, March 3, 2025 at 14:05 UTC' (in English; other languages as Babel writes
    a long date and time in UTC)."""
    at = at.astimezone(UTC)
    if i18n.supported(lang) == "en":
        return f"{date_label(at.date())} at {at:%H:%M} UTC"
    return babel_datetime(at, "long", tzinfo=UTC, locale=i18n.locale_name(lang))


def _brand(logo_url: str | None, accent_color: str | None) -> dict[str, str]:
    """The list's logo and accent as the email templates take them (as the issue's)."""
    return {"logo_url": logo_url or "", **accent_colours(accent_color or DEFAULT_ACCENT)}


def _address_lines(settings: Settings) -> list[str]:
    return [ln.strip() for ln in settings.postal_address.splitlines() if ln.strip()]


#: stand-ins for the two per-reader values of a confirmation mail's HTML: it is compiled
#: once per list, language and expiry (an import mails thousands at the same ``now``) and
#: each reader's address and link are put in by string replacement (MJML and premailer
#: cost ~25 ms a mail; the text part, Jinja only, is rendered for each reader, so its
#: lines wrap around the real values). The nonce keeps names and templates from holding them.
_NONCE = secrets.token_hex(8)
_TO = f"reader-{_NONCE}@confirm.invalid"
_URL = f"https://confirm.invalid/{_NONCE}"


def confirmation_bodies(mail: ConfirmationMail, settings: Settings) -> tuple[str, str]:
    """(html, text) of the confirmation mail."""
    html = _confirmation_html(
        dataclasses.replace(mail, to=_TO, confirm_url=_URL, subscriber_id=0), settings
    )
    if _URL not in html:
        raise RenderError("the confirmation mail's HTML template has no confirm_url")
    html = html.replace(_URL, htmlmod.escape(mail.confirm_url))
    text = render_text_template(
        CONFIRM_TEXT, _confirmation_context(mail, settings), template_dir=settings.template_dir
    )
    return html.replace(_TO, htmlmod.escape(mail.to)), text


@functools.lru_cache(maxsize=32)
def _confirmation_html(mail: ConfirmationMail, settings: Settings) -> str:
    """The HTML with the stand-ins, compiled once per (list, language, expiry)."""
    context = _confirmation_context(mail, settings)
    # MAILER_TEMPLATE_DIR's email/ files come first
    return compile_email(CONFIRM_HTML, context, template_dir=settings.template_dir)


def _confirmation_context(mail: ConfirmationMail, settings: Settings) -> dict[str, Any]:
    _ = gettext_for(mail.lang)
    return {
        **i18n.template_context(mail.lang),
        **_brand(mail.logo_url, mail.accent_color),
        "title": mail.subject,
        "preheader": _("One click to start receiving %(newsletter)s.")
        % {"newsletter": mail.list_name},
        "preview_filler": "",
        "newsletter_name": mail.list_name,
        "email": mail.to,
        "confirm_url": mail.confirm_url,
        "expires_label": expires_label(mail.expires_at, mail.lang),
        "address_lines": _address_lines(settings),
    }


def confirmation_mail(
    settings: Settings,
    signer: Signer,
    mlist: MailingList,
    subscription: Subscription,
    address: str,
    *,
    now: datetime,
) -> ConfirmationMail:
    """The mail for a pending subscription: its link is bound to the subscription's current
    consent version, so it works once and never after a later change."""
    expires_at = now + timedelta(seconds=settings.confirm_ttl)
    token = signer.sign(
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
        confirm_url=f"{settings.public_base}/confirm/{token}",
        expires_at=expires_at,
        lang=i18n.supported(mlist.lang),
        logo_url=mlist.logo_url or "",
        accent_color=mlist.accent_color or "",
    )


def as_system_mail(mail: ConfirmationMail, settings: Settings) -> SystemMail:
    html, text = confirmation_bodies(mail, settings)
    return SystemMail(
        "confirm",
        mail.to,
        mail.subscriber_id,
        mail.subject,
        mail.from_address,
        mail.reply_to,
        html,
        text,
    )


# -- welcome -------------------------------------------------------------------------------

_MARKDOWN = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})


def welcome_html(markdown: str) -> str:
    """The list's welcome text as HTML; raw HTML in it is shown as text, never markup, and
    links keep only http(s) and mailto targets (markdown-it's validateLink)."""
    return str(_MARKDOWN.render(markdown))


def welcome_mail(
    settings: Settings,
    signer: Signer,
    mlist: MailingList,
    subscriber: Subscriber,
    *,
    now: datetime,
) -> SystemMail | None:
    """The list's welcome mail for this reader, or None when the list has none."""
    if not mlist.welcome_markdown:
        return None
    _ = gettext_for(mlist.lang)
    subject = _("Welcome to %(newsletter)s") % {"newsletter": mlist.name}
    prefs = preferences_url(settings, signer, subscriber.id, mlist.id, now=now)
    context: dict[str, Any] = {
        **i18n.template_context(mlist.lang),
        **_brand(mlist.logo_url, mlist.accent_color),
        "title": subject,
        "preheader": subject,
        "preview_filler": "",
        "newsletter_name": mlist.name,
        "welcome_html": welcome_html(mlist.welcome_markdown),
        "welcome_text": mlist.welcome_markdown,
        "preferences_url": prefs,
        "archive_index_url": archive_index_url(settings, mlist.slug),
        "address_lines": _address_lines(settings),
    }
    templates = settings.template_dir
    html = compile_email(WELCOME_HTML, context, template_dir=templates)
    text = render_text_template(WELCOME_TEXT, context, template_dir=templates)
    return SystemMail(
        "welcome",
        subscriber.email,
        subscriber.id,
        subject,
        mlist.from_address,
        mlist.reply_to,
        html,
        text,
    )


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

PREFERENCES_HTML = "preferences_link.mjml.j2"
PREFERENCES_TEXT = "preferences_link.txt.j2"


def preferences_link_mail(
    settings: Settings,
    signer: Signer,
    mlist: MailingList,
    subscriber: Subscriber,
    *,
    now: datetime,
) -> SystemMail:
    """A fresh preferences link for a reader who asked for it on the site."""
    _ = gettext_for(mlist.lang)
    subject = _("Your preferences for %(newsletter)s") % {"newsletter": mlist.name}
    context: dict[str, Any] = {
        **i18n.template_context(mlist.lang),
        **_brand(mlist.logo_url, mlist.accent_color),
        "title": subject,
        "preheader": subject,
        "preview_filler": "",
        "newsletter_name": mlist.name,
        "preferences_url": preferences_url(settings, signer, subscriber.id, mlist.id, now=now),
        "address_lines": _address_lines(settings),
    }
    templates = settings.template_dir
    html = compile_email(PREFERENCES_HTML, context, template_dir=templates)
    text = render_text_template(PREFERENCES_TEXT, context, template_dir=templates)
    return SystemMail(
        "preferences",
        subscriber.email,
        subscriber.id,
        subject,
        mlist.from_address,
        mlist.reply_to,
        html,
        text,
    )


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
        subscription = session.scalar(
            select(Subscription)
            .where(
                Subscription.subscriber_id == subscriber.id,
                Subscription.status.in_(("active", "pending")),
            )
            .order_by((Subscription.status == "active").desc(), Subscription.id)
            .limit(1)
        )
        if subscription is None or _sent_today(session, "preferences", subscriber.id, now):
            return False
        delivery_id = claim(session, "preferences", subscriber.id, now)
        mlist = session.get(MailingList, subscription.list_id)
        assert mlist is not None
        try:
            mail = preferences_link_mail(
                settings, Signer.from_settings(settings), mlist, subscriber, now=now
            )
        except MailerError as err:
            mark(session, delivery_id, DeliveryStatus.FAILED, error=err)
            return False
    return deliver(sessions, transport, mail, now=now, delivery_id=delivery_id)


# -- flood limit ---------------------------------------------------------------------------


def confirmation_allowed(session: Session, subscriber_id: int, now: datetime) -> bool:
    """Fewer than CONFIRM_PER_ADDRESS confirmation mails went to this reader in the window."""
    return not _sent_today(session, "confirm", subscriber_id, now)


def _sent_today(session: Session, kind: str, subscriber_id: int, now: datetime) -> bool:
    """This reader had their CONFIRM_PER_ADDRESS mails of ``kind`` in the window."""
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


# -- claimed now, sent after the commit ------------------------------------------------------


@dataclass(frozen=True)
class Due:
    """A system mail whose ledger row is claimed in the caller's transaction (with the
    change that made it due); :func:`send_due` renders and sends it after the commit."""

    kind: str
    delivery_id: int
    subscriber_id: int
    list_id: int


def claim_welcome(
    session: Session, subscription: Subscription, mlist: MailingList, now: datetime
) -> Due | None:
    """In the confirming transaction: the welcome mail's row, if one is due (once)."""
    if not welcome_due(session, subscription, mlist):
        return None
    delivery_id = claim(session, "welcome", subscription.subscriber_id, now)
    return Due("welcome", delivery_id, subscription.subscriber_id, mlist.id)


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
    delivery_id = claim(session, "confirm", subscription.subscriber_id, now)
    return Due("confirm", delivery_id, subscription.subscriber_id, subscription.list_id)


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
                mark(session, due.delivery_id, DeliveryStatus.FAILED, error=err)
            return False
    if mail is None:
        with sessions.begin() as session:
            mark(session, due.delivery_id, DeliveryStatus.SKIPPED)
        return False
    return deliver(sessions, transport, mail, now=now, delivery_id=due.delivery_id)


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
