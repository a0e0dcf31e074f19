"""`mailer lists set` / `lists show SLUG` through the real process (issue 15): every bad
value is one line naming its field, exit 1, and nothing of the command is stored."""

from __future__ import annotations

import pytest

from subscribers import store
from tests.cli_support import run_cli
from tests.conftest import Database


def _list(db: Database) -> None:
    with db.sessions.begin() as s:
        store.create_list(s, "brief", name="The Brief", from_address="Brief <b@example.org>")


def test_lists_set_and_show_through_the_cli(db: Database) -> None:
    _list(db)
    welcome = db.tmp / "welcome.md"
    welcome.write_text("# 欢迎\n\nThanks for reading.\n", encoding="utf-8")
    done = run_cli(
        db,
        *("lists", "set", "brief", "--lang", "zh-Hans", "--accent", "#b3261e"),
        *("--logo", "https://cdn.example.org/logo.png", "--greeting", "Dear"),
        *("--welcome", str(welcome), "--subject-template", "{newsletter}: {first_headline}"),
        *("--time-zone", "Asia/Shanghai", "--reply-to", "desk@example.org"),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("brief: changed ")
    shown = run_cli(db, "lists", "show", "brief")
    assert shown.returncode == 0, shown.stderr
    for line in (
        "lang: zh-Hans",
        "accent: #b3261e",
        "logo: https://cdn.example.org/logo.png",
        "greeting: Dear",
        "subject-template: {newsletter}: {first_headline}",
        "time-zone: Asia/Shanghai",
        "reply-to: desk@example.org",
        "first line: # 欢迎",
    ):
        assert line in shown.stdout, shown.stdout
    table = run_cli(db, "lists", "show")
    assert "zh-Hans" in table.stdout
    off = run_cli(db, "lists", "set", "brief", "--no-welcome", "--logo", "", "--time-zone", "")
    assert off.returncode == 0, off.stderr
    with db.sessions() as s:
        m = store.get_list(s, "brief")
        assert (m.welcome_markdown, m.logo_url, m.time_zone) == (None, None, None)


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("--accent", "crimson"), "accent"),
        (("--logo", "http://cdn.example.org/logo.png"), "logo"),
        (("--lang", "fr"), "lang"),
        (("--time-zone", "Mars/Olympus"), "time-zone"),
        (("--subject-template", "{newsletter.__init__}"), "subject-template"),
        (("--reply-to", "not an address"), "reply-to"),
        (("--from", "nobody"), "from"),
        (("--welcome", "missing.md"), "welcome"),
        (("--welcome", "latin1.md"), "welcome"),
        (("--welcome", "w.md", "--no-welcome"), "welcome"),
    ],
)
def test_lists_set_refuses_and_names_the_field(
    db: Database, args: tuple[str, ...], field: str
) -> None:
    _list(db)
    (db.tmp / "latin1.md").write_bytes("caf\xe9".encode("latin-1"))
    (db.tmp / "w.md").write_text("hi", encoding="utf-8")
    # a valid change given with the bad one must not be stored either
    done = run_cli(db, "lists", "set", "brief", "--lang", "zh-Hans", *args)
    assert done.returncode == 1, done.stdout
    assert done.stderr.startswith(f"mailer: error: {field}: "), done.stderr
    assert "Traceback" not in done.stderr
    with db.sessions() as s:
        assert store.get_list(s, "brief").lang == "en"


def test_lists_set_unknown_list_and_nothing_given(db: Database) -> None:
    _list(db)
    missing = run_cli(db, "lists", "set", "nope", "--lang", "en")
    assert missing.returncode == 1 and "no list 'nope'" in missing.stderr
    empty = run_cli(db, "lists", "set", "brief")
    assert empty.returncode == 1 and "nothing to change" in empty.stderr
