"""The AWS clients ``mailer doctor`` and ``mailer ses setup`` share, and how they read errors.

Both take their clients injected (:class:`AwsClients`: ``sesv2``, ``sns``, ``sqs``), so tests
drive them over HTTP against moto and the SES-v2 test server, and production builds them once
from settings (``MAILER_SES_REGION``, ``MAILER_SES_ENDPOINT_URL``; SNS and SQS follow boto3's
own lookup, including ``AWS_ENDPOINT_URL_SNS`` / ``AWS_ENDPOINT_URL_SQS``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from botocore.exceptions import BotoCoreError, ClientError, NoRegionError

from mailer.config import Settings
from mailer.errors import ConfigError

if TYPE_CHECKING:
    from boto3.session import Session as Boto3Session
    from mypy_boto3_sesv2 import SESV2Client
    from mypy_boto3_sesv2.type_defs import EventDestinationTypeDef
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sns.type_defs import SubscriptionTypeDef
    from mypy_boto3_sqs import SQSClient

__all__ = [
    "AWS_ERRORS",
    "AwsClients",
    "as_list",
    "describe",
    "error_code",
    "find",
    "policy_allows",
    "sns_topic_of",
    "subscriptions",
]

AWS_ERRORS: tuple[type[Exception], ...] = (BotoCoreError, ClientError)
"""What a boto3 call raises for an AWS or connection problem (anything else is a bug)."""

P = ParamSpec("P")
T = TypeVar("T")


@dataclass
class AwsClients:
    """The three boto3 clients doctor and setup use (inject your own in tests)."""

    sesv2: SESV2Client
    sns: SNSClient
    sqs: SQSClient

    @classmethod
    def from_settings(
        cls, settings: Settings, *, session: Boto3Session | None = None
    ) -> AwsClients:
        # Imported here: boto3 (~100 ms) and botocore.config (~35 ms), measured after
        # `import mailer.cli`: `mailer --help` and every non-AWS command would pay them.
        import boto3
        from botocore.config import Config

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


def error_code(err: Exception) -> str:
    """The AWS error code of a ClientError ("NotFoundException"), else ""."""
    response = getattr(err, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def find(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T | None:
    """``fn``'s answer, or None where AWS answers NotFoundException: how doctor and setup
    look a resource up (any other error is raised as it is)."""
    try:
        return fn(*args, **kwargs)
    except AWS_ERRORS as err:
        if error_code(err) == "NotFoundException":
            return None
        raise


def describe(err: Exception) -> str:
    """The first line of an error, for a doctor line or a setup step."""
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def subscriptions(sns: SNSClient, topic: str) -> list[SubscriptionTypeDef]:
    """Every subscription of ``topic``, across pages."""
    subs: list[SubscriptionTypeDef] = []
    page = sns.list_subscriptions_by_topic(TopicArn=topic)
    while True:
        subs.extend(page.get("Subscriptions", []))
        token = page.get("NextToken")
        if not token:
            return subs
        page = sns.list_subscriptions_by_topic(TopicArn=topic, NextToken=token)


def sns_topic_of(dest: EventDestinationTypeDef) -> str | None:
    """The SNS topic an SES event destination publishes to, if it is an SNS one."""
    sns = dest.get("SnsDestination")
    return sns["TopicArn"] if sns else None


def policy_allows(doc: dict[str, Any], topic: str) -> bool:
    """True when an SQS queue policy lets ``topic`` send to the queue."""
    for stmt in as_list(doc.get("Statement")):
        if stmt.get("Effect") != "Allow":
            continue
        actions = {a.lower() for a in as_list(stmt.get("Action"))}
        if not actions & {"sqs:sendmessage", "sqs:*"}:
            continue
        source = json.dumps(stmt.get("Condition", {}))
        if topic in source:
            return True
    return False


def as_list(value: Any) -> list[Any]:
    """A policy field that may be one value or a list of them, as a list."""
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]
