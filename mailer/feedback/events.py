"""SES event JSON -> small frozen records, at the border (DESIGN.md principle 4).

SES reports what became of a message in two dialects: configuration-set event publishing
(``eventType``, with the sender's EmailTags in ``mail.tags``) and the older identity
notifications (``notificationType``, no tags). Both arrive as a bare JSON event, as the
``Message`` string of an SNS envelope, or as an SQS body (SNS envelope, or the bare event
with raw message delivery). :func:`parse_payload` takes any of these; the rest of the code
only sees :class:`SESEvent` (or a :class:`SetupNotice` for SES's wiring-up messages).

Anything malformed raises :class:`~mailer.errors.FeedbackError` naming the field. The raw
event is kept on the record for the audit trail.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mailer import safejson
from mailer.errors import FeedbackError, InputError

__all__ = [
    "SETUP_TEXT",
    "BounceInfo",
    "BouncedRecipient",
    "ClickInfo",
    "ComplaintInfo",
    "DelayInfo",
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
_SNS_TYPES = frozenset({"Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation"})


class EventType(enum.StrEnum):
    SEND = "Send"
    DELIVERY = "Delivery"
    BOUNCE = "Bounce"
    COMPLAINT = "Complaint"
    REJECT = "Reject"
    DELIVERY_DELAY = "DeliveryDelay"
    OPEN = "Open"
    CLICK = "Click"
    RENDERING_FAILURE = "Rendering Failure"
    SUBSCRIPTION = "Subscription"


class BounceType(enum.StrEnum):
    PERMANENT = "Permanent"
    TRANSIENT = "Transient"
    UNDETERMINED = "Undetermined"


# -- per-type details ----------------------------------------------------------------------


@dataclass(frozen=True)
class SendInfo:
    """A Send event carries nothing beyond ``mail``."""


@dataclass(frozen=True)
class BouncedRecipient:
    email: str
    action: str | None = None
    status: str | None = None
    diagnostic_code: str | None = None


@dataclass(frozen=True)
class BounceInfo:
    bounce_type: BounceType
    bounce_subtype: str | None
    recipients: tuple[BouncedRecipient, ...]
    feedback_id: str | None = None
    reporting_mta: str | None = None
    remote_mta_ip: str | None = None

    @property
    def permanent(self) -> bool:
        return self.bounce_type is BounceType.PERMANENT

    @property
    def on_account_suppression_list(self) -> bool:
        """SES itself refused: the address is on the account-level suppression list."""
        return self.bounce_subtype == "OnAccountSuppressionList"


@dataclass(frozen=True)
class ComplaintInfo:
    recipients: tuple[str, ...]
    feedback_type: str | None = None
    subtype: str | None = None
    feedback_id: str | None = None
    user_agent: str | None = None
    arrival_date: datetime | None = None

    @property
    def not_spam(self) -> bool:
        """The reader said "this is not spam": not a complaint to act on."""
        return self.feedback_type == "not-spam"


@dataclass(frozen=True)
class DeliveryInfo:
    recipients: tuple[str, ...]
    smtp_response: str | None = None
    reporting_mta: str | None = None
    processing_time_ms: int | None = None


@dataclass(frozen=True)
class DelayedRecipient:
    email: str
    status: str | None = None
    diagnostic_code: str | None = None


@dataclass(frozen=True)
class DelayInfo:
    delay_type: str | None
    recipients: tuple[DelayedRecipient, ...]
    expiration_time: datetime | None = None
    reporting_mta: str | None = None


@dataclass(frozen=True)
class RejectInfo:
    reason: str | None


@dataclass(frozen=True)
class FailureInfo:
    error_message: str
    template_name: str | None = None


@dataclass(frozen=True)
class OpenInfo:
    ip_address: str | None = None
    user_agent: str | None = None


@dataclass(frozen=True)
class ClickInfo:
    link: str
    ip_address: str | None = None
    user_agent: str | None = None
    link_tags: Mapping[str, tuple[str, ...]] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class SubscriptionInfo:
    contact_list: str | None
    source: str | None
    unsubscribe_all: bool
    topics: Mapping[str, str] = field(default_factory=dict, hash=False)


Detail = (
    SendInfo
    | BounceInfo
    | ComplaintInfo
    | DeliveryInfo
    | DelayInfo
    | RejectInfo
    | FailureInfo
    | OpenInfo
    | ClickInfo
    | SubscriptionInfo
)


@dataclass(frozen=True)
class SESEvent:
    """One SES event, whichever dialect and wrapping it came in."""

    type: EventType
    dialect: str  # "eventType" (event publishing) or "notificationType" (identity)
    ses_message_id: str
    occurred_at: datetime  # the event's own timestamp, else the mail's
    sent_at: datetime  # mail.timestamp: when SES accepted the message
    source: str | None
    destination: tuple[str, ...]
    recipients: tuple[str, ...]  # the addresses this event is about
    subject: str | None
    detail: Detail
    tags: Mapping[str, tuple[str, ...]] = field(default_factory=dict, hash=False)
    sns_message_id: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)

    def tag(self, name: str) -> str | None:
        """First value of an EmailTag (SES publishes each tag as a list of strings)."""
        values = self.tags.get(name)
        return values[0] if values else None

    @property
    def campaign_tag(self) -> str | None:
        return self.tag("campaign")

    @property
    def delivery_tag(self) -> str | None:
        return self.tag("delivery")


@dataclass(frozen=True)
class SetupNotice:
    """Not an event: SES or SNS saying a topic or subscription is wired up. Acknowledge it."""

    kind: str  # "setup-test", "subscription-succeeded", or an SNS Type
    text: str
    sns_message_id: str | None = None


# -- entry points ---------------------------------------------------------------------------


def parse_payload(payload: str | bytes | Mapping[str, Any]) -> SESEvent | SetupNotice:
    """A bare event, an SNS envelope (``Message`` is the event as a string) or an SQS body.

    The envelope is NOT verified here: callers that received it over the network verify
    it with :class:`mailer.feedback.sns.SNSVerifier` first, then call :func:`parse_message_text`.
    """
    if isinstance(payload, (str, bytes)):
        text = _decode(payload)
        if text.strip() == SETUP_TEXT:
            return SetupNotice("setup-test", SETUP_TEXT)
        data: Any = _load_json(text, "SES payload")
    else:
        data = payload
    if not isinstance(data, Mapping):
        raise FeedbackError("SES payload is not a JSON object")
    kind = data.get("Type")
    if isinstance(kind, str) and kind in _SNS_TYPES and "Message" in data:  # list: unhashable
        return _from_envelope(data)
    return _classify(data, sns_message_id=None)


def parse_message_text(text: str, sns_message_id: str | None = None) -> SESEvent | SetupNotice:
    """The ``Message`` of a (verified) SNS Notification: event JSON or the setup text."""
    if text.strip() == SETUP_TEXT:
        return SetupNotice("setup-test", SETUP_TEXT, sns_message_id)
    data = _load_json(text, "SNS Message")
    if not isinstance(data, Mapping):
        raise FeedbackError("SNS Message is not a JSON object")
    return _classify(data, sns_message_id)


def parse_event(data: Mapping[str, Any], sns_message_id: str | None = None) -> SESEvent:
    """A bare SES event object -> SESEvent, or FeedbackError naming what is wrong."""
    if not isinstance(data, Mapping):
        raise FeedbackError("SES event is not a JSON object")
    dialect, type_name = _event_type(data)
    kind = _known_type(type_name, dialect)
    mail = _obj(data, "mail", "SES event")
    ses_message_id = _str(mail, "messageId", "mail")
    sent_at = _time(mail, "timestamp", "mail")
    detail, recipients, occurred = _DETAIL_PARSERS[kind](data)
    destination = _str_list(mail, "destination", "mail", required=False)
    return SESEvent(
        type=kind,
        dialect=dialect,
        ses_message_id=ses_message_id,
        occurred_at=occurred or sent_at,
        sent_at=sent_at,
        source=_opt_str(mail, "source", "mail"),
        destination=destination,
        recipients=recipients if recipients is not None else destination,
        subject=_subject(mail),
        detail=detail,
        tags=_tags(mail.get("tags"), "mail.tags"),
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
        _obj(data, "send", "SES event")
    return SendInfo(), None, None


def _bounce(data: Mapping[str, Any]) -> _Parsed:
    bounce = _obj(data, "bounce", "SES event")
    type_name = _str(bounce, "bounceType", "bounce")
    try:
        bounce_type = BounceType(type_name)
    except ValueError:
        raise FeedbackError(
            f"bounce.bounceType {type_name!r} is not Permanent, Transient or Undetermined"
        ) from None
    recipients = tuple(
        BouncedRecipient(
            email=_str(item, "emailAddress", where),
            action=_opt_str(item, "action", where),
            status=_opt_str(item, "status", where),
            diagnostic_code=_opt_str(item, "diagnosticCode", where),
        )
        for where, item in _objects(bounce, "bouncedRecipients", "bounce")
    )
    info = BounceInfo(
        bounce_type=bounce_type,
        bounce_subtype=_opt_str(bounce, "bounceSubType", "bounce"),
        recipients=recipients,
        feedback_id=_opt_str(bounce, "feedbackId", "bounce"),
        reporting_mta=_opt_str(bounce, "reportingMTA", "bounce"),
        remote_mta_ip=_opt_str(bounce, "remoteMtaIp", "bounce"),
    )
    return info, tuple(r.email for r in recipients), _opt_time(bounce, "timestamp", "bounce")


def _complaint(data: Mapping[str, Any]) -> _Parsed:
    complaint = _obj(data, "complaint", "SES event")
    recipients = tuple(
        _str(item, "emailAddress", where)
        for where, item in _objects(complaint, "complainedRecipients", "complaint")
    )
    info = ComplaintInfo(
        recipients=recipients,
        feedback_type=_opt_str(complaint, "complaintFeedbackType", "complaint"),
        subtype=_opt_str(complaint, "complaintSubType", "complaint"),
        feedback_id=_opt_str(complaint, "feedbackId", "complaint"),
        user_agent=_opt_str(complaint, "userAgent", "complaint"),
        arrival_date=_opt_time(complaint, "arrivalDate", "complaint"),
    )
    return info, recipients, _opt_time(complaint, "timestamp", "complaint")


def _delivery(data: Mapping[str, Any]) -> _Parsed:
    delivery = _obj(data, "delivery", "SES event")
    recipients = _str_list(delivery, "recipients", "delivery")
    millis = delivery.get("processingTimeMillis")
    if millis is not None and (not isinstance(millis, int) or isinstance(millis, bool)):
        raise FeedbackError("delivery.processingTimeMillis is not an integer")
    info = DeliveryInfo(
        recipients=recipients,
        smtp_response=_opt_str(delivery, "smtpResponse", "delivery"),
        reporting_mta=_opt_str(delivery, "reportingMTA", "delivery"),
        processing_time_ms=millis,
    )
    return info, recipients, _opt_time(delivery, "timestamp", "delivery")


def _delay(data: Mapping[str, Any]) -> _Parsed:
    delay = _obj(data, "deliveryDelay", "SES event")
    recipients = tuple(
        DelayedRecipient(
            email=_str(item, "emailAddress", where),
            status=_opt_str(item, "status", where),
            diagnostic_code=_opt_str(item, "diagnosticCode", where),
        )
        for where, item in _objects(delay, "delayedRecipients", "deliveryDelay")
    )
    info = DelayInfo(
        delay_type=_opt_str(delay, "delayType", "deliveryDelay"),
        recipients=recipients,
        expiration_time=_opt_time(delay, "expirationTime", "deliveryDelay"),
        reporting_mta=_opt_str(delay, "reportingMTA", "deliveryDelay"),
    )
    return info, tuple(r.email for r in recipients), _opt_time(delay, "timestamp", "deliveryDelay")


def _reject(data: Mapping[str, Any]) -> _Parsed:
    reject = _obj(data, "reject", "SES event")
    return RejectInfo(_opt_str(reject, "reason", "reject")), None, None


def _rendering_failure(data: Mapping[str, Any]) -> _Parsed:
    failure = _obj(data, "failure", "SES event")
    info = FailureInfo(
        error_message=_str(failure, "errorMessage", "failure"),
        template_name=_opt_str(failure, "templateName", "failure"),
    )
    return info, None, None


def _open(data: Mapping[str, Any]) -> _Parsed:
    opened = _obj(data, "open", "SES event")
    info = OpenInfo(
        ip_address=_opt_str(opened, "ipAddress", "open"),
        user_agent=_opt_str(opened, "userAgent", "open"),
    )
    return info, None, _opt_time(opened, "timestamp", "open")


def _click(data: Mapping[str, Any]) -> _Parsed:
    click = _obj(data, "click", "SES event")
    info = ClickInfo(
        link=_str(click, "link", "click"),
        ip_address=_opt_str(click, "ipAddress", "click"),
        user_agent=_opt_str(click, "userAgent", "click"),
        link_tags=_tags(click.get("linkTags"), "click.linkTags"),
    )
    return info, None, _opt_time(click, "timestamp", "click")


def _subscription(data: Mapping[str, Any]) -> _Parsed:
    sub = _obj(data, "subscription", "SES event")
    prefs = sub.get("newTopicPreferences") or {}
    if not isinstance(prefs, Mapping):
        raise FeedbackError("subscription.newTopicPreferences is not an object")
    unsubscribe_all = prefs.get("unsubscribeAll", False)
    if not isinstance(unsubscribe_all, bool):
        raise FeedbackError("subscription.newTopicPreferences.unsubscribeAll is not a boolean")
    topics: dict[str, str] = {}
    where = "subscription.newTopicPreferences"
    if prefs.get("topicSubscriptionStatus") is not None:
        for item_where, item in _objects(prefs, "topicSubscriptionStatus", where):
            topics[_str(item, "topicName", item_where)] = _str(
                item, "subscriptionStatus", item_where
            )
    info = SubscriptionInfo(
        contact_list=_opt_str(sub, "contactList", "subscription"),
        source=_opt_str(sub, "source", "subscription"),
        unsubscribe_all=unsubscribe_all,
        topics=topics,
    )
    return info, None, _opt_time(sub, "timestamp", "subscription")


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


# -- field helpers: each names the path of what is wrong --------------------------------------


def _decode(payload: str | bytes) -> str:
    if isinstance(payload, str):
        return payload
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError as err:
        raise FeedbackError(f"SES payload is not UTF-8: {err}") from err


def _load_json(text: str, what: str) -> Any:
    """The border's safe loader; its InputError (not JSON, too deep, absurd numbers) becomes
    this module's FeedbackError with the same message."""
    try:
        return safejson.loads(text, what=what)
    except InputError as err:
        raise FeedbackError(str(err)) from err


def _obj(data: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    value = data.get(key)
    if value is None:
        raise FeedbackError(f"{where} has no {key!r} object")
    if not isinstance(value, Mapping):
        raise FeedbackError(f"{where}.{key} is not an object")
    return value


def _objects(data: Mapping[str, Any], key: str, where: str) -> list[tuple[str, Mapping[str, Any]]]:
    value = data.get(key)
    if not isinstance(value, list) or not value:
        raise FeedbackError(f"{where}.{key} must be a non-empty list")
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, Mapping):
            raise FeedbackError(f"{where}.{key}[{i}] is not an object")
        out.append((f"{where}.{key}[{i}]", item))
    return out


def _str(data: Mapping[str, Any], key: str, where: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        raise FeedbackError(f"{where}.{key} is missing or not a non-empty string")
    return value


def _opt_str(data: Mapping[str, Any], key: str, where: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise FeedbackError(f"{where}.{key} is not a string")
    return value


def _str_list(
    data: Mapping[str, Any], key: str, where: str, *, required: bool = True
) -> tuple[str, ...]:
    value = data.get(key)
    if value is None and not required:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise FeedbackError(f"{where}.{key} must be a list of strings")
    return tuple(value)


def _time(data: Mapping[str, Any], key: str, where: str) -> datetime:
    value = _opt_time(data, key, where)
    if value is None:
        raise FeedbackError(f"{where}.{key} is missing")
    return value


def _opt_time(data: Mapping[str, Any], key: str, where: str) -> datetime | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or "T" not in value:
        raise FeedbackError(f"{where}.{key} is not an ISO 8601 timestamp: {value!r}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise FeedbackError(f"{where}.{key} is not an ISO 8601 timestamp: {value!r}") from None
    if parsed.tzinfo is None:
        raise FeedbackError(f"{where}.{key} has no time zone: {value!r}")
    return parsed.astimezone(UTC)


def _tags(value: Any, where: str) -> dict[str, tuple[str, ...]]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise FeedbackError(f"{where} is not an object")
    tags: dict[str, tuple[str, ...]] = {}
    for name, values in value.items():
        if not _is_str_seq(values):
            raise FeedbackError(f"{where}.{name} must be a list of strings")
        tags[str(name)] = tuple(values)
    return tags


def _is_str_seq(value: Any) -> bool:
    return (
        isinstance(value, Sequence)
        and not isinstance(value, str)
        and all(isinstance(v, str) for v in value)
    )


def _subject(mail: Mapping[str, Any]) -> str | None:
    headers = mail.get("commonHeaders")
    if not isinstance(headers, Mapping):
        return None
    subject = headers.get("subject")
    return subject if isinstance(subject, str) else None
