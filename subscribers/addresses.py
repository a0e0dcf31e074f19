"""Email address validation and normalization (email-validator, syntax only: no DNS here).

The stored form is the ASCII form where one exists (IDNA domain, so every transport can
send to it) or else the internationalized form, lowercased as a whole: mailbox providers
treat local parts case-insensitively and duplicates by case are far more common than
case-sensitive mailboxes.

Validation is on the import hot path (tens of thousands of rows a second), so the common
case — an ASCII dot-atom local part — validates the domain once per distinct domain (cached)
and the local part with a strict regex that accepts a subset of what email-validator
accepts; anything else goes through email-validator in full.

email-validator is imported by the first address checked, not with this module: the store
imports it, and a command that only reads (``mailer lists show``) should not pay its ~30 ms
of start-up (it compiles its RFC grammar on import).
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

from mailer.errors import InputError, InvalidAddressError

# RFC 5322 dot-atom, ASCII only, as email-validator accepts it.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LOCAL = re.compile(rf"^{_ATOM}(?:\.{_ATOM})*$")


@lru_cache(maxsize=65536)
def _domain(domain: str) -> str:
    """Normalized ASCII domain, or raise InvalidAddressError (cached per domain)."""
    from email_validator import EmailNotValidError, validate_email  # see the module's doc

    try:
        info = validate_email(f"a@{domain}", check_deliverability=False)
    except EmailNotValidError as err:
        raise InvalidAddressError(str(err)) from err
    return (info.ascii_domain or info.domain).lower()


def normalize_email(raw: str) -> str:
    """Validate ``raw`` and return the normalized address; InvalidAddressError says why."""
    text = raw.strip()
    if not text:
        raise InvalidAddressError("empty address")
    local, sep, domain = text.rpartition("@")
    if sep and len(local) <= 64 and _LOCAL.fullmatch(local) and domain.isascii():
        try:
            address = f"{local.lower()}@{_domain(domain)}"
        except InvalidAddressError as err:
            raise InvalidAddressError(f"{text!r}: {err}") from err
        if len(address) <= 254:
            return address
    from email_validator import EmailNotValidError, validate_email  # see the module's doc

    try:
        info = validate_email(text, check_deliverability=False)
    except EmailNotValidError as err:
        raise InvalidAddressError(f"{text!r}: {err}") from err
    return (info.ascii_email or info.normalized).lower()


def try_normalize(raw: str) -> tuple[str | None, str | None]:
    """(address, None) or (None, reason) without raising: for bulk paths."""
    try:
        return normalize_email(raw), None
    except InvalidAddressError as err:
        return None, str(err)


#: a reader's name, as every entrance stores it
READER_NAME_MAX = 200
#: bidi embeddings, overrides and isolates: they reorder what is shown around a name
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def unusable_in_name(ch: str) -> bool:
    """Control, private-use, unassigned, line/paragraph-separator and bidi-override
    characters (joiners are fine)."""
    return unicodedata.category(ch) in ("Cc", "Cs", "Co", "Cn", "Zl", "Zp") or ch in BIDI_CONTROLS


def control_char(text: str) -> str | None:
    """The first C0 or C1 control character in ``text`` (U+0000-U+001F, U+007F-U+009F), or
    None: ``isprintable`` first, as most text has none."""
    if text.isprintable():
        return None
    return next((ch for ch in text if unicodedata.category(ch) == "Cc"), None)


def clean_name(name: str | None) -> str | None:
    """A reader's name as every entrance stores it, the operator's too (`subscribers add
    --name`, a CSV import): no C0/C1 control character anywhere, a tab or line break at
    either end included (a NUL is refused by PostgreSQL; the others break the mail's lines
    and the operator's terminal), then outer spaces gone (blank: None). The web's and the
    API's stricter rule is :func:`check_reader_name`."""
    bad = control_char(name or "")
    if bad is not None:
        raise InputError(f"name: contains {bad!r} (U+{ord(bad):04X}), a control character")
    return (name or "").strip() or None


def check_reader_name(name: str | None) -> str | None:
    """A reader's name as an outsider's entrance may store it (outer blanks gone; blank is
    None), or an InputError naming what is wrong: the API's rule, and the characters the
    web's forms refuse (they say it in the reader's language). Operator imports keep names
    as written (an export imports back to the same person)."""
    text = (name or "").strip()
    if not text:
        return None
    if len(text) > READER_NAME_MAX:
        raise InputError(f"name: {len(text)} characters, more than {READER_NAME_MAX}")
    bad = next((ch for ch in text if unusable_in_name(ch)), None)
    if bad is not None:
        raise InputError(f"name: contains {bad!r} (U+{ord(bad):04X}), a character names cannot use")
    return text
