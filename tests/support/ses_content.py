"""What an SES request's message is made of, as the test server reads it: addresses,
the header fields of a raw message, inline templates and their data. Split from
:mod:`tests.support.ses_ops` (what each operation does), which reads messages through it.
"""

from __future__ import annotations

import binascii
import json
import re
from collections.abc import Mapping, Sequence
from email.utils import parseaddr
from typing import Any

from tests.support import handlebars
from tests.support.ses_state import ApiError

ADDRESS = re.compile(r"[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+")


def addresses(values: Sequence[str] | None) -> tuple[str, ...]:
    return tuple(values or ())


def bare_address(address: str) -> str:
    """``Name <a@b>`` -> ``a@b``, lower-cased (fast path for plain addresses)."""
    if "<" not in address and " " not in address:
        return address.lower()
    return (parseaddr(address)[1] or address).lower()


def decode_prefix(data: str) -> bytes:
    """Enough of a base64 blob to hold the header section (usually the first 4 KB)."""
    try:
        for chars in (4096, 65_536):
            head = binascii.a2b_base64(data[:chars])
            if b"\r\n\r\n" in head or b"\n\n" in head or len(data) <= chars:
                return head
        return head
    except (binascii.Error, ValueError):
        raise ApiError("BadRequestException", "Raw.Data is not valid base64.") from None


def raw_headers(raw: bytes, names: tuple[str, ...]) -> dict[str, list[str]]:
    """Selected header fields of a raw message, unfolded (cheaper than the email parser)."""
    end = raw.find(b"\r\n\r\n")
    if end < 0:
        end = raw.find(b"\n\n")
    head = (raw if end < 0 else raw[:end]).decode("utf-8", "replace")
    wanted = {n.lower() for n in names}
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in head.splitlines():
        if line[:1] in (" ", "\t"):
            if current is not None:
                current[-1] += " " + line.strip()
            continue
        name, sep, value = line.partition(":")
        key = name.strip().lower()
        if sep and key in wanted:
            current = found.setdefault(key, [])
            current.append(value.strip())
        else:
            current = None
    return found


def template_parts(tpl: Mapping[str, Any]) -> tuple[str | None, str | None, str | None]:
    if "TemplateContent" not in tpl:
        name = tpl.get("TemplateName") or tpl.get("TemplateArn") or "?"
        raise ApiError("NotFoundException", f"Template {name} does not exist.")
    inline = tpl["TemplateContent"]
    if not inline.get("Subject") or not (inline.get("Html") or inline.get("Text")):
        raise ApiError("BadRequestException", "TemplateContent needs a Subject and Html or Text.")
    return inline.get("Subject"), inline.get("Html"), inline.get("Text")


def json_object(text: str, what: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError:
        raise ApiError("BadRequestException", f"{what} is not valid JSON.") from None
    if not isinstance(data, dict):
        raise ApiError("BadRequestException", f"{what} must be a JSON object.")
    return data


def missing_variables(
    kind: str, parts: tuple[str | None, ...], data: Mapping[str, Any] | None
) -> tuple[str, ...]:
    if kind != "Template" or data is None:
        return ()
    names: set[str] = set()
    for part in parts:
        if part:
            names |= handlebars.variables(part)
    return tuple(sorted(n for n in names if n not in data))


class TemplateCache:
    """One shared copy of a template's parts and its variables: bulk calls repeat the same
    template, and 30,000 recorded entries must not hold 30,000 copies of it."""

    def __init__(self) -> None:
        self._templates: dict[
            tuple[str | None, str | None, str | None],
            tuple[tuple[str | None, str | None, str | None], frozenset[str]],
        ] = {}

    def get(
        self, subject: str | None, html: str | None, text: str | None
    ) -> tuple[tuple[str | None, str | None, str | None], frozenset[str]]:
        """The shared parts and the variable names they use (the last 16 templates kept)."""
        key = (subject, html, text)
        hit = self._templates.get(key)
        if hit is None:
            names: set[str] = set()
            for part in key:
                if part:
                    names |= handlebars.variables(part)
            hit = (key, frozenset(names))
            if len(self._templates) > 16:
                self._templates.clear()
            self._templates[key] = hit
        return hit
