"""`mailer keygen`: a new random MAILER_SECRET_KEY, so nobody has to invent one."""

from __future__ import annotations

import secrets

import typer

from mailer.config import MIN_SECRET_KEY_LEN

#: 32 random bytes (256 bits) -> 43 base64url characters, above MIN_SECRET_KEY_LEN.
KEY_BYTES = 32


def new_secret_key() -> str:
    """A key from the OS's CSPRNG, URL-safe so it pastes into any environment file."""
    key = secrets.token_urlsafe(KEY_BYTES)
    assert len(key) >= MIN_SECRET_KEY_LEN
    return key


def keygen() -> None:
    """Print a new random secret key for MAILER_SECRET_KEY (links are signed with it).

    When replacing a key, move the old one to MAILER_OLD_SECRET_KEYS so links already in
    inboxes keep working.

    Example: echo "MAILER_SECRET_KEY=$(mailer keygen)" >> /etc/brief-mailer.env
    """
    typer.echo(new_secret_key())
