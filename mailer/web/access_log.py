"""Log lines without secrets: signed tokens and addresses never reach the server's logs.

A reader's confirm, unsubscribe and preferences links carry a signed token in the path
(``/unsubscribe/u.3e8.1.Zq…``), and the embed form may put an address in the query string
(``/subscribe/brief?email=ann@example.com``). uvicorn's access log writes both verbatim, and
a log is read by more people, and kept longer, than the database. :class:`RedactingFilter`
rewrites every record on the way out: the request target of access-log records, and the
same patterns in any other message.

What is redacted: the segment after ``/unsubscribe/``, ``/confirm/`` and ``/preferences/``;
any segment shaped like a token (a dot and 20 or more URL-safe characters) or holding an
``@``; every query string, whole.
"""

from __future__ import annotations

import logging
import re

__all__ = ["REDACTED", "RedactingFilter", "redact_target", "redact_text"]

REDACTED = "[redacted]"

#: Path segments whose next segment is a signed token.
TOKEN_ROUTES = frozenset({"unsubscribe", "confirm", "preferences"})
_TOKENISH = re.compile(r"(?=.*\.)[A-Za-z0-9._~-]{20,}")
#: In free text: a token route's token, an address in a path, or a query string.
_TEXT_PATTERNS = (
    (re.compile(r"(/(?:unsubscribe|confirm|preferences)/)[A-Za-z0-9._~=-]+"), rf"\1{REDACTED}"),
    (re.compile(r"(/[^\s\"'?#]*)\?[^\s\"'#]*"), rf"\1?{REDACTED}"),
    (re.compile(r"[A-Za-z0-9._%+~-]+(?:@|%40)[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"), REDACTED),
)


def redact_target(target: str) -> str:
    """A request target (path and query) as it may be logged."""
    path, has_query, _query = target.partition("?")
    segments = path.split("/")
    out: list[str] = []
    after_route = False
    for segment in segments:
        secret = after_route and segment != ""
        secret = secret or "@" in segment or "%40" in segment.lower()
        secret = secret or _TOKENISH.fullmatch(segment) is not None
        out.append(REDACTED if secret else segment)
        after_route = segment.lower() in TOKEN_ROUTES
    return "/".join(out) + (f"?{REDACTED}" if has_query else "")


def redact_text(text: str) -> str:
    """Any log message: tokens after the token routes, addresses, query strings."""
    for pattern, replacement in _TEXT_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactingFilter(logging.Filter):
    """Put on a handler (or logger): rewrites each record before it is formatted."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if record.name == "uvicorn.access" and isinstance(args, tuple) and len(args) == 5:
            # uvicorn's AccessFormatter unpacks exactly these five arguments
            client, method, target, version, status = args
            record.args = (client, method, redact_target(str(target)), version, status)
            return True
        message = record.getMessage()
        cleaned = redact_text(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True
