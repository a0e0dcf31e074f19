"""Pre-send checks: ``mailer doctor``.

Every check is a small function returning :class:`Check` lines (pass, fail or skip) and never
raising for what it checks: an AWS error is a failed line naming the call. The AWS clients
come injected (:class:`mailer.ops.aws.AwsClients`), so tests drive the checks over HTTP
against moto and the SES-v2 test server.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.utils import parseaddr
from typing import TYPE_CHECKING, Literal, ParamSpec, TypeVar
from urllib.parse import urlsplit

from sqlalchemy import Engine

from mailer.config import KEYGEN_HINT, Settings, weak_key_reason
from mailer.issue.model import Issue, Item
from mailer.ops.aws import (
    AWS_ERRORS,
    AwsClients,
    describe,
    find,
    policy_allows,
    sns_topic_of,
    subscriptions,
)
from mailer.render.compiler import GMAIL_CLIP_BYTES, Branding, render_issue
from mailer.render.message import build_preview_message
from subscribers.migrate import current_revision, head_revision

if TYPE_CHECKING:
    from mypy_boto3_sesv2 import SESV2Client
    from mypy_boto3_sesv2.type_defs import GetAccountResponseTypeDef
    from mypy_boto3_sqs import SQSClient

__all__ = [
    "Check",
    "account_checks",
    "check_account",
    "check_base_url",
    "check_configuration_set",
    "check_database",
    "check_feedback_wiring",
    "check_identity",
    "check_message",
    "check_secret_key",
    "domains_of",
    "failed",
    "sample_message",
]

REQUIRED_EVENTS = frozenset({"BOUNCE", "COMPLAINT"})
"""The SES event types without which the feedback rules cannot protect the sender."""
WEBHOOK_PATH = "/webhooks/ses"

Status = Literal["pass", "fail", "skip"]
P = ParamSpec("P")
T = TypeVar("T")


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


# -- local checks --------------------------------------------------------------------


def check_database(engine: Engine) -> Check:
    """Reachable, and migrated to the newest revision."""
    name = "database reachable and migrated"
    where = engine.url.render_as_string(hide_password=True)
    try:
        current = current_revision(engine)
    except Exception as err:  # any driver error: unreachable, auth, missing file
        return _fail(name, f"{where}: {describe(err)}")
    head = head_revision()
    if current != head:
        return _fail(
            name, f"{where} is at revision {current or 'none'}, head is {head}: run `mailer init`"
        )
    return _pass(name, f"{where} at {head}")


#: checks that fail on a laptop by design: no secret key yet, links on http://localhost
_DEVELOPMENT_FAILS = frozenset({"secret key set", "base URL is https", "List-Unsubscribe header"})


def expected_in_development(settings: Settings, checks: Sequence[Check]) -> list[Check]:
    """The failed checks that are expected on a development machine (MAILER_ENV is not
    production and MAILER_BASE_URL is on this machine): what a newcomer's first `mailer
    doctor` fails, which must not read as something broken. Empty anywhere else."""
    host = urlsplit(settings.base_url).hostname or ""
    local = host == "localhost" or host.endswith(".localhost") or _is_loopback(host)
    if settings.production or not local:
        return []
    return [c for c in checks if not c.ok and c.name in _DEVELOPMENT_FAILS]


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_secret_key(settings: Settings) -> Check:
    """The signing keys pass the one strength rule (:func:`mailer.config.weak_key_reason`)
    that sending and serving in the open enforce, old keys included."""
    name = "secret key set"
    reason = weak_key_reason(settings.secret_key)
    if not settings.secret_key:
        return _fail(name, "MAILER_SECRET_KEY is not set: links would be signed with a dev key")
    if reason is not None:
        return _fail(name, f"MAILER_SECRET_KEY {reason} ({KEYGEN_HINT})")
    if any(weak_key_reason(old) is not None for old in settings.old_secret_keys):
        return _fail(
            name, "MAILER_OLD_SECRET_KEYS holds a weak key: links signed with it can be forged"
        )
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


# -- the rendered sample -------------------------------------------------------------


def sample_message(
    settings: Settings,
    *,
    from_address: str,
    newsletter: str = "The China Brief",
    issue: Issue | None = None,
) -> bytes:
    """A complete message as a reader would get it (an issue file's, or a built-in sample)."""
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


def _sample_issue() -> Issue:
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


# -- SES -----------------------------------------------------------------------------


def _lookup(
    what: str, missing: str, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs
) -> T | str:
    """``fn``'s answer, or why there is none: ``missing`` where AWS says it does not
    exist, else ``what`` and the error."""
    try:
        found = find(fn, *args, **kwargs)
    except AWS_ERRORS as err:
        return f"{what}: {describe(err)}"
    return missing if found is None else found


def check_identity(sesv2: SESV2Client, domain: str) -> list[Check]:
    """The From domain: verified for sending, DKIM signing on, a custom MAIL FROM verified."""
    names = (
        f"{domain}: verified in SES",
        f"{domain}: DKIM signing",
        f"{domain}: custom MAIL FROM",
    )
    identity = _lookup(
        "GetEmailIdentity",
        f"no SES identity for {domain}: run `mailer ses setup --domain {domain}`",
        sesv2.get_email_identity,
        EmailIdentity=domain,
    )
    if isinstance(identity, str):
        return [_fail(names[0], identity), Check(names[1], "skip"), Check(names[2], "skip")]
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


def check_configuration_set(sesv2: SESV2Client, name: str) -> tuple[list[Check], list[str]]:
    """The configuration set exists and publishes bounces and complaints; returns the
    checks and the SNS topics its enabled destinations publish to."""
    present = "configuration set present"
    events = "event destination for bounces and complaints"
    if not name:
        return [
            _fail(present, "MAILER_SES_CONFIGURATION_SET is not set: SES would publish no events"),
            Check(events, "skip"),
        ], []
    found = _lookup(
        "GetConfigurationSet",
        f"{name!r} does not exist: run `mailer ses setup`",
        sesv2.get_configuration_set,
        ConfigurationSetName=name,
    )
    if isinstance(found, str):
        return [_fail(present, found), Check(events, "skip")], []
    checks = []
    sending = (found.get("SendingOptions") or {}).get("SendingEnabled", True)
    if sending is False:
        checks.append(_fail(present, f"{name!r} exists but has sending disabled"))
    else:
        checks.append(_pass(present, name))
    try:
        dests = sesv2.get_configuration_set_event_destinations(ConfigurationSetName=name)
    except AWS_ERRORS as err:
        checks.append(_fail(events, f"GetConfigurationSetEventDestinations: {describe(err)}"))
        return checks, []
    covered: set[str] = set()
    topics: list[str] = []
    for dest in dests.get("EventDestinations", []):
        if not dest.get("Enabled", False):
            continue
        sns = sns_topic_of(dest)
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
            subs = subscriptions(clients.sns, topic)
        except AWS_ERRORS as err:
            problems.append(f"{topic}: {describe(err)}")
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


def _queue_verdict(sqs: SQSClient, topic: str, queue_arn: str, wanted: str | None) -> str:
    """ "ok:<queue>" when the subscribed queue exists and its policy admits the topic;
    "" when it is not the queue asked for; else what is wrong."""
    queue_name = queue_arn.rsplit(":", 1)[-1]
    if wanted and wanted.rstrip("/").rsplit("/", 1)[-1] != queue_name:
        return ""
    try:
        url = sqs.get_queue_url(QueueName=queue_name)["QueueUrl"]
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["Policy"])
    except AWS_ERRORS as err:
        return f"{topic} -> SQS {queue_name}: {describe(err)}"
    policy_text = (attrs.get("Attributes") or {}).get("Policy")
    if not policy_text or not policy_allows(json.loads(policy_text), topic):
        return f"{topic} -> SQS {queue_name}: the queue policy does not let the topic send"
    return f"ok:{url}"


def check_account(sesv2: SESV2Client) -> list[Check]:
    """GetAccount: sending enabled, not under review or shut down, out of the sandbox."""
    names = ("SES account sending enabled", "SES account not under review", "SES production")
    try:
        account = sesv2.get_account()
    except AWS_ERRORS as err:
        why = f"GetAccount: {describe(err)}"
        return [_fail(names[0], why), Check(names[1], "skip"), Check(names[2], "skip")]
    return account_checks(account)


def account_checks(account: GetAccountResponseTypeDef) -> list[Check]:
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


def domains_of(from_addresses: Iterable[str]) -> list[str]:
    """The distinct domains of From addresses ("Name <a@b>" or "a@b"), sorted."""
    out = set()
    for value in from_addresses:
        addr = parseaddr(value)[1]
        if "@" in addr:
            out.add(addr.rpartition("@")[2].lower())
    return sorted(out)


def failed(checks: Iterable[Check]) -> list[Check]:
    return [c for c in checks if not c.ok]
