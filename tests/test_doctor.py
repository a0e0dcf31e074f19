"""`mailer doctor`: every check passes on a sound setup, and each one fails on its own fault.

SES answers come from the SES-v2 test server (identities, configuration sets and the account
are its switches), SNS and SQS from moto, the database is real (SQLite and PostgreSQL), and
the sample is rendered by the real renderer and MIME builder.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path
from typing import Any

import boto3
import pytest
from click.testing import CliRunner

from mailer.cli import command
from mailer.config import Settings
from mailer.ops.aws import AwsClients
from mailer.ops.doctor import (
    Check,
    account_checks,
    check_account,
    check_base_url,
    check_configuration_set,
    check_database,
    check_feedback_wiring,
    check_identity,
    check_message,
    check_secret_key,
    sample_message,
)
from mailer.render.compiler import GMAIL_CLIP_BYTES
from subscribers import store
from subscribers.db import make_engine
from tests.conftest import TEST_SECRET_KEY, Database
from tests.plugins.aws import REGION, MotoHandle
from tests.support.ses_server import SesServer

DOMAIN = "news.example.com"
WEBHOOK = f"https://{DOMAIN}/webhooks/ses"
GOOD_IDENTITY: dict[str, Any] = {
    "VerifiedForSendingStatus": True,
    "VerificationStatus": "SUCCESS",
    "DkimAttributes": {"SigningEnabled": True, "Status": "SUCCESS", "Tokens": ["a", "b", "c"]},
    "MailFromAttributes": {
        "MailFromDomain": f"mail.{DOMAIN}",
        "MailFromDomainStatus": "SUCCESS",
        "BehaviorOnMxFailure": "USE_DEFAULT_VALUE",
    },
}


def destination(topic: str, *types: str, enabled: bool = True) -> dict[str, Any]:
    return {
        "Name": "brief-mailer-sns",
        "Enabled": enabled,
        "MatchingEventTypes": list(types or ("BOUNCE", "COMPLAINT", "DELIVERY")),
        "SnsDestination": {"TopicArn": topic},
    }


@pytest.fixture
def aws(moto: MotoHandle, ses_server: SesServer) -> Iterator[tuple[AwsClients, str]]:
    """Clients on the SES test server and moto, a topic with a confirmed webhook
    subscription, and SES configured so that every check passes."""
    clients = AwsClients(
        sesv2=boto3.client("sesv2", region_name=REGION, endpoint_url=ses_server.url),
        sns=boto3.client("sns", region_name=REGION, endpoint_url=moto.url),
        sqs=boto3.client("sqs", region_name=REGION, endpoint_url=moto.url),
    )
    topic = clients.sns.create_topic(Name="ses-events")["TopicArn"]
    clients.sns.subscribe(TopicArn=topic, Protocol="https", Endpoint=WEBHOOK)
    ses_server.configure(
        identities={DOMAIN: GOOD_IDENTITY},
        configuration_sets={"brief": [destination(topic)]},
    )
    yield clients, topic


def good_settings(db: Database, topic: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "base_url": f"https://{DOMAIN}",
        "secret_key": TEST_SECRET_KEY,
        "transport": "ses",
        "ses_region": REGION,
        "ses_configuration_set": "brief",
        "sns_topic_arns": (topic,),
    }
    values.update(overrides)
    return db.settings(**values)


def statuses(checks: list[Check]) -> list[str]:
    return [c.status for c in checks]


# -- the whole command -------------------------------------------------------------------------


def cli_env(db: Database, ses_server: SesServer, moto: MotoHandle, topic: str) -> dict[str, str]:
    return {
        "MAILER_DATABASE_URL": db.url,
        "MAILER_SECRET_KEY": TEST_SECRET_KEY,
        "MAILER_BASE_URL": f"https://{DOMAIN}",
        "MAILER_TRANSPORT": "ses",
        "MAILER_SES_ENDPOINT_URL": ses_server.url,
        "MAILER_SES_REGION": REGION,
        "MAILER_SES_CONFIGURATION_SET": "brief",
        "MAILER_SNS_TOPIC_ARNS": topic,
        "AWS_ENDPOINT_URL_SNS": moto.url,
        "AWS_ENDPOINT_URL_SQS": moto.url,
        "COLUMNS": "200",
    }


def test_everything_passes(
    db: Database, aws: tuple[AwsClients, str], ses_server: SesServer, moto: MotoHandle
) -> None:
    _, topic = aws
    with db.sessions.begin() as session:
        store.create_list(
            session, "brief", name="The Brief", from_address=f"The Brief <brief@{DOMAIN}>"
        )
    runner = CliRunner()
    env = cli_env(db, ses_server, moto, topic)
    r = runner.invoke(command(), ["doctor"], env=env, prog_name="mailer")
    assert r.exit_code == 0, r.output
    lines = [line for line in r.output.splitlines() if line.strip()]
    assert all(line.startswith("PASS") for line in lines), r.output
    for name in (
        "database reachable and migrated",
        "secret key set",
        "base URL is https",
        f"{DOMAIN}: verified in SES",
        f"{DOMAIN}: DKIM signing",
        f"{DOMAIN}: custom MAIL FROM",
        "configuration set present",
        "event destination for bounces and complaints",
        "SNS topic wired to the webhook or an SQS queue",
        "SES account sending enabled",
        "SES account not under review",
        "SES production",
        "List-Unsubscribe header",
        "List-Unsubscribe-Post header",
        "plain-text part",
        "size under Gmail's clipping limit",
    ):
        assert any(name in line for line in lines), f"no line for {name!r}:\n{r.output}"
    r = runner.invoke(command(), ["doctor", "--json"], env=env, prog_name="mailer")
    assert r.exit_code == 0
    assert {c["status"] for c in json.loads(r.output)} == {"pass"}


def test_failures_exit_non_zero(
    db: Database,
    aws: tuple[AwsClients, str],
    ses_server: SesServer,
    moto: MotoHandle,
    tmp_path: Path,
) -> None:
    _, topic = aws
    ses_server.configure(account_suspended=True)
    big = tmp_path / "big.txt"
    big.write_text(_big_issue(), encoding="utf-8")
    env = cli_env(db, ses_server, moto, topic)
    env["MAILER_BASE_URL"] = f"http://{DOMAIN}"
    r = CliRunner().invoke(
        command(),
        ["doctor", "--domain", DOMAIN, "--issue", str(big), "--json"],
        env=env,
        prog_name="mailer",
    )
    assert r.exit_code == 1
    failed = {c["name"]: c["detail"] for c in json.loads(r.output) if c["status"] == "fail"}
    assert set(failed) == {
        "base URL is https",
        "SES account not under review",
        "List-Unsubscribe header",  # its URL is http, like the base URL
        "SNS topic wired to the webhook or an SQS queue",  # subscribed to the https URL
        "size under Gmail's clipping limit",
    }
    assert (
        f"no subscription to http://{DOMAIN}/webhooks/ses"
        in failed["SNS topic wired to the webhook or an SQS queue"]
    )
    assert failed["SES account not under review"] == "EnforcementStatus SHUTDOWN"
    assert failed["size under Gmail's clipping limit"].endswith(": clipped")


def test_ses_checks_are_skipped_off_ses(db: Database) -> None:
    env = {
        "MAILER_DATABASE_URL": db.url,
        "MAILER_SECRET_KEY": TEST_SECRET_KEY,
        "MAILER_BASE_URL": f"https://{DOMAIN}",
    }
    r = CliRunner().invoke(command(), ["doctor", "--json"], env=env, prog_name="mailer")
    assert r.exit_code == 0, r.output
    checks = json.loads(r.output)
    assert {
        "name": "SES",
        "status": "skip",
        "detail": "MAILER_TRANSPORT is outbox (pass --ses)",
    } in (checks)


# -- each check's failing case ---------------------------------------------------------------


def test_database(db: Database, tmp_path: Path) -> None:
    assert check_database(db.engine).status == "pass"
    empty = make_engine(f"sqlite:///{tmp_path}/empty.db")
    bad = check_database(empty)
    assert bad.status == "fail"
    assert "at revision none" in bad.detail and "run `mailer init`" in bad.detail
    empty.dispose()
    gone = make_engine(
        "postgresql://postgres@127.0.0.1:1/nothing", connect_args={"connect_timeout": 2}
    )
    down = check_database(gone)
    assert down.status == "fail"
    assert "127.0.0.1:1" in down.detail
    gone.dispose()


def test_secret_key_and_base_url() -> None:
    strong = "k3Y-9fQ2_vL7pXw4TzR8mB1nC6dH0sJa"
    assert check_secret_key(Settings(secret_key=strong)).status == "pass"
    assert check_secret_key(Settings(secret_key="")).detail.startswith(
        "MAILER_SECRET_KEY is not set"
    )
    assert "shorter than 32" in check_secret_key(Settings(secret_key="short")).detail
    # the one rule sending enforces (config.weak_key_reason), not a length of its own
    for weak, why in [
        ("x" * 40, "repeats too few characters"),
        ("abcdefgh" * 5, "repeats a pattern of 8"),
        ("   " + "k3Y-9fQ2" + "   ", "shorter than 32"),
    ]:
        check = check_secret_key(Settings(secret_key=weak))
        assert check.status == "fail" and why in check.detail, (weak, check.detail)
    old_weak = check_secret_key(Settings(secret_key=strong, old_secret_keys=("a" * 40,)))
    assert old_weak.status == "fail" and "MAILER_OLD_SECRET_KEYS" in old_weak.detail
    assert check_base_url(Settings(base_url="https://news.example.com")).status == "pass"
    assert "must be https" in check_base_url(Settings(base_url="http://news.example.com")).detail
    assert (
        "readers cannot reach it" in check_base_url(Settings(base_url="https://localhost")).detail
    )


@pytest.mark.parametrize(
    ("override", "expected", "detail"),
    [
        (None, ["fail", "skip", "skip"], f"run `mailer ses setup --domain {DOMAIN}`"),
        (
            {"VerifiedForSendingStatus": False, "VerificationStatus": "PENDING"},
            ["fail", "pass", "pass"],
            "not verified for sending (VerificationStatus PENDING)",
        ),
        (
            {"DkimAttributes": {"SigningEnabled": True, "Status": "PENDING"}},
            ["pass", "fail", "pass"],
            "SigningEnabled=True, Status=PENDING: publish the DKIM CNAMEs",
        ),
        (
            {"DkimAttributes": {"SigningEnabled": False, "Status": "SUCCESS"}},
            ["pass", "fail", "pass"],
            "SigningEnabled=False",
        ),
        ({"MailFromAttributes": {}}, ["pass", "pass", "fail"], "none: SPF does not align"),
        (
            {
                "MailFromAttributes": {
                    "MailFromDomain": f"mail.{DOMAIN}",
                    "MailFromDomainStatus": "FAILED",
                    "BehaviorOnMxFailure": "USE_DEFAULT_VALUE",
                }
            },
            ["pass", "pass", "fail"],
            f"mail.{DOMAIN} is FAILED: publish its MX and SPF records",
        ),
    ],
)
def test_identity(
    aws: tuple[AwsClients, str],
    ses_server: SesServer,
    override: dict[str, Any] | None,
    expected: list[str],
    detail: str,
) -> None:
    clients, _ = aws
    assert statuses(check_identity(clients.sesv2, DOMAIN)) == ["pass"] * 3
    identities = {} if override is None else {DOMAIN: {**GOOD_IDENTITY, **override}}
    ses_server.configure(identities=identities)
    checks = check_identity(clients.sesv2, DOMAIN)
    assert statuses(checks) == expected
    assert any(detail in c.detail for c in checks), [c.detail for c in checks]


def test_configuration_set(aws: tuple[AwsClients, str], ses_server: SesServer) -> None:
    clients, topic = aws
    checks, topics = check_configuration_set(clients.sesv2, "brief")
    assert statuses(checks) == ["pass", "pass"] and topics == [topic]

    checks, topics = check_configuration_set(clients.sesv2, "")
    assert statuses(checks) == ["fail", "skip"] and topics == []
    assert "MAILER_SES_CONFIGURATION_SET is not set" in checks[0].detail

    checks, _ = check_configuration_set(clients.sesv2, "missing")
    assert statuses(checks) == ["fail", "skip"]
    assert "'missing' does not exist: run `mailer ses setup`" in checks[0].detail

    ses_server.configure(configuration_sets={"brief": [destination(topic, "DELIVERY", "SEND")]})
    checks, topics = check_configuration_set(clients.sesv2, "brief")
    assert statuses(checks) == ["pass", "fail"] and topics == []
    assert checks[1].detail == "no enabled SNS destination publishes BOUNCE, COMPLAINT events"

    ses_server.configure(configuration_sets={"brief": [destination(topic, enabled=False)]})
    checks, _ = check_configuration_set(clients.sesv2, "brief")
    assert statuses(checks) == ["pass", "fail"]

    # bounces to one topic, complaints to another: both covered, both followed
    other = clients.sns.create_topic(Name="complaints")["TopicArn"]
    ses_server.configure(
        configuration_sets={
            "brief": [
                destination(topic, "BOUNCE"),
                {**destination(other, "COMPLAINT"), "Name": "c"},
            ]
        }
    )
    checks, topics = check_configuration_set(clients.sesv2, "brief")
    assert statuses(checks) == ["pass", "pass"] and topics == [topic, other]

    ses_server.configure(sending_paused=True)
    checks, _ = check_configuration_set(clients.sesv2, "brief")
    assert checks[0].status == "fail" and "sending disabled" in checks[0].detail


def test_feedback_wiring(db: Database, aws: tuple[AwsClients, str]) -> None:
    clients, topic = aws
    settings = good_settings(db, topic)
    assert check_feedback_wiring(clients, settings, [topic]).status == "pass"
    assert check_feedback_wiring(clients, settings, []).status == "skip"

    not_allowed = check_feedback_wiring(clients, replace(settings, sns_topic_arns=()), [topic])
    assert not_allowed.status == "fail"
    assert "not in MAILER_SNS_TOPIC_ARNS" in not_allowed.detail

    elsewhere = check_feedback_wiring(
        clients, replace(settings, base_url="https://other.example.com"), [topic]
    )
    assert elsewhere.status == "fail"
    assert "no subscription to https://other.example.com/webhooks/ses" in elsewhere.detail

    lonely = clients.sns.create_topic(Name="lonely")["TopicArn"]
    assert "has no subscription" in check_feedback_wiring(clients, settings, [lonely]).detail

    missing = topic.replace("ses-events", "deleted-topic")
    gone = check_feedback_wiring(clients, settings, [missing])
    assert gone.status == "fail" and missing in gone.detail

    # SQS: subscribed, but the queue's policy does not let the topic send
    sqs = clients.sqs
    url = sqs.create_queue(QueueName="feedback")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    q_topic = clients.sns.create_topic(Name="queued")["TopicArn"]
    clients.sns.subscribe(TopicArn=q_topic, Protocol="sqs", Endpoint=arn)
    no_policy = check_feedback_wiring(clients, settings, [q_topic], queue="feedback")
    assert no_policy.status == "fail"
    assert "the queue policy does not let the topic send" in no_policy.detail
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "sns.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": q_topic}},
            }
        ],
    }
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(policy)})
    ok = check_feedback_wiring(clients, settings, [q_topic], queue="feedback")
    assert ok.status == "pass" and ok.detail.endswith("/feedback")
    wrong_queue = check_feedback_wiring(clients, settings, [q_topic], queue="another")
    assert wrong_queue.status == "fail" and "named another" in wrong_queue.detail


def test_account(aws: tuple[AwsClients, str], ses_server: SesServer) -> None:
    clients, _ = aws
    assert statuses(check_account(clients.sesv2)) == ["pass", "pass", "pass"]
    ses_server.configure(sending_paused=True)
    paused = check_account(clients.sesv2)
    assert statuses(paused) == ["fail", "pass", "pass"]
    assert paused[0].detail == "SendingEnabled is false: SES is paused"
    ses_server.configure(sending_paused=False, account_suspended=True)
    assert check_account(clients.sesv2)[1].detail == "EnforcementStatus SHUTDOWN"
    ses_server.fail_next("AccessDeniedException", operation="GetAccount", message="no ses:Get*")
    denied = check_account(clients.sesv2)
    assert statuses(denied) == ["fail", "skip", "skip"]
    assert "GetAccount:" in denied[0].detail and "no ses:Get*" in denied[0].detail


def test_account_statuses_the_test_server_cannot_produce() -> None:
    """PROBATION and the sandbox, judged from GetAccount answers shaped like SES's."""
    healthy = {
        "SendingEnabled": True,
        "EnforcementStatus": "HEALTHY",
        "ProductionAccessEnabled": True,
    }
    assert statuses(account_checks(healthy)) == ["pass"] * 3
    review = account_checks({**healthy, "EnforcementStatus": "PROBATION"})
    assert statuses(review) == ["pass", "fail", "pass"]
    assert "under review" in review[1].detail
    sandbox = account_checks({**healthy, "ProductionAccessEnabled": False})
    assert statuses(sandbox) == ["pass", "pass", "fail"]
    assert "sandbox" in sandbox[2].detail


# -- the rendered sample -----------------------------------------------------------------------


def _message(
    *,
    unsubscribe: str | None = "<https://news.example.com/unsubscribe/T>",
    post: str | None = "List-Unsubscribe=One-Click",
    text: str | None = "Hello",
    html: str = "<p>Hello</p>",
) -> bytes:
    msg = EmailMessage(policy=SMTP)
    msg["From"] = f"brief@{DOMAIN}"
    msg["To"] = "reader@example.com"
    msg["Subject"] = "Hi"
    if unsubscribe is not None:
        msg["List-Unsubscribe"] = unsubscribe
    if post is not None:
        msg["List-Unsubscribe-Post"] = post
    if text is not None:
        msg.set_content(text)
        msg.add_alternative(html, subtype="html")
    else:
        msg.set_content(html, subtype="html")
    return bytes(msg)


def test_message_checks() -> None:
    assert statuses(check_message(_message())) == ["pass"] * 4
    missing = check_message(_message(unsubscribe=None))
    assert missing[0].status == "fail" and "missing" in missing[0].detail
    mailto = check_message(_message(unsubscribe="<mailto:u@news.example.com>"))
    assert mailto[0].status == "fail" and "no https URL" in mailto[0].detail
    no_post = check_message(_message(post=None))
    assert no_post[1].status == "fail" and "RFC 8058" in no_post[1].detail
    wrong_post = check_message(_message(post="List-Unsubscribe=Yes"))
    assert wrong_post[1].status == "fail"
    html_only = check_message(_message(text=None))
    assert html_only[2].status == "fail" and "no text/plain" in html_only[2].detail
    big = check_message(_message(html="<p>" + "x" * GMAIL_CLIP_BYTES + "</p>"))
    assert big[3].status == "fail" and big[3].detail.endswith(": clipped")


def test_real_sample_passes(db: Database) -> None:
    settings = db.settings(base_url=f"https://{DOMAIN}")
    raw = sample_message(settings, from_address=f"Brief <brief@{DOMAIN}>")
    checks = check_message(raw)
    assert statuses(checks) == ["pass"] * 4, checks
    assert checks[0].detail == f"https://{DOMAIN}/unsubscribe/SAMPLE-TOKEN"
    kb = float(checks[3].detail.split()[1])
    assert 1 < kb < 102


def _big_issue() -> str:
    """A brief-format issue whose HTML is well past Gmail's 102 KB."""
    items = []
    for n in range(60):
        items += [
            f"Story number {n} about a long day",
            "Sample Wire",
            ("A long paragraph of sample text that goes on and on. " * 12).strip(),
            f"https://news.example.com/story/{n}",
        ]
    titles = ";".join(items[i] for i in range(0, len(items), 4))
    return "\n".join([titles, "A very long issue", "Intro line.", *items, "Closing line."]) + "\n"
