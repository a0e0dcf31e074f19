"""The small frozen records an SES event becomes at the border
(docs/architecture.md principle 4): :class:`SESEvent` with one detail record per event type, or a
:class:`SetupNotice`. :mod:`mailer.feedback.events` builds them (and re-exports them);
the rules, the writer and the entrances read them.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


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
