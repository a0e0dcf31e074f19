"""The SMTP transport: hand each message to a relay over SMTP, reusing connections.

``MAILER_SMTP_URL`` forms::

    smtp://host[:port]                      plain SMTP, port 25 by default
    smtp://user:pass@host:587?starttls=true STARTTLS required before AUTH and mail
    smtps://user:pass@host[:port]           implicit TLS (port 465 by default)

Query options: ``starttls=true|false`` (default false; with true the relay must offer
STARTTLS or sending stops), ``timeout=SECONDS`` (socket timeout, default 30),
``verify=false`` (skip certificate checks: only for a local relay with a self-signed
certificate). User and password are percent-decoded, so ``p%40ss`` means ``p@ss``.

Each sending thread keeps one open connection (a small pool: one per thread), reused across
messages. A connection the relay closed (idle timeout, 421) is reopened once, transparently.
Replies map to the error tree: 4xx -> RetryableSendError; 5xx to the recipient or the data
-> RejectedError (that message fails); refused sender, failed AUTH, missing STARTTLS or a bad
certificate -> FatalSendError (the campaign pauses). The result id is the Message-ID header.
"""

from __future__ import annotations

import contextlib
import smtplib
import socket
import ssl
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.utils import parseaddr
from urllib.parse import parse_qs, unquote, urlsplit

from mailer.config import Settings
from mailer.errors import (
    ConfigError,
    FatalSendError,
    RejectedError,
    RetryableSendError,
    TransportError,
)
from mailer.transports.base import CampaignMessage, OutgoingMessage, SendQuota, SendResult

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True, slots=True)
class SmtpTarget:
    """A parsed ``MAILER_SMTP_URL``."""

    host: str
    port: int
    implicit_tls: bool = False
    starttls: bool = False
    username: str | None = None
    password: str | None = None
    timeout: float = 30.0
    verify: bool = True

    def __repr__(self) -> str:  # never print the password
        scheme = "smtps" if self.implicit_tls else "smtp"
        user = f"{self.username}:***@" if self.username else ""
        return f"SmtpTarget({scheme}://{user}{self.host}:{self.port})"


def _flag(name: str, value: str) -> bool:
    low = value.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ConfigError(f"MAILER_SMTP_URL: {name}={value!r} is not true or false")


def parse_smtp_url(url: str) -> SmtpTarget:
    """``smtp://user:pass@host:port?starttls=true`` -> SmtpTarget; ConfigError naming what is
    wrong otherwise."""
    parts = urlsplit(url.strip())
    if parts.scheme not in {"smtp", "smtps"}:
        raise ConfigError(f"MAILER_SMTP_URL: scheme must be smtp or smtps, got {parts.scheme!r}")
    if not parts.hostname:
        raise ConfigError("MAILER_SMTP_URL: no host (use smtp://host:port)")
    try:
        port = parts.port
    except ValueError as err:
        raise ConfigError(f"MAILER_SMTP_URL: bad port: {err}") from err
    implicit = parts.scheme == "smtps"
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = set(query) - {"starttls", "timeout", "verify"}
    if unknown:
        raise ConfigError(f"MAILER_SMTP_URL: unknown option(s) {', '.join(sorted(unknown))}")
    starttls = _flag("starttls", query["starttls"][-1]) if "starttls" in query else False
    if starttls and implicit:
        raise ConfigError("MAILER_SMTP_URL: smtps:// is already TLS; drop starttls=true")
    verify = _flag("verify", query["verify"][-1]) if "verify" in query else True
    timeout = 30.0
    if "timeout" in query:
        try:
            timeout = float(query["timeout"][-1])
        except ValueError as err:
            raise ConfigError("MAILER_SMTP_URL: timeout must be a number of seconds") from err
        if timeout <= 0:
            raise ConfigError("MAILER_SMTP_URL: timeout must be > 0")
    return SmtpTarget(
        host=parts.hostname,
        port=port or (465 if implicit else 25),
        implicit_tls=implicit,
        starttls=starttls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        timeout=timeout,
        verify=verify,
    )


def header_message_id(raw: bytes) -> str | None:
    """The Message-ID header of a raw message (header section only is scanned)."""
    end = raw.find(b"\r\n\r\n")
    head = raw if end < 0 else raw[: end + 2]
    for line in head.split(b"\r\n"):
        if line[:11].lower() == b"message-id:":
            return line[11:].strip().decode("ascii", "replace") or None
    return None


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply


def _map_reply(code: int, reply: bytes | str, stage: str) -> TransportError:
    what = f"SMTP {code} at {stage}: {_text(reply)}".strip()
    if 400 <= code < 500:
        return RetryableSendError(what)
    if stage == "MAIL FROM" and code >= 500:
        return FatalSendError(f"relay refused the sender: {what}")
    if code >= 500:
        return RejectedError(what)
    return RetryableSendError(f"unexpected {what}")


class _Gone(Exception):
    """The pooled connection died before the message was accepted: reconnect and resend."""


class SmtpTransport:
    """One SMTP connection per sending thread, reused; thread-safe."""

    name = "smtp"
    max_batch = 1
    wants_raw = True
    concurrent_batch = False

    def __init__(
        self,
        target: SmtpTarget,
        *,
        connect: Callable[[SmtpTarget], smtplib.SMTP] | None = None,
    ) -> None:
        self.target = target
        self._connect_fn = connect or _open_connection
        self._local = threading.local()
        self._lock = threading.Lock()
        self._all: set[smtplib.SMTP] = set()
        self._closed = False

    @classmethod
    def from_settings(cls, settings: Settings) -> SmtpTransport:
        return cls(parse_smtp_url(settings.smtp_url))

    def send(self, campaign: CampaignMessage, batch: Sequence[OutgoingMessage]) -> list[SendResult]:
        sender = parseaddr(campaign.from_address)[1] or campaign.from_address
        return [self._send_one(sender, message) for message in batch]

    def _send_one(self, sender: str, message: OutgoingMessage) -> SendResult:
        rcpt = parseaddr(message.to)[1] or message.to
        for attempt in (1, 2):
            conn = self._connection()
            try:
                self._transaction(conn, sender, rcpt, message.raw)
            except _Gone as err:
                self._discard(conn)
                if attempt == 2:
                    return SendResult(error=RetryableSendError(f"SMTP connection lost: {err}"))
                continue
            except (RejectedError, RetryableSendError) as err:
                return SendResult(error=err)
            msg_id = message.message_id or header_message_id(message.raw) or ""
            return SendResult(message_id=msg_id)
        raise AssertionError("unreachable")  # pragma: no cover

    def _transaction(self, conn: smtplib.SMTP, sender: str, rcpt: str, raw: bytes) -> None:
        try:
            code, reply = conn.mail(sender)
            if code != 250:
                self._refuse(conn, code, reply, "MAIL FROM")
            code, reply = conn.rcpt(rcpt)
            if code not in (250, 251):
                self._refuse(conn, code, reply, "RCPT TO")
            code, reply = conn.data(raw)
            if code != 250:
                self._refuse(conn, code, reply, "DATA", reset=False)
        except smtplib.SMTPServerDisconnected as err:
            raise _Gone(str(err) or "server disconnected") from err
        except smtplib.SMTPDataError as err:  # refused the DATA command itself
            self._refuse(conn, err.smtp_code, err.smtp_error, "DATA")
        except (OSError, smtplib.SMTPException) as err:
            self._discard(conn)
            raise RetryableSendError(f"SMTP error talking to {self.target!r}: {err}") from err

    def _refuse(
        self, conn: smtplib.SMTP, code: int, reply: bytes | str, stage: str, *, reset: bool = True
    ) -> None:
        if code == 421:  # "closing channel" (also what an idle timeout leaves behind)
            raise _Gone(f"SMTP 421 at {stage}: {_text(reply)}")
        if reset:
            self._reset(conn)
        raise _map_reply(code, reply, stage)

    @staticmethod
    def _reset(conn: smtplib.SMTP) -> None:
        with contextlib.suppress(OSError, smtplib.SMTPException):
            conn.rset()

    def _connection(self) -> smtplib.SMTP:
        conn: smtplib.SMTP | None = getattr(self._local, "conn", None)
        if conn is not None and conn.sock is not None:
            return conn
        if self._closed:
            raise FatalSendError("SMTP transport is closed")
        conn = self._connect_fn(self.target)
        self._local.conn = conn
        with self._lock:
            self._all.add(conn)
        return conn

    def _discard(self, conn: smtplib.SMTP) -> None:
        if getattr(self._local, "conn", None) is conn:
            self._local.conn = None
        with self._lock:
            self._all.discard(conn)
        with contextlib.suppress(OSError):
            conn.close()

    def quota(self) -> SendQuota | None:
        """None: a relay publishes no rate or daily limit (``MAILER_SEND_RATE`` still paces)."""
        return None

    def close(self) -> None:
        """Say QUIT on every pooled connection."""
        self._closed = True
        with self._lock:
            conns, self._all = list(self._all), set()
        for conn in conns:
            try:
                conn.quit()
            except (OSError, smtplib.SMTPException):
                conn.close()


def _tls_context(target: SmtpTarget) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    if not target.verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _open_connection(target: SmtpTarget) -> smtplib.SMTP:
    """Connect, say EHLO, STARTTLS and AUTH as the URL asks; errors mapped to the tree."""
    conn: smtplib.SMTP | None = None
    try:
        if target.implicit_tls:
            conn = smtplib.SMTP_SSL(
                target.host, target.port, timeout=target.timeout, context=_tls_context(target)
            )
        else:
            conn = smtplib.SMTP(target.host, target.port, timeout=target.timeout)
        conn.ehlo()
        if target.starttls:
            if not conn.has_extn("starttls"):
                raise FatalSendError(
                    f"MAILER_SMTP_URL asks for STARTTLS but {target.host} does not offer it"
                )
            conn.starttls(context=_tls_context(target))
            conn.ehlo()
        if target.username:
            conn.login(target.username, target.password or "")
        return conn
    except FatalSendError:
        _quietly_close(conn)
        raise
    except smtplib.SMTPAuthenticationError as err:
        _quietly_close(conn)
        raise FatalSendError(
            f"SMTP authentication failed for {target.username!r} at {target.host}: "
            f"{err.smtp_code} {_text(err.smtp_error)}"
        ) from err
    except smtplib.SMTPNotSupportedError as err:
        _quietly_close(conn)
        raise FatalSendError(f"SMTP relay {target.host} does not support it: {err}") from err
    except ssl.SSLCertVerificationError as err:
        _quietly_close(conn)
        raise FatalSendError(f"TLS certificate of {target.host} rejected: {err}") from err
    except smtplib.SMTPResponseException as err:
        _quietly_close(conn)
        if 400 <= err.smtp_code < 500:
            raise RetryableSendError(
                f"SMTP relay busy: {err.smtp_code} {err.smtp_error!r}"
            ) from err
        raise FatalSendError(f"SMTP relay refused us: {err.smtp_code} {err.smtp_error!r}") from err
    except (OSError, smtplib.SMTPException) as err:
        _quietly_close(conn)
        if isinstance(err, socket.gaierror):
            raise FatalSendError(f"SMTP host {target.host!r} not found: {err}") from err
        raise RetryableSendError(
            f"cannot connect to SMTP relay {target.host}:{target.port}: {err}"
        ) from err


def _quietly_close(conn: smtplib.SMTP | None) -> None:
    if conn is not None:
        with contextlib.suppress(OSError):
            conn.close()
