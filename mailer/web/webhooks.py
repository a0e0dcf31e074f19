"""``POST /webhooks/ses``: SES events through SNS, trusted only when SNS really signed them.

    body > MAX_BODY bytes                         -> 413
    not a JSON object, too deep, huge numbers     -> 400 (mailer.safejson)
    fails SNS verification (mailer.feedback.sns)  -> 403, and nothing is written
    signing certificate not to be had now         -> 503 (fetch failed or busy; SNS retries)
    SubscriptionConfirmation (allowlisted)        -> SubscribeURL visited -> 200 (502 if not)
    UnsubscribeConfirmation, SES setup text       -> logged, 200
    Notification with an SES event                -> applied in one transaction -> 200
                                                     (a redelivery is recognised -> 200)
    a signed but unreadable SES event             -> 400 (logged; a retry would not help)
    the database is away                          -> 503, so SNS retries
    any other error while applying                -> 500, rolled back, so SNS retries

Parsing and verification run on the event loop and take no thread: a certificate that must
be fetched is awaited from the verifier's CertificateStore, whose own small pool does the
fetching with a timeout, so forged messages naming slow certificate hosts cannot occupy the
threads the reader pages run on. Only a SubscriptionConfirmation's GET runs in the thread
pool (allowlisted topics only). Applying goes to a FeedbackWriter, which commits the events
of concurrent requests together (group commit) and answers each request only after its
commit.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from fastapi import APIRouter, Request, Response
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from mailer import safejson
from mailer.config import Settings
from mailer.errors import ConfirmationError, FeedbackError, InputError, VerificationError
from mailer.feedback.events import SESEvent, SetupNotice, parse_message_text
from mailer.feedback.sns import (
    SUBSCRIPTION_CONFIRMATION,
    UNSUBSCRIBE_CONFIRMATION,
    CertificateUnavailable,
    SNSMessage,
    SNSVerifier,
    confirm_subscription,
)
from mailer.feedback.writer import FeedbackWriter
from mailer.web.unavailable import RETRY_AFTER, database_unavailable

__all__ = ["MAX_BODY", "ses_webhook_router"]

log = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024
"""SNS messages are at most 256 KiB; with JSON escaping an envelope stays far below this."""

PATH = "/webhooks/ses"


class _Reply(Exception):
    """Carries the status, message and headers of an early answer."""

    def __init__(
        self, status: int, message: str, *, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers
        self.body = {"status": "error" if status >= 400 else "ok", "detail": message}


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

    async def ses_webhook(request: Request) -> Response:
        try:
            envelope = _parse(await _read_limited(request))
            header_type = request.headers.get("x-amz-sns-message-type")
            if header_type and envelope.get("Type") != header_type:
                raise _Reply(403, "x-amz-sns-message-type does not match the message Type")
            message = await _verify(sns, envelope)
            if message.type == SUBSCRIPTION_CONFIRMATION:
                result = await run_in_threadpool(_confirm, message, confirm_get)
            elif message.type == UNSUBSCRIBE_CONFIRMATION:
                log.info("SNS unsubscribed this endpoint from %s", message.topic_arn)
                result = {"status": "ok", "detail": "unsubscribe confirmation noted"}
            else:
                prepared = _event(message)
                result = prepared if isinstance(prepared, dict) else await _apply(writer, prepared)
        except _Reply as reply:
            return _json(reply.body, reply.status, reply.headers)
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
        envelope = safejson.loads(body, what="body")
    except InputError as err:
        raise _Reply(400, str(err)) from err
    if not isinstance(envelope, dict):
        raise _Reply(400, "body is not a JSON object")
    return envelope


async def _verify(sns: SNSVerifier, envelope: dict[str, Any]) -> SNSMessage:
    try:
        return await sns.verify_async(envelope)
    except CertificateUnavailable as err:
        log.warning("SNS message not verified now: %s", err)
        raise _Reply(503, str(err), headers={"Retry-After": str(RETRY_AFTER)}) from err
    except VerificationError as err:
        log.warning("SNS message rejected: %s", err)
        raise _Reply(403, str(err)) from err


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


def _json(body: dict[str, Any], status: int, headers: Mapping[str, str] | None = None) -> Response:
    return Response(
        json.dumps(body), status_code=status, media_type="application/json", headers=headers
    )


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
        if database_unavailable(err):
            retry = {"Retry-After": str(RETRY_AFTER)}
            raise _Reply(503, "the database is unavailable", headers=retry) from err
        raise _Reply(500, f"could not apply the event: {type(err).__name__}") from err
    return {
        "status": outcome.status,
        "event": outcome.event_type,
        "matched": outcome.matched,
        "actions": list(outcome.actions),
    }
