"""``/api/v1/campaigns``: send a handed-over issue to a list, follow it, steer it.

    POST /api/v1/campaigns      {"issue", "list", "at", "expires_after", "test_to",
                                 "dry_run", "force", "subject", "at_local"}
        201 {"id", "status", "recipients"}   the campaign, its readers queued; a running
                                             `mailer worker` sends it (never this request)
        200 dry run: the count, nothing stored; test send: per-address results
        409 already sent or scheduled, naming the campaign
    GET  /api/v1/campaigns?status=&limit=   GET /api/v1/campaigns/{id}
    POST /api/v1/campaigns/{id}/pause | /resume | /cancel | /retry-failed

``Idempotency-Key`` on the POST: the first answer is kept in the transaction that created
the campaign (:mod:`mailer.access.idempotency`); a retry gets it back, and two retries at
once cannot make two campaigns (the unique key and the one-live-campaign index decide).
Use cases: :mod:`mailer.sending.publish`; the view: :mod:`mailer.ops.campaign_view`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Header, Path, Query, Request
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from starlette.responses import Response

from mailer.access import idempotency
from mailer.access.idempotency import Answer
from mailer.access.tokens import Principal, Role, still_valid
from mailer.errors import ConflictError, InputError
from mailer.ops.campaign_view import campaign_view, campaign_views
from mailer.render.compiler import RenderedIssue
from mailer.render.subject import clean_subject
from mailer.sending import campaigns as camp
from mailer.sending import publish
from mailer.sending.schedule import Schedule, parse_at_local
from mailer.web.api.common import ERRORS, answer, handed_issue
from mailer.web.api.route import (
    BEARER,
    CHALLENGE,
    ApiError,
    ApiRoute,
    error_json,
    in_api_terms,
    needs,
    principal,
)
from mailer.web.api.schemas import (
    MAX_ID,
    CampaignCreated,
    CampaignIn,
    CampaignOut,
    CampaignsOut,
    DryRunOut,
    PauseIn,
    ResumeIn,
    StateChangeOut,
    TestOut,
    TestResult,
)
from mailer.web.ratelimit import TEST_SENDS_LIMIT
from mailer.web.state import WebState, web_state
from subscribers import store
from subscribers.addresses import normalize_email
from subscribers.models import MailingList

#: a send whose token was revoked between the door and the write
REVOKED_MEANWHILE = "the token was revoked while this request ran; nothing was done"

router = APIRouter(
    prefix="/api/v1/campaigns",
    route_class=ApiRoute,
    dependencies=[Depends(BEARER)],
    tags=["campaigns"],
)

CampaignId = Annotated[int, Path(ge=1, le=MAX_ID, description="the campaign's id")]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        description="a retried POST with the same key gets the first answer back",
    ),
]
Status = Literal["scheduled", "sending", "paused", "done", "cancelled", "expired"]
REPLAYED = "Idempotent-Replayed"
Endpoint = Callable[..., Any]


@router.post(
    "",
    status_code=201,
    response_model=CampaignCreated,
    responses={
        200: {"model": DryRunOut | TestOut, "description": "a dry run or a test send"},
        **ERRORS,
    },
    openapi_extra=needs(Role.EDITOR),
    summary="Send (or schedule, dry-run, test) a handed-over issue to a list",
)
def post_campaign(
    request: Request, body: CampaignIn, idempotency_key: IdempotencyKey = None
) -> Response:
    state = web_state(request)
    if body.dry_run and body.test_to:
        raise InputError("dry_run and test_to exclude each other: choose one")
    caller = principal(request)
    who = caller.name
    key = idempotency.check_key(idempotency_key) if idempotency_key is not None else None
    # a request without a subject or at_local prints as it did before those fields existed
    unset = {name for name in ("subject", "at_local") if getattr(body, name) is None} or None
    request_print = idempotency.fingerprint(
        "POST", "/api/v1/campaigns", body.model_dump(by_alias=True, exclude=unset)
    )
    if key is not None:
        with state.sessions() as session:
            earlier = _replay(session, who, key, request_print)
        if earlier is not None:
            return earlier
    # the CLI's --at-local rule (mailer.sending.schedule), its refusal naming this field
    at_local = parse_at_local(body.at_local, "at_local") if body.at_local is not None else None
    schedule = Schedule.parse(
        body.at, body.expires_after, force=body.force, now=state.now(), at_local=at_local
    )
    # the CLI's --subject rule (mailer.render.subject), checked before anything renders
    subject = clean_subject(body.subject, what="subject") if body.subject is not None else None
    with state.sessions() as session:
        issue, _text = handed_issue(session, body.issue)
        mlist = store.get_list(session, body.list_slug)
    rendered = publish.render_for(state.settings, mlist, issue, subject=subject)
    if body.dry_run:
        counted = publish.dry_run(state.sessions, mlist, rendered)
        return answer(
            DryRunOut.model_validate(
                {
                    "list": counted.list_slug,
                    "recipients": counted.recipients,
                    "subject": counted.subject,
                    "html_bytes": counted.html_bytes,
                    "text_bytes": counted.text_bytes,
                }
            )
        )
    if body.test_to:
        return _test_send(state, caller, mlist, rendered, body.test_to)

    def keep(session: Session, created: publish.Created) -> None:
        if not still_valid(session, caller):  # revoked while the issue rendered
            raise ApiError(401, REVOKED_MEANWHILE, headers={"WWW-Authenticate": CHALLENGE})
        if key is not None:
            first = Answer(201, _created(created), request_print)
            idempotency.record_answer(session, who, key, first, now=state.now())

    try:
        created = publish.create(state.sessions, mlist, issue, rendered, schedule, record=keep)
    except (ConflictError, IntegrityError) as err:
        return _lost_race(state, who, key, request_print, mlist, body.issue, err)
    return answer(CampaignCreated.model_validate(_created(created)), 201)


def _created(created: publish.Created) -> dict[str, object]:
    return {"id": created.campaign_id, "status": "scheduled", "recipients": created.enqueued}


def _replay(session: Session, who: str, key: str, request_print: str) -> Response | None:
    """The kept answer for this key, or None; the key with another request: 422."""
    earlier = idempotency.find_answer(session, who, key)
    if earlier is None:
        return None
    if earlier.fingerprint != request_print:
        return error_json(422, "this Idempotency-Key was used with another request; use a new key")
    return answer(
        CampaignCreated.model_validate(earlier.body), earlier.status, **{REPLAYED: "true"}
    )


def _lost_race(
    state: WebState,
    who: str,
    key: str | None,
    request_print: str,
    mlist: MailingList,
    issue_key: str,
    err: Exception,
) -> Response:
    """A retry that raced the first request reads its answer; otherwise 409 naming the
    campaign that holds the issue."""
    with state.sessions() as session:
        if key is not None:
            earlier = _replay(session, who, key, request_print)
            if earlier is not None:
                return earlier
        if isinstance(err, IntegrityError):
            raise err
        holder = camp.find_sent(session, mlist, issue_key)
    return error_json(409, in_api_terms(str(err)), campaign=holder.id if holder else None)


def _test_send(
    state: WebState,
    caller: Principal,
    mlist: MailingList,
    rendered: RenderedIssue,
    addresses: list[str],
) -> Response:
    valid = [normalize_email(a) for a in addresses]  # InvalidAddressError: 422, none sent
    with state.sessions() as session:  # revoked while the issue rendered: nothing goes
        if not still_valid(session, caller):
            raise ApiError(401, REVOKED_MEANWHILE, headers={"WWW-Authenticate": CHALLENGE})
    wait = state.test_send_limiter.hit(caller.name, state.timestamp())  # shared with the desk's
    if wait is not None:
        raise ApiError(
            429,
            f"this token has sent {TEST_SENDS_LIMIT} tests within the hour; try again later",
            headers={"Retry-After": str(math.ceil(wait))},
        )
    sent = publish.send_test(state.settings, state.transport(), mlist, rendered, valid)
    results = [TestResult(to=t.to, ok=t.ok, message_id=t.message_id, error=t.error) for t in sent]
    return answer(TestOut.model_validate({"list": mlist.slug, "test": results}))


@router.get(
    "",
    response_model=CampaignsOut,
    responses=ERRORS,
    openapi_extra=needs(Role.EDITOR),
    summary="The newest campaigns",
)
def list_campaigns(
    request: Request,
    status: Annotated[Status | None, Query(description="only campaigns in this state")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> Response:
    state = web_state(request)
    with state.sessions() as session:
        views = campaign_views(session, status=status, limit=limit)
    return answer(CampaignsOut(campaigns=[CampaignOut.model_validate(v.to_json()) for v in views]))


@router.get(
    "/{campaign_id}",
    response_model=CampaignOut,
    responses=ERRORS,
    openapi_extra=needs(Role.EDITOR),
    summary="One campaign: counts, rate, stats",
)
def get_campaign(request: Request, campaign_id: CampaignId) -> Response:
    state = web_state(request)
    with state.sessions() as session:
        view = campaign_view(session, campaign_id)
    return answer(CampaignOut.model_validate(view.to_json()))


def _changed(change: publish.StateChange) -> Response:
    return answer(StateChangeOut(id=change.campaign_id, status=change.status, rows=change.rows))


def _steer(path: str, summary: str) -> Callable[[Endpoint], Endpoint]:
    """The decorator of a POST that changes a campaign's state."""
    return router.post(
        path,
        response_model=StateChangeOut,
        responses=ERRORS,
        openapi_extra=needs(Role.EDITOR),
        summary=summary,
    )


@_steer("/{campaign_id}/pause", "Pause: workers stop after the batch")
def pause(
    request: Request,
    campaign_id: CampaignId,
    body: Annotated[PauseIn | None, Body()] = None,
) -> Response:
    who = principal(request).name
    reason = body.reason if body is not None and body.reason else f"paused over the API by {who}"
    return _changed(publish.pause(web_state(request).sessions, campaign_id, reason))


@_steer("/{campaign_id}/resume", "Resume: a worker sends the rest")
def resume(
    request: Request,
    campaign_id: CampaignId,
    body: Annotated[ResumeIn | None, Body()] = None,
) -> Response:
    force = body.force if body is not None else False
    ops = principal(request).may(Role.OPS)  # a guard pause is forced by ops only
    return _changed(publish.resume(web_state(request).sessions, campaign_id, force=force, ops=ops))


@_steer("/{campaign_id}/cancel", "Cancel: unsent readers are skipped")
def cancel(request: Request, campaign_id: CampaignId) -> Response:
    return _changed(publish.cancel(web_state(request).sessions, campaign_id))


@_steer("/{campaign_id}/retry-failed", "Queue the failed readers again")
def retry_failed(request: Request, campaign_id: CampaignId) -> Response:
    return _changed(publish.retry_failed(web_state(request).sessions, campaign_id))
