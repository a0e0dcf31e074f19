"""The SES transport: Amazon SES v2 through one shared boto3 ``sesv2`` client.

Two modes (``MAILER_SES_API``):

* ``single`` (default), :class:`SesTransport`: one ``SendEmail`` per reader with the raw
  MIME message built by ``mailer.render.message``.
* ``bulk``, :class:`SesBulkTransport`: one ``SendBulkEmail`` per 50 readers. The campaign's
  bodies become an inline template once (:mod:`mailer.transports.ses_template`); each entry
  carries the reader's values (``ReplacementTemplateData``) and headers
  (``ReplacementHeaders``: List-Unsubscribe, List-Unsubscribe-Post). The engine skips
  building raw messages (``wants_raw = False``).

Both tag every message with ``campaign`` and ``delivery`` (EmailTags) so SES events can be
matched to ledger rows without parsing headers, and use ``MAILER_SES_CONFIGURATION_SET``.

The client is built once per transport: ``max_pool_connections`` follows
``MAILER_SEND_CONCURRENCY``, and botocore makes a single attempt so throttling and 5xx reach
the engine's own backoff and rate limiter instead of hiding inside the SDK. Region and
credentials come from boto3's standard lookup unless ``MAILER_SES_REGION`` is set;
``MAILER_SES_ENDPOINT_URL`` points at a local server (moto, ``tests.support.ses_server``).
Error mapping: :mod:`mailer.transports.ses_errors`.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from email.header import Header
from email.utils import formataddr, parseaddr
from typing import TYPE_CHECKING, Any

# at the top: whoever imports this module builds a client (mailer.transports imports it
# lazily); botocore is loaded by ses_http anyway, boto3 adds 20-110 ms (-X importtime)
import boto3
from botocore.config import Config
from botocore.exceptions import NoRegionError

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
from mailer.transports.base import CampaignMessage, OutgoingMessage, SendQuota, SendResult
from mailer.transports.ses_errors import classify, classify_bulk_status
from mailer.transports.ses_http import RawSend, SesHttp, bulk_base
from mailer.transports.ses_template import SesTemplate, SplitFn, build_template

if TYPE_CHECKING:
    from mypy_boto3_sesv2 import SESV2Client
else:
    SESV2Client = Any

BULK_MAX = 50
_TAG_BAD = re.compile(r"[^A-Za-z0-9_-]")
#: Headers SES builds itself or takes from request fields; never passed as extra headers.
_MANAGED_HEADERS = frozenset(
    h.lower()
    for h in (
        "From",
        "To",
        "Cc",
        "Bcc",
        "Reply-To",
        "Subject",
        "Date",
        "Message-ID",
        "MIME-Version",
        "Content-Type",
        "Content-Transfer-Encoding",
        "Return-Path",
    )
)
_HEADER_NAME = re.compile(r"[!-9;-~]{1,126}")
_MAX_HEADERS = 15


def make_ses_client(settings: Settings, *, session: Any = None) -> SESV2Client:
    """One ``sesv2`` client sized for the send concurrency; single attempt per call."""
    config = Config(
        max_pool_connections=max(10, settings.send_concurrency + 4),
        retries={"mode": "standard", "total_max_attempts": 1},
        # our requests are built by code, and SES validates them anyway; botocore's own
        # walk over every bulk entry cost ~8% of the sender's CPU
        parameter_validation=False,
        connect_timeout=5,
        read_timeout=30,
        tcp_keepalive=True,
    )
    # boto3's default session (as boto3.client uses) unless one is injected: models and
    # credentials are loaded once per process, not once per transport.
    make = session.client if session is not None else boto3.client
    try:
        client: SESV2Client = make(
            "sesv2",
            region_name=settings.ses_region or None,
            endpoint_url=settings.ses_endpoint_url or None,
            config=config,
        )
    except NoRegionError as err:
        raise ConfigError(
            "no AWS region for SES: set MAILER_SES_REGION (or AWS_REGION / AWS_DEFAULT_REGION)"
        ) from err
    except ValueError as err:  # e.g. a malformed endpoint URL
        raise ConfigError(f"MAILER_SES_ENDPOINT_URL: {err}") from err
    return client


def ses_send_quota(client: SESV2Client) -> SendQuota:
    """``(max_send_rate, max_24h_send, sent_last_24h)`` from GetAccount, for the limiter.

    Values are SES's own: a max_24h of -1 means "no daily limit"."""
    try:
        account = client.get_account()
    except Exception as err:
        raise classify(err) from err
    quota = account.get("SendQuota", {})
    return SendQuota(
        float(quota.get("MaxSendRate", 0.0)),
        float(quota.get("Max24HourSend", 0.0)),
        float(quota.get("SentLast24Hours", 0.0)),
    )


def tag_value(value: object) -> str:
    """An SES message tag name/value: ASCII letters, digits, ``_`` and ``-``; <= 256 chars."""
    text = _TAG_BAD.sub("_", str(value))[:256]
    return text or "_"


def _tags(campaign: CampaignMessage, delivery_id: int) -> list[dict[str, str]]:
    """The message's EmailTags: the campaign's own, then ``campaign`` and ``delivery``."""
    own = _campaign_tags(campaign.campaign_id, tuple(campaign.tags.items()))
    return [*own, {"Name": "delivery", "Value": str(delivery_id)}]


@functools.lru_cache(maxsize=16)
def _campaign_tags(campaign_id: int, tags: tuple[tuple[str, str], ...]) -> list[dict[str, str]]:
    """Cleaned once per campaign, not per reader."""
    clean = {tag_value(k): tag_value(v) for k, v in tags}
    clean["campaign"] = str(campaign_id)
    clean.pop("delivery", None)
    return [{"Name": k, "Value": v} for k, v in clean.items()]


def header_value(value: str) -> str:
    """A header value as SES accepts it: one printable-ASCII line (RFC 2047 when needed)."""
    flat = " ".join(value.split())
    if flat.isascii():
        return flat
    return " ".join(Header(flat, "utf-8", maxlinelen=10_000).encode().split())


def _headers(headers: Mapping[str, str], where: str) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    for name, value in headers.items():
        if name.lower() in _MANAGED_HEADERS:
            continue
        if not _HEADER_NAME.fullmatch(name):
            raise FatalSendError(f"{where}: header name {name!r} is not valid for SES")
        text = header_value(value)
        if not text or len(text) > 995:
            raise FatalSendError(f"{where}: header {name} is empty or over 995 characters")
        out.append({"Name": name, "Value": text})
    if len(out) > _MAX_HEADERS:
        raise FatalSendError(f"{where}: SES takes at most {_MAX_HEADERS} extra headers")
    return out


def _sender(address: str) -> str:
    """A From address SES accepts: the display name RFC 2047-encoded if not ASCII."""
    name, addr = parseaddr(address)
    if not addr:
        raise FatalSendError(f"campaign From address {address!r} is not an email address")
    return formataddr((name, addr), charset="utf-8") if name else addr


def _halts(campaign: CampaignMessage) -> Callable[[Exception], bool]:
    """Which SES errors stop every later call: those that pause the campaign."""

    def halt(err: Exception) -> bool:
        return isinstance(classify(err, from_address=campaign.from_address), FatalSendError)

    return halt


class _SesBase:
    name = "ses"

    def __init__(
        self,
        client: SESV2Client,
        *,
        configuration_set: str = "",
        concurrency: int | None = None,
    ) -> None:
        self.client = client
        self.configuration_set = configuration_set
        # the per-reader calls; the client keeps GetAccount and the rest (see ses_http)
        self.http = SesHttp(client, concurrency=concurrency)

    def quota(self) -> SendQuota:
        """See :func:`ses_send_quota`."""
        return ses_send_quota(self.client)

    def close(self) -> None:
        self.http.close()
        self.client.close()


class SesTransport(_SesBase):
    """``SendEmail`` with the raw message, one call per reader; the calls of a batch run at
    once on the shared event loop (:class:`~mailer.transports.ses_http.SesHttp`)."""

    max_batch = BULK_MAX
    wants_raw = True
    concurrent_batch = True  # one call per message, all at once

    def send(self, campaign: CampaignMessage, batch: Sequence[OutgoingMessage]) -> list[SendResult]:
        answers = self.http.send_raw_many(
            [RawSend(m.to, m.raw, _tags(campaign, m.delivery_id)) for m in batch],
            configuration_set=self.configuration_set,
            halt=_halts(campaign),
        )
        results: list[SendResult] = []
        fatal: FatalSendError | None = None
        for answer in answers:
            if isinstance(answer, str):
                results.append(SendResult(message_id=answer))
                continue
            error = classify(answer, from_address=campaign.from_address)
            if isinstance(error, FatalSendError):
                # refused at account level, or never started after such a refusal
                fatal = fatal or error
                error = NotSentError(error)
            results.append(SendResult(error=error))
        if fatal is not None and not any(r.ok for r in results):
            raise fatal  # nothing went out: the campaign pauses, the rows are untouched
        return results


class SesBulkTransport(_SesBase):
    """``SendBulkEmail`` with an inline template, up to 50 readers per call."""

    max_batch = BULK_MAX
    wants_raw = False
    concurrent_batch = False  # one call for the whole batch

    def __init__(
        self,
        client: SESV2Client,
        *,
        configuration_set: str = "",
        split: SplitFn | None = None,
        concurrency: int | None = None,
    ) -> None:
        super().__init__(client, configuration_set=configuration_set, concurrency=concurrency)
        self._split = split or split_template
        self._lock = threading.Lock()
        self._cache: dict[int, tuple[CampaignMessage, SesTemplate, str]] = {}

    def _prepared(self, campaign: CampaignMessage) -> tuple[SesTemplate, str]:
        """The campaign's template and the request without entries, serialized once."""
        hit = self._cache.get(campaign.campaign_id)
        if hit is not None and (hit[0] is campaign or hit[0] == campaign):
            return hit[1], hit[2]
        template = build_template(campaign.subject, campaign.html, campaign.text, self._split)
        content: dict[str, Any] = {
            "TemplateContent": {
                "Subject": template.subject,
                "Html": template.html,
                "Text": template.text,
            },
            "TemplateData": "{}",
        }
        headers = _headers(campaign.headers, "campaign headers")
        if headers:
            content["Headers"] = headers
        base: dict[str, Any] = {
            "FromEmailAddress": _sender(campaign.from_address),
            "DefaultContent": {"Template": content},
        }
        if campaign.reply_to:
            base["ReplyToAddresses"] = [campaign.reply_to]
        if campaign.tags:
            base["DefaultEmailTags"] = [
                {"Name": tag_value(k), "Value": tag_value(v)} for k, v in campaign.tags.items()
            ]
        if self.configuration_set:
            base["ConfigurationSetName"] = self.configuration_set
        base_json = bulk_base(base)
        with self._lock:
            if len(self._cache) > 8:
                self._cache.clear()
            self._cache[campaign.campaign_id] = (campaign, template, base_json)
        return template, base_json

    def send(self, campaign: CampaignMessage, batch: Sequence[OutgoingMessage]) -> list[SendResult]:
        if len(batch) > BULK_MAX:
            raise ValueError(f"SES bulk takes at most {BULK_MAX} messages per call")
        template, base = self._prepared(campaign)
        entries: list[dict[str, Any]] = []
        positions: list[int] = []
        results: list[SendResult | None] = [None] * len(batch)
        for index, message in enumerate(batch):
            try:
                entry: dict[str, Any] = {
                    "Destination": {"ToAddresses": [message.to]},
                    "ReplacementTags": _tags(campaign, message.delivery_id),
                    "ReplacementEmailContent": {
                        "ReplacementTemplate": {
                            "ReplacementTemplateData": template.template_data(message.fields)
                        }
                    },
                }
                headers = _headers(message.headers, f"delivery {message.delivery_id}")
            except TransportError as err:
                if isinstance(err, FatalSendError):
                    err = RejectedError(str(err))  # a header only this reader has
                results[index] = SendResult(error=err)
                continue
            if headers:
                entry["ReplacementHeaders"] = headers
            entries.append(entry)
            positions.append(index)
        if entries:
            self._call(campaign, base, entries, positions, results)
        done = [r for r in results if r is not None]
        assert len(done) == len(batch)
        return done

    def _call(
        self,
        campaign: CampaignMessage,
        base: str,
        entries: list[dict[str, Any]],
        positions: list[int],
        results: list[SendResult | None],
    ) -> None:
        try:
            response = self.http.send_bulk(base, entries, halt=_halts(campaign))
        except Exception as err:
            error = classify(err, from_address=campaign.from_address)
            if isinstance(error, FatalSendError | RetryableSendError):
                raise error from err
            for pos in positions:
                results[pos] = SendResult(error=error)
            return
        answers = response.get("BulkEmailEntryResults", [])
        if len(answers) != len(entries):
            raise FatalSendError(
                f"SES answered {len(answers)} results for {len(entries)} bulk entries"
            )
        fatal: FatalSendError | None = None
        for pos, answer in zip(positions, answers, strict=True):
            failure = classify_bulk_status(answer.get("Status", ""), answer.get("Error", ""))
            if failure is None:
                results[pos] = SendResult(message_id=answer.get("MessageId", ""))
            elif isinstance(failure, FatalSendError):
                fatal = fatal or failure
                results[pos] = SendResult(error=NotSentError(failure))
            else:
                results[pos] = SendResult(error=failure)
        if fatal is not None and not any(r is not None and r.ok for r in results):
            raise fatal


def make_ses_transport(
    settings: Settings,
    *,
    client: SESV2Client | None = None,
    split: SplitFn | None = None,
) -> SesTransport | SesBulkTransport:
    """The SES transport for ``MAILER_SES_API``, with an injected client if given."""
    ses = client if client is not None else make_ses_client(settings)
    common: dict[str, Any] = {
        "configuration_set": settings.ses_configuration_set,
        "concurrency": settings.send_concurrency,
    }
    if settings.ses_api == "bulk":
        return SesBulkTransport(ses, split=split, **common)
    return SesTransport(ses, **common)


__all__ = [
    "BULK_MAX",
    "SesBulkTransport",
    "SesTransport",
    "make_ses_client",
    "make_ses_transport",
    "ses_send_quota",
    "tag_value",
]
