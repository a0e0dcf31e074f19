"""The subject line a campaign goes out with: the editor's, the list's template, or the issue's.

Upstream subjects join two headlines and run past 100 characters, which inboxes cut. The
editor sets one for a send (``mailer send --subject``, the API, the desk), or the list has a
subject template such as ``{newsletter}: {first_headline}`` (stored per list by `mailer lists
set --subject-template`); otherwise the issue's own subject is used. Every entrance goes
through :func:`choose_subject` (by way of ``mailer.sending.publish.render_for``).

Template fields (``str.format`` names only: no attributes, indexes, conversions or format
specs, because the values come from the issue file; the one check is
``subscribers.list_settings.clean_subject_template``, which ``lists set`` applies on write):

    {newsletter}       the list's name
    {first_headline}   the issue subject's first headline (upstream joins them with ';')
    {title}            the issue's whole subject ({subject} is the same)
    {date}             the issue's date, 'March 3, 2025' in the list's language ('2025年3月3日'
                       in zh-Hans; '' when the issue has none)
    {items}            how many items the issue has
"""

from __future__ import annotations

import datetime

from mailer.errors import InputError
from mailer.issue.model import Issue
from mailer.render import i18n
from subscribers.list_settings import SUBJECT_FIELDS, fill_subject

__all__ = ["SUBJECT_FIELDS", "SUBJECT_LIMIT", "choose_subject", "clean_subject", "format_subject"]

SUBJECT_LIMIT = 250
"""Longest subject accepted at all (the editor's warning starts far earlier, at 78)."""
_MONTHS = (
    *("January", "February", "March", "April", "May", "June", "July"),
    *("August", "September", "October", "November", "December"),
)
_EDGE = " \t-\u2013\u2014:|,;\u00b7"


def _has_control(text: str) -> bool:
    return any(ord(c) < 32 or 127 <= ord(c) < 160 or 0xD800 <= ord(c) < 0xE000 for c in text)


def clean_subject(value: str, *, what: str = "subject") -> str:
    """A subject as the editor typed it: one line of text, spaces tidied, not empty."""
    if _has_control(value):
        raise InputError(f"{what}: one line of text, without line breaks or control characters")
    text = " ".join(value.split())
    if not text:
        raise InputError(f"{what}: empty (leave it out to use the issue's own subject)")
    if len(text) > SUBJECT_LIMIT:
        raise InputError(f"{what}: {len(text)} characters, more than {SUBJECT_LIMIT}")
    return text


def _date_text(date: datetime.date | None, lang: str = "en") -> str:
    if not date:
        return ""
    if i18n.supported(lang) == "en":
        return f"{_MONTHS[date.month - 1]} {date.day}, {date.year}"
    from babel.dates import format_date

    return format_date(date, "long", locale=i18n.locale_name(i18n.supported(lang)))


def subject_values(issue: Issue, newsletter: str, lang: str = "en") -> dict[str, str]:
    """What each template field stands for, for this issue and list (``lang``: the list's)."""
    return {
        "newsletter": newsletter,
        "first_headline": issue.subject.split("; ")[0],
        "title": issue.subject,
        "subject": issue.subject,
        "date": _date_text(issue.date, lang),
        "items": str(len(issue.items)),
    }


def format_subject(template: str, issue: Issue, newsletter: str, lang: str = "en") -> str:
    """The subject from a list's template, e.g. '{newsletter}: {first_headline}'."""
    filled = fill_subject(template, subject_values(issue, newsletter, lang))
    # a field that came out empty ({date} of an undated issue) leaves no dangling ' - '
    return clean_subject(" ".join(filled.split()).strip(_EDGE), what="subject template")


def choose_subject(
    issue: Issue,
    newsletter: str,
    *,
    override: str | None = None,
    template: str | None = None,
    lang: str = "en",
) -> str:
    """The editor's subject if given, else the list's template filled (in the list's
    ``lang``), else the issue's."""
    if override is not None:
        return clean_subject(override, what="--subject")
    if template:
        return format_subject(template, issue, newsletter, lang)
    return issue.subject
