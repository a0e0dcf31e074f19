"""How `mailer` ends when it cannot run a command: the exit codes README lists, named
(mailer.cli.exit_codes.ExitCode) where they are decided, and the exception classes typer
really raises. Also two small one-name rules of the web and the system mails."""

from __future__ import annotations

from typing import Any

import click.exceptions
import pytest
import typer._click.exceptions as typer_click

import mailer.cli
from mailer.cli.exit_codes import ExitCode
from mailer.config import Settings
from mailer.errors import ConfigError
from mailer.render import i18n
from mailer.sending import reader_mails
from subscribers.models import MailingList, Subscriber


class _Raises:
    def __init__(self, err: BaseException) -> None:
        self.err = err

    def main(self, **_kw: Any) -> int:
        raise self.err


def _exit_of(monkeypatch: pytest.MonkeyPatch, err: BaseException) -> int:
    monkeypatch.setattr(mailer.cli, "command", lambda: _Raises(err))
    with pytest.raises(SystemExit) as ended:
        mailer.cli.main([])
    code = ended.value.code
    assert isinstance(code, int)
    return code


def test_ctrl_c_ends_with_interrupted(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _exit_of(monkeypatch, KeyboardInterrupt()) == ExitCode.INTERRUPTED.value == 130
    assert capsys.readouterr().err == "mailer: interrupted\n"


def test_a_bad_setting_ends_with_usage(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _exit_of(monkeypatch, ConfigError("MAILER_X is bad")) == ExitCode.USAGE.value == 2
    assert capsys.readouterr().err == "mailer: configuration error: MAILER_X is bad\n"


def test_a_usage_error_is_typers_own_class_and_ends_with_usage(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """typer vendors click: click.exceptions would not catch what its commands raise."""
    assert not issubclass(typer_click.UsageError, click.exceptions.UsageError)
    with pytest.raises(SystemExit) as ended:
        mailer.cli.main(["campaigns", "show", "not-a-number"])
    assert ended.value.code == ExitCode.USAGE
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "mailer campaigns show" in err, err


def test_the_desk_uses_the_web_states_test_send_limiter_under_its_one_name() -> None:
    from mailer.web.desk.context import Desk

    assert "test_limiter" not in Desk.__init__.__code__.co_names


def test_a_list_mail_takes_its_subject_as_given_not_from_the_templates_title() -> None:
    settings = Settings(base_url="https://dispatch.example", secret_key="k" * 32)
    mlist = MailingList(id=1, slug="brief", name="Brief", from_address="b@example.org")
    reader = Subscriber(id=7, email="r@example.org")
    context = {
        **i18n.template_context("en"),
        **reader_mails._brand(None, None),
        "title": "what the page says",
        "preheader": "",
        "preview_filler": "",
        "newsletter_name": "Brief",
        "preferences_url": "https://dispatch.example/preferences/x",
        "address_lines": [],
    }
    mail = reader_mails._list_mail(
        "preferences",
        "the subject",
        (reader_mails.PREFERENCES_HTML, reader_mails.PREFERENCES_TEXT),
        context,
        settings,
        mlist,
        reader,
    )
    assert mail.subject == "the subject"
