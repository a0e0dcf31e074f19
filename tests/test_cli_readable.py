"""Output a person can read (issue 17), through the real `mailer` process: usage errors in
one line, every option with help text, group helps with an example, `worker --once` saying
when nothing is due, listings with --json and plain, full-width text when piped."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest
from sqlalchemy import text

from mailer.cli import COMMANDS, command, iter_commands
from mailer.sending.one_mail import SystemMail, build_message
from mailer.transports.outbox import OutboxTransport
from tests.conftest import Database
from tests.delivery_helpers import ISSUE, seed_list


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mailer", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("send",), "mailer send: Missing argument 'file'. (see `mailer send --help`)"),
        (("lsts",), "mailer: No such command 'lsts'. Did you mean 'lists', 'stats'?"),
        (("campaigns", "show", "abc"), "mailer campaigns show: Invalid value for"),
        (("lists", "create", "x"), "mailer lists create: Missing option '--name'."),
    ],
)
def test_a_usage_error_is_one_line_with_exit_2(args: tuple[str, ...], says: str) -> None:
    r = run(*args)
    assert r.returncode == 2
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith(says), lines[0]
    assert r.stdout == ""


def test_a_group_without_a_command_still_shows_its_help() -> None:
    r = run("lists")
    assert "Commands:" in r.stderr + r.stdout and "create" in r.stderr + r.stdout


# the options the issue named, and every other one: a --help line that says what it does
def test_every_option_has_help_text() -> None:
    missing = []
    for path, cmd in iter_commands(command()):
        for param in cmd.params:
            if param.param_type_name == "option" and not (getattr(param, "help", "") or ""):
                missing.append(f"mailer {' '.join(path)} {param.opts[0]}")
    assert missing == []


def test_every_group_help_ends_with_an_example() -> None:
    root = command()
    ctx_root = root.make_context("mailer", ["--help"], resilient_parsing=True)
    for name in COMMANDS:
        sub = root.get_command(ctx_root, name)
        if not hasattr(sub, "list_commands"):
            continue  # a command: tests/test_cli.py checks its example
        r = run(name, "--help")
        assert r.returncode == 0, r.stderr
        tail = [line.strip() for line in r.stdout.strip().splitlines()][-2:]
        assert tail[0] == "Example:" and tail[1].startswith(f"mailer {name} "), (name, tail)


def test_worker_once_with_nothing_due_says_so(db: Database) -> None:
    seed_list(db.sessions, 1)
    assert run("send", str(ISSUE), "--list", "brief", "--at", "+2h", env=db.env()).returncode == 0
    r = run("worker", "--once", env=db.env())
    assert r.returncode == 0, r.stderr
    assert r.stdout == "nothing due: no campaign is sending or scheduled before now\n"


def test_json_on_every_listing(db: Database) -> None:
    seed_list(db.sessions, 2)
    assert run("send", str(ISSUE), "--list", "brief", env=db.env()).returncode == 0
    assert run("suppressions", "add", "x@example.com", env=db.env()).returncode == 0
    lists = json.loads(run("lists", "show", "--json", env=db.env()).stdout)
    assert [(x["slug"], x["active"]) for x in lists] == [("brief", 2)]
    camps = json.loads(run("campaigns", "list", "--json", env=db.env()).stdout)
    assert [(c["id"], c["status"], c["sent"], c["skipped"]) for c in camps] == [(1, "done", 2, 0)]
    supp = json.loads(run("suppressions", "list", "--json", env=db.env()).stdout)
    assert [(s["email"], s["reason"]) for s in supp] == [("x@example.com", "manual")]


def test_piped_listings_are_plain_and_full_width(db: Database) -> None:
    seed_list(db.sessions, 1, slug="a-rather-long-list-slug-for-a-narrow-terminal")
    long_subject_issue = db.tmp / "long.md"
    subject = "A long subject that must not be cut mid-word when a campaign list is printed"
    long_subject_issue.write_text(
        f"---\nsubject: {subject}\n---\nIntro.\n\n## Item\nSource: Wire\n"
        "https://example.com/x\n\nSummary.\n",
        encoding="utf-8",
    )
    slug = "a-rather-long-list-slug-for-a-narrow-terminal"
    env = db.env(COLUMNS="40")
    assert run("send", str(long_subject_issue), "--list", slug, env=env).returncode == 0
    out = run("campaigns", "list", env=env).stdout
    head, row = out.splitlines()[:2]
    assert head.split("\t")[:3] == ["id", "list", "status"]
    cells = row.split("\t")
    assert cells[1] == slug and subject in cells  # whole, however narrow the terminal
    assert not any(ch in out for ch in "┏━│└…")
    shown = run("lists", "show", env=env).stdout.splitlines()
    assert shown[1].split("\t")[0] == slug


def test_a_test_send_prints_the_full_path_of_its_file(db: Database) -> None:
    seed_list(db.sessions, 1)
    r = run("send", str(ISSUE), "--list", "brief", "--test-to", "ed@example.org", env=db.env())
    assert r.returncode == 0, r.stderr
    line = r.stdout.strip().splitlines()[-1]
    assert line.startswith("test sent to ed@example.org: /"), line
    path = Path(line.split(": ", 1)[1])
    assert path.is_file() and path.parent.name == "0" and path.name.startswith("test-")


def test_outbox_files_of_no_campaign_are_named_by_kind(tmp_path: Path) -> None:
    transport = OutboxTransport(tmp_path)
    mail = SystemMail(
        kind="confirm",
        to="r@example.org",
        subscriber_id=1,
        subject="Confirm",
        from_address="Brief <b@example.org>",
        reply_to=None,
        html="<p>x</p>",
        text="x",
    )
    for delivery_id, want in ((0, "confirm-"), (17, "confirm-17.eml")):
        campaign, outgoing = build_message(mail, delivery_id=delivery_id)
        [result] = transport.send(campaign, [outgoing])
        assert result.message_id is not None and result.message_id.startswith(want)
        assert transport.path_of(0, result.message_id).is_file()


def test_the_sample_markdown_issue_in_the_repository_checks_clean() -> None:
    sample = Path(__file__).resolve().parents[1] / "scripts" / "demo_data" / "issue.md"
    r = run("issue", "check", str(sample), env={**os.environ, "MAILER_BASE_URL": "https://x.org"})
    assert r.returncode == 0, r.stderr
    assert "list:      china-brief" in r.stdout and "items:     3" in r.stdout
    assert "warnings:  none" in r.stdout or "postal address" in r.stdout


def _on_terminal(db: Database, columns: int, *args: str) -> str:
    """``mailer ARGS`` with stdout on a pseudo-terminal ``columns`` wide: what it showed."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mailer", *args],
            env={k: v for k, v in db.env(TERM="xterm").items() if k != "COLUMNS"},
            stdout=terminal,
            stderr=subprocess.PIPE,
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
    assert proc.wait(timeout=120) == 0
    if proc.stderr:
        proc.stderr.close()
    shown = b"".join(chunks).decode().replace("\r\n", "\n")
    return re.sub(r"\x1b\[[0-9;]*m", "", shown)  # colours off: the text as read


def test_stats_fits_the_terminal_and_counts_people(db: Database) -> None:
    seed_list(db.sessions, 3)
    subject = "Beijing unveils rural broadband plan; Shenzhen drone makers face new export rules"
    assert run("send", str(ISSUE), "--list", "brief", env=db.env()).returncode == 0
    again = run("send", str(ISSUE), "--list", "brief", "--force", env=db.env())
    assert again.returncode == 0, again.stderr
    # one reader, who got both issues, complains about the second: one person left
    assert run("feedback", "simulate", "6", "complaint", env=db.env()).returncode == 0
    narrow = _on_terminal(db, 100, "stats")
    assert "unsubscribed 1 " in narrow  # was 2: summed over the two campaigns
    assert "┃ id" not in narrow and "  sent 3  delivered" in narrow  # stacked, not squeezed
    assert f"  {subject}" in narrow, narrow  # the whole subject on its own line
    assert max(len(line) for line in narrow.splitlines()) <= 100
    wide = _on_terminal(db, 200, "stats")
    assert "┃ id" in wide and "bounced hard/soft" in wide
    piped = run("stats", env=db.env()).stdout.splitlines()
    head = next(line for line in piped if line.startswith("id\tsubject"))
    rows = [line.split("\t") for line in piped[piped.index(head) + 1 :][:2]]
    assert [r[0] for r in rows] == ["2", "1"] and all(len(r) == len(head.split("\t")) for r in rows)


def test_piped_report_is_not_cut_at_80_columns(db: Database) -> None:
    seed_list(db.sessions, 1)
    assert run("send", str(ISSUE), "--list", "brief", env=db.env()).returncode == 0
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE campaigns SET subject = :s"), {"s": "word " * 40 + "end"})
    env = {k: v for k, v in db.env().items() if k != "COLUMNS"}
    shown = run("campaigns", "show", "1", env=env).stdout
    assert shown.splitlines()[0] == "campaign 1: " + "word " * 40 + "end"
