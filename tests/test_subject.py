"""The subject a campaign goes out with (issue 15): the editor's --subject, the list's subject
template, or the issue's own; one function behind every entrance (publish.render_for)."""

from __future__ import annotations

import datetime
import email
import email.policy
from pathlib import Path

import pytest
from sqlalchemy import select, update

from mailer.errors import InputError
from mailer.issue.files import parse_issue_file
from mailer.issue.model import Issue, Item
from mailer.render.compiler import SUBJECT_MAX, Branding, render_issue
from mailer.render.subject import SUBJECT_FIELDS, choose_subject, format_subject
from mailer.sending import publish
from mailer.sending.models import Campaign
from mailer.transports.outbox import OutboxTransport
from subscribers import store
from subscribers.list_settings import ListChanges, update_list
from subscribers.models import MailingList, Subscriber
from tests.cli_support import run_cli
from tests.conftest import Database
from tests.delivery_helpers import ISSUE, seed_list

LONG = "Port of Tianjin clears a week of fog delays; Rail freight to Europe grows by a tenth"
ISSUE_OBJ = Issue(
    subject=LONG + "; Steel output slows",
    preheader="Three stories from the north",
    date=datetime.date(2025, 3, 3),
    intro=("Good morning.",),
    items=(
        Item(
            "Port of Tianjin clears a week of fog delays",
            "Caixin",
            ("Text.",),
            "https://a.example/1",
        ),
        Item(
            "Rail freight to Europe grows by a tenth", "Gazette", ("Text.",), "https://a.example/2"
        ),
    ),
    closing=(),
)
BRANDING = Branding("The North Brief", "https://north.example", "1 Quay Road")


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        (
            "{newsletter}: {first_headline}",
            "The North Brief: Port of Tianjin clears a week of fog delays",
        ),
        ("{newsletter}, {date}", "The North Brief, March 3, 2025"),
        ("{title}", LONG + "; Steel output slows"),
        ("{subject}", LONG + "; Steel output slows"),
        (
            "{items} stories: {first_headline}",
            "2 stories: Port of Tianjin clears a week of fog delays",
        ),
        ("{{Brief}} {newsletter}", "{Brief} The North Brief"),
    ],
)
def test_template_fields(template: str, expected: str) -> None:
    assert format_subject(template, ISSUE_OBJ, "The North Brief") == expected


def test_an_empty_date_leaves_no_dangling_separator() -> None:
    undated = Issue(**{**ISSUE_OBJ.__dict__, "date": None})
    assert format_subject("{newsletter} \u2014 {date}", undated, "N") == "N"


@pytest.mark.parametrize(
    ("template", "named"),
    [
        ("{newsletter}: {headline}", "{headline}"),
        ("{}", "{}"),
        ("{0}", "{0}"),
        ("{title.upper}", "{title.upper}"),
        ("{items[0]}", "{items[0]}"),
        ("{__class__}", "{__class__}"),
    ],
)
def test_unknown_field_is_an_error_naming_it(template: str, named: str) -> None:
    with pytest.raises(InputError) as exc:
        format_subject(template, ISSUE_OBJ, "N")
    assert f"unknown field {named}" in str(exc.value)
    assert all("{" + f + "}" in str(exc.value) for f in SUBJECT_FIELDS)


@pytest.mark.parametrize(
    ("template", "fragment"),
    [
        ("{title!r}", "no conversion or format spec"),
        ("{date:>99999999}", "no conversion or format spec"),
        ("{title:{date}}", "no conversion or format spec"),
        ("{newsletter", "brace"),
        ("}", "brace"),
    ],
)
def test_format_tricks_are_refused(template: str, fragment: str) -> None:
    with pytest.raises(InputError) as exc:
        format_subject(template, ISSUE_OBJ, "N")
    assert fragment in str(exc.value)


def test_editor_subject_wins_then_template_then_issue() -> None:
    assert choose_subject(ISSUE_OBJ, "N", override=" Mine  ", template="{newsletter}") == "Mine"
    assert choose_subject(ISSUE_OBJ, "N", template="{newsletter}!") == "N!"
    assert choose_subject(ISSUE_OBJ, "N") == ISSUE_OBJ.subject


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("a\nBcc: x@evil.example", "line breaks"),
        ("x" * 251, "251"),
    ],
)
def test_bad_editor_subjects_are_refused(override: str, fragment: str) -> None:
    with pytest.raises(InputError) as exc:
        choose_subject(ISSUE_OBJ, "N", override=override)
    assert str(exc.value).startswith("--subject: ") and fragment in str(exc.value)


def test_no_length_warning_when_the_chosen_subject_fits() -> None:
    assert len(ISSUE_OBJ.subject) > 100
    plain = render_issue(ISSUE_OBJ, BRANDING)
    [warning] = [w for w in plain.warnings if w.startswith("subject is")]
    assert "--subject" in warning and str(len(ISSUE_OBJ.subject)) in warning
    short = render_issue(ISSUE_OBJ, BRANDING, subject="The North Brief: fog lifts")
    assert short.subject == "The North Brief: fog lifts"
    assert not [w for w in short.warnings if w.startswith("subject")]
    too_long = render_issue(ISSUE_OBJ, BRANDING, subject="y" * (SUBJECT_MAX + 1))
    assert [w for w in too_long.warnings if w.startswith("subject is")]


# -- through the store, the engine and the CLI (SQLite and PostgreSQL) -----------------------


def _list(db: Database) -> MailingList:
    with db.sessions() as s:
        return store.get_list(s, "brief")


def _sent_subjects(outbox: Path, campaign_id: int) -> set[str]:
    files = (outbox / str(campaign_id)).glob("*.eml")
    return {
        str(email.message_from_bytes(f.read_bytes(), policy=email.policy.default)["Subject"])
        for f in files
    }


def test_list_template_and_editor_subject_reach_the_readers(db: Database) -> None:
    seed_list(db.sessions, 3)
    with db.sessions.begin() as s:
        mlist = store.get_list(s, "brief")
        update_list(s, mlist, ListChanges(subject_template="{newsletter}: {first_headline}"))
    issue = parse_issue_file(ISSUE)
    mlist = _list(db)
    settings = db.settings()
    rendered = publish.render_for(settings, mlist, issue)
    first = issue.subject.split("; ")[0]
    assert rendered.subject == f"The Test Brief: {first}"
    created = publish.create(db.sessions, mlist, issue, rendered)
    publish.run(settings, db.sessions, OutboxTransport(settings.outbox_dir), created.campaign_id)
    assert _sent_subjects(settings.outbox_dir, created.campaign_id) == {rendered.subject}
    # the editor's own subject for one send overrides the list's template
    mine = publish.render_for(settings, mlist, issue, subject="Fog lifts over Tianjin")
    assert mine.subject == "Fog lifts over Tianjin"
    again = publish.create(db.sessions, mlist, issue, mine, publish.Schedule(force=True))
    with db.sessions() as s:
        stored = s.scalar(select(Campaign.subject).where(Campaign.id == again.campaign_id))
    assert stored == "Fog lifts over Tianjin"


def test_cli_send_subject_and_a_bad_stored_template(db: Database) -> None:
    seed_list(db.sessions, 2)
    r = run_cli(db, "send", str(ISSUE), "--list", "brief", "--dry-run", "--subject", "Short one")
    assert r.returncode == 0, r.stderr
    assert "subject: Short one" in r.stdout
    assert "subject is" not in r.stderr  # no length warning for a subject that fits
    r = run_cli(db, "send", str(ISSUE), "--list", "brief", "--dry-run", "--subject", " ")
    assert r.returncode != 0 and "--subject: empty" in r.stderr
    # a template stored before validation (or by hand) is refused at send, naming the field
    with db.sessions.begin() as s:
        s.execute(update(MailingList).values(subject_template="{newsletter}: {headline}"))
    r = run_cli(db, "send", str(ISSUE), "--list", "brief", "--dry-run")
    assert r.returncode != 0 and "unknown field {headline}" in r.stderr
    assert "Traceback" not in r.stderr
    with db.sessions() as s:
        assert s.scalar(select(Campaign.id)) is None
        assert s.scalar(select(Subscriber.id)) is not None


def test_issue_text_in_a_field_is_never_formatted_again() -> None:
    """A headline holding braces or placeholders is copied as it is: str.format fills once."""
    tricky = Issue(
        **{
            **ISSUE_OBJ.__dict__,
            "subject": "{newsletter} {0} {title.__class__} %%unsubscribe_url%%; Second",
        }
    )
    got = format_subject("{newsletter}: {first_headline}", tricky, "N")
    assert got == "N: {newsletter} {0} {title.__class__} %%unsubscribe_url%%"


def test_a_non_ascii_subject_reaches_the_reader_whole(db: Database) -> None:
    seed_list(db.sessions, 1)
    mlist = _list(db)
    settings = db.settings()
    issue = parse_issue_file(ISSUE)
    wanted = "中国简报 😀 — 芯片与港口: " + "长" * 60
    rendered = publish.render_for(settings, mlist, issue, subject=wanted)
    created = publish.create(db.sessions, mlist, issue, rendered)
    publish.run(settings, db.sessions, OutboxTransport(settings.outbox_dir), created.campaign_id)
    assert _sent_subjects(settings.outbox_dir, created.campaign_id) == {wanted}
