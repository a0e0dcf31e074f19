"""Settings, read once from the environment (``MAILER_*``) and passed down explicitly.

Nothing here runs at import time: call :meth:`Settings.from_env` at the edge (CLI, web app
factory, scripts) and hand the result to whatever needs it. Every variable is documented in
README.md; a test checks that the two agree.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from mailer.errors import ConfigError

T = TypeVar("T")

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def parse_duration(text: str) -> float:
    """'90', '90s', '15m', '2h', '30d' -> seconds."""
    m = _DURATION.match(text)
    if not m:
        raise ValueError(f"not a duration: {text!r} (use e.g. 90s, 15m, 2h, 30d)")
    return float(m.group(1)) * _UNITS[m.group(2)]


def _csv(text: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in text.split(",") if p.strip())


#: What links are signed with when MAILER_SECRET_KEY is unset: fine on a laptop, never for
#: links that leave it (anyone can compute every reader's links with a published key).
DEV_SECRET_KEY = "insecure-development-key"  # noqa: S105 - published on purpose, refused below
#: Production keys: at least this many characters (``mailer keygen`` makes 43 random ones).
MIN_SECRET_KEY_LEN = 32
_MIN_DISTINCT_KEY_CHARS = 8
KEYGEN_HINT = "make one with `mailer keygen`"


#: MAILER_SEND_CONCURRENCY and MAILER_BATCH_SIZE when unset, by (transport, SES API): SES
#: answers in tens of ms, so many calls in flight and big batches (bulk: 50 readers a call)
#: keep it busy; an SMTP relay and the outbox keep the small dataclass defaults (16, 200).
TRANSPORT_DEFAULTS: dict[tuple[str, str], tuple[int, int]] = {
    ("ses", "single"): (64, 500),
    ("ses", "bulk"): (48, 4000),
}


def weak_key_reason(key: str) -> str | None:
    """Why ``key`` is too weak to sign links that leave this machine, or None when it is
    fine. Surrounding whitespace adds no secret (and is mostly a copying accident), and a
    key that repeats a short pattern is as easy to guess as the pattern."""
    if not key:
        return "is not set"
    if key == DEV_SECRET_KEY:
        return "is the built-in development key"
    core = key.strip()
    if not core:
        return "is only whitespace"
    if len(core) < MIN_SECRET_KEY_LEN:
        padded = "" if core == key else " without its surrounding whitespace"
        return f"is shorter than {MIN_SECRET_KEY_LEN} characters{padded}"
    if len(set(core)) < _MIN_DISTINCT_KEY_CHARS:
        return "repeats too few characters to be random"
    period = _shortest_period(core)
    if period <= len(core) // 2:
        return f"repeats a pattern of {period} characters"
    return None


def _shortest_period(text: str) -> int:
    """The smallest p with text[i] == text[i + p] throughout (the prefix function's answer)."""
    border = [0] * len(text)
    for i in range(1, len(text)):
        k = border[i - 1]
        while k and text[i] != text[k]:
            k = border[k - 1]
        border[i] = k + 1 if text[i] == text[k] else 0
    return len(text) - border[-1]


def default_database_url() -> str:
    """SQLite file in the working directory: the embedded default."""
    return f"sqlite:///{Path.cwd() / 'brief-mailer.db'}"


@dataclass(frozen=True)
class Settings:
    """All configuration. Field ``foo_bar`` is read from ``MAILER_FOO_BAR``."""

    database_url: str = field(default_factory=default_database_url)
    env: str = "development"
    secret_key: str = ""
    old_secret_keys: tuple[str, ...] = ()
    base_url: str = "http://localhost:8000"
    postal_address: str = ""
    # a folder with email/ and/or web/ whose files replace the shipped ones (mailer.templates)
    template_dir: str = ""
    # reader web (mailer serve)
    confirm_ttl: float = 7 * 86400.0
    preferences_ttl: float = 30 * 86400.0
    subscribe_ip_limit: int = 20
    subscribe_address_limit: int = 3
    subscribe_window: float = 3600.0
    max_body_bytes: int = 1024 * 1024
    rate_limit_storage: str = "memory://"
    header_timeout: float = 10.0
    max_connections: int = 1000
    db_timeout: float = 5.0
    # new issue texts one API token may hand over per day (POST /api/v1/issues and the desk's
    # paste together; a text kept already is free); 0: no limit
    handover_limit: int = 100
    db_idle_timeout: float = 600.0  # PostgreSQL idle_in_transaction_session_timeout; 0: none
    # sending
    transport: str = "outbox"
    outbox_dir: Path = field(default_factory=lambda: Path.cwd() / "outbox")
    smtp_url: str = "smtp://127.0.0.1:25"
    ses_endpoint_url: str = ""
    ses_region: str = ""
    ses_configuration_set: str = ""
    ses_api: str = "single"
    send_rate: float = 0.0
    send_concurrency: int = 16
    batch_size: int = 200
    lease_seconds: float = 300.0
    # feedback
    sns_topic_arns: tuple[str, ...] = ()
    sns_cert_dir: str = ""
    sns_max_age: float = 3600.0
    soft_bounce_limit: int = 3
    soft_bounce_window: float = 30 * 86400.0
    # ops
    admin_token: str = ""
    guard_min_sample: int = 200
    guard_bounce_rate: float = 0.04
    guard_complaint_rate: float = 0.0008
    # click and open tracking (lists that ask for it: `mailer lists set SLUG --track`)
    track_min_delay: float = 10.0  # a click sooner than this after sending is a machine's
    track_burst_window: float = 2.0  # clicks on track_burst_links links within this: machine
    track_burst_links: int = 3
    # webhooks out (mailer worker delivers them)
    webhook_timeout: float = 10.0
    webhook_retry_base: float = 10.0
    webhook_max_attempts: int = 12
    webhook_keep: float = 30 * 86400.0

    @property
    def production(self) -> bool:
        return self.env == "production"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from ``MAILER_*`` variables; bad values raise ConfigError naming them."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            name = "MAILER_" + f.name.upper()
            if name not in env:
                continue
            raw = env[name]
            try:
                values[f.name] = _converter(f.name)(raw)
            except ValueError as err:
                raise ConfigError(f"{name}: {err}") from err
        values.update(overrides)
        transport = (values.get("transport", "outbox"), values.get("ses_api", "single"))
        for name, default in zip(
            ("send_concurrency", "batch_size"), TRANSPORT_DEFAULTS.get(transport, ()), strict=False
        ):
            values.setdefault(name, default)  # unset: what suits the transport
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Reject combinations that cannot work, with the variable's name in the message."""
        if self.env not in {"development", "production", "test"}:
            raise ConfigError("MAILER_ENV: must be development, production or test")
        if self.transport not in {"outbox", "smtp", "ses"}:
            raise ConfigError(
                f"MAILER_TRANSPORT: unknown transport {self.transport!r} (outbox, smtp or ses)"
            )
        if self.ses_api not in {"single", "bulk"}:
            raise ConfigError("MAILER_SES_API: must be single or bulk")
        if not re.match(r"^https?://[^/\s]+", self.base_url):
            raise ConfigError(f"MAILER_BASE_URL: not an http(s) origin: {self.base_url!r}")
        if self.send_rate < 0:
            raise ConfigError("MAILER_SEND_RATE: must be >= 0 (0 means: no local limit)")
        if self.send_concurrency < 1 or self.batch_size < 1:
            raise ConfigError("MAILER_SEND_CONCURRENCY and MAILER_BATCH_SIZE must be >= 1")
        if self.confirm_ttl <= 0 or self.subscribe_window <= 0:
            raise ConfigError("MAILER_CONFIRM_TTL and MAILER_SUBSCRIBE_WINDOW must be > 0")
        if self.subscribe_ip_limit < 0 or self.subscribe_address_limit < 0:
            raise ConfigError(
                "MAILER_SUBSCRIBE_IP_LIMIT and MAILER_SUBSCRIBE_ADDRESS_LIMIT must be >= 0 "
                "(0 means: no limit)"
            )
        if self.max_body_bytes < 1024:
            raise ConfigError("MAILER_MAX_BODY_BYTES must be >= 1024")
        if self.header_timeout <= 0:
            raise ConfigError("MAILER_HEADER_TIMEOUT must be > 0")
        if self.max_connections < 1:
            raise ConfigError("MAILER_MAX_CONNECTIONS must be >= 1")
        if self.db_timeout <= 0:
            raise ConfigError("MAILER_DB_TIMEOUT must be > 0")
        if self.handover_limit < 0:
            raise ConfigError("MAILER_HANDOVER_LIMIT must be >= 0 (0: no limit)")
        if self.db_idle_timeout < 0:
            raise ConfigError("MAILER_DB_IDLE_TIMEOUT must be >= 0 (0: sessions are never ended)")
        if self.preferences_ttl <= 0:
            raise ConfigError("MAILER_PREFERENCES_TTL must be > 0")
        if self.track_min_delay < 0 or self.track_burst_window < 0:
            raise ConfigError("MAILER_TRACK_MIN_DELAY and MAILER_TRACK_BURST_WINDOW must be >= 0")
        if self.track_burst_links < 2:
            raise ConfigError("MAILER_TRACK_BURST_LINKS must be >= 2")
        if self.webhook_timeout <= 0 or self.webhook_retry_base < 0:
            raise ConfigError(
                "MAILER_WEBHOOK_TIMEOUT must be > 0 and MAILER_WEBHOOK_RETRY_BASE >= 0"
            )
        if self.webhook_max_attempts < 1 or self.webhook_keep <= 0:
            raise ConfigError("MAILER_WEBHOOK_MAX_ATTEMPTS must be >= 1, MAILER_WEBHOOK_KEEP > 0")
        if self.production:
            self._check_production_keys()

    def _check_production_keys(self) -> None:
        """A weak key lets anyone compute (or brute-force) every reader's links."""
        if self.secret_key:
            reason = weak_key_reason(self.secret_key)
            if reason is not None:
                raise ConfigError(
                    f"MAILER_SECRET_KEY {reason}: production refuses a weak key ({KEYGEN_HINT})"
                )
        if self._weak_old_key():
            raise ConfigError(
                "MAILER_OLD_SECRET_KEYS holds a weak key: links signed with it can be "
                "forged, so production refuses it (drop it)"
            )

    def _weak_old_key(self) -> bool:
        return any(weak_key_reason(old) is not None for old in self.old_secret_keys)

    def require_real_key(self, doing: str) -> None:
        """ConfigError unless every signing key is strong (:func:`weak_key_reason`), in any
        ``MAILER_ENV``: a link signed with no key of our own, the published development key,
        or a short or patterned one can be computed by anyone once it leaves this machine.
        ``doing`` says what was refused ("send through smtp")."""
        reason = weak_key_reason(self.secret_key)
        if reason is not None:
            raise ConfigError(
                f"MAILER_SECRET_KEY {reason}: refusing to {doing}, where anyone could forge "
                f"readers' links; set it to a random key ({KEYGEN_HINT})"
            )
        if self._weak_old_key():
            raise ConfigError(
                f"MAILER_OLD_SECRET_KEYS holds a weak key: refusing to {doing}, where links "
                "signed with it could be forged (drop it)"
            )

    def require_secret_key(self) -> str:
        """The signing key; in production a missing key is a hard error."""
        if self.secret_key:
            return self.secret_key
        if self.production:
            raise ConfigError(
                "MAILER_SECRET_KEY is not set: production mode refuses to sign links without it"
                f" ({KEYGEN_HINT})"
            )
        return DEV_SECRET_KEY

    @property
    def public_base(self) -> str:
        return self.base_url.rstrip("/")


def _converter(name: str) -> Callable[[str], Any]:
    kinds: dict[str, Callable[[str], Any]] = {
        "old_secret_keys": _csv,
        "sns_topic_arns": _csv,
        "outbox_dir": Path,
        "send_rate": float,
        "send_concurrency": int,
        "batch_size": int,
        "lease_seconds": parse_duration,
        "sns_max_age": parse_duration,
        "soft_bounce_limit": int,
        "soft_bounce_window": parse_duration,
        "guard_min_sample": int,
        "guard_bounce_rate": float,
        "guard_complaint_rate": float,
        "webhook_timeout": parse_duration,
        "webhook_retry_base": parse_duration,
        "webhook_max_attempts": int,
        "webhook_keep": parse_duration,
        "confirm_ttl": parse_duration,
        "preferences_ttl": parse_duration,
        "subscribe_ip_limit": int,
        "handover_limit": int,
        "subscribe_address_limit": int,
        "subscribe_window": parse_duration,
        "max_body_bytes": int,
        "header_timeout": parse_duration,
        "max_connections": int,
        "db_timeout": parse_duration,
        "db_idle_timeout": parse_duration,
        "track_min_delay": parse_duration,
        "track_burst_window": parse_duration,
        "track_burst_links": int,
    }
    return kinds.get(name, str)


def env_names() -> list[str]:
    """Every MAILER_* variable Settings reads (README must document each)."""
    return ["MAILER_" + f.name.upper() for f in fields(Settings)]
