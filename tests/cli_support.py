"""Running ``mailer`` from a test, one way each instead of a copy per test file.

* :func:`run_cli`: ``python -m mailer ARGS`` as a real process against a test store, for
  what only a fresh interpreter shows (the entry point, exit codes, start-up, stdin).
* :func:`in_process`: the same console-script ``main`` called in the test's own process
  (no interpreter start-up or imports per call), for the many calls of one test.
  The ``mailer_in_process`` fixture (tests/plugins/cli.py) hands it out.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from mailer.cli import main
from tests.conftest import Database

#: wide enough that the CLI's tables and messages are never wrapped in an assertion's way
COLUMNS = "200"


def run_cli(
    db: Database, *args: str, stdin: str | None = None, timeout: float = 120, **env: str
) -> subprocess.CompletedProcess[str]:
    """``mailer ARGS`` in a subprocess on ``db`` (cwd its scratch folder); ``env`` adds or
    overrides variables (``COLUMNS`` included)."""
    return subprocess.run(
        [sys.executable, "-m", "mailer", *args],
        env=db.env(**{"COLUMNS": COLUMNS, **env}),
        capture_output=True,
        text=True,
        input=stdin,
        timeout=timeout,
        cwd=db.tmp,
    )


@dataclass
class Ran:
    """What an in-process run left: the exit code and the captured output."""

    returncode: int
    stdout: str
    stderr: str


InProcess = Callable[..., Ran]


def in_process(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> InProcess:
    """A runner of ``mailer ARGS`` through the console-script entry point in this process:
    ``run(db, *args, **env)``. SystemExit becomes the return code, as the shell sees it."""

    def run(db: Database, *args: str, **env: str) -> Ran:
        for name, value in db.env(**{"COLUMNS": COLUMNS, **env}).items():
            if name.startswith(("MAILER_", "AWS_", "COLUMNS")):
                monkeypatch.setenv(name, value)
        capsys.readouterr()
        try:
            main(list(args))
            code = 0
        except SystemExit as exit_:
            code = int(exit_.code or 0)
        out, err = capsys.readouterr()
        return Ran(code, out, err)

    return run
