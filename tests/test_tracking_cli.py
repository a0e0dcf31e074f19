"""Tracking from the command line, through the real process on SQLite and PostgreSQL:
`mailer lists set SLUG --track`, `lists show SLUG`, `mailer stats --campaign N --links`
(text and the exact ``--json`` shape), and what bad input gets."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from sqlalchemy import select

from mailer.feedback.tracking.classify import Hit, Thresholds
from mailer.feedback.tracking.store import LinkTables, write_hits
from mailer.sending.models import Delivery
from subscribers import store
from subscribers.tracking import Track, tracking_of
from tests.cli_support import run_cli
from tests.conftest import Database
from tests.test_tracking import three_items
from tests.web_support import make_list, send_issue, wait_for_mail


def _track_of(db: Database) -> Track:
    with db.sessions() as s:
        return tracking_of(s, store.get_list(s, "brief").id)


def test_lists_set_track_and_show(db: Database) -> None:
    make_list(db.sessions)
    assert "track: off" in run_cli(db, "lists", "show", "brief").stdout
    done = run_cli(db, "lists", "set", "brief", "--track", "clicks,opens")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "brief: changed --track"
    assert _track_of(db) == Track(True, True)
    assert "track: clicks,opens" in run_cli(db, "lists", "show", "brief").stdout
    assert run_cli(db, "lists", "set", "brief", "--track", "clicks,opens").stdout.strip() == (
        "brief: changed nothing"
    )
    # a bad value: one line naming it, exit 1, and nothing of the command stored
    bad = run_cli(db, "lists", "set", "brief", "--track", "clicks,views", "--lang", "zh-Hans")
    assert bad.returncode == 1 and bad.stdout == ""
    assert bad.stderr.count("\n") == 1 and "track" in bad.stderr and "'views'" in bad.stderr
    assert _track_of(db) == Track(True, True)
    assert "lang: en" in run_cli(db, "lists", "show", "brief").stdout
    assert run_cli(db, "lists", "set", "brief", "--track", "off").returncode == 0
    assert _track_of(db) == Track()


def test_stats_links_text_and_exact_json(db: Database) -> None:
    make_list(db.sessions)
    with db.sessions.begin() as s:
        store.subscribe(s, "ada@example.com", store.get_list(s, "brief"), confirmed=True)
    assert run_cli(db, "lists", "set", "brief", "--track", "clicks").returncode == 0
    settings = db.settings(base_url="http://testserver")
    cid = send_issue(db.sessions, settings, three_items())
    wait_for_mail(settings.outbox_dir / str(cid))
    with db.sessions.begin() as s:
        delivery, sent_at = s.execute(
            select(Delivery.id, Delivery.sent_at).where(Delivery.campaign_id == cid)
        ).one()
        assert isinstance(sent_at, datetime)
        ua = "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0"
        at = sent_at + timedelta(minutes=3)
        later = at + timedelta(hours=1)
        hits = [
            Hit(cid, delivery, 1, at, accept_language="en", user_agent=ua),
            Hit(cid, delivery, 1, later, accept_language="en", user_agent=ua),
            Hit(cid, delivery, 0, sent_at, method="HEAD", user_agent="curl/8"),
        ]
        write_hits(s, hits, Thresholds(), LinkTables())
    out = run_cli(db, "stats", "--campaign", str(cid), "--links", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert set(report) == {"links", "opens"}
    assert report["opens"] == {"human": 0, "machine": 0, "proxy": 0}
    assert [link["url"] for link in report["links"]] == [
        f"https://news.example.net/story/{n}?a=1&b={n}" for n in (1, 2, 3)
    ]
    assert report["links"][1] == {
        "url": "https://news.example.net/story/2?a=1&b=2",
        "title": "Story 2",
        "human_clicks": 2,
        "unique_human_clickers": 1,
        "machine_clicks": 0,
        "proxy_clicks": 0,
    }
    assert report["links"][0]["machine_clicks"] == 1 and report["links"][0]["human_clicks"] == 0
    text = run_cli(db, "stats", "--campaign", str(cid), "--links")
    assert text.returncode == 0, text.stderr
    assert "Story 2" in text.stdout and "click-through 100.0%" in text.stdout
    assert "machine share of clicks 33%" in text.stdout
    missing = run_cli(db, "stats", "--links")
    assert missing.returncode == 1 and "--links needs --campaign N" in missing.stderr
    over_time = run_cli(db, "stats", "--list", "brief", "--links", "--json")
    assert over_time.returncode == 0, over_time.stderr
    (line,) = json.loads(over_time.stdout)["campaigns"]
    assert line["campaign"] == cid and line["sent"] == 1
    assert line["unique_human_clickers"] == 1 and line["click_through_rate"] == 1.0
    assert line["machine_share"] == round(1 / 3, 6)
    listed = run_cli(db, "stats", "--list", "brief", "--links", "--days", "7")
    assert listed.returncode == 0 and "100.0%" in listed.stdout and "33%" in listed.stdout
    nolist = run_cli(db, "stats", "--list", "nope", "--links")
    assert nolist.returncode == 1 and "nope" in nolist.stderr
    unknown = run_cli(db, "stats", "--campaign", "999", "--links", "--json")
    assert unknown.returncode == 1 and "no campaign 999" in unknown.stderr
