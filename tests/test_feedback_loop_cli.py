"""The feedback loop for a newcomer without SES (issue 17): `mailer feedback simulate` makes
up SES's event about a sent delivery and applies it as a real one; `feedback ingest` says
which events matched nothing and why; /admin tells what was done in words and does not show
a cancelled campaign as a full green bar (in Chromium)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mailer.ops.outcome_words import in_words
from mailer.sending import publish
from subscribers import store
from tests.browser import chromium, chromium_available
from tests.cli_support import run_cli
from tests.conftest import Database
from tests.delivery_helpers import ISSUE, seed_list
from tests.web_support import live_server

TOKEN = "feedback-loop-admin-token-0123456789"


def test_simulate_bounce_and_complaint_through_the_real_rules(db: Database) -> None:
    _, emails = seed_list(db.sessions, 3)
    assert run_cli(db, "send", str(ISSUE), "--list", "brief").returncode == 0
    bounce = run_cli(db, "feedback", "simulate", "1", "bounce")
    assert bounce.returncode == 0, bounce.stderr
    assert bounce.stdout.strip() == (
        f"bounce of delivery 1 ({emails[0]}): applied: suppressed {emails[0]} (hard bounce)"
    )
    complaint = run_cli(db, "feedback", "simulate", "2", "complaint")
    assert f"unsubscribed {emails[1]} from 1 list(s)" in complaint.stdout
    with db.sessions() as s:
        assert store.find_suppression(s, emails[0]) is not None
        assert store.find_suppression(s, emails[1]) is not None
        assert store.find_suppression(s, emails[2]) is None
    again = run_cli(db, "feedback", "simulate", "2", "complaint")
    assert again.returncode == 0 and ": applied:" in again.stdout  # a new event, same effect
    missing = run_cli(db, "feedback", "simulate", "999", "bounce")
    assert (missing.returncode, missing.stderr.strip()) == (
        1,
        "mailer: error: no delivery 999 (see `mailer campaigns show N`)",
    )
    wrong = run_cli(db, "feedback", "simulate", "1", "explode")
    assert wrong.returncode == 2 and len(wrong.stderr.splitlines()) == 1


def test_ingest_says_which_events_matched_nothing_and_why(db: Database, tmp_path: Path) -> None:
    seed_list(db.sessions, 1)
    assert run_cli(db, "send", str(ISSUE), "--list", "brief").returncode == 0
    mail = {"timestamp": "2026-12-01T00:00:00Z", "destination": ["reader00001@example.com"]}
    bounce = {"bounceType": "Permanent", "bouncedRecipients": [{"emailAddress": "x@e.com"}]}
    events = [
        {"eventType": "Bounce", "mail": {**mail, "messageId": "1.eml"}, "bounce": bounce},
        {"eventType": "Bounce", "mail": {**mail, "messageId": "0100-ses-id"}, "bounce": bounce},
    ]
    path = tmp_path / "events.json"
    path.write_text(json.dumps(events), encoding="utf-8")
    r = run_cli(db, "feedback", "ingest", str(path))
    assert r.returncode == 0, r.stderr
    assert "applied 2, already seen 0, setup notices 0, failed 0; 1 of them matched no " in r.stdout
    lines = r.stderr.splitlines()
    assert lines[0] == (
        f"matched no delivery: {path}[1]: Bounce has mail.messageId '0100-ses-id', which no "
        "send recorded, and no 'delivery' tag"
    )
    assert "the outbox's .eml file name such as 17.eml" in lines[1]


def test_outcomes_in_words() -> None:
    assert in_words(None) == ""
    assert in_words("unmatched; suppressed:soft_bounce_limit:a@x.org") == (
        "matched no delivery; suppressed a@x.org (too many soft bounces)"
    )
    assert (
        in_words("soft:2/3:a@x.org; something:new")
        == "soft bounce 2 of 3 for a@x.org; something:new"
    )


@pytest.fixture(scope="module")
def chromium_browser() -> Iterator[Any]:
    if not chromium_available():
        pytest.skip("headless Chromium (/usr/bin/chromium + playwright) is not available")
    with chromium() as b:
        yield b


@pytest.mark.browser
@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
def test_admin_shows_cancelled_grey_and_actions_in_words(
    db: Database, chromium_browser: Any
) -> None:
    _, emails = seed_list(db.sessions, 4)
    assert run_cli(db, "send", str(ISSUE), "--list", "brief").returncode == 0
    assert run_cli(db, "feedback", "simulate", "1", "complaint").returncode == 0
    later = run_cli(db, "send", str(ISSUE), "--list", "brief", "--force", "--at", "+2h")
    assert later.returncode == 0, later.stderr
    publish.cancel(db.sessions, 2)
    with live_server(lambda url: db.settings(base_url=url, admin_token=TOKEN)) as (server, _):
        context = chromium_browser.new_context(
            http_credentials={"username": "ops", "password": TOKEN}
        )
        try:
            page = context.new_page()
            assert page.goto(server.url + "/admin").status == 200
            bars = {
                label: page.locator(f'svg[aria-label="{label}"] rect').nth(1)
                for label in ("cancelled: 0% sent", "100% done")
            }
            grey = bars["cancelled: 0% sent"]
            assert grey.get_attribute("width") == "0.0"
            assert grey.get_attribute("fill") == "#9ca3af"
            assert bars["100% done"].get_attribute("fill") == "#16a34a"
            did = page.locator("table td", has_text=f"unsubscribed {emails[0]} from 1 list(s)")
            assert did.count() == 1
            assert page.get_by_text("unsubscribed:1 list(s)").count() == 0
        finally:
            context.close()
