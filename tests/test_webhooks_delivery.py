"""Webhooks out, the delivery (issue 14): signed per Standard Webhooks and verified by the
reference package on a real loopback receiver; retries on the backoff schedule (injected
clock); and what a receiver can do to us: hang, drip, redirect, answer 500 for ever or a
gigabyte, be down, or sit behind a URL that is not http. On SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select
from standardwebhooks import Webhook, WebhookVerificationError

from mailer.webhooks import endpoints
from mailer.webhooks.dispatch import Background, Dispatcher, Policy
from mailer.webhooks.signing import new_secret, signed_headers
from subscribers import store
from subscribers.models import utcnow
from subscribers.outbox import WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookEvent
from tests.conftest import Database
from tests.webhook_receiver import Receiver


class Clock:
    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().reserve()
    yield r
    r.stop()


def _add(db: Database, receiver: Receiver, events: str = "suppression.added") -> int:
    with db.sessions.begin() as s:
        endpoint = endpoints.add(s, receiver.url, events)
        receiver.secret = endpoint.secret
        return endpoint.id


def _suppress(db: Database, *emails: str) -> None:
    with db.sessions.begin() as s:
        for email in emails:
            store.suppress(s, email, "manual")


def _dispatcher(
    db: Database, clock: Clock | None = None, *, timeout: float = 5.0, attempts: int = 12
) -> Dispatcher:
    policy = Policy(timeout=timeout, retry_base=10.0, max_attempts=attempts)
    return Dispatcher(db.sessions, policy, clock=clock or Clock())


def _deliveries(db: Database) -> list[WebhookDelivery]:
    with db.sessions() as s:
        rows = list(s.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)))
        s.expunge_all()
        return rows


def _log(db: Database) -> list[WebhookAttempt]:
    with db.sessions() as s:
        rows = list(s.scalars(select(WebhookAttempt).order_by(WebhookAttempt.id)))
        s.expunge_all()
        return rows


def test_a_signed_event_verifies_at_the_receiver(db: Database, receiver: Receiver) -> None:
    _add(db, receiver)
    receiver.start()
    _suppress(db, "one@example.com")
    assert _dispatcher(db).run_once() == 1
    (event,) = receiver.verified("suppression.added")
    assert event["data"] == {"email": "one@example.com", "reason": "manual", "source": "cli"}
    (got,) = receiver.received
    assert got.headers["webhook-id"].startswith("msg_")
    assert got.headers["webhook-signature"].startswith("v1,")
    assert got.headers["content-type"] == "application/json"
    (delivery,) = _deliveries(db)
    assert (delivery.status, delivery.attempts, delivery.next_attempt_at) == ("delivered", 1, None)
    (attempt,) = _log(db)
    assert (attempt.attempt, attempt.status_code, attempt.error) == (1, 204, None)
    assert _dispatcher(db).run_once() == 0  # delivered once, not again


def test_forged_altered_and_replayed_requests_are_refused(db: Database, receiver: Receiver) -> None:
    """What README tells receivers to do (the reference verifier) refuses each attack."""
    _add(db, receiver)
    receiver.start()
    _suppress(db, "one@example.com")
    _dispatcher(db).run_once()
    (good,) = receiver.received
    secret = receiver.secret
    assert secret is not None
    assert Webhook(secret).verify(good.body, good.headers)["type"] == "suppression.added"
    uid = good.headers["webhook-id"]
    cases = {
        "another secret": (good.body, signed_headers(new_secret(), uid, utcnow(), good.body)),
        "altered body": (good.body.replace(b"one@", b"two@"), good.headers),
        "replayed 6 minutes later": (
            good.body,
            signed_headers(secret, uid, utcnow() - timedelta(minutes=6), good.body),
        ),
        "from the future": (
            good.body,
            signed_headers(secret, uid, utcnow() + timedelta(minutes=6), good.body),
        ),
        "no signature": (good.body, {k: v for k, v in good.headers.items() if "sig" not in k}),
        "signature of another id": (
            good.body,
            {**good.headers, "webhook-id": "msg_other"},
        ),
        "v2 scheme only": (
            good.body,
            {
                **good.headers,
                "webhook-signature": good.headers["webhook-signature"].replace("v1,", "v2,"),
            },
        ),
    }
    for name, (body, headers) in cases.items():
        with pytest.raises(WebhookVerificationError):
            Webhook(secret).verify(body, headers)
            pytest.fail(f"{name} verified")


def test_the_signature_is_the_specifications(db: Database) -> None:
    """v1 = base64(HMAC-SHA256(base64-decoded secret, 'id.timestamp.body')), by hand."""
    secret = new_secret()
    key = base64.b64decode(secret.removeprefix("whsec_"))
    assert secret.startswith("whsec_") and len(key) == 32
    at = utcnow()
    body = json.dumps({"type": "campaign.done", "data": {"x": "é"}}).encode()
    headers = signed_headers(secret, "msg_abc", at, body)
    ts = str(int(at.timestamp()))
    mac = hmac.new(key, f"msg_abc.{ts}.".encode() + body, hashlib.sha256).digest()
    assert headers["webhook-timestamp"] == ts
    assert headers["webhook-signature"] == "v1," + base64.b64encode(mac).decode()


def test_retries_follow_the_backoff_then_give_up(db: Database, receiver: Receiver) -> None:
    receiver.mode = "500"
    _add(db, receiver)
    receiver.start()
    _suppress(db, "one@example.com")
    clock = Clock()
    start = clock.now
    dispatcher = _dispatcher(db, clock, attempts=4)
    waits = [10, 40, 160]
    assert dispatcher.run_once() == 1
    for wait in waits:
        clock.advance(wait - 1)
        assert dispatcher.run_once() == 0  # not due yet
        clock.advance(1)
        assert dispatcher.run_once() == 1
    log = _log(db)
    assert [a.attempt for a in log] == [1, 2, 3, 4]
    assert [a.status_code for a in log] == [500] * 4
    assert all(a.error == "HTTP 500" for a in log)
    due = [start + timedelta(seconds=s) for s in (10, 50, 210)]
    assert [a.next_attempt_at for a in log] == [*due, None]
    (delivery,) = _deliveries(db)
    assert (delivery.status, delivery.attempts) == ("failed", 4)
    clock.advance(10_000)
    assert dispatcher.run_once() == 0  # failed stays failed
    assert len(receiver.received) == 4
    receiver.mode = "ok"
    with db.sessions.begin() as s:
        assert endpoints.retry_failed(s) == 1
    clock.now = utcnow()  # a fresh attempt, signed now (the receiver checks the time)
    assert dispatcher.run_once() == 1
    assert _deliveries(db)[0].status == "delivered"
    assert len(receiver.verified("suppression.added")) == 5  # every attempt was signed well


def test_the_wait_grows_to_at_most_six_hours() -> None:
    policy = Policy(retry_base=10.0)
    assert [policy.delay(n).total_seconds() for n in (1, 2, 3, 4)] == [10, 40, 160, 640]
    assert policy.delay(9) == timedelta(hours=6)
    assert policy.delay(10_000) == timedelta(hours=6)


def test_a_receiver_that_is_down_loses_nothing(db: Database, receiver: Receiver) -> None:
    _add(db, receiver)
    _suppress(db, "a@example.com", "b@example.com")
    clock = Clock()
    dispatcher = _dispatcher(db, clock)
    assert dispatcher.run_once() == 2  # refused: nobody listens
    assert {d.status for d in _deliveries(db)} == {"pending"}
    assert all("ConnectError" in (a.error or "") for a in _log(db))
    receiver.start()
    assert dispatcher.run_once() == 0  # not before the next attempt is due
    clock.advance(10)
    assert dispatcher.run_once() == 2
    got = sorted(e["data"]["email"] for e in receiver.verified())
    assert got == ["a@example.com", "b@example.com"]
    assert {d.status for d in _deliveries(db)} == {"delivered"}


def test_a_receiver_that_hangs_is_given_up_on(db: Database, receiver: Receiver) -> None:
    receiver.mode = "hang"
    _add(db, receiver)
    receiver.start()
    _suppress(db, "a@example.com")
    assert _dispatcher(db, timeout=0.5).run_once() == 1
    (attempt,) = _log(db)
    assert attempt.error == "no answer within 0.5 s"
    assert attempt.next_attempt_at is not None
    assert _deliveries(db)[0].status == "pending"


def test_a_receiver_that_drips_its_answer_is_given_up_on(db: Database, receiver: Receiver) -> None:
    """A byte every 0.2 s never trips a per-read timeout; the attempt's deadline does."""
    receiver.mode = "drip"
    _add(db, receiver)
    receiver.start()
    _suppress(db, "a@example.com")
    assert _dispatcher(db, timeout=1.0).run_once() == 1
    (attempt,) = _log(db)
    assert attempt.error == "no answer within 1 s"


def test_a_redirect_is_not_followed(db: Database, receiver: Receiver) -> None:
    receiver.mode = "redirect"
    _add(db, receiver)
    receiver.start()
    _suppress(db, "a@example.com")
    assert _dispatcher(db).run_once() == 1
    (attempt,) = _log(db)
    assert attempt.status_code == 307
    assert attempt.error is not None and "not followed" in attempt.error
    assert len(receiver.received) == 1  # nothing went to where it pointed


def test_a_huge_answer_is_not_read(db: Database, receiver: Receiver) -> None:
    receiver.mode = "huge"  # 200 with a 1 GiB body
    _add(db, receiver)
    receiver.start()
    _suppress(db, "a@example.com")
    assert _dispatcher(db, timeout=20).run_once() == 1
    (attempt,) = _log(db)
    assert (attempt.status_code, attempt.error) == (200, None)
    assert _deliveries(db)[0].status == "delivered"


@pytest.mark.parametrize("mode", ["disconnect", "truncated"])
def test_a_receiver_that_hangs_up_gets_it_again(
    db: Database, receiver: Receiver, mode: str
) -> None:
    """No answer, or an answer cut short: not delivered; the next attempt is."""
    receiver.mode = mode
    _add(db, receiver)
    receiver.start()
    _suppress(db, "a@example.com")
    clock = Clock()
    dispatcher = _dispatcher(db, clock)
    assert dispatcher.run_once() == 1
    (attempt,) = _log(db)
    assert attempt.error is not None and attempt.next_attempt_at is not None
    receiver.mode = "ok"
    clock.advance(10)
    assert dispatcher.run_once() == 1
    assert _deliveries(db)[0].status == "delivered"
    ids = {r.headers["webhook-id"] for r in receiver.received}
    assert len(receiver.received) == 2 and len(ids) == 1  # the same event, twice at most


@pytest.mark.parametrize("url", ["file:///etc/passwd", "gopher://127.0.0.1:6379/_x"])
def test_a_stored_url_that_is_not_http_is_never_fetched(db: Database, url: str) -> None:
    """Past the check at `add` (a row written by hand): the client refuses the scheme."""
    with db.sessions.begin() as s:
        s.add(WebhookEndpoint(url=url, events="suppression.added", secret=new_secret()))
    _suppress(db, "a@example.com")
    assert _dispatcher(db).run_once() == 1
    (attempt,) = _log(db)
    assert attempt.status_code is None
    assert attempt.error is not None and "UnsupportedProtocol" in attempt.error
    assert "root:" not in attempt.error


def test_two_dispatchers_post_each_event_once(db: Database, receiver: Receiver) -> None:
    _add(db, receiver)
    receiver.start()
    _suppress(db, *(f"r{i}@example.com" for i in range(30)))
    clock = Clock()
    barrier = threading.Barrier(2)
    counts: list[int] = []

    def run() -> None:
        dispatcher = _dispatcher(db, clock)
        barrier.wait()
        counts.append(dispatcher.run_once())

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(counts) == 30
    ids = [r.headers["webhook-id"] for r in receiver.received]
    assert len(ids) == len(set(ids)) == 30
    assert {d.status for d in _deliveries(db)} == {"delivered"}


def test_old_delivered_events_are_pruned_the_rest_kept(db: Database) -> None:
    with db.sessions.begin() as s:
        s.add(
            WebhookEndpoint(
                url="http://127.0.0.1:9/", events="suppression.added", secret=new_secret()
            )
        )
    _suppress(db, "old.delivered@x.com", "old.pending@x.com", "old.failed@x.com", "new@x.com")
    long_ago = utcnow() - timedelta(days=31)
    state = {"old.delivered": "delivered", "old.pending": "pending", "old.failed": "failed"}
    with db.sessions.begin() as s:
        for delivery, event in s.execute(select(WebhookDelivery, WebhookEvent).join(WebhookEvent)):
            name = event.payload["data"]["email"].split("@")[0]
            delivery.status = state.get(name, "delivered")
            if name != "new":
                event.created_at = long_ago
    dispatcher = _dispatcher(db)
    assert dispatcher.prune() == 1
    with db.sessions() as s:
        left = sorted(p["data"]["email"] for p in s.scalars(select(WebhookEvent.payload)))
        assert s.scalar(select(func.count()).select_from(WebhookDelivery)) == 3
    assert left == ["new@x.com", "old.failed@x.com", "old.pending@x.com"]
    assert dispatcher.prune() == 0


def test_the_worker_thread_survives_a_failed_pass() -> None:
    """A pass that raises (the database away for a moment) is logged; the next one runs."""
    passes: list[int] = []
    second = threading.Event()

    class Flaky(Dispatcher):
        def __init__(self) -> None:
            self.batch = 50

        def prune(self) -> int:
            return 0

        def run_once(self) -> int:
            passes.append(1)
            if len(passes) == 1:
                raise RuntimeError("database went away")
            second.set()
            return 0

    background = Background(Flaky(), poll=0.01)
    background.start()
    try:
        assert second.wait(30), "no pass after the failed one"
    finally:
        background.stop()
    assert len(passes) >= 2


def test_a_hanging_receiver_does_not_hold_up_the_others(db: Database) -> None:
    """Every attempt of a pass is in flight at once: the healthy endpoint is served in the
    same pass the hanging one times out in."""
    stuck, healthy = Receiver(mode="hang").start(), Receiver().start()
    try:
        _add(db, stuck)
        _add(db, healthy)
        _suppress(db, *(f"r{i}@example.com" for i in range(5)))
        assert _dispatcher(db, timeout=1.0).run_once() == 10
        assert len(healthy.verified("suppression.added")) == 5
        states = {d.endpoint_id: set() for d in _deliveries(db)}
        for d in _deliveries(db):
            states[d.endpoint_id].add(d.status)
        assert sorted(map(sorted, states.values())) == [["delivered"], ["pending"]]
    finally:
        stuck.stop()
        healthy.stop()


def test_410_gone_disables_the_endpoint_until_enabled(db: Database, receiver: Receiver) -> None:
    receiver.mode = "gone"
    endpoint_id = _add(db, receiver)
    receiver.start()
    _suppress(db, "a@example.com")
    clock = Clock()
    dispatcher = _dispatcher(db, clock)
    assert dispatcher.run_once() == 1
    with db.sessions() as s:
        assert s.get_one(WebhookEndpoint, endpoint_id).enabled is False
    (attempt,) = _log(db)
    assert (attempt.status_code, attempt.next_attempt_at) == (410, None)
    assert _deliveries(db)[0].status == "failed"
    _suppress(db, "b@example.com")  # disabled: no event is written for it
    assert len(_deliveries(db)) == 1
    with db.sessions.begin() as s:  # ops look, the receiver is back: enable, retry
        endpoints.set_enabled(s, endpoint_id, True)
        assert endpoints.retry_failed(s, endpoint_id) == 1
    receiver.mode = "ok"
    clock.now = utcnow()
    assert dispatcher.run_once() == 1
    assert _deliveries(db)[0].status == "delivered"
    # the refused attempt, then the delivered one; never b, written while disabled
    assert [e["data"]["email"] for e in receiver.verified()] == ["a@example.com"] * 2


def test_a_disabled_endpoints_pending_deliveries_wait(db: Database, receiver: Receiver) -> None:
    endpoint_id = _add(db, receiver)
    receiver.start()
    _suppress(db, "a@example.com")
    with db.sessions.begin() as s:
        endpoints.set_enabled(s, endpoint_id, False)
    dispatcher = _dispatcher(db)
    assert dispatcher.run_once() == 0
    assert _deliveries(db)[0].status == "pending"
    with db.sessions.begin() as s:
        endpoints.set_enabled(s, endpoint_id, True)
    assert dispatcher.run_once() == 1
    assert _deliveries(db)[0].status == "delivered"
