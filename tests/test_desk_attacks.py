"""/desk over HTTP under attack, on SQLite and PostgreSQL: no session, forged, expired and
revoked sessions, cookie flags, sign-in floods, login CSRF and open redirects; CSRF missing,
foreign or for another form; a tampered or replayed confirmation (one campaign), an issue
sent twice, an ops-only action as editor; markup in the issue on every page, broken
uploads, a huge paste, unknown keys and ids."""

from __future__ import annotations

import base64
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import redis
from sqlalchemy import func, select

from mailer.access.models import HandedIssue
from mailer.access.tokens import revoke_token
from mailer.sending.guard import REASON_PREFIX
from mailer.sending.models import Campaign, CampaignStatus
from mailer.web.app import create_app
from mailer.web.desk.session import SessionCodec
from tests.conftest import Database
from tests.desk_support import (
    ADMIN_TOKEN,
    Desk,
    campaigns_in,
    checked,
    confirm,
    form_token,
    hidden_fields,
    issue_text,
    paste,
    send_fields,
    sign_in,
)
from tests.web_support import AppClient, live_server

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
    assert campaigns_in(desk.db) == []


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
        assert r.status_code == 401, bad
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
    # a SameSite=Strict cookie stays home when a mail's link is followed: the sign-in page
    # offers the way on, a same-site click that carries it (only to a desk page)
    page = desk.client().get("/desk/sign-in?next=/desk/campaigns/7").text
    assert '<a href="/desk/campaigns/7">continue to the page you asked for</a>' in page
    page = desk.client().get("/desk/sign-in?next=//evil.example/").text
    assert "continue to the page" not in page and "evil.example" not in page


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
    assert campaigns_in(desk.db) == []


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
    assert campaigns_in(desk.db) == []


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
    assert len(campaigns_in(desk.db)) == 2, answers  # the first and one forced repeat
    assert set(answers) <= {303, 409}


def test_an_issue_already_sent_is_a_clear_409(desk: Desk) -> None:
    c = desk.signed_in()
    path, _ = checked(c, issue_text())
    _, fields = send_fields(c, path)
    c.post(f"{path}/send", data=fields)
    _, fields = send_fields(c, path)
    r = c.post(f"{path}/send", data=fields)
    assert r.status_code == 409
    [made] = campaigns_in(desk.db)
    # back on the issue's page, in the desk's words (not the CLI's --force)
    assert "Check: Harbour reopens" in r.text and 'id="send-error"' in r.text
    assert f"already sent to brief as campaign {made.id}" in r.text
    assert 'tick "Send again"' in r.text.replace("&#34;", '"') and "--force" not in r.text


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
    assert r.status_code == 403 and "needs an ops token" in r.text and 'id="refused"' in r.text
    plain = editor.post(f"/desk/campaigns/{cid}/resume", data={"csrf_token": token})
    assert plain.status_code == 409 and "reputation guard" in plain.text
    assert f"Campaign {cid}:" in plain.text  # said on the campaign's own page
    assert campaigns_in(desk.db)[0].status == "paused"

    ops = desk.signed_in(desk.ops_token)
    page = ops.get(f"/desk/campaigns/{cid}").text
    assert "Resume anyway" in page
    r = ops.post(
        f"/desk/campaigns/{cid}/resume",
        data={"csrf_token": form_token(page, f"/desk/campaigns/{cid}/resume"), "force": "1"},
    )
    assert r.status_code == 303
    assert campaigns_in(desk.db)[0].status == "sending"


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
    assert c.get("/desk/issues/..%2F..%2Fetc").status_code == 404
    assert c.get("/desk/issues/ZZ").status_code == 404
    path, _ = checked(c, issue_text())
    assert c.get(f"{path}?list=nope").status_code == 404
    assert c.get(f"{path}/preview.html?list=nope").status_code == 404
    assert c.get("/desk/campaigns/999").status_code == 404
    assert c.get("/desk/campaigns/99999999999999999999").status_code == 400


@pytest.fixture
def redis_url() -> Iterator[str]:
    url = os.environ.get("MAILER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    client = redis.Redis.from_url(url)
    try:
        client.ping()
    except redis.RedisError as err:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Redis is required in CI but unreachable: {err}")
        pytest.skip(f"Redis unreachable: {err}")
    before = set(client.scan_iter("mailer-ratelimit:*"))
    yield url
    for key in set(client.scan_iter("mailer-ratelimit:*")) - before:
        client.delete(key)
    client.close()


def test_a_sign_in_flood_is_counted_across_servers_through_redis(
    db: Database, redis_url: str
) -> None:
    """Two `mailer serve` processes in miniature share one Redis: ten attempts in all from
    one network, whichever server they reach, then 429 on both."""
    first = Desk(db, rate_limit_storage=redis_url)
    second = create_app(first.settings, clock=first.clock)
    ip = f"test-{uuid.uuid4().hex}"  # a client no other run uses
    clients = [first.client(ip=ip), AppClient(second, base_url=first.settings.base_url, ip=ip)]
    try:
        codes = [sign_in(clients[i % 2], f"bm_wrong{i}").status_code for i in range(10)]
        assert codes == [401] * 10
        assert sign_in(clients[0], first.editor_token).status_code == 429
        assert sign_in(clients[1], first.editor_token).status_code == 429
    finally:
        clients[1].close()
        second.state.web.close()
        first.close()


def test_two_editors_confirming_the_same_send_at_once_make_one_campaign(desk: Desk) -> None:
    one, two = desk.signed_in(), desk.signed_in(desk.ops_token)
    path, _ = checked(one, issue_text())
    _, fields_one = send_fields(one, path)
    _, fields_two = send_fields(two, path)
    answers: dict[str, int] = {}

    def post(name: str, c: AppClient, fields: dict[str, str]) -> None:
        answers[name] = c.post(f"{path}/send", data=fields).status_code

    threads = [
        threading.Thread(target=post, args=("one", one, fields_one)),
        threading.Thread(target=post, args=("two", two, fields_two)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(answers.values()) == [303, 409], answers
    assert len(campaigns_in(desk.db)) == 1


def test_a_send_whose_answer_was_lost_is_retried_into_the_same_campaign(db: Database) -> None:
    """Over real uvicorn: the browser's connection drops after the confirmation was posted,
    before the answer came; posting it again (a reload) leads to the campaign it made."""
    desk = Desk(db)
    c = desk.signed_in()
    path, _ = checked(c, issue_text())
    _, fields = send_fields(c, path)
    cookie = f"mailer_desk={c.cookies.get('mailer_desk')}"
    desk.close()

    def settings_for(url: str) -> Any:
        return db.settings(base_url=url, admin_token=ADMIN_TOKEN)

    with live_server(settings_for) as (server, _settings):
        body = urlencode(fields).encode()
        head = (
            f"POST {path}/send HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
            f"Cookie: {cookie}\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(head + body)
            sock.shutdown(socket.SHUT_WR)  # gone before the answer
        deadline = time.monotonic() + 15
        while not campaigns_in(db) and time.monotonic() < deadline:
            time.sleep(0.05)
        [made] = campaigns_in(db)
        retry = httpx.post(
            f"{server.url}{path}/send",
            data=fields,
            headers={"Cookie": cookie},
            follow_redirects=False,
        )
        assert retry.status_code == 303
        assert retry.headers["location"] == f"/desk/campaigns/{made.id}?again=1"
    assert len(campaigns_in(db)) == 1


def test_test_sends_are_limited_per_token(desk: Desk) -> None:
    """A test goes to any address with any pasted content: a token is not a mail relay."""
    c = desk.signed_in()
    path, page = checked(c, issue_text())
    data = {"csrf_token": form_token(page, f"{path}/test"), "list": "brief", "addresses": "a@x.org"}
    codes = [c.post(f"{path}/test", data=data).status_code for _ in range(13)]
    assert codes == [200] * 12 + [429]
    refused = c.post(f"{path}/test", data=data)
    assert "sent 12 tests within the hour" in refused.text
    assert 0 < int(refused.headers["retry-after"]) <= 3600
    assert len(list(desk.settings.outbox_dir.rglob("*.eml"))) == 12
    other = desk.signed_in(desk.ops_token)  # another token has its own count
    data["csrf_token"] = form_token(other.get(f"{path}?list=brief").text, f"{path}/test")
    assert other.post(f"{path}/test", data=data).status_code == 200
    desk.clock.advance(hours=1, seconds=1)
    data["csrf_token"] = form_token(c.get(f"{path}?list=brief").text, f"{path}/test")
    assert c.post(f"{path}/test", data=data).status_code == 200


def test_an_action_the_campaign_no_longer_allows_is_said_on_its_page(desk: Desk) -> None:
    c = desk.signed_in()
    path, _ = checked(c, issue_text())
    _, fields = send_fields(c, path)
    cid = int(c.post(f"{path}/send", data=fields).headers["location"].rsplit("/", 1)[1])
    page = c.get(f"/desk/campaigns/{cid}").text
    cancel = form_token(page, f"/desk/campaigns/{cid}/cancel")
    assert c.post(f"/desk/campaigns/{cid}/cancel", data={"csrf_token": cancel}).status_code == 303
    # a second tab still shows Pause: pressing it now is refused, on the campaign's page
    r = c.post(
        f"/desk/campaigns/{cid}/pause",
        data={"csrf_token": _action_token(desk, c, cid, "pause")},
    )
    assert r.status_code == 409 and 'id="refused"' in r.text and "cancelled" in r.text
    assert campaigns_in(desk.db)[0].status == "cancelled"
    # the "done" note only ever names an action: a crafted link shows nothing of its own
    crafted = c.get(f"/desk/campaigns/{cid}?changed=Your+account+is+locked").text
    assert "Your account is locked" not in crafted and "Done:" not in crafted
