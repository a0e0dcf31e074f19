"""The console script starts with the garbage collector off and turns it back on, with
start-up frozen, once the command is loaded (mailer.heap; issue 17's start-up and send).

Run through ``mailer.entry.main`` in a child process, with spies on the two points where the
CLI hands the heap over, so what is checked is the process a user starts.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
from pathlib import Path

from mailer import heap
from tests.cli_support import run_cli
from tests.conftest import Database

SPY = """
import gc, json, sys
seen = {}
import mailer.cli.lazy as lazy
import mailer.heap as heap
load, long_run = lazy.load, heap.before_long_run

def spy_load(name, entry):
    seen["enabled_before_load"] = gc.isenabled()
    built = load(name, entry)
    seen["enabled_after_load"] = gc.isenabled()
    seen["frozen_after_load"] = gc.get_freeze_count()
    seen["young_threshold"] = gc.get_threshold()[0]
    return built

def spy_long_run():
    before = gc.get_freeze_count()
    long_run()
    seen["frozen_for_the_run"] = gc.get_freeze_count() - before
    seen["enabled_in_the_run"] = gc.isenabled()

lazy.load, heap.before_long_run = spy_load, spy_long_run
import mailer.cli.running, mailer.cli.send_cmds
mailer.cli.running.heap.before_long_run = spy_long_run
import atexit, os
real_exit = os._exit
def leave(code):
    sys.stderr.write("SEEN " + json.dumps(seen) + "\\n"); sys.stderr.flush(); real_exit(code)
os._exit = leave
from mailer.entry import main
sys.argv = ["mailer", *sys.argv[1:]]
main()
"""


def _ok(db: Database, *args: str) -> None:
    done = run_cli(db, *args)
    assert done.returncode == 0, done.stderr


def _spied(db: Database, *args: str) -> dict[str, object]:
    run = subprocess.run(
        [sys.executable, "-c", SPY, *args],
        env=db.env(),
        cwd=db.tmp,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    line = [ln for ln in run.stderr.splitlines() if ln.startswith("SEEN ")][-1]
    return dict(json.loads(line[5:]))


def test_start_up_runs_without_collections_then_the_command_collects(db: Database) -> None:
    _ok(db, "lists", "create", "heap", "--name", "Heap", "--from", "h@example.org")
    seen = _spied(db, "lists", "show", "--json")
    assert seen["enabled_before_load"] is False  # the imports ran with the collector off
    assert seen["enabled_after_load"] is True  # the command itself collects
    assert isinstance(seen["frozen_after_load"], int) and seen["frozen_after_load"] > 10_000
    assert seen["young_threshold"] == heap.YOUNG_THRESHOLD


def test_a_send_freezes_what_it_built_once_before_sending(db: Database) -> None:
    _ok(db, "lists", "create", "heap", "--name", "Heap", "--from", "h@example.org")
    _ok(db, "subscribers", "add", "a@example.com", "--list", "heap", "--confirmed")
    issue = Path(__file__).parent / "fixtures" / "issues" / "brief-basic.txt"
    seen = _spied(db, "send", str(issue), "--list", "heap")
    assert seen["enabled_in_the_run"] is True
    # the rendered issue and the transport, made after start-up's freeze, are frozen too
    assert isinstance(seen["frozen_for_the_run"], int) and seen["frozen_for_the_run"] > 0


def test_in_another_process_the_heap_is_left_alone() -> None:
    """Tests calling the CLI in process, the web app under another server: no effect."""
    assert gc.isenabled()
    frozen, threshold = gc.get_freeze_count(), gc.get_threshold()
    heap.started()
    heap.before_long_run()
    assert gc.isenabled() and gc.get_freeze_count() == frozen
    assert gc.get_threshold() == threshold
