"""Verify that an Amazon SNS message really comes from SNS, before anything acts on it.

Modelled on pypi/warehouse's verifier: one short method per check, each failing with a
:class:`~mailer.errors.VerificationError` that names exactly what was wrong. The order
matters: everything that can be decided from the envelope alone (fields, type, version,
topic, age, certificate URL, base64) is decided before any certificate is loaded, so a
forged message never makes us fetch a URL it chose.

Trust rules (issue 6; docs/architecture.md principle 4):

- ``SigningCertURL`` is ``https://sns.<region>.amazonaws.com[.cn]/SimpleNotificationService-
  <32 hex>.pem`` exactly (the shape of every certificate SNS has used): no other scheme,
  host, port, user info, path, query or fragment.
- ``SignatureVersion`` 1 is SHA1withRSA, 2 is SHA256withRSA, over the documented
  string-to-sign of the message's ``Type``.
- The certificate must be valid at the message's ``Timestamp``.
- ``TopicArn`` must be in ``MAILER_SNS_TOPIC_ARNS``. An empty allowlist accepts any topic
  outside production (handy in development) and rejects every message in production.
- Messages older than ``MAILER_SNS_MAX_AGE`` seconds are rejected (0 disables the age and
  clock-skew checks, for replays).

Certificates come from a :class:`~mailer.feedback.sns_certs.CertificateStore`: cached by
URL, failures cached for a while, fetched once per URL on a small pool of their own with a
timeout (a flood of forged URLs costs a bounded amount and stalls no request thread);
``MAILER_SNS_CERT_DIR`` holds pre-seeded PEM files named like the URL's last path segment,
consulted before any fetch, for hosts that cannot reach AWS. :meth:`SNSVerifier.verify`
blocks for a fetch; :meth:`SNSVerifier.verify_async` awaits it. The fetcher, the
subscription-confirmation GET and the clock are injectable seams.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from mailer.config import Settings
from mailer.errors import ConfirmationError, VerificationError
from mailer.feedback.events import SNS_TYPES
from mailer.feedback.sns_certs import CertFetcher, CertificateStore, CertificateUnavailable

__all__ = [
    "CertFetcher",
    "CertificateUnavailable",
    "Clock",
    "SNSMessage",
    "SNSVerifier",
    "confirm_subscription",
    "is_sns_host",
    "string_to_sign",
]

Clock = Callable[[], datetime]
"""Returns the current time, timezone-aware."""

NOTIFICATION = "Notification"
SUBSCRIPTION_CONFIRMATION = "SubscriptionConfirmation"
UNSUBSCRIBE_CONFIRMATION = "UnsubscribeConfirmation"
SUBSCRIPTION_TYPES = frozenset({SUBSCRIPTION_CONFIRMATION, UNSUBSCRIBE_CONFIRMATION})

_COMMON_FIELDS = (
    "Type",
    "MessageId",
    "TopicArn",
    "Message",
    "Timestamp",
    "SignatureVersion",
    "Signature",
    "SigningCertURL",
)
_SUBSCRIPTION_FIELDS = ("SubscribeURL", "Token")

# sns.<region>.amazonaws.com or sns.<region>.amazonaws.com.cn; region like us-east-1,
# cn-north-1, us-gov-west-1, ap-southeast-2.
_SNS_HOST = re.compile(r"sns\.[a-z]{2}(?:-[a-z]+)+-\d{1,2}\.amazonaws\.com(?:\.cn)?", re.ASCII)
_CERT_PATH = re.compile(r"/SimpleNotificationService-[0-9a-f]{32}\.pem", re.ASCII)
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?Z", re.ASCII)
_HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {"1": hashes.SHA1, "2": hashes.SHA256}
_CLOCK_SKEW = timedelta(minutes=5)
_CONFIRM_TIMEOUT = 5.0


@dataclass(frozen=True)
class SNSMessage:
    """A verified SNS envelope (HTTP/HTTPS JSON format), fields renamed to Python."""

    type: str
    message_id: str
    topic_arn: str
    message: str
    timestamp: datetime
    signature_version: str
    signature: str
    signing_cert_url: str
    subject: str | None = None
    subscribe_url: str | None = None
    token: str | None = None
    unsubscribe_url: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)


def is_sns_host(host: str) -> bool:
    """True only for ``sns.<region>.amazonaws.com`` and its ``.com.cn`` twin, exactly."""
    return _SNS_HOST.fullmatch(host) is not None


def string_to_sign(envelope: Mapping[str, Any]) -> bytes:
    """The exact bytes SNS signs: alternating key/value lines, in this fixed order."""
    kind = envelope.get("Type")
    if kind == NOTIFICATION:
        keys: tuple[str, ...] = ("Message", "MessageId")
        if envelope.get("Subject") is not None:
            keys += ("Subject",)
        keys += ("Timestamp", "TopicArn", "Type")
    elif kind in SUBSCRIPTION_TYPES:
        keys = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")
    else:
        raise VerificationError(f"unknown SNS message Type {kind!r}")
    lines: list[str] = []
    for key in keys:
        lines.extend((key, str(envelope[key])))
    return ("\n".join(lines) + "\n").encode("utf-8")


def _default_clock() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class _Checked:
    """An envelope that passed every check that needs no certificate."""

    envelope: Mapping[str, Any]
    version: str
    timestamp: datetime
    signature: bytes
    cert_url: str


class SNSVerifier:
    """Checks SNS envelopes; keep one per process so its certificate cache is shared."""

    def __init__(
        self,
        settings: Settings,
        fetch_cert: CertFetcher | None = None,
        clock: Clock | None = None,
        *,
        certificates: CertificateStore | None = None,
    ) -> None:
        self.topics = frozenset(settings.sns_topic_arns)
        self.production = settings.production
        self.max_age = settings.sns_max_age
        self.clock: Clock = clock or _default_clock
        self.certificates = certificates or CertificateStore(
            fetch_cert,
            cert_dir=Path(settings.sns_cert_dir) if settings.sns_cert_dir else None,
        )

    @property
    def fetches(self) -> int:
        """How many times the fetcher was called (ops, tests and benchmarks)."""
        return self.certificates.fetches

    def verify(self, envelope: Mapping[str, Any]) -> SNSMessage:
        """Return the verified message, or raise VerificationError naming the failed check.
        Blocks while a certificate is fetched (at most the store's ``wait_timeout``)."""
        checked = self.check(envelope)
        return self.finish(checked, self.certificates.get(checked.cert_url))

    async def verify_async(self, envelope: Mapping[str, Any]) -> SNSMessage:
        """:meth:`verify` for the event loop: a fetch is awaited on the store's own pool."""
        checked = self.check(envelope)
        return self.finish(checked, await self.certificates.aget(checked.cert_url))

    def check(self, envelope: Mapping[str, Any]) -> _Checked:
        """Everything decidable from the envelope alone, before any certificate is loaded."""
        self._check_fields(envelope)
        self._check_type(envelope["Type"])
        version = self._check_version(envelope["SignatureVersion"])
        self._check_topic(envelope["TopicArn"])
        timestamp = self._parse_timestamp(envelope["Timestamp"])
        self._check_age(timestamp)
        cert_url = envelope["SigningCertURL"]
        self._check_cert_url(cert_url)
        signature = self._decode_signature(envelope["Signature"])
        return _Checked(envelope, version, timestamp, signature, cert_url)

    def finish(self, checked: _Checked, certificate: x509.Certificate) -> SNSMessage:
        """The certificate's validity and the signature itself (CPU only, ~0.1 ms)."""
        self._check_cert_validity(certificate, checked.timestamp)
        data = string_to_sign(checked.envelope)
        self._check_signature(certificate, checked.signature, data, checked.version)
        return self._message(checked.envelope, checked.timestamp)

    # -- one check each -------------------------------------------------------------

    def _check_fields(self, envelope: Mapping[str, Any]) -> None:
        if not isinstance(envelope, Mapping):
            raise VerificationError("SNS message is not a JSON object")
        required = list(_COMMON_FIELDS)
        kind = envelope.get("Type")
        if isinstance(kind, str) and kind in SUBSCRIPTION_TYPES:  # a list/dict is unhashable
            required += _SUBSCRIPTION_FIELDS
        missing = [name for name in required if not isinstance(envelope.get(name), str)]
        if missing:
            raise VerificationError(f"SNS message is missing field(s): {', '.join(missing)}")
        subject = envelope.get("Subject")
        if subject is not None and not isinstance(subject, str):
            raise VerificationError("SNS message field Subject is not a string")

    def _check_type(self, kind: str) -> None:
        if kind not in SNS_TYPES:
            raise VerificationError(f"unknown SNS message Type {kind!r}")

    def _check_version(self, version: str) -> str:
        if version not in _HASHES:
            raise VerificationError(f"unsupported SignatureVersion {version!r} (1 or 2)")
        return version

    def _check_topic(self, topic_arn: str) -> None:
        if self.topics:
            if topic_arn not in self.topics:
                raise VerificationError(f"TopicArn {topic_arn!r} is not in MAILER_SNS_TOPIC_ARNS")
        elif self.production:
            raise VerificationError(
                "MAILER_SNS_TOPIC_ARNS is empty: production accepts no SNS topic"
            )

    def _parse_timestamp(self, text: str) -> datetime:
        if not _TIMESTAMP.fullmatch(text):
            raise VerificationError(f"SNS Timestamp {text!r} is not ISO 8601 UTC")
        try:
            return datetime.fromisoformat(text).astimezone(UTC)
        except ValueError as err:
            raise VerificationError(f"SNS Timestamp {text!r} is not a valid time") from err

    def _check_age(self, timestamp: datetime) -> None:
        if not self.max_age:
            return
        now = self.clock()
        if now - timestamp > timedelta(seconds=self.max_age):
            raise VerificationError(
                f"SNS message is too old: sent {timestamp.isoformat()}, "
                f"MAILER_SNS_MAX_AGE is {self.max_age:g}s"
            )
        if timestamp - now > _CLOCK_SKEW:
            raise VerificationError(
                f"SNS Timestamp {timestamp.isoformat()} is in the future (clock skew?)"
            )

    def _check_cert_url(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme != "https":
            raise VerificationError(f"SigningCertURL is not https: {url!r}")
        if parts.netloc != parts.hostname or not is_sns_host(parts.netloc):
            raise VerificationError(
                f"SigningCertURL host is not sns.<region>.amazonaws.com: {url!r}"
            )
        if parts.query or parts.fragment or not _CERT_PATH.fullmatch(parts.path):
            raise VerificationError(
                "SigningCertURL is not a .pem file of SNS's form "
                f"(/SimpleNotificationService-<32 hex>.pem): {url!r}"
            )

    def _decode_signature(self, text: str) -> bytes:
        try:
            signature = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError) as err:
            raise VerificationError("SNS Signature is not valid base64") from err
        if not signature:
            raise VerificationError("SNS Signature is empty")
        return signature

    def _check_cert_validity(self, certificate: x509.Certificate, at: datetime) -> None:
        if not certificate.not_valid_before_utc <= at <= certificate.not_valid_after_utc:
            raise VerificationError(
                f"signing certificate is not valid at the message Timestamp {at.isoformat()} "
                f"(valid {certificate.not_valid_before_utc.isoformat()} to "
                f"{certificate.not_valid_after_utc.isoformat()})"
            )

    def _check_signature(
        self, certificate: x509.Certificate, signature: bytes, data: bytes, version: str
    ) -> None:
        key = certificate.public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            raise VerificationError("signing certificate does not hold an RSA key")
        try:
            key.verify(signature, data, padding.PKCS1v15(), _HASHES[version]())
        except InvalidSignature as err:
            raise VerificationError("SNS Signature does not match the message") from err

    # -- certificates -----------------------------------------------------------------

    def clear_cache(self) -> None:
        """Forget every cached certificate and failure (tests, benchmarks, rotation)."""
        self.certificates.clear()

    def close(self) -> None:
        """Stop the certificate fetch pool."""
        self.certificates.close()

    # -- result -------------------------------------------------------------------------

    def _message(self, envelope: Mapping[str, Any], timestamp: datetime) -> SNSMessage:
        return SNSMessage(
            type=envelope["Type"],
            message_id=envelope["MessageId"],
            topic_arn=envelope["TopicArn"],
            message=envelope["Message"],
            timestamp=timestamp,
            signature_version=envelope["SignatureVersion"],
            signature=envelope["Signature"],
            signing_cert_url=envelope["SigningCertURL"],
            subject=envelope.get("Subject"),
            subscribe_url=envelope.get("SubscribeURL"),
            token=envelope.get("Token"),
            unsubscribe_url=_optional_str(envelope.get("UnsubscribeURL")),
            raw=dict(envelope),
        )


def _optional_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _httpx_get(url: str) -> str:
    # Imported here: ~100 ms (-X importtime) that only a SubscriptionConfirmation needs.
    import httpx

    response = httpx.get(url, timeout=_CONFIRM_TIMEOUT, follow_redirects=False)
    response.raise_for_status()
    return response.text


def confirm_subscription(
    message: SNSMessage, http_get: Callable[[str], object] | None = None
) -> str:
    """GET the SubscribeURL of a verified SubscriptionConfirmation; return the URL visited.

    The URL is checked like a certificate URL first (https, ``sns.<region>.amazonaws.com``)
    and must confirm this message's own topic, so a signed message cannot point us at an
    arbitrary address.
    """
    if message.type != SUBSCRIPTION_CONFIRMATION or not message.subscribe_url:
        raise VerificationError(f"not a SubscriptionConfirmation: {message.type!r}")
    url = message.subscribe_url
    parts = urlsplit(url)
    if parts.scheme != "https":
        raise VerificationError(f"SubscribeURL is not https: {url!r}")
    if parts.netloc != parts.hostname or not is_sns_host(parts.netloc):
        raise VerificationError(f"SubscribeURL host is not sns.<region>.amazonaws.com: {url!r}")
    query = parse_qs(parts.query)
    if query.get("Action") != ["ConfirmSubscription"]:
        raise VerificationError(f"SubscribeURL is not a ConfirmSubscription action: {url!r}")
    if query.get("TopicArn") != [message.topic_arn]:
        raise VerificationError(f"SubscribeURL confirms another topic than {message.topic_arn}")
    try:
        (http_get or _httpx_get)(url)
    except Exception as err:  # network or HTTP status: the caller answers 5xx, SNS retries
        raise ConfirmationError(f"could not confirm the subscription: {err}") from err
    return url
