"""/admin in-process (httpx against the ASGI app) on a seeded ledger, SQLite and PostgreSQL:
closed without the token, the dashboard's figures and charts, the suppression list with search
and a CSRF-protected, ledger-recorded remove."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from mailer.web.app import create_app
from subscribers import store
from subscribers.models import ConsentEvent
from tests.conftest import Database
from tests.ops_seed import HARD_550, Seeded, seed
from tests.web_support import AppClient

TOKEN = "admin-token-for-tests-0123456789"
BASE = "https://news.example.com"


class Admin:
    def __init__(self, db: Database, token: str = TOKEN, now: datetime | None = None) -> None:
        self.settings = db.settings(base_url=BASE, admin_token=token)
        clock = (lambda: now) if now else None
        self.app = create_app(self.settings, clock=clock)
        self.client = AppClient(self.app, base_url=BASE)

    def get(self, url: str, auth: str | None = "bearer", **kw: Any) -> Any:
        headers = {**_auth(auth, self.settings.admin_token), **kw.pop("headers", {})}
        return self.client.get(url, headers=headers, **kw)

    def post(self, url: str, auth: str | None = "bearer", **kw: Any) -> Any:
        headers = {**_auth(auth, self.settings.admin_token), **kw.pop("headers", {})}
        return self.client.post(url, headers=headers, **kw)

    def close(self) -> None:
        self.client.close()


def _auth(kind: str | None, token: str = TOKEN) -> dict[str, str]:
    if kind is None:
        return {}
    if kind == "bearer":
        return {"Authorization": f"Bearer {token}"}
    if kind == "basic":
        return {"Authorization": "Basic " + base64.b64encode(f"ops:{token}".encode()).decode()}
    return {"Authorization": kind}


NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def seeded(db: Database) -> Seeded:
    with db.sessions.begin() as session:
        return seed(session, NOW)


@pytest.fixture
def admin(db: Database, seeded: Seeded) -> Iterator[Admin]:
    a = Admin(db, now=NOW)
    yield a
    a.close()


# -- closed without the token --------------------------------------------------------------------


PATHS = ("/admin", "/admin/suppressions", "/admin/stats.json", "/metrics")


def test_no_token_configured_means_not_there(db: Database) -> None:
    off = Admin(db, token="")
    try:
        for path in PATHS:
            assert off.get(path).status_code == 404
            assert off.get(path, auth=None).status_code == 404
        assert off.post("/admin/suppressions/remove", data={"email": "a@b.c"}).status_code == 404
    finally:
        off.close()


BAD_AUTH = [
    None,
    "Bearer wrong-token",
    "Bearer ",
    f"Token {TOKEN}",
    "Basic " + base64.b64encode(b"ops:wrong").decode(),
    "Basic " + base64.b64encode(TOKEN.encode()).decode(),  # no user:password shape
    "Basic %%%not-base64",
]


def test_wrong_or_missing_credentials_get_401(admin: Admin) -> None:
    for path in PATHS:
        for auth in BAD_AUTH:
            r = admin.get(path, auth=auth)
            assert r.status_code == 401, (path, auth)
            assert r.headers["www-authenticate"] == (
                'Basic realm="brief-mailer admin", charset="UTF-8"'
            )
            assert "Issue one" not in r.text and "mailer_" not in r.text


def test_bearer_and_basic_both_work(admin: Admin) -> None:
    assert admin.get("/admin", auth="bearer").status_code == 200
    assert admin.get("/admin", auth="basic").status_code == 200


# -- the dashboard -------------------------------------------------------------------------------


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_dashboard(admin: Admin, seeded: Seeded) -> None:
    r = admin.get("/admin")
    assert r.status_code == 200
    html = r.text
    text = _text(html)
    # headers: no cache, own CSP with a nonce for the one style block, never indexed
    assert r.headers["cache-control"] == "no-store"
    nonce = re.search(r"style-src 'nonce-([^']+)'", r.headers["content-security-policy"])
    assert nonce and f'<style nonce="{nonce.group(1)}">' in html
    assert "<script" not in html and "http://" not in html.replace("http://www.w3.org", "")
    # campaigns with state, progress and rates (c2 first: newest)
    rows = re.findall(r"<tr>\s*<td class=\"num\">(\d+)</td>\s*<td>([^<]+)</td>", html)
    assert rows[:2] == [(str(seeded.c2), "Issue two"), (str(seeded.c1), "Issue one")]
    assert "4 / 10" in text  # c2: 4 of 10 rows done
    assert "20 / 20" in text
    assert "11.11%" in text and "5.56%" in text  # c1's bounce and complaint rates
    assert 'class="crit"' in html
    # tiles: the 30-day rates of the window, the queue
    assert "9.09%" in text  # 2 hard bounces / 22 sent in the window
    assert re.search(r"Waiting to send\s*</div>\s*<div class=\"big\">6<", html)
    # four server-side SVG charts, with the SES thresholds drawn
    assert html.count("<svg") >= 4 + 2  # charts + progress bars
    assert "SES review 5%" in html and "SES pause 10%" in html
    assert "Gmail never 0.3%" in html
    # recent bounces and complaints with their diagnostic codes
    assert HARD_550 in html
    assert "smtp; 421 4.7.0 try later" in html
    assert "stranger@elsewhere.org" in html
    # domains
    assert "gmail.com" in text and "outlook.com" in text


def test_dashboard_shows_a_guard_pause(db: Database, admin: Admin, seeded: Seeded) -> None:
    from mailer.sending.models import Campaign

    with db.sessions.begin() as s:
        c = s.get(Campaign, seeded.c2)
        assert c is not None
        c.status = "paused"
        c.pause_reason = "reputation guard: bounce rate 6.00% (12 hard bounces / 200 sent)"
    html = admin.get("/admin").text
    assert '<span class="state paused">paused</span>' in html
    assert "reputation guard: bounce rate 6.00% (12 hard bounces / 200 sent)" in html


def test_stats_json(admin: Admin, seeded: Seeded) -> None:
    r = admin.get("/admin/stats.json")
    assert r.status_code == 200
    data = r.json()
    assert data["totals"]["sent"] == 22
    assert [c["id"] for c in data["campaigns"]] == [seeded.c2, seeded.c1]
    assert admin.get("/admin/stats.json?days=60").json()["totals"]["sent"] == 27


# -- the suppression list ------------------------------------------------------------------------


def _form(html: str, email: str) -> dict[str, str]:
    forms = re.findall(r"<form class=\"inline\".*?</form>", html, flags=re.S)
    for form in forms:
        fields = dict(re.findall(r'name="([^"]+)" value="([^"]*)"', form))
        if fields.get("email") == email:
            return fields
    raise AssertionError(f"no remove form for {email}")


def test_list_and_search(admin: Admin) -> None:
    html = admin.get("/admin/suppressions").text
    for address in ("a8@gmail.com", "a6@gmail.com", "manual1@example.org", "old@example.org"):
        assert address in html
    found = admin.get("/admin/suppressions", params={"q": "GMAIL"}).text
    assert "a8@gmail.com" in found and "a6@gmail.com" in found
    assert "manual1@example.org" not in found
    none = admin.get("/admin/suppressions", params={"q": "nobody%_"}).text
    assert "No suppressed address contains" in none


def test_remove_is_csrf_protected_and_recorded(db: Database, admin: Admin) -> None:
    page = admin.get("/admin/suppressions", params={"q": "a8"}).text
    fields = _form(page, "a8@gmail.com")
    assert fields["q"] == "a8"
    # without or with a wrong token: refused, nothing removed
    assert admin.post("/admin/suppressions/remove", data={"email": "a8@gmail.com"}).status_code == (
        403
    )
    bad = {**fields, "csrf_token": fields["csrf_token"][:-2] + "AA"}
    assert admin.post("/admin/suppressions/remove", data=bad).status_code == 403
    # a token for another admin token does not work either
    other = Admin(db, token="another-admin-token-0123456789", now=NOW)
    try:
        assert other.post("/admin/suppressions/remove", data=fields).status_code == 403
    finally:
        other.close()
    # without credentials: 401 even with a good form
    assert admin.post("/admin/suppressions/remove", data=fields, auth=None).status_code == 401
    with db.sessions() as s:
        assert store.find_suppression(s, "a8@gmail.com") is not None

    r = admin.post(
        "/admin/suppressions/remove", data=fields, headers={"User-Agent": "ops-browser/1.0"}
    )
    assert r.status_code == 303
    assert r.headers["location"] == "/admin/suppressions?q=a8&removed=a8%40gmail.com"
    with db.sessions() as s:
        assert store.find_suppression(s, "a8@gmail.com") is None
        event = s.scalars(
            select(ConsentEvent)
            .where(ConsentEvent.action == "unsuppress")
            .order_by(ConsentEvent.id.desc())
        ).first()
    assert event is not None
    assert (event.source, event.ip, event.user_agent) == (
        "admin",
        "203.0.113.10",
        "ops-browser/1.0",
    )
    assert event.detail == {"was": "hard_bounce"}
    shown = admin.get(r.headers["location"]).text
    assert "Removed <strong>a8@gmail.com</strong>" in shown
    # removing again: it is no longer there, and the page says so
    again = admin.post("/admin/suppressions/remove", data=fields)
    assert again.status_code == 303 and "missing=a8%40gmail.com" in again.headers["location"]


def test_suppression_page_escapes_what_it_shows(db: Database, admin: Admin) -> None:
    with db.sessions.begin() as s:
        store.suppress(s, "x@example.org", "manual", detail="<b>hi</b>")
    html = admin.get("/admin/suppressions", params={"q": "<img src=x>"}).text
    assert "<img src=x>" not in html and "&lt;img src=x&gt;" in html
    assert "&lt;b&gt;hi&lt;/b&gt;" in admin.get("/admin/suppressions").text
