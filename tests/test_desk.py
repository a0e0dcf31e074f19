"""/desk over HTTP (the real app in-process), on SQLite and PostgreSQL: paste or upload,
check, previews as the list renders them, test send (outbox and a real SMTP relay, up and
down), send now or schedule through the confirmation, a worker sends it, pause, resume,
cancel, retry the failed; an issue handed over by the API opens on the desk. What an
outsider or a fault would try is in tests/test_desk_attacks.py."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from aiosmtpd.controller import Controller
from sqlalchemy import select

from mailer.sending.models import Delivery, DeliveryStatus
from subscribers import store
from subscribers.list_settings import ListChanges, update_list
from tests.conftest import Database
from tests.desk_support import (
    FIXTURES,
    Desk,
    campaigns_in,
    checked,
    confirm,
    form_token,
    hidden_fields,
    issue_text,
    paste,
    send_due,
    send_fields,
)
from tests.test_transport_smtp import Recorder, free_port
from tests.web_support import read_eml, sample_issue, send_issue

# -- the flow ------------------------------------------------------------------------------


def test_paste_check_test_confirm_send_and_a_worker_sends_it(desk: Desk) -> None:
    c = desk.signed_in()
    path, page = checked(c, issue_text())
    assert "Check: Harbour reopens" in page
    assert 'sandbox=""' in page and f'src="{path}/preview.html?list=brief"' in page
    assert "Good morning." in page  # the plain-text preview

    preview = c.get(f"{path}/preview.html?list=brief")
    assert preview.status_code == 200
    csp = preview.headers["content-security-policy"]
    assert "sandbox" in csp and "frame-ancestors 'self'" in csp and "script-src" not in csp
    assert preview.headers["x-frame-options"] == "SAMEORIGIN"
    assert "Harbour reopens" in preview.text

    test = c.post(
        f"{path}/test",
        data={
            "csrf_token": form_token(page, f"{path}/test"),
            "list": "brief",
            "addresses": "Ed@Example.com, sub@example.org",
        },
    )
    assert test.status_code == 200
    assert (
        "Test sent to ed@example.com" in test.text and "Test sent to sub@example.org" in test.text
    )
    mails = sorted((desk.settings.outbox_dir).rglob("*.eml"))
    assert len(mails) == 2
    assert read_eml(mails[0])["Subject"].startswith("[TEST] ")
    assert campaigns_in(desk.db) == []  # a test touches no ledger

    shown = confirm(c, path, page, expires_after="6h")
    assert shown.status_code == 200
    assert re.search(r'<strong id="readers">2</strong>', shown.text)
    assert "The Test Brief (brief)" in shown.text
    assert "The Test Brief &lt;news@example.org&gt;" in shown.text  # From, as readers see it
    fields = hidden_fields(shown.text, f"{path}/send")
    sent = c.post(f"{path}/send", data=fields)
    assert sent.status_code == 303
    [campaign] = campaigns_in(desk.db)
    assert sent.headers["location"] == f"/desk/campaigns/{campaign.id}"
    assert campaign.expires_at is not None and campaign.scheduled_at is None

    live = c.get(f"/desk/campaigns/{campaign.id}")
    assert live.status_code == 200
    assert '<span class="status" id="status">scheduled</span>' in live.text
    assert 'http-equiv="refresh"' not in live.text  # reloading is the editor's choice
    assert f'href="/desk/campaigns/{campaign.id}?follow=1"' in live.text
    followed = c.get(f"/desk/campaigns/{campaign.id}?follow=1")
    assert '<meta http-equiv="refresh" content="5">' in followed.text
    assert "Stop following" in followed.text
    assert 'id="stalled"' not in followed.text
    desk.clock.advance(minutes=3)  # due, and still no worker has started it
    stalled = c.get(f"/desk/campaigns/{campaign.id}").text
    assert 'id="stalled"' in stalled and "is <code>mailer worker</code> running?" in stalled

    assert send_due(desk) == 1  # the desk never sends; a worker does
    done = c.get(f"/desk/campaigns/{campaign.id}?follow=1")
    assert '<span class="status" id="status">done</span>' in done.text
    assert 'id="count-sent">2<' in done.text
    assert 'http-equiv="refresh"' not in done.text and 'id="stalled"' not in done.text
    assert f'<a href="{path}?list=brief">its check page</a>' in done.text
    listing = c.get("/desk/campaigns")
    assert f'href="/desk/campaigns/{campaign.id}"' in listing.text


def test_schedule_in_a_named_zone_and_refuse_a_time_gone_by(desk: Desk) -> None:
    desk.clock.now = datetime(2030, 1, 1, 0, 0, tzinfo=UTC)
    c = desk.signed_in()
    path, page = checked(c, issue_text())
    r = confirm(c, path, page, when="at", at="2030-01-01T07:30", zone="Asia/Shanghai")
    assert r.status_code == 422
    assert "has passed" in r.text and "2029-12-31 23:30 UTC" in r.text
    assert 'value="2030-01-01T07:30"' in r.text  # what was entered is kept
    page = c.get(path).text
    r = confirm(c, path, page, when="at", at="2030-01-02T06:00", zone="Asia/Shanghai")
    assert r.status_code == 200 and "2030-01-01 22:00 UTC" in r.text
    r = confirm(c, path, c.get(path).text, when="at", at="2030-01-02T06:00", zone="Mars/Base")
    assert r.status_code == 422 and "unknown time zone" in r.text
    for bad, says in (
        ({"expires_after": "soon"}, "not a duration"),
        ({"expires_after": "0s"}, "must be more than 0"),
        ({"expires_after": "99999999999d"}, "at most 366 days"),
        ({"expires_after": "400d"}, "at most 366 days"),
        ({"when": "at", "at": "9999-12-31T23:59", "zone": "America/Los_Angeles"}, "out of range"),
        ({"when": "at", "at": "2032-01-01T00:00", "zone": "UTC"}, "more than 366 days away"),
        ({"when": "at", "at": "", "zone": "UTC"}, "cannot read the start time"),
        ({"when": "at", "at": "2030-01-02T06:00", "zone": "../etc/passwd"}, "unknown time zone"),
    ):
        r = confirm(c, path, c.get(path).text, **bad)
        assert r.status_code == 422 and says in r.text, (bad, r.status_code)
    assert campaigns_in(desk.db) == []


def test_pause_resume_cancel_from_the_campaign_page(desk: Desk) -> None:
    c = desk.signed_in()
    path, _ = checked(c, issue_text())
    _, fields = send_fields(c, path)
    cid = int(c.post(f"{path}/send", data=fields).headers["location"].rsplit("/", 1)[1])
    for action, status in (("pause", "paused"), ("resume", "sending"), ("cancel", "cancelled")):
        page = c.get(f"/desk/campaigns/{cid}").text
        token = form_token(page, f"/desk/campaigns/{cid}/{action}")
        r = c.post(f"/desk/campaigns/{cid}/{action}", data={"csrf_token": token})
        assert r.status_code == 303, r.text
        assert campaigns_in(desk.db)[0].status == status
    page = c.get(f"/desk/campaigns/{cid}").text
    assert "/pause" not in page and "/cancel" not in page  # nothing left to steer
    # cancelled releases the issue: it may be sent to the list again, as a new campaign
    _, fields = send_fields(c, path)
    assert c.post(f"{path}/send", data=fields).status_code == 303
    assert len(campaigns_in(desk.db)) == 2


def test_a_parse_error_names_its_line_and_keeps_the_text(desk: Desk) -> None:
    c = desk.signed_in()
    broken = issue_text().replace("https://news.example.net/harbour", "ftp://news.example.net/h")
    r = paste(c, broken)
    assert r.status_code == 422
    assert "Line 7" in r.text and "ftp://news.example.net/h" in r.text
    assert "The harbour reopened after a week of repairs" in r.text  # nothing lost
    r = paste(c, "")
    assert r.status_code == 422 and "empty" in r.text
    bad_utf8 = c.post(
        "/desk/issues",
        data={"csrf_token": form_token(c.get("/desk").text, "/desk/issues")},
        files={"file": ("issue.txt", b"Subject\nTeaser\n\xff\xfe broken")},
    )
    assert bad_utf8.status_code == 422 and "Line 3" in bad_utf8.text


def test_an_uploaded_file_is_read_like_a_paste(desk: Desk) -> None:
    c = desk.signed_in()
    r = c.post(
        "/desk/issues",
        data={"csrf_token": form_token(c.get("/desk").text, "/desk/issues"), "text": ""},
        files={"file": ("issue.txt", ("\ufeff" + issue_text(" up")).encode("utf-8"))},
    )
    assert r.status_code == 303
    assert "Harbour reopens up" in c.get(r.headers["location"]).text


def test_an_issue_handed_over_by_the_api_opens_on_the_desk(desk: Desk) -> None:
    """One table of handed-over issues: the pipeline posts, the editor checks and sends."""
    pipeline = desk.client(ip="203.0.113.99")
    r = pipeline.post(
        "/api/v1/issues",
        content=issue_text(" from upstream").encode(),
        headers={"Authorization": f"Bearer {desk.editor_token}", "Content-Type": "text/plain"},
    )
    assert r.status_code == 201, r.text
    key = r.json()["key"]
    c = desk.signed_in()
    listed = c.get("/desk").text  # the editor finds it on the paste page
    assert (
        f'<a href="/desk/issues/{key}">Harbour reopens from upstream; Rail link opens</a>' in listed
    )
    assert "· ed, " in listed
    page = c.get(f"/desk/issues/{key}?list=brief")
    assert page.status_code == 200 and "Harbour reopens from upstream" in page.text
    _, fields = send_fields(c, f"/desk/issues/{key}")
    assert c.post(f"/desk/issues/{key}/send", data=fields).status_code == 303
    [campaign] = campaigns_in(desk.db)
    assert campaign.issue_key == key
    again = c.get(f"/desk/issues/{key}?list=brief").text  # the check page says it went
    assert f'has this issue already: <a href="/desk/campaigns/{campaign.id}">' in again
    assert 'id="earlier"' not in c.get(f"/desk/issues/{key}?list=other").text


def test_a_test_send_takes_the_subject_the_send_would_go_with(desk: Desk) -> None:
    """The test form has the send form's Subject field, by the same rule (the CLI's
    --subject): the test shows the subject the editor means to send; a bad one is refused
    on the page with the addresses kept."""
    c = desk.signed_in()
    path, page = checked(c, issue_text())
    data = {"csrf_token": form_token(page, f"{path}/test"), "list": "brief"}
    test = c.post(
        f"{path}/test",
        data={**data, "addresses": "ed@example.com", "subject": "  Harbour day  "},
    )
    assert test.status_code == 200 and "Test sent to ed@example.com" in test.text
    mails = sorted(desk.settings.outbox_dir.rglob("*.eml"))
    assert [read_eml(m)["Subject"] for m in mails] == ["[TEST] Harbour day"]
    bad = c.post(
        f"{path}/test",
        data={**data, "addresses": "ed@example.com", "subject": "two\nlines"},
    )
    assert bad.status_code == 422
    assert 'id="test-error"><p>subject: one line of text, without line breaks' in bad.text
    assert "ed@example.com</textarea>" in bad.text
    assert len(list(desk.settings.outbox_dir.rglob("*.eml"))) == 1  # nothing more went


def test_the_preview_is_the_lists_own_rendering(desk: Desk) -> None:
    """The frames show what a send to the chosen list renders: its accent and greeting."""
    with desk.db.sessions.begin() as s:
        mlist = store.get_list(s, "brief")
        update_list(s, mlist, ListChanges(accent_color="#0a5c36", greeting="Dear reader,"))
    c = desk.signed_in()
    path, _ = checked(c, issue_text())
    brief = c.get(f"{path}/preview.html?list=brief").text
    other = c.get(f"{path}/preview.html?list=other").text
    assert "#0a5c36" in brief.lower() and "Dear reader," in brief
    assert "#0a5c36" not in other.lower() and "Dear reader," not in other
    with desk.db.sessions.begin() as s:  # the list changes: its next preview shows it
        update_list(s, store.get_list(s, "brief"), ListChanges(accent_color="#5b2a86"))
    brief = c.get(f"{path}/preview.html?list=brief").text.lower()
    assert "#5b2a86" in brief and "#0a5c36" not in brief


def test_a_test_send_through_a_real_smtp_relay_and_with_it_down(db: Database) -> None:
    recorder = Recorder()
    relay = Controller(recorder, hostname="127.0.0.1", port=free_port())
    relay.start()
    try:
        desk = Desk(db, transport="smtp", smtp_url=f"smtp://127.0.0.1:{relay.port}?timeout=5")
        c = desk.signed_in()
        path, page = checked(c, issue_text())
        token = form_token(page, f"{path}/test")
        data = {"csrf_token": token, "list": "brief", "addresses": "ed@example.com bounce@x.org"}
        r = c.post(f"{path}/test", data=data)
        assert r.status_code == 200
        assert "Test sent to ed@example.com" in r.text
        assert "Test to bounce@x.org failed" in r.text  # the relay's 550, per address
        [got] = recorder.messages
        assert got.rcpt_tos == ["ed@example.com"] and b"Subject: [TEST] " in got.content
    finally:
        relay.stop()
    try:
        r = c.post(f"{path}/test", data=data)  # the relay is gone now
        assert r.status_code == 503
        assert "The test could not be sent" in r.text and "Check: Harbour reopens" in r.text
        assert "ed@example.com bounce@x.org</textarea>" in r.text  # what was typed is kept
        assert campaigns_in(db) == []
    finally:
        desk.close()


def test_the_failed_readers_are_sent_again_from_the_campaign_page(desk: Desk) -> None:
    c = desk.signed_in()
    path, _ = checked(c, issue_text())
    _, fields = send_fields(c, path)
    cid = int(c.post(f"{path}/send", data=fields).headers["location"].rsplit("/", 1)[1])
    send_due(desk)
    with desk.db.sessions.begin() as s:  # one reader's message failed (a relay refused it)
        row = s.scalars(select(Delivery).where(Delivery.campaign_id == cid)).first()
        assert row is not None
        row.status = DeliveryStatus.FAILED.value
    page = c.get(f"/desk/campaigns/{cid}").text
    assert 'id="count-failed">1<' in page
    token = form_token(page, f"/desk/campaigns/{cid}/retry-failed")
    r = c.post(f"/desk/campaigns/{cid}/retry-failed", data={"csrf_token": token})
    assert r.status_code == 303
    assert campaigns_in(desk.db)[0].status == "sending"
    send_due(desk)
    page = c.get(f"/desk/campaigns/{cid}").text
    assert 'id="count-failed">0<' in page and 'id="count-sent">2<' in page
    assert "/retry-failed" not in page.split('class="actions"')[1].split("</div>")[0]


def test_a_markdown_issue_opens_as_the_list_its_front_matter_names(desk: Desk) -> None:
    c = desk.signed_in()
    source = (FIXTURES / "issue.md").read_text(encoding="utf-8")
    r = paste(c, source.replace("list: harbour-dispatch", "list: other"))
    assert r.status_code == 303 and "?" not in r.headers["location"]
    page = c.get(r.headers["location"]).text
    assert "Previews for Other Letter" in page and 'id="unknown-list"' not in page
    r = paste(c, source.replace("Guangzhou metro", "Shenzhen metro"))  # an unknown list
    page = c.get(r.headers["location"]).text
    assert r.status_code == 303 and 'id="unknown-list"' in page
    assert "<code>harbour-dispatch</code>, which does not exist here" in page
    assert "Previews for Other Letter" in page  # the first list, by name, until one is chosen


def test_a_campaign_sent_from_the_cli_shows_on_the_desk(desk: Desk) -> None:
    """Campaigns are campaigns, whichever entrance made them; its text is not kept here."""
    cid = send_issue(desk.db.sessions, desk.settings, sample_issue(5), start=False)
    c = desk.signed_in()
    page = c.get(f"/desk/campaigns/{cid}").text
    assert "Test issue 5: harbour reopens" in page
    assert "(sent from the command line: not kept here)" in page
    assert f'href="/desk/campaigns/{cid}"' in c.get("/desk/campaigns").text


def test_the_confirmation_warns_of_a_list_without_readers(desk: Desk) -> None:
    c = desk.signed_in()
    path, _ = checked(c, issue_text(), list_slug="other")
    empty = confirm(c, path, c.get(f"{path}?list=other").text, list_slug="other")
    assert 'id="no-readers"' in empty.text and "Send to 0 readers" in empty.text
    full = confirm(c, path, c.get(f"{path}?list=brief").text)
    assert 'id="no-readers"' not in full.text
