"""/desk over HTTP (the real app in-process), on SQLite and PostgreSQL: the flow from paste
to a campaign sent by a worker, and what an outsider or a fault would try: no session,
forged and expired cookies, revoked tokens, CSRF missing or from elsewhere, a tampered or
replayed confirmation, an ops-only action as editor, markup in the issue, a huge paste,
sign-in floods and open redirects."""

from __future__ import annotations

import base64
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import func, select

from mailer.access.models import HandedIssue
from mailer.access.tokens import revoke_token
from mailer.sending import publish
from mailer.sending.engine import Engine
from mailer.sending.guard import REASON_PREFIX
from mailer.sending.models import Campaign, CampaignStatus, Delivery, DeliveryStatus
from mailer.transports import make_transport
from mailer.web.app import create_app
from mailer.web.desk.session import SessionCodec
from subscribers import store
from subscribers.list_settings import ListChanges, update_list
from tests.conftest import Database
from tests.desk_support import (
    ADMIN_TOKEN,
    Desk,
    checked,
    confirm,
    form_token,
    hidden_fields,
    issue_text,
    paste,
    send_fields,
    sign_in,
)
from tests.test_transport_smtp import Recorder, free_port
from tests.web_support import AppClient, read_eml


@pytest.fixture
def desk(db: Database) -> Iterator[Desk]:
    d = Desk(db)
    yield d
    d.close()


def _campaigns(db: Database) -> list[Campaign]:
    with db.sessions() as s:
        rows = list(s.scalars(select(Campaign).order_by(Campaign.id)))
        s.expunge_all()
        return rows


def _sent(desk: Desk) -> int:
    """Send what is due as `mailer worker` does (publish.run_due on an engine)."""
    settings = desk.settings
    with Engine(settings, desk.db.sessions, make_transport(settings)) as engine:
        return len(list(publish.run_due(engine, desk.db.sessions)))


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
    assert _campaigns(desk.db) == []  # a test touches no ledger

    shown = confirm(c, path, page, expires_after="6h")
    assert shown.status_code == 200
    assert re.search(r'<strong id="readers">2</strong>', shown.text)
    assert "The Test Brief (brief)" in shown.text
    fields = hidden_fields(shown.text, f"{path}/send")
    sent = c.post(f"{path}/send", data=fields)
    assert sent.status_code == 303
    [campaign] = _campaigns(desk.db)
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

    assert _sent(desk) == 1  # the desk never sends; a worker does
    done = c.get(f"/desk/campaigns/{campaign.id}?follow=1")
    assert '<span class="status" id="status">done</span>' in done.text
    assert 'id="count-sent">2<' in done.text
    assert 'http-equiv="refresh"' not in done.text
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
    r = confirm(c, path, c.get(path).text, expires_after="soon")
    assert r.status_code == 422 and "expires after" in r.text
    assert _campaigns(desk.db) == []


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
        assert _campaigns(desk.db)[0].status == status
    page = c.get(f"/desk/campaigns/{cid}").text
    assert "/pause" not in page and "/cancel" not in page  # nothing left to steer
    # cancelled releases the issue: it may be sent to the list again, as a new campaign
    _, fields = send_fields(c, path)
    assert c.post(f"{path}/send", data=fields).status_code == 303
    assert len(_campaigns(desk.db)) == 2


# -- sessions ------------------------------------------------------------------------------

STEP = r"/(issues|test|confirm|send|pause|resume|cancel|retry-failed)$"
DESK_GETS = ["/desk", "/desk/campaigns", "/desk/campaigns/1", "/desk/issues/" + "a" * 64]
DESK_POSTS = [
    "/desk/issues",
    "/desk/issues/" + "a" * 64 + "/test",
    "/desk/issues/" + "a" * 64 + "/confirm",
    "/desk/issues/" + "a" * 64 + "/send",
    "/desk/campaigns/1/pause",
    "/desk/campaigns/1/resume",
    "/desk/campaigns/1/cancel",
    "/desk/campaigns/1/retry-failed",
]


def test_no_session_is_sent_to_sign_in_and_nothing_happens(desk: Desk) -> None:
    c = desk.client()
    for url in DESK_GETS:
        r = c.get(url)
        assert r.status_code == 303, url
        assert r.headers["location"] == "/desk/sign-in?next=" + url
        assert r.headers["cache-control"] == "no-store"
    for url in DESK_POSTS:  # a post is answered with the sign-in form, saying so
        r = c.post(url, data={"text": issue_text(), "list": "brief"})
        assert r.status_code == 401, url
        assert "nothing was done" in r.text and "<h1>Sign in to the desk</h1>" in r.text
        back = hidden_fields(r.text, "/desk/sign-in")["next"]
        assert back == re.sub(
            r"/(issues|test|confirm|send|pause|resume|cancel|retry-failed)$", "", url
        )
    assert "the issue you pasted was not kept" in c.post("/desk/issues", data={"text": "x"}).text
    assert c.get("/desk/issues/" + "a" * 64 + "/preview.html?list=brief").status_code == 401
    assert _campaigns(desk.db) == []


def test_the_session_cookie_is_httponly_strict_and_secure_on_https(db: Database) -> None:
    plain = Desk(db)
    try:
        r = sign_in(plain.client(), plain.editor_token)
        cookie = r.headers["set-cookie"]
        assert cookie.startswith("mailer_desk=")
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Max-Age=43200" in cookie
        assert "Secure" not in cookie
        assert plain.editor_token not in cookie
    finally:
        plain.close()
    app = create_app(db.settings(base_url="https://desk.example.org", admin_token=ADMIN_TOKEN))
    c = AppClient(app, base_url="https://desk.example.org")
    try:
        cookie = sign_in(c, ADMIN_TOKEN).headers["set-cookie"]
        assert cookie.startswith("__Host-mailer_desk=") and "Secure" in cookie
        assert "Path=/" in cookie and "Domain" not in cookie
        assert c.get("/desk").status_code == 200
    finally:
        c.close()
        app.state.web.close()


def _cookie(c: AppClient) -> str:
    return str(c.cookies.get("mailer_desk"))


def test_forged_expired_and_revoked_sessions_are_refused(desk: Desk) -> None:
    c = desk.signed_in()
    good = _cookie(c)
    payload, mac = good.split(".")
    raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode()
    as_ops = raw.replace("|editor|", "|ops|")
    forged_payload = base64.urlsafe_b64encode(as_ops.encode()).rstrip(b"=").decode()
    for value in (
        f"{forged_payload}.{mac}",  # role raised, old MAC
        f"{payload}.{'A' * 43}",  # MAC made up
        payload,  # MAC cut off
        good[:-1] + ("A" if good[-1] != "A" else "B"),
        "x" * 5000,
    ):
        c.cookies.set("mailer_desk", value)
        r = c.get("/desk")
        assert r.status_code == 303 and r.headers["location"].startswith("/desk/sign-in"), value
        assert 'mailer_desk=""' in r.headers.get("set-cookie", "")  # and it is cleared
    c.cookies.set("mailer_desk", good)
    assert c.get("/desk").status_code == 200
    desk.clock.advance(hours=12, seconds=1)
    assert c.get("/desk").status_code == 303  # a working day, then sign in again

    c2 = desk.signed_in()
    assert c2.get("/desk").status_code == 200
    revoke_token(desk.db.sessions, "ed")
    assert c2.get("/desk").status_code == 303  # revoking the token ends its sessions now


def test_sign_in_refuses_bad_tokens_and_counts_attempts(desk: Desk) -> None:
    c = desk.client(ip="198.51.100.7")
    for bad in ("", "bm_" + "x" * 43, ADMIN_TOKEN + "x", "y" * 10_000):
        r = sign_in(c, bad)
        assert r.status_code in (401, 400), bad
        assert "mailer_desk" not in r.headers.get("set-cookie", "")
    for _ in range(6):
        sign_in(c, "nope")
    limited = sign_in(c, desk.editor_token)  # the 11th attempt, even with a good token
    assert limited.status_code == 429 and "Too many sign-in attempts" in limited.text
    assert int(limited.headers["retry-after"]) > 0
    other = desk.client(ip="198.51.100.8")  # another network is not held back
    assert sign_in(other, desk.editor_token).status_code == 303
    desk.clock.advance(seconds=601)
    assert sign_in(c, desk.editor_token).status_code == 303


def test_sign_in_needs_its_form_token_and_never_redirects_off_the_desk(desk: Desk) -> None:
    c = desk.client()
    r = c.post("/desk/sign-in", data={"token": desk.editor_token})
    assert r.status_code == 403  # a page elsewhere cannot sign a browser in
    for evil in ("//evil.example/x", "https://evil.example/", "/desk/../admin", "/desk\\x"):
        r = sign_in(desk.client(), desk.editor_token, next_path=evil)
        assert r.headers["location"] == "/desk", evil
    r = sign_in(desk.client(), desk.editor_token, next_path="/desk/campaigns")
    assert r.headers["location"] == "/desk/campaigns"


def test_sign_out_ends_the_session(desk: Desk) -> None:
    c = desk.signed_in()
    page = c.get("/desk").text
    r = c.post("/desk/sign-out", data={"csrf_token": form_token(page, "/desk/sign-out")})
    assert r.status_code == 303 and r.headers["location"] == "/desk/sign-in"
    cleared = r.headers["set-cookie"]
    assert cleared.startswith('mailer_desk=""') and "Max-Age=0" in cleared


# -- forms ---------------------------------------------------------------------------------


def test_csrf_missing_wrong_or_from_another_session_is_refused(desk: Desk) -> None:
    c = desk.signed_in()
    other = desk.signed_in(desk.ops_token)
    theirs = form_token(other.get("/desk").text, "/desk/issues")
    path, page = checked(c, issue_text())
    mine_for_test = form_token(page, f"{path}/test")
    for token in ("", "garbage", theirs, mine_for_test):
        r = c.post("/desk/issues", data={"csrf_token": token, "text": issue_text(" 2")})
        assert r.status_code == 403, token
    r = c.post(f"{path}/confirm", data={"list": "brief", "when": "now"})
    assert r.status_code == 403 and "security token is missing" in r.text
    token = form_token(page, f"{path}/confirm")
    r = c.post(f"{path}/confirm", data={"csrf_token": token, "when": "now"})  # cut short
    assert r.status_code == 400 and "names no list" in r.text
    assert _campaigns(desk.db) == []


def test_a_tampered_confirmation_is_refused(desk: Desk) -> None:
    c = desk.signed_in()
    path, _ = checked(c, issue_text())
    _, fields = send_fields(c, path)
    for change in (
        {"list": "other"},
        {"force": "1"},
        {"expires_at": "2099-01-01T00:00:00+00:00"},
        {"at": "2099-01-01T00:00:00+00:00"},
    ):
        r = c.post(f"{path}/send", data={**fields, **change})
        assert r.status_code == 403, change
    assert _campaigns(desk.db) == []


def test_a_replayed_confirmation_makes_one_campaign(desk: Desk) -> None:
    c = desk.signed_in()
    path, _ = checked(c, issue_text())
    _, fields = send_fields(c, path, force="1")  # force: only the idempotency key stops a second
    first = c.post(f"{path}/send", data=fields)
    again = c.post(f"{path}/send", data=fields)
    assert first.status_code == again.status_code == 303
    assert again.headers["location"] == first.headers["location"] + "?again=1"
    assert "sent already" in c.get(again.headers["location"]).text

    _, fields2 = send_fields(c, path, force="1")  # a new confirmation, posted 6 times at once
    answers: list[int] = []

    def post() -> None:
        answers.append(c.post(f"{path}/send", data=fields2).status_code)

    threads = [threading.Thread(target=post) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(_campaigns(desk.db)) == 2, answers  # the first and one forced repeat
    assert set(answers) <= {303, 409}


def test_an_issue_already_sent_is_a_clear_409(desk: Desk) -> None:
    c = desk.signed_in()
    path, _ = checked(c, issue_text())
    _, fields = send_fields(c, path)
    c.post(f"{path}/send", data=fields)
    _, fields = send_fields(c, path)
    r = c.post(f"{path}/send", data=fields)
    assert r.status_code == 409
    assert re.search(r"campaign \d+", r.text)
    assert len(_campaigns(desk.db)) == 1


def test_resuming_a_guard_pause_needs_ops(desk: Desk) -> None:
    editor = desk.signed_in()
    path, _ = checked(editor, issue_text())
    _, fields = send_fields(editor, path)
    cid = int(editor.post(f"{path}/send", data=fields).headers["location"].rsplit("/", 1)[1])
    with desk.db.sessions.begin() as s:
        campaign = s.get(Campaign, cid)
        assert campaign is not None
        campaign.status = CampaignStatus.PAUSED.value
        campaign.pause_reason = REASON_PREFIX + " bounce rate 9% over 5%"
    page = editor.get(f"/desk/campaigns/{cid}").text
    assert "Someone with an ops token" in page and "Resume anyway" not in page
    token = _action_token(desk, editor, cid, "resume")  # a hand-made form: the page has none
    r = editor.post(f"/desk/campaigns/{cid}/resume", data={"csrf_token": token, "force": "1"})
    assert r.status_code == 403 and "needs an ops token" in r.text
    plain = editor.post(f"/desk/campaigns/{cid}/resume", data={"csrf_token": token})
    assert plain.status_code == 409 and "reputation guard" in plain.text
    assert _campaigns(desk.db)[0].status == "paused"

    ops = desk.signed_in(desk.ops_token)
    page = ops.get(f"/desk/campaigns/{cid}").text
    assert "Resume anyway" in page
    r = ops.post(
        f"/desk/campaigns/{cid}/resume",
        data={"csrf_token": form_token(page, f"/desk/campaigns/{cid}/resume"), "force": "1"},
    )
    assert r.status_code == 303
    assert _campaigns(desk.db)[0].status == "sending"


def _action_token(desk: Desk, c: AppClient, cid: int, action: str) -> str:
    """A valid form token of this session for an action its page does not offer."""
    state = desk.app.state.web
    codec = SessionCodec(desk.settings.require_secret_key(), secure=False)
    session = codec.decode(c.cookies.get("mailer_desk"), state.timestamp())
    assert session is not None
    path = f"/desk/campaigns/{cid}/{action}"
    return str(state.csrf.issue(path, state.timestamp(), f"desk\x00{session.sid}\x00"))


# -- hostile input -------------------------------------------------------------------------

XSS = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'


def test_markup_in_the_issue_is_text_on_every_page(desk: Desk) -> None:
    c = desk.signed_in()
    path, page = checked(c, issue_text(title_extra=" " + XSS))
    shown = confirm(c, path, page)
    fields = hidden_fields(shown.text, f"{path}/send")
    cid = c.post(f"{path}/send", data=fields).headers["location"]
    pages = {
        "check": page,
        "confirm": shown.text,
        "campaign": c.get(cid).text,
        "campaigns": c.get("/desk/campaigns").text,
        "test": c.post(
            f"{path}/test",
            data={"csrf_token": form_token(page, f"{path}/test"), "addresses": XSS},
        ).text,
        "paste-error": paste(c, "only one line " + XSS).text,
    }
    for name, body in pages.items():
        assert "<script>alert" not in body, name
        assert "<img src=x" not in body, name
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages["check"]
    assert "&lt;script&gt;" in pages["campaign"] and "&lt;script&gt;" in pages["paste-error"]
    preview = c.get(f"{path}/preview.html?list=brief")
    assert "<script>alert" not in preview.text


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


def test_broken_uploads_are_clear_errors(desk: Desk) -> None:
    c = desk.signed_in()
    token = form_token(c.get("/desk").text, "/desk/issues")
    two = [("file", ("a.txt", b"x")), ("file", ("b.txt", b"y"))]
    assert c.post("/desk/issues", data={"csrf_token": token}, files=two).status_code == 400
    cut = b'--zz\r\nContent-Disposition: form-data; name="text"\r\n\r\nabc'  # no end
    r = c.post(
        "/desk/issues", content=cut, headers={"content-type": "multipart/form-data; boundary=zz"}
    )
    assert r.status_code == 403  # its token never arrived
    r = c.post("/desk/issues", content=b"x", headers={"content-type": "multipart/form-data"})
    assert r.status_code == 400
    with desk.db.sessions() as s:
        assert s.scalar(select(func.count()).select_from(HandedIssue)) == 0


def test_an_uploaded_file_is_read_like_a_paste(desk: Desk) -> None:
    c = desk.signed_in()
    r = c.post(
        "/desk/issues",
        data={"csrf_token": form_token(c.get("/desk").text, "/desk/issues"), "text": ""},
        files={"file": ("issue.txt", ("\ufeff" + issue_text(" up")).encode("utf-8"))},
    )
    assert r.status_code == 303
    assert "Harbour reopens up" in c.get(r.headers["location"]).text


def test_a_huge_paste_is_413_with_a_clear_page(desk: Desk) -> None:
    c = desk.signed_in()
    token = form_token(c.get("/desk").text, "/desk/issues")
    big = issue_text() + "\n" + "x" * (600 * 1024)
    r = c.post("/desk/issues", data={"csrf_token": token, "text": big})
    assert r.status_code == 413
    assert "That issue is over 512 KB" in r.text and "<h1>New issue</h1>" in r.text
    huger = "x" * (2 * 1024 * 1024)  # over MAILER_MAX_BODY_BYTES: refused before it is read
    r = c.post(
        "/desk/issues",
        data={"csrf_token": token, "text": huger},
        headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"},  # as a browser asks
    )
    assert r.status_code == 413 and r.headers["content-type"].startswith("text/html")
    assert "<h1>That was too much</h1>" in r.text and "Nothing was received or saved" in r.text
    assert "over 1024 KB" in r.text
    with desk.db.sessions() as s:
        assert s.scalar(select(func.count()).select_from(HandedIssue)) == 0


def test_unknown_issue_list_and_campaign_are_404(desk: Desk) -> None:
    c = desk.signed_in()
    assert c.get("/desk/issues/" + "0" * 64).status_code == 404
    assert c.get("/desk/issues/../../etc").status_code in (303, 404)
    assert c.get("/desk/issues/ZZ").status_code == 404
    path, _ = checked(c, issue_text())
    assert c.get(f"{path}?list=nope").status_code == 404
    assert c.get(f"{path}/preview.html?list=nope").status_code == 404
    assert c.get("/desk/campaigns/999").status_code == 404
    assert c.get("/desk/campaigns/99999999999999999999").status_code == 400


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
    page = c.get(f"/desk/issues/{key}?list=brief")
    assert page.status_code == 200 and "Harbour reopens from upstream" in page.text
    _, fields = send_fields(c, f"/desk/issues/{key}")
    assert c.post(f"/desk/issues/{key}/send", data=fields).status_code == 303
    [campaign] = _campaigns(desk.db)
    assert campaign.issue_key == key


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
        assert _campaigns(db) == []
    finally:
        desk.close()


def test_the_failed_readers_are_sent_again_from_the_campaign_page(desk: Desk) -> None:
    c = desk.signed_in()
    path, _ = checked(c, issue_text())
    _, fields = send_fields(c, path)
    cid = int(c.post(f"{path}/send", data=fields).headers["location"].rsplit("/", 1)[1])
    _sent(desk)
    with desk.db.sessions.begin() as s:  # one reader's message failed (a relay refused it)
        row = s.scalars(select(Delivery).where(Delivery.campaign_id == cid)).first()
        assert row is not None
        row.status = DeliveryStatus.FAILED.value
    page = c.get(f"/desk/campaigns/{cid}").text
    assert 'id="count-failed">1<' in page
    token = form_token(page, f"/desk/campaigns/{cid}/retry-failed")
    r = c.post(f"/desk/campaigns/{cid}/retry-failed", data={"csrf_token": token})
    assert r.status_code == 303
    assert _campaigns(desk.db)[0].status == "sending"
    _sent(desk)
    page = c.get(f"/desk/campaigns/{cid}").text
    assert 'id="count-failed">0<' in page and 'id="count-sent">2<' in page
    assert "/retry-failed" not in page.split('class="actions"')[1].split("</div>")[0]
