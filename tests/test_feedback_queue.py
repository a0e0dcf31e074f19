"""SES events through SNS -> SQS (moto in server mode, driven by boto3 over HTTP) and
`mailer feedback poll`: applied once each, deleted after commit, poison set aside."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from sqlalchemy import func, select

from mailer.feedback import queue as feedback_queue
from mailer.feedback import rules as feedback
from mailer.feedback.models import FeedbackEvent, PoisonMessage
from mailer.feedback.queue import QueuePoller
from mailer.sending import campaigns
from mailer.sending.models import Delivery
from subscribers import store
from subscribers.models import Subscriber, Subscription
from tests.conftest import Database
from tests.delivery_helpers import bare_rendered, fixture_issue
from tests.plugins.aws import REGION, MotoHandle
from tests.plugins.sns_certs import TOPIC_ARN, SNSSigner

FIXTURES = Path(__file__).parent / "fixtures" / "ses_events"


def event(name: str, to: str, message_id: str, day: int | None = None) -> str:
    """A documented example re-addressed; ``day`` moves its event time to 2026-05-<day>."""
    data = json.loads((FIXTURES / f"{name}.json").read_text())
    data["mail"]["messageId"] = message_id
    for key in ("bounce", "delivery"):
        if day is not None and key in data:
            data[key]["timestamp"] = f"2026-05-{day:02d}T06:00:00.000Z"
    data["mail"]["destination"] = [to]
    for key, field in (("bounce", "bouncedRecipients"), ("complaint", "complainedRecipients")):
        if key in data:
            data[key][field] = [{**data[key][field][0], "emailAddress": to}]
    if "delivery" in data:
        data["delivery"]["recipients"] = [to]
    return json.dumps(data)


@dataclass
class Feed:
    sqs: Any
    sns: Any
    queue_url: str
    topic_arn: str
    endpoint: str

    def publish(self, message: str) -> None:
        self.sns.publish(TopicArn=self.topic_arn, Message=message)

    def send_raw(self, body: str) -> None:
        self.sqs.send_message(QueueUrl=self.queue_url, MessageBody=body)

    def waiting(self) -> int:
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=self.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]) + int(
            attrs["ApproximateNumberOfMessagesNotVisible"]
        )


def make_feed(moto: MotoHandle, *, raw: bool) -> Feed:
    sqs = boto3.client("sqs", region_name=REGION, endpoint_url=moto.url)
    sns = boto3.client("sns", region_name=REGION, endpoint_url=moto.url)
    queue_url = sqs.create_queue(QueueName="ses-feedback")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    topic_arn = sns.create_topic(Name="ses-feedback")["TopicArn"]
    sns.subscribe(
        TopicArn=topic_arn,
        Protocol="sqs",
        Endpoint=queue_arn,
        Attributes={"RawMessageDelivery": "true" if raw else "false"},
    )
    return Feed(sqs, sns, queue_url, topic_arn, moto.url)


@pytest.fixture
def feed(moto: MotoHandle) -> Feed:
    return make_feed(moto, raw=False)


def readers(db: Database, *emails: str) -> None:
    with db.sessions.begin() as s:
        for slug in ("brief", "weekly"):
            mlist = store.create_list(s, slug, name=slug, from_address=f"{slug}@newsletter.example")
            for email in emails:
                store.subscribe(s, email, mlist, confirmed=True)


def poller(db: Database, feed: Feed, **kwargs: Any) -> QueuePoller:
    options: dict[str, Any] = {"wait_seconds": 0, "retry_delay": 0}
    options.update(kwargs)
    return QueuePoller(feed.sqs, feed.queue_url, db.sessions, db.settings(), **options)


def count(db: Database, model: Any) -> int:
    with db.sessions() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def suppression_reason(db: Database, email: str) -> str | None:
    with db.sessions() as s:
        row = store.find_suppression(s, email)
        return row.reason if row else None


@pytest.mark.parametrize("raw", [False, True], ids=["sns-envelope", "raw-delivery"])
def test_events_through_sns_and_sqs_are_applied_and_deleted(
    db: Database, moto: MotoHandle, raw: bool
) -> None:
    feed = make_feed(moto, raw=raw)
    readers(db, "ana@example.net", "ben@example.net", "chen@example.net")
    feed.publish(event("event_bounce", "ana@example.net", "m-bounce"))
    feed.publish(event("notification_complaint_feedback", "ben@example.net", "m-complaint"))
    feed.publish(event("event_delivery", "chen@example.net", "m-delivery"))
    feed.publish("Successfully validated SNS topic for Amazon SES event publishing.")
    stats = poller(db, feed).run(once=True)
    assert (stats.received, stats.applied, stats.notices, stats.poisoned) == (4, 3, 1, 0)
    assert stats.by_type == {"Bounce": 1, "Complaint": 1, "Delivery": 1}
    assert feed.waiting() == 0, "every message deleted after its commit"
    assert suppression_reason(db, "ana@example.net") == "hard_bounce"
    assert suppression_reason(db, "ben@example.net") == "complaint"
    assert suppression_reason(db, "chen@example.net") is None
    with db.sessions() as s:
        ben = store.get_subscriber(s, "ben@example.net")
        statuses = set(
            s.scalars(select(Subscription.status).where(Subscription.subscriber_id == ben.id))
        )
        assert statuses == {"unsubscribed"}
        sns_ids = s.scalars(select(FeedbackEvent.sns_message_id)).all()
    assert all(sns_ids) is (not raw), "SNS MessageIds are kept when the envelope is there"


def test_hard_bounced_reader_is_skipped_by_the_next_send(db: Database, feed: Feed) -> None:
    readers(db, "ana@example.net", "ben@example.net")
    feed.publish(event("event_bounce", "ana@example.net", "m-1"))
    poller(db, feed).run(once=True)
    with db.sessions.begin() as s:
        mlist = store.get_list(s, "brief")
        campaign, _ = campaigns.create_campaign(
            s, mlist, fixture_issue(), bare_rendered("The China Brief", "<p>hi</p>", "hi")
        )
        recipients = s.scalars(
            select(Subscriber.email)
            .join(Delivery, Delivery.subscriber_id == Subscriber.id)
            .where(Delivery.campaign_id == campaign.id)
        ).all()
    assert recipients == ["ben@example.net"]


def test_soft_bounces_via_the_queue_with_a_delivery_in_between(db: Database, feed: Feed) -> None:
    readers(db, "ana@example.net")
    p = poller(db, feed)
    for day in (1, 2):
        feed.publish(event("notification_bounce_no_dsn", "ana@example.net", f"s-{day}", day))
    feed.publish(event("event_delivery", "ana@example.net", "d-3", 3))
    p.run(once=True)
    feed.publish(event("notification_bounce_no_dsn", "ana@example.net", "s-4", 4))
    p.run(once=True)
    assert suppression_reason(db, "ana@example.net") is None, "the delivery reset the count"
    for day in (5, 6):
        feed.publish(event("notification_bounce_no_dsn", "ana@example.net", f"s-{day}", day))
    p.run(once=True)
    assert suppression_reason(db, "ana@example.net") == "soft_bounce_limit"


def test_same_event_published_twice_is_applied_once(db: Database, feed: Feed) -> None:
    readers(db, "ana@example.net")
    body = event("event_complaint", "ana@example.net", "m-dup")
    feed.publish(body)
    feed.publish(body)
    stats = poller(db, feed).run(once=True)
    assert (stats.applied, stats.duplicates) == (1, 1)
    assert count(db, FeedbackEvent) == 1
    assert feed.waiting() == 0


def test_unreadable_messages_are_set_aside_at_once(db: Database, feed: Feed) -> None:
    feed.send_raw("this is not json")
    bad = {"eventType": "Bounce", "mail": {}}
    feed.send_raw(json.dumps(bad))
    stats = poller(db, feed).run(once=True)
    assert (stats.received, stats.poisoned, stats.applied) == (2, 2, 0)
    assert feed.waiting() == 0
    with db.sessions() as s:
        rows = s.scalars(select(PoisonMessage).order_by(PoisonMessage.id)).all()
        assert [r.body for r in rows] == ["this is not json", json.dumps(bad)]
        assert "FeedbackError" in rows[0].error
        assert "mail.messageId" in rows[1].error
        assert rows[0].source == feed.queue_url


def test_a_failing_message_is_retried_then_set_aside_after_max_attempts(
    db: Database, feed: Feed, monkeypatch: pytest.MonkeyPatch
) -> None:
    readers(db, "ana@example.net")
    feed.publish(event("event_bounce", "ana@example.net", "m-x"))
    calls: list[int] = []

    def broken(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        raise RuntimeError("database is down")

    monkeypatch.setattr(feedback_queue, "apply_event", broken)
    stats = poller(db, feed, max_attempts=3).run(once=True)
    assert len(calls) == 3
    assert (stats.retried, stats.poisoned) == (2, 1)
    assert feed.waiting() == 0
    with db.sessions() as s:
        row = s.scalar(select(PoisonMessage))
        assert row is not None and row.receive_count == 3
        assert "still failing after 3 receives" in row.error
        assert "database is down" in row.error
    assert count(db, FeedbackEvent) == 0


def test_a_transient_failure_is_retried_and_then_applied(
    db: Database, feed: Feed, monkeypatch: pytest.MonkeyPatch
) -> None:
    readers(db, "ana@example.net")
    feed.publish(event("event_bounce", "ana@example.net", "m-y"))
    real = feedback.apply_event
    failures = [RuntimeError("deadlock detected")]

    def flaky(*args: Any, **kwargs: Any) -> Any:
        if failures:
            raise failures.pop()
        return real(*args, **kwargs)

    monkeypatch.setattr(feedback_queue, "apply_event", flaky)
    stats = poller(db, feed, max_attempts=3).run(once=True)
    assert (stats.retried, stats.applied, stats.poisoned) == (1, 1, 0)
    assert suppression_reason(db, "ana@example.net") == "hard_bounce"


def test_delete_fails_after_commit_then_the_redelivery_is_a_duplicate(
    db: Database, feed: Feed
) -> None:
    readers(db, "ana@example.net")
    feed.publish(event("event_complaint", "ana@example.net", "m-z"))

    class LosesFirstDelete:
        def __init__(self, inner: Any) -> None:
            self.inner = inner
            self.lost = False

        def __getattr__(self, name: str) -> Callable[..., Any]:
            return getattr(self.inner, name)  # type: ignore[no-any-return]

        def delete_message(self, **kwargs: Any) -> Any:
            if not self.lost:
                self.lost = True
                # the crash: committed, but the queue never hears about it
                self.inner.change_message_visibility(
                    QueueUrl=kwargs["QueueUrl"],
                    ReceiptHandle=kwargs["ReceiptHandle"],
                    VisibilityTimeout=0,
                )
                raise ConnectionError("connection reset")
            return self.inner.delete_message(**kwargs)

    p = QueuePoller(
        LosesFirstDelete(feed.sqs),
        feed.queue_url,
        db.sessions,
        db.settings(),
        wait_seconds=0,
    )
    stats = p.run(once=True)
    assert (stats.received, stats.applied, stats.duplicates) == (2, 1, 1)
    assert count(db, FeedbackEvent) == 1
    assert feed.waiting() == 0


def test_with_verification_only_sns_signed_envelopes_pass(
    db: Database, feed: Feed, sns_signer: SNSSigner
) -> None:
    readers(db, "ana@example.net", "ben@example.net")
    settings = db.settings(sns_topic_arns=(TOPIC_ARN, feed.topic_arn))
    # moto's SNS envelope carries a placeholder signature: not signed by "SNS" (our cert)
    feed.publish(event("event_bounce", "ana@example.net", "m-moto"))
    # an envelope our stand-in SNS signed, hours old (queues hold messages for days)
    from datetime import UTC, datetime, timedelta

    signed = sns_signer.notification(
        event("event_bounce", "ben@example.net", "m-signed"),
        timestamp=datetime.now(UTC) - timedelta(hours=5),
    )
    feed.send_raw(json.dumps(signed))
    feed.send_raw(event("event_bounce", "ben@example.net", "m-raw"))
    p = QueuePoller(
        feed.sqs,
        feed.queue_url,
        db.sessions,
        settings,
        wait_seconds=0,
        verify=True,
        fetch_cert=sns_signer.fetch,
    )
    stats = p.run(once=True)
    assert (stats.applied, stats.poisoned) == (1, 2)
    assert suppression_reason(db, "ben@example.net") == "hard_bounce"
    assert suppression_reason(db, "ana@example.net") is None
    with db.sessions() as s:
        errors = sorted(s.scalars(select(PoisonMessage.error)))
    assert any("raw message delivery cannot be verified" in e for e in errors)
    assert any("VerificationError" in e for e in errors)


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
def test_cli_poll_once(db: Database, feed: Feed, aws_env: dict[str, str]) -> None:
    readers(db, "ana@example.net")
    feed.publish(event("event_bounce", "ana@example.net", "m-cli"))
    feed.send_raw("garbage")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mailer",
            "feedback",
            "poll",
            "--queue-url",
            feed.queue_url,
            "--once",
            "--wait",
            "0",
            "--endpoint-url",
            feed.endpoint,
        ],
        env=db.env(COLUMNS="200", **aws_env),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=db.tmp,
    )
    assert result.returncode == 0, result.stderr
    assert "received 2: applied 1 (Bounce 1)" in result.stdout
    assert "set aside 1" in result.stdout
    assert "set aside into feedback_poison" in result.stderr
    assert suppression_reason(db, "ana@example.net") == "hard_bounce"
