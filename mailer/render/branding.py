"""Who sends the newsletter and how it looks: :class:`Branding`, checked when it is made.

A list's branding is built in one place (:mod:`mailer.render.list_brand`); every value that
ends up in the email's markup (URLs, the accent colour in CSS, the greeting) is refused here
unless it has the one harmless shape it may have.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from mailer.config import Settings
from mailer.errors import RenderError
from mailer.render.colours import HEX_COLOUR
from mailer.render.i18n import gettext_for

__all__ = ["DEFAULT_ACCENT", "LOGO_URL_MAX", "Branding", "is_http_url", "is_https"]

_LANG = re.compile(r"^[A-Za-z]{2,3}(?:-[A-Za-z0-9]{2,8})*$")
DEFAULT_ACCENT = "#9b1c1c"
LOGO_URL_MAX = 2000


@dataclass(frozen=True)
class Branding:
    """Who sends the newsletter and where its pages live (the same for every issue).

    ``archive_url`` is this issue's web edition ("View in browser"); ``reason_text`` says
    why the reader gets the email; ``greeting`` opens the email followed by the reader's
    name (empty: no greeting line; a reader without a name never gets one);
    ``subscribe_url`` and ``archive_index_url`` default to ``/subscribe`` and ``/archive``
    under ``base_url``. ``logo_url`` (https, optional) shows above the newsletter's name;
    ``accent_color`` (``#rrggbb``) colours the brand band, source labels and links, made
    readable on the white card and in dark mode (:mod:`mailer.render.colours`).
    ``template_dir`` is MAILER_TEMPLATE_DIR (its ``email/`` files replace the shipped ones;
    empty: none).
    """

    newsletter_name: str
    base_url: str
    postal_address: str
    lang: str = "en"
    archive_url: str | None = None
    reason_text: str = ""
    greeting: str = "Hello"
    subscribe_url: str = ""
    archive_index_url: str = ""
    template_dir: str = ""
    logo_url: str = ""
    accent_color: str = DEFAULT_ACCENT

    def __post_init__(self) -> None:
        if not self.newsletter_name.strip() or "\n" in self.newsletter_name:
            raise RenderError("branding: newsletter_name must be one non-empty line")
        if not is_http_url(self.base_url):
            raise RenderError(f"branding: base_url is not an http(s) URL: {self.base_url!r}")
        if self.archive_url is not None and not is_http_url(self.archive_url):
            raise RenderError(f"branding: archive_url is not an http(s) URL: {self.archive_url!r}")
        if not _LANG.match(self.lang):
            raise RenderError(f"branding: lang is not a language tag: {self.lang!r}")
        if "\n" in self.greeting or not self.greeting.isprintable():
            raise RenderError(f"branding: greeting must be one line: {self.greeting!r}")
        if self.logo_url and not _is_logo_url(self.logo_url):
            raise RenderError(
                f"branding: logo_url must be an https URL without quotes, spaces or a user "
                f"name: {self.logo_url[:80]!r}"
            )
        if not HEX_COLOUR.match(self.accent_color):
            raise RenderError(
                f"branding: accent_color must be #rrggbb (e.g. #9b1c1c): {self.accent_color!r}"
            )
        object.__setattr__(self, "accent_color", self.accent_color.lower())
        base = self.base_url.rstrip("/")
        if not self.subscribe_url:
            object.__setattr__(self, "subscribe_url", base + "/subscribe")
        if not self.archive_index_url:
            object.__setattr__(self, "archive_index_url", base + "/archive")
        if not self.reason_text:
            host = urlsplit(self.base_url).hostname or base
            _ = gettext_for(self.lang)
            reason = _("You are receiving %(newsletter)s because you subscribed to it at %(host)s.")
            object.__setattr__(
                self, "reason_text", reason % {"newsletter": self.newsletter_name, "host": host}
            )

    @classmethod
    def from_settings(
        cls, settings: Settings, newsletter_name: str, archive_url: str | None = None
    ) -> Branding:
        """Branding from MAILER_BASE_URL and MAILER_POSTAL_ADDRESS."""
        return cls(
            newsletter_name=newsletter_name,
            base_url=settings.public_base,
            postal_address=settings.postal_address,
            archive_url=archive_url,
            template_dir=settings.template_dir,
        )


def is_http_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and url.isprintable()


def _is_logo_url(url: str) -> bool:
    if len(url) > LOGO_URL_MAX or any(c.isspace() or c in "<>\"'`\\" for c in url):
        return False
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return is_https(url) and not parts.username and not parts.password


def is_https(url: str) -> bool:
    return url.lower().startswith("https://") and is_http_url(url)
