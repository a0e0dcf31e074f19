"""A system mail (confirmation, welcome, preferences link) whose sender died between the
claim and the mark is claimed again after the lease by the next worker pass and sent once;
the dead sender's late result is refused by the fence. On SQLite and PostgreSQL.

The crash is simulated: the row is claimed with a clock one lease and a minute in the past
and never sent, which is what a process killed mid-send leaves behind."""

from __future__ import annotations

import email
import email.policy
from datetime import timedelta
from email.message import EmailMessage

from sqlalchemy import select

from mailer.render.tokens import Signer
from mailer.sending import one_mail, publish, system_mail
from mailer.sending.engine import Engine
from mailer.sending.models import Delivery, DeliveryStatus
from mailer.transports.outbox import OutboxTransport
from subscribers import list_settings, store
from subscribers.list_settings import ListChanges
from subscribers.models import Subscription, utcnow
from tests.conftest import TEST_SECRET_KEY, Database

LEASE = 300.0


def _outbox(db: Database) -> list[EmailMessage]:
    folder = db.tmp / "outbox" / "0"
    out = []
    for f in sorted(folder.glob("*.eml")) if folder.exists() else []:
        msg = email.message_from_bytes(f.read_bytes(), policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        out.append(msg)
    return out


def _pending_reader(db: Database) -> None:
    with db.sessions.begin() as s:
        mlist = store.create_list(s, "brief", name="The Brief", from_address="b@example.org")
        list_settings.update_list(s, mlist, ListChanges(welcome_markdown="# Hello"))
        store.subscribe(s, "reader@example.org", mlist)


def _worker_pass(db: Database) -> str:
    """What `mailer worker` does in one look for work; the worker's id."""
    settings = db.settings(lease_seconds=LEASE)
    with Engine(settings, db.sessions, OutboxTransport(db.tmp / "outbox")) as engine:
        list(publish.run_due(engine, db.sessions))
        return engine.worker_id


def _row(db: Database, delivery_id: int) -> Delivery:
    with db.sessions() as s:
        row = s.get(Delivery, delivery_id)
        assert row is not None
        s.expunge(row)
        return row


def test_a_confirmation_left_sending_by_a_dead_sender_is_sent_once_and_its_late_result_refused(
    db: Database,
) -> None:
    _pending_reader(db)
    crashed_at = utcnow() - timedelta(seconds=LEASE + 60)
    with db.sessions.begin() as s:
        subscription = s.scalar(select(Subscription))
        assert subscription is not None
        due = system_mail.claim_confirmation(s, subscription, crashed_at)
    assert due is not None  # claimed; the sender died before sending it

    worker = _worker_pass(db)
    [mail] = _outbox(db)
    assert mail["To"] == "reader@example.org"
    assert mail["Subject"] == "Confirm your subscription to The Brief"
    row = _row(db, due.delivery_id)
    assert (row.status, row.attempts, row.worker) == ("sent", 2, worker)
    assert row.message_id

    _worker_pass(db)  # the next pass sends nothing more
    assert len(_outbox(db)) == 1

    # the dead sender comes back and writes its result: refused, the row keeps the worker's
    with db.sessions.begin() as s:
        assert not one_mail.mark(s, due.held, DeliveryStatus.FAILED, error=None)
    late = _row(db, due.delivery_id)
    assert (late.status, late.message_id) == ("sent", row.message_id)


def test_a_welcome_and_a_preferences_link_are_sent_again_for_their_list(db: Database) -> None:
    _pending_reader(db)
    crashed_at = utcnow() - timedelta(seconds=LEASE + 60)
    with db.sessions.begin() as s:
        subscription = s.scalar(select(Subscription))
        assert subscription is not None
        store.confirm(
            s,
            subscription.subscriber_id,
            subscription.list_id,
            version=subscription.consent_version,
            actor=store.CLI,
        )
        s.refresh(subscription)
        welcome = system_mail.claim_welcome(s, subscription, subscription.mailing_list, crashed_at)
        assert welcome is not None
        prefs = one_mail.claim(s, "preferences", subscription.subscriber_id, crashed_at)

    _worker_pass(db)
    subjects = sorted(str(m["Subject"]) for m in _outbox(db))
    assert subjects == ["Welcome to The Brief", "Your preferences for The Brief"]
    assert _row(db, welcome.delivery_id).status == "sent"
    assert _row(db, prefs.delivery_id).status == "sent"


def test_a_claim_younger_than_the_lease_is_left_to_its_sender(db: Database) -> None:
    """The sender may still be talking to the transport: no second mail."""
    _pending_reader(db)
    with db.sessions.begin() as s:
        subscription = s.scalar(select(Subscription))
        assert subscription is not None
        due = system_mail.claim_confirmation(s, subscription, utcnow() - timedelta(seconds=60))
    assert due is not None
    _worker_pass(db)
    assert _outbox(db) == []
    assert _row(db, due.delivery_id).status == "sending"
    # and its own result is written as before
    sent = system_mail.send_due(
        db.sessions,
        db.settings(),
        Signer(TEST_SECRET_KEY),
        OutboxTransport(db.tmp / "outbox"),
        due,
        now=utcnow(),
    )
    assert sent and _row(db, due.delivery_id).status == "sent"


def test_a_dead_readers_stale_mail_is_skipped_not_sent(db: Database) -> None:
    _pending_reader(db)
    with db.sessions.begin() as s:
        subscription = s.scalar(select(Subscription))
        assert subscription is not None
        due = system_mail.claim_confirmation(
            s, subscription, utcnow() - timedelta(seconds=LEASE + 60)
        )
        assert due is not None
        store.unsubscribe(s, subscription.subscriber_id, subscription.list_id, actor=store.CLI)
    _worker_pass(db)
    assert _outbox(db) == []
    assert _row(db, due.delivery_id).status == "skipped"
