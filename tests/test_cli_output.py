"""Text from the store never reaches the terminal raw: names, sources, bounce details and
CSV cells with ESC sequences, C1 controls and bidi overrides come out escaped, from every
command that prints them, through the real ``mailer`` process (and a real terminal)."""

from __future__ import annotations

import csv
import io
import json
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest
from rich.table import Table
from sqlalchemy import text

from mailer.cli.safe_text import SafeConsole, safe_cell, safe_json, safe_text
from subscribers import store
from tests.conftest import Database

ROOT = Path(__file__).resolve().parents[1]
ISSUE = ROOT / "tests" / "fixtures" / "issues" / "brief-basic.txt"

#: retitles the window, clears the screen, an 8-bit CSI, a right-to-left override, a line
#: separator, DEL: what a hostile CSV row can put in a name
EVIL = "Eve\x1b]0;pwned\x07\x1b[2J\x9b31m\u202egnp.exe\u2028\x7fend"
EVIL_SHOWN = r"Eve\x1b]0;pwned\x07\x1b[2J\x9b31m\u202egnp.exe\u2028\x7fend"
MARKUP = "[link=https://evil.example/]Brief[/link]"
# anything a terminal obeys, except the line breaks and the tabs between the columns of a
# piped listing (mailer.cli.tables) that the commands print themselves
UNSAFE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]"
)


def unsafe_in(output: bytes) -> list[str]:
    return UNSAFE.findall(output.decode("utf-8"))


# -- the helper --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("\x1b[31mred", r"\x1b[31mred"),
        ("bell\x07", r"bell\x07"),
        ("tab\there", r"tab\x09here"),
        ("two\nlines\r", r"two\x0alines\x0d"),
        ("c1\x9b2J\x85", r"c1\x9b2J\x85"),
        ("del\x7f", r"del\x7f"),
        ("\u202eabc\u2066x\u2069\u200f\u061c", r"\u202eabc\u2066x\u2069\u200f\u061c"),
        ("a\u2028b\u2029c", r"a\u2028b\u2029c"),
        ("张伟 Zoë 👩‍💻 e\u0301", "张伟 Zoë 👩‍💻 e\u0301"),  # letters, ZWJ emoji, combining mark
        (EVIL, EVIL_SHOWN),
    ],
)
def test_safe_text_escapes_what_a_terminal_obeys(raw: str, shown: str) -> None:
    assert safe_text(raw) == shown
    assert not UNSAFE.search(safe_text(raw))


def test_safe_text_keeps_our_own_line_breaks_when_asked() -> None:
    assert safe_text("one\ntwo\x1b", lines=True) == "one\ntwo\\x1b"
    assert safe_text(42) == "42"


def test_safe_json_is_the_same_json_without_raw_controls() -> None:
    data = {"name": EVIL, "city": "北京", "n": 1}
    out = safe_json(data)
    assert json.loads(out) == data
    assert not unsafe_in(out.encode())
    assert "北京" in out  # readable, not \\u escaped


def test_the_console_escapes_strings_and_cells_never_read_as_markup() -> None:
    buffer = io.StringIO()
    console = SafeConsole(file=buffer, force_terminal=True, width=200)
    console.print(f"forgot: {EVIL}", markup=False, highlight=False)
    table = Table("name", "title")
    table.add_row(safe_cell(MARKUP), EVIL)
    console.print(table)
    out = buffer.getvalue()
    assert "Eve\x1b" not in out and "\x9b" not in out and "\u202e" not in out
    assert out.count(EVIL_SHOWN) == 2
    assert MARKUP in out and "\x1b]8;" not in out  # shown as text, not made a hyperlink


# -- through the real entry point ---------------------------------------------------------------


def mailer(db: Database, *args: str, **env: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "mailer", *args],
        env=db.env(COLUMNS="400", **env),
        capture_output=True,
        timeout=120,
        cwd=db.tmp,
    )


@pytest.fixture
def hostile_reader(db: Database) -> Database:
    """A list whose name is markup, a reader whose name and ledger source are hostile, and
    a suppression whose detail is."""
    with db.sessions.begin() as s:
        mlist = store.create_list(s, "brief", name=MARKUP, from_address="b@example.org")
        actor = store.Actor(f"web{EVIL}"[:64], ip="192.0.2.1", user_agent=EVIL)
        eve = store.subscribe(s, "eve@example.com", mlist, confirmed=True, actor=actor)
        eve.subscriber.name = EVIL  # stored before names were checked (addresses.clean_name)
        store.suppress(s, "bounced@example.com", "hard_bounce", detail=EVIL)
    return db


@pytest.fixture
def hostile(hostile_reader: Database) -> Database:
    """... and a campaign whose subject and pause reason are hostile."""
    db = hostile_reader
    sent = mailer(db, "send", str(ISSUE), "--list", "brief")
    assert sent.returncode == 0, sent.stderr
    with db.engine.begin() as conn:
        conn.execute(
            text("UPDATE campaigns SET subject = :s, pause_reason = :r"), {"s": EVIL, "r": EVIL}
        )
    return db


#: every command that prints stored text
PRINTING = [
    ("subscribers", "show", "eve@example.com"),
    ("subscribers", "show", "eve@example.com", "--json"),
    ("lists", "show"),
    ("suppressions", "list"),
    ("campaigns", "list"),
    ("campaigns", "show", "1"),
    ("stats",),
]


def test_no_command_prints_a_raw_control(hostile: Database) -> None:
    printed = {}
    for args in PRINTING:
        result = mailer(hostile, *args)
        assert result.returncode == 0, (args, result.stderr)
        assert unsafe_in(result.stdout) == [] and unsafe_in(result.stderr) == [], args
        assert b"\x1b" not in result.stdout + result.stderr, args
        printed[args] = result.stdout.decode()
    show = printed[PRINTING[0]]
    assert f"eve@example.com  name: {EVIL_SHOWN}" in show
    assert f"via {safe_text(f'web{EVIL}'[:64])}" in show
    as_json = json.loads(printed[PRINTING[1]])
    assert as_json["name"] == EVIL  # the same data, only written safely
    assert as_json["consent_events"][0]["user_agent"] == EVIL
    assert MARKUP in printed[("lists", "show")]  # as text, not read as markup
    assert EVIL_SHOWN[:20] in printed[("suppressions", "list")]
    assert safe_text(EVIL[:40])[:20] in printed[("stats",)]
    with hostile.engine.begin() as conn:
        conn.execute(text("UPDATE campaigns SET subject = :s"), {"s": MARKUP})
    assert MARKUP in mailer(hostile, "stats").stdout.decode()


def test_export_to_a_pipe_is_exact(hostile_reader: Database) -> None:
    result = mailer(hostile_reader, "subscribers", "export", "--list", "brief")
    rows = list(csv.reader(io.StringIO(result.stdout.decode(), newline="")))
    assert rows[1][:2] == ["eve@example.com", EVIL]


def run_on_terminal(db: Database, *args: str) -> bytes:
    """``mailer ARGS`` with its stdout on a pseudo-terminal: everything it wrote there."""
    controller, terminal = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mailer", *args],
            env=db.env(COLUMNS="400", TERM="xterm-256color"),
            stdout=terminal,
            stderr=subprocess.PIPE,
            cwd=db.tmp,
        )
    finally:
        os.close(terminal)
    chunks = []
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # EIO: the process closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(controller)
    assert proc.wait(timeout=120) == 0, proc.stderr.read() if proc.stderr else ""
    if proc.stderr:
        proc.stderr.close()
    return b"".join(chunks)


def test_export_and_show_on_a_terminal_are_escaped(hostile_reader: Database) -> None:
    out = run_on_terminal(hostile_reader, "subscribers", "export", "--list", "brief")
    assert b"\x1b" not in out
    assert unsafe_in(out.replace(b"\r", b"")) == []  # the terminal's own CR LF aside
    assert EVIL_SHOWN.encode() in out
    out = run_on_terminal(hostile_reader, "subscribers", "show", "eve@example.com")
    assert b"\x1b]0;pwned" not in out and b"\xc2\x9b" not in out and "\u202e".encode() not in out
    assert EVIL_SHOWN.encode() in out


def test_bad_rows_and_errors_are_escaped(hostile_reader: Database, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(f"email,name\nnot{EVIL}address,X\n", encoding="utf-8")
    result = mailer(hostile_reader, "subscribers", "import", str(bad), "--list", "brief")
    assert result.returncode == 0
    assert b"line 2: invalid address" in result.stderr
    assert unsafe_in(result.stderr) == []
    result = mailer(hostile_reader, "subscribers", "show", f"who{EVIL}@example.com")
    assert result.returncode == 1
    assert unsafe_in(result.stderr) == [] and len(result.stderr.splitlines()) == 1
