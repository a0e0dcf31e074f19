"""``POST /webhooks/ses``: SES events through SNS, trusted only when SNS really signed them.

    body > MAX_BODY bytes                     -> 413
    not a JSON object                         -> 400
    fails SNS verification (mailer.feedback.sns)       -> 403, and nothing is written
    SubscriptionConfirmation (allowlisted)    -> SubscribeURL visited -> 200 (502 if it fails)
    UnsubscribeConfirmation, SES setup text   -> logged, 200
    Notification with an SES event            -> applied in one transaction -> 200
                                                 (a redelivery is recognised -> 200)
    a signed but unreadable SES event         -> 400 (logged; a retry would not help)
    any error while applying                  -> 500, rolled back, so SNS retries

Parsing and verification run in the thread pool (the certificate cache of the one
SNSVerifier is shared by every request); applying goes to a FeedbackWriter, which commits
the events of concurrent requests together (group commit) and answers each request only
after its commit.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request, Response
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from mailer.config import Settings
from mailer.errors import ConfirmationError, FeedbackError, VerificationError
from mailer.feedback.events import SESEvent, SetupNotice, parse_message_text
from mailer.feedback.sns import (
    SUBSCRIPTION_CONFIRMATION,
    UNSUBSCRIBE_CONFIRMATION,
    SNSMessage,
    SNSVerifier,
    confirm_subscription,
)
from mailer.feedback.writer import FeedbackWriter

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
    writer = FeedbackWriter(settings, sessions)
    router = APIRouter()

    def prepare(envelope: dict[str, Any], header_type: str | None) -> SESEvent | dict[str, Any]:
        """Everything before the database: verify, confirm; the event to apply."""
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
        return _event(message)

    async def ses_webhook(request: Request) -> Response:
        try:
            envelope = _parse(await _read_limited(request))
            header_type = request.headers.get("x-amz-sns-message-type")
            if envelope.get("Type") == "Notification" and sns.has_certificate(
                envelope.get("SigningCertURL")
            ):  # CPU only (~0.2 ms): no thread hop
                prepared = prepare(envelope, header_type)
            else:  # may fetch a certificate or visit a SubscribeURL
                prepared = await run_in_threadpool(prepare, envelope, header_type)
            result = prepared if isinstance(prepared, dict) else await _apply(writer, prepared)
        except _Reply as reply:
            return _json(reply.body, reply.status)
        return _json(result, 200)

    # A plain Starlette route: no FastAPI dependency solving or response model per request.
    router.add_route(PATH, ses_webhook, methods=["POST"], include_in_schema=False)

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


def _json(body: dict[str, Any], status: int) -> Response:
    return Response(json.dumps(body), status_code=status, media_type="application/json")


def _event(message: SNSMessage) -> SESEvent | dict[str, Any]:
    try:
        parsed = parse_message_text(message.message, message.message_id)
    except FeedbackError as err:
        log.error("signed SNS message %s holds no SES event: %s", message.message_id, err)
        raise _Reply(400, str(err)) from err
    if isinstance(parsed, SetupNotice):
        log.info("SES setup message acknowledged (%s): %s", parsed.kind, parsed.text[:200])
        return {"status": "ok", "detail": parsed.kind}
    return parsed


async def _apply(writer: FeedbackWriter, event: SESEvent) -> dict[str, Any]:
    try:
        outcome = await writer.apply(event)
    except Exception as err:  # rolled back (and logged by the writer); SNS retries on 5xx
        raise _Reply(500, f"could not apply the event: {type(err).__name__}") from err
    return {
        "status": outcome.status,
        "event": outcome.event_type,
        "matched": outcome.matched,
        "actions": list(outcome.actions),
    }
