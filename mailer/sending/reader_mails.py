"""What the system mails say: the double opt-in confirmation, the welcome and the
preferences link, in the list's language (:mod:`mailer.render.i18n`), logo and accent.

Each is built as a :class:`~mailer.sending.one_mail.SystemMail` (subject, bodies, sender);
:mod:`mailer.sending.system_mail` decides when one is due and sends it through the ledger.
The confirmation's HTML is compiled once per list, language and expiry and each reader's
address and link spliced in (an import mails thousands at the same ``now``).
"""

from __future__ import annotations

import dataclasses
import functools
import html as htmlmod
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from babel.dates import format_datetime as babel_datetime
from markdown_it import MarkdownIt

from mailer.config import Settings
from mailer.errors import RenderError
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
from mailer.sending.one_mail import SystemMail
from mailer.urls import archive_index_url
from subscribers.models import MailingList, Subscriber, Subscription

CONFIRM_HTML = "confirm.mjml"
CONFIRM_TEXT = "confirm.txt.j2"
WELCOME_HTML = "welcome.mjml.j2"
WELCOME_TEXT = "welcome.txt.j2"
PREFERENCES_HTML = "preferences_link.mjml.j2"
PREFERENCES_TEXT = "preferences_link.txt.j2"


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
        CONFIRM_TEXT, confirmation_context(mail, settings), template_dir=settings.template_dir
    )
    return html.replace(_TO, htmlmod.escape(mail.to)), text


@functools.lru_cache(maxsize=32)
def _confirmation_html(mail: ConfirmationMail, settings: Settings) -> str:
    """The HTML with the stand-ins, compiled once per (list, language, expiry)."""
    context = confirmation_context(mail, settings)
    # MAILER_TEMPLATE_DIR's email/ files come first
    return compile_email(CONFIRM_HTML, context, template_dir=settings.template_dir)


def confirmation_context(mail: ConfirmationMail, settings: Settings) -> dict[str, Any]:
    """What the confirmation templates are given (scripts/bench_confirm.py compiles it in
    full per reader as its baseline)."""
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
    return _list_mail(
        "welcome", subject, (WELCOME_HTML, WELCOME_TEXT), context, settings, mlist, subscriber
    )


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
    return _list_mail(
        "preferences",
        subject,
        (PREFERENCES_HTML, PREFERENCES_TEXT),
        context,
        settings,
        mlist,
        subscriber,
    )


def _list_mail(
    kind: str,
    subject: str,
    templates: tuple[str, str],
    context: dict[str, Any],
    settings: Settings,
    mlist: MailingList,
    subscriber: Subscriber,
) -> SystemMail:
    """A mail from the list to one reader with this ``subject``: its (HTML, text) templates
    filled with ``context``, sent From and Reply-To the list's addresses."""
    html_name, text_name = templates
    html = compile_email(html_name, context, template_dir=settings.template_dir)
    text = render_text_template(text_name, context, template_dir=settings.template_dir)
    return SystemMail(
        kind,
        subscriber.email,
        subscriber.id,
        subject,
        mlist.from_address,
        mlist.reply_to,
        html,
        text,
    )
