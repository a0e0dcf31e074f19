"""Webhooks out, the outbox (issue 14): events are written in the transaction of the change
that caused them, for the endpoints that asked for them, and nothing when none did. On
SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from mailer.errors import InputError
from mailer.sending import lifecycle
from mailer.sending.models import Campaign
from mailer.webhooks import endpoints
from subscribers import outbox, store
from subscribers.outbox import EVENT_TYPES, WebhookDelivery, WebhookEndpoint, WebhookEvent
from tests.conftest import Database
from tests.delivery_helpers import make_campaign, seed_list
from tests.test_feedback import READER, World, mid, ses_event

URL = "http://127.0.0.1:9/hook"


def _endpoint(db: Database, events: str, url: str = URL) -> int:
    with db.sessions.begin() as s:
        return endpoints.add(s, url, events).id


def _events(db: Database) -> list[tuple[str, dict[str, Any]]]:
    with db.sessions() as s:
        rows = s.execute(select(WebhookEvent.type, WebhookEvent.payload).order_by(WebhookEvent.id))
        return [(t, p) for t, p in rows]


def _count(db: Database, model: Any) -> int:
    with db.sessions() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def test_nothing_is_written_without_an_endpoint(db: Database) -> None:
    seed_list(db.sessions, 3)
    with db.sessions.begin() as s:
        mlist = store.get_list(s, "brief")
        store.subscribe(s, "new@example.com", mlist, confirmed=True)
        store.suppress(s, "new@example.com", "manual")
        store.unsuppress(s, "new@example.com")
    campaign_id, _, _ = make_campaign(db.sessions, db.settings())
    with db.sessions.begin() as s:
        lifecycle.pause(s, campaign_id, "editor")
    assert _count(db, WebhookEvent) == 0
    assert _count(db, WebhookDelivery) == 0


def test_store_changes_emit_their_events(db: Database) -> None:
    _endpoint(db, ",".join(t for t in EVENT_TYPES if not t.startswith("campaign.")))
    with db.sessions.begin() as s:
        mlist = store.create_list(s, "brief", name="Brief", from_address="b@example.org")
        store.subscribe(s, "op@example.com", mlist, confirmed=True)
        pending = store.subscribe(s, "Reader@Example.com", mlist)
        version = pending.subscription.consent_version
        sub_id, list_id = pending.subscriber.id, mlist.id
    with db.sessions.begin() as s:
        store.confirm(s, sub_id, list_id, version=version, actor=store.Actor("web"))
    with db.sessions.begin() as s:
        store.unsubscribe(s, sub_id, None, actor=store.Actor("web"))
        store.suppress(s, "bounced@example.com", "hard_bounce")
        store.unsuppress(s, "bounced@example.com")
    got = _events(db)
    assert [t for t, _ in got] == [
        "subscriber.confirmed",
        "subscriber.confirmed",
        "subscriber.unsubscribed",
        "suppression.added",
        "suppression.removed",
    ]
    assert got[0][1]["data"]["email"] == "op@example.com"
    assert got[1][1]["data"] == {
        "subscriber_id": sub_id,
        "email": "reader@example.com",
        "list": "brief",
        "source": "web",
    }
    assert got[3][1]["data"] == {
        "email": "bounced@example.com",
        "reason": "hard_bounce",
        "source": "cli",
    }
    assert got[4][1]["data"]["was"] == "hard_bounce"
    for type_, payload in got:
        assert payload["type"] == type_
        assert payload["timestamp"]


def test_a_rolled_back_change_leaves_no_event(db: Database) -> None:
    _endpoint(db, "suppression.added")
    with pytest.raises(RuntimeError), db.sessions.begin() as s:
        store.suppress(s, "gone@example.com", "manual")
        raise RuntimeError("the change fails after the event was appended")
    with db.sessions() as s:
        assert store.find_suppression(s, "gone@example.com") is None
    assert _count(db, WebhookEvent) == 0
    assert _count(db, WebhookDelivery) == 0
    with db.sessions.begin() as s:
        store.suppress(s, "gone@example.com", "manual")
    assert [t for t, _ in _events(db)] == ["suppression.added"]
    assert _count(db, WebhookDelivery) == 1


def test_only_endpoints_that_asked_get_a_delivery(db: Database) -> None:
    wants_added = _endpoint(db, "suppression.added,guard.tripped")
    _endpoint(db, "suppression.removed")
    disabled = _endpoint(db, "suppression.added")
    with db.sessions.begin() as s:
        s.get_one(WebhookEndpoint, disabled).enabled = False
    with db.sessions.begin() as s:
        store.suppress(s, "x@example.com", "manual")
    with db.sessions() as s:
        targets = list(s.scalars(select(WebhookDelivery.endpoint_id)))
    assert targets == [wants_added]


def test_an_endpoint_added_meanwhile_is_seen_by_the_next_transaction(db: Database) -> None:
    """The endpoints are read once per transaction, not once per session."""
    with db.sessions() as s:
        with s.begin():
            store.suppress(s, "a@example.com", "manual")
        _endpoint(db, "suppression.added")  # another session commits an endpoint
        with s.begin():
            store.suppress(s, "b@example.com", "manual")
    assert [p["data"]["email"] for _, p in _events(db)] == ["b@example.com"]


def test_an_emit_first_in_its_transaction_reads_the_endpoints_anew(db: Database) -> None:
    """Before a transaction has begun, the cache must not match the last one's."""
    with db.sessions() as s:
        assert not outbox.wanted(s, "guard.tripped")  # the session's first statement
        s.commit()
        _endpoint(db, "guard.tripped")
        assert outbox.wanted(s, "guard.tripped")  # again first, in a new transaction


def test_erasure_leaves_no_address_in_the_outbox(db: Database) -> None:
    _endpoint(db, ",".join(EVENT_TYPES))
    with db.sessions.begin() as s:
        mlist = store.create_list(s, "brief", name="Brief", from_address="b@example.org")
        sub_id = store.subscribe(s, "erase.me@example.com", mlist, confirmed=True).subscriber.id
        store.suppress(s, "erase.me@example.com", "complaint")
    with db.sessions.begin() as s:
        store.erase(s, "erase.me@example.com")
    got = _events(db)
    assert [t for t, _ in got] == ["subscriber.confirmed", "suppression.added", "subscriber.erased"]
    assert got[-1][1]["data"] == {"subscriber_id": sub_id, "source": "cli"}
    assert all(p["data"] == {"redacted": "subscriber erased"} for _, p in got[:2])
    assert "erase.me" not in repr(got)
    with db.sessions() as s:
        assert s.scalar(select(func.count()).where(WebhookEvent.email.is_not(None))) == 0


def test_campaign_changes_emit_their_events(db: Database) -> None:
    _endpoint(db, ",".join(t for t in EVENT_TYPES if t.startswith("campaign.")))
    seed_list(db.sessions, 4)
    campaign_id, _, rendered = make_campaign(db.sessions, db.settings())
    with db.sessions.begin() as s:
        lifecycle.pause(s, campaign_id, "hold on")
    with db.sessions.begin() as s:
        lifecycle.resume(s, campaign_id)
    with db.sessions.begin() as s:
        lifecycle.cancel(s, campaign_id)
    got = _events(db)
    assert [t for t, _ in got] == [
        "campaign.scheduled",
        "campaign.paused",
        "campaign.resumed",
        "campaign.cancelled",
    ]
    first = got[0][1]["data"]["campaign"]
    assert first["id"] == campaign_id
    assert first["list"] == "brief"
    assert first["subject"] == rendered.subject
    assert first["status"] == "scheduled"
    assert first["counts"] == {"queued": 4}
    assert got[1][1]["data"]["campaign"]["pause_reason"] == "hold on"
    assert got[3][1]["data"]["campaign"]["counts"] == {"skipped": 4}


def test_a_refused_change_emits_nothing(db: Database) -> None:
    _endpoint(db, "campaign.resumed")
    seed_list(db.sessions, 2)
    campaign_id, _, _ = make_campaign(db.sessions, db.settings())
    with pytest.raises(Exception, match="cannot resume"), db.sessions.begin() as s:
        lifecycle.resume(s, campaign_id)  # scheduled, not paused
    assert _events(db) == []


def test_unknown_event_names_are_refused_with_the_valid_ones(db: Database) -> None:
    with pytest.raises(InputError) as err, db.sessions.begin() as s:
        endpoints.add(s, URL, "campaign.done, campaign.exploded,subscriber.hacked")
    message = str(err.value)
    assert "'campaign.exploded'" in message and "'subscriber.hacked'" in message
    assert all(t in message for t in EVENT_TYPES)
    with pytest.raises(InputError, match="no events given"), db.sessions.begin() as s:
        endpoints.add(s, URL, " , ")
    assert _count(db, WebhookEndpoint) == 0


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://example.com/hook",
        "javascript:alert(1)",
        "gopher://127.0.0.1:6379/_FLUSHALL",
        "http://",
        "//example.com/hook",
        "http://exa mple.com/hook",
        "http://example.com:99999999/hook",
        "http://example.com/\r\nX-Injected: 1",
        "https://example.com/" + "a" * 2000,
    ],
)
def test_urls_that_are_not_http_are_refused(db: Database, url: str) -> None:
    with pytest.raises(InputError), db.sessions.begin() as s:
        endpoints.add(s, url, "campaign.done")
    assert _count(db, WebhookEndpoint) == 0


def test_emit_refuses_a_type_it_does_not_know(db: Database) -> None:
    with pytest.raises(ValueError, match=r"campaign\.exploded"), db.sessions.begin() as s:
        outbox.emit(s, "campaign.exploded", {})


def test_guard_pause_and_expiry_emit_their_events(db: Database) -> None:
    _endpoint(db, "guard.tripped,campaign.paused,campaign.expired,campaign.started")
    seed_list(db.sessions, 3)
    first, _, _ = make_campaign(db.sessions, db.settings())
    with db.sessions.begin() as s:
        campaign = s.get_one(Campaign, first)
        lifecycle.start(campaign)
        lifecycle.guard_pause(campaign, "bounce rate 9.00% (9 hard bounces / 100 sent)")
    with db.sessions.begin() as s:
        campaign = s.get_one(Campaign, first)
        lifecycle.start(campaign)  # a paused campaign stays paused: no second start
        lifecycle.expire(s, campaign, "too late")
    got = _events(db)
    assert [t for t, _ in got] == [
        "campaign.started",
        "campaign.paused",
        "guard.tripped",
        "campaign.expired",
    ]
    tripped = got[2][1]["data"]
    assert tripped["verdict"] == "bounce rate 9.00% (9 hard bounces / 100 sent)"
    assert tripped["campaign"]["status"] == "paused"
    assert tripped["campaign"]["pause_reason"].startswith("reputation guard:")
    assert got[3][1]["data"]["campaign"]["counts"] == {"skipped": 3}


def test_a_complaint_from_ses_emits_in_the_feedback_transaction(db: Database) -> None:
    """The feedback rules change the store through it, so their events come along."""
    w = World(db)
    _endpoint(db, "subscriber.unsubscribed,suppression.added")
    message_id = mid()
    w.delivery(message_id)
    w.apply(ses_event("event_complaint", message_id=message_id, sns_id="sns-c"))
    got = _events(db)
    assert sorted(t for t, _ in got) == [
        "subscriber.unsubscribed",
        "subscriber.unsubscribed",
        "suppression.added",
    ]
    assert {p["data"]["email"] for _, p in got} == {READER}
    assert all(p["data"]["source"].startswith("ses-feedback:Complaint") for _, p in got)
    assert {p["data"].get("list") for t, p in got if t.startswith("subscriber")} == {
        "brief",
        "weekly",
    }
