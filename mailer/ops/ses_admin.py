"""Pre-send checks (``mailer doctor``) and SES provisioning (``mailer ses setup``).

Both take their AWS clients injected (:class:`AwsClients`: ``sesv2``, ``sns``, ``sqs``), so
tests drive them over HTTP against moto and the SES-v2 test server, and production builds
them once from settings (``MAILER_SES_REGION``, ``MAILER_SES_ENDPOINT_URL``; SNS and SQS
follow boto3's own lookup, including ``AWS_ENDPOINT_URL_SNS`` / ``AWS_ENDPOINT_URL_SQS``).

Doctor: every check is a small function returning :class:`Check` lines (pass, fail or
skip) and never raising for what it checks: an AWS error is a failed line naming the call.

Setup: each step looks before it creates, so running it again changes nothing:

    configuration set  -> GetConfigurationSet, else CreateConfigurationSet
    SNS topic          -> CreateTopic (idempotent by name) + a policy letting SES publish
    HTTPS subscription -> Subscribe unless the topic already has it, or
    SQS queue          -> CreateQueue + a policy letting the topic send + Subscribe
    event destination  -> Create/UpdateConfigurationSetEventDestination (SNS; bounces,
                          complaints, deliveries, rejects, rendering failures, delays)
    email identity     -> GetEmailIdentity, else CreateEmailIdentity (Easy DKIM), and a
                          custom MAIL FROM (PutEmailIdentityMailFromAttributes)

and the result lists the DNS records the operator must publish (DKIM CNAMEs from the
identity's tokens, MAIL FROM MX and SPF, a DMARC suggestion).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from typing import Any, Literal
from urllib.parse import urlsplit

from sqlalchemy import Engine

from mailer.config import Settings
from mailer.errors import ConfigError, SetupError

__all__ = [
    "EVENT_TYPES",
    "GMAIL_CLIP_BYTES",
    "AwsClients",
    "Check",
    "DnsRecord",
    "SetupResult",
    "account_checks",
    "check_account",
    "check_base_url",
    "check_configuration_set",
    "check_database",
    "check_feedback_wiring",
    "check_identity",
    "check_message",
    "check_secret_key",
    "dns_records",
    "domains_of",
    "failed",
    "sample_message",
    "setup",
]

GMAIL_CLIP_BYTES = 102 * 1024
"""Gmail clips a message whose HTML is larger than about 102 KB ("[Message clipped]"),
hiding the footer with the unsubscribe link."""

EVENT_TYPES = ("BOUNCE", "COMPLAINT", "DELIVERY", "REJECT", "RENDERING_FAILURE", "DELIVERY_DELAY")
"""What ``ses setup`` publishes to SNS: everything the feedback rules act on or count."""

REQUIRED_EVENTS = frozenset({"BOUNCE", "COMPLAINT"})
DESTINATION_NAME = "brief-mailer-sns"
DEFAULT_TOPIC = "brief-mailer-ses-events"
WEBHOOK_PATH = "/webhooks/ses"
MIN_SECRET_KEY = 16

_DOMAIN = re.compile(r"^(?=.{1,253}$)(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))+$")
_QUEUE = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
_TOPIC = re.compile(r"^[A-Za-z0-9_-]{1,256}$")

Status = Literal["pass", "fail", "skip"]


@dataclass(frozen=True)
class Check:
    """One line of ``mailer doctor``."""

    name: str
    status: Status
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status != "fail"

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "status": self.status, "detail": self.detail}


def _pass(name: str, detail: str = "") -> Check:
    return Check(name, "pass", detail)


def _fail(name: str, detail: str) -> Check:
    return Check(name, "fail", detail)


# -- clients ---------------------------------------------------------------------------------


@dataclass
class AwsClients:
    """The three boto3 clients doctor and setup use (inject your own in tests)."""

    sesv2: Any
    sns: Any
    sqs: Any

    @classmethod
    def from_settings(cls, settings: Settings, *, session: Any = None) -> AwsClients:
        import boto3
        from botocore.config import Config
        from botocore.exceptions import NoRegionError

        config = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5)
        sess = session or boto3.session.Session()
        region = settings.ses_region or None
        try:
            return cls(
                sesv2=sess.client(
                    "sesv2",
                    region_name=region,
                    endpoint_url=settings.ses_endpoint_url or None,
                    config=config,
                ),
                sns=sess.client("sns", region_name=region, config=config),
                sqs=sess.client("sqs", region_name=region, config=config),
            )
        except NoRegionError as err:
            raise ConfigError(
                "no AWS region: set MAILER_SES_REGION (or AWS_REGION / AWS_DEFAULT_REGION)"
            ) from err
        except ValueError as err:
            raise ConfigError(f"MAILER_SES_ENDPOINT_URL: {err}") from err

    @property
    def region(self) -> str:
        return str(self.sesv2.meta.region_name)


def _error_code(err: Exception) -> str:
    response = getattr(err, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def _aws_errors() -> tuple[type[Exception], ...]:
    from botocore.exceptions import BotoCoreError, ClientError

    return (BotoCoreError, ClientError)


def _describe(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


# -- doctor: local checks --------------------------------------------------------------------


def check_database(engine: Engine) -> Check:
    """Reachable, and migrated to the newest revision."""
    from subscribers.migrate import current_revision, head_revision

    name = "database reachable and migrated"
    where = engine.url.render_as_string(hide_password=True)
    try:
        current = current_revision(engine)
    except Exception as err:  # any driver error: unreachable, auth, missing file
        return _fail(name, f"{where}: {_describe(err)}")
    head = head_revision()
    if current != head:
        return _fail(
            name, f"{where} is at revision {current or 'none'}, head is {head}: run `mailer init`"
        )
    return _pass(name, f"{where} at {head}")


def check_secret_key(settings: Settings) -> Check:
    name = "secret key set"
    if not settings.secret_key:
        return _fail(name, "MAILER_SECRET_KEY is not set: links would be signed with a dev key")
    if len(settings.secret_key) < MIN_SECRET_KEY:
        return _fail(name, f"MAILER_SECRET_KEY is shorter than {MIN_SECRET_KEY} characters")
    return _pass(name, f"{len(settings.secret_key)} characters")


def check_base_url(settings: Settings) -> Check:
    name = "base URL is https"
    parts = urlsplit(settings.base_url)
    if parts.scheme != "https":
        return _fail(
            name, f"MAILER_BASE_URL is {settings.base_url!r}: readers' links must be https"
        )
    if parts.hostname in {"localhost", "127.0.0.1", "::1"}:
        return _fail(name, f"MAILER_BASE_URL points at {parts.hostname}: readers cannot reach it")
    return _pass(name, settings.public_base)


# -- doctor: the rendered sample -------------------------------------------------------------


def sample_message(
    settings: Settings,
    *,
    from_address: str,
    newsletter: str = "The China Brief",
    issue: Any = None,
) -> bytes:
    """A complete message as a reader would get it (an issue file's, or a built-in sample)."""
    from mailer.render.compiler import Branding, render_issue
    from mailer.render.message import build_preview_message

    rendered = render_issue(issue or _sample_issue(), Branding.from_settings(settings, newsletter))
    base = settings.public_base
    return build_preview_message(
        rendered,
        from_address=from_address,
        to="reader@example.com",
        unsubscribe_url=f"{base}/unsubscribe/SAMPLE-TOKEN",
        preferences_url=f"{base}/preferences/SAMPLE-TOKEN",
        list_name=newsletter,
        name="Sample Reader",
    )


def _sample_issue() -> Any:
    from mailer.issue.model import Issue, Item

    topics = ("trade", "energy", "technology", "cities", "diplomacy", "markets", "law")
    items = tuple(
        Item(
            title=f"Sample story {n + 1} on {topic}",
            source="Sample Wire",
            paragraphs=(
                f"A sample paragraph about {topic}, as long as a real summary tends to be: a "
                "few sentences that say what happened, who said so, and why it matters.",
                "A second, shorter paragraph with a reaction or a number.",
            ),
            url=f"https://news.example.com/{topic}/sample-{n + 1}",
        )
        for n, topic in enumerate(topics)
    )
    return Issue(
        subject="Sample issue: seven stories",
        preheader="What a typical issue looks like to doctor",
        date=None,
        intro=("The sample intro of a typical issue.",),
        items=items,
        closing=("The sample closing line.",),
    )


def check_message(raw: bytes) -> list[Check]:
    """RFC 8058 one-click unsubscribe headers, a plain-text part, and an HTML size Gmail
    will not clip (the HTML part as transmitted)."""
    msg = message_from_bytes(raw, policy=policy.default)
    checks: list[Check] = []
    unsub = str(msg.get("List-Unsubscribe", "") or "")
    urls = re.findall(r"<([^>]+)>", unsub)
    name = "List-Unsubscribe header"
    if not unsub:
        checks.append(_fail(name, "missing: Gmail and Yahoo require it of bulk senders"))
    elif not any(u.startswith("https://") for u in urls):
        checks.append(_fail(name, f"no https URL in {unsub[:120]!r}"))
    else:
        checks.append(_pass(name, urls[0][:120]))
    post = str(msg.get("List-Unsubscribe-Post", "") or "")
    name = "List-Unsubscribe-Post header"
    if post.replace(" ", "") != "List-Unsubscribe=One-Click":
        checks.append(
            _fail(name, f"{post!r}: must be 'List-Unsubscribe=One-Click' (RFC 8058)")
            if post
            else _fail(name, "missing: one-click unsubscribe (RFC 8058) needs it")
        )
    else:
        checks.append(_pass(name, post))
    parts = {part.get_content_type(): part for part in msg.walk() if not part.is_multipart()}
    name = "plain-text part"
    text = parts.get("text/plain")
    if text is None or not str(text.get_content()).strip():
        checks.append(_fail(name, "no text/plain alternative: plain-text readers see nothing"))
    else:
        checks.append(_pass(name, f"{len(str(text.get_content()))} characters"))
    name = "size under Gmail's clipping limit"
    html = parts.get("text/html")
    if html is None:
        checks.append(_fail(name, "no text/html part"))
    else:
        size = len(html.as_bytes(policy=policy.SMTP).split(b"\r\n\r\n", 1)[-1])
        limit = GMAIL_CLIP_BYTES
        detail = (
            f"HTML {size / 1024:.1f} KB of {limit // 1024} KB; message {len(raw) / 1024:.1f} KB"
        )
        checks.append(_pass(name, detail) if size < limit else _fail(name, detail + ": clipped"))
    return checks


# -- doctor: SES -----------------------------------------------------------------------------


def check_identity(sesv2: Any, domain: str) -> list[Check]:
    """The From domain: verified for sending, DKIM signing on, a custom MAIL FROM verified."""
    names = (
        f"{domain}: verified in SES",
        f"{domain}: DKIM signing",
        f"{domain}: custom MAIL FROM",
    )
    try:
        identity = sesv2.get_email_identity(EmailIdentity=domain)
    except _aws_errors() as err:
        if _error_code(err) == "NotFoundException":
            why = f"no SES identity for {domain}: run `mailer ses setup --domain {domain}`"
        else:
            why = f"GetEmailIdentity: {_describe(err)}"
        return [_fail(names[0], why), Check(names[1], "skip"), Check(names[2], "skip")]
    out = []
    status = identity.get("VerificationStatus", "?")
    if identity.get("VerifiedForSendingStatus"):
        out.append(_pass(names[0], f"VerificationStatus {status}"))
    else:
        out.append(_fail(names[0], f"not verified for sending (VerificationStatus {status})"))
    dkim = identity.get("DkimAttributes") or {}
    if dkim.get("SigningEnabled") and dkim.get("Status") == "SUCCESS":
        out.append(_pass(names[1], f"{dkim.get('SigningAttributesOrigin', 'AWS_SES')}"))
    else:
        out.append(
            _fail(
                names[1],
                f"SigningEnabled={bool(dkim.get('SigningEnabled'))}, "
                f"Status={dkim.get('Status', 'NOT_STARTED')}: publish the DKIM CNAMEs",
            )
        )
    mail_from = identity.get("MailFromAttributes") or {}
    if not mail_from.get("MailFromDomain"):
        out.append(_fail(names[2], "none: SPF does not align with the From domain for DMARC"))
    elif mail_from.get("MailFromDomainStatus") != "SUCCESS":
        out.append(
            _fail(
                names[2],
                f"{mail_from['MailFromDomain']} is {mail_from.get('MailFromDomainStatus')}: "
                "publish its MX and SPF records",
            )
        )
    else:
        out.append(_pass(names[2], str(mail_from["MailFromDomain"])))
    return out


def check_configuration_set(sesv2: Any, name: str) -> tuple[list[Check], list[str]]:
    """The configuration set exists and publishes bounces and complaints; returns the
    checks and the SNS topics its enabled destinations publish to."""
    present = "configuration set present"
    events = "event destination for bounces and complaints"
    if not name:
        return [
            _fail(present, "MAILER_SES_CONFIGURATION_SET is not set: SES would publish no events"),
            Check(events, "skip"),
        ], []
    try:
        found = sesv2.get_configuration_set(ConfigurationSetName=name)
    except _aws_errors() as err:
        if _error_code(err) == "NotFoundException":
            why = f"{name!r} does not exist: run `mailer ses setup`"
        else:
            why = f"GetConfigurationSet: {_describe(err)}"
        return [_fail(present, why), Check(events, "skip")], []
    checks = []
    sending = (found.get("SendingOptions") or {}).get("SendingEnabled", True)
    if sending is False:
        checks.append(_fail(present, f"{name!r} exists but has sending disabled"))
    else:
        checks.append(_pass(present, name))
    try:
        dests = sesv2.get_configuration_set_event_destinations(ConfigurationSetName=name)
    except _aws_errors() as err:
        checks.append(_fail(events, f"GetConfigurationSetEventDestinations: {_describe(err)}"))
        return checks, []
    covered: set[str] = set()
    topics: list[str] = []
    for dest in dests.get("EventDestinations", []):
        if not dest.get("Enabled", False):
            continue
        sns = (dest.get("SnsDestination") or {}).get("TopicArn")
        types = set(dest.get("MatchingEventTypes") or ())
        if sns and types & REQUIRED_EVENTS:
            covered |= types
            if sns not in topics:
                topics.append(sns)
    missing = sorted(REQUIRED_EVENTS - covered)
    if missing:
        checks.append(
            _fail(events, f"no enabled SNS destination publishes {', '.join(missing)} events")
        )
    else:
        checks.append(_pass(events, ", ".join(topics)))
    return checks, topics


def check_feedback_wiring(
    clients: AwsClients, settings: Settings, topics: Sequence[str], *, queue: str | None = None
) -> Check:
    """Each topic SES publishes to reaches us: a confirmed HTTPS subscription to our webhook
    (its topic allowlisted in MAILER_SNS_TOPIC_ARNS), or an SQS queue that lets it send."""
    name = "SNS topic wired to the webhook or an SQS queue"
    if not topics:
        return Check(name, "skip", "no SNS event destination to follow")
    webhook = settings.public_base + WEBHOOK_PATH
    problems: list[str] = []
    wired: list[str] = []
    for topic in topics:
        try:
            clients.sns.get_topic_attributes(TopicArn=topic)
            subs = _subscriptions(clients.sns, topic)
        except _aws_errors() as err:
            problems.append(f"{topic}: {_describe(err)}")
            continue
        found = None
        for sub in subs:
            if sub.get("Protocol") == "https" and sub.get("Endpoint") == webhook:
                if sub.get("SubscriptionArn", "").startswith("arn:"):
                    if topic in settings.sns_topic_arns:
                        found = f"{topic} -> {webhook}"
                    else:
                        problems.append(
                            f"{topic} posts to the webhook but is not in MAILER_SNS_TOPIC_ARNS"
                        )
                else:
                    problems.append(f"{topic} -> {webhook} is pending confirmation")
            elif sub.get("Protocol") == "sqs":
                verdict = _queue_verdict(clients.sqs, topic, str(sub.get("Endpoint")), queue)
                if verdict.startswith("ok:"):
                    found = f"{topic} -> {verdict[3:]}"
                elif verdict:
                    problems.append(verdict)
            if found:
                break
        if found:
            wired.append(found)
        elif not any(p.startswith(topic) for p in problems):
            problems.append(
                f"{topic} has no subscription to {webhook} or to an SQS queue"
                + (f" named {queue}" if queue else "")
            )
    if problems:
        return _fail(name, "; ".join(problems))
    return _pass(name, "; ".join(wired))


def _subscriptions(sns: Any, topic: str) -> list[dict[str, Any]]:
    subs: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"TopicArn": topic}
    while True:
        page = sns.list_subscriptions_by_topic(**kwargs)
        subs.extend(page.get("Subscriptions", []))
        token = page.get("NextToken")
        if not token:
            return subs
        kwargs["NextToken"] = token


def _queue_verdict(sqs: Any, topic: str, queue_arn: str, wanted: str | None) -> str:
    """ "ok:<queue>" when the subscribed queue exists and its policy admits the topic;
    "" when it is not the queue asked for; else what is wrong."""
    queue_name = queue_arn.rsplit(":", 1)[-1]
    if wanted and wanted.rstrip("/").rsplit("/", 1)[-1] != queue_name:
        return ""
    try:
        url = sqs.get_queue_url(QueueName=queue_name)["QueueUrl"]
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["Policy"])
    except _aws_errors() as err:
        return f"{topic} -> SQS {queue_name}: {_describe(err)}"
    policy_text = (attrs.get("Attributes") or {}).get("Policy")
    if not policy_text or not _policy_allows(json.loads(policy_text), topic):
        return f"{topic} -> SQS {queue_name}: the queue policy does not let the topic send"
    return f"ok:{url}"


def _policy_allows(doc: dict[str, Any], topic: str) -> bool:
    for stmt in _as_list(doc.get("Statement")):
        if stmt.get("Effect") != "Allow":
            continue
        actions = {a.lower() for a in _as_list(stmt.get("Action"))}
        if not actions & {"sqs:sendmessage", "sqs:*"}:
            continue
        source = json.dumps(stmt.get("Condition", {}))
        if topic in source:
            return True
    return False


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def check_account(sesv2: Any) -> list[Check]:
    """GetAccount: sending enabled, not under review or shut down, out of the sandbox."""
    names = ("SES account sending enabled", "SES account not under review", "SES production")
    try:
        account = sesv2.get_account()
    except _aws_errors() as err:
        why = f"GetAccount: {_describe(err)}"
        return [_fail(names[0], why), Check(names[1], "skip"), Check(names[2], "skip")]
    return account_checks(account)


def account_checks(account: dict[str, Any]) -> list[Check]:
    """Judge a GetAccount answer (split out so every status can be tested)."""
    out = []
    quota = account.get("SendQuota") or {}
    if account.get("SendingEnabled"):
        out.append(
            _pass(
                "SES account sending enabled",
                f"MaxSendRate {quota.get('MaxSendRate', '?')}/s, "
                f"{quota.get('SentLast24Hours', '?')} of {quota.get('Max24HourSend', '?')} "
                "sent in 24h",
            )
        )
    else:
        out.append(_fail("SES account sending enabled", "SendingEnabled is false: SES is paused"))
    status = account.get("EnforcementStatus", "HEALTHY")
    if status == "HEALTHY":
        out.append(_pass("SES account not under review", "EnforcementStatus HEALTHY"))
    elif status == "PROBATION":
        out.append(
            _fail(
                "SES account not under review",
                "EnforcementStatus PROBATION: under review; fix bounces/complaints first",
            )
        )
    else:
        out.append(_fail("SES account not under review", f"EnforcementStatus {status}"))
    if account.get("ProductionAccessEnabled"):
        out.append(_pass("SES production", "ProductionAccessEnabled"))
    else:
        out.append(
            _fail(
                "SES production",
                "the account is in the SES sandbox: only verified recipients get mail",
            )
        )
    return out


# -- setup -----------------------------------------------------------------------------------


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
) -> SetupResult:
    """Provision everything SES needs to send for ``domain`` and report back; idempotent."""
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
    _ensure_destination(clients.sesv2, configuration_set, result.topic_arn, step)
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


def _call(what: str, fn: Callable[..., Any], **kwargs: Any) -> Any:
    try:
        return fn(**kwargs)
    except _aws_errors() as err:
        raise SetupError(f"{what}: {_describe(err)}") from err


def _ensure_configuration_set(sesv2: Any, name: str, step: Callable[[str], None]) -> None:
    try:
        sesv2.get_configuration_set(ConfigurationSetName=name)
        step(f"exists   configuration set {name}")
        return
    except _aws_errors() as err:
        if _error_code(err) != "NotFoundException":
            raise SetupError(f"GetConfigurationSet {name}: {_describe(err)}") from err
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
    statements = [
        s for s in _as_list(current.get("Statement")) if s.get("Sid") != "AllowSESPublish"
    ]
    if statement in _as_list(current.get("Statement")):
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


def _find_topic(sns: Any, name: str) -> str | None:
    kwargs: dict[str, Any] = {}
    while True:
        page = _call("ListTopics", sns.list_topics, **kwargs)
        for topic in page.get("Topics", []):
            if str(topic.get("TopicArn", "")).rsplit(":", 1)[-1] == name:
                return str(topic["TopicArn"])
        token = page.get("NextToken")
        if not token:
            return None
        kwargs["NextToken"] = token


def _ensure_https(sns: Any, topic: str, url: str, step: Callable[[str], None]) -> str:
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


def _call_subs(sns: Any, topic: str) -> list[dict[str, Any]]:
    try:
        return _subscriptions(sns, topic)
    except _aws_errors() as err:
        raise SetupError(f"ListSubscriptionsByTopic {topic}: {_describe(err)}") from err


def _ensure_queue(
    clients: AwsClients, topic: str, name: str, step: Callable[[str], None]
) -> tuple[str, str]:
    sqs = clients.sqs
    existed = True
    try:
        url = str(sqs.get_queue_url(QueueName=name)["QueueUrl"])
    except _aws_errors() as err:
        if "NonExistentQueue" not in _error_code(err) and "QueueDoesNotExist" not in _error_code(
            err
        ):
            raise SetupError(f"GetQueueUrl {name}: {_describe(err)}") from err
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
    if _policy_allows(current, topic):
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
            "Statement": [*_as_list(current.get("Statement")), statement],
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
    sesv2: Any, configuration_set: str, topic: str, step: Callable[[str], None]
) -> None:
    wanted = {
        "Enabled": True,
        "MatchingEventTypes": list(EVENT_TYPES),
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
            and set(dest.get("MatchingEventTypes") or ()) == set(EVENT_TYPES)
            and (dest.get("SnsDestination") or {}).get("TopicArn") == topic
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
    step(f"created  event destination {DESTINATION_NAME} -> {topic} ({', '.join(EVENT_TYPES)})")


def _ensure_identity(
    sesv2: Any, domain: str, configuration_set: str, mail_from: str, step: Callable[[str], None]
) -> dict[str, Any]:
    try:
        identity: dict[str, Any] = sesv2.get_email_identity(EmailIdentity=domain)
        step(f"exists   email identity {domain}")
    except _aws_errors() as err:
        if _error_code(err) != "NotFoundException":
            raise SetupError(f"GetEmailIdentity {domain}: {_describe(err)}") from err
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


def domains_of(from_addresses: Iterable[str]) -> list[str]:
    """The distinct domains of From addresses ("Name <a@b>" or "a@b"), sorted."""
    from email.utils import parseaddr

    out = set()
    for value in from_addresses:
        addr = parseaddr(value)[1]
        if "@" in addr:
            out.add(addr.rpartition("@")[2].lower())
    return sorted(out)


def failed(checks: Iterable[Check]) -> list[Check]:
    return [c for c in checks if not c.ok]
