#!/usr/bin/env python3
"""CSV import speed and memory, on SQLite and PostgreSQL, against a baseline of this run.

Generates a CSV of ``--rows`` subscribers (default 200,000; ~2% bad: invalid addresses,
rows without an address, names with a line break, duplicates in the file with other letter
case, and a few addresses that are suppressed or erased in the store before the import), then:

  baseline   read the same CSV with the csv module and normalize every address with
             subscribers.addresses.normalize_email: the cost of the input, without a database
  import     subscribers.importer.import_csv into a fresh store (SQLite file; and a scratch
             PostgreSQL database created next to the one named, dropped at the end)

Each runs in a child process of its own, so the memory figures are that process's: VmRSS
read from /proc/self/status after a quarter of the rows and after all of them (through the
importer's on_progress callback), and VmHWM for the peak (reset once the store is set up).
After each import the report is checked against what the generator wrote: rows added,
skipped by reason, and the line of every bad row. A wrong count is a MISS, however fast.

Goals (issue 2): >= 20,000 rows/s on each backend, peak RSS under 150 MB, and RSS at the
end within 10% of RSS at a quarter (memory does not grow with the file). Prints a table
with PASS/MISS per goal; exits 0 unless ``--check`` is given and a goal is missed.

    .venv/bin/python scripts/bench_import.py [--rows 200000] [--backend sqlite|postgresql|both]
        [--postgres-url postgresql+psycopg://postgres@127.0.0.1:5432/test] [--check]
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PG_DEFAULT = os.environ.get(
    "MAILER_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
GOAL_ROWS_PER_S = 20_000
GOAL_PEAK_MB = 150.0
GOAL_GROWTH = 0.10
LIST_SLUG = "bench"

# -- the generated file ---------------------------------------------------------------------

FIRST = ["ann", "bo", "chen", "dai", "elena", "farah", "gu", "hana", "ivan", "jing", "kofi"]
LAST = ["smith", "wang", "li", "garcia", "muller", "rossi", "kim", "nguyen", "okafor", "silva"]
PROVIDERS = [
    "gmail.com",
    "Gmail.com",
    "yahoo.com",
    "outlook.com",
    "hotmail.co.uk",
    "qq.com",
    "163.com",
    "icloud.com",
    "proton.me",
    "gmx.de",
]
CITIES = ["Beijing", "Shanghai", "London", "Berlin", "São Paulo", "Lagos", "", "", ""]
INVALID = [
    "{k}.example.com",  # no @
    "{k}@",  # nothing after @
    "{k}@@example.com",
    "x..{k}@example.com",
    "{k}@exa mple.com",
    "user {k}@example.com",
    "{k}@example",  # no period in the domain
    "{k}@-example-.com",
]


def address(k: int) -> str:
    """The k-th distinct address; the number in the local part makes it unique."""
    local = f"{FIRST[k % len(FIRST)]}.{LAST[(k // 7) % len(LAST)]}{k}"
    if k % 11 == 0:
        local += "+news"
    if k % 400 == 3:  # internationalized domain: email-validator's full path
        return f"{local}@例子{k % 7}.广告"
    if k % 10 < 6:
        return f"{local}@{PROVIDERS[k % len(PROVIDERS)]}"
    return f"{local}@firm{k % 3000}.example.com"  # a long tail of small domains


def problem_key(line: int, reason: str) -> int:
    """One bad row as a number; their sum identifies the set (order-free, constant memory)."""
    digest = hashlib.blake2b(f"{line}:{reason}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


@dataclass
class Expected:
    rows: int = 0
    added: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    problems_sum: int = 0
    suppressed: list[str] = field(default_factory=list)
    erased: list[str] = field(default_factory=list)

    def bad(self, line: int, reason: str) -> None:
        self.skipped[reason] += 1
        self.problems_sum = (self.problems_sum + problem_key(line, reason)) % 2**64

    def to_json(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "added": self.added,
            "skipped": dict(self.skipped),
            "problems_sum": self.problems_sum,
            "suppressed": self.suppressed,
            "erased": self.erased,
        }


def generate(path: Path, rows: int, seed: int = 2) -> Expected:
    """Write the CSV and return what a correct import must report for it."""
    rng = random.Random(seed)
    exp = Expected(rows=rows)
    k = 0  # distinct addresses written so far
    line = 2  # physical line of the next record (1 is the header)
    with path.open("w", encoding="utf-8", newline="") as f:
        out = csv.writer(f, lineterminator="\r\n")
        out.writerow(["email", "name", "city", "plan"])
        for _ in range(rows):
            dice = rng.random()
            name = f"{FIRST[rng.randrange(len(FIRST))].title()} {LAST[k % len(LAST)].title()}"
            broken_name = rng.random() < 0.001
            if broken_name:
                # a quoted comma and line break: the line count must follow the record, and a
                # name with a control character is refused (addresses.clean_name) before the
                # address is looked at; an address of its own, so no later row repeats it
                name += ", Jr.\nc/o Reception"
            elif rng.random() < 0.01:
                name = "张伟"
            city = CITIES[rng.randrange(len(CITIES))]
            reason = None
            if broken_name:
                email = f"named{line}@example.org"
                reason = "invalid name"
            elif dice < 0.008:
                email = INVALID[rng.randrange(len(INVALID))].format(k=f"bad{rng.randrange(10**6)}")
                reason = "invalid address"
            elif dice < 0.009:
                email = ""
                reason = "missing address"
            elif dice < 0.017 and k > 0:
                # an earlier address again, in other letter case: near (same chunk) or far
                back = rng.randrange(1, 5) if rng.random() < 0.3 else rng.randrange(1, k + 1)
                email = address(max(k - back, 0)).upper()
                reason = "duplicate in file"
            elif dice < 0.019:
                email = f"blocked{len(exp.suppressed) + len(exp.erased)}@example.net"
                if rng.random() < 0.8:
                    exp.suppressed.append(email)
                    reason = "suppressed"
                else:
                    exp.erased.append(email)
                    reason = "erased"
            else:
                email = address(k)
                k += 1
                exp.added += 1
            if reason is not None:
                exp.bad(line, reason)
            record = [email, name, city, rng.choice(["free", "paid", ""])]
            out.writerow(record)
            line += 1 + sum(cell.count("\n") for cell in record)
    return exp


# -- child processes ------------------------------------------------------------------------


def proc_status() -> dict[str, float]:
    """VmRSS and VmHWM of this process, in MB."""
    found: dict[str, float] = {}
    with open("/proc/self/status") as f:
        for entry in f:
            key, _, value = entry.partition(":")
            if key in ("VmRSS", "VmHWM"):
                found[key] = int(value.split()[0]) / 1024
    return found


def reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0), so the peak is the import's."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def child_baseline(csv_path: Path) -> dict[str, Any]:
    from mailer.errors import InvalidAddressError
    from subscribers.addresses import normalize_email

    reset_peak()
    valid = invalid = rows = 0
    cpu, start = cpu_seconds(), time.perf_counter()
    with csv_path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f)
        next(reader)
        for cells in reader:
            rows += 1
            try:
                normalize_email(cells[0])
                valid += 1
            except InvalidAddressError:
                invalid += 1
    seconds = time.perf_counter() - start
    return {
        "rows": rows,
        "valid": valid,
        "invalid": invalid,
        "seconds": seconds,
        "cpu": cpu_seconds() - cpu,
        "peak_mb": proc_status()["VmHWM"],
    }


def child_import(csv_path: Path, url: str, expected: dict[str, Any]) -> dict[str, Any]:
    from sqlalchemy import func, select

    from subscribers import store
    from subscribers.db import make_engine, session_factory
    from subscribers.importer import Problem, import_csv
    from subscribers.migrate import upgrade
    from subscribers.models import ConsentEvent, Subscriber, Subscription

    engine = make_engine(url)
    upgrade(engine)
    sessions = session_factory(engine)
    with sessions.begin() as s:
        mlist = store.create_list(s, LIST_SLUG, name="Bench", from_address="bench@example.org")
        for email in expected["suppressed"]:
            store.suppress(s, email, "hard_bounce")
        for email in expected["erased"]:
            store.subscribe(s, email, mlist, confirmed=True)
            store.erase(s, email)

    quarter = max(1, expected["rows"] // 4)
    marks: dict[str, dict[str, float]] = {}
    problems: Counter[str] = Counter()
    problems_sum = 0

    def on_problem(p: Problem) -> None:
        nonlocal problems_sum
        problems[p.reason] += 1
        problems_sum = (problems_sum + problem_key(p.line, p.reason)) % 2**64

    def on_progress(_bytes: int, rows: int) -> None:
        if rows >= quarter and "quarter" not in marks:
            marks["quarter"] = {"rows": rows, **proc_status()}
        marks["end"] = {"rows": rows, **proc_status()}

    peak_reset = reset_peak()
    before = proc_status()["VmRSS"]
    cpu, start = cpu_seconds(), time.perf_counter()
    report = import_csv(
        sessions,
        csv_path,
        LIST_SLUG,
        confirmed=True,
        on_problem=on_problem,
        on_progress=on_progress,
    )
    seconds = time.perf_counter() - start
    cpu = cpu_seconds() - cpu
    peak = proc_status()["VmHWM"]

    with sessions() as s:
        stored = {
            "subscribers": s.scalar(select(func.count()).select_from(Subscriber)),
            "active": s.scalar(
                select(func.count())
                .select_from(Subscription)
                .where(Subscription.status == "active")
            ),
            "import_events": s.scalar(
                select(func.count())
                .select_from(ConsentEvent)
                .where(ConsentEvent.action == "import")
            ),
        }
    engine.dispose()
    errors = []
    got = {
        "added": report.added,
        "updated": report.updated,
        "unchanged": report.unchanged,
        "skipped": dict(report.skipped),
    }
    want = {
        "added": expected["added"],
        "updated": 0,
        "unchanged": 0,
        "skipped": expected["skipped"],
    }
    if got != want:
        errors.append(f"report {got} != expected {want}")
    if dict(problems) != expected["skipped"] or problems_sum != expected["problems_sum"]:
        errors.append("the bad rows reported (line, reason) are not the ones the file has")
    for what, n in stored.items():
        if n != expected["added"]:
            errors.append(f"{what} in the store: {n}, expected {expected['added']}")
    return {
        "seconds": seconds,
        "cpu": cpu,
        "rss_before": before,
        "marks": marks,
        "peak_mb": peak,
        "peak_reset": peak_reset,
        "errors": errors,
    }


def child_main(argv: list[str]) -> int:
    kind, csv_path = argv[0], Path(argv[1])
    if kind == "baseline":
        result = child_baseline(csv_path)
    else:
        expected = json.loads(Path(argv[3]).read_text(encoding="utf-8"))
        result = child_import(csv_path, argv[2], expected)
    print(json.dumps(result))
    return 0


def run_child(args: list[str], label: str) -> dict[str, Any]:
    """Run this script as a child; its last stdout line is the JSON result."""
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        out, err = proc.communicate()
    finally:
        if proc.poll() is None:  # interrupted: do not leave it running
            proc.kill()
            proc.wait()
    if proc.returncode != 0:
        tail = "\n".join(err.strip().splitlines()[-15:])
        return {"failed": f"{label} child exited {proc.returncode}:\n{tail}"}
    parsed: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return parsed


# -- PostgreSQL scratch database ------------------------------------------------------------


class ScratchDatabase:
    """``bench_import_<random>`` next to the database named; always dropped on exit."""

    def __init__(self, url: str) -> None:
        from sqlalchemy.engine import make_url

        from subscribers.db import make_engine, normalize_url

        self.name = f"bench_import_{uuid.uuid4().hex[:10]}"
        base = make_url(normalize_url(url))
        self.url = base.set(database=self.name).render_as_string(hide_password=False)
        self.admin = make_engine(
            base.render_as_string(hide_password=False), isolation_level="AUTOCOMMIT"
        )

    def __enter__(self) -> str:
        from sqlalchemy import text

        with self.admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{self.name}"'))
        return self.url

    def __exit__(self, *exc: object) -> None:
        from sqlalchemy import text

        with self.admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
        self.admin.dispose()


# -- the report -----------------------------------------------------------------------------


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.2f}/{five:.2f}"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        return child_main(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000, help="data rows in the CSV")
    parser.add_argument(
        "--backend", choices=["sqlite", "postgresql", "both"], default="both", help="stores"
    )
    parser.add_argument("--postgres-url", default=PG_DEFAULT, help="where to create a scratch db")
    parser.add_argument("--check", action="store_true", help="exit 1 if a goal is missed")
    args = parser.parse_args(argv)
    if args.rows < 1000:
        parser.error("--rows must be at least 1000")
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]

    print(f"cpus: {os.cpu_count()}   load average (1m/5m) at start: {load()}")
    with tempfile.TemporaryDirectory(prefix="bench_import_") as tmp:
        csv_path, exp_path = Path(tmp) / "subscribers.csv", Path(tmp) / "expected.json"
        started = time.perf_counter()
        exp = generate(csv_path, args.rows)
        exp_path.write_text(json.dumps(exp.to_json()), encoding="utf-8")
        size = csv_path.stat().st_size / 2**20
        bad = sum(exp.skipped.values())
        print(
            f"generated {args.rows:,} rows ({size:.1f} MB) in {time.perf_counter() - started:.1f}s:"
            f" {exp.added:,} to add, {bad:,} bad ({bad / args.rows:.1%}):"
            f" {', '.join(f'{n} {r}' for r, n in sorted(exp.skipped.items()))}"
        )

        base = run_child(["baseline", str(csv_path)], "baseline")
        if "failed" in base:
            print(base["failed"], file=sys.stderr)
            return 1
        want_invalid = exp.skipped["invalid address"] + exp.skipped["missing address"]
        if base["invalid"] != want_invalid:
            print(
                f"note: baseline found {base['invalid']} invalid, generator wrote {want_invalid}",
                file=sys.stderr,
            )
        base["load"] = load()
        results: dict[str, dict[str, Any]] = {}
        for backend in backends:
            if backend == "sqlite":
                url = f"sqlite:///{tmp}/bench.db"
                results[backend] = run_child(["import", str(csv_path), url, str(exp_path)], backend)
            else:
                try:
                    scratch = ScratchDatabase(args.postgres_url)
                    with scratch as url:
                        results[backend] = run_child(
                            ["import", str(csv_path), url, str(exp_path)], backend
                        )
                except Exception as err:  # unreachable server, no permission
                    results[backend] = {"failed": f"postgresql: {type(err).__name__}: {err}"}
            results[backend]["load"] = load()

    return report(args, base, results)


def report(
    args: argparse.Namespace, base: dict[str, Any], results: dict[str, dict[str, Any]]
) -> int:
    base_rate = base["rows"] / base["seconds"]
    q, n = f"{args.rows // 4:,}", f"{args.rows:,}"
    print()
    head = (
        f"{'phase':<26}{'rows/s':>10}{'x baseline':>12}{'wall s':>8}{'cpu s':>7}"
        f"{'RSS before':>12}{'RSS @' + q:>14}{'RSS @' + n:>15}{'peak RSS':>10}{'load':>11}"
    )
    print(head)
    print("-" * len(head))
    print(
        f"{'baseline: csv + normalize':<26}{base_rate:>10,.0f}{1.0:>12.2f}{base['seconds']:>8.2f}"
        f"{base['cpu']:>7.2f}{'':>12}{'':>14}{'':>15}{base['peak_mb']:>7.0f} MB{base['load']:>11}"
    )
    goals: list[tuple[str, str, bool, str]] = []
    for backend, r in results.items():
        if "failed" in r:
            print(f"{backend + ' import':<26}  FAILED (see below)")
            goals.append((backend, "import ran", False, "failed"))
            continue
        rate = args.rows / r["seconds"]
        quarter, end = r["marks"]["quarter"], r["marks"]["end"]
        growth = end["VmRSS"] / quarter["VmRSS"] - 1
        print(
            f"{backend + ' import':<26}{rate:>10,.0f}{rate / base_rate:>12.2f}{r['seconds']:>8.2f}"
            f"{r['cpu']:>7.2f}{r['rss_before']:>9.0f} MB{quarter['VmRSS']:>11.0f} MB"
            f"{end['VmRSS']:>12.0f} MB{r['peak_mb']:>7.0f} MB{r['load']:>11}"
        )
        ok = not r["errors"]
        goals.append((backend, "counts and bad lines correct", ok, "yes" if ok else "NO"))
        goals.append(
            (
                backend,
                f">= {GOAL_ROWS_PER_S:,} rows/s",
                ok and rate >= GOAL_ROWS_PER_S,
                f"{rate:,.0f}",
            )
        )
        goals.append(
            (
                backend,
                f"peak RSS < {GOAL_PEAK_MB:.0f} MB",
                r["peak_mb"] < GOAL_PEAK_MB,
                f"{r['peak_mb']:.0f} MB" + ("" if r["peak_reset"] else " (since start)"),
            )
        )
        goals.append(
            (
                backend,
                f"RSS @{n} within {GOAL_GROWTH:.0%} of @{q}",
                abs(growth) <= GOAL_GROWTH,
                f"{growth:+.1%}",
            )
        )
    for backend, r in results.items():
        if "marks" in r:
            quarter, end = r["marks"]["quarter"]["rows"], r["marks"]["end"]["rows"]
            print(
                f"  {backend}: RSS read in on_progress after {quarter:,.0f} and {end:,.0f}"
                " rows taken (rows without an address are not counted)"
            )
    print()
    print(f"{'backend':<12}{'goal':<40}{'measured':>16}  result")
    for backend, goal, ok, measured in goals:
        print(f"{backend:<12}{goal:<40}{measured:>16}  {'PASS' if ok else 'MISS'}")
    for backend, r in results.items():
        if "failed" in r:
            print(f"\n{r['failed']}", file=sys.stderr)
        for error in r.get("errors", []):
            print(f"{backend}: WRONG RESULT: {error}", file=sys.stderr)
    missed = [g for g in goals if not g[2]]
    print(f"\nload average (1m/5m) at end: {load()}; {len(missed)} goal(s) missed")
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
