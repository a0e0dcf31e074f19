"""Reader time zones (issue 15, part 4): captured by the subscribe form from the browser
(hidden field, filled by our one script), settable on the preferences page, always an IANA
name; a stranger cannot move an existing reader's morning. On SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from mailer.render.tokens import preferences_url
from subscribers import importer, store
from tests.browser import chromium, chromium_available
from tests.conftest import Database
from tests.web_support import BASE, Web, csrf_of, live_server, make_list


@pytest.fixture
def web(db: Database) -> Iterator[Web]:
    w = Web(db)
    yield w
    w.close()


def _zone(web: Web, address: str) -> str | None:
    with web.db.sessions() as s:
        return store.get_subscriber(s, address).time_zone


def test_the_form_keeps_the_browsers_zone_for_a_new_reader(web: Web) -> None:
    form = web.client.get("/subscribe/brief")
    assert 'name="time_zone"' in form.text and "/static/tz.js" in form.text
    csp = form.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe" not in csp
    # every other page still runs no script
    assert "script-src" not in web.client.get("/subscribe").headers["content-security-policy"]
    assert "Intl.DateTimeFormat" in web.client.get("/static/tz.js").text
    web.subscribe("east@example.com", time_zone="Asia/Shanghai")
    assert _zone(web, "east@example.com") == "Asia/Shanghai"
    # a stranger posting the same address with another zone changes nothing
    web.subscribe("east@example.com", time_zone="America/New_York")
    assert _zone(web, "east@example.com") == "Asia/Shanghai"


@pytest.mark.parametrize(
    "sent", ["", "Mars/Olympus", "../../etc/passwd", "x" * 5000, "Asia/Shanghai\nBcc: x"]
)
def test_a_zone_that_is_not_iana_is_ignored(web: Web, sent: str) -> None:
    r = web.subscribe("odd@example.com", time_zone=sent)
    assert r.status_code == 200
    assert _zone(web, "odd@example.com") is None


def _prefs(web: Web, address: str) -> str:
    with web.db.sessions.begin() as s:
        sub_id = store.subscribe(
            s, address, store.get_list(s, "brief"), confirmed=True
        ).subscriber.id
    url = preferences_url(web.settings, web.signer, sub_id, web.brief_id, now=web.clock())
    return url.removeprefix(BASE)


def test_preferences_set_change_and_clear_the_zone(web: Web) -> None:
    path = _prefs(web, "reader@example.com")
    page = web.client.get(path)

    def save(zone: str, name: str = "Reader") -> Any:
        return web.client.post(
            path,
            data={
                "csrf_token": csrf_of(page.text),
                "name": name,
                "list": "brief",
                "time_zone": zone,
            },
        )

    assert save("europe/berlin").status_code == 200
    assert _zone(web, "reader@example.com") == "Europe/Berlin"
    bad = save("Middle/Earth", name="Renamed")
    assert bad.status_code == 422
    assert "time zone like Asia/Shanghai" in bad.text and 'value="Middle/Earth"' in bad.text
    with web.db.sessions() as s:  # nothing of the refused form was saved
        sub = store.get_subscriber(s, "reader@example.com")
        assert (sub.time_zone, sub.name) == ("Europe/Berlin", "Reader")
    assert save("").status_code == 200
    assert _zone(web, "reader@example.com") is None


@pytest.mark.browser
@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
def test_chromium_fills_the_hidden_field(db: Database) -> None:
    if not chromium_available():
        pytest.skip("headless Chromium (/usr/bin/chromium + playwright) is not available")
    make_list(db.sessions, "brief", name="The Test Brief")
    with (
        live_server(lambda url: db.settings(base_url=url)) as (server, _settings),
        chromium() as browser,
    ):
        context = browser.new_context(timezone_id="Europe/Berlin")
        try:
            page = context.new_page()
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(f"{server.url}/subscribe/brief")
            page.get_by_label("Email address").fill("kolkata@example.com")
            page.get_by_role("button", name="Subscribe", exact=True).click()
            page.get_by_role("heading", name="Check your inbox").wait_for()
            assert [e for e in errors if "Content Security Policy" in e] == []
        finally:
            context.close()
    with db.sessions() as s:
        assert store.get_subscriber(s, "kolkata@example.com").time_zone == "Europe/Berlin"


def test_import_reads_a_time_zone_column(db: Database) -> None:
    make_list(db.sessions, "brief", name="The Test Brief")
    with db.sessions.begin() as s:
        known = store.subscribe(s, "known@example.com", store.get_list(s, "brief"), confirmed=True)
        known.subscriber.time_zone = "Europe/Paris"
        store.subscribe(s, "kept@example.com", store.get_list(s, "brief"), confirmed=True)
        store.get_subscriber(s, "kept@example.com").time_zone = "Asia/Tokyo"
    csv = db.tmp / "zones.csv"
    csv.write_text(
        "email,name,Time_Zone,city\n"
        "new@example.com,New,asia/shanghai,Shanghai\n"
        "bad@example.com,Bad,Mars/Olympus,Nowhere\n"
        "known@example.com,,America/New_York,\n"
        "kept@example.com,,,\n",
        encoding="utf-8",
    )
    problems: list[importer.Problem] = []
    report = importer.import_csv(
        db.sessions, csv, "brief", confirmed=True, on_problem=problems.append
    )
    assert [(p.line, p.reason, p.value) for p in problems] == [
        (3, "unknown time zone", "Mars/Olympus")
    ]
    assert report.added == 1
    with db.sessions() as s:
        new = store.get_subscriber(s, "new@example.com")
        assert (new.time_zone, new.attributes) == ("Asia/Shanghai", {"city": "Shanghai"})
        assert store.find_subscriber(s, "bad@example.com") is None
        assert store.get_subscriber(s, "known@example.com").time_zone == "America/New_York"
        assert store.get_subscriber(s, "kept@example.com").time_zone == "Asia/Tokyo"


def test_the_zone_is_in_the_access_report(db: Database) -> None:
    """GDPR access: everything held about a person includes their time zone."""
    make_list(db.sessions, "brief", name="The Test Brief")
    with db.sessions.begin() as s:
        store.subscribe(s, "r@example.org", store.get_list(s, "brief"), confirmed=True)
        store.get_subscriber(s, "r@example.org").time_zone = "Asia/Shanghai"
    with db.sessions() as s:
        assert store.describe_subscriber(s, "r@example.org")["time_zone"] == "Asia/Shanghai"
