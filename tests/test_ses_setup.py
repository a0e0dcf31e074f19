"""`mailer ses setup` against moto (identities, configuration sets, SNS, SQS) plus a small
model-validated endpoint for the SES operations moto lacks (tests/ses_provisioning.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from click.testing import CliRunner

from mailer.cli import command
from mailer.config import Settings
from mailer.errors import ConfigError, SetupError
from mailer.ops.aws import AwsClients
from mailer.ops.doctor import check_configuration_set, check_feedback_wiring, check_identity
from mailer.ops.provisioning import DESTINATION_NAME, EVENT_TYPES, dns_records, setup
from tests.plugins.aws import REGION, MotoHandle
from tests.ses_provisioning import ProvisioningProxy

DOMAIN = "news.example.com"
WEBHOOK = f"https://{DOMAIN}/webhooks/ses"
CONFIG_SET = "brief"


@pytest.fixture
def proxy(moto: MotoHandle) -> Iterator[ProvisioningProxy]:
    with ProvisioningProxy(moto.url) as p:
        yield p


@pytest.fixture
def clients(moto: MotoHandle, proxy: ProvisioningProxy) -> AwsClients:
    return AwsClients(
        sesv2=boto3.client("sesv2", region_name=REGION, endpoint_url=proxy.url),
        sns=boto3.client("sns", region_name=REGION, endpoint_url=moto.url),
        sqs=boto3.client("sqs", region_name=REGION, endpoint_url=moto.url),
    )


def moto_sesv2(moto: MotoHandle) -> Any:
    return boto3.client("sesv2", region_name=REGION, endpoint_url=moto.url)


def test_webhook_setup_from_scratch(
    moto: MotoHandle, proxy: ProvisioningProxy, clients: AwsClients
) -> None:
    lines: list[str] = []
    result = setup(
        clients, domain=DOMAIN, configuration_set=CONFIG_SET, webhook_url=WEBHOOK, log=lines.append
    )
    assert lines == result.steps
    assert [line.split()[0] for line in result.steps] == ["created"] * 7
    # the configuration set and the identity live in moto
    ses = moto_sesv2(moto)
    assert ses.get_configuration_set(ConfigurationSetName=CONFIG_SET)["ConfigurationSetName"] == (
        CONFIG_SET
    )
    assert ses.get_email_identity(EmailIdentity=DOMAIN)["IdentityType"] == "DOMAIN"
    # the SNS topic, its policy for SES, and the HTTPS subscription
    sns = clients.sns
    topic = result.topic_arn
    assert topic == f"arn:aws:sns:{REGION}:123456789012:brief-mailer-ses-events"
    policy = json.loads(sns.get_topic_attributes(TopicArn=topic)["Attributes"]["Policy"])
    ses_statement = next(s for s in policy["Statement"] if s.get("Sid") == "AllowSESPublish")
    assert ses_statement["Principal"] == {"Service": "ses.amazonaws.com"}
    assert ses_statement["Condition"]["ArnLike"]["AWS:SourceArn"] == (
        f"arn:aws:ses:{REGION}:123456789012:configuration-set/{CONFIG_SET}"
    )
    subs = sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
    assert [(s["Protocol"], s["Endpoint"]) for s in subs] == [("https", WEBHOOK)]
    assert result.subscription_arn == subs[0]["SubscriptionArn"]
    # the event destination (answered by the model-validated endpoint)
    dest = proxy.destinations[CONFIG_SET][DESTINATION_NAME]
    assert dest["Enabled"] is True
    assert set(dest["MatchingEventTypes"]) == set(EVENT_TYPES)
    assert dest["SnsDestination"] == {"TopicArn": topic}
    assert proxy.mail_from[DOMAIN]["MailFromDomain"] == f"mail.{DOMAIN}"
    # DNS: moto issues no DKIM tokens, so only MAIL FROM and DMARC records
    assert result.dkim_status == "NOT_STARTED"
    assert [(r.type, r.name, r.value) for r in result.dns] == [
        ("MX", f"mail.{DOMAIN}", f"10 feedback-smtp.{REGION}.amazonses.com"),
        ("TXT", f"mail.{DOMAIN}", '"v=spf1 include:amazonses.com ~all"'),
        ("TXT", f"_dmarc.{DOMAIN}", f'"v=DMARC1; p=none; rua=mailto:dmarc-reports@{DOMAIN}"'),
    ]


def test_setup_is_idempotent(
    moto: MotoHandle, proxy: ProvisioningProxy, clients: AwsClients
) -> None:
    first = setup(clients, domain=DOMAIN, configuration_set=CONFIG_SET, webhook_url=WEBHOOK)
    second = setup(clients, domain=DOMAIN, configuration_set=CONFIG_SET, webhook_url=WEBHOOK)
    assert [line.split()[0] for line in second.steps] == ["exists"] * 7
    assert second.topic_arn == first.topic_arn
    assert second.subscription_arn == first.subscription_arn
    assert len(clients.sns.list_topics()["Topics"]) == 1
    assert len(clients.sns.list_subscriptions()["Subscriptions"]) == 1
    assert proxy.calls["CreateConfigurationSetEventDestination"] == 1
    assert proxy.calls["UpdateConfigurationSetEventDestination"] == 0
    assert proxy.calls["PutEmailIdentityMailFromAttributes"] == 1
    # a destination someone narrowed by hand is put back
    proxy.destinations[CONFIG_SET][DESTINATION_NAME]["MatchingEventTypes"] = ["BOUNCE"]
    third = setup(clients, domain=DOMAIN, configuration_set=CONFIG_SET, webhook_url=WEBHOOK)
    assert any(line.startswith("updated  event destination") for line in third.steps)
    assert set(proxy.destinations[CONFIG_SET][DESTINATION_NAME]["MatchingEventTypes"]) == set(
        EVENT_TYPES
    )


def test_queue_setup_delivers_topic_messages_to_the_queue(
    moto: MotoHandle, proxy: ProvisioningProxy, clients: AwsClients
) -> None:
    result = setup(clients, domain=DOMAIN, configuration_set=CONFIG_SET, queue_name="ses-events")
    assert result.queue_url is not None and result.queue_url.endswith("/ses-events")
    sqs = clients.sqs
    attrs = sqs.get_queue_attributes(QueueUrl=result.queue_url, AttributeNames=["All"])
    policy = json.loads(attrs["Attributes"]["Policy"])
    (statement,) = policy["Statement"]
    assert statement["Principal"] == {"Service": "sns.amazonaws.com"}
    assert statement["Action"] == "sqs:SendMessage"
    assert statement["Condition"] == {"ArnEquals": {"aws:SourceArn": result.topic_arn}}
    subs = clients.sns.list_subscriptions_by_topic(TopicArn=result.topic_arn)["Subscriptions"]
    assert [(s["Protocol"], s["Endpoint"]) for s in subs] == [
        ("sqs", attrs["Attributes"]["QueueArn"])
    ]
    # the wiring works: what SES publishes to the topic lands in the queue, as an envelope
    clients.sns.publish(TopicArn=result.topic_arn, Message='{"eventType": "Bounce"}')
    got = sqs.receive_message(QueueUrl=result.queue_url, WaitTimeSeconds=1)["Messages"]
    envelope = json.loads(got[0]["Body"])
    assert envelope["TopicArn"] == result.topic_arn
    assert json.loads(envelope["Message"]) == {"eventType": "Bounce"}
    again = setup(clients, domain=DOMAIN, configuration_set=CONFIG_SET, queue_name="ses-events")
    assert [line.split()[0] for line in again.steps] == ["exists"] * 9
    assert (
        len(
            json.loads(
                sqs.get_queue_attributes(QueueUrl=result.queue_url, AttributeNames=["Policy"])[
                    "Attributes"
                ]["Policy"]
            )["Statement"]
        )
        == 1
    )


def test_doctor_after_setup(
    moto: MotoHandle, proxy: ProvisioningProxy, clients: AwsClients, tmp_path: Any
) -> None:
    result = setup(clients, domain=DOMAIN, configuration_set=CONFIG_SET, webhook_url=WEBHOOK)
    settings = Settings(
        base_url=f"https://{DOMAIN}",
        sns_topic_arns=(result.topic_arn,),
        database_url=f"sqlite:///{tmp_path}/x.db",
    )
    set_checks, topics = check_configuration_set(clients.sesv2, CONFIG_SET)
    assert [c.status for c in set_checks] == ["pass", "pass"]
    assert topics == [result.topic_arn]
    wiring = check_feedback_wiring(clients, settings, topics)
    assert wiring.status == "pass", wiring.detail
    assert WEBHOOK in wiring.detail
    # DNS is not published yet: the identity is created but nothing is verified
    identity = check_identity(clients.sesv2, DOMAIN)
    assert [c.status for c in identity] == ["fail", "fail", "fail"]
    assert "Status=NOT_STARTED" in identity[1].detail
    assert f"mail.{DOMAIN} is PENDING" in identity[2].detail


def test_dkim_records_from_tokens() -> None:
    records = dns_records(DOMAIN, "eu-west-1", ["abc123", "def456", "ghi789"], f"bounce.{DOMAIN}")
    cnames = [(r.name, r.value) for r in records if r.type == "CNAME"]
    assert cnames == [
        (f"abc123._domainkey.{DOMAIN}", "abc123.dkim.amazonses.com"),
        (f"def456._domainkey.{DOMAIN}", "def456.dkim.amazonses.com"),
        (f"ghi789._domainkey.{DOMAIN}", "ghi789.dkim.amazonses.com"),
    ]
    mx = next(r for r in records if r.type == "MX")
    assert (mx.name, mx.value) == (f"bounce.{DOMAIN}", "10 feedback-smtp.eu-west-1.amazonses.com")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"domain": "not a domain", "webhook_url": WEBHOOK}, "--domain: not a domain name"),
        ({"domain": DOMAIN}, "exactly one of --webhook-url URL or --queue NAME"),
        (
            {"domain": DOMAIN, "webhook_url": WEBHOOK, "queue_name": "q"},
            "exactly one of --webhook-url URL or --queue NAME",
        ),
        (
            {"domain": DOMAIN, "webhook_url": f"http://{DOMAIN}/webhooks/ses"},
            "--webhook-url must be an https URL",
        ),
        ({"domain": DOMAIN, "queue_name": "bad name!"}, "--queue: not an SQS queue name"),
        (
            {"domain": DOMAIN, "webhook_url": WEBHOOK, "configuration_set": ""},
            "MAILER_SES_CONFIGURATION_SET",
        ),
    ],
)
def test_bad_input_is_refused_before_any_call(
    clients: AwsClients, proxy: ProvisioningProxy, kwargs: dict[str, Any], message: str
) -> None:
    args = {"configuration_set": CONFIG_SET, **kwargs}
    with pytest.raises(ConfigError, match=message):
        setup(clients, **args)
    assert sum(proxy.calls.values()) == 0
    assert clients.sns.list_topics()["Topics"] == []


def test_an_unreachable_endpoint_names_the_step(moto: MotoHandle, aws_env: Any) -> None:
    from botocore.config import Config

    dead = boto3.client(
        "sesv2",
        region_name=REGION,
        endpoint_url="http://127.0.0.1:9",
        config=Config(retries={"max_attempts": 1}, connect_timeout=1),
    )
    clients = AwsClients(dead, boto3.client("sns", region_name=REGION, endpoint_url=moto.url), None)
    with pytest.raises(SetupError, match="GetConfigurationSet brief: Could not connect"):
        setup(clients, domain=DOMAIN, configuration_set=CONFIG_SET, webhook_url=WEBHOOK)


def test_cli(moto: MotoHandle, proxy: ProvisioningProxy, tmp_path: Any, aws_env: Any) -> None:
    env = {
        "MAILER_DATABASE_URL": f"sqlite:///{tmp_path}/x.db",
        "MAILER_SES_ENDPOINT_URL": proxy.url,
        "MAILER_SES_REGION": REGION,
        "MAILER_SES_CONFIGURATION_SET": CONFIG_SET,
        "AWS_ENDPOINT_URL_SNS": moto.url,
        "AWS_ENDPOINT_URL_SQS": moto.url,
        "COLUMNS": "200",
    }
    runner = CliRunner()
    root = command()
    args = ["ses", "setup", "--domain", DOMAIN, "--webhook-url", WEBHOOK]
    r = runner.invoke(root, args, env=env, prog_name="mailer")
    assert r.exit_code == 0, r.output
    assert "created  configuration set brief" in r.output
    assert f"mail.{DOMAIN}" in r.output and "feedback-smtp.us-east-1.amazonses.com" in r.output
    assert "_dmarc." + DOMAIN in r.output
    assert "SES has not issued DKIM tokens yet" in r.output
    assert "export MAILER_SNS_TOPIC_ARNS=arn:aws:sns:us-east-1:123456789012:" in r.output
    r = runner.invoke(root, [*args, "--json"], env=env, prog_name="mailer")
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert {s.split()[0] for s in data["steps"]} == {"exists"}
    assert data["dns"][0]["type"] == "MX"
    # errors are one line and exit 2 (configuration), from the real entry point
    full_env = {**os.environ, **env}
    done = subprocess.run(
        [sys.executable, "-m", "mailer", "ses", "setup", "--domain", DOMAIN],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "mailer: configuration error: pass exactly one of --webhook-url URL or --queue NAME"
    )
