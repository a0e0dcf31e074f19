"""The SES transport through boto3 over HTTP: moto (SendEmail raw) and the SES-v2 test
server (bulk, GetAccount, faults, every error class)."""

from __future__ import annotations

import email
import itertools
import json
import random
import socket
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from email import policy
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import (
    EndpointConnectionError,
    NoCredentialsError,
    ParamValidationError,
    ReadTimeoutError,
)

from mailer.config import Settings
from mailer.errors import (
    ConfigError,
    FatalSendError,
    NotSentError,
    RejectedError,
    RetryableSendError,
    TransportError,
)
from mailer.render.compiler import split_template
from mailer.transports import make_transport
from mailer.transports.base import OutgoingMessage
from mailer.transports.ses import (
    SesBulkTransport,
    SesTransport,
    header_value,
    make_ses_client,
    ses_send_quota,
    tag_value,
)
from mailer.transports.ses_errors import classify, classify_bulk_status, classify_code
from mailer.transports.ses_template import build_template
from tests.conftest import TEST_SECRET_KEY
from tests.plugins.aws import MotoHandle
from tests.support import handlebars
from tests.support.ses_server import SesServer
from tests.transport_helpers import FROM, campaign, outgoing

REGION = "us-east-1"


def ses_settings(url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "transport": "ses",
        "ses_endpoint_url": url,
        "ses_region": REGION,
        "send_concurrency": 8,
        "secret_key": TEST_SECRET_KEY,  # make_transport refuses real mail without a strong key
    }
    values.update(overrides)
    return Settings(**values)


# -- moto: SendEmail with the raw message --------------------------------------------------


def test_single_send_through_moto_arrives_raw(
    moto: MotoHandle, sesv2_client: Callable[..., Any]
) -> None:
    sesv2_client(moto.url).create_email_identity(EmailIdentity="news.example.com")
    transport = make_transport(ses_settings(moto.url))
    assert isinstance(transport, SesTransport)
    assert (transport.max_batch, transport.wants_raw) == (50, True)
    messages = [outgoing(f"reader{i}@example.org", i + 1, body=f"brief {i}") for i in range(3)]
    results = [transport.send(campaign(), [m])[0] for m in messages]
    transport.close()
    assert all(r.ok for r in results), [r.error for r in results]
    stored = {m["id"]: m for m in moto.sent_emails()}
    assert len(stored) == 3
    for message, result in zip(messages, results, strict=True):
        assert result.message_id is not None
        record = stored[result.message_id]
        assert record["raw_data"] == message.raw.decode()
        assert message.to in record["destinations"]
        parsed = email.message_from_string(record["raw_data"], policy=policy.default)
        assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_moto_unverified_sender_pauses_the_campaign(moto: MotoHandle) -> None:
    transport = make_transport(ses_settings(moto.url))
    with pytest.raises(FatalSendError, match="sender"):
        transport.send(campaign(), [outgoing("reader@example.org")])
    assert moto.sent_emails() == []


def _moto_auth(url: str, count: str) -> None:
    """moto checks SigV4 signatures against its IAM keys once auth is switched on."""
    req = urllib.request.Request(
        f"{url}/moto-api/reset-auth",
        data=count.encode(),
        method="POST",
        headers={"Content-Type": "text/plain"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200


@pytest.mark.parametrize("temporary", [False, True], ids=["access-key", "session-token"])
def test_moto_verifies_the_signature_of_every_send(
    moto: MotoHandle, sesv2_client: Callable[..., Any], temporary: bool
) -> None:
    """The hot path signs its own requests (botocore's SigV4Auth, aiohttp on the wire):
    moto, with IAM auth on, recomputes each signature. A right key sends, a wrong secret is
    refused as a credentials problem and sends nothing."""
    import boto3

    sesv2_client(moto.url).create_email_identity(EmailIdentity="news.example.com")
    iam = boto3.client("iam", endpoint_url=moto.url, region_name=REGION)
    iam.create_user(UserName="sender")
    policy_doc = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "ses:*", "Resource": "*"}],
    }
    iam.put_user_policy(UserName="sender", PolicyName="ses", PolicyDocument=json.dumps(policy_doc))
    key = iam.create_access_key(UserName="sender")["AccessKey"]
    creds = {
        "aws_access_key_id": key["AccessKeyId"],
        "aws_secret_access_key": key["SecretAccessKey"],
    }
    if temporary:  # an assumed role's keys + session token (moto checks all three)
        trust = {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}
        role = iam.create_role(
            RoleName="mailer",
            AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [trust]}),
        )
        iam.put_role_policy(
            RoleName="mailer", PolicyName="ses", PolicyDocument=json.dumps(policy_doc)
        )
        sts = boto3.client("sts", endpoint_url=moto.url, region_name=REGION, **creds)
        assumed = sts.assume_role(RoleArn=role["Role"]["Arn"], RoleSessionName="mailer")
        token = assumed["Credentials"]
        creds = {
            "aws_access_key_id": token["AccessKeyId"],
            "aws_secret_access_key": token["SecretAccessKey"],
            "aws_session_token": token["SessionToken"],
        }

    def client(**keys: str) -> Any:
        return boto3.client("sesv2", endpoint_url=moto.url, region_name=REGION, **keys)

    _moto_auth(moto.url, "0")
    try:
        good = SesTransport(client(**creds))
        results = good.send(campaign(), [outgoing(f"r{i}@example.org", i) for i in range(3)])
        assert all(r.ok for r in results), [r.error for r in results]
        wrong = SesTransport(client(**{**creds, "aws_secret_access_key": "x" * 40}))
        with pytest.raises(FatalSendError, match="credentials"):
            wrong.send(campaign(), [outgoing("r9@example.org", 9)])
        good.close()
        wrong.close()
    finally:
        _moto_auth(moto.url, "inf")
    assert sorted(m["destinations"][0] for m in moto.sent_emails()) == [
        "r0@example.org",
        "r1@example.org",
        "r2@example.org",
    ]


# -- the SES-v2 test server: single ---------------------------------------------------------


def test_single_send_tags_config_set_and_raw(ses_server: SesServer) -> None:
    transport = make_transport(ses_settings(ses_server.url, ses_configuration_set="brief-events"))
    message = outgoing("Reader@Example.org", 31)
    [result] = transport.send(campaign(12, tags={"list": "china brief!"}), [message])
    assert result.ok
    [stored] = ses_server.messages()
    assert stored.message_id == result.message_id
    assert stored.raw == message.raw
    assert stored.to == ("Reader@Example.org",)
    assert stored.configuration_set == "brief-events"
    assert stored.tags == {"list": "china_brief_", "campaign": "12", "delivery": "31"}


def test_concurrent_single_sends_arrive_exactly_once(ses_server: SesServer) -> None:
    transport = make_transport(ses_settings(ses_server.url))
    messages = [outgoing(f"r{i}@example.org", i + 1) for i in range(60)]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda m: transport.send(campaign(), [m])[0], messages))
    assert all(r.ok for r in results)
    deliveries = sorted(int(m.tags["delivery"]) for m in ses_server.messages())
    assert deliveries == list(range(1, 61))
    assert len({r.message_id for r in results}) == 60


def test_faults_surface_as_retryable_and_retries_deliver_everything(
    ses_server: SesServer,
) -> None:
    """15% throttling + 8% 5xx + latency spikes: every message lands once, botocore made no
    hidden retries (server-side call count == our attempts)."""
    ses_server.configure(
        throttle_probability=0.15,
        error_probability=0.08,
        spike_probability=0.05,
        spike_latency=0.05,
        seed=7,
    )
    transport = make_transport(ses_settings(ses_server.url))
    pending = [outgoing(f"f{i}@example.org", i + 1) for i in range(80)]
    attempts = throttled = server_errors = 0
    while pending:
        again: list[OutgoingMessage] = []
        for message in pending:
            attempts += 1
            [result] = transport.send(campaign(), [message])
            if result.ok:
                continue
            assert isinstance(result.error, RetryableSendError), result.error
            throttled += result.error.throttled
            server_errors += not result.error.throttled
            again.append(message)
        pending = again
    assert throttled > 0 and server_errors > 0
    counts = ses_server.calls("SendEmail")
    assert sum(counts.values()) == attempts
    assert counts["TooManyRequestsException"] == throttled
    assert counts["InternalFailure"] == server_errors
    assert sorted(int(m.tags["delivery"]) for m in ses_server.messages()) == list(range(1, 81))


SEND_ERRORS: list[tuple[str, int | None, type[TransportError], str]] = [
    ("TooManyRequestsException", None, RetryableSendError, "throttled"),
    ("LimitExceededException", None, RetryableSendError, "throttled"),
    ("InternalFailure", 500, RetryableSendError, "server error"),
    ("ServiceUnavailable", 503, RetryableSendError, "server error"),
    ("MessageRejected", None, RejectedError, "rejected"),
    ("BadRequestException", None, RejectedError, "address"),
    ("AccountSuspendedException", None, FatalSendError, "suspended"),
    ("SendingPausedException", None, FatalSendError, "paused"),
    ("MailFromDomainNotVerifiedException", None, FatalSendError, "MAIL FROM"),
    ("NotFoundException", None, FatalSendError, "configuration set"),
    ("UnrecognizedClientException", 403, FatalSendError, "credentials"),
    ("AccessDeniedException", 403, FatalSendError, "credentials"),
]


@pytest.mark.parametrize(("code", "status", "expected", "words"), SEND_ERRORS)
def test_send_email_error_classes(
    ses_server: SesServer,
    code: str,
    status: int | None,
    expected: type[TransportError],
    words: str,
) -> None:
    message = "Illegal address: x@" if code == "BadRequestException" else None
    ses_server.fail_next(code, status=status, message=message, operation="SendEmail")
    transport = make_transport(ses_settings(ses_server.url))
    if expected is FatalSendError:
        with pytest.raises(FatalSendError) as info:
            transport.send(campaign(), [outgoing("a@example.org")])
        error: TransportError = info.value
    else:
        [result] = transport.send(campaign(), [outgoing("a@example.org")])
        assert result.error is not None
        error = result.error
    assert type(error) is expected
    assert words in str(error)
    assert code in str(error)
    if isinstance(error, RetryableSendError):
        assert error.throttled == (words == "throttled")
    assert ses_server.messages() == []


def test_switch_driven_errors(ses_server: SesServer) -> None:
    transport = make_transport(ses_settings(ses_server.url))
    ses_server.configure(reject_addresses=["blocked@example.org"])
    [rejected] = transport.send(campaign(), [outgoing("blocked@example.org")])
    assert isinstance(rejected.error, RejectedError)
    [invalid] = transport.send(campaign(), [outgoing("not-an-address")])
    assert isinstance(invalid.error, RejectedError) and "Illegal address" in str(invalid.error)
    ses_server.configure(identities={"other.example.com": {}})
    with pytest.raises(FatalSendError, match="sender"):
        transport.send(campaign(), [outgoing("ok@example.org")])
    ses_server.configure(identities=None, max_24h=1)
    assert transport.send(campaign(), [outgoing("ok@example.org")])[0].ok
    with pytest.raises(FatalSendError, match="24-hour sending quota"):
        transport.send(campaign(), [outgoing("ok2@example.org")])
    ses_server.configure(max_24h=100, access_keys=["AKIDVALID"])
    with pytest.raises(FatalSendError, match="credentials"):
        transport.send(campaign(), [outgoing("ok3@example.org")])
    assert [m.to for m in ses_server.messages()] == [("ok@example.org",)]


def test_fatal_mid_batch_keeps_what_was_sent(ses_server: SesServer) -> None:
    # one call at a time: the refusal is known before the third call would start
    transport = make_transport(ses_settings(ses_server.url, send_concurrency=1))
    ses_server.fail_next("AccountSuspendedException", count=5, after=1)
    first, second, third = transport.send(
        campaign(),
        [outgoing("a@example.org", 1), outgoing("b@example.org", 2), outgoing("c@x.org", 3)],
    )
    assert first.ok
    assert isinstance(second.error, NotSentError) and "not sent" in str(second.error)
    assert isinstance(second.error.fatal, FatalSendError)
    assert "suspended" in str(second.error)
    assert isinstance(third.error, RetryableSendError)
    assert ses_server.calls("SendEmail") == {"ok": 1, "AccountSuspendedException": 1}
    with pytest.raises(FatalSendError, match="suspended"):  # nothing sent: raise
        transport.send(campaign(), [outgoing("b@example.org", 2)])
    assert [m.to for m in ses_server.messages()] == [("a@example.org",)]


def test_no_call_starts_after_an_account_refusal(ses_server: SesServer) -> None:
    """A batch's calls run concurrently: the ones already on the wire when SES refuses the
    account are answered, none is started after the refusal is known."""
    transport = make_transport(ses_settings(ses_server.url, send_concurrency=4))
    ses_server.configure(latency=0.2)
    ses_server.fail_next("AccountSuspendedException", count=100)
    batch = [outgoing(f"r{i}@example.org", i) for i in range(12)]
    with pytest.raises(FatalSendError, match="suspended"):
        transport.send(campaign(), batch)
    assert ses_server.calls("SendEmail") == {"AccountSuspendedException": 4}
    ses_server.reset()
    ses_server.configure(latency=0.0)
    # once every overlapping send has returned, the transport sends again (after a resume)
    results = transport.send(campaign(), batch)
    assert all(r.ok for r in results) and len(ses_server.messages()) == 12


def test_batch_sends_concurrently_and_in_order(ses_server: SesServer) -> None:
    transport = make_transport(ses_settings(ses_server.url, send_concurrency=20))
    ses_server.configure(latency=0.2)
    batch = [outgoing(f"r{i}@example.org", i) for i in range(20)]
    ses_server.configure(reject_addresses=["r7@example.org"])
    results = transport.send(campaign(), batch)
    assert isinstance(results[7].error, RejectedError)
    # The server sleeps its latency before it accepts, so calls made one after another are
    # accepted at least 0.2 s apart; calls in flight together are accepted together. Read
    # from the server's own accept times, not the test's wall time (load cannot fail it).
    accepted = sorted(m.time for m in ses_server.messages())
    together = sum(b - a < 0.2 for a, b in itertools.pairwise(accepted))
    assert len(accepted) == 19 and together >= 9, accepted
    by_id = {m.tags["delivery"]: m for m in ses_server.messages()}
    for i, result in enumerate(results):
        if i != 7:
            assert result.message_id == by_id[str(i)].message_id
    transport.close()


def test_connection_problems_are_retryable(
    ses_server: SesServer, sesv2_client: Callable[..., Any]
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    [refused] = make_transport(ses_settings(dead)).send(campaign(), [outgoing("a@example.org")])
    assert isinstance(refused.error, RetryableSendError) and "connection" in str(refused.error)
    ses_server.configure(latency=1.0)
    impatient = SesTransport(sesv2_client(ses_server.url, read_timeout=0.2))
    [timed_out] = impatient.send(campaign(), [outgoing("a@example.org")])
    assert isinstance(timed_out.error, RetryableSendError) and "timeout" in str(timed_out.error)


# -- bulk ------------------------------------------------------------------------------------

BULK_HTML = (
    '<p>Hello %%name%%, {{ not a variable }}</p><a href="%%unsubscribe_url%%">unsubscribe</a>'
    '<a href="%%preferences_url%%">preferences</a>'
)
BULK_TEXT = "Hello %%name%%\nUnsubscribe: %%unsubscribe_url%%\n"


def bulk_campaign(**overrides: Any) -> Any:
    values: dict[str, Any] = {
        "subject": "Brief for %%name%%",
        "html": BULK_HTML,
        "text": BULK_TEXT,
        "from_address": "中国简报 <brief@news.example.com>",
        "reply_to": "editor@news.example.com",
        "headers": {
            "List-Id": "China Brief <brief.news.example.com>",
            "Feedback-ID": "c9:brief:ses",
            "From": "ignored",
        },
        "tags": {"list": "brief"},
    }
    values.update(overrides)
    return campaign(9, **values)


def reader(i: int, *, name: str | None = None, to: str | None = None) -> OutgoingMessage:
    unsub = f"https://news.example.com/unsubscribe/u.{i:x}.1.tok"
    fields = {"unsubscribe_url": unsub, "preferences_url": f"https://news.example.com/p/{i}"}
    if name is not None:
        fields["name"] = name
    return OutgoingMessage(
        delivery_id=i,
        to=to or f"reader{i}@example.org",
        raw=b"",
        fields=fields,
        headers={
            "To": to or f"reader{i}@example.org",
            "Message-ID": f"<9.{i}@news.example.com>",
            "List-Unsubscribe": f"<{unsub}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
    )


def test_bulk_send_personalizes_server_side(ses_server: SesServer) -> None:
    transport = make_transport(
        ses_settings(ses_server.url, ses_api="bulk", ses_configuration_set="events")
    )
    assert isinstance(transport, SesBulkTransport)
    assert (transport.max_batch, transport.wants_raw) == (50, False)
    names = ["Ann <& Co>", None, "Li\nWei", 'Quote "q"']
    batch = [reader(i + 1, name=n) for i, n in enumerate(names)] + [
        reader(i, name=f"R{i}") for i in range(5, 51)
    ]
    results = transport.send(bulk_campaign(), batch)
    assert len(results) == 50 and all(r.ok for r in results)
    assert ses_server.calls("SendBulkEmail") == {"ok": 1}
    stored = {m.message_id: m for m in ses_server.messages()}
    assert len(stored) == 50
    for message, result in zip(batch, results, strict=True):
        assert result.message_id is not None
        got = stored[result.message_id]
        assert got.to == (message.to,)
        assert got.missing_variables == ()
        subject, html, text = got.rendered()
        name = (message.fields.get("name") or "").replace("\n", " ")
        expected_html = (
            BULK_HTML.replace("%%name%%", handlebars.render("{{v}}", {"v": name}))
            .replace("%%unsubscribe_url%%", message.fields["unsubscribe_url"])
            .replace("%%preferences_url%%", message.fields["preferences_url"])
        )
        assert html == expected_html
        assert "{{ not a variable }}" in (html or "")
        assert text == BULK_TEXT.replace("%%name%%", name).replace(
            "%%unsubscribe_url%%", message.fields["unsubscribe_url"]
        )
        assert subject == f"Brief for {name}"
        headers = dict(got.headers)
        assert headers["List-Unsubscribe"] == message.headers["List-Unsubscribe"]
        assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert headers["List-Id"] == "China Brief <brief.news.example.com>"
        assert headers["Feedback-ID"] == "c9:brief:ses"
        assert "To" not in headers and "Message-ID" not in headers and "From" not in headers
        assert got.tags == {"list": "brief", "campaign": "9", "delivery": str(message.delivery_id)}
        assert got.configuration_set == "events"
        assert got.from_address == "=?utf-8?b?5Lit5Zu9566A5oql?= <brief@news.example.com>"
    assert html is not None and "Ann &lt;&amp; Co&gt;" in (
        stored[results[0].message_id or ""].rendered()[1] or ""
    )


def test_bulk_per_entry_results(ses_server: SesServer) -> None:
    transport = make_transport(ses_settings(ses_server.url, ses_api="bulk"))
    ses_server.configure(reject_addresses=["bounced@example.org"])
    missing = OutgoingMessage(
        delivery_id=4, to="r4@example.org", raw=b"", fields={"name": "x"}, headers={}
    )
    bad_header = OutgoingMessage(
        delivery_id=5,
        to="r5@example.org",
        raw=b"",
        fields=reader(5).fields,
        headers={"Bad Header": "x"},
    )
    ok, bounced, invalid, no_fields, header = transport.send(
        bulk_campaign(),
        [reader(1), reader(2, to="bounced@example.org"), reader(3, to="nope"), missing, bad_header],
    )
    assert ok.ok
    assert isinstance(bounced.error, RejectedError) and "MESSAGE_REJECTED" in str(bounced.error)
    assert isinstance(invalid.error, RejectedError) and "INVALID_PARAMETER" in str(invalid.error)
    assert isinstance(no_fields.error, RejectedError) and "unsubscribe_url" in str(no_fields.error)
    assert isinstance(header.error, RejectedError) and "Bad Header" in str(header.error)
    assert [m.to for m in ses_server.messages()] == [("reader1@example.org",)]


def test_bulk_call_level_errors_raise(ses_server: SesServer) -> None:
    transport = make_transport(ses_settings(ses_server.url, ses_api="bulk"))
    batch = [reader(i) for i in range(1, 4)]
    ses_server.fail_next("TooManyRequestsException")
    with pytest.raises(RetryableSendError) as info:
        transport.send(bulk_campaign(), batch)
    assert info.value.throttled
    ses_server.configure(account_suspended=True)
    with pytest.raises(FatalSendError, match="suspended"):
        transport.send(bulk_campaign(), batch)
    ses_server.configure(account_suspended=False, configuration_sets={})
    with pytest.raises(FatalSendError, match="MAILER_SES_CONFIGURATION_SET"):
        SesBulkTransport(transport.client, configuration_set="gone").send(bulk_campaign(), batch)  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="at most 50"):
        transport.send(bulk_campaign(), [reader(i) for i in range(51)])
    assert ses_server.messages() == []


def test_bulk_quota_runs_out_mid_batch(ses_server: SesServer) -> None:
    transport = make_transport(ses_settings(ses_server.url, ses_api="bulk"))
    ses_server.configure(max_24h=3)
    results = transport.send(bulk_campaign(), [reader(i) for i in range(1, 6)])
    assert [r.ok for r in results] == [True, True, True, False, False]
    assert all(isinstance(r.error, RetryableSendError) for r in results[3:])
    assert "24-hour sending quota" in str(results[3].error)
    with pytest.raises(FatalSendError, match="24-hour sending quota"):
        transport.send(bulk_campaign(), [reader(6)])
    assert len(ses_server.messages()) == 3


# -- quota -----------------------------------------------------------------------------------


def test_send_quota_from_get_account(ses_server: SesServer) -> None:
    ses_server.configure(max_send_rate=14, max_24h=50_000)
    transport = make_transport(ses_settings(ses_server.url))
    transport.send(campaign(), [outgoing("a@example.org")])
    assert transport.quota() == (14.0, 50_000.0, 1.0)  # type: ignore[attr-defined]
    assert ses_send_quota(transport.client) == (14.0, 50_000.0, 1.0)  # type: ignore[attr-defined]
    ses_server.fail_next("TooManyRequestsException", operation="GetAccount")
    with pytest.raises(RetryableSendError):
        transport.quota()  # type: ignore[attr-defined]


def test_client_needs_a_region(monkeypatch: pytest.MonkeyPatch, ses_server: SesServer) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.delenv("AWS_REGION", raising=False)
    with pytest.raises(ConfigError, match="MAILER_SES_REGION"):
        make_ses_client(Settings(transport="ses", ses_endpoint_url=ses_server.url))
    client = make_ses_client(Settings(ses_region="eu-west-1", send_concurrency=40))
    assert client.meta.region_name == "eu-west-1"
    assert client.meta.config.max_pool_connections == 44
    assert client.meta.config.retries["total_max_attempts"] == 1


# -- classification and helpers (pure) -------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "message", "status", "expected"),
    [
        ("Throttling", "Maximum sending rate exceeded.", 400, RetryableSendError),
        ("Throttling", "Daily message quota exceeded.", 400, FatalSendError),
        ("LimitExceededException", "Daily message quota exceeded.", 400, FatalSendError),
        ("SomethingNew", "", 502, RetryableSendError),
        ("SomethingNew", "", 400, FatalSendError),
        ("MessageRejected", "Address blacklisted.", 400, RejectedError),
        (
            "MessageRejected",
            "Email address is not verified. The following identities failed the check in "
            "region US-EAST-1: brief@news.example.com",
            400,
            FatalSendError,
        ),
        ("MessageRejected", "Email address is not verified: r@example.org", 400, RejectedError),
        ("BadRequestException", "Missing final '@domain' in address", 400, RejectedError),
        ("BadRequestException", "Header too long", 400, FatalSendError),
        ("ExpiredTokenException", "expired", 400, FatalSendError),
        ("InvalidClientTokenId", "", 403, FatalSendError),
        ("SignatureDoesNotMatch", "", 403, FatalSendError),
        ("ConfigurationSetDoesNotExistException", "", 400, FatalSendError),
    ],
)
def test_classify_code(code: str, message: str, status: int, expected: type) -> None:
    assert type(classify_code(code, message, status, from_address=FROM)) is expected


def test_classify_botocore_exceptions() -> None:
    assert isinstance(classify(NoCredentialsError()), FatalSendError)
    assert isinstance(
        classify(EndpointConnectionError(endpoint_url="http://x")), RetryableSendError
    )
    assert isinstance(classify(ReadTimeoutError(endpoint_url="http://x")), RetryableSendError)
    assert isinstance(classify(ParamValidationError(report="bad")), FatalSendError)
    err = classify(EndpointConnectionError(endpoint_url="http://x"))
    assert isinstance(err.__cause__, EndpointConnectionError)
    same = RejectedError("x")
    assert classify(same) is same


@pytest.mark.parametrize(
    ("status", "expected", "throttled"),
    [
        ("SUCCESS", None, False),
        ("ACCOUNT_THROTTLED", RetryableSendError, True),
        ("TRANSIENT_FAILURE", RetryableSendError, False),
        ("FAILED", RetryableSendError, False),
        ("MESSAGE_REJECTED", RejectedError, False),
        ("INVALID_PARAMETER", RejectedError, False),
        ("ACCOUNT_SUSPENDED", FatalSendError, False),
        ("ACCOUNT_SENDING_PAUSED", FatalSendError, False),
        ("CONFIGURATION_SET_SENDING_PAUSED", FatalSendError, False),
        ("CONFIGURATION_SET_NOT_FOUND", FatalSendError, False),
        ("MAIL_FROM_DOMAIN_NOT_VERIFIED", FatalSendError, False),
        ("ACCOUNT_DAILY_QUOTA_EXCEEDED", FatalSendError, False),
        ("TEMPLATE_NOT_FOUND", FatalSendError, False),
        ("INVALID_SENDING_POOL_NAME", FatalSendError, False),
        ("BRAND_NEW_STATUS", FatalSendError, False),
    ],
)
def test_classify_bulk_status(status: str, expected: type | None, throttled: bool) -> None:
    result = classify_bulk_status(status, "why")
    if expected is None:
        assert result is None
    else:
        assert type(result) is expected
        assert getattr(result, "throttled", False) == throttled


def test_tag_and_header_values() -> None:
    assert tag_value("china brief/2026") == "china_brief_2026"
    assert tag_value("") == "_"
    assert len(tag_value("x" * 300)) == 256
    assert header_value("a\r\n  b") == "a b"
    encoded = header_value("简报 <brief.example.com>")
    assert encoded.isascii() and "=?utf-8?" in encoded
    decoded = str(email.header.make_header(email.header.decode_header(encoded)))
    assert decoded == "简报 <brief.example.com>"


def test_build_template_escapes_literals_and_odd_names() -> None:
    def split(s: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        import re

        parts = re.split(r"\[\[(.+?)\]\]", s)
        return tuple(parts[0::2]), tuple(parts[1::2])

    tpl = build_template(
        "Hi [[first name]]",
        "<p>{{x}} [[first name]] \\[[this]] [[v_0]]</p>",
        "[[first name]]/[[this]]",
        split,
    )
    assert set(tpl.variables) == {"first name", "this", "v_0"}
    assert all(v.startswith("v_") for v in tpl.variables.values())
    data = json.loads(tpl.template_data({"first name": "A&B", "this": "<t>", "v_0": "z"}))
    assert handlebars.render(tpl.html, data) == "<p>{{x}} A&amp;B \\&lt;t&gt; z</p>"
    assert handlebars.render(tpl.text, data) == "A&B/<t>"
    assert handlebars.render(tpl.subject, data) == "Hi A&B"
    with pytest.raises(RejectedError, match="first name"):
        tpl.template_data({"this": "x", "v_0": "y"})


def test_build_template_with_the_renderers_split() -> None:
    tpl = build_template(
        "S", "<a href='%%unsubscribe_url%%'>%%name%%</a>", "%%name%%", split_template
    )
    assert tpl.html == "<a href='{{unsubscribe_url}}'>{{name}}</a>"
    assert tpl.text == "{{{name}}}"
    data = json.loads(tpl.template_data({"unsubscribe_url": "https://x/u?a=1&b=2"}))
    assert data == {"unsubscribe_url": "https://x/u?a=1&b=2", "name": ""}


def test_randomized_bulk_round_trip(ses_server: SesServer) -> None:
    """Arbitrary reader names survive SES-side personalization exactly as personalize would
    write them (HTML-escaped in HTML, verbatim in text)."""
    rng = random.Random(3)
    alphabet = "abc <>&\"'`=中文{}\\%é"
    transport = make_transport(ses_settings(ses_server.url, ses_api="bulk"))
    batch = [
        reader(i, name="".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12))))
        for i in range(1, 41)
    ]
    results = transport.send(bulk_campaign(), batch)
    assert all(r.ok for r in results)
    stored = {m.message_id: m for m in ses_server.messages()}
    for message, result in zip(batch, results, strict=True):
        _, html, text = stored[result.message_id or ""].rendered()
        name = message.fields["name"]
        assert text is not None and text.startswith(f"Hello {name}\n")
        unescaped = html_unescape(html or "")
        assert unescaped.startswith(f"<p>Hello {name}, ")


def html_unescape(s: str) -> str:
    import html

    return html.unescape(s)


def test_proxy_is_looked_up_once_as_botocore_would(monkeypatch: pytest.MonkeyPatch) -> None:
    from mailer.transports.ses_http import _proxy_for

    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    assert _proxy_for("https://email.eu-west-1.amazonaws.com", None) == "http://proxy.internal:3128"
    assert _proxy_for("http://127.0.0.1:4566", None) is None  # NO_PROXY, and no http proxy
    configured = {"https": "http://other:8080"}
    assert _proxy_for("https://email.eu-west-1.amazonaws.com", configured) == "http://other:8080"


def test_no_credentials_pause_and_send_nothing(
    ses_server: SesServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    client = boto3.session.Session().client(
        "sesv2", endpoint_url=ses_server.url, region_name=REGION
    )
    for transport in (SesTransport(client), SesBulkTransport(client, split=split_template)):
        with pytest.raises(FatalSendError, match="no usable AWS credentials"):
            transport.send(
                campaign() if transport.wants_raw else bulk_campaign(),
                [outgoing("a@example.org") if transport.wants_raw else reader(1)],
            )
        transport.close()
    assert ses_server.messages() == []


def _tls_files(tmp: Path) -> tuple[Path, Path, Path]:
    """A test CA and a certificate for 127.0.0.1 signed by it: (ca.pem, cert.pem, key.pem)."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)

    def name(text: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("brief-mailer test CA"))
        .issuer_name(name("brief-mailer test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = (tmp / "ca.pem", tmp / "cert.pem", tmp / "key.pem")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


def test_https_endpoint_checks_the_certificate(
    tmp_path: Path, aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """SES is HTTPS: the hot path verifies the server against AWS_CA_BUNDLE (as botocore
    does) and sends through TLS; a certificate it cannot verify sends nothing."""
    import ssl

    ca, cert, key = _tls_files(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    with SesServer(ssl_context=context) as server:
        assert server.url.startswith("https://127.0.0.1:")
        untrusted = make_transport(ses_settings(server.url))
        [refused] = untrusted.send(campaign(), [outgoing("a@example.org")])
        untrusted.close()
        assert isinstance(refused.error, RetryableSendError), refused.error
        assert server.messages() == []

        monkeypatch.setenv("AWS_CA_BUNDLE", str(ca))
        single = make_transport(ses_settings(server.url))
        results = single.send(campaign(), [outgoing(f"r{i}@example.org", i) for i in range(3)])
        single.close()
        assert all(r.ok for r in results), [r.error for r in results]
        bulk = make_transport(ses_settings(server.url, ses_api="bulk"))
        [entry] = bulk.send(bulk_campaign(), [reader(7, name="Ana")])
        bulk.close()
        assert entry.ok, entry.error
        assert sorted(m.to[0] for m in server.messages()) == [
            "r0@example.org",
            "r1@example.org",
            "r2@example.org",
            "reader7@example.org",
        ]


@pytest.mark.parametrize("on_the_loops_thread", [True, False])
def test_the_http_loop_shuts_down_from_any_thread(on_the_loops_thread: bool) -> None:
    """SesHttp's finalizer closes its aiohttp session, stops its loop and ends the thread,
    also when the collector runs it on the loop's own thread (seen in CI: it waited 5 s on
    itself, then "cannot join current thread")."""
    import asyncio
    import threading

    import aiohttp

    from mailer.transports import ses_http

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=ses_http._run_loop, args=(loop,), daemon=True)
    thread.start()

    async def open_session() -> aiohttp.ClientSession:
        return aiohttp.ClientSession()

    session = asyncio.run_coroutine_threadsafe(open_session(), loop).result(timeout=5)
    errors: list[BaseException] = []

    def shut() -> None:
        try:
            ses_http._shutdown(loop, thread, session)
        except BaseException as err:
            errors.append(err)

    if on_the_loops_thread:
        loop.call_soon_threadsafe(shut)
    else:
        shut()
    thread.join(timeout=4)  # under the 5 s the old wait took
    assert errors == [] and not thread.is_alive()
    assert session.closed and loop.is_closed()
