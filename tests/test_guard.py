"""The reputation guard: verdicts on seeded data, and a campaign driven into it for real.

The end-to-end test sends through the send engine (mailer.sending.engine) and the SES-v2 test
server, feeds SES Bounce events for messages the server accepted back through the feedback
rules while the campaign runs, and checks that the engine paused it with the guard's reason
and claimed nothing after (the batches already in flight finish); then ops resume with
--force and the rest goes out.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from mailer.config import Settings
from mailer.errors import ConflictError, NotFoundError
from mailer.feedback.models import FeedbackEvent
from mailer.feedback.rules import apply_payload
from mailer.sending import campaigns, guard, lifecycle
from mailer.sending.engine import PIPELINE, RECORDS_AHEAD, Engine, Progress
from mailer.sending.models import Campaign, Delivery
from mailer.transports import make_transport
from subscribers import store
from tests.conftest import Database
from tests.delivery_helpers import bare_rendered, fixture_issue
from tests.ops_seed import Seeded, seed
from tests.support.ses_server import SesServer

NOW = datetime(2025, 6, 18, 12, 0, tzinfo=UTC)


@pytest.fixture
def seeded(db: Database) -> Seeded:
    with db.sessions.begin() as session:
        return seed(session, NOW)


def settings(db: Database, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "guard_min_sample": 10,
        "guard_bounce_rate": 0.04,
        "guard_complaint_rate": 0.0008,
    }
    values.update(overrides)
    return db.settings(**values)


def test_sample_counts_the_campaign(db: Database, seeded: Seeded) -> None:
    with db.sessions() as session:
        s1 = guard.sample(session, seeded.c1)
        s2 = guard.sample(session, seeded.c2)
        with pytest.raises(NotFoundError, match="no campaign 999"):
            guard.sample(session, 999)
    # c1: 18 rows sent, rows 8 and 14 hard-bounced (14 twice), one complaint (not-spam
    # feedback and soft bounces do not count)
    assert (s1.sent, s1.hard_bounced, s1.complained, s1.since) == (18, 2, 1, None)
    assert s1.bounce_rate == pytest.approx(2 / 18)
    assert (s2.sent, s2.hard_bounced, s2.complained) == (4, 0, 0)
    with db.sessions() as session:
        lazy1 = guard.sample(session, seeded.c1, lazy=True)
        lazy2 = guard.sample(session, seeded.c2, lazy=True)
    assert lazy1 == s1  # events to judge: the sends are counted
    assert (lazy2.sent, lazy2.hard_bounced, lazy2.complained) == (0, 0, 0)  # nothing to judge


def test_bounce_verdict(db: Database, seeded: Seeded) -> None:
    with db.sessions() as session:
        reason = guard.check_campaign(session, seeded.c1, settings(db, guard_complaint_rate=0.9))
    assert reason is not None
    assert reason.startswith(
        "bounce rate 11.11% (2 hard bounces / 18 sent) >= MAILER_GUARD_BOUNCE_RATE 4.00%"
    )
    assert f"mailer campaigns resume {seeded.c1} --force" in reason
    assert "complaint" not in reason.split(".")[0]


def test_complaint_verdict(db: Database, seeded: Seeded) -> None:
    with db.sessions() as session:
        reason = guard.check_campaign(session, seeded.c1, settings(db, guard_bounce_rate=0.5))
        both = guard.check_campaign(session, seeded.c1, settings(db))
    assert reason is not None
    assert reason.startswith(
        "complaint rate 5.56% (1 complaints / 18 sent) >= MAILER_GUARD_COMPLAINT_RATE 0.08%"
    )
    assert both is not None and "bounce rate" in both and "complaint rate" in both


def test_no_verdict_below_the_sample_or_the_thresholds(db: Database, seeded: Seeded) -> None:
    with db.sessions() as session:
        assert guard.check_campaign(session, seeded.c1, settings(db, guard_min_sample=19)) is None
        assert guard.check_campaign(session, seeded.c1, settings(db, guard_min_sample=18))
        assert (
            guard.check_campaign(
                session,
                seeded.c1,
                settings(db, guard_bounce_rate=0.12, guard_complaint_rate=0.06),
            )
            is None
        )
        # 0 turns a check off
        assert (
            guard.check_campaign(
                session, seeded.c1, settings(db, guard_bounce_rate=0, guard_complaint_rate=0)
            )
            is None
        )
        # c2: 4 sent, no hard bounce, no complaint
        assert guard.check_campaign(session, seeded.c2, settings(db, guard_min_sample=1)) is None


def test_exact_threshold_pauses(db: Database, seeded: Seeded) -> None:
    # 2 / 18 = 0.1111...: at the threshold counts as crossed
    with db.sessions() as session:
        at = guard.check_campaign(
            session, seeded.c1, settings(db, guard_bounce_rate=2 / 18, guard_complaint_rate=0)
        )
    assert at is not None


def test_acknowledged_guard_judges_only_what_came_after(db: Database, seeded: Seeded) -> None:
    cfg = settings(db, guard_min_sample=2)
    ack = NOW - timedelta(days=1)  # after c1's sends (now-2d) and events (now-2d+1h)
    with db.sessions.begin() as session:
        guard.acknowledge(session, seeded.c1, ack)
    with db.sessions() as session:
        s = guard.sample(session, seeded.c1)
        assert (s.since, s.sent, s.hard_bounced, s.complained) == (ack, 0, 0, 0)
        assert guard.check_campaign(session, seeded.c1, cfg) is None
    # Two rows are sent again after the acknowledgement (retry_failed), one hard-bounces.
    with db.sessions.begin() as session:
        rows = session.scalars(
            select(Delivery)
            .where(Delivery.campaign_id == seeded.c1, Delivery.status == "failed")
            .order_by(Delivery.id)
        ).all()
        for row in rows:
            row.status, row.sent_at = "sent", NOW
        session.add(
            FeedbackEvent(
                event_hash="after-ack-bounce",
                event_type="Bounce",
                bounce_type="Permanent",
                ses_message_id=rows[0].message_id or "x",
                delivery_id=rows[0].id,
                email="b5@outlook.com",
                occurred_at=NOW,
                received_at=NOW + timedelta(minutes=1),
                raw={},
            )
        )
    with db.sessions() as session:
        s = guard.sample(session, seeded.c1)
        assert (s.sent, s.hard_bounced) == (2, 1)
        reason = guard.check_campaign(session, seeded.c1, cfg)
    assert reason is not None and reason.startswith("bounce rate 50.00% (1 hard bounces / 2 sent)")


def test_pause_reason_helpers() -> None:
    reason = guard.pause_reason("bounce rate 9%")
    assert reason == "reputation guard: bounce rate 9%"
    assert guard.is_guard_pause(reason)
    assert not guard.is_guard_pause("AccountSuspendedException: suspended")
    assert not guard.is_guard_pause(None)


# -- end to end: the engine, the SES test server, bounce events ------------------------------

READERS = 60
BATCH = 10


def _bounce_event(message_id: str, to: str, sent: float) -> dict[str, Any]:
    """An SES configuration-set Bounce event (as SES publishes it) for one message."""
    at = datetime.fromtimestamp(sent, UTC)
    stamp = at.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    return {
        "eventType": "Bounce",
        "bounce": {
            "feedbackId": f"0100-{message_id}",
            "bounceType": "Permanent",
            "bounceSubType": "General",
            "bouncedRecipients": [
                {
                    "emailAddress": to,
                    "action": "failed",
                    "status": "5.1.1",
                    "diagnosticCode": "smtp; 550 5.1.1 user unknown",
                }
            ],
            "timestamp": (at + timedelta(seconds=2)).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "reportingMTA": "dsn; a1-2.smtp-out.amazonses.com",
        },
        "mail": {
            "timestamp": stamp,
            "source": "brief@news.example.com",
            "messageId": message_id,
            "destination": [to],
            "tags": {},
        },
    }


def test_engine_pauses_on_a_bounce_spike_and_sends_nothing_after(
    db: Database, aws_env: dict[str, str]
) -> None:
    cfg = db.settings(
        transport="ses",
        ses_region="us-east-1",
        ses_api="single",
        batch_size=BATCH,
        send_concurrency=2,
        guard_min_sample=20,
        guard_bounce_rate=0.10,
    )
    with db.sessions.begin() as session:
        mlist = store.create_list(
            session, "brief", name="The Brief", from_address="Brief <brief@news.example.com>"
        )
        for i in range(READERS):
            store.subscribe(session, f"reader{i:02d}@example.com", mlist, confirmed=True)
        campaign, _ = campaigns.create_campaign(
            session,
            mlist,
            fixture_issue(),
            bare_rendered("Morning brief", "<p>Hello %%name%%</p>", "Hello %%name%%"),
        )
        campaign_id = campaign.id
        enqueued = session.scalar(select(func.count()).where(Delivery.campaign_id == campaign_id))
    assert enqueued == READERS

    with SesServer() as server:
        cfg = Settings(**{**cfg.__dict__, "ses_endpoint_url": server.url})
        injected: list[str] = []

        def on_progress(progress: Progress) -> None:
            # Once 20 are out, three of them hard-bounce (15% > 10%).
            if injected or progress.sent < 20:
                return
            for msg in server.messages()[:3]:
                event = _bounce_event(msg.message_id, msg.to[0], msg.time)
                with db.sessions.begin() as session:
                    outcome = apply_payload(session, json.dumps(event), cfg)
                assert outcome.matched, outcome
                injected.append(msg.to[0])

        transport = make_transport(cfg)
        try:
            with Engine(cfg, db.sessions, transport, on_progress=on_progress) as engine:
                progress = engine.run(campaign_id)
            sent_at_pause = len(server.messages())
            # Running it again sends nothing: the campaign is paused.
            with Engine(cfg, db.sessions, transport) as engine:
                again = engine.run(campaign_id)
            assert len(server.messages()) == sent_at_pause
        finally:
            transport.close()

        assert len(injected) == 3
        assert progress.status == "paused"
        # The guard tripped at the first check after the bounces were recorded (20 sent); no
        # row was claimed after that. Only the batches already claimed then were finished:
        # the ones in flight (the engine keeps PIPELINE batches going) and the ones sent but
        # still waiting for the recorder thread (at most RECORDS_AHEAD + 1).
        assert sent_at_pause % BATCH == 0
        assert 20 + BATCH <= sent_at_pause <= 20 + (PIPELINE + RECORDS_AHEAD + 1) * BATCH
        assert sent_at_pause < READERS
        in_flight = sent_at_pause - 20
        assert again.sent == 0 and again.status == "paused"
        with db.sessions() as session:
            row = session.get(Campaign, campaign_id)
            assert row is not None
            assert row.status == "paused"
            assert row.pause_reason is not None
            # judged on what was recorded at the check: 20 sent, or a batch more
            verdict = re.match(
                r"reputation guard: bounce rate (\d+\.\d\d)% \(3 hard bounces / (\d+) sent\)"
                r" >= MAILER_GUARD_BOUNCE_RATE 10\.00%",
                row.pause_reason,
            )
            assert verdict is not None, row.pause_reason
            judged = int(verdict.group(2))
            assert 20 <= judged <= sent_at_pause
            assert verdict.group(1) == f"{300 / judged:.2f}"
            assert guard.is_guard_pause(row.pause_reason)
            by_status = dict(
                session.execute(
                    select(Delivery.status, func.count())
                    .where(Delivery.campaign_id == campaign_id)
                    .group_by(Delivery.status)
                ).all()
            )
            assert by_status == {"sent": 20 + in_flight, "queued": READERS - 20 - in_flight}
            # the bounced readers are suppressed by the feedback rules
            for address in injected:
                assert store.find_suppression(session, address) is not None

        # Resuming without --force is refused; with it, the old spike no longer counts.
        with db.sessions.begin() as session, pytest.raises(ConflictError, match="--force"):
            lifecycle.resume(session, campaign_id)
        with db.sessions.begin() as session:
            resumed = lifecycle.resume(session, campaign_id, force=True, ops=True)
            assert resumed.guard_ack_at is not None
        transport = make_transport(cfg)
        try:
            with Engine(cfg, db.sessions, transport) as engine:
                final = engine.run(campaign_id)
        finally:
            transport.close()
        assert final.status == "done", final.reason
        assert final.sent == READERS - 20 - in_flight
        assert len(server.messages()) == READERS
        assert len({m.to[0] for m in server.messages()}) == READERS
