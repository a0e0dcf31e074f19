"""What the ``/api/v1`` handlers share: the JSON answer, the documented error answers, a
handed-over issue read back by key, and the newsletter name an issue is previewed under."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.responses import JSONResponse

from mailer.access.handover import issue_text
from mailer.issue.files import parse_issue_text
from mailer.issue.markdown import declared_list
from mailer.issue.model import Issue
from mailer.web.api.schemas import Error
from subscribers.models import MailingList

#: the masthead of a preview when the issue names no list that exists
DEFAULT_NEWSLETTER = "The China Brief"

#: every route may answer these (besides its own successes)
_COMMON = {
    400: "the body could not be read (malformed JSON)",
    401: "no token, or one that is unknown or revoked",
    403: "the token's role may not do this",
    404: "nothing at this address",
    409: "the state forbids it (already sent, suppressed, wrong campaign state)",
    413: "the body is too large",
    415: "the body's Content-Type is not accepted",
    422: "the request (or the issue file) is not valid",
    429: "too many requests",
    503: "the database or the mail service is unavailable; try again later",
}
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": Error, "description": text} for status, text in _COMMON.items()
}


def answer(model: BaseModel, status: int = 200, **headers: str) -> JSONResponse:
    """The model as JSON (field aliases: ``list``), never cached."""
    return JSONResponse(
        model.model_dump(mode="json", by_alias=True),
        status_code=status,
        headers={"Cache-Control": "no-store", **headers},
    )


def answer_json(data: dict[str, Any]) -> JSONResponse:
    """Plain JSON (answers whose shape another module owns: stats, GDPR access)."""
    return JSONResponse(data, headers={"Cache-Control": "no-store"})


def handed_issue(session: Session, key: str) -> tuple[Issue, str]:
    """The issue kept under ``key``, parsed again, and its text (NotFoundError if none)."""
    text = issue_text(session, key)
    return parse_issue_text(text), text


def newsletter_of(session: Session, text: str) -> tuple[str, str | None]:
    """The name a preview is shown under, and the list the file names: that list's name
    when it exists, else :data:`DEFAULT_NEWSLETTER`."""
    slug = declared_list(text)
    if slug is not None:
        name = session.scalar(select(MailingList.name).where(MailingList.slug == slug))
        if name is not None:
            return name, slug
    return DEFAULT_NEWSLETTER, slug
