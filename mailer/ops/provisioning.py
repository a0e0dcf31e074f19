"""SES provisioning: ``mailer ses setup``.

Each step looks before it creates, so running it again changes nothing:

    configuration set  -> GetConfigurationSet, else CreateConfigurationSet
    SNS topic          -> CreateTopic (idempotent by name) + a policy letting SES publish
    HTTPS subscription -> Subscribe unless the topic already has it, or
    SQS queue          -> CreateQueue + a policy letting the topic send + Subscribe
    event destination  -> Create/UpdateConfigurationSetEventDestination (SNS; bounces,
                          complaints, deliveries, rejects, rendering failures, delays)
    email identity     -> GetEmailIdentity, else CreateEmailIdentity (Easy DKIM), and a
                          custom MAIL FROM (PutEmailIdentityMailFromAttributes)

and the result lists the DNS records the operator must publish (DKIM CNAMEs from the
identity's tokens, MAIL FROM MX and SPF, a DMARC suggestion). An AWS error stops the run with
a SetupError naming the step.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar
from urllib.parse import urlsplit

from mailer.errors import ConfigError, SetupError
from mailer.ops.aws import (
    AWS_ERRORS,
    AwsClients,
    as_list,
    describe,
    error_code,
    find,
    policy_allows,
    sns_topic_of,
    subscriptions,
)

if TYPE_CHECKING:
    from mypy_boto3_sesv2 import SESV2Client
    from mypy_boto3_sesv2.literals import EventTypeType
    from mypy_boto3_sesv2.type_defs import (
        EventDestinationDefinitionTypeDef,
        GetEmailIdentityResponseTypeDef,
    )
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sns.type_defs import SubscriptionTypeDef

__all__ = [
    "DEFAULT_TOPIC",
    "DESTINATION_NAME",
    "EVENT_TYPES",
    "DnsRecord",
    "SetupResult",
    "dns_records",
    "setup",
]

EVENT_TYPES: tuple[EventTypeType, ...] = (
    "BOUNCE",
    "COMPLAINT",
    "DELIVERY",
    "REJECT",
    "RENDERING_FAILURE",
    "DELIVERY_DELAY",
)
"""What ``ses setup`` publishes to SNS: everything the feedback rules act on or count."""
TRACKING_EVENT_TYPES: tuple[EventTypeType, ...] = ("OPEN", "CLICK")
"""Added with ``ses setup --tracking``: SES's own open and click events, read into the same
records as the redirect's (``mailer.feedback.tracking``)."""

DESTINATION_NAME = "brief-mailer-sns"
DEFAULT_TOPIC = "brief-mailer-ses-events"

_DOMAIN = re.compile(r"^(?=.{1,253}$)(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))+$")
_QUEUE = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
_TOPIC = re.compile(r"^[A-Za-z0-9_-]{1,256}$")

P = ParamSpec("P")
T = TypeVar("T")

# -- the result -------------------------------------------------------------------------------


@dataclass(frozen=True)
class DnsRecord:
    type: str
    name: str
    value: str
    purpose: str

    def line(self) -> str:
        return f"{self.name}  {self.type}  {self.value}"


@dataclass
class SetupResult:
    configuration_set: str
    topic_arn: str
    domain: str
    steps: list[str] = field(default_factory=list)  # "created ..." / "exists ..." lines
    subscription_arn: str | None = None
    queue_url: str | None = None
    identity_verified: bool = False
    dkim_status: str = "NOT_STARTED"
    dns: list[DnsRecord] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "configuration_set": self.configuration_set,
            "topic_arn": self.topic_arn,
            "domain": self.domain,
            "steps": list(self.steps),
            "subscription_arn": self.subscription_arn,
            "queue_url": self.queue_url,
            "identity_verified": self.identity_verified,
            "dkim_status": self.dkim_status,
            "dns": [r.__dict__ for r in self.dns],
        }


def dns_records(
    domain: str, region: str, dkim_tokens: Iterable[str], mail_from: str
) -> list[DnsRecord]:
    """What the operator publishes: Easy DKIM CNAMEs, MAIL FROM MX + SPF, DMARC (p=none)."""
    records = [
        DnsRecord(
            "CNAME",
            f"{token}._domainkey.{domain}",
            f"{token}.dkim.amazonses.com",
            "DKIM (Easy DKIM)",
        )
        for token in dkim_tokens
    ]
    records += [
        DnsRecord("MX", mail_from, f"10 feedback-smtp.{region}.amazonses.com", "MAIL FROM"),
        DnsRecord("TXT", mail_from, '"v=spf1 include:amazonses.com ~all"', "MAIL FROM SPF"),
        DnsRecord(
            "TXT",
            f"_dmarc.{domain}",
            f'"v=DMARC1; p=none; rua=mailto:dmarc-reports@{domain}"',
            "DMARC (suggestion: start at p=none, tighten once reports are clean)",
        ),
    ]
    return records


def setup(
    clients: AwsClients,
    *,
    domain: str,
    configuration_set: str,
    webhook_url: str | None = None,
    queue_name: str | None = None,
    topic_name: str = DEFAULT_TOPIC,
    mail_from_subdomain: str = "mail",
    log: Callable[[str], None] | None = None,
    tracking: bool = False,
) -> SetupResult:
    """Provision everything SES needs to send for ``domain`` and report back; idempotent.
    ``tracking`` also publishes SES's open and click events (without it, a destination
    that had them is updated to the list without)."""
    domain = _valid_domain(domain)
    if not configuration_set or not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", configuration_set):
        raise ConfigError(
            "configuration set name: set MAILER_SES_CONFIGURATION_SET (letters, digits, - and _)"
        )
    if (webhook_url is None) == (queue_name is None):
        raise ConfigError("pass exactly one of --webhook-url URL or --queue NAME")
    if webhook_url is not None:
        parts = urlsplit(webhook_url)
        if parts.scheme != "https" or not parts.hostname:
            raise ConfigError(f"--webhook-url must be an https URL, got {webhook_url!r}")
    if queue_name is not None and not _QUEUE.match(queue_name):
        raise ConfigError(f"--queue: not an SQS queue name: {queue_name!r}")
    if not _TOPIC.match(topic_name):
        raise ConfigError(f"--topic: not an SNS topic name: {topic_name!r}")
    mail_from = f"{mail_from_subdomain}.{domain}"
    _valid_domain(mail_from)

    say = log or (lambda _line: None)
    result = SetupResult(configuration_set, "", domain)

    def step(line: str) -> None:
        result.steps.append(line)
        say(line)

    _ensure_configuration_set(clients.sesv2, configuration_set, step)
    result.topic_arn = _ensure_topic(clients, topic_name, configuration_set, step)
    if webhook_url is not None:
        result.subscription_arn = _ensure_https(clients.sns, result.topic_arn, webhook_url, step)
    else:
        assert queue_name is not None
        result.queue_url, result.subscription_arn = _ensure_queue(
            clients, result.topic_arn, queue_name, step
        )
    types = EVENT_TYPES + (TRACKING_EVENT_TYPES if tracking else ())
    _ensure_destination(clients.sesv2, configuration_set, result.topic_arn, step, types)
    identity = _ensure_identity(clients.sesv2, domain, configuration_set, mail_from, step)
    dkim = identity.get("DkimAttributes") or {}
    result.identity_verified = bool(identity.get("VerifiedForSendingStatus"))
    result.dkim_status = str(dkim.get("Status", "NOT_STARTED"))
    result.dns = dns_records(domain, clients.region, dkim.get("Tokens") or (), mail_from)
    return result


def _valid_domain(domain: str) -> str:
    d = domain.strip().lower().rstrip(".")
    if not _DOMAIN.match(d):
        raise ConfigError(f"--domain: not a domain name: {domain!r}")
    return d


def _call(what: str, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """One AWS call of a step; its error becomes a SetupError naming ``what``."""
    try:
        return fn(*args, **kwargs)
    except AWS_ERRORS as err:
        raise SetupError(f"{what}: {describe(err)}") from err


def _find(what: str, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T | None:
    """A lookup of a step: None when it does not exist yet; any other error is a
    SetupError naming ``what``."""
    try:
        return find(fn, *args, **kwargs)
    except AWS_ERRORS as err:
        raise SetupError(f"{what}: {describe(err)}") from err


def _ensure_configuration_set(sesv2: SESV2Client, name: str, step: Callable[[str], None]) -> None:
    what = f"GetConfigurationSet {name}"
    if _find(what, sesv2.get_configuration_set, ConfigurationSetName=name) is not None:
        step(f"exists   configuration set {name}")
        return
    _call(
        f"CreateConfigurationSet {name}",
        sesv2.create_configuration_set,
        ConfigurationSetName=name,
        SendingOptions={"SendingEnabled": True},
        ReputationOptions={"ReputationMetricsEnabled": True},
    )
    step(f"created  configuration set {name}")


def _ensure_topic(
    clients: AwsClients, name: str, configuration_set: str, step: Callable[[str], None]
) -> str:
    sns = clients.sns
    existing = _find_topic(sns, name)
    arn: str = existing or _call(f"CreateTopic {name}", sns.create_topic, Name=name)["TopicArn"]
    step(f"{'exists ' if existing else 'created'}  SNS topic {arn}")
    account = arn.split(":")[4]
    partition = arn.split(":")[1]
    source = f"arn:{partition}:ses:{clients.region}:{account}:configuration-set/{configuration_set}"
    statement = {
        "Sid": "AllowSESPublish",
        "Effect": "Allow",
        "Principal": {"Service": "ses.amazonaws.com"},
        "Action": "SNS:Publish",
        "Resource": arn,
        "Condition": {
            "StringEquals": {"AWS:SourceAccount": account},
            "ArnLike": {"AWS:SourceArn": source},
        },
    }
    attrs = _call(f"GetTopicAttributes {arn}", sns.get_topic_attributes, TopicArn=arn)
    current = json.loads((attrs.get("Attributes") or {}).get("Policy") or "{}")
    statements = [s for s in as_list(current.get("Statement")) if s.get("Sid") != "AllowSESPublish"]
    if statement in as_list(current.get("Statement")):
        step("exists   topic policy letting SES publish")
        return arn
    policy_doc = {"Version": "2012-10-17", "Statement": [*statements, statement]}
    _call(
        f"SetTopicAttributes {arn} Policy",
        sns.set_topic_attributes,
        TopicArn=arn,
        AttributeName="Policy",
        AttributeValue=json.dumps(policy_doc),
    )
    step("created  topic policy letting SES publish")
    return arn


def _find_topic(sns: SNSClient, name: str) -> str | None:
    """The ARN of the topic called ``name``, across ListTopics pages."""
    page = _call("ListTopics", sns.list_topics)
    while True:
        for topic in page.get("Topics", []):
            arn = topic.get("TopicArn", "")
            if arn.rsplit(":", 1)[-1] == name:
                return arn
        token = page.get("NextToken")
        if not token:
            return None
        page = _call("ListTopics", sns.list_topics, NextToken=token)


def _ensure_https(sns: SNSClient, topic: str, url: str, step: Callable[[str], None]) -> str:
    for sub in _call_subs(sns, topic):
        if sub.get("Protocol") == "https" and sub.get("Endpoint") == url:
            arn = str(sub.get("SubscriptionArn"))
            step(f"exists   HTTPS subscription {url} ({arn})")
            return arn
    answer = _call(
        f"Subscribe {url}",
        sns.subscribe,
        TopicArn=topic,
        Protocol="https",
        Endpoint=url,
        ReturnSubscriptionArn=True,
    )
    arn = str(answer.get("SubscriptionArn"))
    step(f"created  HTTPS subscription {url} ({arn}); `mailer serve` confirms it on arrival")
    return arn


def _call_subs(sns: SNSClient, topic: str) -> list[SubscriptionTypeDef]:
    try:
        return subscriptions(sns, topic)
    except AWS_ERRORS as err:
        raise SetupError(f"ListSubscriptionsByTopic {topic}: {describe(err)}") from err


def _ensure_queue(
    clients: AwsClients, topic: str, name: str, step: Callable[[str], None]
) -> tuple[str, str]:
    sqs = clients.sqs
    existed = True
    try:
        url = str(sqs.get_queue_url(QueueName=name)["QueueUrl"])
    except AWS_ERRORS as err:
        if "NonExistentQueue" not in error_code(err) and "QueueDoesNotExist" not in error_code(err):
            raise SetupError(f"GetQueueUrl {name}: {describe(err)}") from err
        existed = False
        url = str(_call(f"CreateQueue {name}", sqs.create_queue, QueueName=name)["QueueUrl"])
    step(f"{'exists ' if existed else 'created'}  SQS queue {url}")
    attrs = _call(
        f"GetQueueAttributes {name}",
        sqs.get_queue_attributes,
        QueueUrl=url,
        AttributeNames=["QueueArn", "Policy"],
    )["Attributes"]
    queue_arn = str(attrs["QueueArn"])
    current = json.loads(attrs.get("Policy") or "{}")
    if policy_allows(current, topic):
        step("exists   queue policy letting the topic send")
    else:
        statement = {
            "Sid": f"AllowSNS-{topic.rsplit(':', 1)[-1]}"[:100],
            "Effect": "Allow",
            "Principal": {"Service": "sns.amazonaws.com"},
            "Action": "sqs:SendMessage",
            "Resource": queue_arn,
            "Condition": {"ArnEquals": {"aws:SourceArn": topic}},
        }
        doc = {
            "Version": "2012-10-17",
            "Statement": [*as_list(current.get("Statement")), statement],
        }
        _call(
            f"SetQueueAttributes {name} Policy",
            sqs.set_queue_attributes,
            QueueUrl=url,
            Attributes={"Policy": json.dumps(doc)},
        )
        step("created  queue policy letting the topic send")
    for sub in _call_subs(clients.sns, topic):
        if sub.get("Protocol") == "sqs" and sub.get("Endpoint") == queue_arn:
            arn = str(sub.get("SubscriptionArn"))
            step(f"exists   SQS subscription {queue_arn}")
            return url, arn
    answer = _call(
        f"Subscribe {queue_arn}",
        clients.sns.subscribe,
        TopicArn=topic,
        Protocol="sqs",
        Endpoint=queue_arn,
        ReturnSubscriptionArn=True,
    )
    step(f"created  SQS subscription {queue_arn}")
    return url, str(answer.get("SubscriptionArn"))


def _ensure_destination(
    sesv2: SESV2Client,
    configuration_set: str,
    topic: str,
    step: Callable[[str], None],
    types: tuple[EventTypeType, ...] = EVENT_TYPES,
) -> None:
    wanted: EventDestinationDefinitionTypeDef = {
        "Enabled": True,
        "MatchingEventTypes": list(types),
        "SnsDestination": {"TopicArn": topic},
    }
    answer = _call(
        f"GetConfigurationSetEventDestinations {configuration_set}",
        sesv2.get_configuration_set_event_destinations,
        ConfigurationSetName=configuration_set,
    )
    for dest in answer.get("EventDestinations", []):
        if dest.get("Name") != DESTINATION_NAME:
            continue
        same = (
            dest.get("Enabled") is True
            and set(dest.get("MatchingEventTypes") or ()) == set(types)
            and sns_topic_of(dest) == topic
        )
        if same:
            step(f"exists   event destination {DESTINATION_NAME} -> {topic}")
            return
        _call(
            f"UpdateConfigurationSetEventDestination {DESTINATION_NAME}",
            sesv2.update_configuration_set_event_destination,
            ConfigurationSetName=configuration_set,
            EventDestinationName=DESTINATION_NAME,
            EventDestination=wanted,
        )
        step(f"updated  event destination {DESTINATION_NAME} -> {topic}")
        return
    _call(
        f"CreateConfigurationSetEventDestination {DESTINATION_NAME}",
        sesv2.create_configuration_set_event_destination,
        ConfigurationSetName=configuration_set,
        EventDestinationName=DESTINATION_NAME,
        EventDestination=wanted,
    )
    step(f"created  event destination {DESTINATION_NAME} -> {topic} ({', '.join(types)})")


def _ensure_identity(
    sesv2: SESV2Client,
    domain: str,
    configuration_set: str,
    mail_from: str,
    step: Callable[[str], None],
) -> GetEmailIdentityResponseTypeDef:
    found = _find(f"GetEmailIdentity {domain}", sesv2.get_email_identity, EmailIdentity=domain)
    if found is not None:
        identity = found
        step(f"exists   email identity {domain}")
    else:
        _call(
            f"CreateEmailIdentity {domain}",
            sesv2.create_email_identity,
            EmailIdentity=domain,
            ConfigurationSetName=configuration_set,
        )
        step(f"created  email identity {domain} (Easy DKIM, default configuration set)")
        identity = _call(
            f"GetEmailIdentity {domain}", sesv2.get_email_identity, EmailIdentity=domain
        )
    current = (identity.get("MailFromAttributes") or {}).get("MailFromDomain")
    if current == mail_from:
        step(f"exists   custom MAIL FROM {mail_from}")
    else:
        _call(
            f"PutEmailIdentityMailFromAttributes {domain}",
            sesv2.put_email_identity_mail_from_attributes,
            EmailIdentity=domain,
            MailFromDomain=mail_from,
            BehaviorOnMxFailure="USE_DEFAULT_VALUE",
        )
        step(f"{'updated' if current else 'created'}  custom MAIL FROM {mail_from}")
    return identity
