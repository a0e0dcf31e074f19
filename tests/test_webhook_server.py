"""The webhook in the running `mailer serve` process: real HTTP, real SNS verification (our
self-signed certificate pre-seeded in MAILER_SNS_CERT_DIR), SQLite and PostgreSQL.

The load test posts 5,000 distinct signed notifications plus 500 exact redeliveries from
8 concurrent clients, shuffled, and checks every event was applied exactly once."""

from __future__ import annotations

import copy
import http.client
import json
import queue
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import func, select, update

from mailer.feedback.models import FeedbackEvent
from mailer.sending import campaigns
from mailer.sending.models import Delivery
from subscribers import store
from subscribers.models import ConsentEvent, Subscriber, Subscription, Suppression
from tests.conftest import Database
from tests.delivery_helpers import bare_rendered, fixture_issue
from tests.plugins.mailer_server import mailer_serve
from tests.plugins.sns_certs import CERT_URL, TOPIC_ARN, SNSSigner, make_certificate

FIXTURES = Path(__file__).parent / "fixtures" / "ses_events"
READERS = 250
PER_READER = 20  # 250 x 20 = 5,000 distinct events
DUPLICATES = 500
CLIENTS = 8


def _fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return data


def reader(i: int) -> str:
    return f"r{i:04d}@example.net"


def ses_event(name: str, i: int, n: int) -> str:
    """Fixture ``name`` for reader i, its n-th event (distinct timestamps keep it unique)."""
    data = copy.deepcopy(_fixture(name))
    to = reader(i)
    data["mail"]["messageId"] = f"load-{i:04d}"
    data["mail"]["destination"] = [to]
    data["mail"].pop("tags", None)
    at = datetime(2026, 5, 14, 6, 0, tzinfo=UTC) + timedelta(seconds=i * 100 + n)
    stamp = at.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    for key in ("bounce", "complaint", "delivery", "open", "click"):
        if key in data:
            data[key]["timestamp"] = stamp
    if "bounce" in data:
        data["bounce"]["bouncedRecipients"][0]["emailAddress"] = to
    if "complaint" in data:
        data["complaint"]["complainedRecipients"] = [{"emailAddress": to}]
    if "delivery" in data:
        data["delivery"]["recipients"] = [to]
    return json.dumps(data)


def plan() -> tuple[list[str], set[int], set[int]]:
    """(event bodies, hard-bounced readers, complaining readers)."""
    events: list[str] = []
    hard = {i for i in range(READERS) if i % 10 == 0}
    complained = {i for i in range(READERS) if i % 10 == 1}
    for i in range(READERS):
        mine = [ses_event("event_send", i, 0), ses_event("event_delivery", i, 1)]
        if i in hard:
            mine.append(ses_event("event_bounce", i, 2))
        if i in complained:
            mine.append(ses_event("event_complaint", i, 2))
        n = len(mine)
        while len(mine) < PER_READER:
            mine.append(ses_event("event_click" if n % 3 == 0 else "event_open", i, n))
            n += 1
        events.extend(mine)
    return events, hard, complained


@dataclass
class LoadSet:
    signer: SNSSigner
    bodies: list[bytes]  # what is posted, duplicates included, shuffled
    distinct: int
    hard: set[int]
    complained: set[int]


@pytest.fixture(scope="module")
def load_set(sns_key: rsa.RSAPrivateKey) -> LoadSet:
    """Signed once per module, used on both backends."""
    now = datetime.now(UTC)
    signer = SNSSigner(
        sns_key, make_certificate(sns_key, now - timedelta(days=1), now + timedelta(days=30))
    )
    events, hard, complained = plan()
    envelopes = [
        json.dumps(signer.notification(body, version="2" if k % 2 else "1")).encode()
        for k, body in enumerate(events)
    ]
    rng = random.Random(6)
    bodies = envelopes + rng.sample(envelopes, DUPLICATES)
    rng.shuffle(bodies)
    return LoadSet(signer, bodies, len(envelopes), hard, complained)


@pytest.fixture
def server(db: Database, load_set: LoadSet, tmp_path: Path) -> Iterator[str]:
    certs = tmp_path / "sns-certs"
    certs.mkdir()
    (certs / CERT_URL.rsplit("/", 1)[-1]).write_bytes(load_set.signer.cert_pem)
    env = db.env(MAILER_SNS_TOPIC_ARNS=TOPIC_ARN, MAILER_SNS_CERT_DIR=str(certs))
    with mailer_serve(env, tmp_path) as base:
        yield base


def seed(db: Database) -> None:
    with db.sessions.begin() as s:
        lists = [
            store.create_list(s, slug, name=slug, from_address=f"{slug}@newsletter.example")
            for slug in ("brief", "weekly")
        ]
        for i in range(READERS):
            for mlist in lists:
                store.subscribe(s, reader(i), mlist, confirmed=True)
        campaign, _ = campaigns.create_campaign(
            s, lists[0], fixture_issue(), bare_rendered("The China Brief", "<p>x</p>", "x")
        )
        rows = s.execute(
            select(Delivery.id, Subscriber.email)
            .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
            .where(Delivery.campaign_id == campaign.id)
        ).all()
        for delivery_id, email in rows:
            index = int(email[1:5])
            s.execute(
                update(Delivery)
                .where(Delivery.id == delivery_id)
                .values(status="sent", message_id=f"load-{index:04d}")
            )


def post_all(base: str, bodies: list[bytes]) -> tuple[Counter[str], Counter[int], float]:
    """Post every body from CLIENTS keep-alive connections (http.client: a light client,
    so the server, not the test, sets the pace)."""
    parts = urlsplit(base)
    work: queue.SimpleQueue[bytes] = queue.SimpleQueue()
    for body in bodies:
        work.put(body)
    outcomes: Counter[str] = Counter()
    statuses: Counter[int] = Counter()
    lock = threading.Lock()
    headers = {
        "content-type": "text/plain; charset=UTF-8",
        "x-amz-sns-message-type": "Notification",
    }

    def client() -> None:
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=60)
        while True:
            try:
                body = work.get_nowait()
            except queue.Empty:
                break
            conn.request("POST", "/webhooks/ses", body=body, headers=headers)
            response = conn.getresponse()
            payload = response.read()
            with lock:
                statuses[response.status] += 1
                if response.status == 200:
                    outcomes[json.loads(payload)["status"]] += 1
        conn.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return outcomes, statuses, time.perf_counter() - started


def count(db: Database, query: Any) -> int:
    with db.sessions() as s:
        return int(s.scalar(query) or 0)


def test_signed_and_forged_through_the_running_server(
    db: Database, server: str, load_set: LoadSet
) -> None:
    seed(db)
    event = ses_event("event_bounce", 0, 2)
    good = load_set.signer.notification(event)
    forged = dict(good, Message=event.replace("Permanent", "Transient"))
    with httpx.Client(base_url=server, timeout=30) as http:
        rejected = http.post("/webhooks/ses", content=json.dumps(forged))
        assert rejected.status_code == 403
        assert count(db, select(func.count()).select_from(FeedbackEvent)) == 0
        accepted = http.post("/webhooks/ses", content=json.dumps(good))
        assert accepted.status_code == 200
        assert accepted.json()["matched"] is True
        assert http.post("/webhooks/ses", content=json.dumps(good)).json()["status"] == "duplicate"
        too_big = http.post("/webhooks/ses", content=b"x" * (2 * 1024 * 1024))
        assert too_big.status_code == 413
    with db.sessions() as s:
        row = store.find_suppression(s, reader(0))
        assert row is not None and row.reason == "hard_bounce"


def test_load_every_event_applied_exactly_once(
    db: Database, server: str, load_set: LoadSet
) -> None:
    seed(db)
    outcomes, statuses, seconds = post_all(server, load_set.bodies)
    print(
        f"\n{db.backend}: {len(load_set.bodies)} posts by {CLIENTS} clients in {seconds:.1f}s "
        f"= {len(load_set.bodies) / seconds:.0f}/s"
    )
    assert statuses == {200: len(load_set.bodies)}
    assert outcomes == {"applied": load_set.distinct, "duplicate": DUPLICATES}
    assert count(db, select(func.count()).select_from(FeedbackEvent)) == load_set.distinct
    assert (
        count(
            db,
            select(func.count())
            .select_from(FeedbackEvent)
            .where(FeedbackEvent.delivery_id.is_(None)),
        )
        == 0
    ), "every event matched its Delivery row"
    expected = {reader(i) for i in load_set.hard | load_set.complained}
    with db.sessions() as s:
        suppressed = {e for (e,) in s.execute(select(Suppression.email))}
        reasons = Counter(r for (r,) in s.execute(select(Suppression.reason)))
        unsubscribed = {
            e
            for (e,) in s.execute(
                select(Subscriber.email)
                .join(Subscription, Subscription.subscriber_id == Subscriber.id)
                .where(Subscription.status == "unsubscribed")
            )
        }
        ledger = Counter(
            a
            for (a,) in s.execute(
                select(ConsentEvent.action).where(ConsentEvent.source.like("ses-feedback:%"))
            )
        )
    assert suppressed == expected
    assert reasons == {"hard_bounce": len(load_set.hard), "complaint": len(load_set.complained)}
    assert unsubscribed == {reader(i) for i in load_set.complained}
    assert ledger == {"suppress": len(expected), "unsubscribe": 2 * len(load_set.complained)}
