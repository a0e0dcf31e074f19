"""Control characters stay out of readers' names and mail headers (issue 15's gaps).

A name from `mailer subscribers add --name` or a CSV import with a C0 or C1 control
character (NUL, which PostgreSQL refuses, tab, line breaks, ESC, DEL, NEL, CSI...) is
refused with an error naming the field or the line; the rule is
subscribers.addresses.clean_name, in store.subscribe and the importer. Every header value
a message is built with refuses the same characters, and the Unicode line and paragraph
separators (render.message._safe_header). SQLite and PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from mailer.errors import InputError, RenderError
from mailer.render.message import MessageTemplate
from subscribers import importer, store
from subscribers.addresses import clean_name
from subscribers.models import Subscriber
from tests.conftest import Database

CONTROLS = [chr(c) for c in (*range(0x20), *range(0x7F, 0xA0))]


def mailer(db: Database, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mailer", *args],
        env=db.env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def people(db: Database) -> int:
    with db.sessions() as s:
        return s.scalar(select(func.count()).select_from(Subscriber)) or 0


def test_the_rule_refuses_every_c0_and_c1_control_and_nothing_else() -> None:
    for ch in CONTROLS:
        with pytest.raises(InputError, match=rf"^name: contains .* \(U\+{ord(ch):04X}\)"):
            clean_name(f"Ann{ch}Lee")
        with pytest.raises(InputError):
            clean_name(f"{ch}Ann")  # at an end too: refused, not trimmed away
    for fine in ("Ann Lee", "  Ann  ", "张伟", "Zoë", "O'Brien", "Ann\u00a0Lee", "👩‍💻"):
        assert clean_name(fine) == fine.strip()
    assert clean_name("   ") is None and clean_name(None) is None


def test_the_store_refuses_a_control_character_in_a_name(db: Database) -> None:
    with db.sessions.begin() as s:
        store.create_list(s, "brief", name="Brief", from_address="b@example.org")
    for ch in ("\x00", "\x07", "\t", "\n", "\x1b", "\x7f", "\x85", "\x9b"):
        with db.sessions.begin() as s, pytest.raises(InputError, match=r"^name: contains"):
            store.subscribe(s, "ann@example.com", store.get_list(s, "brief"), name=f"A{ch}n")
    with db.sessions.begin() as s:  # and for a reader who is already there
        mlist = store.get_list(s, "brief")
        store.subscribe(s, "ann@example.com", mlist, name="Ann", confirmed=True)
    with db.sessions.begin() as s, pytest.raises(InputError, match="U\\+0000"):
        store.subscribe(s, "ann@example.com", store.get_list(s, "brief"), name="Ann\x00")
    with db.sessions() as s:
        assert store.get_subscriber(s, "ann@example.com").name == "Ann"


def test_cli_add_refuses_a_name_with_a_control_character(db: Database) -> None:
    r = mailer(db, "lists", "create", "brief", "--name", "Brief", "--from", "b@example.org")
    assert r.returncode == 0, r.stderr
    for name, code in (("Ann\x1b[2J", "U+001B"), ("Ann\nBcc: x@evil.example", "U+000A")):
        r = mailer(db, "subscribers", "add", "ann@example.com", "--list", "brief", "--name", name)
        assert r.returncode != 0
        assert "name: contains" in r.stderr and code in r.stderr, r.stderr
        assert "Traceback" not in r.stderr
    assert people(db) == 0
    r = mailer(db, "subscribers", "add", "ann@example.com", "--list", "brief", "--name", "Ann")
    assert r.returncode == 0, r.stderr


def test_import_reports_each_name_with_a_control_character_by_its_line(
    db: Database, tmp_path: Path
) -> None:
    with db.sessions.begin() as s:
        store.create_list(s, "brief", name="Brief", from_address="b@example.org")
    path = tmp_path / "readers.csv"
    path.write_bytes(
        "email,name\n"
        "ok@example.com,Fine Name\n"
        "bell@example.com,Ring\x07Bell\n"
        'tab@example.com,"Tab\tName"\n'
        "esc@example.com,Esc\x1b[31m\n"
        "c1@example.com,Nel\u0085Name\n"
        "zh@example.com,张伟\n".encode()
    )
    problems: list[importer.Problem] = []
    report = importer.import_csv(db.sessions, path, "brief", on_problem=problems.append)
    assert [(p.line, p.reason) for p in problems] == [(n, "invalid name") for n in (3, 4, 5, 6)]
    assert all(p.value.startswith("contains ") for p in problems)
    assert report.added == 2
    with db.sessions() as s:
        names = {e: n for e, n in s.execute(select(Subscriber.email, Subscriber.name))}
    assert names == {"ok@example.com": "Fine Name", "zh@example.com": "张伟"}
    # through the CLI: the line and the field, on stderr
    r = mailer(db, "subscribers", "import", str(path), "--list", "brief")
    assert "line 3: invalid name: contains '\\x07' (U+0007)" in r.stderr, r.stderr


# -- headers --------------------------------------------------------------------------------


@pytest.mark.parametrize("ch", [*CONTROLS, "\u2028", "\u2029"])
def test_no_header_value_may_hold_a_control_character(ch: str) -> None:
    with pytest.raises(RenderError, match=rf"^To: .*\(.*, U\+{ord(ch):04X}\)$"):
        MessageTemplate.reader_headers(f"a{ch}@example.com", "https://u.example/x", "<m@x>")
    with pytest.raises(RenderError, match=r"^Subject: header value contains a control"):
        _template(subject=f"Morning{ch}brief")


def test_printable_header_values_pass_as_they_are() -> None:
    headers = MessageTemplate.reader_headers("a@example.com", "https://u.example/x", "<m@x>")
    assert headers["To"] == "a@example.com"
    message = _template(subject="早安\u00a0brief — Zoë").render(
        to="a@example.com",
        fields={"unsubscribe_url": "https://u", "preferences_url": "https://p", "name": ""},
        headers=headers,
    )
    assert b"Subject: =?utf-8?" in message


def _template(subject: str) -> MessageTemplate:
    return MessageTemplate.build(
        campaign_id=1,
        subject=subject,
        from_address="Brief <b@example.org>",
        html="<p>%%name%%</p>",
        text="%%name%%",
        list_name="Brief",
        list_slug="brief",
    )
