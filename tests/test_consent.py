"""Consent only moves forward by the reader's own act (issue #13 items 3, 4, 5 and 14c), on
SQLite and PostgreSQL, through the real reader pages and AWS-shaped feedback events.

* old preferences / unsubscribe links after a complaint or a hard bounce can only start a
  fresh double opt-in: the reader is pending, the suppression stays, and a confirmation
  mail goes out for the list the link was sent for — nothing else;
* a GET of a confirm link changes nothing (mail scanners follow links); the POST confirms,
  once, and never after a later unsubscribe;
* an erased reader's links show nothing of whoever is added next (ids never reused);
* confirmation mails are deliveries of their own, so feedback on them matches and suppresses.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import select

from mailer.errors import ConflictError
from mailer.feedback import rules as feedback
from mailer.render.tokens import preferences_url
from mailer.sending.models import Delivery
from subscribers import store
from subscribers.models import ConsentEvent, Subscription
from tests.conftest import Database
from tests.support.ses_server import SesServer
from tests.test_feedback import ses_event
from tests.web_support import BASE, Web, csrf_of, link_in, text_body

READER = "reader@example.com"


@pytest.fixture
def web(db: Database) -> Iterator[Web]:
    w = Web(db)
    yield w
    w.close()


def _status(web: Web, list_id: int, address: str = READER) -> str | None:
    with web.db.sessions() as s:
        sub = store.find_subscriber(s, address)
        if sub is None:
            return None
        return s.scalar(
            select(Subscription.status).where(
                Subscription.subscriber_id == sub.id, Subscription.list_id == list_id
            )
        )


def _suppressed(web: Web, address: str = READER) -> str | None:
    with web.db.sessions() as s:
        row = store.find_suppression(s, address)
        return row.reason if row else None


def _events(web: Web, action: str) -> list[ConsentEvent]:
    with web.db.sessions() as s:
        return list(s.scalars(select(ConsentEvent).where(ConsentEvent.action == action)))


def _active_on_both(web: Web) -> int:
    with web.db.sessions.begin() as s:
        sid = store.subscribe(s, READER, store.get_list(s, "brief"), confirmed=True).subscriber.id
        store.subscribe(s, READER, store.get_list(s, "other"), confirmed=True)
    return sid


def _prefs_path(web: Web, sid: int) -> str:
    """The preferences link an email to the reader carries, for the brief list."""
    return preferences_url(web.settings, web.signer, sid, web.brief_id).removeprefix(BASE)


def _feedback(web: Web, name: str, message_id: str) -> feedback.Outcome:
    with web.db.sessions.begin() as s:
        return feedback.apply_event(
            s, ses_event(name, message_id=message_id, to=READER), web.settings
        )


def _press_confirm(web: Web, link: str, **headers: str) -> httpx.Response:
    path = link.removeprefix(BASE)
    page = web.client.get(path)
    assert page.status_code == 200, page.text
    return web.client.post(path, data={"csrf_token": csrf_of(page.text)}, headers=headers)


# -- 3: old links after a complaint or a hard bounce ------------------------------------------


def test_old_preferences_link_after_a_complaint_starts_only_a_double_opt_in(web: Web) -> None:
    sid = _active_on_both(web)
    prefs = _prefs_path(web, sid)
    _feedback(web, "event_complaint", "complained-about-issue")
    assert (_status(web, web.brief_id), _status(web, web.other_id)) == ("unsubscribed",) * 2
    assert _suppressed(web) == "complaint"

    page = web.client.get(prefs)
    assert 'value="brief">' in page.text  # the link's own list, unticked
    assert 'value="other"' not in page.text  # a list it was not sent for: not in the form
    r = web.client.post(
        prefs,
        data={"csrf_token": csrf_of(page.text), "name": "", "list": ["brief", "other"]},
    )
    assert r.status_code == 200
    assert _status(web, web.brief_id) == "pending"
    assert _status(web, web.other_id) == "unsubscribed"
    assert _suppressed(web) == "complaint"
    assert _events(web, "confirm") == [] and _events(web, "unsuppress") == []
    [mail] = web.mails()
    assert mail["To"] == READER
    assert mail["Subject"] == "Confirm your subscription to The Test Brief"

    # only the reader's press of the mail's button lifts the suppression, for that list
    done = _press_confirm(web, link_in(text_body(mail), "confirm"))
    assert "You are subscribed" in done.text
    assert _status(web, web.brief_id) == "active"
    assert _status(web, web.other_id) == "unsubscribed"
    assert _suppressed(web) is None


@pytest.mark.parametrize("event", ["event_complaint", "event_bounce"])
def test_resubscribe_from_an_unsubscribe_link_keeps_the_suppression(web: Web, event: str) -> None:
    sid = _active_on_both(web)
    token = web.signer.sign("unsubscribe", sid, web.brief_id)
    _feedback(web, event, f"{event}-on-an-issue")
    assert _suppressed(web) in ("complaint", "hard_bounce")
    page = web.client.get(f"/unsubscribe/{token}")
    done = web.client.post(
        f"/unsubscribe/{token}", data={"csrf_token": csrf_of(page.text), "scope": "list"}
    )
    assert _status(web, web.brief_id) == "unsubscribed"

    again = web.client.post(
        f"/unsubscribe/{token}", data={"csrf_token": csrf_of(done.text), "action": "resubscribe"}
    )
    assert again.status_code == 200
    assert "Check your inbox" in again.text
    assert _status(web, web.brief_id) == "pending"
    assert _suppressed(web) in ("complaint", "hard_bounce")
    assert _events(web, "confirm") == []
    [mail] = web.mails()
    assert mail["To"] == READER and "The Test Brief" in mail["Subject"]


def test_preferences_touch_only_the_readers_lists_and_the_links_list(web: Web) -> None:
    with web.db.sessions.begin() as s:
        sid = store.subscribe(s, READER, store.get_list(s, "brief"), confirmed=True).subscriber.id
    prefs = _prefs_path(web, sid)
    page = web.client.get(prefs)
    assert 'value="other"' not in page.text
    assert f"{BASE}/subscribe/other" in page.text  # the way to another list: its own form
    web.client.post(
        prefs,
        data={"csrf_token": csrf_of(page.text), "list": ["brief", "other"]},
    )
    assert _status(web, web.brief_id) == "active"
    assert _status(web, web.other_id) is None
    assert web.mails() == []


# -- 4: confirm is a POST, once --------------------------------------------------------------


def test_a_get_of_the_confirm_link_changes_nothing(web: Web) -> None:
    _feedback(web, "event_complaint", "an-old-complaint")  # suppressed before they ask again
    web.subscribe(READER)
    link = link_in(text_body(web.mails()[0]), "confirm").removeprefix(BASE)
    for _ in range(4):  # a mail scanner, a link preview, the reader opening it
        page = web.client.get(link, headers={"user-agent": "LinkScanner/1.0"})
        assert page.status_code == 200
        assert "Confirm my subscription" in page.text
    assert _status(web, web.brief_id) == "pending"
    assert _suppressed(web) == "complaint"
    assert _events(web, "confirm") == []

    r = web.client.post(link, data={"csrf_token": csrf_of(page.text)})
    assert r.status_code == 200
    assert _status(web, web.brief_id) == "active"
    assert _suppressed(web) is None
    assert web.client.post(link, data={}).status_code == 403  # a POST needs the form's token


def test_confirm_link_replayed_after_unsubscribe_stays_unsubscribed(web: Web) -> None:
    web.subscribe(READER)
    path = link_in(text_body(web.mails()[0]), "confirm").removeprefix(BASE)
    csrf = csrf_of(web.client.get(path).text)
    assert web.client.post(path, data={"csrf_token": csrf}).status_code == 200
    assert _status(web, web.brief_id) == "active"
    with web.db.sessions() as s:
        sid = store.get_subscriber(s, READER).id
    unsub = web.signer.sign("unsubscribe", sid, web.brief_id)
    one_click = web.client.post(f"/unsubscribe/{unsub}", data={"List-Unsubscribe": "One-Click"})
    assert one_click.status_code == 200
    assert _status(web, web.brief_id) == "unsubscribed"

    page = web.client.get(path)  # within its 7 days, but replaced by the unsubscribe
    assert page.status_code == 409
    assert "can no longer be used" in page.text and "<button" not in page.text
    replay = web.client.post(path, data={"csrf_token": csrf})
    assert replay.status_code == 409
    assert _status(web, web.brief_id) == "unsubscribed"
    assert len(_events(web, "confirm")) == 1


def test_an_older_confirm_link_loses_to_a_newer_opt_in(web: Web) -> None:
    web.subscribe(READER)
    first = link_in(text_body(web.mails()[0]), "confirm")
    with web.db.sessions.begin() as s:
        store.unsubscribe(s, store.get_subscriber(s, READER).id, None, actor=store.CLI)
    web.subscribe(READER)  # asks again: a new pending opt-in, a new link
    second = link_in(text_body(web.mails()[1]), "confirm")
    assert first != second
    assert web.client.get(first.removeprefix(BASE)).status_code == 409
    assert _status(web, web.brief_id) == "pending"
    assert _press_confirm(web, second).status_code == 200
    assert _status(web, web.brief_id) == "active"


def test_the_store_binds_confirm_to_the_consent_version(db: Database) -> None:
    with db.sessions.begin() as s:
        mlist = store.create_list(s, "brief", name="Brief", from_address="b@example.org")
        r = store.subscribe(s, READER, mlist)
        sid, lid, v0 = r.subscriber.id, mlist.id, r.subscription.consent_version
    with db.sessions.begin() as s:
        assert store.confirm(s, sid, lid, version=v0, actor=store.CLI) == "confirmed"
    with db.sessions.begin() as s:  # the same link again: already done, nothing changes
        assert store.confirm(s, sid, lid, version=v0, actor=store.CLI) == "already"
        store.unsubscribe(s, sid, lid, actor=store.CLI)
    with db.sessions.begin() as s, pytest.raises(ConflictError):
        store.confirm(s, sid, lid, version=v0, actor=store.CLI)
    with db.sessions.begin() as s:
        again = store.subscribe(s, READER, store.get_list(s, "brief"), self_service=True)
        assert again.subscription.status == "pending"
        assert again.subscription.consent_version == v0 + 3  # confirm, unsubscribe, opt-in
    with db.sessions.begin() as s, pytest.raises(ConflictError):
        store.confirm(s, sid, lid, version=v0, actor=store.CLI)


# -- 5: ids never reused -------------------------------------------------------------------


def test_an_erased_readers_links_show_nothing_of_the_next_reader(web: Web) -> None:
    with web.db.sessions.begin() as s:
        brief = store.get_list(s, "brief")
        store.subscribe(s, "first@example.com", brief, confirmed=True, name="First")
        erased = store.subscribe(s, "gone@example.com", brief, confirmed=True, name="Gone")
        gone_id = erased.subscriber.id  # the newest row: the id SQLite used to hand out again
    prefs = _prefs_path(web, gone_id)
    unsub = web.signer.sign("unsubscribe", gone_id, web.brief_id)
    with web.db.sessions.begin() as s:
        store.erase(s, "gone@example.com")
    with web.db.sessions.begin() as s:
        nxt = store.subscribe(
            s, "next@example.com", store.get_list(s, "brief"), confirmed=True, name="Nina Next"
        )
        assert nxt.subscriber.id != gone_id

    page = web.client.get(prefs)
    assert page.status_code == 404
    for shown in ("Nina Next", "n•••@example.com", "next@example.com", "<form"):
        assert shown not in page.text
    page = web.client.get(f"/unsubscribe/{unsub}")
    assert "Nothing to unsubscribe" in page.text and "n•••@example.com" not in page.text
    web.client.post(f"/unsubscribe/{unsub}", data={"List-Unsubscribe": "One-Click"})
    assert _status(web, web.brief_id, "next@example.com") == "active"


# -- 14c: confirmation mails in the ledger ----------------------------------------------------


@pytest.mark.parametrize(
    ("event", "reason"), [("event_complaint", "complaint"), ("event_bounce", "hard_bounce")]
)
def test_feedback_on_a_confirmation_mail_matches_its_delivery(
    db: Database, ses_server: SesServer, event: str, reason: str
) -> None:
    web = Web(db, transport="ses", ses_endpoint_url=ses_server.url, ses_region="us-east-1")
    try:
        web.subscribe(READER)
        [sent] = ses_server.messages()
        assert sent.to == (READER,)
        with db.sessions() as s:
            [row] = s.scalars(select(Delivery)).all()
            sid = store.get_subscriber(s, READER).id
        assert (row.kind, row.campaign_id, row.subscriber_id) == ("confirm", None, sid)
        assert (row.status, row.message_id) == ("sent", sent.message_id)
        assert sent.tags.get("delivery") == str(row.id)

        outcome = _feedback(web, event, sent.message_id)
        assert outcome.delivery_id == row.id
        assert "unmatched" not in outcome.actions
        assert _suppressed(web) == reason
        assert _status(web, web.brief_id) in ("pending", "unsubscribed")
    finally:
        web.close()
