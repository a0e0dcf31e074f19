"""SES events as AWS documents them (both dialects) -> SESEvent records, and bad input."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from mailer.errors import FeedbackError
from mailer.feedback.events import (
    SETUP_TEXT,
    BounceInfo,
    BounceType,
    ClickInfo,
    ComplaintInfo,
    DelayInfo,
    DeliveryInfo,
    EventType,
    FailureInfo,
    OpenInfo,
    RejectInfo,
    SendInfo,
    SESEvent,
    SetupNotice,
    SubscriptionInfo,
    parse_event,
    parse_message_text,
    parse_payload,
)

FIXTURES = Path(__file__).parent / "fixtures" / "ses_events"
ALL = sorted(p.stem for p in FIXTURES.glob("*.json"))


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return data


def test_every_event_type_has_a_fixture_in_the_event_publishing_dialect() -> None:
    types = {load(n)["eventType"] for n in ALL if n.startswith("event_")}
    assert types == {t.value for t in EventType}


@pytest.mark.parametrize("name", ALL)
def test_every_fixture_parses_with_ids_times_and_raw(name: str) -> None:
    data = load(name)
    event = parse_event(data)
    dialect = "eventType" if "eventType" in data else "notificationType"
    assert event.dialect == dialect
    assert event.type.value == data[dialect]
    assert event.ses_message_id == data["mail"]["messageId"]
    assert event.sent_at.tzinfo is UTC
    assert event.occurred_at >= event.sent_at
    assert event.raw == data
    assert event.recipients, "every event names whom it is about"


def test_bounce_record() -> None:
    event = parse_event(load("event_bounce"))
    assert event.type is EventType.BOUNCE
    assert isinstance(event.detail, BounceInfo)
    assert event.detail.bounce_type is BounceType.PERMANENT
    assert event.detail.permanent
    assert event.detail.bounce_subtype == "General"
    (recipient,) = event.detail.recipients
    assert recipient.email == "reader@example.net"
    assert recipient.status == "5.1.1"
    assert recipient.action == "failed"
    assert recipient.diagnostic_code == "smtp; 550 5.1.1 user unknown"
    assert event.recipients == ("reader@example.net",)
    assert event.occurred_at == datetime(2026, 5, 14, 6, 1, 12, 345000, tzinfo=UTC)
    assert event.campaign_tag == "42"
    assert event.delivery_tag == "4242"
    assert event.tags["ses:configuration-set"] == ("brief-feedback",)
    assert event.subject == "The China Brief, 14 May"


def test_transient_bounce_notification_without_dsn_has_two_recipients() -> None:
    event = parse_event(load("notification_bounce_no_dsn"))
    assert isinstance(event.detail, BounceInfo)
    assert event.detail.bounce_type is BounceType.TRANSIENT
    assert not event.detail.permanent
    assert event.recipients == ("ana@example.net", "chen@example.net")
    assert event.detail.recipients[0].status is None
    assert event.tags == {}, "identity notifications carry no tags"
    assert event.campaign_tag is None
    assert event.destination == ("ana@example.net", "ben@example.net", "chen@example.net")


def test_on_account_suppression_list_bounce_is_flagged() -> None:
    event = parse_event(load("notification_bounce_suppressed"))
    assert isinstance(event.detail, BounceInfo)
    assert event.detail.on_account_suppression_list
    assert event.recipients == ("ben@example.net",)


@pytest.mark.parametrize("name", ["event_complaint", "notification_complaint_feedback"])
def test_complaint_with_feedback_report(name: str) -> None:
    event = parse_event(load(name))
    assert event.type is EventType.COMPLAINT
    assert isinstance(event.detail, ComplaintInfo)
    assert event.detail.feedback_type == "abuse"
    assert not event.detail.not_spam
    assert event.detail.arrival_date is not None
    assert event.recipients == event.detail.recipients
    assert len(event.recipients) == 1


def test_complaint_without_feedback_report() -> None:
    event = parse_event(load("notification_complaint_no_feedback"))
    assert isinstance(event.detail, ComplaintInfo)
    assert event.detail.feedback_type is None
    assert event.recipients == ("chen@example.net",)


def test_not_spam_complaint_is_recognised() -> None:
    data = load("event_complaint")
    data["complaint"]["complaintFeedbackType"] = "not-spam"
    event = parse_event(data)
    assert isinstance(event.detail, ComplaintInfo)
    assert event.detail.not_spam


@pytest.mark.parametrize("name", ["event_delivery", "notification_delivery"])
def test_delivery_record(name: str) -> None:
    data = load(name)
    event = parse_event(data)
    assert event.type is EventType.DELIVERY
    assert isinstance(event.detail, DeliveryInfo)
    assert event.recipients == tuple(data["delivery"]["recipients"])
    assert event.detail.processing_time_ms == data["delivery"]["processingTimeMillis"]
    assert event.detail.smtp_response == data["delivery"]["smtpResponse"]


def test_send_record() -> None:
    event = parse_event(load("event_send"))
    assert event.type is EventType.SEND
    assert isinstance(event.detail, SendInfo)
    assert event.occurred_at == event.sent_at
    assert event.recipients == ("reader@example.net",)


def test_reject_record() -> None:
    event = parse_event(load("event_reject"))
    assert isinstance(event.detail, RejectInfo)
    assert event.detail.reason == "Bad content"


def test_open_and_click_records() -> None:
    opened = parse_event(load("event_open"))
    assert isinstance(opened.detail, OpenInfo)
    assert opened.detail.ip_address == "192.0.2.44"
    clicked = parse_event(load("event_click"))
    assert isinstance(clicked.detail, ClickInfo)
    assert clicked.detail.link.startswith("https://newsletter.example/")
    assert clicked.detail.link_tags == {"section": ("economy",), "position": ("3",)}


def test_rendering_failure_record() -> None:
    event = parse_event(load("event_rendering_failure"))
    assert event.type is EventType.RENDERING_FAILURE
    assert isinstance(event.detail, FailureInfo)
    assert "first_name" in event.detail.error_message
    assert event.detail.template_name == "china-brief-daily"


def test_delivery_delay_record() -> None:
    event = parse_event(load("event_delivery_delay"))
    assert isinstance(event.detail, DelayInfo)
    assert event.detail.delay_type == "TransientCommunicationFailure"
    assert event.detail.recipients[0].status == "4.4.1"
    assert event.detail.expiration_time == datetime(2026, 5, 14, 18, 0, 58, tzinfo=UTC)


def test_subscription_record() -> None:
    event = parse_event(load("event_subscription"))
    assert isinstance(event.detail, SubscriptionInfo)
    assert event.detail.unsubscribe_all is True
    assert event.detail.contact_list == "china-brief"
    assert event.detail.topics == {"daily": "OptOut"}


# -- the three wrappings ----------------------------------------------------------------------


def _envelope(message: str, **extra: Any) -> dict[str, Any]:
    return {
        "Type": "Notification",
        "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
        "TopicArn": "arn:aws:sns:us-east-1:111122223333:ses-feedback",
        "Message": message,
        "Timestamp": "2026-05-14T06:01:13.000Z",
        "SignatureVersion": "1",
        "Signature": "EXAMPLE",
        "SigningCertURL": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-x.pem",
        **extra,
    }


@pytest.mark.parametrize("name", ALL)
def test_bare_json_sqs_raw_body_and_sns_envelope_give_the_same_event(name: str) -> None:
    data = load(name)
    text = json.dumps(data)
    bare = parse_payload(data)
    raw_body = parse_payload(text)
    as_bytes = parse_payload(text.encode())
    in_envelope = parse_payload(json.dumps(_envelope(text)))
    assert isinstance(in_envelope, SESEvent)
    assert bare == raw_body == as_bytes
    assert in_envelope.sns_message_id == "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324"
    assert isinstance(bare, SESEvent) and bare.sns_message_id is None
    assert in_envelope.ses_message_id == data["mail"]["messageId"]
    assert in_envelope.raw == data


def test_parse_message_text_carries_the_sns_message_id() -> None:
    event = parse_message_text(json.dumps(load("event_bounce")), "sns-1")
    assert isinstance(event, SESEvent)
    assert event.sns_message_id == "sns-1"


@pytest.mark.parametrize(
    "payload",
    [
        SETUP_TEXT,
        SETUP_TEXT.encode() + b"\n",
        json.dumps(_envelope(SETUP_TEXT)),
    ],
)
def test_ses_setup_test_message_is_a_notice(payload: str | bytes) -> None:
    notice = parse_payload(payload)
    assert isinstance(notice, SetupNotice)
    assert notice.kind == "setup-test"


def test_identity_subscription_succeeded_is_a_notice() -> None:
    message = json.dumps(
        {
            "notificationType": "AmazonSnsSubscriptionSucceeded",
            "message": "You have successfully subscribed your Amazon SNS topic "
            "'arn:aws:sns:us-east-1:111122223333:ses-feedback' to receive 'Bounce' "
            "notifications from Amazon SES for identity 'newsletter.example'.",
        }
    )
    notice = parse_payload(json.dumps(_envelope(message)))
    assert isinstance(notice, SetupNotice)
    assert notice.kind == "subscription-succeeded"
    assert "Bounce" in notice.text


def test_sns_confirmation_in_a_queue_is_a_notice() -> None:
    envelope = _envelope("You have chosen to subscribe", Type="SubscriptionConfirmation")
    notice = parse_payload(envelope)
    assert isinstance(notice, SetupNotice)
    assert notice.kind == "SubscriptionConfirmation"


# -- malformed input: each names what is wrong ------------------------------------------------


def _without(path: str) -> Any:
    def change(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = data
        for p in parents:
            node = node[p]
        del node[last]

    return change


def _set(path: str, value: Any) -> Any:
    def change(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = data
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node[p]
        node[last] = value

    return change


BAD = [
    ("event_bounce", _without("eventType"), "neither eventType nor notificationType"),
    ("event_bounce", _set("eventType", "Teleport"), "'Teleport' is unknown"),
    ("event_bounce", _set("eventType", 7), "eventType is not a string"),
    ("event_bounce", _without("mail"), "has no 'mail' object"),
    ("event_bounce", _set("mail", []), "mail is not an object"),
    ("event_bounce", _without("mail.messageId"), r"mail\.messageId is missing"),
    ("event_bounce", _set("mail.messageId", ""), r"mail\.messageId is missing"),
    ("event_bounce", _without("mail.timestamp"), r"mail\.timestamp is missing"),
    ("event_bounce", _set("mail.timestamp", "14 May 2026"), "not an ISO 8601 timestamp"),
    ("event_bounce", _set("mail.timestamp", "2026-05-14T06:00:58"), "has no time zone"),
    ("event_bounce", _set("mail.destination", "reader@example.net"), "list of strings"),
    ("event_bounce", _set("mail.tags.campaign", "42"), r"mail\.tags\.campaign must be a list"),
    ("event_bounce", _set("mail.tags", ["campaign"]), r"mail\.tags is not an object"),
    ("event_bounce", _without("bounce"), "has no 'bounce' object"),
    ("event_bounce", _set("bounce.bounceType", "Soft"), "'Soft' is not Permanent"),
    ("event_bounce", _without("bounce.bounceType"), r"bounce\.bounceType is missing"),
    ("event_bounce", _set("bounce.bouncedRecipients", []), "must be a non-empty list"),
    (
        "event_bounce",
        _set("bounce.bouncedRecipients", [{"status": "5.1.1"}]),
        r"bouncedRecipients\[0\]\.emailAddress is missing",
    ),
    ("event_bounce", _set("bounce.bouncedRecipients", ["x@y"]), r"\[0\] is not an object"),
    ("event_complaint", _without("complaint.complainedRecipients"), "non-empty list"),
    ("event_complaint", _set("complaint.complaintFeedbackType", 3), "is not a string"),
    ("event_delivery", _set("delivery.recipients", None), r"delivery\.recipients must be"),
    ("event_delivery", _set("delivery.processingTimeMillis", "fast"), "not an integer"),
    ("event_click", _without("click.link"), r"click\.link is missing"),
    ("event_rendering_failure", _without("failure.errorMessage"), "errorMessage is missing"),
    ("event_delivery_delay", _without("deliveryDelay"), "no 'deliveryDelay' object"),
    ("event_reject", _set("reject", "Bad content"), r"reject is not an object"),
    (
        "event_subscription",
        _set("subscription.newTopicPreferences.unsubscribeAll", "yes"),
        "unsubscribeAll is not a boolean",
    ),
]


@pytest.mark.parametrize(
    ("name", "change", "expected"), BAD, ids=[f"{n}-{e}"[:60] for n, _, e in BAD]
)
def test_malformed_events_are_named(name: str, change: Any, expected: str) -> None:
    data = copy.deepcopy(load(name))
    change(data)
    with pytest.raises(FeedbackError, match=expected):
        parse_event(data)


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ("{not json", "payload is not JSON"),
        (b"\xff\xfe", "not UTF-8"),
        ("[1, 2]", "not a JSON object"),
        (json.dumps(_envelope("{broken")), "SNS Message is not JSON"),
        (json.dumps(_envelope("[]")), "SNS Message is not a JSON object"),
        (json.dumps({**_envelope("x"), "Message": {"a": 1}}), "Message is not a string"),
    ],
)
def test_malformed_payloads_are_named(payload: str | bytes, expected: str) -> None:
    with pytest.raises(FeedbackError, match=expected):
        parse_payload(payload)
