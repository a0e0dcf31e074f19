"""SES event JSON -> small frozen records, at the border (docs/architecture.md principle 4).

SES reports what became of a message in two dialects: configuration-set event publishing
(``eventType``, with the sender's EmailTags in ``mail.tags``) and the older identity
notifications (``notificationType``, no tags). Both arrive as a bare JSON event, as the
``Message`` string of an SNS envelope, or as an SQS body (SNS envelope, or the bare event
with raw message delivery). :func:`parse_payload` takes any of these; the rest of the code
only sees :class:`SESEvent` (or a :class:`SetupNotice` for SES's wiring-up messages).

Anything malformed raises :class:`~mailer.errors.FeedbackError` naming the field (read
through :mod:`mailer.feedback.fields`). The raw event is kept on the record for the audit
trail. The records themselves live in :mod:`mailer.feedback.records`; this module
re-exports them, so its importers need one name.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from mailer.errors import FeedbackError
from mailer.feedback.fields import (
    decode,
    load_json,
    obj,
    objects,
    opt_str,
    opt_time,
    req_str,
    req_time,
    str_list,
    tag_map,
)
from mailer.feedback.records import (
    BouncedRecipient,
    BounceInfo,
    BounceType,
    ClickInfo,
    ComplaintInfo,
    DelayedRecipient,
    DelayInfo,
    DeliveryInfo,
    Detail,
    EventType,
    FailureInfo,
    OpenInfo,
    RejectInfo,
    SendInfo,
    SESEvent,
    SetupNotice,
    SubscriptionInfo,
)

__all__ = [
    "SETUP_TEXT",
    "SNS_TYPES",
    "BounceInfo",
    "BounceType",
    "BouncedRecipient",
    "ClickInfo",
    "ComplaintInfo",
    "DelayInfo",
    "DelayedRecipient",
    "DeliveryInfo",
    "EventType",
    "FailureInfo",
    "OpenInfo",
    "RejectInfo",
    "SESEvent",
    "SendInfo",
    "SetupNotice",
    "SubscriptionInfo",
    "parse_event",
    "parse_message_text",
    "parse_payload",
]

SETUP_TEXT = "Successfully validated SNS topic for Amazon SES event publishing."
"""What SES publishes (as plain text, not JSON) when an event destination is wired up."""

_SUBSCRIPTION_SUCCEEDED = "AmazonSnsSubscriptionSucceeded"
#: The Type of every SNS message: an envelope of one of these carries its ``Message``
#: (the SNS verifier and the queue poller read the same set)
SNS_TYPES = frozenset({"Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation"})


# -- entry points ---------------------------------------------------------------------------


def parse_payload(payload: str | bytes | Mapping[str, Any]) -> SESEvent | SetupNotice:
    """A bare event, an SNS envelope (``Message`` is the event as a string) or an SQS body.

    The envelope is NOT verified here: callers that received it over the network verify
    it with :class:`mailer.feedback.sns.SNSVerifier` first, then call :func:`parse_message_text`.
    """
    if isinstance(payload, (str, bytes)):
        text = decode(payload)
        if text.strip() == SETUP_TEXT:
            return SetupNotice("setup-test", SETUP_TEXT)
        data: Any = load_json(text, "SES payload")
    else:
        data = payload
    if not isinstance(data, Mapping):
        raise FeedbackError("SES payload is not a JSON object")
    kind = data.get("Type")
    if isinstance(kind, str) and kind in SNS_TYPES and "Message" in data:  # list: unhashable
        return _from_envelope(data)
    return _classify(data, sns_message_id=None)


def parse_message_text(text: str, sns_message_id: str | None = None) -> SESEvent | SetupNotice:
    """The ``Message`` of a (verified) SNS Notification: event JSON or the setup text."""
    if text.strip() == SETUP_TEXT:
        return SetupNotice("setup-test", SETUP_TEXT, sns_message_id)
    data = load_json(text, "SNS Message")
    if not isinstance(data, Mapping):
        raise FeedbackError("SNS Message is not a JSON object")
    return _classify(data, sns_message_id)


def parse_event(data: Mapping[str, Any], sns_message_id: str | None = None) -> SESEvent:
    """A bare SES event object -> SESEvent, or FeedbackError naming what is wrong."""
    if not isinstance(data, Mapping):
        raise FeedbackError("SES event is not a JSON object")
    dialect, type_name = _event_type(data)
    kind = _known_type(type_name, dialect)
    mail = obj(data, "mail", "SES event")
    ses_message_id = req_str(mail, "messageId", "mail")
    sent_at = req_time(mail, "timestamp", "mail")
    detail, recipients, occurred = _DETAIL_PARSERS[kind](data)
    destination = str_list(mail, "destination", "mail", required=False)
    return SESEvent(
        type=kind,
        dialect=dialect,
        ses_message_id=ses_message_id,
        occurred_at=occurred or sent_at,
        sent_at=sent_at,
        source=opt_str(mail, "source", "mail"),
        destination=destination,
        recipients=recipients if recipients is not None else destination,
        subject=_subject(mail),
        detail=detail,
        tags=tag_map(mail.get("tags"), "mail.tags"),
        sns_message_id=sns_message_id,
        raw=data,
    )


# -- envelope and classification ------------------------------------------------------------


def _from_envelope(data: Mapping[str, Any]) -> SESEvent | SetupNotice:
    kind = data["Type"]
    message = data["Message"]
    message_id = data.get("MessageId")
    if message_id is not None and not isinstance(message_id, str):
        raise FeedbackError("SNS envelope MessageId is not a string")
    if not isinstance(message, str):
        raise FeedbackError("SNS envelope Message is not a string")
    if kind != "Notification":
        return SetupNotice(kind, message, message_id)
    return parse_message_text(message, message_id)


def _classify(data: Mapping[str, Any], sns_message_id: str | None) -> SESEvent | SetupNotice:
    if data.get("notificationType") == _SUBSCRIPTION_SUCCEEDED:
        text = data.get("message")
        return SetupNotice(
            "subscription-succeeded", text if isinstance(text, str) else "", sns_message_id
        )
    return parse_event(data, sns_message_id)


def _event_type(data: Mapping[str, Any]) -> tuple[str, str]:
    for dialect in ("eventType", "notificationType"):
        value = data.get(dialect)
        if value is not None:
            if not isinstance(value, str):
                raise FeedbackError(f"SES event {dialect} is not a string")
            return dialect, value
    raise FeedbackError("SES event has neither eventType nor notificationType")


def _known_type(name: str, dialect: str) -> EventType:
    try:
        return EventType(name)
    except ValueError:
        known = ", ".join(t.value for t in EventType)
        raise FeedbackError(f"SES event {dialect} {name!r} is unknown (known: {known})") from None


# -- per-type parsers: (detail, recipients or None for mail.destination, event time) ---------

_Parsed = tuple[Detail, tuple[str, ...] | None, datetime | None]


def _send(data: Mapping[str, Any]) -> _Parsed:
    if "send" in data:
        obj(data, "send", "SES event")
    return SendInfo(), None, None


def _bounce(data: Mapping[str, Any]) -> _Parsed:
    bounce = obj(data, "bounce", "SES event")
    type_name = req_str(bounce, "bounceType", "bounce")
    try:
        bounce_type = BounceType(type_name)
    except ValueError:
        raise FeedbackError(
            f"bounce.bounceType {type_name!r} is not Permanent, Transient or Undetermined"
        ) from None
    recipients = tuple(
        BouncedRecipient(
            email=req_str(item, "emailAddress", where),
            action=opt_str(item, "action", where),
            status=opt_str(item, "status", where),
            diagnostic_code=opt_str(item, "diagnosticCode", where),
        )
        for where, item in objects(bounce, "bouncedRecipients", "bounce")
    )
    info = BounceInfo(
        bounce_type=bounce_type,
        bounce_subtype=opt_str(bounce, "bounceSubType", "bounce"),
        recipients=recipients,
        feedback_id=opt_str(bounce, "feedbackId", "bounce"),
        reporting_mta=opt_str(bounce, "reportingMTA", "bounce"),
        remote_mta_ip=opt_str(bounce, "remoteMtaIp", "bounce"),
    )
    return info, tuple(r.email for r in recipients), opt_time(bounce, "timestamp", "bounce")


def _complaint(data: Mapping[str, Any]) -> _Parsed:
    complaint = obj(data, "complaint", "SES event")
    recipients = tuple(
        req_str(item, "emailAddress", where)
        for where, item in objects(complaint, "complainedRecipients", "complaint")
    )
    info = ComplaintInfo(
        recipients=recipients,
        feedback_type=opt_str(complaint, "complaintFeedbackType", "complaint"),
        subtype=opt_str(complaint, "complaintSubType", "complaint"),
        feedback_id=opt_str(complaint, "feedbackId", "complaint"),
        user_agent=opt_str(complaint, "userAgent", "complaint"),
        arrival_date=opt_time(complaint, "arrivalDate", "complaint"),
    )
    return info, recipients, opt_time(complaint, "timestamp", "complaint")


def _delivery(data: Mapping[str, Any]) -> _Parsed:
    delivery = obj(data, "delivery", "SES event")
    recipients = str_list(delivery, "recipients", "delivery")
    millis = delivery.get("processingTimeMillis")
    if millis is not None and (not isinstance(millis, int) or isinstance(millis, bool)):
        raise FeedbackError("delivery.processingTimeMillis is not an integer")
    info = DeliveryInfo(
        recipients=recipients,
        smtp_response=opt_str(delivery, "smtpResponse", "delivery"),
        reporting_mta=opt_str(delivery, "reportingMTA", "delivery"),
        processing_time_ms=millis,
    )
    return info, recipients, opt_time(delivery, "timestamp", "delivery")


def _delay(data: Mapping[str, Any]) -> _Parsed:
    delay = obj(data, "deliveryDelay", "SES event")
    recipients = tuple(
        DelayedRecipient(
            email=req_str(item, "emailAddress", where),
            status=opt_str(item, "status", where),
            diagnostic_code=opt_str(item, "diagnosticCode", where),
        )
        for where, item in objects(delay, "delayedRecipients", "deliveryDelay")
    )
    info = DelayInfo(
        delay_type=opt_str(delay, "delayType", "deliveryDelay"),
        recipients=recipients,
        expiration_time=opt_time(delay, "expirationTime", "deliveryDelay"),
        reporting_mta=opt_str(delay, "reportingMTA", "deliveryDelay"),
    )
    return info, tuple(r.email for r in recipients), opt_time(delay, "timestamp", "deliveryDelay")


def _reject(data: Mapping[str, Any]) -> _Parsed:
    reject = obj(data, "reject", "SES event")
    return RejectInfo(opt_str(reject, "reason", "reject")), None, None


def _rendering_failure(data: Mapping[str, Any]) -> _Parsed:
    failure = obj(data, "failure", "SES event")
    info = FailureInfo(
        error_message=req_str(failure, "errorMessage", "failure"),
        template_name=opt_str(failure, "templateName", "failure"),
    )
    return info, None, None


def _open(data: Mapping[str, Any]) -> _Parsed:
    opened = obj(data, "open", "SES event")
    info = OpenInfo(
        ip_address=opt_str(opened, "ipAddress", "open"),
        user_agent=opt_str(opened, "userAgent", "open"),
    )
    return info, None, opt_time(opened, "timestamp", "open")


def _click(data: Mapping[str, Any]) -> _Parsed:
    click = obj(data, "click", "SES event")
    info = ClickInfo(
        link=req_str(click, "link", "click"),
        ip_address=opt_str(click, "ipAddress", "click"),
        user_agent=opt_str(click, "userAgent", "click"),
        link_tags=tag_map(click.get("linkTags"), "click.linkTags"),
    )
    return info, None, opt_time(click, "timestamp", "click")


def _subscription(data: Mapping[str, Any]) -> _Parsed:
    sub = obj(data, "subscription", "SES event")
    prefs = sub.get("newTopicPreferences") or {}
    if not isinstance(prefs, Mapping):
        raise FeedbackError("subscription.newTopicPreferences is not an object")
    unsubscribe_all = prefs.get("unsubscribeAll", False)
    if not isinstance(unsubscribe_all, bool):
        raise FeedbackError("subscription.newTopicPreferences.unsubscribeAll is not a boolean")
    topics: dict[str, str] = {}
    where = "subscription.newTopicPreferences"
    if prefs.get("topicSubscriptionStatus") is not None:
        for item_where, item in objects(prefs, "topicSubscriptionStatus", where):
            topics[req_str(item, "topicName", item_where)] = req_str(
                item, "subscriptionStatus", item_where
            )
    info = SubscriptionInfo(
        contact_list=opt_str(sub, "contactList", "subscription"),
        source=opt_str(sub, "source", "subscription"),
        unsubscribe_all=unsubscribe_all,
        topics=topics,
    )
    return info, None, opt_time(sub, "timestamp", "subscription")


_DETAIL_PARSERS = {
    EventType.SEND: _send,
    EventType.DELIVERY: _delivery,
    EventType.BOUNCE: _bounce,
    EventType.COMPLAINT: _complaint,
    EventType.REJECT: _reject,
    EventType.DELIVERY_DELAY: _delay,
    EventType.OPEN: _open,
    EventType.CLICK: _click,
    EventType.RENDERING_FAILURE: _rendering_failure,
    EventType.SUBSCRIPTION: _subscription,
}


def _subject(mail: Mapping[str, Any]) -> str | None:
    headers = mail.get("commonHeaders")
    if not isinstance(headers, Mapping):
        return None
    subject = headers.get("subject")
    return subject if isinstance(subject, str) else None
