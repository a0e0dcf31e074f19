"""Per-list settings (issue 15): each value checked at the edge and named when refused,
applied all or nothing, through the real `mailer lists set` / `lists show`; migration 0006
keeps every row (the SQLite rebuild of deliveries must not cut feedback off its delivery)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Engine, select, text
from sqlalchemy.exc import IntegrityError

import mailer.models_registry  # noqa: F401
from mailer.errors import InputError
from mailer.feedback.models import FeedbackEvent
from mailer.sending.models import Delivery
from subscribers import list_settings, store
from subscribers.db import make_engine, session_factory
from subscribers.list_settings import CLEAR, ListChanges
from subscribers.migrate import alembic_config, upgrade
from subscribers.models import MailingList, Subscriber
from tests.conftest import Database

# -- the checks, one field at a time --------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "stored"),
    [("#B3261E", "#b3261e"), ("#15b", "#1155bb"), (" #abcdef ", "#abcdef")],
)
def test_accent_is_stored_as_rrggbb(given: str, stored: str) -> None:
    assert list_settings.clean_accent(given) == stored


@pytest.mark.parametrize(
    "bad", ["red", "#12345", "#ggg", "b3261e", "#b3261e;background:url(x)", "", "#1234567"]
)
def test_accent_refused_names_the_field(bad: str) -> None:
    with pytest.raises(InputError, match=r"^accent: "):
        list_settings.clean_accent(bad)


def test_logo_must_be_https() -> None:
    ok = "https://cdn.example.org/brief/logo.png?v=2"
    assert list_settings.clean_logo(ok) == ok


@pytest.mark.parametrize(
    "bad",
    [
        "http://cdn.example.org/logo.png",
        "javascript:alert(1)",
        "data:image/png;base64,AAAA",
        "//cdn.example.org/logo.png",
        "https://",
        'https://x.example/a"onerror="alert(1)',
        "https://x.example/a b.png",
        "https://x.example/\nlogo.png",
        "https://user:pw@x.example/logo.png",
        "https://[::1/logo.png",
        "https://x.example/" + "a" * 2100,
    ],
)
def test_logo_refused_names_the_field(bad: str) -> None:
    with pytest.raises(InputError, match=r"^logo: "):
        list_settings.clean_logo(bad)


@pytest.mark.parametrize(
    ("given", "stored"), [("en", "en"), ("zh-Hans", "zh-Hans"), ("ZH_hans", "zh-Hans")]
)
def test_language(given: str, stored: str) -> None:
    assert list_settings.clean_language(given) == stored


@pytest.mark.parametrize("bad", ["fr", "zh", "zh-Hant", "", "e n", "en-GB"])
def test_unknown_language_refused(bad: str) -> None:
    with pytest.raises(InputError, match=r"^lang: unknown language"):
        list_settings.clean_language(bad)


def test_time_zone_is_an_iana_name() -> None:
    assert list_settings.clean_time_zone("Asia/Shanghai") == "Asia/Shanghai"
    assert list_settings.clean_time_zone("asia/shanghai") == "Asia/Shanghai"
    for bad in ("Mars/Olympus", "../../etc/passwd", "/etc/localtime", "UTC+8", "", "Asia/"):
        with pytest.raises(InputError, match=r"^time-zone: unknown time zone"):
            list_settings.clean_time_zone(bad)


def test_subject_template_fields() -> None:
    tpl = "{newsletter}: {first_headline} ({date})"
    assert list_settings.clean_subject_template(tpl) == tpl
    values = {
        "newsletter": "The Brief",
        "first_headline": "Rates {cut}",
        "title": "t",
        "subject": "s",
        "date": "3 Dec",
        "items": "9",
    }
    # a brace in a value is text, never a field
    assert list_settings.fill_subject(tpl, values) == "The Brief: Rates {cut} (3 Dec)"
    assert list_settings.clean_subject_template("{{literal}} {newsletter}") == (
        "{{literal}} {newsletter}"
    )


@pytest.mark.parametrize(
    "bad",
    [
        "{newsletter.__class__}",
        "{newsletter[0]}",
        "{0}",
        "{}",
        "{newsletter!r}",
        "{newsletter:>500}",
        "{headline}",
        "{newsletter",
        "newsletter}",
        "",
        "a\nb",
    ],
)
def test_subject_template_refused_names_the_field(bad: str) -> None:
    with pytest.raises(InputError, match=r"^subject-template: "):
        list_settings.clean_subject_template(bad)


def test_greeting_and_welcome_limits() -> None:
    assert list_settings.clean_greeting("  Dear ") == "Dear"
    assert list_settings.clean_greeting("") == ""
    with pytest.raises(InputError, match=r"^greeting: "):
        list_settings.clean_greeting("Hi\nBcc: x@example.org")
    with pytest.raises(InputError, match=r"^welcome: "):
        list_settings.clean_welcome("  \n ")
    with pytest.raises(InputError, match=r"^welcome: "):
        list_settings.clean_welcome("hi \x1b[31m")
    assert list_settings.clean_welcome("# Hi\r\n\r\nThanks.\r\n") == "# Hi\n\nThanks."
    with pytest.raises(InputError, match=r"^welcome: 20001 characters"):
        list_settings.clean_welcome("x" * (list_settings.WELCOME_MAX + 1))
    with pytest.raises(InputError, match=r"^greeting: "):
        list_settings.clean_greeting("x" * (list_settings.GREETING_MAX + 1))


# -- the store: all or nothing, on both databases --------------------------------------------


def _list(db: Database) -> None:
    with db.sessions.begin() as s:
        store.create_list(s, "brief", name="The Brief", from_address="Brief <b@example.org>")


def test_update_list_all_or_nothing(db: Database) -> None:
    _list(db)
    with db.sessions.begin() as s:
        mlist = store.get_list(s, "brief")
        changed = list_settings.update_list(
            s,
            mlist,
            ListChanges(
                lang="zh-hans",
                accent_color="#B3261E",
                logo_url="https://cdn.example.org/logo.png",
                greeting="",
                welcome_markdown="# Welcome\n\nThanks.",
                subject_template="{newsletter}: {first_headline}",
                time_zone="Asia/Shanghai",
                reply_to="Editor@Example.org",
            ),
        )
        assert set(changed) == {
            "lang",
            "accent_color",
            "logo_url",
            "greeting",
            "welcome_markdown",
            "subject_template",
            "time_zone",
            "reply_to",
        }
    with pytest.raises(InputError, match=r"^time-zone: "), db.sessions.begin() as s:
        # a good value before a bad one: neither is stored
        list_settings.update_list(
            s, store.get_list(s, "brief"), ListChanges(lang="en", time_zone="Nowhere/Land")
        )
    with db.sessions() as s:
        m = store.get_list(s, "brief")
        assert (m.lang, m.accent_color, m.time_zone, m.greeting, m.reply_to) == (
            "zh-Hans",
            "#b3261e",
            "Asia/Shanghai",
            "",
            "editor@example.org",
        )
    with db.sessions.begin() as s:
        m = store.get_list(s, "brief")
        changed = list_settings.update_list(
            s, m, ListChanges(welcome_markdown=CLEAR, logo_url=CLEAR, time_zone=CLEAR)
        )
        assert set(changed) == {"welcome_markdown", "logo_url", "time_zone"}
        assert (m.welcome_markdown, m.logo_url, m.time_zone) == (None, None, None)
        assert list_settings.update_list(s, m, ListChanges(lang="zh-Hans")) == []
        with pytest.raises(InputError, match="nothing to change"):
            list_settings.update_list(s, m, ListChanges())


def test_new_list_defaults(db: Database) -> None:
    _list(db)
    with db.sessions() as s:
        shown = list_settings.describe(store.get_list(s, "brief"))
    assert shown["lang"] == "en" and shown["time-zone"] == "UTC"
    assert shown["welcome"] == "(none)" and shown["greeting"] == "(the language's default)"


# -- migration 0006 on a store with data --------------------------------------------------------


def _count(engine: Engine, sql: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(sql)).scalar_one())


def test_0006_round_trip_keeps_feedback_on_its_delivery(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    upgrade(engine)
    sessions = session_factory(engine)
    now = datetime(2026, 12, 3, tzinfo=UTC)
    with sessions.begin() as s:
        mlist = store.create_list(s, "brief", name="Brief", from_address="b@example.org")
        store.subscribe(s, "r@example.org", mlist, confirmed=True)
        sub = s.scalar(select(Subscriber))
        assert sub is not None
        row = Delivery(kind="confirm", subscriber_id=sub.id, status="sent", message_id="m1")
        s.add(row)
        s.flush()
        s.add(
            FeedbackEvent(
                event_hash="h" * 64,
                event_type="Bounce",
                ses_message_id="m1",
                delivery_id=row.id,
                occurred_at=now,
                raw={},
            )
        )
        s.add(Delivery(kind="welcome", subscriber_id=sub.id, status="sent"))
    with engine.begin() as conn:
        cfg = alembic_config(engine)
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0005")
    assert _count(engine, "SELECT count(*) FROM deliveries") == 1  # the welcome row went
    assert _count(engine, "SELECT count(*) FROM feedback_events WHERE delivery_id = 1") == 1
    assert _count(engine, "SELECT count(*) FROM subscriptions") == 1
    upgrade(engine)
    assert _count(engine, "SELECT count(*) FROM feedback_events WHERE delivery_id = 1") == 1
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        sql = conn.exec_driver_sql(
            "SELECT sql FROM sqlite_master WHERE name = 'deliveries'"
        ).scalar_one()
    assert "AUTOINCREMENT" in sql and "'welcome'" in sql
    with sessions.begin() as s:
        m = s.scalar(select(MailingList))
        assert m is not None and m.lang == "en"
    engine.dispose()


def test_delivery_kinds_checked_by_the_database(db: Database) -> None:
    _list(db)
    with db.sessions.begin() as s:
        store.subscribe(s, "r@example.org", store.get_list(s, "brief"), confirmed=True)
    for kind in ("welcome", "preferences", "confirm"):
        with db.sessions.begin() as s:
            s.add(Delivery(kind=kind, status="queued"))
    with pytest.raises(IntegrityError), db.sessions.begin() as s:
        s.add(Delivery(kind="newsletter", status="queued"))
