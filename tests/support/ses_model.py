"""The SES v2 wire contract, taken from botocore's own service model.

:class:`SesApi` loads the ``sesv2`` model once and compiles, for each operation the test
server implements, a route (method + URI template) and a validator of the request as it
arrives on the wire (REST-JSON: body members in JSON, blobs base64, URI and query-string
members in the URL). Validators are closures built once, so checking a 50-entry
SendBulkEmail costs microseconds, not a model walk.

Checked: required members, unknown members, types, string length, enums, patterns, list
and map sizes, integer ranges. A failure names the member path, like botocore's client-side
validation does, e.g. ``BulkEmailEntries[3].Destination: missing required member``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, unquote

import botocore.session

#: A validator: (value, path) -> None or InvalidRequest. Paths are "" or (parent, key) tuples.
Check = Callable[[Any, Any], None]

OPERATIONS = (
    "SendEmail",
    "SendBulkEmail",
    "GetAccount",
    "GetEmailIdentity",
    "GetConfigurationSet",
    "GetConfigurationSetEventDestinations",
    "ListSuppressedDestinations",
    "PutSuppressedDestination",
    "DeleteSuppressedDestination",
)


class InvalidRequest(Exception):
    """The request does not match the service model (answered as 400 BadRequestException)."""


@dataclass(frozen=True, slots=True)
class QueryParam:
    """A query-string member: its model name, whether it repeats, its item type."""

    member: str
    repeated: bool
    kind: str
    check: Check


@dataclass(frozen=True, slots=True)
class Route:
    """One operation: how to recognize it and how to check its input."""

    operation: str
    method: str
    pattern: re.Pattern[str]
    body: Check
    uri: Mapping[str, Check]
    query: Mapping[str, QueryParam]  # by wire name
    required_query: frozenset[str]


def _render(path: Any) -> str:
    """A member path (nested ``(parent, key)`` tuples, built cheaply) as ``A.B[3].C``."""
    keys: list[str | int] = []
    while isinstance(path, tuple):
        path, key = path
        keys.append(key)
    out = str(path or "")
    for key in reversed(keys):
        if isinstance(key, int):
            out += f"[{key}]"
        else:
            out = f"{out}.{key}" if out else key
    return out or "input"


def _fail(path: Any, what: str) -> None:
    raise InvalidRequest(f"{_render(path)}: {what}")


class _Compiler:
    def __init__(self) -> None:
        self._done: dict[str, Check] = {}

    def compile(self, shape: Any) -> Check:
        key = shape.name
        if key in self._done:
            return self._done[key]
        slot: list[Check] = []
        self._done[key] = lambda v, p: slot[0](v, p)  # allows recursive shapes
        check = self._build(shape)
        slot.append(check)
        self._done[key] = check
        return check

    def _build(self, shape: Any) -> Check:
        kind = shape.type_name
        meta = shape.metadata
        if kind == "structure":
            members = {
                n: self.compile(s)
                for n, s in shape.members.items()
                if not s.serialization.get("location")
            }
            return _structure(members, frozenset(shape.required_members) & set(members))
        if kind == "list":
            return _list(self.compile(shape.member), meta.get("min"), meta.get("max"))
        if kind == "map":
            return _map(self.compile(shape.key), self.compile(shape.value))
        if kind == "string":
            return _string(meta.get("min"), meta.get("max"), meta.get("enum"), meta.get("pattern"))
        if kind in ("integer", "long"):
            return _integer(meta.get("min"), meta.get("max"))
        if kind in ("float", "double"):
            return _number
        if kind == "boolean":
            return _boolean
        if kind == "blob":
            return _blob
        if kind == "timestamp":
            return _timestamp
        raise ValueError(f"unsupported shape type {kind}")  # pragma: no cover


def _structure(members: Mapping[str, Check], required: frozenset[str]) -> Check:
    allowed = frozenset(members)
    needed = tuple(sorted(required))

    def check(value: Any, path: Any) -> None:
        if not isinstance(value, dict):
            _fail(path, f"expected an object, got {type(value).__name__}")
        if not value.keys() <= allowed:
            unknown = sorted(set(value) - allowed)[0]
            _fail((path, unknown), "unknown member")
        for name in needed:
            if value.get(name) is None:
                _fail((path, name), "missing required member")
        for name, item in value.items():
            if item is not None:
                members[name](item, (path, name))

    return check


def _list(member: Check, low: int | None, high: int | None) -> Check:
    def check(value: Any, path: Any) -> None:
        if not isinstance(value, list):
            _fail(path, f"expected a list, got {type(value).__name__}")
        if low is not None and len(value) < low:
            _fail(path, f"needs at least {low} item(s)")
        if high is not None and len(value) > high:
            _fail(path, f"takes at most {high} item(s)")
        for i, item in enumerate(value):
            member(item, (path, i))

    return check


def _map(key: Check, val: Check) -> Check:
    def check(value: Any, path: Any) -> None:
        if not isinstance(value, dict):
            _fail(path, f"expected a map, got {type(value).__name__}")
        for k, v in value.items():
            key(k, (path, f"<key {k!r}>"))
            val(v, (path, str(k)))

    return check


def _string(
    low: int | None, high: int | None, enum: Iterable[str] | None, pattern: str | None
) -> Check:
    allowed = frozenset(enum) if enum else None
    regex: re.Pattern[str] | None = None
    if pattern:
        try:
            regex = re.compile(pattern)
        except re.error:  # a Java-only construct: skip the pattern, keep the other checks
            regex = None

    if low is None and high is None and allowed is None and regex is None:
        return _plain_string

    def check(value: Any, path: Any) -> None:
        if not isinstance(value, str):
            _fail(path, f"expected a string, got {type(value).__name__}")
        if low is not None and len(value) < low:
            _fail(path, f"shorter than {low}")
        if high is not None and len(value) > high:
            _fail(path, f"longer than {high}")
        if allowed is not None and value not in allowed:
            _fail(path, f"{value!r} is not one of {sorted(allowed)}")
        if regex is not None and not regex.search(value):
            _fail(path, f"does not match {regex.pattern}")

    return check


def _plain_string(value: Any, path: Any) -> None:
    if not isinstance(value, str):
        _fail(path, f"expected a string, got {type(value).__name__}")


def _integer(low: int | None, high: int | None) -> Check:
    def check(value: Any, path: Any) -> None:
        if not isinstance(value, int) or isinstance(value, bool):
            _fail(path, f"expected an integer, got {type(value).__name__}")
        if low is not None and value < low:
            _fail(path, f"below {low}")
        if high is not None and value > high:
            _fail(path, f"above {high}")

    return check


def _number(value: Any, path: Any) -> None:
    if not isinstance(value, int | float) or isinstance(value, bool):
        _fail(path, f"expected a number, got {type(value).__name__}")


def _boolean(value: Any, path: Any) -> None:
    if not isinstance(value, bool):
        _fail(path, f"expected a boolean, got {type(value).__name__}")


def _blob(value: Any, path: Any) -> None:
    if not isinstance(value, str):
        _fail(path, f"expected base64 text, got {type(value).__name__}")


def _timestamp(value: Any, path: Any) -> None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return
    if isinstance(value, str):
        parse_timestamp(value, _render(path))
        return
    _fail(path, f"expected a timestamp, got {type(value).__name__}")


def parse_timestamp(text: str, path: str = "timestamp") -> datetime:
    """ISO 8601 (what botocore puts in query strings) or epoch seconds -> aware datetime."""
    try:
        if re.fullmatch(r"\d+(\.\d+)?", text):
            return datetime.fromtimestamp(float(text), UTC)
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidRequest(f"{path}: {text!r} is not a timestamp") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _uri_regex(template: str) -> re.Pattern[str]:
    path = template.split("?", 1)[0]
    out = ""
    for piece in re.split(r"(\{[^}]+\})", path):
        if piece.startswith("{"):
            name = piece[1:-1]
            greedy = name.endswith("+")
            name = name.rstrip("+")
            out += f"(?P<{name}>{'.+' if greedy else '[^/]+'})"
        else:
            out += re.escape(piece)
    return re.compile(out)


class SesApi:
    """Routes and validators for the implemented SES v2 operations (build once)."""

    def __init__(self, operations: Iterable[str] = OPERATIONS) -> None:
        model = botocore.session.get_session().get_service_model("sesv2")
        compiler = _Compiler()
        self.routes: list[Route] = []
        self._exact: dict[tuple[str, str], Route] = {}
        for name in operations:
            op = model.operation_model(name)
            shape = op.input_shape
            uri: dict[str, Check] = {}
            query: dict[str, QueryParam] = {}
            required_query: set[str] = set()
            if shape is not None:
                body = compiler.compile(shape)
                for member, sub in shape.members.items():
                    where = sub.serialization.get("location")
                    wire = sub.serialization.get("name", member)
                    if where == "uri":
                        uri[wire] = compiler.compile(sub)
                    elif where == "querystring":
                        item = getattr(sub, "member", sub) if sub.type_name == "list" else sub
                        query[wire] = QueryParam(
                            member, sub.type_name == "list", item.type_name, compiler.compile(item)
                        )
                        if member in shape.required_members:
                            required_query.add(wire)
            else:
                body = _structure({}, frozenset())
            route = Route(
                operation=name,
                method=op.http["method"],
                pattern=_uri_regex(op.http["requestUri"]),
                body=body,
                uri=uri,
                query=query,
                required_query=frozenset(required_query),
            )
            self.routes.append(route)
            if "{" not in op.http["requestUri"]:
                self._exact[(route.method, op.http["requestUri"].split("?", 1)[0])] = route

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        """The route for a request and its URI parameters (percent-decoded)."""
        exact = self._exact.get((method, path))
        if exact is not None:
            return exact, {}
        for route in self.routes:
            if route.method != method or not route.uri:
                continue
            m = route.pattern.fullmatch(path)
            if m:
                return route, {k: unquote(v) for k, v in m.groupdict().items()}
        return None

    @staticmethod
    def check(
        route: Route, body: Any, params: Mapping[str, str], query_string: str
    ) -> dict[str, Any]:
        """Validate a request; returns the query-string members, converted."""
        route.body(body, "")
        for wire, check in route.uri.items():
            if wire not in params:  # pragma: no cover - the route regex guarantees it
                _fail(wire, "missing URI parameter")
            check(params[wire], wire)
        values = parse_qs(query_string, keep_blank_values=True) if query_string else {}
        out: dict[str, Any] = {}
        for wire, raw in values.items():
            spec = route.query.get(wire)
            if spec is None:
                _fail(wire, "unknown query parameter")
                continue
            converted = [_convert_query(v, spec.kind, spec.check, wire) for v in raw]
            out[spec.member] = converted if spec.repeated else converted[-1]
        for wire in route.required_query - set(values):
            _fail(wire, "missing required query parameter")
        return out


@functools.cache
def shared_api() -> SesApi:
    """One compiled SesApi per process (loading botocore's model takes ~0.1 s)."""
    return SesApi()


def _convert_query(text: str, kind: str, check: Check, wire: str) -> Any:
    """A query-string value in the member's type (ints, ISO timestamps, booleans, text)."""
    value: Any = text
    if kind in ("integer", "long"):
        if not re.fullmatch(r"-?\d+", text):
            _fail(wire, f"{text!r} is not an integer")
        value = int(text)
    elif kind == "boolean":
        if text not in ("true", "false"):
            _fail(wire, f"{text!r} is not true or false")
        value = text == "true"
    elif kind == "timestamp":
        value = parse_timestamp(text, wire)
        return value
    check(value, wire)
    return value
