"""Defaults that suit the transport (issue 17): with MAILER_SEND_CONCURRENCY and
MAILER_BATCH_SIZE unset, SES gets many calls in flight and big batches, SMTP and the outbox
keep small ones; a variable that is set always wins."""

from __future__ import annotations

import pytest

from mailer.config import Settings


@pytest.mark.parametrize(
    ("env", "want"),
    [
        ({}, (16, 200)),
        ({"MAILER_TRANSPORT": "smtp"}, (16, 200)),
        ({"MAILER_TRANSPORT": "ses"}, (64, 500)),
        ({"MAILER_TRANSPORT": "ses", "MAILER_SES_API": "bulk"}, (48, 4000)),
        ({"MAILER_TRANSPORT": "ses", "MAILER_BATCH_SIZE": "7"}, (64, 7)),
        ({"MAILER_TRANSPORT": "ses", "MAILER_SEND_CONCURRENCY": "3"}, (3, 500)),
    ],
)
def test_defaults_follow_the_transport(env: dict[str, str], want: tuple[int, int]) -> None:
    base = {"MAILER_SECRET_KEY": "x" * 40}
    settings = Settings.from_env({**base, **env})
    assert (settings.send_concurrency, settings.batch_size) == want


def test_an_override_in_code_wins_too() -> None:
    settings = Settings.from_env({"MAILER_TRANSPORT": "ses"}, batch_size=9)
    assert (settings.send_concurrency, settings.batch_size) == (64, 9)
