"""The app on real uvicorn: a mailbox provider's RFC 8058 one-click unsubscribe, taken from
a message the send engine really sent, and `mailer serve` itself."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from mailer.config import Settings
from mailer.render.tokens import Signer
from mailer.urls import archive_url
from mailer.web.access_log import REDACTED
from mailer.web.server import server_config
from subscribers import store
from tests.conftest import Database
from tests.plugins.mailer_server import mailer_serve
from tests.web_support import add_active, live_server, make_list, read_eml, sample_issue, send_issue

ROOT = Path(__file__).resolve().parents[1]


def _status(db: Database, address: str) -> str:
    with db.sessions() as s:
        sub = store.get_subscriber(s, address)
        return str(sub.subscriptions[0].status)


def test_mailbox_provider_one_click_from_a_sent_message(db: Database) -> None:
    make_list(db.sessions, "brief")
    readers = ["ann@example.com", "ben@example.com"]
    for address in readers:
        add_active(db.sessions, address)
    with live_server(lambda url: db.settings(base_url=url)) as (server, settings):
        issue = sample_issue(1)
        cid = send_issue(db.sessions, settings, issue)
        messages = {
            m["To"]: m for m in map(read_eml, (settings.outbox_dir / str(cid)).glob("*.eml"))
        }
        assert sorted(messages) == readers
        for n, address in enumerate(readers):
            msg = messages[address]
            # what a provider reads: the two headers, nothing else
            assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
            m = re.fullmatch(r"<(https?://[^>]+)>", msg["List-Unsubscribe"])
            assert m, msg["List-Unsubscribe"]
            url = m.group(1)
            assert url.startswith(f"{server.url}/unsubscribe/")
            with httpx.Client(headers={"user-agent": "ProviderBot/1.0"}) as provider:
                for _ in range(2):  # repeated: still 200
                    if n == 0:
                        r = provider.post(
                            url,
                            content=b"List-Unsubscribe=One-Click",
                            headers={"content-type": "application/x-www-form-urlencoded"},
                        )
                    else:
                        r = provider.post(url, files={"List-Unsubscribe": (None, "One-Click")})
                    assert r.status_code == 200, r.text
                    assert len(r.content) < 64
                    assert not provider.cookies
            assert _status(db, address) == "unsubscribed"
        # the mail's "view in browser" link works on the real server too
        view = archive_url(settings, "brief", issue.key())
        assert httpx.get(view).status_code == 200


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
def test_mailer_serve_runs_uvicorn(db: Database) -> None:
    make_list(db.sessions, "brief")
    port = _free_port()
    env = db.env(MAILER_BASE_URL=f"http://127.0.0.1:{port}")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mailer", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.2)
        assert r.status_code == 200 and r.json() == {"status": "ok"}
        page = httpx.get(f"http://127.0.0.1:{port}/subscribe/brief")
        assert page.status_code == 200
        assert "server" not in page.headers  # no version banner
        assert f'action="http://127.0.0.1:{port}/subscribe/brief"' in page.text
    finally:
        proc.terminate()
        proc.wait(timeout=15)


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
def test_mailer_serve_logs_no_token_or_address(db: Database) -> None:
    """The real log lines of a running `mailer serve`: tokens in paths and addresses in query
    strings are redacted (issue 13, item 8); and its request heads are timed (item 12)."""
    mlist_id = make_list(db.sessions, "brief")
    sid = add_active(db.sessions, "ann@example.com")
    signer = Signer.from_settings(db.settings())
    later = datetime.now(UTC) + timedelta(days=3)
    tokens = [
        signer.sign("unsubscribe", sid, mlist_id),
        signer.sign("confirm", sid, mlist_id, version=0, expires_at=later),
        signer.sign("preferences", sid, mlist_id, expires_at=later),
    ]
    paths = [
        f"/unsubscribe/{tokens[0]}",
        f"/confirm/{tokens[1]}",
        f"/preferences/{tokens[2]}",
        f"/unsubscribe/{tokens[0]}?utm_source=ann@example.com",
        "/subscribe/brief?email=ann%40example.com&name=Ann",
        "/subscribe/brief?email=ann@example.com",
        "/subscribe/ann@example.com",
    ]
    env = db.env(MAILER_HEADER_TIMEOUT="1s")
    with mailer_serve(env, db.tmp) as base:
        port = int(base.rsplit(":", 1)[1])
        with httpx.Client(base_url=base) as client:
            for path in paths:
                assert client.get(path).status_code < 500, path
        # the head limit is 1 s here, not the default 10 s: read from the environment into
        # the uvicorn configuration `mailer serve` runs (checked there, not by a stopwatch)
        settings = Settings.from_env(env)
        config = server_config(None, settings, host="127.0.0.1", port=port)
        assert getattr(config.http, "header_timeout", None) == 1.0 < Settings().header_timeout
        with socket.create_connection(("127.0.0.1", port), timeout=60) as slow:
            started = time.monotonic()
            slow.sendall(b"GET /subscribe/brief HTTP/1.1\r\nHost: x\r\n")  # never finished
            assert slow.recv(100).startswith(b"HTTP/1.1 408 ")
            assert time.monotonic() - started >= 0.99  # load can only make it later
        log_path = db.tmp / f"serve-{port}.log"
    log = log_path.read_text()
    assert f'"GET /unsubscribe/{REDACTED} HTTP/1.1" 200' in log  # access log is on, redacted
    assert f'"GET /subscribe/brief?{REDACTED} HTTP/1.1" 200' in log
    for secret in [*tokens, "ann@example.com", "ann%40example.com", "email=", "utm_source"]:
        assert secret not in log, secret
