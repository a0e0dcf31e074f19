"""Per-list settings: how a list's mail looks and speaks (issue 15), validated at the edge.

Each setting is checked by one function that names the field it refuses, so `mailer lists
set`, the API and any later desk give the same error for the same bad value, and nothing is
stored half-valid. :func:`update_list` applies a set of changes atomically (all or none).

``None`` in a :class:`ListChanges` field means "leave as it is"; :data:`CLEAR` removes an
optional value (back to the default).
"""

from __future__ import annotations

import re
import string
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass, fields
from functools import cache
from typing import Final
from urllib.parse import urlsplit

from sqlalchemy.orm import Session

from mailer.errors import InputError, InvalidAddressError
from subscribers.addresses import normalize_email
from subscribers.models import MailingList
from subscribers.store import UNICODE_LINE_BREAKS, parse_from

#: the languages the reader pages and system mails are translated into
LANGUAGES: Final = ("en", "zh-Hans")
DEFAULT_LANGUAGE: Final = "en"
#: the fields a subject template may name, e.g. "{newsletter}: {first_headline}"
SUBJECT_FIELDS: Final = ("newsletter", "first_headline", "title", "subject", "date", "items")
SUBJECT_TEMPLATE_MAX = 200
GREETING_MAX = 60
LOGO_URL_MAX = 2000
WELCOME_MAX = 20_000
_HEX = re.compile(r"^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})$")


class Clear:
    """The value that removes an optional setting (:data:`CLEAR`)."""

    def __repr__(self) -> str:
        return "CLEAR"


CLEAR: Final = Clear()


def _control(text: str, *, allow_newlines: bool = False) -> bool:
    ok = "\n\t" if allow_newlines else ""
    return any(
        (ord(ch) < 32 and ch not in ok) or 127 <= ord(ch) < 160 or ch in UNICODE_LINE_BREAKS
        for ch in text
    )


def clean_accent(value: str) -> str:
    """'#1a5fb4' (or '#15b'): the list's accent colour, stored as lowercase #rrggbb."""
    text = value.strip()
    if not _HEX.match(text):
        raise InputError(f"accent: not a colour {value!r} (use #rrggbb, e.g. #b3261e)")
    digits = text[1:].lower()
    return "#" + (digits if len(digits) == 6 else "".join(d * 2 for d in digits))


def clean_logo(value: str) -> str:
    """An https URL of the logo image: mail clients fetch it, and http would warn."""
    text = value.strip()
    if (
        _control(text)
        or any(ch.isspace() or ch in "<>\"'`\\" for ch in text)
        or len(text) > LOGO_URL_MAX
    ):
        raise InputError(f"logo: not a usable URL {value!r}")
    try:
        parts = urlsplit(text)
        host = parts.hostname
    except ValueError as err:
        raise InputError(f"logo: not a URL {value!r} ({err})") from err
    if parts.scheme.lower() != "https" or not host:
        raise InputError(f"logo: must be an https:// URL, got {value!r}")
    if parts.username or parts.password:
        raise InputError(f"logo: a URL with a user name or password is refused: {value!r}")
    return text


def clean_language(value: str) -> str:
    """One of :data:`LANGUAGES` (case-insensitive, '_' or '-': 'zh_hans' is 'zh-Hans')."""
    wanted = value.strip().replace("_", "-").lower()
    for lang in LANGUAGES:
        if lang.lower() == wanted:
            return lang
    raise InputError(f"lang: unknown language {value!r} (one of: {', '.join(LANGUAGES)})")


def clean_greeting(value: str) -> str:
    """One short line ('Dear'); empty means the mail opens with no greeting line."""
    text = value.strip()
    if _control(text) or len(text) > GREETING_MAX:
        raise InputError(
            f"greeting: one line of at most {GREETING_MAX} characters, got {value[:80]!r}"
        )
    return text


@cache
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def clean_time_zone(value: str, *, field: str = "time-zone") -> str:
    """An IANA zone name ('Asia/Shanghai'), as the zone database spells it."""
    text = value.strip()
    if text in _zones():
        return text
    folded = {z.lower(): z for z in _zones()}
    if text.lower() in folded:
        return folded[text.lower()]
    raise InputError(
        f"{field}: unknown time zone {value[:80]!r} (use an IANA name such as Asia/Shanghai)"
    )


def clean_subject_template(value: str) -> str:
    """A str.format template over :data:`SUBJECT_FIELDS` only: no attribute or index access,
    conversions or format specs (a template comes from an operator, but it is formatted with
    values from the issue file, so nothing but plain substitution is allowed)."""
    text = value.strip()
    if not text or _control(text) or len(text) > SUBJECT_TEMPLATE_MAX:
        raise InputError(
            f"subject-template: one non-empty line of at most {SUBJECT_TEMPLATE_MAX} characters"
        )
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as err:
        raise InputError(
            f"subject-template: {err} in {value!r} (write {{{{ or }}}} for a brace)"
        ) from err
    known = ", ".join("{" + f + "}" for f in SUBJECT_FIELDS)
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if name not in SUBJECT_FIELDS:
            raise InputError(f"subject-template: unknown field {{{name}}} (fields: {known})")
        if spec or conversion:
            raise InputError(
                f"subject-template: {{{name}}} takes no conversion or format spec (fields: {known})"
            )
    return text


def fill_subject(template: str, values: dict[str, str]) -> str:
    """The subject from a (validated) template; every field must have a value."""
    clean = clean_subject_template(template)
    missing = [f for f in SUBJECT_FIELDS if f not in values]
    if missing:
        raise InputError(f"subject-template: no value for {', '.join(missing)}")
    return " ".join(clean.format(**{f: values[f] for f in SUBJECT_FIELDS}).split())


def clean_welcome(value: str) -> str:
    """The welcome mail's Markdown: UTF-8 text, not empty, not huge."""
    text = value.replace("\r\n", "\n").replace("\r", "\n").strip()
    if not text:
        raise InputError("welcome: the file is empty (use --no-welcome to turn it off)")
    if len(text) > WELCOME_MAX:
        raise InputError(f"welcome: {len(text)} characters, more than {WELCOME_MAX}")
    if _control(text, allow_newlines=True):
        raise InputError("welcome: the text contains control characters")
    return text


@dataclass(frozen=True)
class ListChanges:
    """What `lists set` asked for. ``None``: unchanged; :data:`CLEAR`: back to the default."""

    name: str | None = None
    from_address: str | None = None
    reply_to: str | Clear | None = None
    logo_url: str | Clear | None = None
    accent_color: str | Clear | None = None
    lang: str | None = None
    greeting: str | Clear | None = None
    welcome_markdown: str | Clear | None = None
    subject_template: str | Clear | None = None
    time_zone: str | Clear | None = None

    def empty(self) -> bool:
        return all(getattr(self, f.name) is None for f in fields(self))


def _clean_name(value: str) -> str:
    text = value.strip()
    if not text or _control(text) or len(text) > 200:
        raise InputError(f"name: one non-empty line of at most 200 characters, got {value[:80]!r}")
    return text


def _clean_reply_to(value: str) -> str:
    try:
        return normalize_email(value)
    except InvalidAddressError as err:
        raise InputError(f"reply-to: not an address {value[:80]!r} ({err})") from err


def _clean_from(value: str) -> str:
    try:
        return parse_from(value)
    except InvalidAddressError as err:
        raise InputError(f"from: {err}") from err


_CLEANERS: dict[str, Callable[[str], str]] = {
    "name": _clean_name,
    "from_address": _clean_from,
    "reply_to": _clean_reply_to,
    "logo_url": clean_logo,
    "accent_color": clean_accent,
    "lang": clean_language,
    "greeting": clean_greeting,
    "welcome_markdown": clean_welcome,
    "subject_template": clean_subject_template,
    "time_zone": clean_time_zone,
}


def update_list(session: Session, mlist: MailingList, changes: ListChanges) -> list[str]:
    """Validate every change first, then apply them all; the names of the changed fields."""
    if changes.empty():
        raise InputError("nothing to change: give at least one setting (see --help)")
    cleaned: dict[str, str | None] = {}
    for f in fields(changes):
        value = getattr(changes, f.name)
        if value is None:
            continue
        cleaned[f.name] = None if value is CLEAR else _CLEANERS[f.name](str(value))
    changed = []
    for name, new in cleaned.items():
        if getattr(mlist, name) != new:
            setattr(mlist, name, new)
            changed.append(name)
    session.flush()
    return changed


#: each setting as `mailer lists set` spells it (and as errors name it)
OPTION: Final = {
    "name": "name",
    "from_address": "from",
    "reply_to": "reply-to",
    "logo_url": "logo",
    "accent_color": "accent",
    "lang": "lang",
    "greeting": "greeting",
    "welcome_markdown": "welcome",
    "subject_template": "subject-template",
    "time_zone": "time-zone",
}


def describe(mlist: MailingList) -> dict[str, str]:
    """A list's settings for people: every setting, defaults spelled out."""
    welcome = mlist.welcome_markdown
    greeting = mlist.greeting
    return {
        "slug": mlist.slug,
        "name": mlist.name,
        "from": mlist.from_address,
        "reply-to": mlist.reply_to or "(none)",
        "double opt-in": "yes" if mlist.double_opt_in else "no",
        "lang": mlist.lang,
        "logo": mlist.logo_url or "(none)",
        "accent": mlist.accent_color or "(default)",
        "greeting": "(the language's default)"
        if greeting is None
        else (greeting or "(no greeting line)"),
        "welcome": "(none)"
        if welcome is None
        else f"{len(welcome)} characters, first line: {welcome.splitlines()[0][:60]}",
        "subject-template": mlist.subject_template or "(the issue's subject)",
        "time-zone": mlist.time_zone or "UTC",
    }
