"""MAILER_TEMPLATE_DIR (mailer/templates.py): an operator's file replaces the shipped one of
the same name, in the email renderer, the confirmation mail, the reader pages and /static;
every other name falls back to the shipped templates. A bad setting is a ConfigError
naming the variable. (tests/test_wheel.py checks the same from an installed wheel.)"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mailer.config import Settings
from mailer.errors import ConfigError
from mailer.issue.files import parse_issue_file
from mailer.render.compiler import Branding, render_issue
from mailer.templates import override_folder, search_path, shipped_folder
from mailer.web.confirm_mail import ConfirmationMail
from mailer.web.confirm_mail import render_bodies as confirmation_bodies
from tests.conftest import Database
from tests.web_support import Web

ISSUE = Path(__file__).parent / "fixtures" / "issues" / "brief-basic.txt"
REPO_TEMPLATES = Path(__file__).resolve().parents[1] / "templates"

TEXT_OVERRIDE = (
    "Our own text edition of {{ newsletter_name }}\n"
    "{% for item in items %}* {{ item.title }}\n{% endfor %}"
    "Unsubscribe: {{ ph.unsubscribe_url }}\n"
)


@pytest.fixture
def overrides(tmp_path: Path) -> Path:
    """A template dir replacing issue.txt.j2, confirm.txt.j2, lists.html; adding extra.css."""
    root = tmp_path / "custom"
    (root / "email").mkdir(parents=True)
    (root / "web" / "static").mkdir(parents=True)
    (root / "email" / "issue.txt.j2").write_text(TEXT_OVERRIDE)
    (root / "email" / "confirm.txt.j2").write_text("Please confirm: {{ confirm_url }}\n")
    (root / "web" / "lists.html").write_text(
        '{% extends "base.html" %}{% block main %}<h1>Our own archive page</h1>{% endblock %}'
    )
    (root / "web" / "static" / "extra.css").write_text("/* ours */\n")
    return root


def test_the_shipped_templates_are_found_without_a_setting() -> None:
    assert search_path("email") == [shipped_folder("email")]
    assert (shipped_folder("email") / "issue.mjml.j2").is_file()
    assert (shipped_folder("web") / "base.html").is_file()
    assert (shipped_folder("web/static") / "site.css").is_file()
    # in this (editable) install the shipped package is the checkout's templates/ folder
    assert shipped_folder("email").resolve() == (REPO_TEMPLATES / "email").resolve()


def test_the_override_folder_comes_first_and_missing_folders_fall_back(overrides: Path) -> None:
    assert search_path("email", str(overrides)) == [overrides / "email", shipped_folder("email")]
    assert search_path("web", str(overrides)) == [overrides / "web", shipped_folder("web")]
    only_email = overrides.parent / "only-email"
    (only_email / "email").mkdir(parents=True)
    assert search_path("web", str(only_email)) == [shipped_folder("web")]
    assert override_folder("web/static", str(only_email)) is None


def test_the_setting_is_read_from_the_environment(overrides: Path) -> None:
    settings = Settings.from_env({"MAILER_TEMPLATE_DIR": str(overrides)})
    assert settings.template_dir == str(overrides)
    assert Settings.from_env({}).template_dir == ""


@pytest.mark.parametrize("kind", ["missing", "file", "empty"])
def test_a_bad_template_dir_is_a_config_error_naming_the_variable(
    tmp_path: Path, kind: str
) -> None:
    target = tmp_path / kind
    if kind == "file":
        target.write_text("not a folder")
    elif kind == "empty":
        (target / "mail").mkdir(parents=True)  # neither email/ nor web/: a slip
    with pytest.raises(ConfigError, match=r"^MAILER_TEMPLATE_DIR: "):
        search_path("email", str(target))


def test_an_unknown_folder_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="no template folder"):
        shipped_folder("emails")


def test_the_issue_text_template_is_overridden_and_the_html_is_shipped(overrides: Path) -> None:
    issue = parse_issue_file(ISSUE)
    shipped = render_issue(issue, Branding("The Brief", "https://news.example", "1 Road"))
    ours = render_issue(
        issue, Branding("The Brief", "https://news.example", "1 Road", template_dir=str(overrides))
    )
    assert ours.text.startswith("Our own text edition of The Brief\n")
    assert f"* {issue.items[0].title}\n" in ours.text
    assert "Unsubscribe: %%unsubscribe_url%%" in ours.text  # placeholders still work
    _, text = ours.personalize(
        {"unsubscribe_url": "https://u.example/t", "name": "", "preferences_url": ""}
    )
    assert "Unsubscribe: https://u.example/t" in text
    assert not shipped.text.startswith("Our own")
    assert ours.html == shipped.html  # no HTML template in the override: the shipped one


def test_branding_from_settings_carries_the_template_dir(overrides: Path) -> None:
    settings = Settings(template_dir=str(overrides), env="test")
    assert Branding.from_settings(settings, "The Brief").template_dir == str(overrides)


def test_the_confirmation_mail_uses_the_override(overrides: Path) -> None:
    mail = ConfirmationMail(
        to="reader@example.com",
        subscriber_id=1,
        list_name="The Brief",
        from_address="The Brief <brief@example.org>",
        reply_to=None,
        confirm_url="https://news.example/confirm/abc",
        expires_at=datetime(2026, 1, 2, 3, 4, tzinfo=UTC),
    )
    settings = Settings(template_dir=str(overrides), env="test")
    html, text = confirmation_bodies(mail, settings)
    assert text == "Please confirm: https://news.example/confirm/abc\n"
    assert "https://news.example/confirm/abc" in html  # confirm.mjml: shipped


@pytest.fixture
def web(db: Database, overrides: Path) -> Iterator[Web]:
    w = Web(db, template_dir=str(overrides))
    yield w
    w.close()


def test_the_reader_pages_and_static_files_use_the_override(web: Web) -> None:
    archive = web.client.get("/archive")
    assert archive.status_code == 200
    assert "<h1>Our own archive page</h1>" in archive.text
    subscribe = web.client.get("/subscribe/brief")  # subscribe.html: shipped
    assert subscribe.status_code == 200
    assert 'name="csrf_token"' in subscribe.text
    assert web.client.get("/static/extra.css").text == "/* ours */\n"
    site_css = web.client.get("/static/site.css")  # not overridden: shipped
    assert site_css.status_code == 200
    assert site_css.text == (REPO_TEMPLATES / "web" / "static" / "site.css").read_text()
