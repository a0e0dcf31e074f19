"""The list's settings reach the issue's rendering through one function (issue 15):
language, greeting (the language's default, a custom one, or none)."""

from __future__ import annotations

import pytest

from mailer.config import Settings
from mailer.render.list_brand import branding_for, greeting_for
from mailer.sending import publish
from subscribers.models import MailingList
from tests.delivery_helpers import fixture_issue


def _list(**settings: object) -> MailingList:
    base: dict[str, object] = {
        "id": 1,
        "slug": "brief",
        "name": "The Brief",
        "from_address": "b@example.org",
        "lang": "en",
        "greeting": None,
    }
    base.update(settings)
    return MailingList(**base)


@pytest.mark.parametrize(
    ("lang", "greeting", "expected"),
    [
        ("en", None, "Hello {name},"),
        ("zh-Hans", None, "{name}，您好："),  # the language's word order and punctuation
        ("zh-Hans", "Dear", "Dear"),
        ("en", "", ""),
    ],
)
def test_greeting(lang: str, greeting: str | None, expected: str) -> None:
    assert greeting_for(_list(lang=lang, greeting=greeting)) == expected


def test_branding_for_carries_the_lists_settings() -> None:
    settings = Settings(base_url="https://news.example.org")
    b = branding_for(settings, _list(lang="zh-Hans"), archive_url="https://news.example.org/a/1")
    assert (b.newsletter_name, b.lang, b.greeting) == ("The Brief", "zh-Hans", "{name}，您好：")
    assert b.archive_url == "https://news.example.org/a/1"
    # a stored language no longer shipped falls back to English
    assert branding_for(settings, _list(lang="fr")).lang == "en"


def test_render_for_uses_the_list() -> None:
    settings = Settings(base_url="https://news.example.org")
    rendered = publish.render_for(settings, _list(lang="zh-Hans", greeting="Dear"), fixture_issue())
    assert 'lang="zh-Hans"' in rendered.html
    values = {"unsubscribe_url": "https://x/u", "preferences_url": "https://x/p", "name": "Ann"}
    _, text = rendered.personalize(values)
    assert "Dear Ann," in text.splitlines()
