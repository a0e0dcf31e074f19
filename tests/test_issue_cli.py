"""`mailer issue check|render` through the real console script."""

from __future__ import annotations

import email
import email.policy
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from mailer.cli import main

FIXTURES = Path(__file__).parent / "fixtures" / "issues"


@pytest.fixture
def run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[..., Result]:
    """``mailer issue ...`` in-process through the console script's main()."""
    monkeypatch.setenv("MAILER_BASE_URL", "https://dispatch.example")
    monkeypatch.setenv("MAILER_POSTAL_ADDRESS", "Harbour Dispatch Ltd, 12 Quay Street, Bristol")

    def invoke(*args: str) -> Result:
        capsys.readouterr()
        try:
            main(["issue", *args])
            code = 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return invoke


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def test_check_prints_a_summary(run: Callable[..., Result]) -> None:
    r = run("check", str(FIXTURES / "issue.md"))
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "subject:   Guangzhou metro adds driverless line; Yunnan coffee goes premium" in out
    assert "date:      2025-03-10" in out and "list:      harbour-dispatch" in out
    assert "items:     3" in out
    for title in ("Guangzhou metro adds driverless line", "Yunnan coffee goes premium"):
        assert title in out
    assert "sizes:     HTML " in out and "warnings:  none" in out
    assert run("check", "--strict", str(FIXTURES / "issue.md")).returncode == 0


def test_check_shows_warnings_and_strict_fails_on_them(run: Callable[..., Result]) -> None:
    r = run("check", str(FIXTURES / "brief-tricky.txt"))
    assert r.returncode == 0
    assert "warnings:  2" in r.stdout and "subject is 90 characters" in r.stdout
    assert (
        "item 1 (Lunar probe samples go on public displa…): link is not absolute https" in r.stdout
    )
    assert run("check", "--strict", str(FIXTURES / "brief-tricky.txt")).returncode == 1


@pytest.mark.parametrize(
    ("content", "where"),
    [
        (b"Subject\nTeaser\nTitle\nSource\nSummary text.\nftp://example.com/x\n", ":6: "),
        (b"Subject\nTeaser\nIntro \xff\n", ":3: "),
        (b"---\nsubject: S\n---\n## T\nsource: S\nSummary.\n", ":4: "),
    ],
)
def test_check_refuses_a_bad_file_in_one_line(
    run: Callable[..., Result], tmp_path: Path, content: bytes, where: str
) -> None:
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    r = run("check", str(path))
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"mailer: error: {path}{where}"), r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""


def test_render_writes_the_preview_files(run: Callable[..., Result], tmp_path: Path) -> None:
    out = tmp_path / "preview"
    r = run("render", str(FIXTURES / "brief-basic.txt"), "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "archive.html",
        "email.html",
        "email.txt",
        "message.eml",
    ]
    html = (out / "email.html").read_text("utf-8")
    text = (out / "email.txt").read_text("utf-8")
    for body in (html, text):
        assert "%%" not in body
        assert "https://dispatch.example/unsubscribe/SAMPLE-TOKEN" in body
        assert "Sample Reader" in body
    assert "Unsubscribe" not in (out / "archive.html").read_text("utf-8")
    assert "warning: subject is 81 characters" in r.stdout

    msg = email.message_from_bytes((out / "message.eml").read_bytes(), policy=email.policy.default)
    assert msg["To"] == "reader@example.com"
    assert msg["Subject"] == (
        "Beijing unveils rural broadband plan; Shenzhen drone makers face new export rules"
    )
    assert msg["List-Unsubscribe"] == "<https://dispatch.example/unsubscribe/SAMPLE-TOKEN>"
    assert msg.get_content_type() == "multipart/alternative"
    plain = msg.get_body(preferencelist=("plain",))
    rich = msg.get_body(preferencelist=("html",))
    assert plain is not None and rich is not None
    assert plain.get_content().replace("\r\n", "\n") == text
    assert rich.get_content().replace("\r\n", "\n") == html.replace("\r\n", "\n")


def test_render_needs_out(run: Callable[..., Result]) -> None:
    r = run("render", str(FIXTURES / "brief-basic.txt"))
    assert r.returncode == 2 and "--out" in r.stderr


def test_console_script_error_is_one_line(tmp_path: Path) -> None:
    """The installed `mailer` script, end to end (one subprocess: they are slow to start)."""
    path = tmp_path / "bad.txt"
    path.write_bytes(b"Subject\nTeaser\nNo items here.\n")
    r = subprocess.run(
        [str(Path(sys.executable).parent / "mailer"), "issue", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 1
    assert r.stderr == (
        f"mailer: error: {path}: no items: each item ends with a line holding its http(s) URL, "
        "and none was found\n"
    )
