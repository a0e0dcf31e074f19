"""``/api/v1`` lists, subscribers and stats.

    GET    /api/v1/lists                         every list with its counts      (editor)
    POST   /api/v1/lists/{slug}/subscribers      {"email", "name", "confirmed"}  (editor)
    GET    /api/v1/subscribers/{email}           everything held (GDPR access)   (ops)
    DELETE /api/v1/subscribers/{email}           erase (GDPR)                    (ops)
    GET    /api/v1/stats?days=&list=&campaign=   = `mailer stats --json`         (ops)

Adding a subscriber is what `mailer subscribers add` does (``store.subscribe``, an operator
vouching or not for consent; on a double opt-in list a pending reader's confirmation mail is
claimed by ``system_mail.claim_confirmation``, within the address's daily share) and is
sent after the answer (:func:`mailer.web.confirm_mail.send_due`); like the subscribe form,
the per-client limit (MAILER_SUBSCRIBE_IP_LIMIT) answers 429.
"""

from __future__ import annotations

import math
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from sqlalchemy.exc import IntegrityError
from starlette.background import BackgroundTask
from starlette.responses import Response

from mailer.access.tokens import Role
from mailer.feedback import erasure
from mailer.ops import stats
from mailer.sending import system_mail
from mailer.sending.system_mail import Due
from mailer.web.api.common import ERRORS, answer, answer_json
from mailer.web.api.route import BEARER, ApiError, ApiRoute, needs, principal
from mailer.web.api.schemas import (
    MAX_ID,
    SLUG,
    AnyJson,
    Erased,
    ListCounts,
    ListOut,
    ListsOut,
    SubscriberAdded,
    SubscriberIn,
)
from mailer.web.common import actor, client_network
from mailer.web.confirm_mail import send_due
from mailer.web.state import WebState, web_state
from subscribers import store
from subscribers.addresses import check_reader_name, normalize_email
from subscribers.store import Actor, SubscribeResult

router = APIRouter(prefix="/api/v1", route_class=ApiRoute, dependencies=[Depends(BEARER)])

Email = Annotated[str, Path(min_length=1, max_length=320, description="the address")]
Slug = Annotated[str, Path(pattern=SLUG, description="the list's slug")]


@router.get(
    "/lists",
    response_model=ListsOut,
    responses=ERRORS,
    openapi_extra=needs(Role.EDITOR),
    tags=["lists"],
    summary="Every list with its subscription counts",
)
def get_lists(request: Request) -> Response:
    with web_state(request).sessions() as session:
        found = store.list_counts(session)
    return answer(
        ListsOut(
            lists=[
                ListOut(
                    slug=m.slug,
                    name=m.name,
                    double_opt_in=m.double_opt_in,
                    counts=ListCounts(
                        active=c.get("active", 0),
                        pending=c.get("pending", 0),
                        unsubscribed=c.get("unsubscribed", 0),
                    ),
                )
                for m, c in found
            ]
        )
    )


@router.post(
    "/lists/{slug}/subscribers",
    status_code=201,
    response_model=SubscriberAdded,
    responses=ERRORS,
    openapi_extra=needs(Role.EDITOR),
    tags=["lists"],
    summary="Add a subscriber (double opt-in honoured)",
)
def add_subscriber(request: Request, slug: Slug, body: SubscriberIn) -> Response:
    state = web_state(request)
    retry = state.ip_limiter.hit(client_network(request), state.timestamp())
    if retry is not None:
        raise ApiError(
            429,
            "too many subscribers added from here; wait",
            headers={"Retry-After": str(math.ceil(retry))},
        )
    address = normalize_email(body.email)  # InvalidAddressError: 422
    body = body.model_copy(update={"name": check_reader_name(body.name)})  # the forms' rule
    who = actor(request, f"api:{principal(request).name}")
    try:
        result, due = _subscribe(state, slug, address, body, who)
    except IntegrityError:  # the same new address added twice at once: the row exists now
        result, due = _subscribe(state, slug, address, body, who)
    sent = "none"
    if result.needs_confirmation:
        sent = "queued" if due is not None else "limited"
    added = {
        "email": address,
        "list": slug,
        "status": result.subscription.status,
        "created": result.created,
        "confirmation_mail": sent,
    }
    response = answer(SubscriberAdded.model_validate(added), 201)
    if due is not None:  # sent after the answer, as the subscribe form's mail is
        response.background = BackgroundTask(send_due, state, due)
    return response


def _subscribe(
    state: WebState, slug: str, address: str, body: SubscriberIn, who: Actor
) -> tuple[SubscribeResult, Due | None]:
    """The subscription, and the claimed row of its confirmation mail when one is due and
    the address is within its daily share (``system_mail.claim_confirmation``, what
    `mailer subscribers add` uses), in one transaction."""
    with state.sessions.begin() as session:
        mlist = store.get_list(session, slug)
        result = store.subscribe(
            session, address, mlist, actor=who, name=body.name, confirmed=body.confirmed
        )
        due = (
            system_mail.claim_confirmation(session, result.subscription, state.now())
            if result.needs_confirmation
            else None
        )
        return result, due


@router.get(
    "/subscribers/{email}",
    response_model=AnyJson,
    responses=ERRORS,
    openapi_extra=needs(Role.OPS),
    tags=["subscribers"],
    summary="Everything held about one person (GDPR access), as `subscribers show --json`",
)
def get_subscriber(request: Request, email: Email) -> Response:
    with web_state(request).sessions() as session:
        data = store.describe_subscriber(session, email)
    return answer_json(data)


@router.delete(
    "/subscribers/{email}",
    response_model=Erased,
    responses=ERRORS,
    openapi_extra=needs(Role.OPS),
    tags=["subscribers"],
    summary="Erase a person (GDPR): a salted-hash tombstone stays",
)
def erase_subscriber(request: Request, email: Email) -> Response:
    state = web_state(request)
    address = normalize_email(email)
    with state.sessions.begin() as session:
        erasure.erase(session, address, actor=actor(request, f"api:{principal(request).name}"))
    return answer(Erased(email=address))


@router.get(
    "/stats",
    response_model=AnyJson,
    responses=ERRORS,
    openapi_extra=needs(Role.OPS),
    tags=["stats"],
    summary="Delivery and reputation figures, as `mailer stats --json`",
)
def get_stats(
    request: Request,
    days: Annotated[int, Query(ge=1, le=3650)] = 30,
    list_slug: Annotated[str | None, Query(alias="list", pattern=SLUG)] = None,
    campaign: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
) -> Response:
    state = web_state(request)
    with state.sessions() as session:
        report = stats.collect(
            session, days=days, list_slug=list_slug, campaign_id=campaign, now=state.now()
        )
    return answer_json(report.to_json())
