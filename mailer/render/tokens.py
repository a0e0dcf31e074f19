"""Signed tokens for the links a reader clicks: confirm, unsubscribe, preferences.

A token is ``<purpose>.<subscriber>.<list>[.<version>][.<expiry>].<signature>``:

* ``purpose`` one letter: ``c`` confirm, ``u`` unsubscribe, ``p`` preferences;
* ``subscriber``, ``list``, ``version`` and ``expiry`` (Unix seconds) in lowercase hex;
* ``signature`` the first 16 bytes (128 bits) of HMAC-SHA256 over everything before it,
  base64url without padding (22 characters).

So ``u.3e8.1.Zq3...`` is about 35 characters: short enough for a ``List-Unsubscribe``
header and every link of every email, and URL-safe as it stands. Only lowercase hex, dots
and the base64url alphabet appear, so a token never needs quoting in a path.

Why these rules (docs/architecture.md principle 9: consent only moves forward by the reader's act):

* Unsubscribe tokens never expire (a one-click link in a years-old email must still work),
  and can only ever unsubscribe.
* Preferences tokens always expire (``MAILER_PREFERENCES_TTL``, rounded up to midnight
  UTC); a genuine one without an expiry (signed before links expired) counts as expired.
* Confirm tokens expire and carry the subscription's ``consent_version``, which every status
  change bumps: a confirm link works once, and never after a later unsubscribe.
* Tokens name the subscriber by id, and ids are never reused (AUTOINCREMENT on SQLite), so
  an erased reader's link cannot open the next reader's page.
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
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from hashlib import sha256
from typing import Literal

from mailer.config import Settings
from mailer.errors import TokenError

Purpose = Literal["confirm", "unsubscribe", "preferences"]

_CODE: dict[str, str] = {"confirm": "c", "unsubscribe": "u", "preferences": "p"}
_PURPOSE: dict[str, Purpose] = {"c": "confirm", "u": "unsubscribe", "p": "preferences"}
#: How many hex fields follow subscriber and list: confirm (version, expiry), preferences
#: (expiry), unsubscribe (none); and the counts a well-formed token may have: those of
#: links signed before confirm carried a version, and one field for any purpose (as ever).
_EXTRA: dict[str, int] = {"c": 2, "p": 1, "u": 0}
_SHAPES: dict[str, tuple[int, ...]] = {"c": (1, 2), "p": (0, 1), "u": (0, 1)}
_SIG_BYTES = 16
_SIG_CHARS = 22  # base64url length of 16 bytes without padding
_MAX_INT = (1 << 63) - 1
#: Shape of a well-formed token; anything else is "malformed" before any HMAC is computed.
#: The last of the 22 signature characters carries 2 bits, so only A, Q, g, w are canonical.
_TOKEN = re.compile(
    r"([a-z])\.([0-9a-f]{1,16})\.([0-9a-f]{1,16})((?:\.[0-9a-f]{1,16}){0,2})"
    r"\.([A-Za-z0-9_-]{21}[AQgw])"
)
_MAX_TOKEN_LEN = 100
_SIG = re.compile(r"[A-Za-z0-9_-]{21}[AQgw]")

#: How long a confirmation link stays valid unless told otherwise.
DEFAULT_CONFIRM_TTL = timedelta(days=7)
#: How long a preferences link stays valid unless told otherwise (MAILER_PREFERENCES_TTL).
DEFAULT_PREFERENCES_TTL = timedelta(days=30)


@dataclass(frozen=True, slots=True)
class Claims:
    """What a verified token says. ``key_index`` 0 = current key, >0 = an old key;
    ``version`` is the subscription's consent version (confirm tokens only)."""

    purpose: Purpose
    subscriber_id: int
    list_id: int
    expires_at: datetime | None = None
    key_index: int = 0
    version: int | None = None


@dataclass(frozen=True, slots=True)
class _Parsed:
    code: str
    subscriber_id: int
    list_id: int
    extras: tuple[int, ...]
    key_index: int


class Signer:
    """Signs and verifies tokens with a current key and any number of old keys."""

    __slots__ = ("_expiry", "_keys", "preferences_ttl")

    def __init__(
        self,
        key: str | bytes,
        old_keys: tuple[str | bytes, ...] = (),
        *,
        preferences_ttl: timedelta = DEFAULT_PREFERENCES_TTL,
    ) -> None:
        keys = [key, *old_keys]
        if any(not k for k in keys):
            raise ValueError("token signing keys must not be empty")
        self._keys = tuple(
            hmac.new(k.encode() if isinstance(k, str) else k, digestmod=sha256) for k in keys
        )
        self.preferences_ttl = preferences_ttl
        # the preferences expiry of "now", and the last moment (epoch seconds) it holds for
        self._expiry: tuple[float, datetime] = (float("-inf"), datetime.min.replace(tzinfo=UTC))

    @classmethod
    def from_settings(cls, settings: Settings) -> Signer:
        """Current key from ``MAILER_SECRET_KEY``, rotation keys from ``MAILER_OLD_SECRET_KEYS``,
        preferences links valid for ``MAILER_PREFERENCES_TTL``."""
        return cls(
            settings.require_secret_key(),
            tuple(settings.old_secret_keys),
            preferences_ttl=timedelta(seconds=settings.preferences_ttl),
        )

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
        version: int | None = None,
    ) -> str:
        """A token for ``purpose``.

        Confirm tokens need ``version`` and ``expires_at``, preferences tokens ``expires_at``;
        unsubscribe tokens refuse both (they never expire)."""
        code = _CODE.get(purpose)
        if code is None:
            raise ValueError(
                f"unknown token purpose {purpose!r} (confirm, unsubscribe, preferences)"
            )
        if not (0 <= subscriber_id <= _MAX_INT and 0 <= list_id <= _MAX_INT):
            raise ValueError("subscriber_id and list_id must be non-negative 63-bit integers")
        payload = f"{code}.{subscriber_id:x}.{list_id:x}"
        if code == "u" and (expires_at is not None or version is not None):
            raise ValueError("unsubscribe tokens never expire: do not pass expires_at or version")
        if code == "c":
            if version is None or not 0 <= version <= _MAX_INT:
                raise ValueError("confirm tokens need the subscription's version (>= 0)")
            payload += f".{version:x}"
        elif version is not None:
            raise ValueError("only confirm tokens carry a version")
        if code != "u":
            if expires_at is None:
                raise ValueError(f"{purpose} tokens need expires_at")
            if expires_at.tzinfo is None:
                raise ValueError("expires_at must be timezone-aware")
            payload += f".{max(0, int(expires_at.timestamp())):x}"
        raw = payload.encode("ascii")
        sig = base64.urlsafe_b64encode(self._mac(0, raw))[:_SIG_CHARS].decode("ascii")
        return f"{payload}.{sig}"

    def preferences_token(
        self, subscriber_id: int, list_id: int, *, now: datetime | None = None
    ) -> str:
        """A preferences token valid for ``preferences_ttl`` from ``now``, rounded up to the
        next midnight UTC: a reader's link is the same all day, in every message of it."""
        return self.sign(
            "preferences", subscriber_id, list_id, expires_at=self._preferences_expiry(now)
        )

    def _preferences_expiry(self, now: datetime | None) -> datetime:
        """``now + preferences_ttl`` rounded up to midnight UTC. Without ``now`` (the
        engine, once per reader) the answer is kept until the moment it changes."""
        if now is not None:
            return _next_midnight(now + self.preferences_ttl)
        until, expires_at = self._expiry
        if time.time() <= until:
            return expires_at
        expires_at = _next_midnight(datetime.now(UTC) + self.preferences_ttl)
        self._expiry = ((expires_at - self.preferences_ttl).timestamp(), expires_at)
        return expires_at

    def verify(self, token: str, purpose: Purpose, *, now: datetime | None = None) -> Claims:
        """The token's claims, or TokenError saying whether it is malformed, forged,
        for another purpose, or expired."""
        parsed = self._genuine(token)
        actual = _PURPOSE[parsed.code]
        if actual != purpose:
            raise TokenError(f"token is for {actual}, not {purpose}")
        if len(parsed.extras) != _EXTRA[parsed.code]:
            # ours, but from before this purpose carried its expiry (and version): a
            # preferences or confirm link of that age counts as expired
            raise TokenError("token expired")
        expires_at = None
        if parsed.extras:
            try:
                expires_at = datetime.fromtimestamp(parsed.extras[-1], UTC)
            except (OverflowError, OSError, ValueError) as err:
                raise TokenError("malformed token") from err
            if (now or datetime.now(UTC)) >= expires_at:
                raise TokenError("token expired")
        version = parsed.extras[0] if parsed.code == "c" else None
        return Claims(
            actual,
            parsed.subscriber_id,
            parsed.list_id,
            expires_at,
            parsed.key_index,
            version,
        )

    def list_hint(self, token: str, purpose: Purpose) -> int | None:
        """The list id of a genuine token for ``purpose``, expired or not (so a page can
        offer to ask again for that list); None for anything forged or malformed."""
        try:
            parsed = self._genuine(token)
        except TokenError:
            return None
        return parsed.list_id if _PURPOSE[parsed.code] == purpose else None

    def _genuine(self, token: str) -> _Parsed:
        """Parse and check the signature, or TokenError (malformed, bad signature)."""
        if not isinstance(token, str) or len(token) > _MAX_TOKEN_LEN:
            raise TokenError("malformed token")
        m = _TOKEN.fullmatch(token)
        if m is None or m.group(1) not in _PURPOSE:
            raise TokenError("malformed token")
        code, sub_hex, list_hex, extra_text, sig_text = m.groups()
        try:
            sig = base64.urlsafe_b64decode(sig_text + "==")
        except ValueError as err:  # pragma: no cover - the regex admits only valid base64url
            raise TokenError("malformed token") from err
        extras = tuple(int(x, 16) for x in extra_text.split(".")[1:])
        if len(sig) != _SIG_BYTES or len(extras) not in _SHAPES[code]:
            raise TokenError("malformed token")
        payload = token[: m.start(5) - 1].encode("ascii")
        key_index = self._match_key(payload, sig)
        if key_index is None:
            raise TokenError("bad token signature")
        return _Parsed(code, int(sub_hex, 16), int(list_hex, 16), extras, key_index)

    def mac(self, payload: str) -> str:
        """The 22-character signature of an ASCII ``payload`` under the current key: for
        tokens that build their own payloads (tracking links, :mod:`mailer.render.tracking`).
        Give each kind of payload its own first letter, unlike ``c``, ``u`` and ``p``."""
        raw = self._mac(0, payload.encode("ascii"))
        return base64.urlsafe_b64encode(raw)[:_SIG_CHARS].decode("ascii")

    def check(self, payload: str, sig: str) -> bool:
        """True when ``sig`` is the canonical signature of ``payload`` under the current key
        or an old one (any other spelling of the same bytes is refused)."""
        if _SIG.fullmatch(sig) is None or not payload.isascii():
            return False
        raw = base64.urlsafe_b64decode(sig + "==")
        return self._match_key(payload.encode("ascii"), raw) is not None

    def _match_key(self, payload: bytes, sig: bytes) -> int | None:
        for index in range(len(self._keys)):
            if hmac.compare_digest(self._mac(index, payload), sig):
                return index
        return None


def _next_midnight(at: datetime) -> datetime:
    """``at`` if it is midnight UTC, else the midnight UTC after it."""
    at = at.astimezone(UTC)
    day = datetime(at.year, at.month, at.day, tzinfo=UTC)
    return day if day == at else day + timedelta(days=1)


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
    now: datetime | None = None,
) -> str:
    """``{base}/preferences/{token}``, valid for the signer's ``preferences_ttl``."""
    return _url(settings, "preferences", signer.preferences_token(subscriber_id, list_id, now=now))


def confirm_url(
    settings: Settings,
    signer: Signer,
    subscriber_id: int,
    list_id: int,
    *,
    version: int,
    ttl: timedelta = DEFAULT_CONFIRM_TTL,
    now: datetime | None = None,
) -> str:
    """``{base}/confirm/{token}`` for the subscription at ``version``, valid for ``ttl``."""
    expires_at = (now or datetime.now(UTC)) + ttl
    token = signer.sign("confirm", subscriber_id, list_id, expires_at=expires_at, version=version)
    return _url(settings, "confirm", token)
