#!/usr/bin/env python3
"""How long a person waits for `mailer` to start (issue 17): `mailer --help`, `mailer lists
show` and `mailer campaigns show 1` on a small demo database, each the median of N runs,
against bare `python -c pass` measured in the same run. Goal: each command <= 0.3 s.
Also timed: the floor under any command that reads the store (importing SQLAlchemy's ORM,
and with it SQLite's dialect, typer and rich; pydantic no longer, see mailer.cli.light_params),
so a missed goal shows how much is the project's. Each figure also has its CPU time (user +
system), which load on the shared machine stretches far less than the wall time.

The project's modules are byte-compiled first (as an install does), so the figure is the
start-up a user meets, not the compiler's.

    .venv/bin/python scripts/bench_startup.py [--runs 15] [--instructions]

``--instructions`` also counts each command's instructions once under valgrind (callgrind;
minutes): a figure the load on a shared machine does not move, for comparing two versions.
"""

from __future__ import annotations

import argparse
import compileall
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GOAL_SECONDS = 0.3
ISSUE = ROOT / "scripts" / "demo_data" / "issue.txt"
#: the floor under a command that reads the store, by its label: SQLAlchemy's ORM; then with
#: SQLite's dialect (the demo store's; PostgreSQL's is loaded only for a PostgreSQL store,
#: subscribers.pg_options), typer and rich, which every command's output goes through. Both
#: with the garbage collector off, as the console script imports (mailer.heap)
FLOORS = {
    "sqlalchemy.orm": "import gc; gc.disable(); import sqlalchemy.orm",
    "sqlalchemy.orm+sqlite, typer, rich": "import gc; gc.disable(); import sqlalchemy.orm, "
    "sqlalchemy.dialects.sqlite, typer, rich.console",
}


def mailer_cmd() -> list[str]:
    """The console script a user runs (``-m mailer`` only when it is not installed)."""
    script = Path(sys.executable).parent / "mailer"
    return [str(script)] if script.exists() else [sys.executable, "-m", "mailer"]


def timed(
    cmds: dict[str, list[str]], env: dict[str, str], runs: int
) -> dict[str, tuple[float, float]]:
    """Median wall time and median CPU time (user + system) of ``runs`` runs of each command
    (each must succeed). The commands take turns, one run each per round, so a burst of load
    on the shared machine falls on all of them alike and their ratios hold; the CPU time is
    what the command itself did, which load stretches far less than its wall time."""
    times: dict[str, list[float]] = {label: [] for label in cmds}
    cpu: dict[str, list[float]] = {label: [] for label in cmds}
    for _ in range(runs):
        for label, cmd in cmds.items():
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            started = time.perf_counter()
            subprocess.run(cmd, env=env, check=True, capture_output=True, cwd=ROOT)
            times[label].append(time.perf_counter() - started)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            used = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
            cpu[label].append(used)
    return {
        label: (statistics.median(times[label]), statistics.median(cpu[label])) for label in cmds
    }


def instructions(cmd: list[str], env: dict[str, str]) -> int:
    """Instructions one run of ``cmd`` executes, counted by valgrind's callgrind."""
    run = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *cmd],
        env=env,
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    found = re.search(r"Collected : (\d+)", run.stderr)
    if found is None:
        raise RuntimeError(f"valgrind printed no count: {run.stderr[-500:]}")
    return int(found.group(1))


def demo_database(tmp: Path, env: dict[str, str]) -> None:
    """A list with a few readers and one campaign sent through the outbox."""
    mailer = mailer_cmd()

    def run(*args: str) -> None:
        subprocess.run([*mailer, *args], env=env, check=True, capture_output=True, cwd=tmp)

    run("init")
    run("lists", "create", "demo", "--name", "Demo", "--from", "Demo <demo@example.org>")
    for i in range(5):
        run("subscribers", "add", f"reader{i}@example.com", "--list", "demo", "--confirmed")
    run("send", str(ISSUE), "--list", "demo")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15, help="runs per command (median)")
    parser.add_argument(
        "--instructions", action="store_true", help="also count instructions (valgrind)"
    )
    args = parser.parse_args(argv)
    for folder in ("mailer", "subscribers"):
        compileall.compile_dir(ROOT / folder, quiet=1)
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as name:
        tmp = Path(name)
        env = dict(os.environ)
        env.update(
            MAILER_DATABASE_URL=f"sqlite:///{tmp / 'demo.db'}",
            MAILER_OUTBOX_DIR=str(tmp / "outbox"),
            MAILER_TRANSPORT="outbox",
            MAILER_POSTAL_ADDRESS="1 Example Road, Example City",
            COLUMNS="120",
        )
        demo_database(tmp, env)
        cmds = {"python -c pass": [sys.executable, "-c", "pass"]}
        # the floor of a command that reads the store, before any of the project's code
        cmds |= {f"import {label}": [sys.executable, "-c", code] for label, code in FLOORS.items()}
        labels = ("--help", "lists show", "campaigns show 1")
        cmds |= {f"mailer {label}": [*mailer_cmd(), *label.split()] for label in labels}
        seconds = timed(cmds, env, args.runs)
        if args.instructions:
            for label, cmd in cmds.items():
                print(f"{label}: {instructions(cmd, env) / 1e9:.3f} G instructions")
    base, base_cpu = seconds.pop("python -c pass")
    print(f"python -c pass (median of {args.runs}): {base:.3f} s, CPU {base_cpu:.3f} s")
    for label, (took, used) in seconds.items():
        ratio = f", {took / base:.1f}x python -c pass" if label.startswith("mailer") else ""
        print(f"{label} (median of {args.runs}): {took:.3f} s{ratio}, CPU {used:.3f} s")
    worst = max(took for label, (took, _) in seconds.items() if label.startswith("mailer"))
    met = worst <= GOAL_SECONDS
    print(f"goal each <= {GOAL_SECONDS} s: {'met' if met else 'MISSED'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
