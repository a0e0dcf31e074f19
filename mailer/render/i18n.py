"""Translations of the reader pages and system mails (gettext catalogs, Babel).

English is the source language (the msgids); every other language of
:data:`subscribers.list_settings.LANGUAGES` has ``locale/<locale>/LC_MESSAGES/messages.po``
next to this module. The ``.po`` source is what ships (package data) and it is compiled
in memory on first use, so there is no build step to forget and no ``.mo`` to go stale.
A fuzzy entry counts as untranslated (the English shows), and a test keeps the catalogs
complete.

Templates get the callables in their context (``_``, ``gettext``, ``ngettext``): one
environment serves every language, nothing is installed globally. A string with a value
in it is written ``{{ _("Hello %(name)s") | format(name=name) }}``: the translation is
plain text, so the whole result is escaped like any other value.

Re-extract after changing a string (from the repository root)::

    .venv/bin/pybabel extract -F babel.cfg -o mailer/render/locale/messages.pot .
    .venv/bin/pybabel update -i mailer/render/locale/messages.pot -d mailer/render/locale
"""

from __future__ import annotations

import gettext as stdlib_gettext
from collections.abc import Callable
from functools import cache
from io import BytesIO
from pathlib import Path
from typing import Any

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

from subscribers.list_settings import DEFAULT_LANGUAGE, LANGUAGES

LOCALE_DIR = Path(__file__).parent / "locale"
DOMAIN = "messages"


def locale_name(lang: str) -> str:
    """'zh-Hans' -> 'zh_Hans' (the folder and Babel's spelling)."""
    return lang.replace("-", "_")


def catalog_path(lang: str) -> Path:
    return LOCALE_DIR / locale_name(lang) / "LC_MESSAGES" / f"{DOMAIN}.po"


def supported(lang: str | None) -> str:
    """``lang`` if we speak it, else English (a list's stored value is checked when it is
    set; this also covers a value a later version no longer ships)."""
    return lang if lang in LANGUAGES else DEFAULT_LANGUAGE


@cache
def translations(lang: str) -> stdlib_gettext.NullTranslations:
    """The language's catalog (English: none, the msgids are the text)."""
    lang = supported(lang)
    if lang == DEFAULT_LANGUAGE:
        return stdlib_gettext.NullTranslations()
    with catalog_path(lang).open("rb") as fh:
        catalog = read_po(fh, locale=locale_name(lang), domain=DOMAIN)
    compiled = BytesIO()
    write_mo(compiled, catalog, use_fuzzy=False)
    compiled.seek(0)
    return Translations(compiled, domain=DOMAIN)


def N_(text: str) -> str:
    """Mark a string for the catalog (pybabel extracts N_) where it is defined, e.g. in a
    table of messages; it is translated where it is shown, with :func:`gettext_for`."""
    return text


def gettext_for(lang: str) -> Callable[[str], str]:
    return translations(lang).gettext


def template_context(lang: str) -> dict[str, Any]:
    """What a template needs to speak ``lang``: the gettext callables and the tag for
    ``<html lang>`` / ``<mjml lang>``."""
    t = translations(lang)
    return {"_": t.gettext, "gettext": t.gettext, "ngettext": t.ngettext, "lang": supported(lang)}
