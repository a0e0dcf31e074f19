"""The one exception tree of brief-mailer.

Every error a user can cause or meet is one of these; lower-level errors are wrapped
``raise ... from err``. The CLI prints ``str(err)`` as one line and exits non-zero; the web
app maps them to status codes.

    MailerError
    ├── ConfigError              bad or missing MAILER_* setting
    ├── StoreError               subscriber store refused an operation
    │   ├── NotFoundError        no such list / subscriber / campaign
    │   ├── InvalidAddressError  email-validator said no
    │   ├── SuppressedError      address is suppressed or erased (needs --resubscribe)
    │   └── ConflictError        already exists / wrong state
    ├── ForbiddenError           the caller's role may not do this (a guard pause forced
    │                            by an editor)
    ├── UnavailableError         the database cannot be reached or is locked (try later)
    ├── InputError               bad input: a malformed file or payload (CSV, JSON), or a
    │                            value that breaks a rule (a list slug, a reason, a status)
    │   └── IssueParseError      an issue file did not parse (carries the line number)
    ├── RenderError              template or MJML failure
    ├── TokenError               signed token tampered, expired or for another purpose
    ├── TransportError           sending failed
    │   ├── RetryableSendError   throttling, 5xx, timeouts: try again later
    │   ├── RejectedError        this one message/address was refused
    │   └── FatalSendError       account-level: pause the whole campaign
    ├── VerificationError        SNS message signature/cert/topic/age check failed
    ├── ConfirmationError        an SNS SubscribeURL could not be visited (try again later)
    ├── FeedbackError            an SES event could not be understood
    └── SetupError               an AWS call of `mailer ses setup` failed (names the step)
"""

from __future__ import annotations


class MailerError(Exception):
    """Base of every error brief-mailer raises on purpose."""


class ConfigError(MailerError):
    """A MAILER_* setting is missing or invalid."""


class StoreError(MailerError):
    """The subscriber store refused an operation."""


class NotFoundError(StoreError):
    """The named list, subscriber or campaign does not exist."""


class InvalidAddressError(StoreError):
    """An email address failed validation."""


class SuppressedError(StoreError):
    """The address is on the suppression list (or erased) and needs an explicit resubscribe."""


class ConflictError(StoreError):
    """The object already exists, or is in a state that forbids the operation."""


class ForbiddenError(MailerError):
    """The caller's role may not do this (the web answers 403): the use case decides, so
    every entrance refuses alike."""


class UnavailableError(MailerError):
    """The database cannot be reached, or another process holds it locked: nobody's input
    is at fault, and the same command may work when tried again."""


class InputError(MailerError):
    """Bad input: a file or payload handed to us is malformed, or a value breaks a rule.
    The caller is at fault (the web answers 400), unlike ConflictError (the state is)."""


class IssueParseError(InputError):
    """An issue file did not parse; ``line`` is 1-based, or None for whole-file problems."""

    def __init__(self, message: str, line: int | None = None, source: str | None = None):
        self.line = line
        self.source = source
        where = source or "issue"
        prefix = f"{where}:{line}: " if line is not None else f"{where}: "
        super().__init__(prefix + message)
        self.reason = message


class RenderError(MailerError):
    """Rendering the email failed (template, MJML or CSS inlining)."""


class TokenError(MailerError):
    """A signed token is malformed, tampered with, expired or meant for something else."""


class TransportError(MailerError):
    """Sending a message failed."""


class RetryableSendError(TransportError):
    """Transient failure (throttling, 5xx, timeout, connection): retry with backoff."""

    def __init__(self, message: str, *, throttled: bool = False):
        super().__init__(message)
        self.throttled = throttled


class RejectedError(TransportError):
    """This message or address was refused; the row fails, the campaign goes on."""


class FatalSendError(TransportError):
    """Account-level failure (suspended, sending paused, unverified domain, bad credentials):
    the campaign pauses at once with this reason and no further calls are made."""


class NotSentError(RetryableSendError):
    """A message of a batch that did not go out because SES refused the account meanwhile
    (``fatal``): the row is handed back untouched and the campaign pauses with that reason,
    while the batch's messages that did go out are kept."""

    def __init__(self, fatal: FatalSendError):
        super().__init__(f"not sent: {fatal}")
        self.fatal = fatal


class VerificationError(MailerError):
    """An SNS message failed verification (signature, certificate, topic, age)."""


class ConfirmationError(MailerError):
    """Visiting a verified SNS SubscribeURL failed (network, HTTP status): worth a retry."""


class FeedbackError(MailerError):
    """An SES event payload could not be understood."""


class SetupError(MailerError):
    """Provisioning SES/SNS/SQS failed at a named step; running it again is safe."""
