"""The one JSON loader for what arrives from outside: webhook bodies, SQS messages, files.

``json.loads`` alone turns hostile but parseable input into the wrong errors: 100,000 ``[``
raise RecursionError, a 900,000-digit integer raises ValueError (Python's int
max-str-digits), and a structure just under the interpreter's recursion limit is accepted
only to blow up later in whatever walks it. Here every such input becomes an
:class:`~mailer.errors.InputError` (400 on the web, one line in the CLI), numbers are
limited to :data:`MAX_NUMBER_CHARS` characters and nesting to :data:`MAX_DEPTH` levels.
No SES event or SNS envelope comes anywhere near either limit.
"""

from __future__ import annotations

import json
from typing import Any

from mailer.errors import InputError

__all__ = ["MAX_DEPTH", "MAX_NUMBER_CHARS", "JSONSyntaxError", "loads"]

MAX_DEPTH = 64
"""Deepest nesting accepted; SES events nest about five levels."""

MAX_NUMBER_CHARS = 100
"""Longest number literal accepted (a 64-bit integer has 20 characters)."""


class JSONSyntaxError(InputError):
    """The text is not JSON at all (callers may try another format, e.g. JSON Lines)."""


def loads(data: str | bytes, *, what: str = "JSON", max_depth: int = MAX_DEPTH) -> Any:
    """Parse ``data``; InputError naming ``what`` for anything malformed or too deep."""
    try:
        value = json.loads(
            data,
            parse_int=_int,
            parse_float=_float,
            parse_constant=_no_constant,
        )
    except _TooLong as err:
        raise InputError(
            f"{what} holds a number longer than {MAX_NUMBER_CHARS} characters"
        ) from err
    except RecursionError as err:
        raise InputError(f"{what} is nested more than {max_depth} levels deep") from err
    except UnicodeDecodeError as err:
        raise JSONSyntaxError(f"{what} is not UTF-8 text: {err.reason}") from err
    except json.JSONDecodeError as err:
        raise JSONSyntaxError(f"{what} is not JSON: {err}") from err
    except ValueError as err:  # int max-str-digits and any other conversion limit
        raise InputError(f"{what} holds a value Python will not convert: {err}") from err
    if _depth_exceeds(value, max_depth):
        raise InputError(f"{what} is nested more than {max_depth} levels deep")
    return value


class _TooLong(ValueError):
    """Raised from inside the decoder for an over-long number literal."""


def _int(text: str) -> int:
    if len(text) > MAX_NUMBER_CHARS:
        raise _TooLong(text[:20])
    return int(text)


def _float(text: str) -> float:
    if len(text) > MAX_NUMBER_CHARS:
        raise _TooLong(text[:20])
    return float(text)


def _no_constant(name: str) -> Any:
    raise json.JSONDecodeError(f"{name} is not a JSON value", name, 0)


def _depth_exceeds(value: Any, limit: int) -> bool:
    """Iterative walk (no recursion to exhaust): is any container deeper than ``limit``?"""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False
