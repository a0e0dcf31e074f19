"""What an SES (v2) failure means for the campaign: retry, fail the row, or pause.

One function, :func:`classify`, turns a botocore exception (or a bulk entry's status) into
the error tree. The rules, from the SES v2 API reference and its error shapes:

==========================================================  ===========================
throttling: TooManyRequests, Throttling, LimitExceeded        RetryableSendError(throttled)
5xx, InternalFailure, ServiceUnavailable, timeouts, resets  RetryableSendError
MessageRejected, BadRequest about a recipient address       RejectedError (this row)
daily quota exceeded                                        FatalSendError
AccountSuspended, SendingPaused, MailFromDomainNotVerified  FatalSendError
NotFound / ConfigurationSetDoesNotExist (config set, ARN)   FatalSendError
bad or missing credentials, AccessDenied                    FatalSendError
a refusal naming our own From address                       FatalSendError
anything else (unknown 4xx, malformed request)              FatalSendError (look first)
==========================================================  ===========================

Unknown refusals pause rather than fail rows: pausing loses nobody, failing every row of a
campaign because of one bad setting would.
"""

from __future__ import annotations

from email.utils import parseaddr

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError,
    HTTPClientError,
    NoCredentialsError,
    NoRegionError,
    ParamValidationError,
    PartialCredentialsError,
)

from mailer.errors import FatalSendError, RejectedError, RetryableSendError, TransportError

THROTTLE_CODES = frozenset(
    {
        "TooManyRequestsException",
        "TooManyRequests",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "RequestLimitExceeded",
        "LimitExceededException",
        "SlowDown",
    }
)
SERVER_CODES = frozenset(
    {
        "InternalFailure",
        "InternalError",
        "InternalServerError",
        "InternalServiceError",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)
AUTH_CODES = frozenset(
    {
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "InvalidSignatureException",
        "IncompleteSignature",
        "MissingAuthenticationToken",
        "MissingAuthenticationTokenException",
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidAccessKeyId",
        "AccessDenied",
        "AccessDeniedException",
        "AuthFailure",
        "NotAuthorized",
    }
)
ACCOUNT_REASONS = {
    "AccountSuspendedException": "SES account is suspended",
    "SendingPausedException": "SES sending is paused for the account or configuration set",
    "AccountSendingPausedException": "SES sending is paused for the account",
    "ConfigurationSetSendingPausedException": "SES sending is paused for the configuration set",
    "MailFromDomainNotVerifiedException": "SES MAIL FROM domain is not verified",
    "NotFoundException": (
        "SES resource not found (configuration set or identity; check MAILER_SES_CONFIGURATION_SET)"
    ),
    "ConfigurationSetDoesNotExistException": (
        "SES configuration set does not exist (check MAILER_SES_CONFIGURATION_SET)"
    ),
}
#: SendBulkEmail per-entry statuses (BulkEmailStatus) and what they mean for the row.
BULK_RETRYABLE = frozenset({"TRANSIENT_FAILURE", "FAILED"})
BULK_THROTTLED = frozenset({"ACCOUNT_THROTTLED"})
BULK_REJECTED = frozenset({"MESSAGE_REJECTED", "INVALID_PARAMETER"})
BULK_FATAL = {
    "MAIL_FROM_DOMAIN_NOT_VERIFIED": "SES MAIL FROM domain is not verified",
    "CONFIGURATION_SET_NOT_FOUND": (
        "SES configuration set does not exist (check MAILER_SES_CONFIGURATION_SET)"
    ),
    "TEMPLATE_NOT_FOUND": "SES template not found",
    "ACCOUNT_SUSPENDED": "SES account is suspended",
    "ACCOUNT_DAILY_QUOTA_EXCEEDED": "SES 24-hour sending quota is used up",
    "INVALID_SENDING_POOL_NAME": "SES sending pool of the configuration set is invalid",
    "ACCOUNT_SENDING_PAUSED": "SES sending is paused for the account",
    "CONFIGURATION_SET_SENDING_PAUSED": "SES sending is paused for the configuration set",
}
_ADDRESS_WORDS = ("address", "recipient", "destination", "mailbox", "domain")


def _mentions_sender(message: str, from_address: str | None) -> bool:
    if not from_address:
        return False
    addr = (parseaddr(from_address)[1] or from_address).lower()
    return bool(addr) and addr in message.lower()


def classify(err: Exception, *, from_address: str | None = None) -> TransportError:
    """The error-tree equivalent of a botocore exception (the original is the cause)."""
    if isinstance(err, TransportError):
        return err
    result = _classify(err, from_address)
    result.__cause__ = err
    return result


def _classify(err: Exception, from_address: str | None) -> TransportError:
    if isinstance(err, ClientError):
        return classify_code(
            str(err.response.get("Error", {}).get("Code", "")),
            str(err.response.get("Error", {}).get("Message", "")),
            int(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0),
            from_address=from_address,
        )
    if isinstance(err, NoCredentialsError | PartialCredentialsError):
        return FatalSendError(f"no usable AWS credentials for SES: {err}")
    if isinstance(err, NoRegionError):
        return FatalSendError("no AWS region for SES: set MAILER_SES_REGION or AWS_REGION")
    if isinstance(err, ParamValidationError):
        return FatalSendError(f"SES request does not match the API: {err}")
    if isinstance(err, ConnectionError | HTTPClientError):
        return RetryableSendError(f"SES connection problem: {err}")
    if isinstance(err, BotoCoreError):
        return RetryableSendError(f"SES client error: {err}")
    return FatalSendError(f"unexpected error calling SES: {type(err).__name__}: {err}")


def classify_code(
    code: str, message: str, status: int = 0, *, from_address: str | None = None
) -> TransportError:
    """Classify an SES error code + message (+ HTTP status)."""
    detail = f"{code}: {message}" if message else code
    low = message.lower()
    if code in THROTTLE_CODES or status == 429:
        if "daily" in low and "quota" in low:
            return FatalSendError(f"SES 24-hour sending quota is used up ({detail})")
        return RetryableSendError(f"SES throttled the request ({detail})", throttled=True)
    if code in ACCOUNT_REASONS:
        return FatalSendError(f"{ACCOUNT_REASONS[code]} ({detail})")
    if code in AUTH_CODES or status in (401, 403):
        return FatalSendError(f"SES rejected the AWS credentials ({detail})")
    if code in SERVER_CODES or status >= 500:
        return RetryableSendError(f"SES server error ({detail}, HTTP {status})")
    if code == "MessageRejected":
        if _mentions_sender(message, from_address) or "authority to send" in low:
            return FatalSendError(f"SES refuses our sender address ({detail})")
        return RejectedError(f"SES rejected the message ({detail})")
    if code in {"BadRequestException", "InvalidParameterValue"}:
        if _mentions_sender(message, from_address):
            return FatalSendError(f"SES refuses our sender address ({detail})")
        if any(word in low for word in _ADDRESS_WORDS):
            return RejectedError(f"SES refused the address ({detail})")
        return FatalSendError(f"SES refused the request as malformed ({detail})")
    return FatalSendError(f"unexpected SES error ({detail}, HTTP {status})")


def classify_bulk_status(status: str, error: str) -> TransportError | None:
    """A SendBulkEmail entry's Status -> None for SUCCESS, else the error-tree equivalent."""
    if status == "SUCCESS":
        return None
    detail = f"{status}: {error}" if error else status
    if status in BULK_THROTTLED:
        return RetryableSendError(f"SES throttled the entry ({detail})", throttled=True)
    if status in BULK_RETRYABLE:
        return RetryableSendError(f"SES could not send the entry now ({detail})")
    if status in BULK_REJECTED:
        return RejectedError(f"SES rejected the message ({detail})")
    if status in BULK_FATAL:
        return FatalSendError(f"{BULK_FATAL[status]} ({detail})")
    return FatalSendError(f"unexpected SES bulk status ({detail})")
