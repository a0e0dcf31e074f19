"""Helpers for the reader-web tests: an in-process client, a real uvicorn server, lists,
a real campaign sent through the outbox, and reading .eml files back.

* :class:`AppClient` drives the ASGI app in-process with httpx (no server), synchronously,
  keeping cookies like a browser, from a chosen client IP.
* :class:`LiveServer` runs the app on real uvicorn on 127.0.0.1 and a free port, in a thread,
  as ``mailer serve`` configures it; the socket is bound first so ``MAILER_BASE_URL`` can
  name the port.
* :func:`send_issue` renders an issue and sends it to a list with the real send engine and
  the outbox transport, so tests read messages exactly as readers would get them.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import re
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import anyio.from_thread
import httpx
from fastapi import FastAPI
from sqlalchemy.orm import Session, sessionmaker

from mailer.config import Settings
from mailer.issue.model import Issue, Item
from mailer.render.compiler import Branding, render_issue
from mailer.sending import campaigns as camp
from mailer.sending.engine import Engine
from mailer.transports import make_transport
from mailer.urls import archive_index_url, archive_url, subscribe_url
from mailer.web.app import create_app
from subscribers import store
from tests.support.web_edges import ThreadServer

CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    m = CSRF_RE.search(html)
    assert m, "no CSRF token in the page"
    return m.group(1)


class AppClient:
    """httpx against the ASGI app in-process; blocking calls on a portal's event loop."""

    def __init__(
        self,
        app: FastAPI,
        *,
        base_url: str,
        ip: str = "203.0.113.10",
        raise_app_exceptions: bool = True,
    ) -> None:
        self.app = app
        self.raise_app_exceptions = raise_app_exceptions
        self.base_url = base_url
        self._portal_cm: AbstractContextManager[Any] = anyio.from_thread.start_blocking_portal()
        self.portal = self._portal_cm.__enter__()
        self.cookies = httpx.Cookies()
        self.ip = ip

    def request(self, method: str, url: str, *, ip: str | None = None, **kw: Any) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(
                app=self.app,
                client=(ip or self.ip, 40000),
                raise_app_exceptions=self.raise_app_exceptions,
            )
            async with httpx.AsyncClient(
                transport=transport, base_url=self.base_url, cookies=self.cookies
            ) as client:
                response = await client.request(method, url, **kw)
                self.cookies.update(client.cookies)
                return response

        return self.portal.call(go)

    def get(self, url: str, **kw: Any) -> httpx.Response:
        return self.request("GET", url, **kw)

    def post(self, url: str, **kw: Any) -> httpx.Response:
        return self.request("POST", url, **kw)

    def close(self) -> None:
        self._portal_cm.__exit__(None, None, None)


class LiveServer(ThreadServer):
    """The app on real uvicorn (127.0.0.1, free port) in a background thread, with ``mailer
    serve``'s own configuration: :class:`tests.support.web_edges.ThreadServer`, taking the
    settings from the app when none are given."""

    def start(self, app: FastAPI, settings: Settings | None = None) -> None:
        super().start(app, settings if settings is not None else app.state.web.settings)


@contextmanager
def live_server(settings_for: Any, **app_kwargs: Any) -> Iterator[tuple[LiveServer, Settings]]:
    """``settings_for(base_url)`` -> Settings; yields the running server and its settings."""
    server = LiveServer()
    settings = settings_for(server.url)
    server.start(create_app(settings, **app_kwargs), settings)
    try:
        yield server, settings
    finally:
        server.stop()


def make_list(
    sessions: sessionmaker[Session],
    slug: str = "brief",
    *,
    name: str = "The Test Brief",
    double_opt_in: bool = True,
) -> int:
    with sessions.begin() as s:
        return store.create_list(
            s,
            slug,
            name=name,
            from_address=f"{name} <news@example.org>",
            double_opt_in=double_opt_in,
        ).id


def add_active(sessions: sessionmaker[Session], address: str, slug: str = "brief") -> int:
    with sessions.begin() as s:
        mlist = store.get_list(s, slug)
        return store.subscribe(s, address, mlist, confirmed=True, name="Ada").subscriber.id


def sample_issue(n: int = 1, day: dt.date | None = None) -> Issue:
    """A small issue of our own; ``n`` makes each one different."""
    return Issue(
        subject=f"Test issue {n}: harbour reopens",
        preheader=f"Preheader of issue {n}",
        date=day or dt.date(2025, 3, n),
        intro=(f"Good morning. This is issue number {n}.",),
        items=(
            Item(
                title=f"Story {n} <with markup>",
                source="Example Wire",
                paragraphs=(f"Summary of story {n} & more.",),
                url=f"https://news.example.net/story/{n}",
            ),
        ),
        closing=("See you tomorrow.",),
    )


def send_issue(
    sessions: sessionmaker[Session],
    settings: Settings,
    issue: Issue,
    slug: str = "brief",
    *,
    start: bool = True,
) -> int:
    """Render and create the campaign; with ``start``, send it through the outbox."""
    with sessions.begin() as s:
        mlist = store.get_list(s, slug)
        view = archive_url(settings, slug, issue.key())
        branding = Branding(
            newsletter_name=mlist.name,
            base_url=settings.public_base,
            postal_address="1 Example Street",
            archive_url=view,
            subscribe_url=subscribe_url(settings, slug),
            archive_index_url=archive_index_url(settings, slug),
        )
        rendered = render_issue(issue, branding)
        campaign, _ = camp.create_campaign(s, mlist, issue, rendered)
        cid = campaign.id
    if start:
        with Engine(settings, sessions, make_transport(settings)) as engine:
            engine.run(cid)
    return cid


def read_eml(path: Path) -> EmailMessage:
    msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def wait_for_mail(folder: Path, count: int = 1, timeout: float = 15.0) -> list[EmailMessage]:
    """The .eml files in ``folder`` (sorted by time) once there are ``count`` of them."""
    deadline = time.monotonic() + timeout
    while True:
        files = sorted(folder.glob("*.eml"), key=lambda p: p.stat().st_mtime_ns)
        if len(files) >= count:
            return [read_eml(p) for p in files]
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(files)} message(s) in {folder}, expected {count}")
        time.sleep(0.05)


def confirmation_mails(settings: Settings) -> list[EmailMessage]:
    folder = settings.outbox_dir / "0"
    files = sorted(folder.glob("*.eml"), key=lambda p: p.stat().st_mtime_ns)
    return [read_eml(p) for p in files]


def text_body(msg: EmailMessage) -> str:
    part = msg.get_body(("plain",))
    assert part is not None
    content: str = part.get_content()
    return content


def html_body(msg: EmailMessage) -> str:
    part = msg.get_body(("html",))
    assert part is not None
    content: str = part.get_content()
    return content


def link_in(text: str, path: str) -> str:
    """The first absolute link to ``/{path}/...`` in ``text``."""
    m = re.search(rf"https?://[^\s<>\"']+/{path}/[A-Za-z0-9._-]+", text)
    assert m, f"no /{path}/ link in the message"
    return m.group(0)


# -- fixtures ---------------------------------------------------------------------------------

BASE = "http://testserver"


class Clock:
    """A settable clock for the app (token expiry, rate-limit windows, CSRF age)."""

    def __init__(self) -> None:
        self.now = dt.datetime.now(dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += dt.timedelta(**delta)


class Web:
    """An app on a test store with lists ``brief`` and ``other``, and a client."""

    def __init__(self, db: Any, **overrides: Any) -> None:
        self.db = db
        self.clock = Clock()
        self.settings: Settings = db.settings(base_url=BASE, **overrides)
        self.brief_id = make_list(db.sessions, "brief", name="The Test Brief")
        self.other_id = make_list(db.sessions, "other", name="Other Letter")
        self.app = create_app(self.settings, clock=self.clock)
        self.client = AppClient(self.app, base_url=BASE)
        self.signer = self.app.state.web.signer

    def new_client(self, ip: str = "203.0.113.20") -> AppClient:
        return AppClient(self.app, base_url=BASE, ip=ip)

    def subscribe(
        self,
        address: str,
        *,
        slug: str = "brief",
        name: str = "",
        client: AppClient | None = None,
        **extra: str,
    ) -> httpx.Response:
        c = client or self.client
        page = c.get(f"/subscribe/{slug}")
        assert page.status_code == 200, page.text
        data = {"csrf_token": csrf_of(page.text), "email": address, "name": name, **extra}
        return c.post(f"/subscribe/{slug}", data=data)

    def mails(self) -> list[EmailMessage]:
        return confirmation_mails(self.settings)

    def close(self) -> None:
        self.client.close()
        self.app.state.web.close()
