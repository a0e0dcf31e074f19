"""Click and open tracking (issue 16) on SQLite and PostgreSQL, through the real send engine,
the outbox and the app: links rewritten per reader, redirects to the issue's own URLs,
people and machines told apart with their reasons, forged tokens refused, nothing tracked
where it must not be, opt-out and erasure honoured."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from sqlalchemy import delete, select, update

from mailer.feedback import erasure
from mailer.feedback.tracking.models import TrackingEvent
from mailer.feedback.tracking.store import forget_subscriber
from mailer.issue.model import Issue, Item
from mailer.ops.engagement import campaign_engagement, campaign_opened_clicked
from mailer.render.tokens import Signer
from mailer.render.tracking import TrackedToken, verify_click
from mailer.sending import publish
from mailer.sending.models import Campaign, Delivery
from mailer.transports import make_transport
from mailer.web.app import create_app
from mailer.web.tracking import flush_tracking
from subscribers import store
from subscribers.tracking import Track, is_opted_out, parse_track, set_opt_out, set_tracking
from tests.web_support import (
    BASE,
    AppClient,
    Web,
    add_active,
    csrf_of,
    html_body,
    send_issue,
    text_body,
    wait_for_mail,
)

BROWSER = {
    "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0 Safari/537.36",
    "Accept-Language": "en-GB,en;q=0.9",
    "Accept": "text/html",
}
R_LINK = re.compile(r'href="(http://testserver/r/[^"]+)"')
O_LINK = re.compile(r'src="(http://testserver/o/[^"]+)"')


def three_items() -> Issue:
    return Issue(
        subject="Tracked issue",
        preheader="Three stories",
        date=None,
        intro=("Good morning.",),
        items=tuple(
            Item(
                title=f"Story {n}",
                source="Example Wire",
                paragraphs=(f"Summary {n}.",),
                url=f"https://news.example.net/story/{n}?a=1&b={n}",
            )
            for n in (1, 2, 3)
        ),
        closing=("Bye.",),
    )


@pytest.fixture
def web(db: object) -> Iterator[Web]:
    w = Web(db)
    yield w
    w.close()


def _track(web: Web, slug: str = "brief", spec: str = "clicks,opens") -> None:
    with web.db.sessions.begin() as s:
        set_tracking(s, store.get_list(s, slug).id, parse_track(spec))


def _send(web: Web, readers: tuple[str, ...] = ("ada@example.com",)) -> tuple[int, list[str]]:
    for address in readers:
        add_active(web.db.sessions, address)
    cid = send_issue(web.db.sessions, web.settings, three_items())
    mails = wait_for_mail(web.settings.outbox_dir / str(cid), len(readers))
    return cid, [html_body(m) for m in mails]


def _events(web: Web) -> list[TrackingEvent]:
    assert flush_tracking(web.app, timeout=20)
    with web.db.sessions() as s:
        return list(s.scalars(select(TrackingEvent).order_by(TrackingEvent.id)))


def _sent_at(web: Web, cid: int) -> datetime:
    with web.db.sessions() as s:
        at = s.scalar(select(Delivery.sent_at).where(Delivery.campaign_id == cid))
    assert isinstance(at, datetime)
    return at


def test_a_readers_click_lands_on_the_original_url_and_counts_once_as_human(web: Web) -> None:
    _track(web)
    cid, (html,) = _send(web)
    links = R_LINK.findall(html)
    # 3 stories, each title and "read more": 6 links, plus the hidden trap
    assert len(links) == 7 and len(set(links)) == 4
    assert "news.example.net" not in html.split("</body>")[0].split("Story 1")[1][:300]
    web.clock.now = _sent_at(web, cid) + timedelta(minutes=5)
    response = web.client.get(links[0], headers=BROWSER)
    assert response.status_code == 302
    assert response.headers["location"] == "https://news.example.net/story/1?a=1&b=1"
    (event,) = _events(web)
    assert (event.kind, event.link, event.verdict, event.reason) == ("click", 0, "human", "")
    assert event.source == "redirect" and event.method == "GET" and len(event.ua_digest) == 16
    report = campaign_engagement(web.db.sessions(), cid)
    first = report.to_json()["links"][0]
    assert first == {
        "url": "https://news.example.net/story/1?a=1&b=1",
        "title": "Story 1",
        "human_clicks": 1,
        "unique_human_clickers": 1,
        "machine_clicks": 0,
        "proxy_clicks": 0,
    }
    assert report.click_through_rate == 1.0
    assert campaign_opened_clicked(web.db.sessions(), cid) == {"opened": 0, "clicked": 1}


def test_a_scanner_run_is_all_machine_with_reasons_and_humans_unchanged(web: Web) -> None:
    _track(web)
    cid, (html,) = _send(web)
    sent = _sent_at(web, cid)
    web.clock.now = sent + timedelta(seconds=1)
    scanner = {"User-Agent": "Mozilla/5.0 (compatible; Barracuda Sentinel)"}
    for n, link in enumerate(dict.fromkeys(R_LINK.findall(html))):  # every link, the trap too
        web.clock.now += timedelta(milliseconds=100)
        method = "HEAD" if n % 2 else "GET"
        response = web.client.request(method, link, headers=scanner)
        assert response.status_code in (200, 302)
    events = _events(web)
    assert len(events) == 4 and {e.verdict for e in events} == {"machine"}
    reasons = " | ".join(e.reason for e in events)
    for expected in ("HEAD request", "scanner user agent", "no Accept-Language", "after sending"):
        assert expected in reasons
    assert any("hidden trap link" in e.reason for e in events)
    report = campaign_engagement(web.db.sessions(), cid).to_json()
    assert sum(link["human_clicks"] for link in report["links"]) == 0
    assert sum(link["machine_clicks"] for link in report["links"]) == 3


def test_a_burst_of_browser_like_clicks_over_every_link_is_a_machine(web: Web) -> None:
    _track(web)
    cid, (html,) = _send(web)
    web.clock.now = _sent_at(web, cid) + timedelta(minutes=10)
    unique = list(dict.fromkeys(R_LINK.findall(html)))[:3]  # the three stories, no trap
    for link in unique:
        web.clock.now += timedelta(milliseconds=300)
        assert web.client.get(link, headers=BROWSER).status_code == 302
    events = _events(web)
    assert [e.verdict for e in events] == ["machine"] * 3
    assert all(e.reason.startswith("burst: 3 clicks on 3 links") for e in events)
    # a person reading later, one story at a time, is a person
    web.clock.now += timedelta(minutes=3)
    web.client.get(unique[1], headers=BROWSER)
    assert _events(web)[-1].verdict == "human"


def test_open_pixel_apple_proxy_google_proxy_and_a_person(web: Web) -> None:
    _track(web)
    cid, (html,) = _send(web)
    (pixel,) = O_LINK.findall(html)
    web.clock.now = _sent_at(web, cid) + timedelta(seconds=2)
    apple = web.client.get(pixel, headers={"User-Agent": "Mozilla/5.0"})
    assert apple.status_code == 200 and apple.headers["content-type"] == "image/gif"
    assert apple.content.startswith(b"GIF89a")
    web.client.get(pixel, headers={"User-Agent": "Mozilla/5.0 (via ggpht.com GoogleImageProxy)"})
    web.client.get(pixel, headers=BROWSER, ip="17.58.1.2")
    web.client.get(pixel, headers=BROWSER)
    events = _events(web)
    assert [(e.kind, e.verdict) for e in events] == [("open", "proxy")] * 3 + [("open", "human")]
    assert "Apple Mail Privacy Protection" in events[0].reason
    assert events[1].reason == "Gmail image proxy"
    assert "Apple address" in events[2].reason
    report = campaign_engagement(web.db.sessions(), cid)
    assert report.to_json()["opens"] == {"human": 1, "machine": 0, "proxy": 3}


def _tamper(token: str) -> Iterator[str]:
    parts = token.split(".")
    yield token[:-1]  # truncated
    yield token[: len(token) // 2]
    yield ".".join(parts[:3]) + "." + parts[4]  # link index dropped
    for n, part in enumerate(parts):  # one character changed in every part
        flipped = part[:-1] + ("0" if part[-1] != "0" else "1")
        if n in (2, 4):  # a signature: another canonical last character
            flipped = part[:-1] + ("A" if part[-1] != "A" else "Q")
        yield ".".join([*parts[:n], flipped, *parts[n + 1 :]])
    yield ".".join([parts[0], "0" + parts[1], *parts[2:]])  # the same number, spelled longer
    yield token.upper()
    yield token + "." + parts[4]
    yield "../" + token
    yield token + "%00"


def test_forged_altered_truncated_and_cross_delivery_tokens_are_404(web: Web) -> None:
    _track(web)
    cid, (ada, bob) = _send(web, ("ada@example.com", "bob@example.com"))
    web.clock.now = _sent_at(web, cid) + timedelta(minutes=5)
    ada_link = R_LINK.findall(ada)[0]
    bob_link = R_LINK.findall(bob)[2]
    token = ada_link.rsplit("/", 1)[1]
    bob_token = bob_link.rsplit("/", 1)[1]
    a, b = token.split("."), bob_token.split(".")
    spliced = [
        ".".join([a[0], b[1], a[2], a[3], a[4]]),  # Bob's delivery with Ada's signature
        ".".join([a[0], a[1], b[2], a[3], a[4]]),  # Ada's delivery with Bob's signature
        ".".join(["ff", *a[1:]]),  # another campaign
    ]
    # a genuine signature for a link index the campaign does not have
    signer = web.signer
    outside = f"{cid:x}.{a[1]}.{a[2]}.{99:x}.{signer.mac(f'r.{cid:x}.{99:x}')}"
    for bad in [*_tamper(token), *spliced, outside, "", "x", "a" * 5000]:
        response = web.client.get(f"/r/{bad}", headers=BROWSER)
        assert response.status_code == 404, bad
        assert "location" not in response.headers
    assert web.client.get(f"/o/{token}", headers=BROWSER).status_code == 404  # a click is no open
    assert _events(web) == []
    # the genuine ones still work, each to its own story
    assert web.client.get(f"/r/{token}").headers["location"].endswith("story/1?a=1&b=1")
    assert web.client.get(f"/r/{bob_token}").headers["location"].endswith("story/2?a=1&b=2")


def test_a_deleted_campaign_and_an_old_key(web: Web) -> None:
    _track(web)
    cid, (html,) = _send(web)
    link = R_LINK.findall(html)[0]
    # the key rotates: links in inboxes keep working with the old key among the old ones
    rotated = dataclasses.replace(
        web.settings,
        secret_key="another-strong-key-7c1e9a04b2f6d835",
        old_secret_keys=(web.settings.secret_key,),
    )
    app = create_app(rotated, clock=web.clock)
    client = AppClient(app, base_url=BASE)
    try:
        assert client.get(link).status_code == 302
        assert flush_tracking(app)  # its event is written before the campaign goes
        with web.db.sessions.begin() as s:
            s.execute(update(Campaign).where(Campaign.id == cid).values(status="cancelled"))
            s.execute(delete(Delivery).where(Delivery.campaign_id == cid))
            s.execute(delete(Campaign).where(Campaign.id == cid))
        fresh = AppClient(create_app(web.settings, clock=web.clock), base_url=BASE)
        try:
            assert fresh.get(link).status_code == 404
        finally:
            fresh.close()
    finally:
        client.close()
        flush_tracking(app)
        app.state.web.close()


def test_nothing_is_tracked_where_it_must_not_be(web: Web) -> None:
    # a list that does not track: no rewritten link, no pixel
    _, (html,) = _send(web)
    assert not R_LINK.search(html) and not O_LINK.search(html)
    assert "https://news.example.net/story/1?a=1&amp;b=1" in html
    # a tracking list: the plain text and the web edition keep the original links
    _track(web, "other", "clicks")
    with web.db.sessions.begin() as s:
        store.subscribe(s, "cy@example.com", store.get_list(s, "other"), confirmed=True)
    cid2 = send_issue(web.db.sessions, web.settings, three_items(), "other")
    (mail,) = wait_for_mail(web.settings.outbox_dir / str(cid2))
    assert R_LINK.search(html_body(mail)) and not O_LINK.search(html_body(mail))
    text = text_body(mail)
    assert "/r/" not in text and "https://news.example.net/story/1?a=1&b=1" in text
    with web.db.sessions() as s:
        campaign = s.get(Campaign, cid2)
        assert campaign is not None
        assert "/r/" not in campaign.archive_html and "/r/" not in campaign.html


def test_opt_out_records_nothing_and_forgets_the_past_erasure_deletes(web: Web) -> None:
    _track(web)
    cid, (ada, bob) = _send(web, ("ada@example.com", "bob@example.com"))
    web.clock.now = _sent_at(web, cid) + timedelta(minutes=5)
    web.client.get(R_LINK.findall(ada)[0], headers=BROWSER)
    web.client.get(R_LINK.findall(bob)[0], headers=BROWSER)
    assert len(_events(web)) == 2
    with web.db.sessions.begin() as s:
        ada_id = store.find_subscriber(s, "ada@example.com")
    assert ada_id is not None
    with web.db.sessions.begin() as s:
        assert set_opt_out(s, ada_id.id, True)
        assert forget_subscriber(s, ada_id.id) == 1
    web.clock.now += timedelta(minutes=5)
    response = web.client.get(R_LINK.findall(ada)[2], headers=BROWSER)
    assert response.status_code == 302  # the link still works ...
    assert [e.subscriber_id for e in _events(web)] != [ada_id.id]  # ... and records nothing
    assert all(e.subscriber_id != ada_id.id for e in _events(web))
    with web.db.sessions.begin() as s:
        erasure.erase(s, "bob@example.com")
    assert _events(web) == []


def test_parse_track_and_the_setting() -> None:
    assert parse_track("clicks,opens") == Track(True, True)
    assert parse_track(" Opens ") == Track(False, True)
    assert parse_track("off") == Track() and parse_track("") == Track()
    with pytest.raises(Exception, match="unknown value"):
        parse_track("clicks,views")
    assert Track(True, False).describe() == "clicks" and Track().describe() == "off"


def test_verify_click_refuses_oversized_and_noncanonical() -> None:
    signer = Signer("k" * 40)
    c, d, i = 5, 1000, 2
    good = f"{c:x}.{d:x}.{signer.mac(f't.{c:x}.{d:x}')}.{i:x}.{signer.mac(f'r.{c:x}.{i:x}')}"
    assert verify_click(signer, good) == TrackedToken(5, 1000, 2)
    sig = good.split(".")[2]
    for bad_last in "BCRh":  # same 128 bits, a non-canonical spelling
        with pytest.raises(Exception, match="malformed"):
            verify_click(signer, good.replace(sig, sig[:-1] + bad_last))
    with pytest.raises(Exception, match="malformed"):
        verify_click(signer, good + "0" * 200)


def test_the_preferences_page_opts_out_and_forgets(web: Web) -> None:
    _track(web)
    cid, (html,) = _send(web)
    web.clock.now = _sent_at(web, cid) + timedelta(minutes=5)
    web.client.get(R_LINK.findall(html)[0], headers=BROWSER)
    assert len(_events(web)) == 1
    with web.db.sessions() as s:
        reader = store.find_subscriber(s, "ada@example.com")
    assert reader is not None
    token = web.signer.preferences_token(reader.id, web.brief_id, now=web.clock.now)
    page = web.client.get(f"/preferences/{token}")
    assert 'name="no_tracking" value="1">' in page.text  # not ticked
    data = {"csrf_token": csrf_of(page.text), "name": "Ada", "list": ["brief"]}
    saved = web.client.post(f"/preferences/{token}", data={**data, "no_tracking": "1"})
    assert saved.status_code == 200 and 'name="no_tracking" value="1" checked' in saved.text
    assert _events(web) == []  # what was recorded is gone
    web.clock.now += timedelta(minutes=5)
    assert web.client.get(R_LINK.findall(html)[2], headers=BROWSER).status_code == 302
    assert _events(web) == []  # and nothing new is recorded
    # ticked off again: recorded from then on, still subscribed throughout
    again = web.client.post(
        f"/preferences/{token}", data={**data, "csrf_token": csrf_of(saved.text)}
    )
    assert again.status_code == 200 and 'name="no_tracking" value="1">' in again.text
    web.client.get(R_LINK.findall(html)[4], headers=BROWSER)
    assert [e.link for e in _events(web)] == [2]
    with web.db.sessions() as s:
        assert not is_opted_out(s, reader.id)


def test_admin_links_page_json_and_metrics(db: object) -> None:
    web = Web(db, admin_token="admin-token-0123456789abcdef")
    try:
        _track(web)
        cid, (html,) = _send(web)
        web.clock.now = _sent_at(web, cid) + timedelta(minutes=5)
        web.client.get(R_LINK.findall(html)[2], headers=BROWSER)  # story 2, a person
        web.client.get(R_LINK.findall(html)[0], headers={"User-Agent": "curl/8.5"})
        (pixel,) = O_LINK.findall(html)
        web.client.get(pixel, headers={"User-Agent": "Mozilla/5.0"})
        assert len(_events(web)) == 3
        auth = {"Authorization": "Bearer admin-token-0123456789abcdef"}
        assert web.client.get(f"/admin/campaigns/{cid}/links").status_code == 401
        page = web.client.get(f"/admin/campaigns/{cid}/links", headers=auth)
        assert page.status_code == 200 and "Story 2" in page.text
        assert "Content-Security-Policy" in page.headers and "<script" not in page.text
        dashboard = web.client.get("/admin", headers=auth)
        assert f'href="/admin/campaigns/{cid}/links"' in dashboard.text
        data = web.client.get(f"/admin/campaigns/{cid}/links.json", headers=auth).json()
        assert data == campaign_engagement(web.db.sessions(), cid).to_json()
        assert data["links"][1]["human_clicks"] == 1 and data["links"][0]["machine_clicks"] == 1
        assert data["opens"] == {"human": 0, "machine": 0, "proxy": 1}
        assert web.client.get("/admin/campaigns/999/links.json", headers=auth).status_code == 404
        metrics = web.client.get("/metrics", headers=auth).text
        assert 'mailer_tracking_events_total{kind="click",verdict="human"} 1.0' in metrics
        assert 'mailer_tracking_events_total{kind="click",verdict="machine"} 1.0' in metrics
        assert 'mailer_tracking_events_total{kind="open",verdict="proxy"} 1.0' in metrics
    finally:
        web.close()


def test_the_edges_of_the_fast_path(web: Web) -> None:
    _track(web)
    _, (html,) = _send(web)
    link = R_LINK.findall(html)[0]
    token = link.rsplit("/", 1)[1]
    posted = web.client.post(f"/r/{token}", data={"x": "1"})
    assert posted.status_code == 405 and posted.headers["allow"] == "GET, HEAD"
    for path in ("/r/", "/o/", f"/r/{token}/extra", f"/r/{token}?next=https://evil.example"):
        got = web.client.get(path)
        if path.endswith("evil.example"):  # a query string is not part of the token
            assert got.headers["location"].endswith("story/1?a=1&b=1")
        else:
            assert got.status_code == 404 and "location" not in got.headers, path
    head = web.client.request("HEAD", O_LINK.findall(html)[0], headers=BROWSER)
    assert head.status_code == 200 and head.content == b""
    for response in (head, web.client.get(link, headers=BROWSER), web.client.get("/r/x")):
        assert response.headers["cache-control"] == "no-store, private"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["x-content-type-options"] == "nosniff"
    huge = web.client.get(link, headers={"User-Agent": "A" * 20_000, "Accept-Language": "en"})
    assert huge.status_code == 302
    events = _events(web)
    assert [e.method for e in events] == ["GET", "HEAD", "GET", "GET"]
    assert all(len(e.ua) <= 80 for e in events) and events[-1].ua == "A" * 80


def test_a_non_ascii_story_url_is_one_clean_location(web: Web) -> None:
    _track(web)
    add_active(web.db.sessions, "ada@example.com")
    issue = dataclasses.replace(
        three_items(),
        items=(Item("新闻", "Wire", ("Text.",), "https://news.example.net/报道/1?q=a b"),),
    )
    cid = send_issue(web.db.sessions, web.settings, issue)
    (mail,) = wait_for_mail(web.settings.outbox_dir / str(cid))
    link = R_LINK.findall(html_body(mail))[0]
    got = web.client.get(link, headers=BROWSER)
    assert got.status_code == 302
    assert got.headers["location"] == "https://news.example.net/%E6%8A%A5%E9%81%93/1?q=a%20b"
    assert [(e.link, e.verdict) for e in _events(web)] == [(0, "machine")]  # right after sending


def test_a_test_send_of_a_tracking_list_is_not_tracked(web: Web) -> None:
    _track(web)
    with web.db.sessions() as s:
        mlist = store.get_list(s, "brief")
    rendered = publish.render_for(web.settings, mlist, three_items())
    transport = make_transport(web.settings)
    (sent,) = publish.send_test(web.settings, transport, mlist, rendered, ["editor@example.com"])
    assert sent.error is None
    (mail,) = wait_for_mail(web.settings.outbox_dir / "0")
    body = html_body(mail)
    assert "news.example.net/story/1" in body
    assert not R_LINK.search(body) and not O_LINK.search(body)


def test_one_link_replayed_in_a_flood_is_a_machine(web: Web) -> None:
    _track(web)
    cid, (html,) = _send(web)
    web.clock.now = _sent_at(web, cid) + timedelta(minutes=10)
    link = R_LINK.findall(html)[0]
    assert web.client.get(link, headers=BROWSER).status_code == 302  # a person's click
    web.clock.now += timedelta(minutes=5)
    for _ in range(6):  # the same link six times within a second: 2 x MAILER_TRACK_BURST_LINKS
        web.clock.now += timedelta(milliseconds=150)
        assert web.client.get(link, headers=BROWSER).status_code == 302
    events = _events(web)
    assert [e.verdict for e in events] == ["human"] + ["machine"] * 6
    assert events[-1].reason.startswith("burst: 6 clicks on 1 links")
    report = campaign_engagement(web.db.sessions(), cid).to_json()
    assert report["links"][0]["human_clicks"] == 1 and report["links"][0]["machine_clicks"] == 6
