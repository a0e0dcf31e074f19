"""A finished command ends its process without the interpreter's teardown (issue 17: freeing
every object one by one came after a send's summary was printed), but only once nothing
else runs, and with its store closed and its output flushed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

RUN = """
import atexit, sys, threading
atexit.register(lambda: print("teardown ran", flush=True))
done = threading.Event()
if sys.argv[1] == "thread":  # still running when the command ends
    threading.Thread(target=done.wait, args=(60,)).start()
sys.argv = ["mailer", "init"]
from mailer.cli import main
try:
    main()
finally:
    done.set()
"""


def _init(tmp_path: Path, mode: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILER_")}
    env["MAILER_DATABASE_URL"] = f"sqlite:///{tmp_path / 'store.db'}"
    return subprocess.run(
        [sys.executable, "-c", RUN, mode],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_finished_command_leaves_without_the_interpreters_teardown(tmp_path: Path) -> None:
    done = _init(tmp_path, "alone")
    assert done.returncode == 0, done.stderr
    assert "teardown ran" not in done.stdout  # left at once ...
    assert done.stdout.strip()  # ... with what it printed flushed
    assert (tmp_path / "store.db").stat().st_size > 0
    assert not (tmp_path / "store.db-wal").exists()  # the store closed: its log folded in


def test_a_command_with_a_thread_still_running_ends_as_usual(tmp_path: Path) -> None:
    done = _init(tmp_path, "thread")
    assert done.returncode == 0, done.stderr
    assert "teardown ran" in done.stdout  # waited for the thread, the usual way
