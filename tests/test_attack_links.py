"""An attacker's pass over the reader links (issue #13): what broke, pinned on SQLite and
PostgreSQL, through the store and the real app.

* race: a confirm that read a pending subscription, then lost the row to an unsubscribe
  (or to the same link pressed twice) committed in between, must not act on what it read:
  the reader's unsubscribe stands, a link confirms once, a lifted suppression is lifted once.
* flood: the per-IP subscribe limit counts an IPv6 client's /64, not each address in it
  (one host may send from any of 2**64 addresses), and an IPv4 client seen through a
  dual-stack socket as the same host.
* replay: an unsubscribe link never expires and may only ever unsubscribe; the page after
  it handed out a fresh preferences link, so any old (forwarded) email renewed the
  preferences its expired link no longer opened (rename the reader, see their lists).
* suppression bypass: an operator's ``--resubscribe`` (``mailer subscribers add`` or
  ``import``) that leaves the reader pending must not lift the suppression: it covers every
  list, so lifting it at once would mail the lists the address is still active on before
  anyone confirmed anything. It lifts when the confirmation is completed (``--confirmed``
  vouches for one).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
import pytest
from sqlalchemy import event, func, select
from sqlalchemy.orm import ORMExecuteState, Session

from mailer.errors import ConflictError, NotFoundError
from mailer.feedback.erasure import erase
from mailer.render.tokens import Signer
from subscribers import store
from subscribers.models import ConsentEvent, Subscription, Suppression
from tests.cli_support import run_cli
from tests.conftest import Database
from tests.web_support import (
    BASE,
    Web,
    add_active,
    csrf_of,
    link_in,
    live_server,
    read_eml,
    sample_issue,
    send_issue,
    text_body,
)

T = TypeVar("T")

READER = "reader@example.com"
WEB = store.Actor("web:confirm")


def _pending(db: Database, *, suppressed: bool = False) -> tuple[int, int, int]:
    """(subscriber, list, version) of a pending double opt-in, maybe of a suppressed address."""
    with db.sessions.begin() as s:
        mlist = store.create_list(s, "brief", name="Brief", from_address="b@example.org")
        if suppressed:
            store.suppress(s, READER, "hard_bounce")
        r = store.subscribe(s, READER, mlist, self_service=True)
        return r.subscriber.id, mlist.id, r.subscription.consent_version


def _status(db: Database, sid: int, lid: int) -> str | None:
    with db.sessions() as s:
        return s.scalar(
            select(Subscription.status).where(
                Subscription.subscriber_id == sid, Subscription.list_id == lid
            )
        )


def _count(db: Database, action: str) -> int:
    with db.sessions() as s:
        n = s.scalar(select(func.count()).where(ConsentEvent.action == action))
        return int(n or 0)


@contextmanager
def _after_first_read(
    session: Session, table: type[Any], other: Callable[[], None]
) -> Iterator[None]:
    """Run ``other`` (its own transaction) right after ``session`` first reads ``table``,
    before it goes on: the interleaving a race needs, every time. ``other`` runs on a
    thread: where ``session`` holds a lock it must wait for, ``session`` goes on after a
    second and ``other`` finishes after it (joined on leaving, its error raised)."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            other()
        except BaseException as err:  # handed to the test below
            errors.append(err)

    worker = threading.Thread(target=run)

    def hook(state: ORMExecuteState) -> Any:
        if worker.ident is not None or table not in {m.class_ for m in state.all_mappers}:
            return None
        frozen = state.invoke_statement().freeze()  # the read is done, its cursor closed
        worker.start()
        worker.join(timeout=1.0)
        return frozen()

    event.listen(session, "do_orm_execute", hook)
    try:
        yield
    finally:
        event.remove(session, "do_orm_execute", hook)
    assert worker.ident is not None, f"{table.__name__} was never read"
    worker.join(timeout=30)
    assert not errors, errors


def _race(
    db: Database, table: type[Any], other: Callable[[], None], first: Callable[[Session], T]
) -> T:
    """``first`` in a transaction, ``other`` committed right after it reads ``table``."""
    with db.sessions() as s, _after_first_read(s, table, other), s.begin():
        return first(s)


def _unsubscribe(db: Database, sid: int, lid: int) -> Callable[[], None]:
    def go() -> None:
        with db.sessions.begin() as s:
            store.unsubscribe(s, sid, lid, actor=store.Actor("web:one-click"))

    return go


def _confirm(db: Database, sid: int, lid: int, version: int) -> Callable[[], None]:
    def go() -> None:
        with db.sessions.begin() as s:
            store.confirm(s, sid, lid, version=version, actor=WEB)

    return go


def test_a_confirm_racing_an_unsubscribe_never_undoes_it(db: Database) -> None:
    sid, lid, version = _pending(db)
    with pytest.raises(ConflictError):
        _race(
            db,
            Subscription,
            _unsubscribe(db, sid, lid),
            lambda s: store.confirm(s, sid, lid, version=version, actor=WEB),
        )
    assert _status(db, sid, lid) == "unsubscribed"
    assert _count(db, "confirm") == 0


def test_a_confirm_racing_an_erasure_finds_nothing(db: Database) -> None:
    sid, lid, version = _pending(db)

    def erased() -> None:
        with db.sessions.begin() as s:
            erase(s, READER)

    with pytest.raises(NotFoundError):
        _race(
            db,
            Subscription,
            erased,
            lambda s: store.confirm(s, sid, lid, version=version, actor=WEB),
        )
    with db.sessions() as s:
        assert store.find_subscriber(s, READER) is None


def test_one_link_pressed_twice_at_once_confirms_once(db: Database) -> None:
    sid, lid, version = _pending(db, suppressed=True)
    outcome = _race(
        db,
        Subscription,
        _confirm(db, sid, lid, version),
        lambda s: store.confirm(s, sid, lid, version=version, actor=WEB),
    )
    assert outcome == "already"
    assert _status(db, sid, lid) == "active"
    assert (_count(db, "confirm"), _count(db, "unsuppress")) == (1, 1)
    with db.sessions() as s:
        assert store.find_suppression(s, READER) is None


def test_two_lists_confirmed_at_once_lift_the_suppression_once(db: Database) -> None:
    sid, brief, version = _pending(db, suppressed=True)
    with db.sessions.begin() as s:
        other = store.create_list(s, "other", name="Other", from_address="o@example.org")
        theirs = store.subscribe(s, READER, other, self_service=True).subscription
        other_id, other_version = other.id, theirs.consent_version
    _race(
        db,
        Suppression,
        _confirm(db, sid, other_id, other_version),
        lambda s: store.confirm(s, sid, brief, version=version, actor=WEB),
    )
    assert (_status(db, sid, brief), _status(db, sid, other_id)) == ("active", "active")
    assert (_count(db, "confirm"), _count(db, "unsuppress")) == (2, 1)


def test_concurrent_presses_over_http_confirm_once(db: Database) -> None:
    """The real server, eight presses of one confirm button at once: each answered, no
    error, one confirm and one lifted suppression in the ledger."""
    sid, lid, version = _pending(db, suppressed=True)
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
    assert (_count(db, "confirm"), _count(db, "unsuppress")) == (1, 1)


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
def test_rotating_ipv6_addresses_does_not_escape_the_ip_limit(db: Database) -> None:
    web = Web(db, subscribe_ip_limit=3)
    try:

        def post_from(ip: str, address: str) -> int:
            client = web.new_client(ip=ip)
            try:
                return web.subscribe(address, client=client).status_code
            finally:
                client.close()

        codes = [post_from(f"2001:db8:7:1::{n:x}", f"v6-{n}@example.com") for n in range(1, 6)]
        assert codes == [200, 200, 200, 429, 429]
        assert post_from("2001:db8:7:2::1", "next-64@example.com") == 200  # another /64
        codes = [
            post_from(ip, f"v4-{n}@example.com")
            for n, ip in enumerate(["198.51.100.9", "::ffff:198.51.100.9"] * 2)
        ]
        assert codes == [200, 200, 200, 429]
        assert len(web.mails()) == 7
    finally:
        web.close()


def _mailer(db: Database, *args: str) -> str:
    r = run_cli(db, *args)
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.mark.parametrize("how", ["add", "import"])
def test_resubscribe_to_a_pending_subscription_keeps_the_suppression(
    db: Database, how: str
) -> None:
    with db.sessions.begin() as s:
        brief = store.create_list(s, "brief", name="Brief", from_address="b@example.org")
        other = store.create_list(s, "other", name="Other", from_address="o@example.org")
        sid = store.subscribe(s, READER, other, confirmed=True).subscriber.id
        store.suppress(s, READER, "hard_bounce")  # still active on other, not mailed
        brief_id = brief.id
    if how == "add":
        _mailer(db, "subscribers", "add", READER, "--list", "brief", "--resubscribe")
    else:
        csv = db.tmp / "back.csv"
        csv.write_text(f"email\n{READER}\n", encoding="utf-8")
        _mailer(db, "subscribers", "import", str(csv), "--list", "brief", "--resubscribe")
    assert _status(db, sid, brief_id) == "pending"
    with db.sessions() as s:
        assert store.find_suppression(s, READER) is not None
        version = s.scalar(
            select(Subscription.consent_version).where(
                Subscription.subscriber_id == sid, Subscription.list_id == brief_id
            )
        )
    assert version is not None
    with db.sessions.begin() as s:  # the reader presses the confirmation mail's button
        store.confirm(s, sid, brief_id, version=version, actor=WEB)
    with db.sessions() as s:
        assert store.find_suppression(s, READER) is None


def test_an_old_unsubscribe_link_does_not_renew_an_expired_preferences_link(db: Database) -> None:
    web = Web(db)
    try:
        add_active(db.sessions, READER)
        add_active(db.sessions, READER, "other")
        cid = send_issue(db.sessions, web.settings, sample_issue(1))
        [mail] = [read_eml(p) for p in (web.settings.outbox_dir / str(cid)).glob("*.eml")]
        unsubscribe = link_in(text_body(mail), "unsubscribe").removeprefix(BASE)
        preferences = link_in(text_body(mail), "preferences").removeprefix(BASE)
        web.clock.advance(days=web.settings.preferences_ttl / 86400 + 2)  # a forwarded old mail
        assert web.client.get(preferences).status_code == 410

        page = web.client.get(unsubscribe)
        done = web.client.post(unsubscribe, data={"csrf_token": csrf_of(page.text)})
        assert done.status_code == 200 and "You are unsubscribed" in done.text
        assert "/preferences/" not in page.text + done.text
    finally:
        web.close()
