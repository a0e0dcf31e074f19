"""The systemd units in deploy/ (docs/deploy.md) pass ``systemd-analyze verify``: each is
checked with its install path pointed at this checkout, so the ``mailer`` it starts exists;
a warning of any kind fails the test, and a broken copy is shown to fail."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UNITS = sorted((ROOT / "deploy").glob("*.service"))
INSTALL = "/opt/brief-mailer"  # where the units expect the checkout and its .venv

pytestmark = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze is not installed (scripts/setup installs systemd)",
)


def _verify(unit: Path, tmp_path: Path, *, breaks: tuple[str, str] | None = None) -> str:
    text = unit.read_text().replace(INSTALL, str(ROOT))
    if breaks is not None:
        text = text.replace(*breaks)
    copy = tmp_path / unit.name
    copy.write_text(text)
    done = subprocess.run(
        ["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60
    )
    return f"exit {done.returncode}: {done.stdout}{done.stderr}".strip()


def test_the_three_processes_have_units() -> None:
    names = {u.name for u in UNITS}
    assert names == {
        "mailer-worker.service",
        "mailer-serve.service",
        "mailer-feedback-poll.service",
    }
    commands = {u.name: u.read_text() for u in UNITS}
    assert f"{INSTALL}/.venv/bin/mailer worker" in commands["mailer-worker.service"]
    assert f"{INSTALL}/.venv/bin/mailer serve" in commands["mailer-serve.service"]
    assert "FORWARDED_ALLOW_IPS=" in commands["mailer-serve.service"]
    assert f"{INSTALL}/.venv/bin/mailer feedback poll" in commands["mailer-feedback-poll.service"]


@pytest.mark.parametrize("unit", UNITS, ids=[u.stem for u in UNITS])
def test_unit_verifies_clean(unit: Path, tmp_path: Path) -> None:
    assert _verify(unit, tmp_path) == "exit 0:"


def test_a_broken_unit_is_caught(tmp_path: Path) -> None:
    unit = ROOT / "deploy" / "mailer-worker.service"
    out = _verify(unit, tmp_path, breaks=("ExecStart=", "ExecStrat="))
    assert "exit 1" in out and "ExecStrat" in out
    out = _verify(unit, tmp_path, breaks=("Restart=always", "Restart=alway"))
    assert "alway" in out  # a mere warning is caught too: the clean run must print nothing
