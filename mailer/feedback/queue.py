"""SES events from an SQS queue (SNS -> SQS subscription): ``mailer feedback poll``.

Each message is applied in its own transaction and deleted from the queue only after that
transaction committed, so a crash at any point re-delivers at most the message in hand, and
the event's idempotency (``mailer.feedback.rules``) makes the re-delivery harmless.

The body is an SNS envelope, or the bare SES event when the subscription uses raw message
delivery. Verifying the SNS signature is optional here (``verify``): reading the queue
already needs AWS credentials, and raw delivery carries no signature at all. When it is on,
the age limit is off, since messages may wait in a queue for days.

Poison messages are set aside into ``feedback_poison`` (logged, counted, deleted from the
queue) when they can never succeed (not JSON, not an SES event, forged), or when applying
still fails on the ``max_attempts``-th receive. A message that fails earlier is made visible
again after ``retry_delay`` seconds.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from mailer import safejson
from mailer.config import Settings
from mailer.errors import FeedbackError, InputError, VerificationError
from mailer.feedback.events import (
    SNS_TYPES,
    SESEvent,
    SetupNotice,
    parse_message_text,
    parse_payload,
)
from mailer.feedback.models import PoisonMessage
from mailer.feedback.rules import apply_event
from mailer.feedback.sns import CertFetcher, SNSVerifier
from subscribers.db import transaction
from subscribers.db_errors import explain
from subscribers.models import utcnow

__all__ = ["PollStats", "QueuePoller"]

log = logging.getLogger(__name__)


@dataclass
class PollStats:
    received: int = 0
    applied: int = 0
    duplicates: int = 0
    notices: int = 0
    retried: int = 0
    poisoned: int = 0
    unmatched: int = 0
    by_type: dict[str, int] = field(default_factory=dict)

    def add(self, other: PollStats) -> None:
        for f in dataclasses.fields(self):
            if f.name == "by_type":
                for k, v in other.by_type.items():
                    self.by_type[k] = self.by_type.get(k, 0) + v
            else:
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def summary(self) -> str:
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(self.by_type.items())) or "none"
        return (
            f"received {self.received}: applied {self.applied} ({kinds}), "
            f"unmatched {self.unmatched}, duplicates {self.duplicates}, notices {self.notices}, "
            f"retry later {self.retried}, set aside {self.poisoned}"
        )


class _Poison(Exception):
    """This message can never succeed: set it aside now."""


class QueuePoller:
    """Long-polls one queue with an injected boto3 ``sqs`` client."""

    def __init__(
        self,
        sqs: Any,
        queue_url: str,
        sessions: sessionmaker[Session],
        settings: Settings,
        *,
        max_attempts: int = 5,
        wait_seconds: int = 20,
        retry_delay: int = 30,
        verify: bool = False,
        fetch_cert: CertFetcher | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        self.sqs = sqs
        self.queue_url = queue_url
        self.sessions = sessions
        self.settings = settings
        self.max_attempts = max_attempts
        self.wait_seconds = wait_seconds
        self.retry_delay = retry_delay
        self.verifier: SNSVerifier | None = None
        if verify:
            no_age_limit = dataclasses.replace(settings, sns_max_age=0)
            self.verifier = SNSVerifier(no_age_limit, fetch_cert=fetch_cert)

    # -- loop ----------------------------------------------------------------------------------

    def run(self, *, once: bool = False, stop: threading.Event | None = None) -> PollStats:
        """Poll until ``stop`` is set; with ``once``, until a receive comes back empty."""
        total = PollStats()
        while stop is None or not stop.is_set():
            batch = self.poll_batch()
            total.add(batch)
            if once and batch.received == 0:
                break
        return total

    def poll_batch(self) -> PollStats:
        """One ReceiveMessage call (up to 10 messages), each handled on its own."""
        response = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=self.wait_seconds,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        )
        stats = PollStats()
        for message in response.get("Messages", []):
            stats.received += 1
            self.handle(message, stats)
        return stats

    # -- one message ---------------------------------------------------------------------------

    def handle(self, message: dict[str, Any], stats: PollStats) -> None:
        body = message.get("Body", "")
        attempts = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
        try:
            parsed = self._parse(body)
            if isinstance(parsed, SetupNotice):
                log.info("queue setup message acknowledged: %s %s", parsed.kind, parsed.text[:200])
                stats.notices += 1
            else:
                self._apply(parsed, stats)
        except _Poison as err:
            self._set_aside(message, str(err), attempts, stats)
            return
        except Exception as err:
            if attempts >= self.max_attempts:
                reason = f"still failing after {attempts} receives: {self._describe(err)}"
                self._set_aside(message, reason, attempts, stats)
            else:
                log.warning(
                    "SQS message %s failed (receive %d of %d), will retry: %s",
                    message.get("MessageId"),
                    attempts,
                    self.max_attempts,
                    self._describe(err),
                )
                self._retry_later(message)
                stats.retried += 1
            return
        self._delete(message)

    def _describe(self, err: Exception) -> str:
        """One line for the log and the poison row. A driver's error (its SQL, parameters
        and a link, over many lines) is told as the CLI tells it
        (:func:`subscribers.db_errors.explain`): unreachable, locked, not initialised."""
        if isinstance(err, DBAPIError):
            told = explain(err, self.settings.database_url, waited=self.settings.db_timeout)
            return f"{type(told).__name__}: {told}"
        return f"{type(err).__name__}: {err}"

    def _parse(self, body: str) -> SESEvent | SetupNotice:
        try:
            if self.verifier is None:
                return parse_payload(body)
            return self._verified(body)
        except (FeedbackError, InputError, VerificationError) as err:
            raise _Poison(f"{type(err).__name__}: {err}") from err

    def _verified(self, body: str) -> SESEvent | SetupNotice:
        assert self.verifier is not None
        try:
            envelope = safejson.loads(body, what="SQS message body")
        except InputError as err:
            raise VerificationError(f"SNS verification is on but {err}") from err
        kind = envelope.get("Type") if isinstance(envelope, dict) else None
        if not isinstance(kind, str) or kind not in SNS_TYPES:  # a list is unhashable
            raise VerificationError(
                "SNS verification is on but the body is not an SNS envelope "
                "(raw message delivery cannot be verified)"
            )
        message = self.verifier.verify(envelope)
        if message.type != "Notification":
            return SetupNotice(message.type, message.message, message.message_id)
        return parse_message_text(message.message, message.message_id)

    def _apply(self, event: SESEvent, stats: PollStats) -> None:
        with transaction(self.sessions) as session:
            outcome = apply_event(session, event, self.settings)
        if outcome.status == "duplicate":
            stats.duplicates += 1
            return
        stats.applied += 1
        stats.by_type[outcome.event_type] = stats.by_type.get(outcome.event_type, 0) + 1
        if not outcome.matched:
            stats.unmatched += 1

    def _set_aside(
        self, message: dict[str, Any], reason: str, attempts: int, stats: PollStats
    ) -> None:
        message_id = str(message.get("MessageId", ""))[:128]
        log.error("SQS message %s set aside into feedback_poison: %s", message_id, reason)
        values = {
            "source": self.queue_url[:1024],
            "sqs_message_id": message_id,
            "body": str(message.get("Body", "")),
            "error": reason,
            "receive_count": attempts,
            "set_aside_at": utcnow(),
        }
        with transaction(self.sessions) as session:
            name = session.get_bind().dialect.name
            insert = postgresql.insert if name == "postgresql" else sqlite.insert
            session.execute(insert(PoisonMessage).values(**values).on_conflict_do_nothing())
        stats.poisoned += 1
        self._delete(message)

    def _retry_later(self, message: dict[str, Any]) -> None:
        try:
            self.sqs.change_message_visibility(
                QueueUrl=self.queue_url,
                ReceiptHandle=message["ReceiptHandle"],
                VisibilityTimeout=self.retry_delay,
            )
        except Exception as err:  # it comes back after the queue's own timeout anyway
            log.warning("could not shorten visibility of %s: %s", message.get("MessageId"), err)

    def _delete(self, message: dict[str, Any]) -> None:
        try:
            self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
        except Exception as err:  # re-delivered later; applying again is a no-op
            log.warning("could not delete SQS message %s: %s", message.get("MessageId"), err)
