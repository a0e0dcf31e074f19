"""A list's :class:`~mailer.render.compiler.Branding`, built in one place (issue 15).

Every renderer of a list's mail (`mailer send`, the web desk and API through
:func:`mailer.sending.publish.render_for`, the worker from the campaign it rendered, the
system mails) gets the list's settings the same way: its name, language, greeting (NULL:
the language's own "Hello {name},"; '': no greeting line) and, where Branding has them, logo and
accent colour, and the list's own subscribe page and archive (the email's "Forwarded this?
Subscribe" and "Past issues" links). A new per-list setting is added here and nowhere else.
"""

from __future__ import annotations

from mailer.config import Settings
from mailer.render import i18n
from mailer.render.compiler import DEFAULT_ACCENT, Branding
from mailer.render.placeholders import NAME_SLOT
from mailer.urls import archive_index_url, subscribe_url
from subscribers.models import MailingList


def greeting_for(mlist: MailingList) -> str:
    """The list's greeting, or the default line in its language with the name's slot
    ('Hello {name},', '{name}，您好：': word order and punctuation are the language's).
    Translated here, once per list; per reader only the name is put in
    (:func:`~mailer.render.placeholders.greeting_line`)."""
    if mlist.greeting is not None:
        return mlist.greeting
    _ = i18n.gettext_for(mlist.lang)
    return _("Hello %(name)s,") % {"name": NAME_SLOT}


def branding_for(
    settings: Settings, mlist: MailingList, *, archive_url: str | None = None
) -> Branding:
    """The list's branding under MAILER_BASE_URL and MAILER_POSTAL_ADDRESS."""
    return Branding(
        newsletter_name=mlist.name,
        base_url=settings.public_base,
        postal_address=settings.postal_address,
        lang=i18n.supported(mlist.lang),
        archive_url=archive_url,
        greeting=greeting_for(mlist),
        template_dir=settings.template_dir,
        subscribe_url=subscribe_url(settings, mlist.slug),
        archive_index_url=archive_index_url(settings, mlist.slug),
        logo_url=mlist.logo_url or "",
        accent_color=mlist.accent_color or DEFAULT_ACCENT,
    )
