"""Small parts of the reader web on their own: rate limiter, CSRF tokens, URLs, settings,
error mapping, the confirmation mail."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime
from pathlib import Path

import pytest
from starlette.requests import Request

from mailer.config import Settings
from mailer.errors import (
    ConfigError,
    ConflictError,
    FatalSendError,
    InputError,
    InvalidAddressError,
    IssueParseError,
    MailerError,
    NotFoundError,
    RenderError,
    SuppressedError,
    TokenError,
)
from mailer.urls import archive_key, archive_url, page_url, subscribe_url
from mailer.web.confirm_mail import ConfirmationMail, build_message, send_confirmation
from mailer.web.csrf import CsrfError, CsrfGuard
from mailer.web.errors import status_for
from mailer.web.forms import FieldError, clean_name
from mailer.web.pages import mask_email
from mailer.web.ratelimit import SlidingWindow

KEY = "0f" * 32


def test_sliding_window_counts_within_the_window_only() -> None:
    w = SlidingWindow(3, 60.0)
    assert [w.hit("ip", t) for t in (0.0, 1.0, 2.0)] == [None, None, None]
    retry = w.hit("ip", 3.0)
    assert retry == pytest.approx(57.0)
    assert w.hit("ip", 59.9) is not None  # refused hits are not counted ...
    assert w.hit("ip", 60.5) is None  # ... so the first hit's expiry frees a slot
    assert w.hit("other", 3.0) is None
    assert SlidingWindow(0, 60.0).hit("ip", 0.0) is None  # 0 = no limit


def test_sliding_window_memory_is_bounded() -> None:
    w = SlidingWindow(2, 10.0, max_keys=100)
    for i in range(1000):
        w.hit(f"k{i}", float(i) / 1000)
    assert len(w) <= 100
    for i in range(1000):
        w.hit(f"late{i}", 100.0 + i)  # the early keys are stale by now
    assert len(w) <= 100
    with pytest.raises(ValueError):
        SlidingWindow(-1, 10.0)


def _request(cookie: str | None = None) -> Request:
    headers = [(b"cookie", f"mailer_csrf={cookie}".encode())] if cookie else []
    return Request({"type": "http", "headers": headers, "method": "GET", "path": "/"})


def test_csrf_tokens_bind_path_browser_and_time() -> None:
    guard = CsrfGuard("secret", secure=False, max_age=3600)
    browser, new = guard.ensure_browser_id(_request())
    assert new and len(browser) == 32
    assert guard.ensure_browser_id(_request(browser)) == (browser, False)
    assert guard.browser_id(_request("short")) is None
    token = guard.issue("/subscribe/a", 1000.0, browser)
    guard.check(token, "/subscribe/a", 1500.0, browser)
    bad = [
        (token, "/subscribe/b", 1500.0, browser),  # another form
        (token, "/subscribe/a", 1500.0, "x" * 32),  # another browser
        (token, "/subscribe/a", 1500.0, None),  # no cookie
        (token, "/subscribe/a", 5000.0, browser),  # too old
        ("", "/subscribe/a", 1500.0, browser),
        (None, "/subscribe/a", 1500.0, browser),
        (token + "x", "/subscribe/a", 1500.0, browser),
        (
            CsrfGuard("other", secure=False).issue("/subscribe/a", 1000.0, browser),
            "/subscribe/a",
            1500.0,
            browser,
        ),
    ]
    for args in bad:
        with pytest.raises(CsrfError) as info:
            guard.check(*args)
        assert info.value.status_code == 403
    assert CsrfGuard("s", secure=True).cookie_name == "__Host-mailer_csrf"


def test_archive_urls() -> None:
    s = Settings(base_url="https://news.example.org/")
    assert archive_url(s, "brief", KEY) == "https://news.example.org/archive/brief/0f0f0f0f0f0f0f0f"
    assert archive_key(KEY.upper()) == "0f" * 8
    for bad in ("xyz", "0f" * 7, "0f" * 33, ""):
        with pytest.raises(ValueError, match="hex"):
            archive_key(bad)
    assert subscribe_url(s, "brief") == "https://news.example.org/subscribe/brief"
    assert page_url(s, "/healthz") == "https://news.example.org/healthz"
    for bad in ("healthz", "//evil.example/x"):
        with pytest.raises(ValueError):
            page_url(s, bad)


def test_web_settings_from_the_environment() -> None:
    s = Settings.from_env(
        {
            "MAILER_CONFIRM_TTL": "2d",
            "MAILER_SUBSCRIBE_IP_LIMIT": "7",
            "MAILER_SUBSCRIBE_ADDRESS_LIMIT": "0",
            "MAILER_SUBSCRIBE_WINDOW": "15m",
            "MAILER_MAX_BODY_BYTES": "65536",
        }
    )
    assert (s.confirm_ttl, s.subscribe_ip_limit, s.subscribe_address_limit) == (172800.0, 7, 0)
    assert (s.subscribe_window, s.max_body_bytes) == (900.0, 65536)
    for name, value in [
        ("MAILER_CONFIRM_TTL", "soon"),
        ("MAILER_CONFIRM_TTL", "0"),
        ("MAILER_SUBSCRIBE_IP_LIMIT", "-1"),
        ("MAILER_SUBSCRIBE_WINDOW", "0s"),
        ("MAILER_MAX_BODY_BYTES", "10"),
    ]:
        with pytest.raises(ConfigError, match=name):
            Settings.from_env({name: value})


def test_error_mapping() -> None:
    cases: list[tuple[MailerError, int]] = [
        (NotFoundError("x"), 404),
        (InvalidAddressError("x"), 422),
        (SuppressedError("x"), 409),
        (ConflictError("x"), 409),
        (InputError("x"), 400),
        (IssueParseError("x"), 400),
        (TokenError("x"), 400),
        (FatalSendError("x"), 503),
        (ConfigError("x"), 503),
        (RenderError("x"), 500),
    ]
    assert [status_for(e) for e, _ in cases] == [code for _, code in cases]


def test_names_and_masks() -> None:
    assert clean_name("  Ada   Lovelace ") == "Ada Lovelace"
    assert clean_name("   ") is None
    assert clean_name("👩‍💻 Dev") == "👩‍💻 Dev"  # joiners are fine
    for bad in ("x" * 201, "a\u202eb", "a\x00b"):
        with pytest.raises(FieldError):
            clean_name(bad)
    assert mask_email("reader@example.com") == "r•••@example.com"
    assert mask_email("nonsense") == "•••"


def _mail() -> ConfirmationMail:
    return ConfirmationMail(
        to="new@example.com",
        subscriber_id=1,
        list_name="The Test Brief",
        from_address="The Test Brief <news@example.org>",
        reply_to="editor@example.org",
        confirm_url="https://news.example.org/confirm/c.1.2.abc.DEF&x=<y>",
        expires_at=datetime(2025, 3, 10, 14, 5, tzinfo=UTC),
    )


def test_confirmation_mail_parts_and_headers() -> None:
    settings = Settings(postal_address="1 Example Street\nSpringfield")
    campaign, outgoing = build_message(_mail(), settings)
    msg = email.message_from_bytes(outgoing.raw, policy=email.policy.default)
    assert b"\r\n" in outgoing.raw and b"\n" not in outgoing.raw.replace(b"\r\n", b"")
    assert msg["To"] == "new@example.com"
    assert msg["Reply-To"] == "editor@example.org"
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["Message-ID"].endswith("@example.org>")
    text = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "https://news.example.org/confirm/c.1.2.abc.DEF&x=<y>" in text
    assert 'href="https://news.example.org/confirm/c.1.2.abc.DEF&amp;x=&lt;y&gt;"' in html
    assert "Monday, March 10, 2025 at 14:05 UTC" in text
    assert "Springfield" in text and "Springfield" in html
    assert '<html lang="en"' in html
    assert all(len(line) <= 78 for line in text.splitlines())
    # what a templating transport (SES bulk) gets is the same content
    crlf = (html.replace("\r\n", "\n"), text.replace("\r\n", "\n"))
    assert (campaign.subject, campaign.html, campaign.text) == (msg["Subject"], *crlf)
    assert campaign.campaign_id == 0 and outgoing.delivery_id == 0


def test_confirmation_mail_through_the_outbox(tmp_path: Path) -> None:
    from mailer.transports.outbox import OutboxTransport

    message_id = send_confirmation(_mail(), Settings(), OutboxTransport(tmp_path))
    [path] = (tmp_path / "0").glob("*.eml")
    assert path.name == message_id
