"""Lifecycle mails through the ledger (issue 15): the welcome mail goes once per
subscription, whatever replays or races; an operator's pending reader gets a confirmation
mail within the flood limit; both are Delivery rows marked with their message ids, on
SQLite and PostgreSQL."""

from __future__ import annotations

import email
import email.policy
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import httpx
from sqlalchemy import select

from mailer.config import Settings
from mailer.render.tokens import Signer
from mailer.sending import reader_mails, system_mail
from mailer.sending.models import Delivery
from mailer.transports.outbox import OutboxTransport
from subscribers import list_settings, store
from subscribers.list_settings import ListChanges
from subscribers.models import Subscription
from tests.conftest import TEST_SECRET_KEY, Database
from tests.web_support import (
    BASE,
    Web,
    csrf_of,
    link_in,
    live_server,
    make_list,
    text_body,
    wait_for_mail,
)

NOW = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)
WELCOME = (
    "# Welcome aboard\n\nEvery morning, nine stories. <script>alert(1)</script>\n\n"
    "[x](javascript:alert(1))"
)


def _setup(db: Database, *, lang: str = "en", welcome: str | None = WELCOME) -> None:
    with db.sessions.begin() as s:
        mlist = store.create_list(
            s, "brief", name="The Brief", from_address="Brief <b@example.org>"
        )
        list_settings.update_list(
            s, mlist, ListChanges(lang=lang, welcome_markdown=welcome or list_settings.CLEAR)
        )
        store.subscribe(s, "reader@example.org", mlist)


def _body(msg: EmailMessage, kind: str) -> str:
    part = msg.get_body((kind,))
    assert part is not None
    return str(part.get_content())


def _outbox(db: Database) -> list[EmailMessage]:
    folder = db.tmp / "outbox" / "0"
    files = sorted(folder.glob("*.eml")) if folder.exists() else []
    out = []
    for f in files:
        msg = email.message_from_bytes(f.read_bytes(), policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        out.append(msg)
    return out


def _confirm(db: Database, signer: Signer) -> system_mail.Due | None:
    """What the web's confirm does, in one transaction: confirm, claim the welcome."""
    with db.sessions.begin() as s:
        mlist = store.get_list(s, "brief")
        subn = s.scalar(select(Subscription))
        assert subn is not None
        try:
            store.confirm(
                s, subn.subscriber_id, mlist.id, version=subn.consent_version, actor=store.CLI
            )
        except Exception:  # a replay: ConflictError, nothing due
            return None
        s.refresh(subn)
        return system_mail.claim_welcome(s, subn, mlist, NOW)


def _send(db: Database, due: system_mail.Due) -> bool:
    return system_mail.send_due(
        db.sessions,
        db.settings(),
        Signer(TEST_SECRET_KEY),
        OutboxTransport(db.tmp / "outbox"),
        due,
        now=NOW,
    )


def test_welcome_once_after_confirm_then_never_again(db: Database) -> None:
    _setup(db)
    signer = Signer(TEST_SECRET_KEY)
    due = _confirm(db, signer)
    assert due is not None and due.kind == "welcome"
    assert _send(db, due)
    [msg] = _outbox(db)
    assert msg["Subject"] == "Welcome to The Brief"
    assert msg["Auto-Submitted"] == "auto-generated"
    html = _body(msg, "html")
    text = _body(msg, "plain")
    assert "Welcome aboard" in html and "Every morning, nine stories." in text
    # Markdown's raw HTML is shown as text, a javascript: link is no link
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script" not in html.lower() and 'href="javascript' not in html.lower()
    assert "/preferences/" in html and "/archive/brief" in html
    with db.sessions() as s:
        row = s.get(Delivery, due.delivery_id)
        assert row is not None and (row.kind, row.status) == ("welcome", "sent")
        assert row.message_id and (db.tmp / "outbox" / "0" / row.message_id).is_file()
    # unsubscribe, subscribe again, confirm again: no second welcome
    with db.sessions.begin() as s:
        subn = s.scalar(select(Subscription))
        assert subn is not None
        store.unsubscribe(s, subn.subscriber_id, subn.list_id, actor=store.CLI)
        store.subscribe(s, "reader@example.org", store.get_list(s, "brief"), self_service=True)
    assert _confirm(db, signer) is None
    assert len(_outbox(db)) == 1


def test_racing_confirmations_welcome_once(db: Database) -> None:
    """Two transactions that both saw the subscription unwelcomed: the database lets one
    UPDATE through."""
    _setup(db)
    with db.sessions.begin() as s:
        subn = s.scalar(select(Subscription))
        assert subn is not None
        store._activate(subn)
    results: list[bool] = []
    barrier = threading.Barrier(4)

    def one() -> None:
        with db.sessions.begin() as s:
            subn = s.scalar(select(Subscription))
            mlist = store.get_list(s, "brief")
            assert subn is not None
            barrier.wait()
            results.append(system_mail.welcome_due(s, subn, mlist))

    threads = [threading.Thread(target=one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False, False, False, True]


def test_no_welcome_without_text_and_later_text_still_welcomes(db: Database) -> None:
    _setup(db, welcome=None)
    assert _confirm(db, Signer(TEST_SECRET_KEY)) is None
    with db.sessions() as s:
        subn = s.scalar(select(Subscription))
        assert subn is not None and subn.welcomed_at is None


def test_welcome_wears_the_lists_branding(db: Database) -> None:
    _setup(db)
    with db.sessions.begin() as s:
        list_settings.update_list(
            s,
            store.get_list(s, "brief"),
            ListChanges(accent_color="#1a5fb4", logo_url="https://cdn.example.org/logo.png"),
        )
    due = _confirm(db, Signer(TEST_SECRET_KEY))
    assert due is not None and _send(db, due)
    [msg] = _outbox(db)
    html = _body(msg, "html")
    assert "#1a5fb4" in html and 'src="https://cdn.example.org/logo.png"' in html


def test_welcome_in_chinese(db: Database) -> None:
    _setup(db, lang="zh-Hans", welcome="# 欢迎\n\n每天早上九条新闻。")
    due = _confirm(db, Signer(TEST_SECRET_KEY))
    assert due is not None and _send(db, due)
    [msg] = _outbox(db)
    assert msg["Subject"] == "欢迎订阅《The Brief》"
    html = _body(msg, "html")
    assert 'lang="zh-Hans"' in html
    assert "&#38405;&#35835;" in html or "阅读往期内容" in html  # non-ASCII as references


def test_operator_pending_reader_gets_confirmation_within_the_limit(db: Database) -> None:
    _setup(db)
    sent = 0
    for i in range(system_mail.CONFIRM_PER_ADDRESS + 2):
        with db.sessions.begin() as s:
            subn = s.scalar(select(Subscription))
            assert subn is not None
            due = system_mail.claim_confirmation(s, subn, NOW + timedelta(minutes=i))
        if due is not None:
            sent += _send(db, due)
    assert sent == system_mail.CONFIRM_PER_ADDRESS
    msgs = _outbox(db)
    assert len(msgs) == sent
    assert msgs[0]["Subject"] == "Confirm your subscription to The Brief"
    assert "/confirm/" in _body(msgs[0], "plain")
    # a day later the window has moved on
    with db.sessions.begin() as s:
        subn = s.scalar(select(Subscription))
        assert subn is not None
        assert system_mail.claim_confirmation(s, subn, NOW + timedelta(days=1, hours=1))


def test_confirmation_skipped_when_no_longer_pending(db: Database) -> None:
    _setup(db)
    with db.sessions.begin() as s:
        subn = s.scalar(select(Subscription))
        assert subn is not None
        due = system_mail.claim_confirmation(s, subn, NOW)
        assert due is not None
        store._activate(subn)  # confirmed some other way before the mail went
    assert not _send(db, due)
    with db.sessions() as s:
        row = s.get(Delivery, due.delivery_id)
        assert row is not None and row.status == "skipped"
    assert _outbox(db) == []


def test_active_reader_gets_no_confirmation(db: Database, tmp_path: Path) -> None:
    _setup(db)
    with db.sessions.begin() as s:
        subn = s.scalar(select(Subscription))
        assert subn is not None
        store._activate(subn)
        assert system_mail.claim_confirmation(s, subn, NOW) is None


# -- through the web: subscribe, the confirm page's button, the welcome in the outbox --------


def test_web_confirm_sends_the_welcome_once(db: Database) -> None:
    web = Web(db)
    try:
        with db.sessions.begin() as s:
            list_settings.update_list(
                s, store.get_list(s, "brief"), ListChanges(welcome_markdown="# Hello, reader")
            )
        web.subscribe("new@example.com")
        [confirm] = web.mails()
        link = link_in(text_body(confirm), "confirm").removeprefix(BASE)
        button = web.client.get(link)
        done = web.client.post(link, data={"csrf_token": csrf_of(button.text)})
        assert done.status_code == 200
        mails = web.mails()
        assert [m["Subject"] for m in mails] == [
            "Confirm your subscription to The Test Brief",
            "Welcome to The Test Brief",
        ]
        assert "Hello, reader" in text_body(mails[1])
        # the same button again (a replay): confirmed already, no second welcome
        again = web.client.post(link, data={"csrf_token": csrf_of(button.text)})
        assert again.status_code == 200
        assert len(web.mails()) == 2
        with db.sessions() as s:
            kinds = sorted(d.kind for d in s.scalars(select(Delivery)))
        assert kinds == ["confirm", "welcome"]
    finally:
        web.close()


def test_confirmation_bodies_compiled_once_carry_each_readers_own_values() -> None:
    """The HTML is compiled once per list and expiry and spliced per reader: every reader
    gets their own address and link, escaped, and no stand-in is left."""
    settings = Settings(secret_key=TEST_SECRET_KEY)
    bodies = []
    for i in range(3):
        mail = reader_mails.ConfirmationMail(
            f"r{i}&x@example.org", i, "B & Co", "b@example.org", None, f"https://x/c/{i}?a=1&b", NOW
        )
        bodies.append(reader_mails.confirmation_bodies(mail, settings))
    for i, (html, text) in enumerate(bodies):
        assert f"r{i}&amp;x@example.org" in html and f"https://x/c/{i}?a=1&amp;b" in html
        assert f"r{i}&x@example.org" in text and f"https://x/c/{i}?a=1&b" in text
        others = [j for j in range(3) if j != i]
        assert not any(f"https://x/c/{j}?" in html + text for j in others)
        assert "confirm.invalid" not in html + text and "B &amp; Co" in html


def test_single_opt_in_form_welcomes_a_new_reader_once_and_nobody_else(db: Database) -> None:
    """A single opt-in list: the form makes the reader active at once, and that is their
    confirmation: one welcome. Posting an address that is already active (a stranger can)
    mails it nothing, even one that was never welcomed (added by an operator)."""
    web = Web(db)
    try:
        make_list(db.sessions, "open", name="Open Letter", double_opt_in=False)
        with db.sessions.begin() as s:
            mlist = store.get_list(s, "open")
            list_settings.update_list(s, mlist, ListChanges(welcome_markdown="Glad you came."))
            store.subscribe(s, "old@example.com", mlist, confirmed=True)  # never welcomed
        web.subscribe("new@example.com", slug="open")
        web.subscribe("new@example.com", slug="open")  # again: nothing more
        web.subscribe("old@example.com", slug="open")
        mails = web.mails()
        assert [(m["To"], m["Subject"]) for m in mails] == [
            ("new@example.com", "Welcome to Open Letter")
        ]
    finally:
        web.close()


def test_the_web_forms_share_the_ledgers_limit_per_address(db: Database) -> None:
    """Even with the web's own per-address window wide open (several processes with memory
    limits), the ledger lets 3 confirmation mails a day reach one address."""
    web = Web(db, subscribe_address_limit=100)
    try:
        for _ in range(5):
            web.subscribe("target@example.com")
        assert len(web.mails()) == system_mail.CONFIRM_PER_ADDRESS
    finally:
        web.close()


def test_eight_presses_over_http_welcome_once(db: Database) -> None:
    """The real server, eight presses of one confirm button at once: one welcome mail in
    the outbox and one welcome row in the ledger."""
    make_list(db.sessions, "brief", name="The Test Brief")
    with db.sessions.begin() as s:
        mlist = store.get_list(s, "brief")
        list_settings.update_list(s, mlist, ListChanges(welcome_markdown="Hello there."))
        pending = store.subscribe(s, "racer@example.com", mlist)
        sid, lid = pending.subscriber.id, mlist.id
        version = pending.subscription.consent_version
    with live_server(lambda url: db.settings(base_url=url)) as (server, settings):
        token = Signer.from_settings(settings).sign(
            "confirm", sid, lid, version=version, expires_at=datetime.now(UTC) + timedelta(days=1)
        )
        url = f"{server.url}/confirm/{token}"
        csrf = csrf_of(httpx.get(url).text)
        barrier = threading.Barrier(8)

        def press(_: int) -> int:
            with httpx.Client() as c:
                barrier.wait()
                return c.post(url, data={"csrf_token": csrf}).status_code

        with ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(press, range(8)))
        assert codes == [200] * 8
        [welcome] = wait_for_mail(settings.outbox_dir / "0")
    assert welcome["Subject"] == "Welcome to The Test Brief"
    # every answer came after its transaction committed: a second welcome would have its
    # claimed row in the ledger by now
    with db.sessions() as s:
        assert [d.kind for d in s.scalars(select(Delivery))] == ["welcome"]
