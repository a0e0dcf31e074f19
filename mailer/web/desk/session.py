"""The desk's signed session cookie: who signed in, with which token, since when.

Stateless, like the CSRF tokens (:mod:`mailer.web.csrf`): the cookie is
``<payload>.<mac>``, the payload (URL-safe base64) holding the token's name and role, a
fingerprint of the token, a random session id (the CSRF binding of every desk form) and
the time of sign-in; the MAC is HMAC-SHA256 with a key derived from ``MAILER_SECRET_KEY``.
The raw token is never in the cookie. On every request the fingerprint is compared with
the token as it is now, so revoking a token (``mailer tokens revoke``) or changing
``MAILER_ADMIN_TOKEN`` ends its desk sessions at once, not when the cookie expires.

Cookie flags: HttpOnly, SameSite=Strict, Path=/; on https also Secure and the ``__Host-``
name prefix (no subdomain can set it).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from starlette.requests import Request
from starlette.responses import Response

from mailer.access.models import ApiToken, Role
from mailer.access.tokens import ADMIN_PRINCIPAL, Principal, hash_token

__all__ = ["SESSION_TTL", "DeskSession", "SessionCodec"]

#: a desk session lasts a working day; then the editor signs in again
SESSION_TTL = 12 * 3600
_COOKIE = re.compile(r"^([A-Za-z0-9_-]{16,400})\.([A-Za-z0-9_-]{43})$")
_FIELD = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class DeskSession:
    """What the cookie says. ``sid`` binds the session's form tokens to it."""

    name: str
    role: Role
    fingerprint: str
    sid: str
    issued: int

    @property
    def principal(self) -> Principal:
        return Principal(self.name, self.role)


class SessionCodec:
    """Writes and reads the session cookie; ``secure`` for an https MAILER_BASE_URL."""

    def __init__(self, secret: str, *, secure: bool, ttl: int = SESSION_TTL) -> None:
        self._key = hmac.new(
            secret.encode(), b"brief-mailer desk session v1", hashlib.sha256
        ).digest()
        self.secure = secure
        self.ttl = ttl
        self.cookie_name = "__Host-mailer_desk" if secure else "mailer_desk"

    def _mac(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode("ascii"), hashlib.sha256).digest())

    def fingerprint(self, token_hash: str) -> str:
        """Names the token without revealing anything about it (keyed, truncated)."""
        digest = hmac.new(self._key, b"token\x00" + token_hash.encode(), hashlib.sha256).digest()
        return _b64(digest[:16])

    def new(self, principal: Principal, raw_token: str, now: float) -> DeskSession:
        """A fresh session (a new ``sid`` at every sign-in: no session fixation)."""
        return DeskSession(
            principal.name,
            principal.role,
            self.fingerprint(hash_token(raw_token)),
            secrets.token_urlsafe(18),
            int(now),
        )

    def encode(self, session: DeskSession) -> str:
        fields = (session.name, session.role.value, session.fingerprint, session.sid)
        payload = _b64("|".join((*fields, f"{session.issued:x}")).encode("ascii"))
        return f"{payload}.{self._mac(payload)}"

    def decode(self, value: str | None, now: float) -> DeskSession | None:
        """The session in a cookie, or None: missing, malformed, forged or expired."""
        m = _COOKIE.match(value or "")
        if m is None:
            return None
        payload, mac = m.groups()
        if not hmac.compare_digest(mac, self._mac(payload)):
            return None
        try:
            name, role, fingerprint, sid, issued_hex = _unb64(payload).decode("ascii").split("|")
            issued = int(issued_hex, 16)
            chosen = Role(role)
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None
        if not all(_FIELD.match(f) for f in (name, fingerprint, sid)):
            return None
        if not (-300 <= now - issued <= self.ttl):
            return None
        return DeskSession(name, chosen, fingerprint, sid, issued)

    def read(self, request: Request, now: float) -> DeskSession | None:
        return self.decode(request.cookies.get(self.cookie_name), now)

    def set_cookie(self, response: Response, session: DeskSession) -> None:
        response.set_cookie(
            self.cookie_name,
            self.encode(session),
            max_age=self.ttl,
            path="/",
            secure=self.secure,
            httponly=True,
            samesite="strict",
        )

    def clear_cookie(self, response: Response) -> None:
        response.delete_cookie(
            self.cookie_name, path="/", secure=self.secure, httponly=True, samesite="strict"
        )

    def still_valid(
        self, sessions: sessionmaker[Session], session: DeskSession, admin_token: str
    ) -> Principal | None:
        """The session's principal as the tokens stand now, or None: its token was revoked,
        or ``MAILER_ADMIN_TOKEN`` changed or was unset. The role comes from the token."""
        if session.name == ADMIN_PRINCIPAL:
            if admin_token and hmac.compare_digest(
                session.fingerprint, self.fingerprint(hash_token(admin_token))
            ):
                return Principal(ADMIN_PRINCIPAL, Role.OPS)
            return None
        with sessions() as s:
            row = s.execute(
                select(ApiToken.role, ApiToken.token_hash, ApiToken.revoked_at).where(
                    ApiToken.name == session.name
                )
            ).first()
        if row is None or row.revoked_at is not None:
            return None
        if not hmac.compare_digest(session.fingerprint, self.fingerprint(row.token_hash)):
            return None
        return Principal(session.name, Role(row.role))
