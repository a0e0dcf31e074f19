"""``/api/v1/issues``: hand an issue file over, read it back, preview it.

    POST /api/v1/issues                      text/plain or text/markdown body: the file
        201 {"key", "subject", "items", "warnings", "preview": {"html", "text", "eml"}}
        200 the same when that issue was handed over before; 422 {"error", "line"};
        429 when the token handed over MAILER_HANDOVER_LIMIT new issues within a day
    GET  /api/v1/issues/{key}                the same answer
    GET  /api/v1/issues/{key}/preview.html   the email for a sample reader (text/html)
    GET  /api/v1/issues/{key}/preview.txt    its plain-text part
    GET  /api/v1/issues/{key}/preview.eml    the whole message (message/rfc822)

Use cases: :func:`mailer.sending.publish.check` and :func:`~mailer.sending.publish.preview`
(what ``mailer issue check`` and ``mailer issue render`` call).
"""

from __future__ import annotations

import math
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from mailer.access.handover import keep_issue
from mailer.access.tokens import Role
from mailer.issue.files import decode_issue_bytes, parse_issue_text
from mailer.sending import publish
from mailer.web.api.common import ERRORS, answer, handed_issue, newsletter_of
from mailer.web.api.route import BEARER, ApiError, ApiRoute, needs, principal
from mailer.web.api.schemas import ISSUE_KEY, IssueOut, PreviewLinks
from mailer.web.security import ARCHIVE_CSP
from mailer.web.state import WebState, web_state

router = APIRouter(
    prefix="/api/v1/issues", route_class=ApiRoute, dependencies=[Depends(BEARER)], tags=["issues"]
)

Key = Annotated[str, Path(pattern=ISSUE_KEY, description="the issue's key (64 hex digits)")]
ACCEPTED = {"text/plain": None, "text/markdown": "markdown", "text/x-markdown": "markdown"}
_FILE_BODY = {
    "requestBody": {
        "required": True,
        "description": "the issue file (brief text, or Markdown with front matter), UTF-8",
        "content": {
            "text/plain": {"schema": {"type": "string"}},
            "text/markdown": {"schema": {"type": "string"}},
        },
    }
}


def _links(state: WebState, key: str) -> PreviewLinks:
    base = f"{state.settings.public_base}/api/v1/issues/{key}/preview"
    return PreviewLinks(html=base + ".html", text=base + ".txt", eml=base + ".eml")


def _described(state: WebState, text: str, fmt: str | None = None) -> IssueOut:
    """Parse (IssueParseError: 422 with the line) and check the issue, as `issue check`."""
    issue = parse_issue_text(text, fmt=fmt)
    with state.sessions() as session:
        newsletter, slug = newsletter_of(session, text)
    checked = publish.check(state.settings, issue, newsletter=newsletter, list_slug=slug)
    return IssueOut.model_validate(
        {
            "key": checked.key,
            "subject": issue.subject,
            "items": len(issue.items),
            "warnings": list(checked.warnings),
            "preview": _links(state, checked.key),
            "list": slug,
        }
    )


@router.post(
    "",
    status_code=201,
    response_model=IssueOut,
    responses={200: {"model": IssueOut, "description": "handed over before"}, **ERRORS},
    openapi_extra={**needs(Role.EDITOR), **_FILE_BODY},
    summary="Hand an issue file over",
)
async def post_issue(request: Request) -> Response:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in ACCEPTED:
        raise ApiError(415, "send the issue file as text/plain or text/markdown (UTF-8)")
    data = await request.body()
    who = principal(request).name
    return await run_in_threadpool(_post_issue, web_state(request), data, ACCEPTED[media], who)


def _post_issue(state: WebState, data: bytes, fmt: str | None, who: str) -> Response:
    text = decode_issue_bytes(data)
    described = _described(state, text, fmt)
    wait = state.handover_wait(described.key, who)
    if wait is not None:
        raise ApiError(
            429,
            f"this token has handed over {state.settings.handover_limit} new issues within "
            "a day (MAILER_HANDOVER_LIMIT); nothing was kept, try again later",
            headers={"Retry-After": str(math.ceil(wait))},
        )
    new = keep_issue(state.sessions, described.key, text, by=who)
    return answer(described, 201 if new else 200)


@router.get(
    "/{key}",
    response_model=IssueOut,
    responses=ERRORS,
    openapi_extra=needs(Role.EDITOR),
    summary="An issue handed over before",
)
def get_issue(request: Request, key: Key) -> Response:
    state = web_state(request)
    with state.sessions() as session:
        _issue, text = handed_issue(session, key)
    return answer(_described(state, text))


def _preview(request: Request, key: str) -> publish.Preview:
    state = web_state(request)
    with state.sessions() as session:
        issue, text = handed_issue(session, key)
        newsletter, slug = newsletter_of(session, text)
    return publish.preview(state.settings, issue, newsletter=newsletter, list_slug=slug)


def _doc(media: str) -> dict[int | str, dict[str, object]]:
    return {200: {"content": {media: {"schema": {"type": "string"}}}}, **ERRORS}


@router.get(
    "/{key}/preview.html",
    response_class=Response,
    responses=_doc("text/html"),
    openapi_extra=needs(Role.EDITOR),
    summary="The email as a sample reader sees it",
)
def preview_html(request: Request, key: Key) -> Response:
    return Response(
        _preview(request, key).html,
        media_type="text/html; charset=utf-8",
        headers={"Content-Security-Policy": ARCHIVE_CSP, "Cache-Control": "no-store"},
    )


@router.get(
    "/{key}/preview.txt",
    response_class=Response,
    responses=_doc("text/plain"),
    openapi_extra=needs(Role.EDITOR),
    summary="The email's plain-text part",
)
def preview_txt(request: Request, key: Key) -> Response:
    return Response(
        _preview(request, key).text,
        media_type="text/plain; charset=utf-8",
        headers={"Cache-Control": "no-store"},
    )


@router.get(
    "/{key}/preview.eml",
    response_class=Response,
    responses=_doc("message/rfc822"),
    openapi_extra=needs(Role.EDITOR),
    summary="The whole message, as a mail program would open it",
)
def preview_eml(request: Request, key: Key) -> Response:
    return Response(
        _preview(request, key).eml,
        media_type="message/rfc822",
        headers={
            "Content-Disposition": f'attachment; filename="{key[:12]}.eml"',
            "Cache-Control": "no-store",
        },
    )
