"""The SMTP transport against a real aiosmtpd server: delivery, reuse, reconnects, errors,
AUTH, STARTTLS and implicit TLS."""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mailer.config import Settings
from mailer.errors import ConfigError, FatalSendError, RejectedError, RetryableSendError
from mailer.transports import make_transport
from mailer.transports.smtp import SmtpTransport, header_message_id, parse_smtp_url
from tests.conftest import TEST_SECRET_KEY
from tests.transport_helpers import campaign, outgoing


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    peer: Any


@dataclass
class Recorder:
    """aiosmtpd handler: records messages; refuses by recipient/sender/content markers."""

    messages: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_MAIL(self, server, session, envelope, address, mail_options):  # type: ignore[no-untyped-def]
        if address.startswith("blocked@"):
            return "553 5.7.1 Sender address rejected"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # type: ignore[no-untyped-def]
        if address.startswith("bounce"):
            return "550 5.1.1 No such user"
        if address.startswith("later"):
            return "451 4.7.1 Greylisted, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        content = envelope.original_content or envelope.content
        if b"REJECT-ME" in content:
            return "554 5.6.0 Message content rejected"
        if b"DEFER-ME" in content:
            return "452 4.3.1 Insufficient system storage"
        with self.lock:
            self.messages.append(
                Received(envelope.mail_from, list(envelope.rcpt_tos), content, session.peer)
            )
        return "250 2.0.0 Ok: queued"

    def peers(self) -> set[Any]:
        return {m.peer for m in self.messages}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def smtp_server() -> Iterator[tuple[Controller, Recorder]]:
    handler = Recorder()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller, handler
    controller.stop()


def make_cert(tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def server_tls(tmp: Path) -> ssl.SSLContext:
    cert, key = make_cert(tmp)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return ctx


def authenticator(server, session, envelope, mechanism, auth_data):  # type: ignore[no-untyped-def]
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login == b"brief"
        and auth_data.password == b"s3cr@t"
    )
    return AuthResult(success=ok, handled=False)


# -- URL parsing ---------------------------------------------------------------------------


def test_parse_smtp_url_forms() -> None:
    t = parse_smtp_url("smtp://relay.example.com")
    assert (t.host, t.port, t.implicit_tls, t.starttls, t.username) == (
        "relay.example.com",
        25,
        False,
        False,
        None,
    )
    t = parse_smtp_url("smtps://user:p%40ss@mail.example.com")
    assert (t.port, t.implicit_tls, t.username, t.password) == (465, True, "user", "p@ss")
    t = parse_smtp_url("smtp://u:p@h:587?starttls=true&timeout=5&verify=false")
    assert (t.port, t.starttls, t.timeout, t.verify) == (587, True, 5.0, False)
    assert "p@ss" not in repr(parse_smtp_url("smtps://user:p%40ss@mail.example.com"))


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://host", "scheme must be smtp or smtps"),
        ("smtp://", "no host"),
        ("smtp://host:notaport", "bad port"),
        ("smtp://host?starttls=maybe", "not true or false"),
        ("smtps://host?starttls=true", "already TLS"),
        ("smtp://host?timeout=-1", "timeout must be > 0"),
        ("smtp://host?tls=1", "unknown option"),
    ],
)
def test_parse_smtp_url_errors_name_the_problem(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_smtp_url(url)


def test_header_message_id_reads_only_the_header() -> None:
    raw = b"Subject: x\r\nMessage-ID: <a@b>\r\n\r\nMessage-ID: <body@b>\r\n"
    assert header_message_id(raw) == "<a@b>"
    assert header_message_id(b"Subject: x\r\n\r\nMessage-ID: <body@b>\r\n") is None


# -- sending -------------------------------------------------------------------------------


def test_messages_arrive_intact_over_one_reused_connection(
    smtp_server: tuple[Controller, Recorder],
) -> None:
    controller, recorder = smtp_server
    settings = Settings(
        transport="smtp",
        smtp_url=f"smtp://127.0.0.1:{controller.port}",
        secret_key=TEST_SECRET_KEY,
    )
    transport = make_transport(settings)
    assert isinstance(transport, SmtpTransport)
    sent = [outgoing(f"reader{i}@example.org", i + 1, body=f"issue body {i}") for i in range(5)]
    results = [transport.send(campaign(), [m])[0] for m in sent]
    transport.close()
    assert [r.message_id for r in results] == [m.message_id for m in sent]
    assert len(recorder.messages) == 5
    for msg, got in zip(sent, recorder.messages, strict=True):
        assert got.rcpt_tos == [msg.to]
        assert got.mail_from == "brief@news.example.com"
        assert got.content.rstrip(b"\r\n") == msg.raw.rstrip(b"\r\n")
    assert len(recorder.peers()) == 1, "all five messages should share one connection"


def test_one_connection_per_thread(smtp_server: tuple[Controller, Recorder]) -> None:
    controller, recorder = smtp_server
    transport = SmtpTransport(parse_smtp_url(f"smtp://127.0.0.1:{controller.port}"))
    messages = [outgoing(f"r{i}@example.org", i + 1) for i in range(40)]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda m: transport.send(campaign(), [m])[0], messages))
    transport.close()
    assert all(r.ok for r in results)
    assert sorted(m.rcpt_tos[0] for m in recorder.messages) == sorted(m.to for m in messages)
    assert 1 <= len(recorder.peers()) <= 4


def test_reconnects_after_the_server_drops_an_idle_connection() -> None:
    recorder = Recorder()
    controller = Controller(recorder, hostname="127.0.0.1", port=free_port(), timeout=0.3)
    controller.start()
    try:
        transport = SmtpTransport(parse_smtp_url(f"smtp://127.0.0.1:{controller.port}"))
        assert transport.send(campaign(), [outgoing("a@example.org", 1)])[0].ok
        time.sleep(0.8)  # the server times the idle session out (421) and closes it
        result = transport.send(campaign(), [outgoing("b@example.org", 2)])[0]
        transport.close()
    finally:
        controller.stop()
    assert result.ok, result.error
    assert [m.rcpt_tos for m in recorder.messages] == [["a@example.org"], ["b@example.org"]]
    assert len(recorder.peers()) == 2


def test_reply_codes_map_to_the_error_tree(smtp_server: tuple[Controller, Recorder]) -> None:
    controller, recorder = smtp_server
    transport = SmtpTransport(parse_smtp_url(f"smtp://127.0.0.1:{controller.port}"))
    bounce, later, content, defer, good = transport.send(
        campaign(),
        [
            outgoing("bounce@example.org", 1),
            outgoing("later@example.org", 2),
            outgoing("c@example.org", 3, body="REJECT-ME"),
            outgoing("d@example.org", 4, body="DEFER-ME"),
            outgoing("ok@example.org", 5),
        ],
    )
    assert isinstance(bounce.error, RejectedError) and "550" in str(bounce.error)
    assert isinstance(later.error, RetryableSendError) and "451" in str(later.error)
    assert isinstance(content.error, RejectedError) and "554" in str(content.error)
    assert isinstance(defer.error, RetryableSendError) and "452" in str(defer.error)
    assert good.ok
    # the refusals reset the transaction; the connection kept working
    assert [m.rcpt_tos for m in recorder.messages] == [["ok@example.org"]]
    assert len(recorder.peers()) == 1
    with pytest.raises(FatalSendError, match="refused the sender"):
        transport.send(campaign(from_address="blocked@news.example.com"), [outgoing("x@y.org")])
    transport.close()


def test_unreachable_relay_is_retryable() -> None:
    transport = SmtpTransport(parse_smtp_url(f"smtp://127.0.0.1:{free_port()}?timeout=2"))
    with pytest.raises(RetryableSendError, match="cannot connect"):
        transport.send(campaign(), [outgoing("a@example.org")])


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_auth_success_and_failure() -> None:
    recorder = Recorder()
    controller = Controller(
        recorder,
        hostname="127.0.0.1",
        port=free_port(),
        authenticator=authenticator,
        auth_required=True,
        auth_require_tls=False,
    )
    controller.start()
    try:
        good = SmtpTransport(parse_smtp_url(f"smtp://brief:s3cr%40t@127.0.0.1:{controller.port}"))
        assert good.send(campaign(), [outgoing("a@example.org")])[0].ok
        good.close()
        bad = SmtpTransport(
            parse_smtp_url(f"smtp://brief:wrong@127.0.0.1:{controller.port}?timeout=5")
        )
        with pytest.raises(FatalSendError, match="authentication failed"):
            bad.send(campaign(), [outgoing("b@example.org")])
        anonymous = SmtpTransport(parse_smtp_url(f"smtp://127.0.0.1:{controller.port}"))
        with pytest.raises(FatalSendError, match="530"):  # a setting is missing: pause
            anonymous.send(campaign(), [outgoing("c@example.org")])
        anonymous.close()
    finally:
        controller.stop()
    assert [m.rcpt_tos for m in recorder.messages] == [["a@example.org"]]


def test_starttls_with_auth(tmp_path: Path) -> None:
    recorder = Recorder()
    controller = Controller(
        recorder,
        hostname="127.0.0.1",
        port=free_port(),
        tls_context=server_tls(tmp_path),
        require_starttls=True,
        authenticator=authenticator,
        auth_required=True,
    )
    controller.start()
    try:
        url = f"smtp://brief:s3cr%40t@127.0.0.1:{controller.port}?starttls=true&verify=false"
        transport = SmtpTransport(parse_smtp_url(url))
        assert transport.send(campaign(), [outgoing("tls@example.org")])[0].ok
        transport.close()
        plain = SmtpTransport(parse_smtp_url(f"smtp://127.0.0.1:{controller.port}"))
        with pytest.raises(FatalSendError, match="STARTTLS"):
            plain.send(campaign(), [outgoing("plain@example.org")])
        plain.close()
    finally:
        controller.stop()
    assert [m.rcpt_tos for m in recorder.messages] == [["tls@example.org"]]


def test_starttls_required_but_not_offered(smtp_server: tuple[Controller, Recorder]) -> None:
    controller, _ = smtp_server
    transport = SmtpTransport(parse_smtp_url(f"smtp://127.0.0.1:{controller.port}?starttls=true"))
    with pytest.raises(FatalSendError, match="does not offer it"):
        transport.send(campaign(), [outgoing("a@example.org")])


def test_implicit_tls_and_certificate_check(tmp_path: Path) -> None:
    recorder = Recorder()
    controller = Controller(
        recorder, hostname="127.0.0.1", port=free_port(), ssl_context=server_tls(tmp_path)
    )
    controller.start()
    try:
        trusting = SmtpTransport(
            parse_smtp_url(f"smtps://127.0.0.1:{controller.port}?verify=false")
        )
        assert trusting.send(campaign(), [outgoing("tls@example.org")])[0].ok
        trusting.close()
        strict = SmtpTransport(parse_smtp_url(f"smtps://127.0.0.1:{controller.port}"))
        with pytest.raises(FatalSendError, match="certificate"):
            strict.send(campaign(), [outgoing("b@example.org")])
    finally:
        controller.stop()
    assert [m.rcpt_tos for m in recorder.messages] == [["tls@example.org"]]
