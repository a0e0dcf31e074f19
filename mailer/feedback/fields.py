"""Reading a foreign JSON object field by field: each helper returns the typed value or
raises :class:`~mailer.errors.FeedbackError` naming the path of what is wrong
(``mail.destination must be a list of strings``).

Split from :mod:`mailer.feedback.events` (the SES event parsers), which reads every field
through these; the helpers know nothing of SES.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from mailer import safejson
from mailer.errors import FeedbackError, InputError


def decode(payload: str | bytes) -> str:
    if isinstance(payload, str):
        return payload
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError as err:
        raise FeedbackError(f"SES payload is not UTF-8: {err}") from err


def load_json(text: str, what: str) -> Any:
    """The border's safe loader; its InputError (not JSON, too deep, absurd numbers) becomes
    this module's FeedbackError with the same message."""
    try:
        return safejson.loads(text, what=what)
    except InputError as err:
        raise FeedbackError(str(err)) from err


def obj(data: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    value = data.get(key)
    if value is None:
        raise FeedbackError(f"{where} has no {key!r} object")
    if not isinstance(value, Mapping):
        raise FeedbackError(f"{where}.{key} is not an object")
    return value


def objects(data: Mapping[str, Any], key: str, where: str) -> list[tuple[str, Mapping[str, Any]]]:
    value = data.get(key)
    if not isinstance(value, list) or not value:
        raise FeedbackError(f"{where}.{key} must be a non-empty list")
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, Mapping):
            raise FeedbackError(f"{where}.{key}[{i}] is not an object")
        out.append((f"{where}.{key}[{i}]", item))
    return out


def req_str(data: Mapping[str, Any], key: str, where: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        raise FeedbackError(f"{where}.{key} is missing or not a non-empty string")
    return value


def opt_str(data: Mapping[str, Any], key: str, where: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise FeedbackError(f"{where}.{key} is not a string")
    return value


def str_list(
    data: Mapping[str, Any], key: str, where: str, *, required: bool = True
) -> tuple[str, ...]:
    value = data.get(key)
    if value is None and not required:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise FeedbackError(f"{where}.{key} must be a list of strings")
    return tuple(value)


def req_time(data: Mapping[str, Any], key: str, where: str) -> datetime:
    value = opt_time(data, key, where)
    if value is None:
        raise FeedbackError(f"{where}.{key} is missing")
    return value


def opt_time(data: Mapping[str, Any], key: str, where: str) -> datetime | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or "T" not in value:
        raise FeedbackError(f"{where}.{key} is not an ISO 8601 timestamp: {value!r}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise FeedbackError(f"{where}.{key} is not an ISO 8601 timestamp: {value!r}") from None
    if parsed.tzinfo is None:
        raise FeedbackError(f"{where}.{key} has no time zone: {value!r}")
    return parsed.astimezone(UTC)


def tag_map(value: Any, where: str) -> dict[str, tuple[str, ...]]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise FeedbackError(f"{where} is not an object")
    tags: dict[str, tuple[str, ...]] = {}
    for name, values in value.items():
        if not is_str_seq(values):
            raise FeedbackError(f"{where}.{name} must be a list of strings")
        tags[str(name)] = tuple(values)
    return tags


def is_str_seq(value: Any) -> bool:
    return (
        isinstance(value, Sequence)
        and not isinstance(value, str)
        and all(isinstance(v, str) for v in value)
    )
