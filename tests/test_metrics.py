"""/metrics parsed by prometheus-client's own text parser, values asserted against the seeded
ledger (tests/ops_seed.py), on SQLite and PostgreSQL; one registry per app."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update
from starlette.requests import Request

from mailer.sending.models import Campaign, Delivery
from mailer.web.app import create_app
from mailer.web.metrics import app_metrics, record_webhook_verification_failure
from tests.conftest import Database
from tests.ops_seed import Seeded, seed
from tests.web_support import AppClient

TOKEN = "metrics-token-0123456789abcdef"
BASE = "https://news.example.com"
NOW = datetime.now(UTC).replace(microsecond=0)

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(client: AppClient) -> Samples:
    r = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=")
    out: Samples = {}
    for family in text_string_to_metric_families(r.text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


@pytest.fixture
def seeded(db: Database) -> Seeded:
    with db.sessions.begin() as session:
        seeded = seed(session, NOW)
        # three more of campaign 2 went out ten seconds ago; campaign 1 is paused
        ids = [seeded.deliveries[(seeded.c2, f"e{i}@yahoo.com")] for i in (2, 3, 4)]
        session.execute(
            update(Delivery)
            .where(Delivery.id.in_(ids))
            .values(status="sent", sent_at=NOW - timedelta(seconds=10))
        )
        session.execute(update(Campaign).where(Campaign.id == seeded.c1).values(status="paused"))
    return seeded


@pytest.fixture
def client(db: Database, seeded: Seeded) -> Iterator[AppClient]:
    app = create_app(
        db.settings(base_url=BASE, admin_token=TOKEN, send_rate=12.5), clock=lambda: NOW
    )
    c = AppClient(app, base_url=BASE)
    yield c
    c.close()


def test_ledger_figures(client: AppClient, seeded: Seeded) -> None:
    s = scrape(client)
    assert value(s, "mailer_ledger_up") == 1
    # rows by final state: c1 17 sent, 2 failed, 1 skipped; c2 4 + 3 sent; c3 5 sent
    assert value(s, "mailer_deliveries_total", state="sent", transport="outbox") == 29
    assert value(s, "mailer_deliveries_total", state="failed", transport="outbox") == 2
    assert value(s, "mailer_deliveries_total", state="skipped", transport="outbox") == 1
    events = {
        "Delivery": 20,
        "Bounce": 7,
        "Complaint": 2,
        "Open": 5,
        "Click": 2,
        "Reject": 1,
    }
    for kind, n in events.items():
        assert value(s, "mailer_feedback_events_total", type=kind) == n, kind
    assert value(s, "mailer_queue_depth", campaign=str(seeded.c2)) == 3
    assert ("mailer_queue_depth", (("campaign", str(seeded.c1)),)) not in s
    assert value(s, "mailer_campaigns", status="done") == 1
    assert value(s, "mailer_campaigns", status="paused") == 1
    assert value(s, "mailer_campaigns", status="sending") == 1
    assert value(s, "mailer_campaigns", status="cancelled") == 0
    assert value(s, "mailer_send_rate") == pytest.approx(3 / 60)
    assert value(s, "mailer_send_rate_limit") == 12.5
    # 1 day: c2's 7 sends, no hard bounce; 7 days: c1's 18 too, 2 hard bounces, 1 complaint
    assert value(s, "mailer_bounce_rate", window="1d") == 0
    assert value(s, "mailer_bounce_rate", window="7d") == pytest.approx(2 / 25)
    assert value(s, "mailer_complaint_rate", window="7d") == pytest.approx(1 / 25)
    assert value(s, "mailer_campaign_bounce_rate", campaign=str(seeded.c1)) == pytest.approx(2 / 18)
    assert value(s, "mailer_campaign_complaint_rate", campaign=str(seeded.c1)) == pytest.approx(
        1 / 18
    )
    assert value(s, "mailer_campaign_bounce_rate", campaign=str(seeded.c2)) == 0
    assert ("mailer_campaign_bounce_rate", (("campaign", str(seeded.c3)),)) not in s
    for reason, n in {
        "complaint": 1,
        "hard_bounce": 1,
        "manual": 2,
        "soft_bounce_limit": 1,
    }.items():
        assert value(s, "mailer_suppressions", reason=reason) == n
    assert value(s, "mailer_webhook_verification_failures_total") == 0


def test_webhook_failures_are_counted_per_app(db: Database, client: AppClient) -> None:
    other = AppClient(create_app(db.settings(base_url=BASE, admin_token=TOKEN)), base_url=BASE)
    try:
        for _ in range(2):
            record_webhook_verification_failure(Request({"type": "http", "app": client.app}))
        assert value(scrape(client), "mailer_webhook_verification_failures_total") == 2
        assert value(scrape(other), "mailer_webhook_verification_failures_total") == 0
        assert app_metrics(client.app) is app_metrics(client.app)
        assert app_metrics(client.app) is not app_metrics(other.app)
    finally:
        other.close()
    # nothing of ours in prometheus-client's global registry
    assert not [m for m in REGISTRY.collect() if m.name.startswith("mailer_")]


def test_counters_follow_the_ledger(db: Database, client: AppClient, seeded: Seeded) -> None:
    before = scrape(client)
    with db.sessions.begin() as session:
        session.execute(
            update(Delivery)
            .where(Delivery.campaign_id == seeded.c2, Delivery.status.in_(["queued", "sending"]))
            .values(status="sent", sent_at=NOW - timedelta(seconds=5))
        )
    after = scrape(client)
    sent = ("mailer_deliveries_total", (("state", "sent"), ("transport", "outbox")))
    assert after[sent] - before[sent] == 3
    assert ("mailer_queue_depth", (("campaign", str(seeded.c2)),)) not in after
    assert value(after, "mailer_send_rate") == pytest.approx(6 / 60)


def test_a_database_outage_is_reported_not_raised(tmp_path: object) -> None:
    from mailer.config import Settings

    settings = Settings(
        database_url="postgresql://postgres@127.0.0.1:1/nothing",
        base_url=BASE,
        admin_token=TOKEN,
        env="test",
        secret_key="x" * 20,
    )
    c = AppClient(create_app(settings), base_url=BASE)
    try:
        s = scrape(c)
    finally:
        c.close()
    assert value(s, "mailer_ledger_up") == 0
    assert value(s, "mailer_webhook_verification_failures_total") == 0
    assert not any(name == "mailer_deliveries_total" for name, _ in s)
