"""The SES-v2 test server: model validation, switches, recording, control API, subprocess."""

from __future__ import annotations

import base64
import http.client
import json
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.support import handlebars
from tests.support.ses_server import SesServer, SesServerClient, SesServerProcess, main
from tests.transport_helpers import raw_message

Client = Any


@pytest.fixture
def client(ses_server: SesServer, sesv2_client: Callable[..., Any]) -> Client:
    return sesv2_client(ses_server.url)


@pytest.fixture
def loose(ses_server: SesServer, sesv2_client: Callable[..., Any]) -> Client:
    """A client that skips botocore's own checks, so the server's are what we see."""
    return sesv2_client(ses_server.url, parameter_validation=False)


def send_raw(
    client: Client, to: str = "r@example.org", raw: bytes | None = None, **extra: Any
) -> str:
    response = client.send_email(
        Content={"Raw": {"Data": raw or raw_message(to)}},
        Destination={"ToAddresses": [to]},
        **extra,
    )
    message_id: str = response["MessageId"]
    return message_id


def error_of(call: Callable[[], Any]) -> tuple[str, str, int]:
    with pytest.raises(ClientError) as info:
        call()
    err = info.value.response
    return err["Error"]["Code"], err["Error"]["Message"], err["ResponseMetadata"]["HTTPStatusCode"]


def post_json(url: str, path: str, body: bytes, method: str = "POST") -> tuple[int, Any, str]:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, json.loads(data or b"{}"), resp.getheader("x-amzn-ErrorType") or ""


# -- validation against botocore's model ------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (lambda c: c.send_email(Destination={"ToAddresses": ["a@b.org"]}), "Content: missing"),
        (
            lambda c: c.send_email(
                Content={"Raw": {"Data": b"x"}},
                EmailTags=[{"Name": "campaign", "Value": 7}],
            ),
            "EmailTags[0].Value: expected a string",
        ),
        (
            lambda c: c.send_email(
                Content={"Raw": {"Data": b"x"}}, Destination={"ToAddresses": [1]}
            ),
            "Destination.ToAddresses[0]: expected a string",
        ),
        (
            lambda c: c.send_bulk_email(
                FromEmailAddress="a@b.org",
                DefaultContent={"Template": {"TemplateContent": {"Subject": "s", "Text": "t"}}},
                BulkEmailEntries=[
                    {
                        "Destination": {"ToAddresses": ["x@y.org"]},
                        "ReplacementHeaders": [{"Name": "Bad:Name", "Value": "v"}],
                    }
                ],
            ),
            "BulkEmailEntries[0].ReplacementHeaders[0].Name: does not match",
        ),
        (
            lambda c: c.send_bulk_email(
                FromEmailAddress="a@b.org",
                DefaultContent={"Template": {"TemplateContent": {"Subject": "s", "Text": "t"}}},
                BulkEmailEntries=[
                    {
                        "Destination": {"ToAddresses": ["x@y.org"]},
                        "ReplacementHeaders": [
                            {"Name": f"X-H{i}", "Value": "v"} for i in range(16)
                        ],
                    }
                ],
            ),
            "takes at most 15",
        ),
        (
            lambda c: c.send_bulk_email(
                FromEmailAddress="a@b.org",
                DefaultContent={"Template": {"TemplateContent": {"Subject": "s"}}},
                BulkEmailEntries=[{"ReplacementTags": []}],
            ),
            "BulkEmailEntries[0].Destination: missing required member",
        ),
        (
            lambda c: c.put_suppressed_destination(EmailAddress="a@b.org", Reason="SPAM"),
            "'SPAM' is not one of",
        ),
        (lambda c: c.list_suppressed_destinations(PageSize="many"), "is not an integer"),
    ],
)
def test_requests_violating_the_model_get_400(
    ses_server: SesServer, loose: Client, call: Callable[[Client], Any], fragment: str
) -> None:
    code, message, status = error_of(lambda: call(loose))
    assert (code, status) == ("BadRequestException", 400)
    assert fragment in message
    assert ses_server.messages() == []
    assert sum(ses_server.calls().values()) == ses_server.calls().get("BadRequestException")


def test_raw_http_requests_are_checked_too(ses_server: SesServer) -> None:
    data = base64.b64encode(b"From: a@b.org\r\nSubject: x\r\n\r\nhi").decode()
    good = {"Content": {"Raw": {"Data": data}}, "Destination": {"ToAddresses": ["a@b.org"]}}
    status, _, _ = post_json(ses_server.url, "/v2/email/outbound-emails", json.dumps(good).encode())
    assert status == 200
    bad = dict(good, Bogus=1)
    status, body, code = post_json(
        ses_server.url, "/v2/email/outbound-emails", json.dumps(bad).encode()
    )
    assert (status, code) == (400, "BadRequestException")
    assert body["message"] == "Bogus: unknown member"
    status, body, code = post_json(ses_server.url, "/v2/email/outbound-emails", b"{not json")
    assert (status, code) == (400, "BadRequestException")
    status, _, code = post_json(ses_server.url, "/v2/email/nothing-here", b"{}")
    assert (status, code) == (404, "UnknownOperation")
    path = "/v2/email/suppression/addresses?StartDate=yesterday"
    status, body, code = post_json(ses_server.url, path, b"", method="GET")
    assert (status, code) == (400, "BadRequestException")
    assert "StartDate: 'yesterday' is not a timestamp" in body["message"]
    status, body, _ = post_json(ses_server.url, path.replace("StartDate", "Since"), b"", "GET")
    assert status == 400 and "Since: unknown query parameter" in body["message"]
    assert len(ses_server.messages()) == 1


def test_content_needs_exactly_one_kind(ses_server: SesServer, client: Client) -> None:
    code, message, _ = error_of(
        lambda: client.send_email(
            Content={
                "Raw": {"Data": b"x"},
                "Simple": {"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "t"}}},
            },
            Destination={"ToAddresses": ["a@b.org"]},
        )
    )
    assert code == "BadRequestException" and "exactly one" in message


# -- sending and recording ---------------------------------------------------------------------


def test_raw_simple_and_template_sends_are_recorded(ses_server: SesServer, client: Client) -> None:
    raw = raw_message("r1@example.org")
    mid = client.send_email(Content={"Raw": {"Data": raw}})["MessageId"]  # recipients from headers
    client.send_email(
        FromEmailAddress="brief@news.example.com",
        Destination={"ToAddresses": ["r2@example.org"], "CcAddresses": ["c@example.org"]},
        Content={
            "Simple": {
                "Subject": {"Data": "Simple subject"},
                "Body": {"Text": {"Data": "plain"}, "Html": {"Data": "<b>html</b>"}},
                "Headers": [{"Name": "X-Test", "Value": "1"}],
            }
        },
        EmailTags=[{"Name": "campaign", "Value": "3"}],
        ConfigurationSetName="cs",
    )
    client.send_email(
        FromEmailAddress="brief@news.example.com",
        Destination={"ToAddresses": ["r3@example.org"]},
        Content={
            "Template": {
                "TemplateContent": {"Subject": "Hi {{name}}", "Html": "<p>{{name}} {{gone}}</p>"},
                "TemplateData": json.dumps({"name": "<Ann>"}),
            }
        },
    )
    first, second, third = ses_server.messages()
    assert (first.message_id, first.kind, first.raw, first.to) == (
        mid,
        "raw",
        raw,
        ("r1@example.org",),
    )
    assert first.from_address == "The Brief <brief@news.example.com>"
    assert (second.kind, second.subject, second.text, second.html) == (
        "simple",
        "Simple subject",
        "plain",
        "<b>html</b>",
    )
    assert second.recipients == ("r2@example.org", "c@example.org")
    assert second.headers == (("X-Test", "1"),)
    assert (second.tags, second.configuration_set) == ({"campaign": "3"}, "cs")
    assert third.rendered() == ("Hi &lt;Ann&gt;", "<p>&lt;Ann&gt; </p>", None)
    assert third.missing_variables == ("gone",)
    assert [m.seq for m in ses_server.messages()] == [1, 2, 3]
    assert ses_server.recipients() == {
        "r1@example.org": 1,
        "r2@example.org": 1,
        "c@example.org": 1,
        "r3@example.org": 1,
    }


def test_concurrent_sends_while_switches_change(ses_server: SesServer, client: Client) -> None:
    stop = threading.Event()

    def flip() -> None:
        while not stop.is_set():
            ses_server.configure(throttle_probability=0.5)
            time.sleep(0.002)
            ses_server.configure(throttle_probability=0.0)

    def sender(k: int) -> tuple[int, int]:
        ok = throttled = 0
        for i in range(15):
            try:
                send_raw(client, f"t{k}-{i}@example.org")
                ok += 1
            except ClientError as err:
                assert err.response["Error"]["Code"] == "TooManyRequestsException"
                throttled += 1
        return ok, throttled

    flipper = threading.Thread(target=flip)
    flipper.start()
    with ThreadPoolExecutor(6) as pool:
        outcomes = list(pool.map(sender, range(6)))
    stop.set()
    flipper.join()
    ok = sum(o for o, _ in outcomes)
    throttled = sum(t for _, t in outcomes)
    assert ok + throttled == 90
    assert ses_server.calls("SendEmail") == {
        k: v for k, v in {"ok": ok, "TooManyRequestsException": throttled}.items() if v
    }
    assert len(ses_server.messages()) == ok
    assert len({m.message_id for m in ses_server.messages()}) == ok


# -- switches ------------------------------------------------------------------------------------


def test_latency_and_spikes(ses_server: SesServer, client: Client) -> None:
    ses_server.configure(latency=0.15)
    start = time.perf_counter()
    client.get_account()
    assert time.perf_counter() - start >= 0.15
    ses_server.configure(latency=0.0, spike_probability=1.0, spike_latency=0.15)
    start = time.perf_counter()
    client.get_account()
    assert time.perf_counter() - start >= 0.15


def test_fault_switches(ses_server: SesServer, client: Client) -> None:
    ses_server.configure(throttle_probability=1.0)
    assert error_of(lambda: send_raw(client))[::2] == ("TooManyRequestsException", 429)
    ses_server.configure(throttle_probability=0.0, error_probability=1.0)
    assert error_of(lambda: send_raw(client))[::2] == ("InternalFailure", 500)
    assert ses_server.messages() == []
    ses_server.configure(error_probability=0.0, error_after_accept_probability=1.0)
    assert error_of(lambda: send_raw(client, "dup@example.org"))[::2] == ("InternalFailure", 500)
    assert [m.to for m in ses_server.messages()] == [("dup@example.org",)]  # sent anyway
    ses_server.configure(error_after_accept_probability=0.0, sending_paused=True)
    assert error_of(lambda: send_raw(client))[0] == "SendingPausedException"
    assert client.get_account()["SendingEnabled"] is False
    ses_server.configure(sending_paused=False, account_suspended=True)
    assert error_of(lambda: send_raw(client))[0] == "AccountSuspendedException"
    assert client.get_account()["EnforcementStatus"] == "SHUTDOWN"
    ses_server.configure(account_suspended=False, mail_from_unverified=True)
    assert error_of(lambda: send_raw(client))[0] == "MailFromDomainNotVerifiedException"
    ses_server.configure(mail_from_unverified=False, reject_pattern=r"^spam")
    assert error_of(lambda: send_raw(client, "spammer@example.org"))[0] == "MessageRejected"
    ses_server.configure(reject=lambda addr: addr.endswith(".invalid"))
    assert error_of(lambda: send_raw(client, "x@host.invalid"))[0] == "MessageRejected"
    send_raw(client, "fine@example.org")
    assert len(ses_server.messages()) == 2


def test_fail_next_is_exact(ses_server: SesServer, client: Client) -> None:
    ses_server.fail_next("LimitExceededException", count=2, operation="SendEmail", after=1)
    client.get_account()  # another operation: untouched
    send_raw(client)  # "after=1": this one passes
    assert error_of(lambda: send_raw(client))[0] == "LimitExceededException"
    assert error_of(lambda: send_raw(client))[0] == "LimitExceededException"
    send_raw(client)
    assert ses_server.calls("SendEmail") == {"ok": 2, "LimitExceededException": 2}


def test_rate_and_quota_enforcement(ses_server: SesServer, client: Client) -> None:
    ses_server.configure(enforce_rate=True, max_send_rate=5)
    outcomes = []
    for i in range(12):
        try:
            send_raw(client, f"r{i}@example.org")
            outcomes.append("ok")
        except ClientError as err:
            outcomes.append(err.response["Error"]["Code"])
    assert 5 <= outcomes.count("ok") <= 8
    assert outcomes.count("TooManyRequestsException") == 12 - outcomes.count("ok")
    sent = outcomes.count("ok")
    ses_server.configure(enforce_rate=False, max_24h=sent + 1, sent_last_24h_offset=0)
    send_raw(client, "last@example.org")
    code, message, _ = error_of(lambda: send_raw(client, "over@example.org"))
    assert (code, message) == ("LimitExceededException", "Daily message quota exceeded.")
    quota = client.get_account()["SendQuota"]
    assert quota == {"Max24HourSend": sent + 1, "MaxSendRate": 5.0, "SentLast24Hours": sent + 1}
    ses_server.configure(sent_last_24h_offset=1000, max_24h=5000)
    assert client.get_account()["SendQuota"]["SentLast24Hours"] == sent + 1001


def test_access_keys(ses_server: SesServer, sesv2_client: Callable[..., Any]) -> None:
    ses_server.configure(access_keys=["AKIDGOOD"])
    code, _, status = error_of(lambda: sesv2_client(ses_server.url).get_account())
    assert (code, status) == ("UnrecognizedClientException", 403)


# -- provisioning and suppression ------------------------------------------------------------------


def test_identities_and_configuration_sets(ses_server: SesServer, client: Client) -> None:
    assert client.get_email_identity(EmailIdentity="any.example.com")["VerifiedForSendingStatus"]
    ses_server.configure(
        identities={
            "news.example.com": {"DkimAttributes": {"SigningEnabled": True, "Status": "FAILED"}},
            "pending@example.org": {"VerifiedForSendingStatus": False},
        },
        configuration_sets={
            "events": [
                {
                    "Name": "to-sns",
                    "Enabled": True,
                    "MatchingEventTypes": ["BOUNCE", "COMPLAINT"],
                    "SnsDestination": {"TopicArn": "arn:aws:sns:us-east-1:123456789012:ses"},
                }
            ]
        },
    )
    got = client.get_email_identity(EmailIdentity="news.example.com")
    assert got["IdentityType"] == "DOMAIN"
    assert got["DkimAttributes"]["Status"] == "FAILED"
    assert got["MailFromAttributes"]["MailFromDomain"] == "mail.news.example.com"
    assert client.get_email_identity(EmailIdentity="pending@example.org")["IdentityType"] == (
        "EMAIL_ADDRESS"
    )
    assert error_of(lambda: client.get_email_identity(EmailIdentity="x.org"))[::2] == (
        "NotFoundException",
        404,
    )
    assert client.get_configuration_set(ConfigurationSetName="events")["SendingOptions"] == {
        "SendingEnabled": True
    }
    destinations = client.get_configuration_set_event_destinations(ConfigurationSetName="events")
    assert destinations["EventDestinations"][0]["SnsDestination"]["TopicArn"].endswith(":ses")
    assert error_of(lambda: client.get_configuration_set(ConfigurationSetName="nope"))[0] == (
        "NotFoundException"
    )
    assert error_of(lambda: send_raw(client, ConfigurationSetName="nope"))[0] == (
        "NotFoundException"
    )
    send_raw(client, ConfigurationSetName="events")  # From domain news.example.com: verified
    bad_from = raw_message("r@example.org").replace(
        b"brief@news.example.com", b"pending@example.org"
    )
    code, message, _ = error_of(
        lambda: client.send_email(
            Content={"Raw": {"Data": bad_from}}, Destination={"ToAddresses": ["r@example.org"]}
        )
    )
    assert code == "MessageRejected" and "pending@example.org" in message


def test_suppression_list(ses_server: SesServer, client: Client) -> None:
    for address, reason in [
        ("a@example.org", "BOUNCE"),
        ("b@example.org", "COMPLAINT"),
        ("c@example.org", "BOUNCE"),
    ]:
        client.put_suppressed_destination(EmailAddress=address, Reason=reason)
        time.sleep(0.01)
    page = client.list_suppressed_destinations(PageSize=2)
    assert [s["EmailAddress"] for s in page["SuppressedDestinationSummaries"]] == [
        "a@example.org",
        "b@example.org",
    ]
    rest = client.list_suppressed_destinations(PageSize=2, NextToken=page["NextToken"])
    assert [s["EmailAddress"] for s in rest["SuppressedDestinationSummaries"]] == ["c@example.org"]
    assert "NextToken" not in rest
    bounces = client.list_suppressed_destinations(Reasons=["BOUNCE"])
    assert {s["EmailAddress"] for s in bounces["SuppressedDestinationSummaries"]} == {
        "a@example.org",
        "c@example.org",
    }
    later = client.list_suppressed_destinations(StartDate=datetime.now(UTC) + timedelta(hours=1))
    assert later["SuppressedDestinationSummaries"] == []
    assert isinstance(page["SuppressedDestinationSummaries"][0]["LastUpdateTime"], datetime)
    assert error_of(lambda: client.list_suppressed_destinations(NextToken="zzz"))[0] == (
        "InvalidNextTokenException"
    )
    send_raw(client, "b@example.org")
    assert ses_server.messages()[-1].suppressed
    client.delete_suppressed_destination(EmailAddress="b@example.org")
    assert error_of(lambda: client.delete_suppressed_destination(EmailAddress="b@example.org"))[
        ::2
    ] == ("NotFoundException", 404)
    send_raw(client, "b@example.org")
    assert not ses_server.messages()[-1].suppressed
    assert ses_server.stats()["suppressed_recipients_sent"] == 1


# -- control API, in process and as a child process ---------------------------------------------


def test_control_api_over_http(ses_server: SesServer, client: Client) -> None:
    control = SesServerClient(ses_server.url)
    assert control.health()
    assert control.configure(latency=0.0, reject_addresses=["No@Example.org"])[
        "reject_addresses"
    ] == ["no@example.org"]
    assert control.config()["reject_addresses"] == ["no@example.org"]
    raw = raw_message("yes@example.org")
    send_raw(client, "yes@example.org", raw)
    control.fail_next("TooManyRequestsException", operation="SendEmail")
    assert error_of(lambda: send_raw(client))[0] == "TooManyRequestsException"
    [message] = control.messages(raw=True, render=True)
    assert message["to"] == ["yes@example.org"]
    assert base64.b64decode(message["raw"]) == raw
    assert control.messages(since=1) == []
    assert control.recipients() == {"yes@example.org": 1}
    stats = control.stats()
    assert stats["calls"]["SendEmail"] == {"ok": 1, "TooManyRequestsException": 1}
    assert stats["messages"] == 1
    status, body, _ = post_json(ses_server.url, "/_test/config", b'{"no_such_switch": 1}')
    assert status == 400 and "no_such_switch" in body["message"]
    control.reset(config=True)
    assert control.messages() == [] and control.config()["reject_addresses"] == []


def test_server_as_a_child_process(sesv2_client: Callable[..., Any]) -> None:
    with SesServerProcess(max_send_rate=42.0, seed=1) as proc:
        assert proc.control is not None
        client = sesv2_client(proc.url)
        assert client.get_account()["SendQuota"]["MaxSendRate"] == 42.0
        raw = raw_message("child@example.org")
        send_raw(client, "child@example.org", raw)
        [message] = proc.control.messages(raw=True)
        assert message["to"] == ["child@example.org"]
        assert base64.b64decode(message["raw"]) == raw
        proc.control.configure(account_suspended=True)
        assert error_of(lambda: send_raw(client))[0] == "AccountSuspendedException"
        pid = proc.pid
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_main_rejects_unknown_switches() -> None:
    with pytest.raises(ValueError, match="unknown switch"):
        main(["--config", '{"latencyy": 1}'])


# -- handlebars ---------------------------------------------------------------------------------


def test_handlebars_subset() -> None:
    data = {"a": "<&\"'`=>", "b": "x"}
    assert handlebars.render("{{a}}|{{{a}}}|{{ b }}", data) == (
        "&lt;&amp;&quot;&#x27;&#x60;&#x3D;&gt;|<&\"'`=>|x"
    )
    assert handlebars.render("\\{{a}} \\\\{{b}} {{missing}}.", data) == "{{a}} \\x ."
    assert handlebars.variables("{{a}} {{{b}}} \\{{c}}") == {"a", "b"}


def test_big_run_memory_switches(ses_server: SesServer, client: Client) -> None:
    ses_server.configure(keep_raw=False)
    send_raw(client, "lean@example.org")
    [lean] = ses_server.messages()
    assert lean.raw is None and lean.to == ("lean@example.org",)
    template = {"TemplateContent": {"Subject": "s", "Html": "<p>{{n}}</p>" * 100}}
    for _ in range(2):
        client.send_bulk_email(
            FromEmailAddress="brief@news.example.com",
            DefaultContent={"Template": template},
            BulkEmailEntries=[
                {
                    "Destination": {"ToAddresses": [f"b{i}@example.org"]},
                    "ReplacementEmailContent": {
                        "ReplacementTemplate": {"ReplacementTemplateData": '{"n": "x"}'}
                    },
                }
                for i in range(3)
            ],
        )
    bulk = ses_server.messages()[1:]
    assert len(bulk) == 6
    assert all(m.html is bulk[0].html for m in bulk)  # one shared copy of the template


def test_stop_drops_keepalive_connections(
    aws_env: dict[str, str], sesv2_client: Callable[..., Any]
) -> None:
    from mailer.errors import RetryableSendError
    from mailer.transports.ses_errors import classify

    server = SesServer().start()
    client = sesv2_client(server.url)
    client.get_account()
    server.stop()
    with pytest.raises(Exception) as info:
        client.get_account()
    assert isinstance(classify(info.value), RetryableSendError)
