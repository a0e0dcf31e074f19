#!/usr/bin/env python3
"""How many SES notifications per second `mailer serve` takes in, end to end.

Each notification is a real SNS envelope (SignatureVersion 1 or 2) signed with a
self-signed certificate that stands in for SNS's, pre-seeded in MAILER_SNS_CERT_DIR, so the
running server verifies every signature (certificate cached after the first load), parses
the SES event, matches it to its Delivery row and applies the rules in one transaction.
Several concurrent keep-alive clients post them, with exact redeliveries mixed in; at the
end the script checks every distinct event was stored exactly once.

Baselines measured in the same run, in this process, on the same envelopes:
  json       json.loads of the envelope + SES event parse (no crypto, no database)
  verify     SNSVerifier.verify with the certificate cache on
  nocache    SNSVerifier.verify with the cache cleared before each message (PEM loaded
             from the cert dir every time)

Goal: >= 500 notifications/s end to end on this machine.

    .venv/bin/python scripts/bench_feedback.py [--events 5000] [--clients 16]
        [--duplicates 0.1] [--database-url postgresql://postgres@127.0.0.1/test]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import queue
import random
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402
from sqlalchemy import create_engine, func, select, text, update  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from mailer.config import Settings  # noqa: E402
from mailer.feedback.events import parse_message_text  # noqa: E402
from mailer.feedback.models import FeedbackEvent  # noqa: E402
from mailer.feedback.sns import SNSVerifier  # noqa: E402
from mailer.sending import campaigns  # noqa: E402
from mailer.sending.models import Delivery  # noqa: E402
from subscribers import store  # noqa: E402
from subscribers.db import make_engine, normalize_url, session_factory  # noqa: E402
from subscribers.migrate import upgrade  # noqa: E402
from subscribers.models import Subscriber  # noqa: E402
from tests.delivery_helpers import bare_rendered, fixture_issue  # noqa: E402
from tests.plugins.mailer_server import cpu_seconds, mailer_serve_process  # noqa: E402
from tests.plugins.sns_certs import CERT_URL, TOPIC_ARN, SNSSigner, make_certificate  # noqa: E402

GOAL = 500.0
FIXTURES = ROOT / "tests" / "fixtures" / "ses_events"
KINDS = ["event_delivery", "event_open", "event_click", "event_send", "event_delivery_delay"]


def reader(i: int) -> str:
    return f"bench{i:05d}@example.net"


def event_json(kind: str, i: int, n: int) -> str:
    data: dict[str, Any] = json.loads((FIXTURES / f"{kind}.json").read_text())
    to = reader(i)
    data["mail"].update(messageId=f"bench-{i:05d}", destination=[to])
    data["mail"].pop("tags", None)
    at = datetime(2026, 5, 14, tzinfo=UTC) + timedelta(seconds=n)
    stamp = at.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    # every event distinct, as SES's are (identical content would be deduplicated)
    data["mail"]["timestamp"] = (at - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    for key in ("delivery", "open", "click", "deliveryDelay"):
        if key in data:
            data[key]["timestamp"] = stamp
    if "delivery" in data:
        data["delivery"]["recipients"] = [to]
    if "deliveryDelay" in data:
        data["deliveryDelay"]["delayedRecipients"][0]["emailAddress"] = to
    return json.dumps(data)


def rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


def timed(fn: Any, items: list[Any]) -> float:
    started = time.perf_counter()
    for item in items:
        fn(item)
    return rate(len(items), time.perf_counter() - started)


# -- database ------------------------------------------------------------------------------


class BenchDatabase:
    """A fresh SQLite file, or a fresh database on the given PostgreSQL server."""

    def __init__(self, url: str | None, tmp: Path) -> None:
        self.admin: Any = None
        if url and make_url(normalize_url(url)).get_backend_name() == "postgresql":
            name = f"brief_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
            self.admin = create_engine(normalize_url(url), isolation_level="AUTOCOMMIT")
            with self.admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
            self.name = name
            self.url = make_url(normalize_url(url)).set(database=name).render_as_string(False)
        else:
            self.url = f"sqlite:///{tmp / 'bench.db'}"
        self.engine = make_engine(self.url)
        upgrade(self.engine)
        self.sessions = session_factory(self.engine)

    def close(self) -> None:
        self.engine.dispose()
        if self.admin is not None:
            with self.admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
            self.admin.dispose()


def seed(db: BenchDatabase, readers: int) -> None:
    with db.sessions.begin() as s:
        mlist = store.create_list(s, "brief", name="Brief", from_address="b@newsletter.example")
        for i in range(readers):
            store.subscribe(s, reader(i), mlist, confirmed=True)
        campaign, _ = campaigns.create_campaign(
            s, mlist, fixture_issue(), bare_rendered("bench", "<p>x</p>", "x")
        )
        rows = s.execute(
            select(Delivery.id, Subscriber.email)
            .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
            .where(Delivery.campaign_id == campaign.id)
        ).all()
        for delivery_id, email in rows:
            s.execute(
                update(Delivery)
                .where(Delivery.id == delivery_id)
                .values(status="sent", message_id=f"bench-{email[5:10]}")
            )


# -- clients -------------------------------------------------------------------------------


def post_all(base: str, bodies: list[bytes], clients: int) -> tuple[Counter[str], float]:
    """Post every body with ``clients`` keep-alive connections; count response outcomes."""
    parts = urlsplit(base)
    work: queue.SimpleQueue[bytes] = queue.SimpleQueue()
    for body in bodies:
        work.put(body)
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()
    headers = {
        "Content-Type": "text/plain; charset=UTF-8",
        "x-amz-sns-message-type": "Notification",
    }

    def client() -> None:
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=60)
        mine: Counter[str] = Counter()
        while True:
            try:
                body = work.get_nowait()
            except queue.Empty:
                break
            conn.request("POST", "/webhooks/ses", body=body, headers=headers)
            response = conn.getresponse()
            payload = response.read()
            if response.status == 200:
                mine[json.loads(payload)["status"]] += 1
            else:
                mine[f"http {response.status}"] += 1
        conn.close()
        with lock:
            outcomes.update(mine)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return outcomes, time.perf_counter() - started


# -- main ----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=5000, help="distinct notifications")
    parser.add_argument("--clients", type=int, default=16, help="concurrent HTTP clients")
    parser.add_argument("--duplicates", type=float, default=0.1, help="redelivered share")
    parser.add_argument("--database-url", default=None, help="PostgreSQL server (default SQLite)")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-feedback-"))
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = datetime.now(UTC)
    signer = SNSSigner(key, make_certificate(key, now - timedelta(days=1), now + timedelta(7)))
    certs = tmp / "certs"
    certs.mkdir()
    (certs / CERT_URL.rsplit("/", 1)[-1]).write_bytes(signer.cert_pem)

    readers = max(1, args.events // 10)
    events = [event_json(KINDS[n % len(KINDS)], n % readers, n) for n in range(args.events)]
    warmup = [signer.notification(event_json("event_open", 0, 10**6 + n)) for n in range(50)]
    envelopes = [
        signer.notification(e, version="2" if n % 2 else "1") for n, e in enumerate(events)
    ]
    rng = random.Random(1)
    bodies = [json.dumps(e).encode() for e in envelopes]
    posted = bodies + rng.sample(bodies, int(len(bodies) * args.duplicates))
    rng.shuffle(posted)

    # baselines, same envelopes, this process
    settings = Settings(env="test", sns_topic_arns=(TOPIC_ARN,), sns_cert_dir=str(certs))
    verifier = SNSVerifier(settings)
    json_rate = timed(lambda b: parse_message_text(json.loads(b)["Message"]), bodies)
    verify_rate = timed(verifier.verify, envelopes)

    def uncached(envelope: dict[str, Any]) -> None:
        verifier.clear_cache()
        verifier.verify(envelope)

    nocache_rate = timed(uncached, envelopes)

    db = BenchDatabase(args.database_url, tmp)
    try:
        seed(db, readers)
        env = dict(os.environ)
        env.update(
            MAILER_DATABASE_URL=db.url,
            MAILER_ENV="test",
            MAILER_SECRET_KEY="bench",
            MAILER_SNS_TOPIC_ARNS=TOPIC_ARN,
            MAILER_SNS_CERT_DIR=str(certs),
        )
        with mailer_serve_process(env, tmp) as (base, proc):
            post_all(base, [json.dumps(w).encode() for w in warmup], 2)
            cpu_before, client_before = cpu_seconds(proc.pid), time.process_time()
            outcomes, seconds = post_all(base, posted, args.clients)
            server_cpu = cpu_seconds(proc.pid) - cpu_before
            client_cpu = time.process_time() - client_before
        with db.sessions() as s:
            stored = s.scalar(select(func.count()).select_from(FeedbackEvent)) or 0
    finally:
        db.close()

    e2e = rate(len(posted), seconds)
    backend = "postgresql" if args.database_url else "sqlite"
    print(f"brief-mailer feedback intake benchmark ({backend}, {args.clients} clients)")
    print(f"  posted {len(posted)} notifications ({len(bodies)} distinct) in {seconds:.2f}s")
    print(f"  responses: {dict(outcomes)}")
    print(f"  stored events: {stored - len(warmup)} (expected {len(bodies)})")
    print(f"  end to end            {e2e:8.0f} notifications/s  (goal {GOAL:.0f}/s)")
    print(f"  baseline json parse   {json_rate:8.0f} /s")
    print(f"  baseline verify       {verify_rate:8.0f} /s  (certificate cached)")
    print(f"  baseline verify       {nocache_rate:8.0f} /s  (cache off, PEM from cert dir)")
    per = server_cpu / len(posted)
    print(
        f"  server CPU            {per * 1e3:8.2f} ms/notification -> {1 / per:.0f}/s per core"
        f" (clients used {client_cpu / len(posted) * 1e3:.2f} ms/notification)"
    )
    print(f"  load average          {os.getloadavg()[0]:8.2f} (other work on the machine)")
    print(f"  ratio end-to-end / goal            {e2e / GOAL:6.2f}x")
    print(f"  ratio end-to-end / verify-only     {e2e / verify_rate:6.3f}")
    print(f"  ratio end-to-end / json-parse-only {e2e / json_rate:6.3f}")
    print(f"  ratio verify cached / cache off    {verify_rate / nocache_rate:6.2f}x")
    ok = outcomes.get("applied") == len(bodies) and stored - len(warmup) == len(bodies)
    print("  exactly once: " + ("yes" if ok else "NO"))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
