"""The HTTP API on real uvicorn for the /api/v1 tests: a store with a list and readers,
an editor and an ops token, MAILER_ADMIN_TOKEN, and an issue file of our own."""

from __future__ import annotations

import ssl
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import func, select

from mailer.access import tokens
from mailer.config import Settings
from mailer.sending.models import Campaign
from mailer.web.app import create_app
from tests.conftest import Database
from tests.web_support import LiveServer, add_active, make_list

ADMIN_TOKEN = "admin-token-for-api-tests-7f3a91c2"

ISSUE = """Harbour reopens; Rail link approved
Harbour reopens after the storm
Good morning. Today is March 3, 2025.
Harbour reopens
Example Wire
The harbour reopened on Monday after a week of repairs, officials said in a statement.
https://news.example.net/harbour
Rail link approved
Sample Daily
The provincial government approved the long-delayed rail link on Tuesday evening.
https://news.example.net/rail
See you tomorrow.
"""


def issue_text(n: int) -> str:
    """Another issue (a different key) for each ``n``."""
    return ISSUE.replace("Monday", f"Monday ({n})")


READERS = ("ada@example.org", "grace@example.org", "edsger@example.org")

#: one TLS context for every test client: httpx otherwise loads the CA bundle for each new
#: Client (~30x its cost; 170 clients made test_every_route_... take over a minute). The
#: API is plain HTTP on 127.0.0.1, so the context is never used for a handshake.
TLS = ssl.create_default_context()


@dataclass
class Api:
    db: Database
    server: LiveServer
    settings: Settings
    editor: str
    ops: str

    @property
    def url(self) -> str:
        return self.server.url

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, verify=TLS)

    def as_editor(self) -> httpx.Client:
        return self.client(self.editor)

    def as_ops(self) -> httpx.Client:
        return self.client(self.ops)

    def post_issue(self, text: str = ISSUE) -> str:
        with self.as_editor() as c:
            r = c.post(
                "/api/v1/issues", content=text.encode(), headers={"Content-Type": "text/plain"}
            )
        assert r.status_code in (200, 201), r.text
        key: str = r.json()["key"]
        return key

    def worker_once(self) -> subprocess.CompletedProcess[str]:
        """`mailer worker --once` as its own process: what sends API campaigns."""
        return self.mailer("worker", "--once")

    def mailer(self, *args: str) -> subprocess.CompletedProcess[str]:
        """The `mailer` command on the same store, as its own process."""
        return subprocess.run(
            [sys.executable, "-m", "mailer", *args],
            env=self.db.env(),
            cwd=self.db.tmp,
            capture_output=True,
            text=True,
            timeout=120,
        )


@contextmanager
def running_api(db: Database, **overrides: Any) -> Iterator[Api]:
    """The app on uvicorn over ``db``: list ``brief`` (double opt-in) with three readers."""
    make_list(db.sessions, "brief")
    for address in READERS:
        add_active(db.sessions, address)
    editor = tokens.create_token(db.sessions, "pipeline", "editor")
    ops = tokens.create_token(db.sessions, "oncall", "ops")
    server = LiveServer()
    settings = db.settings(base_url=server.url, admin_token=ADMIN_TOKEN, **overrides)
    server.start(create_app(settings))
    try:
        yield Api(db, server, settings, editor, ops)
    finally:
        server.stop()


def campaign_count(db: Database) -> int:
    with db.sessions() as s:
        return s.scalar(select(func.count()).select_from(Campaign)) or 0


def all_json(r: httpx.Response) -> dict[str, Any]:
    """The JSON body of an answer (asserting it is JSON)."""
    assert r.headers["content-type"].startswith("application/json"), (r.status_code, r.text)
    body: dict[str, Any] = r.json()
    return body


def error_of(r: httpx.Response, status: int) -> str:
    """The ``error`` of a JSON error answer with ``status``."""
    assert r.status_code == status, (r.status_code, r.text)
    body = all_json(r)
    assert isinstance(body.get("error"), str) and body["error"], body
    return str(body["error"])
