"""The CLI as a user meets it: every command documented, with an example, errors as one line."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from mailer.cli import command, iter_commands
from mailer.config import env_names
from tests.cli_support import run_cli
from tests.conftest import Database

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def all_commands() -> list[tuple[str, ...]]:
    return [path for path, _ in iter_commands(command())]


def test_every_command_has_help_ending_in_example() -> None:
    runner = CliRunner()
    root = command()
    for path, cmd in iter_commands(root):
        assert cmd.help and cmd.help.strip(), f"mailer {' '.join(path)} has no help text"
        result = runner.invoke(root, [*path, "--help"], prog_name="mailer", env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        last = [line for line in result.output.strip().splitlines() if line.strip()][-1]
        assert "Example:" in result.output, f"mailer {' '.join(path)}: no example"
        assert "mailer " in last, f"mailer {' '.join(path)}: help ends {last!r}"


def test_every_command_in_readme() -> None:
    missing = [" ".join(p) for p in all_commands() if f"mailer {' '.join(p)}" not in README]
    assert missing == [], f"commands missing from README.md: {missing}"


def test_every_setting_in_readme() -> None:
    documented = set(re.findall(r"`(MAILER_[A-Z0-9_]+)`", README))
    assert set(env_names()) - documented == set()


def test_store_commands_end_to_end(db: Database, tmp_path: Path) -> None:
    assert run_cli(db, "init").returncode == 0
    r = run_cli(
        db, "lists", "create", "brief", "--name", "Brief", "--from", "Brief <b@example.org>"
    )
    assert r.returncode == 0, r.stderr
    r = run_cli(db, "subscribers", "add", "A@Example.com", "--list", "brief", "--confirmed")
    assert r.returncode == 0 and "a@example.com: active" in r.stdout
    csv_path = tmp_path / "in.csv"
    csv_path.write_text("email,name\nb@example.com,B\nbroken,X\n", encoding="utf-8")
    r = run_cli(db, "subscribers", "import", str(csv_path), "--list", "brief", "--confirmed")
    assert r.returncode == 0
    assert "line 3: invalid address" in r.stderr
    assert "added 1" in r.stdout and "invalid address: 1" in r.stdout
    out = tmp_path / "out.csv"
    r = run_cli(
        db, "subscribers", "export", "--list", "brief", "--status", "active", "-o", str(out)
    )
    assert r.returncode == 0
    assert out.read_text().splitlines()[1:] and {
        line.split(",")[0] for line in out.read_text().splitlines()[1:]
    } == {"a@example.com", "b@example.com"}
    assert run_cli(db, "suppressions", "add", "b@example.com").returncode == 0
    assert "b@example.com" in run_cli(db, "suppressions", "list").stdout
    r = run_cli(db, "subscribers", "show", "a@example.com", "--json")
    assert '"email": "a@example.com"' in r.stdout
    assert run_cli(db, "subscribers", "erase", "a@example.com", "--yes").returncode == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("lists", "create", "other", "--name", "B", "--from", "nonsense"), "not a From address"),
        (("subscribers", "add", "x@example.com", "--list", "missing"), "no list 'missing'"),
        (("subscribers", "add", "not-an-email", "--list", "brief"), "must have an @-sign"),
        (("subscribers", "show", "nobody@example.com"), "no subscriber"),
        (("subscribers", "import", "/nonexistent.csv", "--list", "brief"), "no such file"),
    ],
)
def test_errors_are_one_line(db: Database, args: tuple[str, ...], message: str) -> None:
    run_cli(db, "lists", "create", "brief", "--name", "Brief", "--from", "b@example.org")
    r = run_cli(db, *args)
    assert r.returncode != 0
    assert message in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_bad_setting_is_named(db: Database) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "mailer", "lists", "show"],
        env=db.env(MAILER_TRANSPORT="pigeon"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "MAILER_TRANSPORT" in r.stderr and "Traceback" not in r.stderr


def test_export_then_import_is_the_same_people(db: Database, tmp_path: Path) -> None:
    """The export's formula guard ('=...) comes off on import: the same subscribers, the
    same names, and not one new person named after the guarded address."""
    for slug in ("one", "two"):
        r = run_cli(db, "lists", "create", slug, "--name", slug, "--from", "b@example.org")
        assert r.returncode == 0, r.stderr
    people = {
        "=evil@example.com": '=HYPERLINK("http://evil.example","click")',
        "-2+3@example.com": "@SUM(A1:A9)",
        "'quote@example.com": "'=already quoted",
    }
    for email, name in people.items():
        r = run_cli(  # "--": an address may start with "-"
            db, "subscribers", "add", "--list", "one", "--name", name, "--confirmed", "--", email
        )
        assert r.returncode == 0, r.stderr
    exported = tmp_path / "one.csv"
    assert (
        run_cli(db, "subscribers", "export", "--list", "one", "-o", str(exported)).returncode == 0
    )
    with exported.open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))[1:]
    assert all(
        not cell.startswith(("=", "+", "-", "@", "\t", "\r")) for row in rows for cell in row
    )
    r = run_cli(db, "subscribers", "import", str(exported), "--list", "two", "--confirmed")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert "added 3," in r.stdout and "skipped 0" in r.stdout
    again = tmp_path / "two.csv"
    assert run_cli(db, "subscribers", "export", "--list", "two", "-o", str(again)).returncode == 0
    with again.open(newline="", encoding="utf-8") as f:
        assert sorted(row[:2] for row in list(csv.reader(f))[1:]) == sorted(row[:2] for row in rows)
    for email, name in people.items():
        shown = json.loads(run_cli(db, "subscribers", "show", "--json", "--", email).stdout)
        assert shown["name"] == name
        assert sorted(s["list"] for s in shown["subscriptions"]) == ["one", "two"]
    r = run_cli(db, "subscribers", "show", "'=evil@example.com")
    assert r.returncode == 1 and "no subscriber" in r.stderr
