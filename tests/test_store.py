"""The subscriber store on SQLite and PostgreSQL: subscribe, confirm, unsubscribe,
suppression, erasure, access and export."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from mailer.errors import (
    ConflictError,
    InputError,
    InvalidAddressError,
    NotFoundError,
    SuppressedError,
)
from mailer.feedback import erasure
from mailer.feedback.models import FeedbackEvent, SoftBounceCounter
from subscribers import store
from subscribers.addresses import normalize_email
from subscribers.models import ConsentEvent, Subscriber, Suppression, utcnow
from tests.conftest import Database


def make_list(db: Database, slug: str = "brief", double_opt_in: bool = True) -> int:
    with db.sessions.begin() as s:
        return store.create_list(
            s,
            slug,
            name="Brief",
            from_address="The Brief <brief@example.org>",
            double_opt_in=double_opt_in,
        ).id


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Reader@Example.COM", "reader@example.com"),
        ("  spaced@example.com ", "spaced@example.com"),
        ("x@Bücher.de", "x@xn--bcher-kva.de"),
        ("用户@例子.广告", "用户@例子.广告"),
    ],
)
def test_normalize(raw: str, expected: str) -> None:
    assert normalize_email(raw) == expected


@pytest.mark.parametrize("raw", ["", "no-at-sign", "a..b@example.com", "a@b@c.com", "x@localhost"])
def test_normalize_rejects(raw: str) -> None:
    with pytest.raises(InvalidAddressError):
        normalize_email(raw)


def test_list_rules(db: Database) -> None:
    make_list(db)
    with db.sessions.begin() as s, pytest.raises(ConflictError, match="already exists"):
        store.create_list(s, "brief", name="x", from_address="a@example.org")
    with db.sessions.begin() as s, pytest.raises(InputError, match="bad list slug"):
        store.create_list(s, "Bad Slug", name="x", from_address="a@example.org")
    with db.sessions.begin() as s, pytest.raises(InputError, match="non-empty --name"):
        store.create_list(s, "other", name="  ", from_address="a@example.org")
    with db.sessions.begin() as s, pytest.raises(InvalidAddressError):
        store.create_list(s, "other", name="x", from_address="Name <not an address>")
    with db.sessions() as s, pytest.raises(NotFoundError, match="lists: brief"):
        store.get_list(s, "nope")


def test_double_opt_in_flow(db: Database) -> None:
    make_list(db)
    with db.sessions.begin() as s:
        r = store.subscribe(s, "New@Example.com", store.get_list(s, "brief"), name="New")
        assert r.created and r.needs_confirmation
        assert r.subscription.status == "pending"
        sid, lid, version = r.subscriber.id, r.subscription.list_id, r.subscription.consent_version
    with db.sessions.begin() as s:
        store.confirm(s, sid, lid, version=version, actor=store.Actor("web", "203.0.113.9", "UA"))
        assert store.describe_subscriber(s, "new@example.com")["subscriptions"][0]["status"] == (
            "active"
        )
    with db.sessions.begin() as s:
        changed = store.unsubscribe(s, sid, None, actor=store.Actor("one-click"))
        assert [c.status for c in changed] == ["unsubscribed"]
        assert store.unsubscribe(s, sid, None, actor=store.Actor("one-click")) == []
    with db.sessions() as s:
        actions = list(
            s.scalars(
                select(ConsentEvent.action)
                .where(ConsentEvent.subscriber_id == sid)
                .order_by(ConsentEvent.id)
            )
        )
        assert actions == ["subscribe", "confirm", "unsubscribe"]
        confirm_row = s.scalar(select(ConsentEvent).where(ConsentEvent.action == "confirm"))
        assert confirm_row is not None and confirm_row.ip == "203.0.113.9"


def test_single_opt_in_list_activates(db: Database) -> None:
    make_list(db, double_opt_in=False)
    with db.sessions.begin() as s:
        r = store.subscribe(s, "a@example.com", store.get_list(s, "brief"))
        assert r.subscription.status == "active" and not r.needs_confirmation


def test_suppressed_needs_resubscribe(db: Database) -> None:
    make_list(db)
    with db.sessions.begin() as s:
        store.suppress(s, "Bounced@example.com", "hard_bounce", detail="550 5.1.1")
        # idempotent: the first reason stays
        assert store.suppress(s, "bounced@example.com", "manual").reason == "hard_bounce"
    with db.sessions.begin() as s, pytest.raises(SuppressedError, match="--resubscribe"):
        store.subscribe(s, "bounced@example.com", store.get_list(s, "brief"), confirmed=True)
    with db.sessions.begin() as s:
        r = store.subscribe(
            s, "bounced@example.com", store.get_list(s, "brief"), confirmed=True, resubscribe=True
        )
        assert r.subscription.status == "active"
        assert store.find_suppression(s, "bounced@example.com") is None
        assert s.scalar(select(func.count()).where(ConsentEvent.action == "resubscribe")) == 1


def test_unsubscribed_not_reactivated_by_operator(db: Database) -> None:
    make_list(db)
    with db.sessions.begin() as s:
        r = store.subscribe(s, "u@example.com", store.get_list(s, "brief"), confirmed=True)
        store.unsubscribe(s, r.subscriber.id, None, actor=store.CLI)
    with db.sessions.begin() as s, pytest.raises(SuppressedError, match="unsubscribed"):
        store.subscribe(s, "u@example.com", store.get_list(s, "brief"), confirmed=True)
    with db.sessions.begin() as s:
        # the person asking again through the form is pending until they confirm
        r = store.subscribe(s, "u@example.com", store.get_list(s, "brief"), self_service=True)
        assert r.subscription.status == "pending" and r.needs_confirmation


def test_erase_leaves_only_tombstone(db: Database) -> None:
    make_list(db)
    with db.sessions.begin() as s:
        store.subscribe(
            s, "gone@example.com", store.get_list(s, "brief"), name="Gone", confirmed=True
        )
    with db.sessions.begin() as s:
        store.erase(s, "gone@example.com")
    with db.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Subscriber)) == 0
        tomb = s.scalar(select(Suppression))
        assert tomb is not None and tomb.email is None and tomb.reason == "erased"
        # nothing in the database still names the address
        events = s.scalars(select(ConsentEvent)).all()
        assert [e.action for e in events] == ["erase"]
        assert events[0].email_hash == tomb.email_hash and events[0].subscriber_id is None
    with db.sessions.begin() as s, pytest.raises(SuppressedError, match="erased"):
        store.subscribe(s, "gone@example.com", store.get_list(s, "brief"), confirmed=True)
    with db.sessions.begin() as s, pytest.raises(NotFoundError):
        store.erase(s, "never@example.com")


def test_describe_and_export(db: Database) -> None:
    make_list(db)
    with db.sessions.begin() as s:
        mlist = store.get_list(s, "brief")
        store.subscribe(s, "a@example.com", mlist, name='=HYPERLINK("x")', confirmed=True)
        store.subscribe(s, "b@example.com", mlist)
    with db.sessions() as s:
        data = store.describe_subscriber(s, "A@example.com")
        assert data["email"] == "a@example.com"
        assert data["subscriptions"][0]["status"] == "active"
        assert [e["action"] for e in data["consent_events"]] == ["subscribe"]
        rows = list(store.export_rows(s, store.get_list(s, "brief"), "active"))
        assert [r[0] for r in rows] == ["a@example.com"]
        assert rows[0][1].startswith("'=")  # CSV injection neutralized
        assert len(list(store.export_rows(s, store.get_list(s, "brief")))) == 2
        with pytest.raises(InputError, match="unknown status"):
            list(store.export_rows(s, store.get_list(s, "brief"), "bogus"))


def test_suppression_search_and_remove(db: Database) -> None:
    with db.sessions.begin() as s:
        store.suppress(s, "one@example.com", "manual")
        store.suppress(s, "two@other.org", "complaint")
        with pytest.raises(InputError, match="unknown suppression reason"):
            store.suppress(s, "x@example.com", "because")
    with db.sessions.begin() as s:
        assert [x.email for x in store.list_suppressions(s, search="example")] == [
            "one@example.com"
        ]
        assert store.unsuppress(s, "one@example.com") is True
        assert store.unsuppress(s, "one@example.com") is False


def test_erase_forgets_feedback_records(db: Database) -> None:
    make_list(db)
    with db.sessions.begin() as s:
        store.subscribe(s, "bouncy@example.com", store.get_list(s, "brief"), confirmed=True)
        s.add(
            FeedbackEvent(
                event_hash="h1",
                event_type="Bounce",
                ses_message_id="m1",
                email="bouncy@example.com",
                diagnostic="smtp; 452 mailbox full (bouncy@example.com)",
                occurred_at=utcnow(),
                raw={"mail": {"destination": ["bouncy@example.com"]}},
            )
        )
        s.add(
            SoftBounceCounter(
                email="bouncy@example.com",
                count=1,
                window_started_at=utcnow(),
                last_bounce_at=utcnow(),
            )
        )
    with db.sessions.begin() as s:
        erasure.erase(s, "bouncy@example.com")
    with db.sessions() as s:
        event = s.scalar(select(FeedbackEvent))
        assert event is not None and event.email is None and event.diagnostic is None
        assert "bouncy" not in str(event.raw)
        assert s.scalar(select(func.count()).select_from(SoftBounceCounter)) == 0


def test_salt_is_created_once(db: Database) -> None:
    with db.sessions.begin() as s:
        first = store.hash_salt(s)
    with db.sessions.begin() as s:
        assert store.hash_salt(s) == first and len(first) == 32
