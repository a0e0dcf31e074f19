"""State of the SES test server: switches, recorded messages, counters.

See :mod:`tests.support.ses_server` for what the switches do.
"""

from __future__ import annotations

import binascii
import dataclasses
import itertools
import random
import re
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tests.support import handlebars

_ERROR_STATUS = {
    "BadRequestException": 400,
    "MessageRejected": 400,
    "AccountSuspendedException": 400,
    "SendingPausedException": 400,
    "MailFromDomainNotVerifiedException": 400,
    "LimitExceededException": 400,
    "InvalidNextTokenException": 400,
    "NotFoundException": 404,
    "TooManyRequestsException": 429,
    "UnrecognizedClientException": 403,
    "AccessDeniedException": 403,
    "InternalFailure": 500,
    "ServiceUnavailable": 503,
}
SEND_OPERATIONS = frozenset({"SendEmail", "SendBulkEmail"})


class ApiError(Exception):
    """An SES error answer: code (x-amzn-ErrorType), message, HTTP status."""

    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status or _ERROR_STATUS.get(code, 400)


@dataclass(frozen=True)
class ServerConfig:
    """The switches; replace atomically through :meth:`SesServer.configure`."""

    latency: float = 0.0
    spike_probability: float = 0.0
    spike_latency: float = 0.0
    throttle_probability: float = 0.0
    error_probability: float = 0.0
    error_after_accept_probability: float = 0.0
    reject_addresses: frozenset[str] = frozenset()
    reject_pattern: str = ""
    account_suspended: bool = False
    sending_paused: bool = False
    mail_from_unverified: bool = False
    max_send_rate: float = 10_000.0
    max_24h: float = 50_000_000.0
    sent_last_24h_offset: float = 0.0
    enforce_rate: bool = False
    enforce_quota: bool = True
    identities: Mapping[str, Mapping[str, Any]] | None = None
    configuration_sets: Mapping[str, Sequence[Mapping[str, Any]]] | None = None
    access_keys: frozenset[str] | None = None
    seed: int | None = None
    #: Keep each raw message's bytes (False: record everything else only; for big runs,
    #: where 30,000 kept messages would cost ~1 GB).
    keep_raw: bool = True
    #: In-process only: a predicate on the recipient address (not in the JSON form).
    reject: Callable[[str], bool] | None = field(default=None, compare=False)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name == "reject":
                continue
            value = getattr(self, f.name)
            if isinstance(value, frozenset):
                value = sorted(value)
            out[f.name] = value
        return out

    @classmethod
    def fields_from_json(cls, data: Mapping[str, Any]) -> dict[str, Any]:
        """Validate and convert JSON switches (unknown names are an error)."""
        known = {f.name for f in dataclasses.fields(cls)} - {"reject"}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown switch(es): {', '.join(sorted(unknown))}")
        out = dict(data)
        for name in ("reject_addresses", "access_keys"):
            if name in out and out[name] is not None:
                out[name] = frozenset(
                    str(a).lower() if name != "access_keys" else str(a) for a in out[name]
                )
        if out.get("reject_pattern"):
            re.compile(out["reject_pattern"])
        return out


@dataclass(frozen=True, slots=True)
class SentMessage:
    """One message the server accepted (one recipient set; a bulk entry is one message)."""

    seq: int
    message_id: str
    operation: str
    kind: str  # "raw" | "simple" | "template"
    from_address: str | None
    to: tuple[str, ...]
    cc: tuple[str, ...] = ()
    bcc: tuple[str, ...] = ()
    #: The raw message as it came on the wire (base64); see :attr:`raw`.
    raw_base64: str | None = None
    subject: str | None = None
    html: str | None = None
    text: str | None = None
    template_data: Mapping[str, Any] | None = None
    headers: tuple[tuple[str, str], ...] = ()
    tags: Mapping[str, str] = field(default_factory=dict)
    configuration_set: str | None = None
    time: float = 0.0
    suppressed: bool = False
    missing_variables: tuple[str, ...] = ()

    @property
    def raw(self) -> bytes | None:
        """The raw MIME message of a SendEmail Raw call (decoded on access, not on receipt)."""
        return None if self.raw_base64 is None else binascii.a2b_base64(self.raw_base64)

    @property
    def recipients(self) -> tuple[str, ...]:
        return self.to + self.cc + self.bcc

    def rendered(self) -> tuple[str | None, str | None, str | None]:
        """(subject, html, text) as SES would send them (templates filled in)."""
        if self.kind != "template":
            return self.subject, self.html, self.text
        data = self.template_data or {}
        return tuple(  # type: ignore[return-value]
            None if part is None else handlebars.render(part, data)
            for part in (self.subject, self.html, self.text)
        )

    def to_json(self, *, raw: bool = False, render: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "seq": self.seq,
            "message_id": self.message_id,
            "operation": self.operation,
            "kind": self.kind,
            "from": self.from_address,
            "to": list(self.to),
            "cc": list(self.cc),
            "bcc": list(self.bcc),
            "headers": [list(h) for h in self.headers],
            "tags": dict(self.tags),
            "configuration_set": self.configuration_set,
            "time": self.time,
            "suppressed": self.suppressed,
            "missing_variables": list(self.missing_variables),
            "template_data": self.template_data,
        }
        if raw and self.raw_base64 is not None:
            out["raw"] = self.raw_base64
        if render:
            out["subject"], out["html"], out["text"] = self.rendered()
        return out


@dataclass
class QueuedFailure:
    """One injected error: for ``operation`` (None: any), after ``after`` more calls pass."""

    operation: str | None
    error: ApiError
    after: int = 0


class ServerState:
    """Everything the handlers share; guarded by one lock, config swapped atomically."""

    def __init__(self, config: ServerConfig) -> None:
        self.lock = threading.Lock()
        self.config = config
        self.rng = random.Random(config.seed)
        self.messages: list[SentMessage] = []
        self.calls: Counter[tuple[str, str]] = Counter()
        self.sent_times: deque[float] = deque()
        self.suppressed: dict[str, tuple[str, str, float]] = {}
        self.fail_queue: list[QueuedFailure] = []
        self.seq = itertools.count(1)
        self.id_prefix = uuid.uuid4().hex[:12]
        self.tokens = config.max_send_rate
        self.token_time = time.monotonic()

    def new_id(self, seq: int) -> str:
        return f"{self.id_prefix}{seq:012x}-{self.rng.getrandbits(128):032x}-000000"

    def sent_last_24h(self, now: float) -> float:
        with self.lock:
            horizon = now - 86_400
            while self.sent_times and self.sent_times[0] < horizon:
                self.sent_times.popleft()
            return len(self.sent_times) + self.config.sent_last_24h_offset

    def take_rate_token(self, cfg: ServerConfig, count: int) -> bool:
        with self.lock:
            now = time.monotonic()
            self.tokens = min(
                cfg.max_send_rate, self.tokens + (now - self.token_time) * cfg.max_send_rate
            )
            self.token_time = now
            if self.tokens < count:
                return False
            self.tokens -= count
            return True

    def pop_failure(self, operation: str) -> ApiError | None:
        """The queued failure for this call, if any (the first matching entry decides)."""
        if not self.fail_queue:
            return None
        with self.lock:
            for i, entry in enumerate(self.fail_queue):
                if entry.operation is None or entry.operation == operation:
                    if entry.after > 0:
                        entry.after -= 1
                        return None
                    del self.fail_queue[i]
                    return entry.error
        return None
