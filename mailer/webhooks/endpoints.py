"""The webhook use cases every entrance calls: add, list, remove, test, the log, retry.

Each takes a Session and leaves the transaction to the caller, except :func:`test`, which
posts (outside any transaction) and writes nothing.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from mailer.errors import NotFoundError
from mailer.webhooks.dispatch import Policy
from mailer.webhooks.http import Answer, Request, check_url, post_all
from mailer.webhooks.signing import new_secret, signed_headers
from subscribers.models import utcnow
from subscribers.outbox import (
    DeliveryState,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
    forget_endpoints,
    parse_event_types,
)

__all__ = [
    "TEST_EVENT",
    "EndpointRow",
    "LogRow",
    "add",
    "get",
    "list_endpoints",
    "log_rows",
    "remove",
    "retry_failed",
    "set_enabled",
    "shown_url",
    "test",
]

#: the type of the event ``mailer webhooks test`` posts (never written to the outbox)
TEST_EVENT = "webhook.test"


def add(session: Session, url: str, events: str) -> WebhookEndpoint:
    """A new endpoint for ``url`` and the comma-separated ``events``, with a fresh secret.
    A bad URL or an unknown event name is an InputError naming it (and the valid events)."""
    endpoint = WebhookEndpoint(
        url=check_url(url.strip()),
        events=",".join(parse_event_types(events)),
        secret=new_secret(),
        enabled=True,
        created_at=utcnow(),
    )
    session.add(endpoint)
    session.flush()
    forget_endpoints(session)
    return endpoint


def shown_url(url: str) -> str:
    """``url`` as listed: a password in it (basic auth to the receiver) as ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{netloc}"))


def get(session: Session, endpoint_id: int) -> WebhookEndpoint:
    endpoint = session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None:
        known = ", ".join(str(i) for i in session.scalars(select(WebhookEndpoint.id)))
        raise NotFoundError(
            f"no webhook endpoint {endpoint_id}" + (f" (endpoints: {known})" if known else "")
        )
    return endpoint


def set_enabled(session: Session, endpoint_id: int, enabled: bool) -> WebhookEndpoint:
    """Enable or disable an endpoint: a disabled one gets no new events, and its pending
    deliveries wait until it is enabled again (a 410 Gone answer disables it)."""
    endpoint = get(session, endpoint_id)
    endpoint.enabled = enabled
    session.flush()
    forget_endpoints(session)
    return endpoint


def remove(session: Session, endpoint_id: int) -> WebhookEndpoint:
    """Delete the endpoint, its pending deliveries and their log."""
    endpoint = get(session, endpoint_id)
    session.delete(endpoint)
    session.flush()
    forget_endpoints(session)
    return endpoint


@dataclass(frozen=True)
class EndpointRow:
    endpoint: WebhookEndpoint
    counts: dict[str, int]  # deliveries by state


def list_endpoints(session: Session) -> list[EndpointRow]:
    counts: dict[int, dict[str, int]] = {}
    for endpoint_id, state, n in session.execute(
        select(WebhookDelivery.endpoint_id, WebhookDelivery.status, func.count()).group_by(
            WebhookDelivery.endpoint_id, WebhookDelivery.status
        )
    ):
        counts.setdefault(endpoint_id, {})[state] = n
    endpoints = session.scalars(select(WebhookEndpoint).order_by(WebhookEndpoint.id))
    return [EndpointRow(e, counts.get(e.id, {})) for e in endpoints]


@dataclass(frozen=True)
class LogRow:
    at: datetime
    endpoint_id: int
    event_uid: str
    event_type: str
    attempt: int
    status_code: int | None
    error: str | None
    next_attempt_at: datetime | None
    state: str


def log_rows(
    session: Session, *, endpoint_id: int | None = None, failed_only: bool = False, limit: int = 50
) -> list[LogRow]:
    """The newest attempts first."""
    query = (
        select(
            WebhookAttempt.at,
            WebhookDelivery.endpoint_id,
            WebhookEvent.uid,
            WebhookEvent.type,
            WebhookAttempt.attempt,
            WebhookAttempt.status_code,
            WebhookAttempt.error,
            WebhookAttempt.next_attempt_at,
            WebhookDelivery.status,
        )
        .join(WebhookDelivery, WebhookDelivery.id == WebhookAttempt.delivery_id)
        .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
        .order_by(WebhookAttempt.at.desc(), WebhookAttempt.id.desc())
        .limit(limit)
    )
    if endpoint_id is not None:
        query = query.where(WebhookDelivery.endpoint_id == endpoint_id)
    if failed_only:
        query = query.where(WebhookAttempt.error.is_not(None))
    return [LogRow(*row) for row in session.execute(query)]


def retry_failed(session: Session, endpoint_id: int | None = None) -> int:
    """Deliveries that used up their attempts are due again now, with a fresh count."""
    query = update(WebhookDelivery).where(WebhookDelivery.status == DeliveryState.FAILED)
    if endpoint_id is not None:
        get(session, endpoint_id)
        query = query.where(WebhookDelivery.endpoint_id == endpoint_id)
    result = session.execute(
        query.values(status=DeliveryState.PENDING, attempts=0, next_attempt_at=utcnow())
    )
    return int(getattr(result, "rowcount", 0) or 0)


def test(endpoint: WebhookEndpoint, policy: Policy) -> Answer:
    """Post a signed ``webhook.test`` event to the endpoint now, once; nothing is stored."""
    now = utcnow()
    uid = "msg_test_" + secrets.token_urlsafe(12)
    payload = {
        "type": TEST_EVENT,
        "timestamp": now.isoformat(),
        "data": {"endpoint": endpoint.id, "events": endpoint.event_types},
    }
    body = json.dumps(payload, separators=(",", ":")).encode()
    headers = signed_headers(endpoint.secret, uid, now, body)
    return post_all([Request(endpoint.id, endpoint.url, headers, body)], policy.timeout)[0]
