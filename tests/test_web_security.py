"""Security properties of the reader web: headers, body limits, no open redirects, errors
that never show a traceback, production refusing to start without a key."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from mailer.config import Settings
from mailer.errors import ConfigError
from mailer.web.app import create_app
from tests.conftest import Database
from tests.web_support import BASE, AppClient, Web, add_active, csrf_of

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def web(db: Database) -> Iterator[Web]:
    w = Web(db)
    yield w
    w.close()


def _pages(web: Web) -> list[str]:
    sid = add_active(web.db.sessions, "h@example.com")
    unsub = web.signer.sign("unsubscribe", sid, web.brief_id)
    prefs = web.signer.preferences_token(sid, web.brief_id, now=web.clock.now)
    return [
        "/subscribe",
        "/subscribe/brief",
        f"/unsubscribe/{unsub}",
        f"/preferences/{prefs}",
        "/confirm/nonsense",
        "/archive",
        "/archive/brief",
        "/no/such/page",
    ]


def test_security_headers_on_every_page_and_no_script(web: Web) -> None:
    for path in _pages(web):
        r = web.client.get(path)
        assert r.status_code in (200, 400, 404), path
        csp = r.headers["content-security-policy"]
        assert "default-src 'none'" in csp  # so no script-src: no script at all ...
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        # ... except the subscribe form's one script of ours: the browser's time zone
        tz_script = f'<script src="{BASE}/static/tz.js" defer></script>'
        text = r.text
        if path == "/subscribe/brief":
            assert f"script-src 'self' {BASE}" in csp and text.count(tz_script) == 1
            text = text.replace(tz_script, "")
        else:
            assert "script-src" not in csp, path
        assert "frame-ancestors 'none'" in csp and "base-uri 'none'" in csp
        assert "form-action 'self' http://testserver" in csp
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "no-referrer"
        assert r.headers["x-frame-options"] == "DENY"
        assert "strict-transport-security" not in r.headers  # http base URL
        assert "<script" not in text.lower(), path
        assert ' style="' not in text, path  # CSP allows no inline styles on our pages
        assert "Traceback" not in text
    css = web.client.get("/static/site.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert web.client.get("/static/../mailer/config.py").status_code == 404


def test_https_base_url_adds_hsts_and_a_host_only_secure_cookie(db: Database) -> None:
    app = create_app(db.settings(base_url="https://news.example.org"))
    client = AppClient(app, base_url="https://news.example.org")
    try:
        from tests.web_support import make_list

        make_list(db.sessions, "brief")
        r = client.get("/subscribe/brief")
        assert r.headers["strict-transport-security"].startswith("max-age=")
        cookie = r.headers["set-cookie"]
        assert cookie.startswith("__Host-mailer_csrf=")
        assert "Secure" in cookie and "HttpOnly" in cookie and "Path=/" in cookie
        assert "Domain" not in cookie
        assert 'action="https://news.example.org/subscribe/brief"' in r.text
    finally:
        client.close()
        app.state.web.close()


def test_oversized_bodies_get_413(web: Web) -> None:
    page = web.client.get("/subscribe/brief")
    big = {"csrf_token": csrf_of(page.text), "email": "a@example.com", "name": "x" * 20_000}
    r = web.client.post("/subscribe/brief", data=big)
    assert r.status_code == 413
    assert r.headers["x-content-type-options"] == "nosniff"

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted while read
        for _ in range(40):
            yield b"List-Unsubscribe=One-Click&pad=" + b"x" * 1000

    r = web.client.post(
        "/unsubscribe/u.1.1.AAAAAAAAAAAAAAAAAAAAAA",
        content=chunks(),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 413
    # elsewhere the app-wide limit (MAILER_MAX_BODY_BYTES) applies
    r = web.client.post("/healthz", content=b"x" * (web.settings.max_body_bytes + 1))
    assert r.status_code == 413
    assert web.client.post("/healthz", content=b"x" * 20_000).status_code == 405


@pytest.mark.parametrize(
    "path",
    [
        "//evil.example/",
        "/subscribe/brief/",
        "/subscribe/brief?next=https://evil.example/",
        "/subscribe/brief?redirect=//evil.example",
        "/archive/brief/?url=https://evil.example",
        "/%2F%2Fevil.example",
        "/%5Cevil.example",
        "/confirm/x?return_to=https://evil.example",
        "/unsubscribe/x/",
        "/archive/brief/..%2F..%2Fevil.example",
    ],
)
def test_no_open_redirects(web: Web, path: str) -> None:
    for method in ("GET", "POST"):
        r = web.client.request(method, path, headers={"host": "evil.example"})
        assert not 300 <= r.status_code < 400, (method, path, r.status_code)
        assert "location" not in r.headers
        assert "evil.example" not in r.text


def test_the_host_header_is_never_reflected(web: Web) -> None:
    r = web.client.get("/subscribe/brief", headers={"host": "attacker.example"})
    assert r.status_code == 200
    assert "attacker.example" not in r.text
    assert 'action="http://testserver/subscribe/brief"' in r.text


def test_store_failures_are_a_friendly_503_like_healthz(tmp_path: Path) -> None:
    """A store that cannot be opened is the service being unavailable (issue 13, item 9:
    this was a 500 while /healthz said 503): 503 + Retry-After, a friendly page or JSON."""
    settings = Settings(
        database_url=f"sqlite:///{tmp_path}/missing/dir/store.db",
        secret_key="k",
        env="test",
        base_url=BASE,
        outbox_dir=tmp_path / "outbox",
    )
    app = create_app(settings)
    client = AppClient(app, base_url=BASE, raise_app_exceptions=False)
    try:
        r = client.get("/subscribe/brief")
        assert r.status_code == 503 and r.headers["retry-after"] == "30"
        assert "Temporarily unavailable" in r.text
        assert "Traceback" not in r.text and "sqlite" not in r.text.lower()
        j = client.get("/subscribe/brief", headers={"accept": "application/json"})
        assert j.status_code == 503 and j.json()["status"] == 503
        h = client.get("/healthz")
        assert h.status_code == 503 and h.json()["status"] == "unavailable"
    finally:
        client.close()
        app.state.web.close()


def test_errors_are_pages_or_json(web: Web) -> None:
    r = web.client.get("/subscribe/nope")
    assert r.status_code == 404 and "Page not found" in r.text
    assert "brief" not in r.text  # no list enumeration in the error
    j = web.client.get("/subscribe/nope", headers={"accept": "application/json"})
    assert j.status_code == 404 and j.json()["status"] == 404
    assert web.client.request("PUT", "/subscribe/brief").status_code == 405
    assert web.client.get("/healthz").json() == {"status": "ok"}


def test_production_without_a_secret_key_refuses_to_start(tmp_path: Path) -> None:
    settings = Settings(env="production", secret_key="", database_url=f"sqlite:///{tmp_path}/x.db")
    with pytest.raises(ConfigError, match="MAILER_SECRET_KEY"):
        create_app(settings)
    env = {
        "PATH": "/usr/bin:/bin",
        "MAILER_ENV": "production",
        "MAILER_DATABASE_URL": f"sqlite:///{tmp_path}/x.db",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "mailer", "serve", "--port", "1"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "MAILER_SECRET_KEY" in lines[0]
    assert "Traceback" not in proc.stderr
