"""Helpers for the desk tests: an app with lists, readers and tokens, and a client that
signs in and finds each form's CSRF token by the form's action (a page has several)."""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from mailer.access.tokens import create_token
from mailer.sending import publish
from mailer.sending.engine import Engine
from mailer.sending.models import Campaign
from mailer.transports import make_transport
from tests.conftest import Database
from tests.web_support import BASE, AppClient, Clock, add_active, make_list

FIXTURES = Path(__file__).parent / "fixtures" / "issues"
ADMIN_TOKEN = "desk-admin-token-7f3a9c21b04e"


def issue_text(tag: str = "", title_extra: str = "") -> str:
    """A small brief-format issue of our own; ``tag`` makes each one different."""
    return "\n".join(
        [
            f"Harbour reopens{tag}{title_extra};Rail link opens",
            "Rail link opens",
            "Good morning. Today is March 3, 2025. Two stories for you.",
            f"Harbour reopens{tag}{title_extra}",
            "Example Wire",
            "The harbour reopened after a week of repairs, officials said on Monday.",
            "https://news.example.net/harbour",
            "Rail link opens",
            "Example Post",
            "A new rail link cuts the trip to the coast to two hours.",
            "https://news.example.net/rail",
            "See you tomorrow.",
        ]
    )


def form_token(page: str, action: str) -> str:
    """The CSRF token of the form posting to ``action``."""
    pattern = (
        rf'<form[^>]*action="{re.escape(action)}"[^>]*>\s*'
        r'<input type="hidden" name="csrf_token" value="([^"]+)"'
    )
    m = re.search(pattern, page)
    assert m, f"no form posting to {action}"
    return m.group(1)


def hidden_fields(page: str, action: str) -> dict[str, str]:
    """Every hidden field of the form posting to ``action``."""
    start = page.index(f'action="{action}"')
    form = page[start : page.index("</form>", start)]
    return {
        k: html.unescape(v)
        for k, v in re.findall(r'type="hidden" name="([a-z_]+)" value="([^"]*)"', form)
    }


class Desk:
    """The app on a test store: lists ``brief`` (2 readers) and ``other``; tokens."""

    def __init__(self, db: Database, **overrides: Any) -> None:
        from mailer.web.app import create_app

        self.db = db
        self.clock = Clock()
        self.settings = db.settings(base_url=BASE, admin_token=ADMIN_TOKEN, **overrides)
        make_list(db.sessions, "brief", name="The Test Brief")
        make_list(db.sessions, "other", name="Other Letter")
        add_active(db.sessions, "reader1@example.com")
        add_active(db.sessions, "reader2@example.com")
        self.editor_token = create_token(db.sessions, "ed", "editor")
        self.ops_token = create_token(db.sessions, "op", "ops")
        self.app = create_app(self.settings, clock=self.clock)
        self.clients: list[AppClient] = []

    def client(self, ip: str = "203.0.113.10") -> AppClient:
        c = AppClient(self.app, base_url=self.settings.base_url, ip=ip)
        self.clients.append(c)
        return c

    def signed_in(self, token: str | None = None, ip: str = "203.0.113.10") -> AppClient:
        c = self.client(ip)
        r = sign_in(c, token or self.editor_token)
        assert r.status_code == 303, r.text
        return c

    def close(self) -> None:
        for c in self.clients:
            c.close()
        self.app.state.web.close()


def sign_in(c: AppClient, token: str, next_path: str = "/desk") -> httpx.Response:
    page = c.get("/desk/sign-in")
    assert page.status_code == 200, page.text
    data = {"csrf_token": form_token(page.text, "/desk/sign-in"), "token": token, "next": next_path}
    return c.post("/desk/sign-in", data=data)


def paste(c: AppClient, text: str) -> httpx.Response:
    page = c.get("/desk")
    assert page.status_code == 200, page.text
    token = form_token(page.text, "/desk/issues")
    return c.post("/desk/issues", data={"csrf_token": token, "text": text})


def checked(c: AppClient, text: str, list_slug: str = "brief") -> tuple[str, str]:
    """Paste; (the check page's path, its HTML for the list)."""
    r = paste(c, text)
    assert r.status_code == 303, r.text
    path = r.headers["location"].split("?")[0]
    page = c.get(f"{path}?list={list_slug}")
    assert page.status_code == 200, page.text
    return path, page.text


def confirm(
    c: AppClient, path: str, page: str, *, list_slug: str = "brief", **fields: str
) -> httpx.Response:
    token = form_token(page, f"{path}/confirm")
    data = {"csrf_token": token, "list": list_slug, "when": "now", **fields}
    return c.post(f"{path}/confirm", data=data)


def send_fields(c: AppClient, path: str, **fields: str) -> tuple[str, dict[str, str]]:
    """Paste-free: from a check page path, confirm and return the send form's fields."""
    page = c.get(f"{path}?list=brief").text
    r = confirm(c, path, page, **fields)
    assert r.status_code == 200, r.text
    return r.text, hidden_fields(r.text, f"{path}/send")


def campaigns_in(db: Database) -> list[Campaign]:
    with db.sessions() as s:
        rows = list(s.scalars(select(Campaign).order_by(Campaign.id)))
        s.expunge_all()
        return rows


def send_due(desk: Desk) -> int:
    """Send what is due as `mailer worker` does (publish.run_due on an engine)."""
    settings = desk.settings
    with Engine(settings, desk.db.sessions, make_transport(settings)) as engine:
        return len(list(publish.run_due(engine, desk.db.sessions)))
