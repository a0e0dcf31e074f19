"""Signed tokens: round trips, every kind of tampering, purpose, expiry and key rotation;
confirm tokens bound to a consent version, preferences tokens that always expire."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailer.config import Settings
from mailer.errors import ConfigError, TokenError
from mailer.render.tokens import (
    Claims,
    Signer,
    confirm_url,
    preferences_url,
    unsubscribe_url,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
URL_SAFE = re.compile(r"^[A-Za-z0-9._~-]+$")


@pytest.fixture
def signer() -> Signer:
    return Signer("current-key")


def test_unsubscribe_round_trip_never_expires(signer: Signer) -> None:
    token = signer.sign("unsubscribe", 123456, 7)
    assert URL_SAFE.match(token)
    assert len(token) <= 40
    far_future = NOW + timedelta(days=365 * 30)
    claims = signer.verify(token, "unsubscribe", now=far_future)
    assert claims == Claims("unsubscribe", 123456, 7, None, 0)


def _legacy(key: str, payload: str) -> str:
    """A token as signed before confirm carried a version and preferences an expiry."""
    mac = hmac.new(key.encode(), payload.encode(), hashlib.sha256).digest()[:16]
    return f"{payload}.{base64.urlsafe_b64encode(mac)[:22].decode()}"


def test_confirm_round_trip_and_expiry(signer: Signer) -> None:
    expires = NOW + timedelta(hours=1)
    token = signer.sign("confirm", 5, 9, expires_at=expires, version=3)
    claims = signer.verify(token, "confirm", now=NOW)
    assert (claims.purpose, claims.subscriber_id, claims.list_id) == ("confirm", 5, 9)
    assert claims.expires_at == expires.replace(microsecond=0)
    assert claims.version == 3
    with pytest.raises(TokenError, match="expired"):
        signer.verify(token, "confirm", now=expires + timedelta(seconds=1))


def test_confirm_version_is_signed(signer: Signer) -> None:
    token = signer.sign("confirm", 5, 9, expires_at=NOW + timedelta(hours=1), version=3)
    c, sub, lst, version, exp, sig = token.split(".")
    assert version == "3"
    with pytest.raises(TokenError, match="bad token signature"):
        signer.verify(f"{c}.{sub}.{lst}.4.{exp}.{sig}", "confirm", now=NOW)


def test_confirm_without_version_counts_as_expired() -> None:
    """A link from before confirm tokens carried the subscription's version cannot be
    bound to it: it is refused as expired (the page offers to ask again)."""
    exp = int((NOW + timedelta(days=3)).timestamp())
    legacy = _legacy("current-key", f"c.5.9.{exp:x}")
    signer = Signer("current-key")
    with pytest.raises(TokenError, match="expired"):
        signer.verify(legacy, "confirm", now=NOW)
    assert signer.list_hint(legacy, "confirm") == 9


def test_preferences_always_expire(signer: Signer) -> None:
    with pytest.raises(ValueError, match="preferences tokens need expires_at"):
        signer.sign("preferences", 1, 2)
    fresh = signer.preferences_token(1, 2, now=NOW)  # NOW is 12:00 UTC
    claims = signer.verify(fresh, "preferences", now=NOW + timedelta(days=30))
    midnight = datetime(2026, 4, 1, tzinfo=UTC)  # 30 days on, rounded up to midnight
    assert claims.expires_at == midnight
    assert signer.preferences_token(1, 2, now=NOW + timedelta(hours=11)) == fresh
    with pytest.raises(TokenError, match="expired"):
        signer.verify(fresh, "preferences", now=midnight)
    short = signer.sign("preferences", 1, 2, expires_at=NOW - timedelta(seconds=1))
    with pytest.raises(TokenError, match="expired"):
        signer.verify(short, "preferences", now=NOW)


def test_preferences_link_that_never_expired_now_has() -> None:
    """Links signed when preferences tokens had no expiry are genuine, and expired."""
    legacy = _legacy("current-key", "p.1.2")
    signer = Signer("current-key")
    with pytest.raises(TokenError, match="expired"):
        signer.verify(legacy, "preferences", now=NOW)
    assert signer.list_hint(legacy, "preferences") == 2
    assert signer.list_hint(legacy, "unsubscribe") is None
    assert Signer("other-key").list_hint(legacy, "preferences") is None


def test_preferences_ttl_follows_the_setting() -> None:
    signer = Signer.from_settings(Settings(secret_key="k", preferences_ttl=86400.0))
    token = signer.preferences_token(1, 2, now=NOW)
    expires = signer.verify(token, "preferences", now=NOW).expires_at
    assert expires == datetime(2026, 3, 3, tzinfo=UTC)


def test_sign_refuses_inconsistent_requests(signer: Signer) -> None:
    with pytest.raises(ValueError, match="confirm tokens need expires_at"):
        signer.sign("confirm", 1, 1, version=0)
    with pytest.raises(ValueError, match="version"):
        signer.sign("confirm", 1, 1, expires_at=NOW)
    with pytest.raises(ValueError, match="only confirm tokens carry a version"):
        signer.sign("preferences", 1, 1, expires_at=NOW, version=1)
    with pytest.raises(ValueError, match="never expire"):
        signer.sign("unsubscribe", 1, 1, expires_at=NOW)
    with pytest.raises(ValueError, match="timezone-aware"):
        signer.sign("preferences", 1, 1, expires_at=datetime(2030, 1, 1))
    with pytest.raises(ValueError, match="unknown token purpose"):
        signer.sign("delete", 1, 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="non-negative"):
        signer.sign("unsubscribe", -1, 1)
    with pytest.raises(ValueError, match="empty"):
        Signer("")


def test_wrong_purpose_is_named(signer: Signer) -> None:
    token = signer.sign("unsubscribe", 1, 2)
    with pytest.raises(TokenError, match="token is for unsubscribe, not confirm"):
        signer.verify(token, "confirm", now=NOW)
    confirm = signer.sign("confirm", 1, 2, expires_at=NOW + timedelta(days=1), version=0)
    with pytest.raises(TokenError, match="token is for confirm, not unsubscribe"):
        signer.verify(confirm, "unsubscribe", now=NOW)


def _tamper_part(token: str, index: int) -> str:
    parts = token.split(".")
    part = parts[index]
    if index == 0:
        replacement = "p" if part != "p" else "u"
    elif index == len(parts) - 1:
        replacement = ("B" if part[0] != "B" else "C") + part[1:]
    else:
        replacement = format(int(part, 16) + 1, "x")
    parts[index] = replacement
    return ".".join(parts)


@pytest.mark.parametrize("index", [0, 1, 2, 3, 4])
def test_tampering_any_part_breaks_the_signature(signer: Signer, index: int) -> None:
    token = signer.sign("preferences", 42, 3, expires_at=NOW + timedelta(days=2))
    assert token.count(".") == 4
    forged = _tamper_part(token, index)
    assert forged != token
    with pytest.raises(TokenError, match="bad token signature"):
        signer.verify(forged, "preferences", now=NOW)


def test_dropping_the_expiry_breaks_the_signature(signer: Signer) -> None:
    token = signer.sign("preferences", 42, 3, expires_at=NOW + timedelta(days=2))
    p, s, lst, _exp, sig = token.split(".")
    with pytest.raises(TokenError, match="bad token signature"):
        signer.verify(f"{p}.{s}.{lst}.{sig}", "preferences", now=NOW)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "u",
        "u.1.2",
        "x.1.2.AAAAAAAAAAAAAAAAAAAAAA",
        "u.1.2.AAAA",
        "u.1.2.AAAAAAAAAAAAAAAAAAAAA=",
        "u.G.2.AAAAAAAAAAAAAAAAAAAAAA",
        "u.1.2.3.4.AAAAAAAAAAAAAAAAAAAAAA",
        "u.11111111111111111.2.AAAAAAAAAAAAAAAAAAAAAA",
        "u 1 2 AAAAAAAAAAAAAAAAAAAAAA",
        "u.1.2.AAAAAAAAAAAAAAAAAAAAAA\n",
        "u.1.2.AAAAAAAAAAAAAAAAAAAAAB",
        "a" * 500,
    ],
)
def test_malformed_tokens_are_called_malformed(signer: Signer, bad: str) -> None:
    with pytest.raises(TokenError, match="malformed token"):
        signer.verify(bad, "unsubscribe", now=NOW)


def test_rotation_old_key_still_verifies_and_new_tokens_use_new_key() -> None:
    old = Signer("old-key")
    rotated = Signer("new-key", ("old-key",))
    legacy = old.sign("unsubscribe", 10, 1)
    claims = rotated.verify(legacy, "unsubscribe", now=NOW)
    assert claims.key_index == 1
    assert claims.subscriber_id == 10
    fresh = rotated.sign("unsubscribe", 10, 1)
    assert fresh != legacy
    assert rotated.verify(fresh, "unsubscribe", now=NOW).key_index == 0
    # A signer that dropped the old key no longer accepts the legacy token.
    with pytest.raises(TokenError, match="bad token signature"):
        Signer("new-key").verify(legacy, "unsubscribe", now=NOW)
    # And the old signer does not accept tokens made with the new key.
    with pytest.raises(TokenError, match="bad token signature"):
        old.verify(fresh, "unsubscribe", now=NOW)


def test_token_from_another_key_is_rejected(signer: Signer) -> None:
    foreign = Signer("someone-else").sign("unsubscribe", 1, 2)
    with pytest.raises(TokenError, match="bad token signature"):
        signer.verify(foreign, "unsubscribe", now=NOW)


def test_from_settings_and_url_helpers() -> None:
    settings = Settings(
        secret_key="k1", old_secret_keys=("k0",), base_url="https://brief.example.org/"
    )
    signer = Signer.from_settings(settings)
    url = unsubscribe_url(settings, signer, 77, 3)
    assert url.startswith("https://brief.example.org/unsubscribe/")
    token = url.rsplit("/", 1)[1]
    assert signer.verify(token, "unsubscribe", now=NOW).subscriber_id == 77

    purl = preferences_url(settings, signer, 77, 3)
    assert purl.startswith("https://brief.example.org/preferences/")
    assert signer.verify(purl.rsplit("/", 1)[1], "preferences").list_id == 3

    curl = confirm_url(settings, signer, 77, 3, version=1, ttl=timedelta(hours=2), now=NOW)
    assert curl.startswith("https://brief.example.org/confirm/")
    ctoken = curl.rsplit("/", 1)[1]
    assert signer.verify(ctoken, "confirm", now=NOW + timedelta(hours=1)).subscriber_id == 77
    with pytest.raises(TokenError, match="expired"):
        signer.verify(ctoken, "confirm", now=NOW + timedelta(hours=3))

    legacy = Signer("k0").sign("unsubscribe", 77, 3)
    assert signer.verify(legacy, "unsubscribe").key_index == 1


def test_production_without_key_refuses_to_sign() -> None:
    with pytest.raises(ConfigError, match="MAILER_SECRET_KEY"):
        Signer.from_settings(Settings(env="production"))


@given(
    purpose=st.sampled_from(["unsubscribe", "preferences"]),
    subscriber_id=st.integers(0, 2**63 - 1),
    list_id=st.integers(0, 2**63 - 1),
)
def test_round_trip_any_ids(purpose: str, subscriber_id: int, list_id: int) -> None:
    signer = Signer("prop-key")
    if purpose == "preferences":
        token = signer.preferences_token(subscriber_id, list_id, now=NOW)
    else:
        token = signer.sign("unsubscribe", subscriber_id, list_id)
    assert URL_SAFE.match(token) and len(token) <= 100
    claims = signer.verify(token, purpose, now=NOW)  # type: ignore[arg-type]
    assert (claims.subscriber_id, claims.list_id) == (subscriber_id, list_id)


def test_the_engines_preferences_expiry_moves_at_the_moment_it_changes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without ``now`` (the engine, per reader) the expiry is kept between calls, but never
    past the instant ``now + ttl`` crosses the next midnight: a token made a second later
    expires a day later, as one made with ``now`` does."""
    import time

    import mailer.render.tokens as tokens

    clock = [datetime(2026, 3, 1, 23, 59, 59, tzinfo=UTC)]

    class Clock(datetime):
        @classmethod
        def now(cls, tz: object = None) -> datetime:  # type: ignore[override]
            return clock[0]

    monkeypatch.setattr(tokens, "datetime", Clock)
    monkeypatch.setattr(time, "time", lambda: clock[0].timestamp())
    signer = Signer("k" * 32, preferences_ttl=timedelta(days=30))
    for at in (
        datetime(2026, 3, 1, 23, 59, 59, tzinfo=UTC),
        datetime(2026, 3, 1, 23, 59, 59, 500_000, tzinfo=UTC),  # kept: the same answer
        datetime(2026, 3, 2, 0, 0, 1, tzinfo=UTC),  # past the turn: a day later
        datetime(2026, 3, 2, 12, 0, tzinfo=UTC),
    ):
        clock[0] = at
        token = signer.preferences_token(7, 3)
        assert token == signer.preferences_token(7, 3, now=at)
        claims = signer.verify(token, "preferences", now=at)
        assert claims.expires_at == tokens._next_midnight(at + timedelta(days=30))
