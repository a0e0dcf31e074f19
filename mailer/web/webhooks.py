"""``POST /webhooks/ses``: SES events through SNS, trusted only when SNS really signed them.

    body > MAX_BODY bytes                     -> 413
    not a JSON object                         -> 400
    fails SNS verification (mailer.sns)       -> 403, and nothing is written
    SubscriptionConfirmation (allowlisted)    -> SubscribeURL visited -> 200 (502 if it fails)
    UnsubscribeConfirmation, SES setup text   -> logged, 200
    Notification with an SES event            -> applied in one transaction -> 200
                                                 (a redelivery is recognised -> 200)
    a signed but unreadable SES event         -> 400 (logged; a retry would not help)
    any error while applying                  -> 500, rolled back, so SNS retries

Verification and the database work run in the thread pool; the certificate cache of the
one SNSVerifier is shared by every request. Verification runs in parallel; applying is
gated to the writers the database can use at once (one on SQLite, the pool size elsewhere),
so a burst queues in memory instead of thrashing locks and connections.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from mailer.config import Settings
from mailer.errors import ConfirmationError, FeedbackError, VerificationError
from mailer.events import SetupNotice, parse_message_text
from mailer.feedback import apply_event
from mailer.sns import (
    SUBSCRIPTION_CONFIRMATION,
    UNSUBSCRIBE_CONFIRMATION,
    SNSMessage,
    SNSVerifier,
    confirm_subscription,
)
from subscribers.db import transaction

__all__ = ["MAX_BODY", "ses_webhook_router"]

log = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024
"""SNS messages are at most 256 KiB; with JSON escaping an envelope stays far below this."""

PATH = "/webhooks/ses"


class _Reply(Exception):
    """Carries the status and message of an early answer out of the worker thread."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"status": "error" if status >= 400 else "ok", "detail": message, **extra}


def ses_webhook_router(
    settings: Settings,
    sessions: sessionmaker[Session],
    *,
    verifier: SNSVerifier | None = None,
    confirm_get: Callable[[str], object] | None = None,
) -> APIRouter:
    """The webhook, bound to this app's settings, store and (injectable) SNS seams."""
    sns = verifier or SNSVerifier(settings)
    writers = threading.BoundedSemaphore(_writer_slots(sessions))
    router = APIRouter()

    def handle(body: bytes, header_type: str | None) -> dict[str, Any]:
        envelope = _parse(body)
        if header_type and envelope.get("Type") != header_type:
            raise _Reply(403, "x-amz-sns-message-type does not match the message Type")
        try:
            message = sns.verify(envelope)
        except VerificationError as err:
            log.warning("SNS message rejected: %s", err)
            raise _Reply(403, str(err)) from err
        if message.type == SUBSCRIPTION_CONFIRMATION:
            return _confirm(message, confirm_get)
        if message.type == UNSUBSCRIBE_CONFIRMATION:
            log.info("SNS unsubscribed this endpoint from %s", message.topic_arn)
            return {"status": "ok", "detail": "unsubscribe confirmation noted"}
        return _notification(message, settings, sessions, writers)

    @router.post(PATH, include_in_schema=False)
    async def ses_webhook(request: Request) -> JSONResponse:
        try:
            body = await _read_limited(request)
            result = await run_in_threadpool(
                handle, body, request.headers.get("x-amz-sns-message-type")
            )
        except _Reply as reply:
            return JSONResponse(reply.body, status_code=reply.status)
        return JSONResponse(result)

    return router


async def _read_limited(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY:
        raise _Reply(413, f"body larger than {MAX_BODY} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise _Reply(413, f"body larger than {MAX_BODY} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _parse(body: bytes) -> dict[str, Any]:
    try:
        envelope = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise _Reply(400, f"body is not JSON: {err}") from err
    if not isinstance(envelope, dict):
        raise _Reply(400, "body is not a JSON object")
    return envelope


def _confirm(message: SNSMessage, http_get: Callable[[str], object] | None) -> dict[str, Any]:
    try:
        confirm_subscription(message, http_get=http_get)
    except VerificationError as err:
        log.warning("SubscriptionConfirmation refused: %s", err)
        raise _Reply(403, str(err)) from err
    except ConfirmationError as err:
        log.error("SubscriptionConfirmation for %s failed: %s", message.topic_arn, err)
        raise _Reply(502, str(err)) from err
    log.info("SNS subscription to %s confirmed", message.topic_arn)
    return {"status": "ok", "detail": "subscription confirmed"}


def _writer_slots(sessions: sessionmaker[Session]) -> int:
    """How many events may be applied at once: SQLite has one writer (more threads would
    only sleep in its busy handler); elsewhere as many as the pool keeps connections."""
    bind = sessions.kw.get("bind")
    if bind is None or bind.dialect.name == "sqlite":
        return 1
    size = getattr(bind.pool, "size", None)
    return max(1, int(size())) if callable(size) else 4


def _notification(
    message: SNSMessage,
    settings: Settings,
    sessions: sessionmaker[Session],
    writers: threading.BoundedSemaphore,
) -> dict[str, Any]:
    try:
        parsed = parse_message_text(message.message, message.message_id)
    except FeedbackError as err:
        log.error("signed SNS message %s holds no SES event: %s", message.message_id, err)
        raise _Reply(400, str(err)) from err
    if isinstance(parsed, SetupNotice):
        log.info("SES setup message acknowledged (%s): %s", parsed.kind, parsed.text[:200])
        return {"status": "ok", "detail": parsed.kind}
    try:
        with writers, transaction(sessions) as session:
            outcome = apply_event(session, parsed, settings)
    except Exception as err:  # rolled back; SNS retries on 5xx
        log.exception("applying SES event %s failed", message.message_id)
        raise _Reply(500, f"could not apply the event: {type(err).__name__}") from err
    return {
        "status": outcome.status,
        "event": outcome.event_type,
        "matched": outcome.matched,
        "actions": list(outcome.actions),
    }
