"""SNS verification against our own self-signed certificate standing in for SNS's."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from mailer.config import Settings
from mailer.errors import ConfirmationError, VerificationError
from mailer.feedback.sns import SNSVerifier, confirm_subscription, is_sns_host
from tests.plugins.sns_certs import CERT_URL, TOPIC_ARN, SNSSigner, sns_timestamp

EVENT = '{"eventType":"Delivery","mail":{"messageId":"m-1"}}'


def settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {"env": "test", "sns_topic_arns": (TOPIC_ARN,)}
    values.update(overrides)
    return Settings(**values)


def verifier(signer: SNSSigner, **overrides: Any) -> SNSVerifier:
    return SNSVerifier(settings(**overrides), fetch_cert=signer.fetch)


# -- accepted ---------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["1", "2"])
@pytest.mark.parametrize("subject", [None, "Amazon SES Email Event Notification"])
def test_valid_notification_is_accepted(
    sns_signer: SNSSigner, version: str, subject: str | None
) -> None:
    envelope = sns_signer.notification(EVENT, subject=subject, version=version)
    message = verifier(sns_signer).verify(envelope)
    assert message.type == "Notification"
    assert message.message == EVENT
    assert message.message_id == envelope["MessageId"]
    assert message.topic_arn == TOPIC_ARN
    assert message.subject == subject
    assert message.signature_version == version
    assert message.timestamp.tzinfo is not None
    assert message.unsubscribe_url == envelope["UnsubscribeURL"]


@pytest.mark.parametrize("version", ["1", "2"])
@pytest.mark.parametrize("kind", ["SubscriptionConfirmation", "UnsubscribeConfirmation"])
def test_valid_confirmations_are_accepted(sns_signer: SNSSigner, kind: str, version: str) -> None:
    envelope = sns_signer.confirmation(kind, version=version)
    message = verifier(sns_signer).verify(envelope)
    assert message.type == kind
    assert message.token == envelope["Token"]
    assert message.subscribe_url == envelope["SubscribeURL"]


def test_china_partition_host_is_accepted(sns_signer: SNSSigner) -> None:
    url = f"https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-{'c0' * 16}.pem"
    sns_signer.served[url] = sns_signer.cert_pem
    envelope = sns_signer.sign(
        {k: v for k, v in sns_signer.notification(EVENT).items() if k != "SigningCertURL"}
        | {"SigningCertURL": url}
    )
    assert verifier(sns_signer).verify(envelope).signing_cert_url == url


def test_empty_allowlist_accepts_any_topic_outside_production(sns_signer: SNSSigner) -> None:
    other = "arn:aws:sns:us-east-1:123456789012:another-topic"
    envelope = sns_signer.notification(EVENT, topic_arn=other)
    assert verifier(sns_signer, sns_topic_arns=()).verify(envelope).topic_arn == other


def test_empty_allowlist_rejects_everything_in_production(sns_signer: SNSSigner) -> None:
    envelope = sns_signer.notification(EVENT)
    strict = verifier(sns_signer, sns_topic_arns=(), env="production", secret_key="k")
    with pytest.raises(VerificationError, match="production accepts no SNS topic"):
        strict.verify(envelope)
    assert sns_signer.fetched == []


# -- the forgery matrix ---------------------------------------------------------------------


def _changed(field: str, value: str):  # type: ignore[no-untyped-def]
    def forge(envelope: dict[str, Any]) -> None:
        envelope[field] = value

    return forge


FORGERIES = [
    ("changed Message", _changed("Message", EVENT.replace("Delivery", "Bounce")), "does not match"),
    ("changed MessageId", _changed("MessageId", "another-id"), "does not match"),
    ("added Subject", _changed("Subject", "hello"), "does not match"),
    ("wrong cert host", _changed("SigningCertURL", "https://example.com/cert.pem"), "host is not"),
    (
        "http URL",
        _changed("SigningCertURL", CERT_URL.replace("https://", "http://")),
        "is not https",
    ),
    (
        "look-alike suffix",
        _changed(
            "SigningCertURL", "https://sns.us-east-1.amazonaws.com.evil.com/SimpleNotification.pem"
        ),
        "host is not",
    ),
    (
        "look-alike prefix",
        _changed("SigningCertURL", "https://evil-sns.us-east-1.amazonaws.com/Simple.pem"),
        "host is not",
    ),
    (
        "user info",
        _changed("SigningCertURL", "https://sns.us-east-1.amazonaws.com@evil.com/Simple.pem"),
        "host is not",
    ),
    (
        "explicit port",
        _changed("SigningCertURL", "https://sns.us-east-1.amazonaws.com:8443/Simple.pem"),
        "host is not",
    ),
    (
        "non-.pem path",
        _changed("SigningCertURL", "https://sns.us-east-1.amazonaws.com/cert.txt"),
        "not a .pem file",
    ),
    (
        "query after .pem",
        _changed("SigningCertURL", "https://sns.us-east-1.amazonaws.com/cert.pem?x=1"),
        "not a .pem file",
    ),
    (
        "unknown topic",
        _changed("TopicArn", "arn:aws:sns:us-east-1:999999999999:attacker"),
        "not in MAILER_SNS_TOPIC_ARNS",
    ),
    ("bad base64", _changed("Signature", "not*base64!!"), "not valid base64"),
    ("empty signature", _changed("Signature", ""), "Signature is empty"),
    ("unsupported version", _changed("SignatureVersion", "3"), "unsupported SignatureVersion"),
    ("unknown type", _changed("Type", "Surprise"), "unknown SNS message Type"),
    ("bad timestamp", _changed("Timestamp", "yesterday"), "not ISO 8601 UTC"),
]


@pytest.mark.parametrize(
    ("forge", "expected"), [(f, e) for _, f, e in FORGERIES], ids=[n for n, _, _ in FORGERIES]
)
def test_forgeries_are_rejected_with_the_reason(
    sns_signer: SNSSigner, forge: Any, expected: str
) -> None:
    envelope = sns_signer.notification(EVENT)
    forge(envelope)
    with pytest.raises(VerificationError, match=expected):
        verifier(sns_signer).verify(envelope)


@pytest.mark.parametrize("field", ["Message", "Subject", "Timestamp", "TopicArn"])
def test_any_signed_field_changed_breaks_the_signature(sns_signer: SNSSigner, field: str) -> None:
    envelope = sns_signer.notification(EVENT, subject="s", version="2")
    if field == "Timestamp":
        envelope[field] = sns_timestamp(datetime.now(UTC) - timedelta(seconds=5))
    elif field == "TopicArn":
        envelope[field] = TOPIC_ARN + "-2"
    else:
        envelope[field] = envelope[field] + " "
    v = verifier(sns_signer, sns_topic_arns=(TOPIC_ARN, TOPIC_ARN + "-2"))
    with pytest.raises(VerificationError, match="Signature does not match"):
        v.verify(envelope)


def test_removed_subject_breaks_the_signature(sns_signer: SNSSigner) -> None:
    envelope = sns_signer.notification(EVENT, subject="Important")
    del envelope["Subject"]
    with pytest.raises(VerificationError, match="does not match"):
        verifier(sns_signer).verify(envelope)


def test_swapped_type_is_rejected(sns_signer: SNSSigner) -> None:
    """A signed confirmation relabelled as a Notification no longer verifies (and back)."""
    envelope = sns_signer.confirmation()
    envelope["Type"] = "Notification"
    with pytest.raises(VerificationError, match="does not match"):
        verifier(sns_signer).verify(envelope)
    note = sns_signer.notification(EVENT)
    note.update(Type="SubscriptionConfirmation", SubscribeURL="https://x", Token="t")
    with pytest.raises(VerificationError, match="does not match"):
        verifier(sns_signer).verify(note)


def test_version_swap_is_rejected(sns_signer: SNSSigner) -> None:
    """A SHA1 signature presented as version 2 fails (the version is not signed itself)."""
    envelope = sns_signer.notification(EVENT, version="1")
    envelope["SignatureVersion"] = "2"
    with pytest.raises(VerificationError, match="does not match"):
        verifier(sns_signer).verify(envelope)


@pytest.mark.parametrize(
    "field",
    ["Type", "MessageId", "TopicArn", "Message", "Timestamp", "Signature", "SigningCertURL"],
)
def test_missing_fields_are_named(sns_signer: SNSSigner, field: str) -> None:
    envelope = sns_signer.notification(EVENT)
    del envelope[field]
    with pytest.raises(VerificationError, match=f"missing field.*{field}"):
        verifier(sns_signer).verify(envelope)


@pytest.mark.parametrize("field", ["SubscribeURL", "Token"])
def test_confirmation_without_its_fields_is_rejected(sns_signer: SNSSigner, field: str) -> None:
    envelope = sns_signer.confirmation()
    del envelope[field]
    with pytest.raises(VerificationError, match=f"missing field.*{field}"):
        verifier(sns_signer).verify(envelope)


def test_non_string_field_counts_as_missing(sns_signer: SNSSigner) -> None:
    envelope = sns_signer.notification(EVENT)
    envelope["Message"] = {"eventType": "Bounce"}
    with pytest.raises(VerificationError, match=r"missing field.*Message"):
        verifier(sns_signer).verify(envelope)


def test_not_an_object_is_rejected(sns_signer: SNSSigner) -> None:
    with pytest.raises(VerificationError, match="not a JSON object"):
        verifier(sns_signer).verify(["Type", "Notification"])  # type: ignore[arg-type]


# -- time -------------------------------------------------------------------------------------


def test_too_old_message_is_rejected(sns_signer: SNSSigner) -> None:
    sent = datetime.now(UTC) - timedelta(hours=2)
    envelope = sns_signer.notification(EVENT, timestamp=sent)
    with pytest.raises(VerificationError, match="too old"):
        verifier(sns_signer).verify(envelope)
    assert sns_signer.fetched == [], "an expired message is refused before any fetch"


def test_age_limit_follows_the_setting_and_zero_disables_it(sns_signer: SNSSigner) -> None:
    sent = datetime.now(UTC) - timedelta(minutes=10)
    envelope = sns_signer.notification(EVENT, timestamp=sent)
    with pytest.raises(VerificationError, match="MAILER_SNS_MAX_AGE is 300s"):
        verifier(sns_signer, sns_max_age=300).verify(envelope)
    old = sns_signer.notification(EVENT, timestamp=datetime.now(UTC) - timedelta(hours=20))
    assert verifier(sns_signer, sns_max_age=0).verify(old).message == EVENT


def test_injected_clock_decides_the_age(sns_signer: SNSSigner) -> None:
    sent = (datetime.now(UTC) - timedelta(hours=12)).replace(microsecond=0)
    envelope = sns_signer.notification(EVENT, timestamp=sent)
    now = [sent + timedelta(minutes=59)]
    v = SNSVerifier(settings(), fetch_cert=sns_signer.fetch, clock=lambda: now[0])
    assert v.verify(envelope).timestamp == sent
    now[0] = sent + timedelta(minutes=61)
    with pytest.raises(VerificationError, match="too old"):
        v.verify(envelope)


def test_future_timestamp_is_rejected(sns_signer: SNSSigner) -> None:
    envelope = sns_signer.notification(EVENT, timestamp=datetime.now(UTC) + timedelta(hours=1))
    with pytest.raises(VerificationError, match="in the future"):
        verifier(sns_signer).verify(envelope)


def test_certificate_not_valid_at_the_timestamp_is_rejected(expired_signer: SNSSigner) -> None:
    envelope = expired_signer.notification(EVENT)
    with pytest.raises(VerificationError, match="not valid at the message Timestamp"):
        verifier(expired_signer).verify(envelope)


# -- certificates -----------------------------------------------------------------------------


def test_certificate_is_fetched_once_and_cached(sns_signer: SNSSigner) -> None:
    v = verifier(sns_signer)
    for _ in range(5):
        v.verify(sns_signer.notification(EVENT))
    assert sns_signer.fetched == [CERT_URL]
    assert v.fetches == 1
    v.clear_cache()
    v.verify(sns_signer.notification(EVENT))
    assert v.fetches == 2


def test_concurrent_first_use_fetches_once(sns_signer: SNSSigner) -> None:
    slow_fetch_started = threading.Event()

    def slow_fetch(url: str) -> bytes:
        slow_fetch_started.set()
        time.sleep(0.1)
        return sns_signer.fetch(url)

    v = SNSVerifier(settings(), fetch_cert=slow_fetch)
    envelopes = [sns_signer.notification(EVENT) for _ in range(8)]
    errors: list[BaseException] = []

    def work(envelope: dict[str, Any]) -> None:
        try:
            v.verify(envelope)
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=work, args=(e,)) for e in envelopes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert slow_fetch_started.is_set()
    assert sns_signer.fetched == [CERT_URL]


def test_pre_seeded_cert_dir_is_used_before_any_fetch(
    sns_signer: SNSSigner, tmp_path: Path
) -> None:
    (tmp_path / CERT_URL.rsplit("/", 1)[-1]).write_bytes(sns_signer.cert_pem)

    def no_network(url: str) -> bytes:
        raise AssertionError(f"fetched {url} although the cert dir has it")

    v = SNSVerifier(settings(sns_cert_dir=str(tmp_path)), fetch_cert=no_network)
    assert v.verify(sns_signer.notification(EVENT, version="2")).message == EVENT
    assert v.fetches == 0


def test_cert_dir_miss_falls_back_to_fetch(sns_signer: SNSSigner, tmp_path: Path) -> None:
    v = SNSVerifier(settings(sns_cert_dir=str(tmp_path)), fetch_cert=sns_signer.fetch)
    v.verify(sns_signer.notification(EVENT))
    assert sns_signer.fetched == [CERT_URL]


def test_fetch_failure_is_a_verification_error(sns_signer: SNSSigner) -> None:
    url = f"https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-{'0' * 32}.pem"
    envelope = sns_signer.sign(sns_signer.notification(EVENT) | {"SigningCertURL": url})
    with pytest.raises(VerificationError, match="could not fetch signing certificate"):
        verifier(sns_signer).verify(envelope)


def test_garbage_certificate_is_rejected(sns_signer: SNSSigner) -> None:
    sns_signer.served[CERT_URL] = b"<html>not a certificate</html>"
    with pytest.raises(VerificationError, match="is not a PEM certificate"):
        verifier(sns_signer).verify(sns_signer.notification(EVENT))


def test_other_key_signature_is_rejected(sns_signer: SNSSigner) -> None:
    """Right host, valid cert, but signed by someone else's key."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    intruder = SNSSigner(rsa.generate_private_key(65537, 2048), sns_signer.cert_pem)
    with pytest.raises(VerificationError, match="does not match"):
        verifier(sns_signer).verify(intruder.notification(EVENT))


@pytest.mark.parametrize(
    ("host", "ok"),
    [
        ("sns.us-east-1.amazonaws.com", True),
        ("sns.us-gov-west-1.amazonaws.com", True),
        ("sns.ap-southeast-2.amazonaws.com", True),
        ("sns.cn-northwest-1.amazonaws.com.cn", True),
        ("sns.us-east-1.amazonaws.com.evil.com", False),
        ("evil-sns.us-east-1.amazonaws.com", False),
        ("sns.evil.com", False),
        ("sns.us-east-1.amazonaws.com.", False),
        ("sqs.us-east-1.amazonaws.com", False),
        ("sns.amazonaws.com", False),
        ("sns.us-east-1.amazonaws.co", False),
        ("sns.us-east-\u0661.amazonaws.com", False),
        ("SNS.US-EAST-1.AMAZONAWS.COM", False),
    ],
)
def test_sns_host_pattern(host: str, ok: bool) -> None:
    assert is_sns_host(host) is ok


# -- subscription confirmation ----------------------------------------------------------------


def test_confirm_subscription_visits_the_checked_url(sns_signer: SNSSigner) -> None:
    message = verifier(sns_signer).verify(sns_signer.confirmation())
    visited: list[str] = []
    assert confirm_subscription(message, http_get=visited.append) == message.subscribe_url
    assert visited == [message.subscribe_url]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription", "not https"),
        ("https://sns.us-east-1.amazonaws.com.evil.com/?Action=ConfirmSubscription", "host"),
        ("https://evil.example/?Action=ConfirmSubscription", "host"),
        (f"https://sns.us-east-1.amazonaws.com/?Action=Subscribe&TopicArn={TOPIC_ARN}", "action"),
        (
            "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn=arn:x",
            "another topic",
        ),
    ],
)
def test_confirm_subscription_refuses_foreign_urls(
    sns_signer: SNSSigner, url: str, expected: str
) -> None:
    message = verifier(sns_signer).verify(sns_signer.confirmation(subscribe_url=url))
    visited: list[str] = []
    with pytest.raises(VerificationError, match=expected):
        confirm_subscription(message, http_get=visited.append)
    assert visited == []


def test_confirm_subscription_only_for_confirmations(sns_signer: SNSSigner) -> None:
    message = verifier(sns_signer).verify(sns_signer.notification(EVENT))
    with pytest.raises(VerificationError, match="not a SubscriptionConfirmation"):
        confirm_subscription(message, http_get=lambda url: None)


def test_confirm_subscription_network_failure_is_retryable(sns_signer: SNSSigner) -> None:
    message = verifier(sns_signer).verify(sns_signer.confirmation())

    def down(url: str) -> None:
        raise OSError("connection refused")

    with pytest.raises(ConfirmationError, match="connection refused"):
        confirm_subscription(message, http_get=down)
