"""Reading and checking the small forms of the reader pages.

Bodies are already capped by :class:`mailer.web.security.BodyLimit`. Multipart bodies go
through Starlette's parser (files are ignored); everything else is parsed as
``application/x-www-form-urlencoded``, which is also what RFC 8058 senders use — being
lenient about a missing or odd Content-Type costs nothing here.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl

from starlette.exceptions import HTTPException
from starlette.requests import Request

from mailer.render.i18n import N_, gettext_for
from subscribers.addresses import READER_NAME_MAX, unusable_in_name

MAX_FIELDS = 100
NAME_MAX = READER_NAME_MAX
EMAIL_MAX = 320


@dataclass(frozen=True)
class Form:
    items: tuple[tuple[str, str], ...]

    def get(self, name: str, default: str = "") -> str:
        for key, value in self.items:
            if key == name:
                return value
        return default

    def getlist(self, name: str) -> list[str]:
        return [value for key, value in self.items if key == name]


async def read_form(request: Request) -> Form:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "multipart/form-data":
        form = await request.form(max_files=4, max_fields=MAX_FIELDS)
        try:
            items = tuple((k, v) for k, v in form.multi_items() if isinstance(v, str))
        finally:
            await form.close()
        return Form(items)
    body = await request.body()
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_FIELDS)
    except (UnicodeDecodeError, ValueError) as err:
        raise HTTPException(400, "the form could not be read") from err
    return Form(tuple(pairs))


class FieldError(ValueError):
    """A form field's value is not acceptable; the message is shown next to the field, in
    the page's language (:meth:`text`)."""

    def __init__(self, msgid: str, **values: object) -> None:
        super().__init__(msgid % values if values else msgid)
        self.msgid = msgid
        self.values = values

    def text(self, lang: str) -> str:
        translated = gettext_for(lang)(self.msgid)
        return translated % self.values if self.values else translated


def clean_name(raw: str) -> str | None:
    """A display name: one line, no control characters, at most 200 characters."""
    text = " ".join(raw.split())
    if not text:
        return None
    if len(text) > NAME_MAX:
        raise FieldError(N_("Please use at most %(max)s characters for your name."), max=NAME_MAX)
    if any(unusable_in_name(ch) for ch in text):
        raise FieldError(N_("Your name contains characters we cannot use."))
    return text
