"""The feedback rules on SQLite and PostgreSQL, fed with AWS-shaped events."""

from __future__ import annotations

import copy
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from mailer.config import Settings
from mailer.feedback import erasure
from mailer.feedback import rules as feedback
from mailer.feedback.events import SESEvent, parse_event
from mailer.feedback.models import FeedbackEvent, SoftBounceCounter
from mailer.sending.models import Campaign, Delivery
from subscribers import store
from subscribers.models import ConsentEvent, Subscription, Suppression
from tests.conftest import Database

FIXTURES = Path(__file__).parent / "fixtures" / "ses_events"
READER = "reader@example.net"
T0 = datetime(2026, 5, 14, 6, 0, tzinfo=UTC)


def ses_event(
    name: str,
    *,
    message_id: str,
    to: str = READER,
    at: datetime = T0,
    tags: dict[str, list[str]] | None = None,
    sns_id: str | None = None,
    **detail: Any,
) -> SESEvent:
    """A documented example, re-addressed: messageId, recipient, times and tags."""
    data = copy.deepcopy(json.loads((FIXTURES / f"{name}.json").read_text()))
    mail = data["mail"]
    mail["messageId"] = message_id
    mail["destination"] = [to]
    mail["timestamp"] = _iso(at - timedelta(seconds=5))
    if tags is not None:
        mail["tags"] = tags
    elif "tags" in mail:
        mail["tags"] = {k: v for k, v in mail["tags"].items() if k not in {"campaign", "delivery"}}
    for key in ("bounce", "complaint", "delivery", "deliveryDelay", "open", "click"):
        if key in data:
            if "timestamp" in data[key]:
                data[key]["timestamp"] = _iso(at)
            data[key].update(detail)
    if "bounce" in data:
        for r in data["bounce"]["bouncedRecipients"][:1]:
            r["emailAddress"] = to
        data["bounce"]["bouncedRecipients"] = data["bounce"]["bouncedRecipients"][:1]
    if "complaint" in data:
        data["complaint"]["complainedRecipients"] = [{"emailAddress": to}]
    if "delivery" in data:
        data["delivery"]["recipients"] = [to]
    return parse_event(data, sns_id)


def _iso(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


class World:
    """A list or two, a reader, a campaign and the reader's Delivery row."""

    def __init__(self, db: Database, **settings: Any) -> None:
        self.db = db
        self.settings: Settings = db.settings(**settings)
        with db.sessions.begin() as s:
            self.brief = store.create_list(
                s, "brief", name="Brief", from_address="b@newsletter.example"
            )
            self.weekly = store.create_list(
                s, "weekly", name="Weekly", from_address="w@newsletter.example"
            )
            for mlist in (self.brief, self.weekly):
                store.subscribe(s, READER, mlist, confirmed=True)
            self.subscriber_id = store.get_subscriber(s, READER).id
            campaign = Campaign(
                list_id=self.brief.id,
                issue_key="2026-05-14",
                subject="s",
                issue={},
                html="",
                text="",
            )
            s.add(campaign)
            s.flush()
            self.campaign_id = campaign.id
        self.message_ids: dict[str, int] = {}

    def delivery(self, message_id: str | None, status: str = "sent") -> int:
        with self.db.sessions.begin() as s:
            row = Delivery(
                campaign_id=self.campaign_id,
                subscriber_id=None,
                status=status,
                message_id=message_id,
            )
            s.add(row)
            s.flush()
            return row.id

    def apply(self, event: SESEvent) -> feedback.Outcome:
        with self.db.sessions.begin() as s:
            return feedback.apply_event(s, event, self.settings)

    def suppression(self, email: str = READER) -> Suppression | None:
        with self.db.sessions() as s:
            return store.find_suppression(s, email)

    def statuses(self) -> set[str]:
        with self.db.sessions() as s:
            return set(
                s.scalars(
                    select(Subscription.status).where(
                        Subscription.subscriber_id == self.subscriber_id
                    )
                )
            )

    def ledger(self) -> list[tuple[str, str | None]]:
        with self.db.sessions() as s:
            return [
                (row.action, row.source)
                for row in s.scalars(select(ConsentEvent).order_by(ConsentEvent.id))
                if row.source and row.source.startswith("ses-feedback")
            ]

    def count(self, model: Any) -> int:
        with self.db.sessions() as s:
            return int(s.scalar(select(func.count()).select_from(model)) or 0)


def mid() -> str:
    return f"0100018f{uuid.uuid4().hex}-000000"


# -- bounces -----------------------------------------------------------------------------------


def test_hard_bounce_suppresses_and_is_recorded(db: Database) -> None:
    w = World(db)
    message_id = mid()
    delivery_id = w.delivery(message_id)
    out = w.apply(ses_event("event_bounce", message_id=message_id, sns_id="sns-1"))
    assert out.status == "applied"
    assert out.delivery_id == delivery_id
    assert out.actions == (f"suppressed:hard_bounce:{READER}",)
    row = w.suppression()
    assert row is not None
    assert row.reason == "hard_bounce"
    assert row.detail == "General: smtp; 550 5.1.1 user unknown"
    assert w.ledger() == [("suppress", f"ses-feedback:Bounce:event#{out.event_id}")]
    with db.sessions() as s:
        stored = s.get(FeedbackEvent, out.event_id)
        assert stored is not None
        assert (stored.sns_message_id, stored.email, stored.bounce_type) == (
            "sns-1",
            READER,
            "Permanent",
        )
        assert stored.delivery_id == delivery_id
        assert stored.raw["bounce"]["bounceType"] == "Permanent"
        assert stored.outcome == f"suppressed:hard_bounce:{READER}"
    assert w.statuses() == {"active"}, "a bounce suppresses; it does not unsubscribe"


def test_on_account_suppression_list_is_recorded_as_such(db: Database) -> None:
    w = World(db)
    event = ses_event("notification_bounce_suppressed", message_id=mid())
    w.apply(event)
    row = w.suppression()
    assert row is not None and (row.reason, row.detail) == (
        "hard_bounce",
        "OnAccountSuppressionList",
    )


def test_three_soft_bounces_suppress(db: Database) -> None:
    w = World(db, soft_bounce_limit=3, soft_bounce_window=30 * 86400.0)
    outcomes = [
        w.apply(
            ses_event("notification_bounce_no_dsn", message_id=mid(), at=T0 + timedelta(days=i))
        )
        for i in range(3)
    ]
    assert [o.actions for o in outcomes] == [
        ("unmatched", f"soft:1/3:{READER}"),
        ("unmatched", f"soft:2/3:{READER}"),
        ("unmatched", f"suppressed:soft_bounce_limit:{READER}"),
    ]
    row = w.suppression()
    assert row is not None and row.reason == "soft_bounce_limit"
    assert row.detail == "3 soft bounces within 30 days"
    assert w.count(SoftBounceCounter) == 0


def test_undetermined_bounce_counts_as_soft(db: Database) -> None:
    w = World(db, soft_bounce_limit=2)
    for i in range(2):
        w.apply(
            ses_event(
                "event_bounce",
                message_id=mid(),
                at=T0 + timedelta(hours=i),
                bounceType="Undetermined",
                bounceSubType="Undetermined",
            )
        )
    row = w.suppression()
    assert row is not None and row.reason == "soft_bounce_limit"


def test_a_delivery_in_between_resets_the_count(db: Database) -> None:
    w = World(db)
    soft = "notification_bounce_no_dsn"
    w.apply(ses_event(soft, message_id=mid(), at=T0))
    w.apply(ses_event(soft, message_id=mid(), at=T0 + timedelta(days=1)))
    reset = w.apply(ses_event("event_delivery", message_id=mid(), at=T0 + timedelta(days=2)))
    assert f"reset:{READER}" in reset.actions
    third = w.apply(ses_event(soft, message_id=mid(), at=T0 + timedelta(days=3)))
    assert f"soft:1/3:{READER}" in third.actions
    assert w.suppression() is None
    w.apply(ses_event(soft, message_id=mid(), at=T0 + timedelta(days=4)))
    w.apply(ses_event(soft, message_id=mid(), at=T0 + timedelta(days=5)))
    assert w.suppression() is not None


def test_a_late_delivery_report_does_not_reset_newer_bounces(db: Database) -> None:
    w = World(db, soft_bounce_limit=2)
    w.apply(ses_event("notification_bounce_no_dsn", message_id=mid(), at=T0))
    stale = w.apply(ses_event("event_delivery", message_id=mid(), at=T0 - timedelta(hours=1)))
    assert not any(a.startswith("reset") for a in stale.actions)
    w.apply(ses_event("notification_bounce_no_dsn", message_id=mid(), at=T0 + timedelta(1)))
    assert w.suppression() is not None


def test_soft_bounces_outside_the_window_start_again(db: Database) -> None:
    w = World(db, soft_bounce_limit=3, soft_bounce_window=7 * 86400.0)
    for day in (0, 3, 10, 12):
        out = w.apply(
            ses_event("notification_bounce_no_dsn", message_id=mid(), at=T0 + timedelta(day))
        )
    assert f"soft:2/3:{READER}" in out.actions
    assert w.suppression() is None


# -- complaints and list management ------------------------------------------------------------


def test_complaint_unsubscribes_everywhere_and_suppresses(db: Database) -> None:
    w = World(db)
    message_id = mid()
    w.delivery(message_id)
    out = w.apply(ses_event("event_complaint", message_id=message_id))
    assert w.statuses() == {"unsubscribed"}
    row = w.suppression()
    assert row is not None and (row.reason, row.detail) == (
        "complaint",
        "complaintFeedbackType=abuse",
    )
    source = f"ses-feedback:Complaint:event#{out.event_id}"
    assert w.ledger() == [("unsubscribe", source), ("unsubscribe", source), ("suppress", source)]


def test_complaint_without_feedback_type_still_counts(db: Database) -> None:
    w = World(db)
    w.apply(ses_event("notification_complaint_no_feedback", message_id=mid()))
    row = w.suppression()
    assert row is not None and row.reason == "complaint"


def test_not_spam_is_not_a_complaint(db: Database) -> None:
    w = World(db)
    out = w.apply(ses_event("event_complaint", message_id=mid(), complaintFeedbackType="not-spam"))
    assert "ignored:not-spam" in out.actions
    assert w.suppression() is None
    assert w.statuses() == {"active"}


def test_ses_list_management_unsubscribe_all(db: Database) -> None:
    w = World(db)
    w.apply(ses_event("event_subscription", message_id=mid()))
    assert w.statuses() == {"unsubscribed"}
    assert w.suppression() is None


# -- delivery rows -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "error_class", "error"),
    [
        ("event_reject", "ses_reject", "Bad content"),
        (
            "event_rendering_failure",
            "ses_rendering_failure",
            "Attribute 'first_name' is not present in the rendering data.",
        ),
    ],
)
def test_reject_and_rendering_failure_mark_the_delivery_failed(
    db: Database, name: str, error_class: str, error: str
) -> None:
    w = World(db)
    message_id = mid()
    delivery_id = w.delivery(message_id)
    out = w.apply(ses_event(name, message_id=message_id))
    assert out.actions == (f"delivery#{delivery_id}:failed",)
    with db.sessions() as s:
        row = s.get(Delivery, delivery_id)
        assert row is not None
        assert (row.status, row.error_class, row.error) == ("failed", error_class, error)


def test_match_by_tags_when_the_message_id_was_never_recorded(db: Database) -> None:
    w = World(db)
    delivery_id = w.delivery(None, status="sending")
    tags = {"campaign": [str(w.campaign_id)], "delivery": [str(delivery_id)]}
    out = w.apply(ses_event("event_delivery", message_id=mid(), tags=tags))
    assert out.delivery_id == delivery_id
    wrong = {"campaign": [str(w.campaign_id + 1)], "delivery": [str(delivery_id)]}
    assert w.apply(ses_event("event_open", message_id=mid(), tags=wrong)).delivery_id is None
    other = w.delivery(mid())
    clash = {"campaign": [str(w.campaign_id)], "delivery": [str(other)]}
    assert w.apply(ses_event("event_open", message_id=mid(), tags=clash)).delivery_id is None


def test_unknown_messages_are_stored_and_counted(db: Database) -> None:
    w = World(db)
    for name in ("event_send", "event_open", "event_click", "event_delivery_delay"):
        out = w.apply(ses_event(name, message_id=mid()))
        assert out.status == "applied" and out.actions == ("unmatched",)
    message_id = mid()
    w.delivery(message_id)
    w.apply(ses_event("event_open", message_id=message_id))
    with db.sessions() as s:
        counts = feedback.feedback_counts(s)
    assert counts["Open"] == {"total": 2, "unmatched": 1}
    assert counts["Send"] == {"total": 1, "unmatched": 1}
    assert w.suppression() is None


# -- idempotency and atomicity -----------------------------------------------------------------


def test_redelivered_sns_message_changes_nothing(db: Database) -> None:
    w = World(db)
    event = ses_event("event_complaint", message_id=mid(), sns_id="sns-dup")
    first = w.apply(event)
    ledger = w.ledger()
    second = w.apply(event)
    assert (first.status, second.status) == ("applied", "duplicate")
    assert w.count(FeedbackEvent) == 1
    assert w.ledger() == ledger


def test_the_same_event_by_another_path_is_a_duplicate(db: Database) -> None:
    """Webhook (SNS id) then a raw SQS body or a replayed file (no SNS id): same event."""
    w = World(db, soft_bounce_limit=2)
    message_id = mid()
    w.apply(ses_event("notification_bounce_no_dsn", message_id=message_id, sns_id="sns-a"))
    again = w.apply(ses_event("notification_bounce_no_dsn", message_id=message_id))
    assert again.status == "duplicate"
    assert w.suppression() is None, "one soft bounce, counted once"


def test_an_error_while_applying_leaves_nothing_behind(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = World(db)
    event = ses_event("event_bounce", message_id=mid(), sns_id="sns-err")

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(store, "suppress", broken)
    with pytest.raises(RuntimeError):
        w.apply(event)
    assert w.count(FeedbackEvent) == 0
    monkeypatch.undo()
    assert w.apply(event).status == "applied", "the retry applies it"
    assert w.suppression() is not None


def test_erased_reader_leaves_no_address_in_feedback(db: Database) -> None:
    w = World(db)
    with db.sessions.begin() as s:
        erasure.erase(s, READER)
    out = w.apply(ses_event("event_bounce", message_id=mid()))
    with db.sessions() as s:
        row = s.get(FeedbackEvent, out.event_id)
        assert row is not None
        assert row.email is None
        assert READER not in json.dumps(row.raw)
        tomb = store.find_suppression(s, READER)
        assert tomb is not None and tomb.reason == "erased" and tomb.email is None


def test_forget_address_scrubs_stored_events(db: Database) -> None:
    w = World(db)
    out = w.apply(ses_event("notification_bounce_no_dsn", message_id=mid()))
    with db.sessions.begin() as s:
        erasure.forget_address(s, READER)
    with db.sessions() as s:
        row = s.get(FeedbackEvent, out.event_id)
        assert row is not None and row.email is None
        assert READER not in json.dumps(row.raw)
    assert w.count(SoftBounceCounter) == 0


def test_apply_payload_takes_envelopes_and_setup_messages(db: Database) -> None:
    w = World(db)
    text = (FIXTURES / "event_delivery.json").read_text()
    envelope = {"Type": "Notification", "MessageId": "sns-env", "Message": text}
    with db.sessions.begin() as s:
        out = feedback.apply_payload(s, json.dumps(envelope), w.settings)
        notice = feedback.apply_payload(
            s, "Successfully validated SNS topic for Amazon SES event publishing.", w.settings
        )
    assert out.status == "applied" and out.event_type == "Delivery"
    assert notice.status == "notice"
    assert w.count(FeedbackEvent) == 1
