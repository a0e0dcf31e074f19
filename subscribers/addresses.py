"""Email address validation and normalization (email-validator, syntax only: no DNS here).

The stored form is the ASCII form where one exists (IDNA domain, so every transport can
send to it) or else the internationalized form, lowercased as a whole: mailbox providers
treat local parts case-insensitively and duplicates by case are far more common than
case-sensitive mailboxes.

Validation is on the import hot path (tens of thousands of rows a second), so the common
case — an ASCII dot-atom local part — validates the domain once per distinct domain (cached)
and the local part with a strict regex that accepts a subset of what email-validator
accepts; anything else goes through email-validator in full.
"""

from __future__ import annotations

import re
from functools import lru_cache

from email_validator import EmailNotValidError, validate_email

from mailer.errors import InvalidAddressError

# RFC 5322 dot-atom, ASCII only, as email-validator accepts it.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LOCAL = re.compile(rf"^{_ATOM}(?:\.{_ATOM})*$")


@lru_cache(maxsize=65536)
def _domain(domain: str) -> str:
    """Normalized ASCII domain, or raise InvalidAddressError (cached per domain)."""
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
