"""Delivering the outbox: claim what is due, post it signed, log the answer, schedule retries.

At least once: a delivery is claimed (its ``next_attempt_at`` moved past the attempt's
deadline, by a conditional UPDATE the database judges, so two workers never both take it),
posted outside any transaction, then recorded. A worker that dies between the two leaves the
claim to run out, and the event is posted again: receivers drop repeats by ``webhook-id``.

A failed attempt is retried after ``MAILER_WEBHOOK_RETRY_BASE`` x 4^(n-1) (capped at
:data:`MAX_DELAY`) until ``MAILER_WEBHOOK_MAX_ATTEMPTS``; then the delivery is ``failed``,
kept with its log (``mailer webhooks log``) and can be queued again (``mailer webhooks
retry``). A receiver that is down loses nothing while it is retried.

``mailer worker`` runs :class:`Background` beside the send loop: its own thread, its own
sessions, so a slow receiver never slows a campaign.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import CursorResult, delete, exists, select, update
from sqlalchemy.orm import Session, sessionmaker

from mailer.config import Settings
from mailer.webhooks.http import Answer, Request, post_all
from mailer.webhooks.signing import signed_headers
from subscribers.models import utcnow
from subscribers.outbox import (
    DeliveryState,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)

__all__ = ["MAX_DELAY", "Background", "Dispatcher", "Policy", "body_of"]

log = logging.getLogger(__name__)

#: the longest wait between two attempts
MAX_DELAY = timedelta(hours=6)
#: a claim outlives its attempt's deadline by this much before another worker may retry it
CLAIM_SLACK = timedelta(seconds=30)
#: deliveries posted at once in one pass
BATCH = 50
#: the answer that disables an endpoint
GONE = 410
#: seconds between two prunes of old delivered events by a running worker
PRUNE_EVERY = 3600.0

Post = Callable[[list[Request], float], list[Answer]]


@dataclass(frozen=True)
class Policy:
    timeout: float = 10.0
    retry_base: float = 10.0
    max_attempts: int = 12
    #: seconds a delivered event and its log are kept
    keep: float = 30 * 86400.0

    @classmethod
    def from_settings(cls, settings: Settings) -> Policy:
        return cls(
            settings.webhook_timeout,
            settings.webhook_retry_base,
            settings.webhook_max_attempts,
            settings.webhook_keep,
        )

    def delay(self, attempt: int) -> timedelta:
        """The wait after failed attempt number ``attempt`` (1, 2, ...)."""
        seconds = self.retry_base * 4 ** min(attempt - 1, 20)
        return min(timedelta(seconds=seconds), MAX_DELAY)


def body_of(event: WebhookEvent) -> bytes:
    """The bytes posted (and signed) for an event: its payload, compact JSON."""
    return json.dumps(event.payload, separators=(",", ":"), ensure_ascii=False).encode()


class Dispatcher:
    """One pass at a time over the due deliveries. ``clock`` and ``post`` are seams (tests
    inject a clock to walk the backoff; production posts over HTTP)."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        policy: Policy,
        *,
        clock: Callable[[], datetime] = utcnow,
        post: Post = post_all,
        batch: int = BATCH,
    ) -> None:
        self.sessions = sessions
        self.policy = policy
        self.clock = clock
        self.post = post
        self.batch = batch

    def run_once(self) -> int:
        """Claim what is due, post it, record the answers; how many were attempted."""
        requests = self._claim()
        if not requests:
            return 0
        answers = self.post(requests, self.policy.timeout)
        self._record(answers)
        return len(answers)

    def once(self) -> int:
        """What ``mailer worker --once`` does: prune, then one pass."""
        self.prune()
        return self.run_once()

    def prune(self) -> int:
        """Drop events older than ``policy.keep`` that every endpoint got (with their
        deliveries and log); a pending or failed delivery keeps its event. How many went."""
        cutoff = self.clock() - timedelta(seconds=self.policy.keep)
        undelivered = exists().where(
            WebhookDelivery.event_id == WebhookEvent.id,
            WebhookDelivery.status != DeliveryState.DELIVERED,
        )
        with self.sessions.begin() as s:
            gone = s.execute(
                delete(WebhookEvent)
                .where(WebhookEvent.created_at < cutoff, ~undelivered)
                .execution_options(synchronize_session=False)
            )
        assert isinstance(gone, CursorResult)
        return gone.rowcount

    def _claim(self) -> list[Request]:
        now = self.clock()
        lease_until = now + timedelta(seconds=self.policy.timeout) + CLAIM_SLACK
        out = []
        with self.sessions.begin() as s:
            rows = s.execute(
                select(WebhookDelivery, WebhookEvent, WebhookEndpoint)
                .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
                .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
                .where(
                    WebhookDelivery.status == DeliveryState.PENDING,
                    WebhookDelivery.next_attempt_at <= now,
                    WebhookEndpoint.enabled,
                )
                .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
                .limit(self.batch)
            ).all()
            for delivery, event, endpoint in rows:
                taken = s.execute(
                    update(WebhookDelivery)
                    .where(
                        WebhookDelivery.id == delivery.id,
                        WebhookDelivery.status == DeliveryState.PENDING,
                        WebhookDelivery.next_attempt_at == delivery.next_attempt_at,
                    )
                    .values(next_attempt_at=lease_until, attempts=WebhookDelivery.attempts + 1)
                    .execution_options(synchronize_session=False)
                )
                assert isinstance(taken, CursorResult)
                if taken.rowcount != 1:
                    continue  # another worker took it
                body = body_of(event)
                headers = signed_headers(endpoint.secret, event.uid, now, body)
                out.append(Request(delivery.id, endpoint.url, headers, body))
        return out

    def _record(self, answers: list[Answer]) -> None:
        now = self.clock()
        with self.sessions.begin() as s:
            for answer in answers:
                delivery = s.get(WebhookDelivery, answer.key)
                if delivery is None:  # its endpoint was removed meanwhile
                    continue
                next_at: datetime | None = None
                if answer.ok:
                    delivery.status = DeliveryState.DELIVERED
                    delivery.delivered_at = now
                elif answer.status_code == GONE:
                    delivery.status = DeliveryState.FAILED
                    self._disable(s, delivery.endpoint_id)
                elif delivery.attempts >= self.policy.max_attempts:
                    delivery.status = DeliveryState.FAILED
                    log.warning(
                        "webhook delivery %s failed for good: %s", delivery.id, answer.error
                    )
                else:
                    next_at = now + self.policy.delay(delivery.attempts)
                delivery.next_attempt_at = next_at
                s.add(
                    WebhookAttempt(
                        delivery_id=delivery.id,
                        attempt=delivery.attempts,
                        at=now,
                        status_code=answer.status_code,
                        error=answer.error and answer.error[:500],
                        next_attempt_at=next_at,
                    )
                )

    @staticmethod
    def _disable(s: Session, endpoint_id: int) -> None:
        """410 Gone: the receiver says the endpoint is gone for good (Standard Webhooks), so
        nothing more is posted or written for it until ``mailer webhooks enable``; its
        pending deliveries wait."""
        endpoint = s.get(WebhookEndpoint, endpoint_id)
        if endpoint is not None and endpoint.enabled:
            endpoint.enabled = False
            log.warning("webhook endpoint %s answered 410 Gone: disabled", endpoint_id)


class Background:
    """The dispatcher on its own thread, a pass every ``poll`` seconds (at once again when a
    pass found a full batch), until :meth:`stop`. An error in a pass is logged, not fatal:
    the next pass tries again."""

    def __init__(self, dispatcher: Dispatcher, poll: float) -> None:
        self.dispatcher = dispatcher
        self.poll = poll
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="webhooks", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Let the pass in flight end (at most one attempt's timeout), then return."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _loop(self) -> None:
        pruned_at = -PRUNE_EVERY
        while not self._stop.is_set():
            try:
                if time.monotonic() - pruned_at >= PRUNE_EVERY:
                    self.dispatcher.prune()
                    pruned_at = time.monotonic()
                full = self.dispatcher.run_once() >= self.dispatcher.batch
            except Exception:
                log.exception("webhook pass failed; trying again in %.0f s", self.poll)
                full = False
            if not full:
                self._stop.wait(self.poll)
