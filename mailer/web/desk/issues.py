"""Paste or upload an issue, check it, preview it.

    GET  /desk                                the paste/upload form
    POST /desk/issues                         parse (errors: the line, the text kept in the
                                              form, 422); store by key; 303 to the check page
    GET  /desk/issues/{key}?list=SLUG         summary, warnings, previews side by side
                                              (desktop and 375 px frames, plain text), the
                                              test-send and send forms
    GET  /desk/issues/{key}/preview.html      the preview email, for the frames: sandboxed,
                                              a CSP of its own, framed by the desk only

The use case is :func:`mailer.sending.publish.render_for`, the rendering a send of the
list uses (its branding, language and greeting), filled for publish's sample reader and
summarized as :class:`~mailer.sending.publish.Checked`; the last few are kept in memory
(rendering runs MJML and premailer: once per issue and list, not per frame).
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from mailer.errors import IssueParseError
from mailer.issue.files import decode_issue_bytes
from mailer.sending import publish
from mailer.sending.campaigns import find_sent
from mailer.web.common import all_lists, list_by_slug
from mailer.web.desk import handed
from mailer.web.desk.context import NO_STORE, Desk, Signed
from mailer.web.desk.sending import send_forms
from mailer.web.forms import MAX_FIELDS, read_form
from subscribers.list_settings import describe
from subscribers.models import MailingList

#: an issue is a few dozen KB; anything near this is not an issue
MAX_ISSUE_BYTES = 512 * 1024
PREVIEW_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; "
    "font-src https: data:; form-action 'none'; frame-ancestors 'self'; base-uri 'none'; "
    "sandbox"
)
_CACHED = 16


@dataclass(frozen=True)
class Shown:
    """An issue rendered for one list as the send renders it, and filled for a sample
    reader: what the check page summarizes and the frames show."""

    checked: publish.Checked
    html: str
    text: str


class PreviewCache:
    """The last few (issue, list settings) previews. A stored issue never changes under its
    key; a list's settings may, so they are part of the key (a new accent shows at once)."""

    def __init__(self, size: int = _CACHED) -> None:
        self.size = size
        self._items: OrderedDict[tuple[str, ...], Shown] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, ...]) -> Shown | None:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
            return found

    def put(self, key: tuple[str, ...], shown: Shown) -> None:
        with self._lock:
            self._items[key] = shown
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


class IssueRoutes:
    def __init__(self, desk: Desk) -> None:
        self.desk = desk
        self.cache = PreviewCache()

    # -- paste -------------------------------------------------------------------------

    def _paste_page(
        self,
        signed: Signed,
        *,
        text: str = "",
        error: dict[str, Any] | None = None,
        status: int = 200,
    ) -> Response:
        return self.desk.page(
            "new_issue.html",
            {
                "title": "New issue",
                "active": "new",
                "text": text,
                "error": error,
                "max_kb": MAX_ISSUE_BYTES // 1024,
                "recent": handed.recent(self.desk.state.sessions),
                "csrf_token": self.desk.form_token(signed, "/desk/issues"),
            },
            signed=signed,
            status=status,
        )

    async def new_issue(self, request: Request) -> Response:
        signed = self.desk.who(request)
        if signed is None:
            return self.desk.to_sign_in(request)
        return self._paste_page(signed)

    async def submit(self, request: Request) -> Response:
        signed = self.desk.who(request)
        if signed is None:
            return self.desk.to_sign_in(request)
        pasted = await _read_issue_form(request)
        self.desk.check_form(signed, pasted.csrf_token, "/desk/issues")
        if pasted.too_big:
            return self._paste_page(
                signed,
                error={
                    "title": "That is too much for one issue",
                    "line": None,
                    "line_text": "",
                    "message": f"That issue is over {MAX_ISSUE_BYTES // 1024} KB. An issue is "
                    "a few dozen KB: is it really an issue file?",
                },
                status=413,
            )
        text = pasted.data.decode("utf-8", errors="replace")
        try:
            stored = handed.parse(decode_issue_bytes(pasted.data, source=handed.SOURCE))
        except IssueParseError as err:
            return self._paste_page(signed, text=text, error=_parse_error(err, text), status=422)
        wait = self.desk.state.handover_wait(stored.key, signed.principal.name)
        if wait is not None:
            limit = self.desk.state.settings.handover_limit
            response = self._paste_page(
                signed,
                text=text,
                error={
                    "title": "Too many new issues today",
                    "line": None,
                    "line_text": "",
                    "message": f"This token has kept {limit} new issues within a day; nothing "
                    f"was kept. The next one can be pasted in {max(1, math.ceil(wait / 60))} "
                    "min, or ask ops to raise MAILER_HANDOVER_LIMIT.",
                },
                status=429,
            )
            response.headers["Retry-After"] = str(math.ceil(wait))
            return response
        new = handed.keep(self.desk.state.sessions, stored, signed.principal.name)
        # the check page shows it as the list its front matter names, if it names one
        target = f"/desk/issues/{stored.key}"
        if not new and self._declares_another_list(stored):
            target += f"?list={stored.declared_list}"  # a slug: URL-safe characters only
        return RedirectResponse(target, status_code=303, headers=NO_STORE)

    def _declares_another_list(self, stored: handed.Stored) -> bool:
        """This paste's ``list:`` names a list here, and the text kept under its key (an
        earlier paste of the same issue: ``list:`` is not part of the key) names another:
        the check page must open as this paste's list, not the kept text's."""
        if stored.declared_list is None:
            return False
        kept = handed.load(self.desk.state.sessions, stored.key)
        if kept.declared_list == stored.declared_list:
            return False
        with self.desk.state.sessions() as s:
            return any(m.slug == stored.declared_list for m in all_lists(s))

    # -- check and preview -------------------------------------------------------------

    def shown(self, stored: handed.Stored, mlist: MailingList) -> Shown:
        """The issue checked and previewed for the list (cached)."""
        cache_key = (stored.key, *describe(mlist).values())
        found = self.cache.get(cache_key)
        if found is not None:
            return found
        settings = self.desk.state.settings
        # the list's own rendering (its branding, language, greeting), as a send makes it
        rendered = publish.render_for(settings, mlist, stored.issue)
        html, text = rendered.personalize(publish.sample_values(settings))
        found = Shown(publish.Checked(stored.issue, rendered, mlist.slug), html, text)
        self.cache.put(cache_key, found)
        return found

    def issue_context(
        self, signed: Signed, key: str, slug: str | None
    ) -> tuple[dict[str, Any], handed.Stored, MailingList]:
        """What the check page shows, for the chosen list (or the declared, or the first)."""
        stored = handed.load(self.desk.state.sessions, key)
        with self.desk.state.sessions() as s:
            lists = all_lists(s)
            if not lists:
                raise HTTPException(
                    409, "there is no list yet: create one with `mailer lists create`"
                )
            declared = {m.slug: m for m in lists}.get(stored.declared_list or "")
            mlist = list_by_slug(s, slug) if slug else declared or lists[0]
            earlier = find_sent(s, mlist, key)
            s.expunge_all()
        shown = self.shown(stored, mlist)
        context: dict[str, Any] = {
            "title": f"Check: {stored.issue.subject}",
            "active": "new",
            "stored": stored,
            "issue": stored.issue,
            "checked": shown.checked,
            "text_preview": shown.text,
            "lists": lists,
            "mlist": mlist,
            "preview_url": f"/desk/issues/{key}/preview.html?list={mlist.slug}",
            "earlier": earlier,
            # a Markdown issue's `list:` that names no list here
            "unknown_list": stored.declared_list if declared is None else None,
            **send_forms(self.desk, signed, stored, mlist),
        }
        return context, stored, mlist

    async def check_page(self, request: Request, key: str) -> Response:
        signed = self.desk.who(request)
        if signed is None:
            return self.desk.to_sign_in(request)
        context, _, _ = self.issue_context(signed, key, request.query_params.get("list"))
        return self.desk.page("issue.html", context, signed=signed)

    async def preview_html(self, request: Request, key: str) -> Response:
        signed = self.desk.who(request)
        if signed is None:
            raise HTTPException(401, "sign in to the desk first")
        stored = handed.load(self.desk.state.sessions, key)
        slug = request.query_params.get("list")
        with self.desk.state.sessions() as s:
            mlist = list_by_slug(s, slug) if slug else None
            if mlist is None:
                raise HTTPException(404)
            s.expunge(mlist)
        html = self.shown(stored, mlist).html
        return Response(
            html,
            media_type="text/html; charset=utf-8",
            headers={
                **NO_STORE,
                "Content-Security-Policy": PREVIEW_CSP,
                "X-Frame-Options": "SAMEORIGIN",
                "Cross-Origin-Resource-Policy": "same-origin",
            },
        )


@dataclass(frozen=True)
class Pasted:
    """What the paste form sent: the CSRF token, and the issue's bytes (a chosen file wins
    over the text box); ``too_big`` when they are over the limit."""

    csrf_token: str
    data: bytes
    too_big: bool


async def _read_issue_form(request: Request) -> Pasted:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "multipart/form-data":
        plain = await read_form(request)
        data = plain.get("text").encode("utf-8")
        return Pasted(plain.get("csrf_token"), data, len(data) > MAX_ISSUE_BYTES)
    form = await request.form(max_files=1, max_fields=MAX_FIELDS, max_part_size=2 * MAX_ISSUE_BYTES)
    try:
        token, text, upload = form.get("csrf_token"), form.get("text"), form.get("file")
        data = await upload.read(MAX_ISSUE_BYTES + 1) if isinstance(upload, UploadFile) else b""
        if not data:
            data = (text if isinstance(text, str) else "").encode("utf-8")
        return Pasted(token if isinstance(token, str) else "", data, len(data) > MAX_ISSUE_BYTES)
    finally:
        await form.close()


def _parse_error(err: IssueParseError, text: str) -> dict[str, Any]:
    """The message, the line number and that line's text (what the editor has to fix)."""
    line_text = ""
    if err.line is not None:
        lines = text.splitlines()
        if 1 <= err.line <= len(lines):
            line_text = lines[err.line - 1][:300]
    where = f"Line {err.line}: " if err.line is not None else ""
    return {
        "title": where + "the issue could not be read",
        "message": err.reason,
        "line": err.line,
        "line_text": line_text,
    }
