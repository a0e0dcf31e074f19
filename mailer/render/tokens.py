"""Signed tokens for the links a reader clicks: confirm, unsubscribe, preferences.

A token is ``<purpose>.<subscriber>.<list>[.<expiry>].<signature>``:

* ``purpose`` one letter: ``c`` confirm, ``u`` unsubscribe, ``p`` preferences;
* ``subscriber``, ``list`` and ``expiry`` (Unix seconds) in lowercase hex;
* ``signature`` the first 16 bytes (128 bits) of HMAC-SHA256 over everything before it,
  base64url without padding (22 characters).

So ``u.3e8.1.Zq3...`` is about 35 characters: short enough for a ``List-Unsubscribe``
header and every link of every email, and URL-safe as it stands. Only lowercase hex, dots
and the base64url alphabet appear, so a token never needs quoting in a path.

Why these rules:

* Confirm tokens must carry an expiry; unsubscribe tokens never expire (a one-click link in
  a years-old email must still work); preferences tokens may expire.
* Key rotation: new tokens are signed with ``MAILER_SECRET_KEY``; tokens signed with any of
  ``MAILER_OLD_SECRET_KEYS`` still verify (``Claims.key_index`` says which key matched, 0
  being the current one), so rotating the key does not break links already in inboxes.
* Signatures are compared with :func:`hmac.compare_digest`.
* Signing is on the per-reader hot path: the keyed HMAC state is built once per key and
  copied per token (a few microseconds).
"""

from __future__ import annotations

import base64
import hmac
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from hashlib import sha256
from typing import Literal

from mailer.config import Settings
from mailer.errors import TokenError

Purpose = Literal["confirm", "unsubscribe", "preferences"]

_CODE: dict[str, str] = {"confirm": "c", "unsubscribe": "u", "preferences": "p"}
_PURPOSE: dict[str, Purpose] = {"c": "confirm", "u": "unsubscribe", "p": "preferences"}
_SIG_BYTES = 16
_SIG_CHARS = 22  # base64url length of 16 bytes without padding
_MAX_INT = (1 << 63) - 1
#: Shape of a well-formed token; anything else is "malformed" before any HMAC is computed.
#: The last of the 22 signature characters carries 2 bits, so only A, Q, g, w are canonical.
_TOKEN = re.compile(
    r"([a-z])\.([0-9a-f]{1,16})\.([0-9a-f]{1,16})(?:\.([0-9a-f]{1,16}))?"
    r"\.([A-Za-z0-9_-]{21}[AQgw])"
)
_MAX_TOKEN_LEN = 100

#: How long a confirmation link stays valid unless told otherwise.
DEFAULT_CONFIRM_TTL = timedelta(days=7)


@dataclass(frozen=True, slots=True)
class Claims:
    """What a verified token says. ``key_index`` 0 = current key, >0 = an old key."""

    purpose: Purpose
    subscriber_id: int
    list_id: int
    expires_at: datetime | None = None
    key_index: int = 0


class Signer:
    """Signs and verifies tokens with a current key and any number of old keys."""

    __slots__ = ("_keys",)

    def __init__(self, key: str | bytes, old_keys: tuple[str | bytes, ...] = ()) -> None:
        keys = [key, *old_keys]
        if any(not k for k in keys):
            raise ValueError("token signing keys must not be empty")
        self._keys = tuple(
            hmac.new(k.encode() if isinstance(k, str) else k, digestmod=sha256) for k in keys
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> Signer:
        """Current key from ``MAILER_SECRET_KEY``, rotation keys from ``MAILER_OLD_SECRET_KEYS``."""
        return cls(settings.require_secret_key(), tuple(settings.old_secret_keys))

    def _mac(self, index: int, payload: bytes) -> bytes:
        mac = self._keys[index].copy()
        mac.update(payload)
        return mac.digest()[:_SIG_BYTES]

    def sign(
        self,
        purpose: Purpose,
        subscriber_id: int,
        list_id: int,
        *,
        expires_at: datetime | None = None,
    ) -> str:
        """A token for ``purpose``.

        Confirm tokens need ``expires_at``; unsubscribe tokens refuse one (they never expire)."""
        code = _CODE.get(purpose)
        if code is None:
            raise ValueError(
                f"unknown token purpose {purpose!r} (confirm, unsubscribe, preferences)"
            )
        if not (0 <= subscriber_id <= _MAX_INT and 0 <= list_id <= _MAX_INT):
            raise ValueError("subscriber_id and list_id must be non-negative 63-bit integers")
        payload = f"{code}.{subscriber_id:x}.{list_id:x}"
        if expires_at is not None:
            if code == "u":
                raise ValueError("unsubscribe tokens never expire: do not pass expires_at")
            if expires_at.tzinfo is None:
                raise ValueError("expires_at must be timezone-aware")
            payload += f".{max(0, int(expires_at.timestamp())):x}"
        elif code == "c":
            raise ValueError("confirm tokens need expires_at")
        raw = payload.encode("ascii")
        sig = base64.urlsafe_b64encode(self._mac(0, raw))[:_SIG_CHARS].decode("ascii")
        return f"{payload}.{sig}"

    def verify(self, token: str, purpose: Purpose, *, now: datetime | None = None) -> Claims:
        """The token's claims, or TokenError saying whether it is malformed, forged,
        for another purpose, or expired."""
        if not isinstance(token, str) or len(token) > _MAX_TOKEN_LEN:
            raise TokenError("malformed token")
        m = _TOKEN.fullmatch(token)
        if m is None or m.group(1) not in _PURPOSE:
            raise TokenError("malformed token")
        code, sub_hex, list_hex, exp_hex, sig_text = m.groups()
        try:
            sig = base64.urlsafe_b64decode(sig_text + "==")
        except ValueError as err:  # pragma: no cover - the regex admits only valid base64url
            raise TokenError("malformed token") from err
        if len(sig) != _SIG_BYTES:
            raise TokenError("malformed token")
        payload = token[: m.start(5) - 1].encode("ascii")
        key_index = self._match_key(payload, sig)
        if key_index is None:
            raise TokenError("bad token signature")
        actual = _PURPOSE[code]
        if actual != purpose:
            raise TokenError(f"token is for {actual}, not {purpose}")
        expires_at = None
        if exp_hex is not None:
            try:
                expires_at = datetime.fromtimestamp(int(exp_hex, 16), UTC)
            except (OverflowError, OSError, ValueError) as err:
                raise TokenError("malformed token") from err
            current = now or datetime.now(UTC)
            if current >= expires_at:
                raise TokenError("token expired")
        elif code == "c":
            raise TokenError("malformed token")  # signed by us, but confirm without expiry
        return Claims(actual, int(sub_hex, 16), int(list_hex, 16), expires_at, key_index)

    def _match_key(self, payload: bytes, sig: bytes) -> int | None:
        for index in range(len(self._keys)):
            if hmac.compare_digest(self._mac(index, payload), sig):
                return index
        return None


def _url(settings: Settings, path: str, token: str) -> str:
    return f"{settings.public_base}/{path}/{token}"


def unsubscribe_url(settings: Settings, signer: Signer, subscriber_id: int, list_id: int) -> str:
    """``{base}/unsubscribe/{token}``: the List-Unsubscribe and footer link (never expires)."""
    return _url(settings, "unsubscribe", signer.sign("unsubscribe", subscriber_id, list_id))


def preferences_url(
    settings: Settings,
    signer: Signer,
    subscriber_id: int,
    list_id: int,
    *,
    expires_at: datetime | None = None,
) -> str:
    """``{base}/preferences/{token}``."""
    token = signer.sign("preferences", subscriber_id, list_id, expires_at=expires_at)
    return _url(settings, "preferences", token)


def confirm_url(
    settings: Settings,
    signer: Signer,
    subscriber_id: int,
    list_id: int,
    *,
    ttl: timedelta = DEFAULT_CONFIRM_TTL,
    now: datetime | None = None,
) -> str:
    """``{base}/confirm/{token}``, valid for ``ttl`` from ``now``."""
    expires_at = (now or datetime.now(UTC)) + ttl
    token = signer.sign("confirm", subscriber_id, list_id, expires_at=expires_at)
    return _url(settings, "confirm", token)
