"""The Transport seam: how a rendered, personalized message leaves the building.

The send engine hands a transport a batch of :class:`OutgoingMessage` (1 for per-message
transports, up to ``max_batch`` for SES bulk) plus the campaign-wide :class:`CampaignMessage`,
and gets one :class:`SendResult` per message back, in order.

Errors: a transport returns per-message failures in the result (``error`` set to a
``RejectedError`` or ``RetryableSendError``), and *raises* ``FatalSendError`` for
account-level problems (the campaign pauses) or ``RetryableSendError`` when the whole batch
may be retried.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from mailer.errors import TransportError
from mailer.render.message import CampaignMessage as CampaignMessage  # built by the renderer


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """One reader's message.

    ``raw`` is the complete RFC 5322 message (CRLF line ends) built by ``mailer.render.message``;
    ``fields`` the placeholder values; ``headers`` the per-reader headers (To, Message-ID,
    List-Unsubscribe, List-Unsubscribe-Post). ``delivery_id`` is 0 for test sends."""

    delivery_id: int
    to: str
    raw: bytes
    fields: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    message_id: str = ""


@dataclass(frozen=True, slots=True)
class SendResult:
    """``message_id`` (the transport's id: SES MessageId, SMTP Message-ID, outbox file name)
    on success, or ``error`` on failure; never both."""

    message_id: str | None = None
    error: TransportError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class SendQuota(NamedTuple):
    """What the provider allows (SES's GetAccount): messages per second and per 24 hours (-1:
    no daily limit), and how many were sent in the last 24 hours."""

    max_send_rate: float
    max_24h_send: float
    sent_last_24h: float


class Transport(Protocol):
    """A way to send. Implementations must be safe to call from several threads."""

    name: str
    max_batch: int
    #: False when the transport builds the message itself from CampaignMessage (SES bulk),
    #: so the engine can skip building ``raw`` per reader.
    wants_raw: bool
    #: True when a batch is one call per message, all at once (SES SendEmail): the engine
    #: then keeps a batch to a short slice of the campaign's rate, so the calls stay paced.
    concurrent_batch: bool

    def send(
        self, campaign: CampaignMessage, batch: Sequence[OutgoingMessage]
    ) -> list[SendResult]: ...

    def quota(self) -> SendQuota | None:
        """The provider's limits, read before each campaign run (the engine paces to the
        rate and pauses before the daily quota runs out); None where there are none."""
        ...

    def close(self) -> None: ...
