"""A stand-in for SNS: our own self-signed certificate, signing real SNS-shaped envelopes.

The string-to-sign is written here independently of ``mailer.feedback.sns`` (from the SNS docs:
alternating key/value lines, in a fixed order per Type), so a mistake there is not
mirrored here. ``SNSSigner.fetch`` is the certificate fetcher to inject into
``SNSVerifier``; it serves only the URLs it knows and counts the calls.
"""

from __future__ import annotations

import base64
import json
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

REGION = "us-east-1"
TOPIC_ARN = f"arn:aws:sns:{REGION}:123456789012:ses-feedback"
# SNS's real shape: SimpleNotificationService-<32 hex>.pem (the verifier accepts no other).
CERT_URL = f"https://sns.{REGION}.amazonaws.com/SimpleNotificationService-{'7e57' * 8}.pem"
EXPIRED_CERT_URL = f"https://sns.{REGION}.amazonaws.com/SimpleNotificationService-{'dead' * 8}.pem"

_HASHES = {"1": hashes.SHA1, "2": hashes.SHA256}


def sns_timestamp(at: datetime) -> str:
    """SNS's format: 2012-04-26T20:45:04.751Z."""
    at = at.astimezone(UTC)
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def canonical(envelope: Mapping[str, Any]) -> bytes:
    if envelope["Type"] == "Notification":
        keys = ["Message", "MessageId"]
        if "Subject" in envelope:
            keys.append("Subject")
        keys += ["Timestamp", "TopicArn", "Type"]
    else:
        keys = ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"]
    return "".join(f"{k}\n{envelope[k]}\n" for k in keys).encode()


def make_certificate(key: rsa.RSAPrivateKey, not_before: datetime, not_after: datetime) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass
class SNSSigner:
    key: rsa.RSAPrivateKey
    cert_pem: bytes
    cert_url: str = CERT_URL
    topic_arn: str = TOPIC_ARN
    served: dict[str, bytes] = field(default_factory=dict)
    fetched: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.served.setdefault(self.cert_url, self.cert_pem)

    # the injectable fetcher
    def fetch(self, url: str) -> bytes:
        with self._lock:
            self.fetched.append(url)
        if url not in self.served:
            raise OSError(f"404 for {url}")
        return self.served[url]

    def sign(self, envelope: dict[str, Any], version: str = "1") -> dict[str, Any]:
        envelope["SignatureVersion"] = version
        envelope.setdefault("SigningCertURL", self.cert_url)
        digest = _HASHES.get(version, hashes.SHA256)()
        signature = self.key.sign(canonical(envelope), padding.PKCS1v15(), digest)
        envelope["Signature"] = base64.b64encode(signature).decode()
        return envelope

    def notification(
        self,
        message: str | Mapping[str, Any],
        *,
        subject: str | None = None,
        version: str = "1",
        timestamp: datetime | None = None,
        topic_arn: str | None = None,
        message_id: str | None = None,
    ) -> dict[str, Any]:
        envelope: dict[str, Any] = {
            "Type": "Notification",
            "MessageId": message_id or str(uuid.uuid4()),
            "TopicArn": topic_arn or self.topic_arn,
            "Message": message if isinstance(message, str) else json.dumps(message),
            "Timestamp": sns_timestamp(timestamp or datetime.now(UTC)),
            "UnsubscribeURL": (
                f"https://sns.{REGION}.amazonaws.com/?Action=Unsubscribe"
                f"&SubscriptionArn={self.topic_arn}:{uuid.uuid4()}"
            ),
        }
        if subject is not None:
            envelope["Subject"] = subject
        return self.sign(envelope, version)

    def confirmation(
        self,
        kind: str = "SubscriptionConfirmation",
        *,
        version: str = "1",
        timestamp: datetime | None = None,
        topic_arn: str | None = None,
        subscribe_url: str | None = None,
    ) -> dict[str, Any]:
        topic = topic_arn or self.topic_arn
        token = uuid.uuid4().hex * 2
        envelope: dict[str, Any] = {
            "Type": kind,
            "MessageId": str(uuid.uuid4()),
            "Token": token,
            "TopicArn": topic,
            "Message": (
                f"You have chosen to subscribe to the topic {topic}.\n"
                "To confirm the subscription, visit the SubscribeURL included in this message."
            ),
            "SubscribeURL": subscribe_url
            or (
                f"https://sns.{REGION}.amazonaws.com/?Action=ConfirmSubscription"
                f"&TopicArn={topic}&Token={token}"
            ),
            "Timestamp": sns_timestamp(timestamp or datetime.now(UTC)),
        }
        return self.sign(envelope, version)


@pytest.fixture(scope="session")
def sns_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def sns_signer(sns_key: rsa.RSAPrivateKey) -> SNSSigner:
    """Signs with a certificate valid from yesterday for a year, served at CERT_URL."""
    now = datetime.now(UTC)
    pem = make_certificate(sns_key, now - timedelta(days=1), now + timedelta(days=365))
    return SNSSigner(sns_key, pem)


@pytest.fixture
def expired_signer(sns_key: rsa.RSAPrivateKey) -> SNSSigner:
    """Signs correctly, but with a certificate that expired in 2020."""
    pem = make_certificate(
        sns_key, datetime(2019, 1, 1, tzinfo=UTC), datetime(2020, 1, 1, tzinfo=UTC)
    )
    return SNSSigner(sns_key, pem, cert_url=EXPIRED_CERT_URL)
