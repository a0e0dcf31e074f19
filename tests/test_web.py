"""Reader pages in-process (httpx against the ASGI app), on SQLite and PostgreSQL: subscribe
with double opt-in, confirm, unsubscribe (form and RFC 8058 one-click), preferences."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import select

from mailer.web.app import create_app
from subscribers import store
from subscribers.models import ConsentEvent, Subscriber, Subscription
from tests.conftest import Database
from tests.web_support import (
    BASE,
    AppClient,
    Web,
    csrf_of,
    html_body,
    link_in,
    text_body,
)


@pytest.fixture
def web(db: Database) -> Iterator[Web]:
    w = Web(db)
    yield w
    w.close()


def status_of(web: Web, address: str, list_id: int | None = None) -> str | None:
    with web.db.sessions() as s:
        sub = store.find_subscriber(s, address)
        if sub is None:
            return None
        subn = s.scalar(
            select(Subscription).where(
                Subscription.subscriber_id == sub.id,
                Subscription.list_id == (list_id or web.brief_id),
            )
        )
        return subn.status if subn else None


def events(web: Web, action: str) -> list[ConsentEvent]:
    with web.db.sessions() as s:
        return list(
            s.scalars(
                select(ConsentEvent).where(ConsentEvent.action == action).order_by(ConsentEvent.id)
            )
        )


# -- subscribe and confirm --------------------------------------------------------------------


def test_subscribe_then_confirm_from_the_mail(web: Web) -> None:
    page = web.client.get("/subscribe/brief")
    assert page.status_code == 200
    assert "mailer_csrf=" in page.headers["set-cookie"]
    assert 'action="http://testserver/subscribe/brief"' in page.text
    assert '<label for="email">' in page.text

    done = web.subscribe("Reader.One@Example.COM", name="Reader One")
    assert done.status_code == 200
    assert "Check your inbox" in done.text
    assert status_of(web, "reader.one@example.com") == "pending"
    [ev] = events(web, "subscribe")
    assert (ev.source, ev.ip) == ("web:subscribe", "203.0.113.10")
    assert "python-httpx" in (ev.user_agent or "")

    [mail] = web.mails()
    assert mail["To"] == "reader.one@example.com"
    assert mail["Subject"] == "Confirm your subscription to The Test Brief"
    assert mail["Auto-Submitted"] == "auto-generated"
    assert mail["List-Unsubscribe"] is None
    link = link_in(text_body(mail), "confirm")
    assert link.startswith(f"{BASE}/confirm/c.")
    assert f'href="{link}"' in html_body(mail)
    assert "Yes, subscribe me" in html_body(mail)

    # opening the link (what a mail scanner does too) only shows the button
    for _ in range(2):
        button = web.client.get(link.removeprefix(BASE))
        assert button.status_code == 200
        assert "Confirm my subscription" in button.text
        assert button.text.count("<button") == 1
    assert status_of(web, "reader.one@example.com") == "pending"
    assert events(web, "confirm") == []

    confirmed = web.client.post(
        link.removeprefix(BASE),
        data={"csrf_token": csrf_of(button.text)},
        headers={"user-agent": "Reader/1.0"},
    )
    assert confirmed.status_code == 200
    assert "You are subscribed" in confirmed.text
    assert status_of(web, "reader.one@example.com") == "active"
    [ev] = events(web, "confirm")
    assert (ev.source, ev.ip, ev.user_agent) == ("web:confirm", "203.0.113.10", "Reader/1.0")
    with web.db.sessions() as s:
        assert store.get_subscriber(s, "reader.one@example.com").name == "Reader One"

    # a second press: still fine, no new event
    again = web.client.post(link.removeprefix(BASE), data={"csrf_token": csrf_of(button.text)})
    assert again.status_code == 200
    assert "You are subscribed" in again.text
    assert len(events(web, "confirm")) == 1


def test_single_opt_in_list_activates_at_once_without_mail(db: Database) -> None:
    web = Web(db)
    try:
        with db.sessions.begin() as s:
            store.create_list(
                s, "open", name="Open List", from_address="o@example.org", double_opt_in=False
            )
        done = web.subscribe("walk-in@example.com", slug="open")
        assert done.status_code == 200
        assert "Thank you" in done.text
        with db.sessions() as s:
            mlist = store.get_list(s, "open")
        assert status_of(web, "walk-in@example.com", mlist.id) == "active"
        assert web.mails() == []
    finally:
        web.close()


def test_the_answer_is_the_same_for_every_kind_of_address(web: Web) -> None:
    """No address enumeration: new, pending, active, unsubscribed and suppressed addresses
    get byte-identical pages (the typed address aside) and the same headers."""
    states = ["aa1", "aa2", "aa3", "aa4", "aa5"]
    addresses = [f"{s}@example.com" for s in states]
    with web.db.sessions.begin() as s:
        mlist = store.get_list(s, "brief")
        store.subscribe(s, addresses[1], mlist)  # pending
        store.subscribe(s, addresses[2], mlist, confirmed=True)  # active
        unsub = store.subscribe(s, addresses[3], mlist, confirmed=True).subscriber
        store.unsubscribe(s, unsub.id, None, actor=store.CLI)
        store.suppress(s, addresses[4], "complaint")
    answers = []
    for address in addresses:
        r = web.subscribe(address)
        headers = {k: v for k, v in r.headers.items() if k not in ("date", "set-cookie")}
        answers.append((r.status_code, r.content.replace(address.encode(), b"ADDR"), headers))
    assert all(a == answers[0] for a in answers[1:])
    assert answers[0][0] == 200
    # what happened differs, quietly: mails to the pending, unsubscribed and suppressed
    # addresses and the new one (each must confirm), none to the active one
    assert sorted(m["To"] for m in web.mails()) == sorted(
        [addresses[0], addresses[1], addresses[3], addresses[4]]
    )
    assert status_of(web, addresses[2]) == "active"


def test_a_stranger_cannot_rename_a_reader(web: Web) -> None:
    with web.db.sessions.begin() as s:
        store.subscribe(s, "named@example.com", store.get_list(s, "brief"), name="Real Name")
    web.subscribe("named@example.com", name="Someone Else")
    with web.db.sessions() as s:
        assert store.get_subscriber(s, "named@example.com").name == "Real Name"


@pytest.mark.parametrize(
    ("address", "name", "field"),
    [
        ("not-an-address", "", "email"),
        ("a@b", "", "email"),
        ("x" * 330 + "@example.com", "", "email"),
        ("fine@example.com", "n" * 201, "name"),
        ("fine@example.com", "evil\u202ename", "name"),
    ],
)
def test_bad_input_is_shown_on_the_form(web: Web, address: str, name: str, field: str) -> None:
    r = web.subscribe(address, name=name)
    assert r.status_code == 422
    assert 'role="alert"' in r.text
    assert f'href="#{field}"' in r.text
    assert 'aria-invalid="true"' in r.text
    assert csrf_of(r.text)  # the form comes back, ready to send again
    with web.db.sessions() as s:
        assert s.scalar(select(Subscriber.id)) is None
    assert web.mails() == []


def test_the_honeypot_swallows_bots(web: Web) -> None:
    human = web.subscribe("human@example.com")
    bot = web.subscribe("botvictim@example.com", website="http://spam.example")
    assert bot.status_code == 200
    assert bot.content.replace(b"botvictim", b"X") == human.content.replace(b"human", b"X")
    assert status_of(web, "botvictim@example.com") is None
    assert [m["To"] for m in web.mails()] == ["human@example.com"]


def test_flood_from_one_ip_is_throttled(db: Database) -> None:
    web = Web(db, subscribe_ip_limit=5, subscribe_window=600.0)
    try:
        codes = [web.subscribe(f"flood{i}@example.com").status_code for i in range(8)]
        assert codes == [200] * 5 + [429] * 3
        r = web.subscribe("flood9@example.com")
        assert r.status_code == 429
        assert 0 < int(r.headers["retry-after"]) <= 600
        assert "Too many requests" in r.text
        assert len(web.mails()) == 5
        other = web.new_client(ip="198.51.100.7")
        try:
            assert web.subscribe("elsewhere@example.com", client=other).status_code == 200
        finally:
            other.close()
        web.clock.advance(seconds=601)
        assert web.subscribe("later@example.com").status_code == 200
    finally:
        web.close()


def test_one_address_gets_few_mails_whoever_asks(db: Database) -> None:
    web = Web(db, subscribe_address_limit=2)
    try:
        pages = []
        for i in range(5):
            client = web.new_client(ip=f"198.51.100.{i + 1}")
            try:
                pages.append(web.subscribe("target@example.com", client=client))
            finally:
                client.close()
        assert {p.status_code for p in pages} == {200}
        assert len({p.content for p in pages}) == 1
        assert len(web.mails()) == 2
    finally:
        web.close()


# -- CSRF ---------------------------------------------------------------------------------------


def test_csrf_is_required_on_the_subscribe_form(web: Web) -> None:
    page = web.client.get("/subscribe/brief")
    token = csrf_of(page.text)
    other_token = csrf_of(web.client.get("/subscribe/other").text)
    data = {"email": "csrf@example.com"}
    assert web.client.post("/subscribe/brief", data=data).status_code == 403
    bad = web.client.post("/subscribe/brief", data={**data, "csrf_token": "1.x.y"})
    assert bad.status_code == 403
    assert "security token" in bad.text
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    r = web.client.post("/subscribe/brief", data={**data, "csrf_token": forged})
    assert r.status_code == 403
    # a token for another form
    assert (
        web.client.post("/subscribe/brief", data={**data, "csrf_token": other_token}).status_code
        == 403
    )
    # the right token from another browser (a cross-site page cannot read our cookie)
    stranger = web.new_client()
    try:
        r = stranger.post("/subscribe/brief", data={**data, "csrf_token": token})
        assert r.status_code == 403
    finally:
        stranger.close()
    # a stale form
    web.clock.advance(days=2)
    r = web.client.post("/subscribe/brief", data={**data, "csrf_token": token})
    assert r.status_code == 403
    assert "expired" in r.text
    assert status_of(web, "csrf@example.com") is None
    assert web.mails() == []


# -- tokens -------------------------------------------------------------------------------------


def _flip(token: str) -> str:
    last = token[-3]
    return token[:-3] + ("B" if last != "B" else "C") + token[-2:]


def test_bad_confirm_links_get_a_clear_page(web: Web) -> None:
    web.subscribe("late@example.com")
    link = link_in(text_body(web.mails()[0]), "confirm").removeprefix(BASE)
    token = link.rsplit("/", 1)[1]

    tampered = web.client.get(f"/confirm/{_flip(token)}")
    assert tampered.status_code == 400
    assert "This link is not valid" in tampered.text
    assert f"{BASE}/subscribe/brief" in tampered.text and f"{BASE}/subscribe/other" in tampered.text

    assert web.client.get("/confirm/garbage").status_code == 400
    assert web.client.get("/confirm/" + "x" * 5000).status_code in (400, 404, 414)

    sid = web.signer.verify(token, "confirm", now=web.clock.now).subscriber_id
    wrong_purpose = web.signer.sign("unsubscribe", sid, web.brief_id)
    assert web.client.get(f"/confirm/{wrong_purpose}").status_code == 400

    web.clock.advance(days=8)
    expired = web.client.get(link)
    assert expired.status_code == 410
    assert "expired" in expired.text
    assert "Ask for a new link" in expired.text
    assert f"{BASE}/subscribe/brief" in expired.text
    assert f"{BASE}/subscribe/other" not in expired.text  # the right list is offered
    assert status_of(web, "late@example.com") == "pending"


def test_confirm_of_an_erased_subscriber_is_a_404_page(web: Web) -> None:
    web.subscribe("gone@example.com")
    link = link_in(text_body(web.mails()[0]), "confirm").removeprefix(BASE)
    with web.db.sessions.begin() as s:
        store.erase(s, "gone@example.com")
    r = web.client.get(link)
    assert r.status_code == 404
    assert "no longer exists" in r.text


def test_tokens_of_others_and_for_other_things_are_refused(web: Web) -> None:
    with web.db.sessions.begin() as s:
        mlist = store.get_list(s, "brief")
        alice = store.subscribe(s, "alice@example.com", mlist, confirmed=True).subscriber.id
        bob = store.subscribe(s, "bob@example.com", mlist, confirmed=True).subscriber.id
    alice_token = web.signer.sign("unsubscribe", alice, web.brief_id)
    # Alice's token with Bob's id put in: the signature no longer matches
    forged = alice_token.replace(f"u.{alice:x}.", f"u.{bob:x}.", 1)
    assert forged != alice_token
    assert web.client.get(f"/unsubscribe/{forged}").status_code == 400
    r = web.client.post(
        f"/unsubscribe/{forged}", data={"List-Unsubscribe": "One-Click"}, cookies=None
    )
    assert r.status_code == 400
    # and for another list
    other_list = alice_token.replace(f".{web.brief_id:x}.", f".{web.other_id:x}.", 1)
    assert (
        web.client.post(
            f"/unsubscribe/{other_list}", data={"List-Unsubscribe": "One-Click"}
        ).status_code
        == 400
    )
    # a preferences token is not an unsubscribe token, and the reverse
    prefs = web.signer.preferences_token(bob, web.brief_id, now=web.clock.now)
    assert (
        web.client.post(f"/unsubscribe/{prefs}", data={"List-Unsubscribe": "One-Click"}).status_code
        == 400
    )
    unsub = web.signer.sign("unsubscribe", bob, web.brief_id)
    assert web.client.get(f"/preferences/{unsub}").status_code == 400
    assert status_of(web, "bob@example.com") == "active"
    assert status_of(web, "alice@example.com") == "active"


# -- unsubscribe --------------------------------------------------------------------------------


def _two_lists(web: Web, address: str = "reader@example.com") -> int:
    with web.db.sessions.begin() as s:
        sid = store.subscribe(s, address, store.get_list(s, "brief"), confirmed=True).subscriber.id
        store.subscribe(s, address, store.get_list(s, "other"), confirmed=True)
    return sid


def test_a_get_never_unsubscribes(web: Web) -> None:
    sid = _two_lists(web)
    token = web.signer.sign("unsubscribe", sid, web.brief_id)
    for _ in range(3):
        page = web.client.get(f"/unsubscribe/{token}")
        assert page.status_code == 200
    assert "Unsubscribe from The Test Brief" in page.text
    assert "r•••@example.com" in page.text and "reader@example.com" not in page.text
    assert page.text.count("<button") == 1
    assert page.headers["cache-control"] == "no-store"
    assert status_of(web, "reader@example.com") == "active"


def test_unsubscribe_form_this_list_then_resubscribe_then_all(web: Web) -> None:
    sid = _two_lists(web)
    token = web.signer.sign("unsubscribe", sid, web.brief_id)
    page = web.client.get(f"/unsubscribe/{token}")
    r = web.client.post(
        f"/unsubscribe/{token}", data={"csrf_token": csrf_of(page.text), "scope": "list"}
    )
    assert r.status_code == 200
    assert "You are unsubscribed" in r.text
    assert "Subscribe to The Test Brief again" in r.text
    assert status_of(web, "reader@example.com") == "unsubscribed"
    assert status_of(web, "reader@example.com", web.other_id) == "active"

    # "subscribe again" only starts a fresh double opt-in: pending, and a confirmation mail
    again = web.client.post(
        f"/unsubscribe/{token}", data={"csrf_token": csrf_of(r.text), "action": "resubscribe"}
    )
    assert again.status_code == 200
    assert "Check your inbox" in again.text
    assert status_of(web, "reader@example.com") == "pending"
    assert events(web, "confirm") == []
    [mail] = web.mails()
    assert mail["To"] == "reader@example.com"
    assert link_in(text_body(mail), "confirm").startswith(f"{BASE}/confirm/c.")

    page = web.client.get(f"/unsubscribe/{token}")
    assert 'value="all"' in page.text
    r = web.client.post(
        f"/unsubscribe/{token}", data={"csrf_token": csrf_of(page.text), "scope": "all"}
    )
    assert "any of our newsletters" in r.text
    assert status_of(web, "reader@example.com") == "unsubscribed"
    assert status_of(web, "reader@example.com", web.other_id) == "unsubscribed"
    sources = [e.source for e in events(web, "unsubscribe")]
    assert sources == ["web:unsubscribe"] * 3


def test_unsubscribe_form_needs_its_csrf_token(web: Web) -> None:
    sid = _two_lists(web)
    token = web.signer.sign("unsubscribe", sid, web.brief_id)
    other = web.signer.sign("unsubscribe", sid, web.other_id)
    other_csrf = csrf_of(web.client.get(f"/unsubscribe/{other}").text)
    assert web.client.post(f"/unsubscribe/{token}", data={"scope": "all"}).status_code == 403
    r = web.client.post(f"/unsubscribe/{token}", data={"scope": "all", "csrf_token": other_csrf})
    assert r.status_code == 403
    assert status_of(web, "reader@example.com") == "active"


@pytest.mark.parametrize("encoding", ["urlencoded", "multipart"])
def test_one_click_unsubscribe_rfc8058(web: Web, encoding: str) -> None:
    sid = _two_lists(web)
    token = web.signer.sign("unsubscribe", sid, web.brief_id)
    provider = web.new_client(ip="192.0.2.44")  # no cookies, no CSRF token, any agent
    try:
        for _ in range(3):
            if encoding == "urlencoded":
                r = provider.post(
                    f"/unsubscribe/{token}",
                    content=b"List-Unsubscribe=One-Click",
                    headers={
                        "content-type": "application/x-www-form-urlencoded",
                        "user-agent": "MailboxProvider/2.0",
                    },
                )
            else:
                r = provider.post(
                    f"/unsubscribe/{token}",
                    files={"List-Unsubscribe": (None, "One-Click")},
                    headers={"user-agent": "MailboxProvider/2.0"},
                )
            assert r.status_code == 200
            assert len(r.content) < 64
            assert "set-cookie" not in r.headers
    finally:
        provider.close()
    assert status_of(web, "reader@example.com") == "unsubscribed"
    assert status_of(web, "reader@example.com", web.other_id) == "active"
    [ev] = events(web, "unsubscribe")  # idempotent: one change, one ledger row
    assert (ev.source, ev.ip, ev.user_agent) == (
        "web:one-click",
        "192.0.2.44",
        "MailboxProvider/2.0",
    )


def test_one_click_for_an_erased_reader_is_still_200(web: Web) -> None:
    sid = _two_lists(web)
    token = web.signer.sign("unsubscribe", sid, web.brief_id)
    with web.db.sessions.begin() as s:
        store.erase(s, "reader@example.com")
    r = web.client.post(f"/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"})
    assert r.status_code == 200
    page = web.client.get(f"/unsubscribe/{token}")
    assert page.status_code == 200
    assert "Nothing to unsubscribe" in page.text


# -- preferences --------------------------------------------------------------------------------


def test_preferences_change_lists_and_name_with_a_ledger(web: Web) -> None:
    with web.db.sessions.begin() as s:
        sid = store.subscribe(
            s, "pref@example.com", store.get_list(s, "brief"), confirmed=True, name="Old"
        ).subscriber.id
        store.subscribe(s, "pref@example.com", store.get_list(s, "other"), confirmed=True)
    token = web.signer.preferences_token(sid, web.brief_id, now=web.clock.now)
    page = web.client.get(f"/preferences/{token}")
    assert page.status_code == 200
    assert 'id="list-brief" name="list" value="brief" checked' in page.text
    assert 'id="list-other" name="list" value="other" checked' in page.text
    assert 'value="Old"' in page.text

    r = web.client.post(
        f"/preferences/{token}",
        data={"csrf_token": csrf_of(page.text), "name": "  New   Name ", "list": ["other"]},
    )
    assert r.status_code == 200
    assert "Your changes are saved" in r.text
    assert status_of(web, "pref@example.com") == "unsubscribed"
    assert status_of(web, "pref@example.com", web.other_id) == "active"
    with web.db.sessions() as s:
        assert store.get_subscriber(s, "pref@example.com").name == "New Name"
    [changed] = events(web, "preferences")
    assert changed.detail == {"changed": ["name"]}
    assert changed.source == "web:preferences" and changed.ip == "203.0.113.10"
    assert [e.source for e in events(web, "unsubscribe")] == ["web:preferences"]

    # saving the same choices again changes nothing and writes nothing
    r2 = web.client.post(
        f"/preferences/{token}",
        data={"csrf_token": csrf_of(r.text), "name": "New Name", "list": ["other"]},
    )
    assert r2.status_code == 200
    assert len(events(web, "preferences")) == 1 and len(events(web, "unsubscribe")) == 1
    assert web.mails() == []

    # ticking the list again starts a fresh double opt-in: pending, a mail, no confirm
    r3 = web.client.post(
        f"/preferences/{token}",
        data={"csrf_token": csrf_of(r2.text), "name": "New Name", "list": ["brief", "other"]},
    )
    assert "We have sent you an email to confirm The Test Brief" in r3.text
    assert status_of(web, "pref@example.com") == "pending"
    assert events(web, "confirm") == []
    [mail] = web.mails()
    assert mail["To"] == "pref@example.com"


def test_preferences_refuse_bad_names_missing_csrf_and_expired_links(web: Web) -> None:
    with web.db.sessions.begin() as s:
        sid = store.subscribe(
            s, "pref@example.com", store.get_list(s, "brief"), confirmed=True
        ).subscriber.id
    token = web.signer.preferences_token(sid, web.brief_id, now=web.clock.now)
    page = web.client.get(f"/preferences/{token}")
    bad = web.client.post(
        f"/preferences/{token}",
        data={"csrf_token": csrf_of(page.text), "name": "x" * 300, "list": []},
    )
    assert bad.status_code == 422
    assert status_of(web, "pref@example.com") == "active"
    assert web.client.post(f"/preferences/{token}", data={"list": []}).status_code == 403
    assert status_of(web, "pref@example.com") == "active"

    short = web.signer.sign(
        "preferences", sid, web.brief_id, expires_at=web.clock.now.replace(year=2020)
    )
    r = web.client.get(f"/preferences/{short}")
    assert r.status_code == 410
    assert "expired" in r.text
    assert "Preferences links work for 30 days" in r.text  # and how to get a fresh one
    assert "every issue carries a fresh one" in r.text

    # the setting's days later, the link that worked above has expired too
    web.clock.advance(days=31)
    assert web.client.get(f"/preferences/{token}").status_code == 410


def test_the_app_can_be_built_twice_in_one_process(db: Database) -> None:
    """State lives on each app, nothing global: two apps, two keys, separate limits."""
    one = create_app(db.settings(base_url=BASE, secret_key="one", subscribe_ip_limit=1))
    two = create_app(db.settings(base_url=BASE, secret_key="two", subscribe_ip_limit=1))
    c1, c2 = AppClient(one, base_url=BASE), AppClient(two, base_url=BASE)
    try:
        assert c1.get("/healthz").status_code == c2.get("/healthz").status_code == 200
        assert one.state.web.signer.sign("unsubscribe", 1, 1) != two.state.web.signer.sign(
            "unsubscribe", 1, 1
        )
        assert one.state.web.ip_limiter is not two.state.web.ip_limiter
    finally:
        c1.close()
        c2.close()
        one.state.web.close()
        two.state.web.close()


def test_the_embed_snippet_prefills_the_form_safely(web: Web) -> None:
    """The publisher's site posts to the form with GET (see the README snippet); the page
    shows the address to confirm with one click, escaped."""
    r = web.client.get(
        "/subscribe/brief", params={"email": '"><script>alert(1)</script>', "name": "Ann <b>"}
    )
    assert r.status_code == 200
    assert "<script>" not in r.text
    assert 'value="&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"' in r.text
    assert 'value="Ann &lt;b&gt;"' in r.text
    ok = web.client.get("/subscribe/brief", params={"email": "embed@example.com"})
    done = web.client.post(
        "/subscribe/brief", data={"csrf_token": csrf_of(ok.text), "email": "embed@example.com"}
    )
    assert done.status_code == 200
    assert status_of(web, "embed@example.com") == "pending"


def test_links_signed_with_a_rotated_key_still_work(db: Database) -> None:
    from mailer.render.tokens import Signer

    web = Web(db, secret_key="new-key", old_secret_keys=("old-key",))
    try:
        sid = _two_lists(web)
        old_token = Signer("old-key").sign("unsubscribe", sid, web.brief_id)
        assert web.client.get(f"/unsubscribe/{old_token}").status_code == 200
        r = web.client.post(f"/unsubscribe/{old_token}", data={"List-Unsubscribe": "One-Click"})
        assert r.status_code == 200
        assert status_of(web, "reader@example.com") == "unsubscribed"
        stranger = Signer("never-our-key").sign("unsubscribe", sid, web.other_id)
        assert web.client.get(f"/unsubscribe/{stranger}").status_code == 400
    finally:
        web.close()
