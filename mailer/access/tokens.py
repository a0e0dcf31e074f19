"""API tokens: create (the raw token is returned once), list, revoke, authenticate.

A token is ``bm_`` + 32 random bytes (URL-safe base64); the store keeps its SHA-256 only,
so a copy of the database lets nobody in. A token is found by that hash (an index lookup:
the hash of an unguessable value leaks nothing by its timing); ``MAILER_ADMIN_TOKEN``, which
stays an ``ops`` token, is compared in constant time. Used by ``mailer tokens``, the API
(``/api/v1``) and the web desk (``/desk``).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import CursorResult, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from mailer.access.models import ApiToken, Role
from mailer.errors import ConflictError, InputError, NotFoundError
from subscribers.models import utcnow

__all__ = [
    "ADMIN_PRINCIPAL",
    "Principal",
    "Role",
    "TokenInfo",
    "authenticate",
    "create_token",
    "hash_token",
    "list_tokens",
    "parse_role",
    "revoke_token",
    "still_valid",
]

log = logging.getLogger(__name__)

PREFIX = "bm_"
NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
#: the principal of MAILER_ADMIN_TOKEN (upper case: no token name can take it)
ADMIN_PRINCIPAL = "MAILER_ADMIN_TOKEN"
#: last_used_at is written at most this often per token (not one write per request)
TOUCH_EVERY = timedelta(minutes=1)
#: longer than any token we hand out by far; longer input is not looked up at all
MAX_TOKEN_CHARS = 200


@dataclass(frozen=True)
class Principal:
    """Who a request is: a token's name and role."""

    name: str
    role: Role

    def may(self, needed: Role) -> bool:
        """``ops`` may do everything; ``editor`` what needs ``editor``."""
        return self.role == Role.OPS or needed == Role.EDITOR


@dataclass(frozen=True)
class TokenInfo:
    """What ``mailer tokens list`` shows: never the token."""

    name: str
    role: Role
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def parse_role(text: str) -> Role:
    try:
        return Role(text.strip().lower())
    except ValueError:
        raise InputError(f"unknown role {text!r}: use editor or ops") from None


def check_name(name: str) -> str:
    if not NAME.fullmatch(name):
        raise InputError(
            f"token name {name!r}: use 1-64 lower-case letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def create_token(sessions: sessionmaker[Session], name: str, role: Role | str) -> str:
    """A new token for ``name``; the raw token is returned once and never stored. A name
    is used once, also after its token was revoked (the log then stays unambiguous)."""
    check_name(name)
    chosen = role if isinstance(role, Role) else parse_role(role)
    raw = PREFIX + secrets.token_urlsafe(32)
    try:
        with sessions.begin() as s:
            if s.scalar(select(ApiToken.id).where(ApiToken.name == name)) is not None:
                raise ConflictError(
                    f"a token named {name!r} exists already (or did); pick another name"
                )
            s.add(ApiToken(name=name, role=chosen.value, token_hash=hash_token(raw)))
    except IntegrityError as err:  # the same name created at the same time elsewhere
        raise ConflictError(f"a token named {name!r} exists already; pick another name") from err
    return raw


def list_tokens(sessions: sessionmaker[Session]) -> list[TokenInfo]:
    """Every token, oldest first, revoked ones included."""
    with sessions() as s:
        rows = s.scalars(select(ApiToken).order_by(ApiToken.id)).all()
        return [
            TokenInfo(t.name, Role(t.role), t.created_at, t.last_used_at, t.revoked_at)
            for t in rows
        ]


def revoke_token(
    sessions: sessionmaker[Session], name: str, *, now: datetime | None = None
) -> None:
    """From now on the token is refused (401). Revoking twice is a ConflictError."""
    with sessions.begin() as s:
        token = s.scalar(select(ApiToken).where(ApiToken.name == name))
        if token is None:
            raise NotFoundError(f"no token named {name!r}")
        done = s.execute(
            update(ApiToken)
            .where(ApiToken.id == token.id, ApiToken.revoked_at.is_(None))
            .values(revoked_at=now or utcnow())
        )
        assert isinstance(done, CursorResult)
        if done.rowcount != 1:
            raise ConflictError(f"the token {name!r} is revoked already")


def authenticate(
    sessions: sessionmaker[Session],
    raw: str | None,
    admin_token: str,
    *,
    now: datetime | None = None,
) -> Principal | None:
    """The principal of a presented token, or None (missing, unknown, revoked)."""
    if not raw or len(raw) > MAX_TOKEN_CHARS:
        return None
    if admin_token and hmac.compare_digest(raw.encode("utf-8"), admin_token.encode("utf-8")):
        return Principal(ADMIN_PRINCIPAL, Role.OPS)
    if not raw.startswith(PREFIX):
        return None
    now = now or utcnow()
    digest = hash_token(raw)
    with sessions() as s:
        token = s.scalar(select(ApiToken).where(ApiToken.token_hash == digest))
        if token is None or token.revoked_at is not None:
            return None
        principal = Principal(token.name, Role(token.role))
        stale = token.last_used_at is None or token.last_used_at < now - TOUCH_EVERY
    if stale:
        _touch(sessions, digest, now)
    return principal


def still_valid(session: Session, who: Principal) -> bool:
    """Whether ``who``'s token is still unrevoked, read in the caller's transaction.

    A request is authorized when it arrives, but a send renders for a while first; the
    transaction that writes the campaign asks again, so a token revoked meanwhile creates
    nothing. The row is read under a share lock (PostgreSQL), so a revocation that comes
    later waits for this transaction: the campaign is then strictly before the revocation."""
    if who.name == ADMIN_PRINCIPAL:
        return True
    row = session.execute(
        select(ApiToken.revoked_at).where(ApiToken.name == who.name).with_for_update(read=True)
    ).first()
    return row is not None and row[0] is None


def _touch(sessions: sessionmaker[Session], digest: str, now: datetime) -> None:
    """Record the use; at most once a minute per token (a read-mostly API stays read-mostly).
    Best effort: a store busy with a send (SQLite's one writer) must not refuse the caller
    whose token was just found valid; the next use records it."""
    try:
        with sessions.begin() as s:
            s.execute(
                update(ApiToken)
                .where(
                    ApiToken.token_hash == digest,
                    (ApiToken.last_used_at.is_(None)) | (ApiToken.last_used_at < now - TOUCH_EVERY),
                )
                .values(last_used_at=now)
            )
    except OperationalError as err:
        log.warning("last use of an API token not recorded: %s", str(err).splitlines()[0])
