#!/usr/bin/env python3
"""Every benchmark of the project in one run, and one table of the figures against the goals.

Runs, each in its own process and one after the other (they would disturb each other):

  import    scripts/bench_import.py    CSV import on SQLite and PostgreSQL (issue 2)
  render    scripts/bench_render.py    render once, personalize per reader (issue 3)
  send      scripts/bench_send.py      engine on SQLite/PostgreSQL, SendEmail and bulk,
                                       two workers, enqueue of 1,000,000, sender RSS (issue 4)
  feedback  scripts/bench_feedback.py  SES notifications through `mailer serve` (issue 6)
  guard     scripts/bench_guard.py     reputation guard's cost per batch (no numeric goal)
  web       scripts/bench_web.py       reader page p95 while 60 forged SNS messages name slow
                                       certificate hosts, against its unloaded p95 (issue 13)
  tracking  scripts/bench_tracking.py  the click redirect on one `mailer serve` under wrk, against
                                       a bare 302 in the same run; no event lost on SIGTERM (16)
  startup   scripts/bench_startup.py   `mailer --help`, `lists show`, `campaigns show 1` start-up,
                                       against `python -c pass` (issue 17)
  defaults  scripts/bench_send_defaults.py  `mailer send` end to end, 20,000 readers, SES at
                                       20 ms, no tuning variables (issue 17)
  webhooks  scripts/bench_webhooks.py  consent changes with the webhook outbox and no endpoint,
                                       against the same without its lookup; delivery/s (14)
  confirm   scripts/bench_confirm.py   confirmation mails of an import, compiled once and
                                       spliced, against a full compile per reader (issue 15)
  waves     scripts/bench_waves.py     `send --at-local` enqueue of 1,000,000 readers in 31
                                       zones on PostgreSQL, beside the plain enqueue (issue 15)

Each script prints its own figures with the baseline or limit it measured in the same run;
this one reads them (bench_send's ``--json``, the others' printed tables) and prints one
table: figure, this run, baseline or limit, ratio, goal, PASS/MISS (blank: a figure with no
goal of its own). ``--json FILE`` writes the same with the date and the machine. The scripts'
own output is kept in ``--log-dir`` (default: a temporary directory, named at the end).

    .venv/bin/python scripts/bench.py [--json FILE] [--only send,render] [--quick]
        [--log-dir DIR]

``--quick`` passes small sizes to every script (a smoke run of this script; its figures are
not the goals' figures). Exit status 1 when a goal is missed or a benchmark failed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"


@dataclass
class Figure:
    bench: str
    figure: str
    value: float | None
    unit: str
    baseline: float | None = None  # the baseline or limit measured in the same run
    baseline_label: str = ""
    ratio: float | None = None
    goal: str = ""
    result: str = ""  # PASS, MISS, or "" (no goal: for scale)
    measured: str = ""  # a measurement that is not a number ("yes", "+0.9%")


def _num(text: str) -> float:
    return float(text.replace(",", ""))


def _find(pattern: str, out: str) -> re.Match[str] | None:
    return re.search(pattern, out, re.MULTILINE)


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


# -- one parser per benchmark ------------------------------------------------------------------


def parse_render(out: str, _: Path) -> list[Figure]:
    once = _find(r"render once \(median of \d+\):\s+([\d.,]+) ms", out)
    full = _find(r"full render per reader \(median of \d+\):\s+([\d.,]+) ms", out)
    per = _find(r"personalize per reader \(mean of \d+\):\s+([\d.,]+) us", out)
    goal_us = _find(r"goal personalize <= (\d+) us: (met|MISSED)", out)
    goal_x = _find(r"goal >= (\d+)x faster than full render: (met|MISSED)", out)
    if not (once and full and per and goal_us and goal_x):
        raise ValueError("bench_render output not understood")
    per_us, full_us = _num(per.group(1)), _num(full.group(1)) * 1000
    limit = _num(goal_us.group(1))
    rows = [
        Figure("render", "render one issue once", _num(once.group(1)), "ms", goal="", result=""),
        Figure(
            "render",
            "personalize one reader",
            per_us,
            "us",
            limit,
            "goal limit",
            per_us / limit,
            f"<= {limit:.0f} us",
            _verdict(goal_us.group(2) == "met"),
        ),
        Figure(
            "render",
            "personalize vs full render per reader",
            per_us,
            "us",
            full_us,
            "full render per reader",
            full_us / per_us,
            f">= {goal_x.group(1)}x faster",
            _verdict(goal_x.group(2) == "met"),
        ),
    ]
    rows.extend(_render_tracking(out))
    return rows


def _render_tracking(out: str) -> list[Figure]:
    """bench_render's tracking rows (issue 16): personalize with every link tracked against
    its goal, and the engine's per-reader path without and with tracking (for scale)."""
    tracked = _find(r"personalize with tracking per reader \(mean of \d+\):\s+([\d.,]+) us", out)
    goal = _find(r"goal personalize with tracking <= (\d+) us: (met|MISSED)", out)
    if not (tracked and goal):
        return []
    value, limit = _num(tracked.group(1)), _num(goal.group(1))
    figures = [
        Figure(
            "render",
            "personalize one reader, links tracked",
            value,
            "us",
            limit,
            "goal limit",
            value / limit,
            f"<= {limit:.0f} us",
            _verdict(goal.group(2) == "met"),
        )
    ]
    for label in ("untracked", "tracked"):
        m = _find(rf"engine per-reader message, {label} \(mean of \d+\):\s+([\d.,]+) us", out)
        if m:
            figures.append(
                Figure("render", f"engine per-reader message, {label}", _num(m.group(1)), "us")
            )
    return figures


def parse_send(out: str, json_path: Path) -> list[Figure]:
    rows: list[dict[str, Any]] = json.loads(json_path.read_text(encoding="utf-8"))
    naive = next((r["value"] for r in rows if r["figure"].startswith("naive")), None)
    small_rss = next(
        (r["value"] for r in rows if r["figure"].startswith("sender peak RSS, 10")), None
    )
    capacity = next((r["value"] for r in rows if "capacity" in r["figure"]), None)
    figures = []
    for r in rows:
        base, label = None, ""
        if r.get("ratio"):
            base = r["value"] / r["ratio"]
            label = "naive baseline" if r["unit"] == "emails/s" else "10,000-reader RSS"
            if r["unit"] == "emails/s" and naive:
                base = naive
            elif r["unit"] == "MB" and small_rss:
                base = small_rss
        elif r["unit"] == "emails/s" and capacity and "naive" in r["figure"]:
            base, label = capacity, "test server capacity"
        ratio = r["value"] / base if base else None
        ok = r.get("ok")
        figures.append(
            Figure(
                "send",
                r["figure"].strip(),
                r["value"],
                r["unit"],
                base,
                label,
                ratio,
                r.get("goal") or "",
                "" if ok is None else _verdict(bool(ok)),
            )
        )
    return figures


def parse_feedback(out: str, _: Path) -> list[Figure]:
    e2e = _find(r"end to end\s+([\d,.]+) notifications/s\s+\(goal ([\d,.]+)/s\)", out)
    verify = _find(r"baseline verify\s+([\d,.]+) /s\s+\(certificate cached\)", out)
    parse = _find(r"baseline json parse\s+([\d,.]+) /s", out)
    once = _find(r"exactly once: (yes|NO)", out)
    head = _find(r"feedback intake benchmark \((\w+), (\d+) clients\)", out)
    if not (e2e and verify and parse and once and head):
        raise ValueError("bench_feedback output not understood")
    rate, goal = _num(e2e.group(1)), _num(e2e.group(2))
    where = f"{head.group(1)}, {head.group(2)} clients"
    return [
        Figure(
            "feedback",
            f"notifications end to end ({where})",
            rate,
            "notif/s",
            _num(verify.group(1)),
            "signature verify only",
            rate / _num(verify.group(1)),
            f">= {goal:.0f}/s, each once",
            _verdict(rate >= goal and once.group(1) == "yes"),
        ),
        Figure(
            "feedback",
            "  (json parse only, for scale)",
            _num(parse.group(1)),
            "notif/s",
        ),
    ]


def parse_guard(out: str, _: Path) -> list[Figure]:
    base = _find(r"^baseline\s+([\d.]+) ms/call", out)
    guard = _find(r"^guard\s+([\d.]+) ms/call", out)
    stats = _find(r"^stats\s+([\d.]+) ms/call", out)
    backend = _find(r"^(\w+): (\d+) rows seeded", out)
    if not (base and guard and stats and backend):
        raise ValueError("bench_guard output not understood")
    b = _num(base.group(1))
    where = f"{backend.group(1)}, {int(backend.group(2)):,} rows"
    return [
        Figure(
            "guard",
            f"reputation guard per batch ({where})",
            _num(guard.group(1)),
            "ms/call",
            b,
            "engine's count query",
            _num(guard.group(1)) / b,
        ),
        Figure(
            "guard",
            f"campaign stats ({where})",
            _num(stats.group(1)),
            "ms/call",
            b,
            "engine's count query",
            _num(stats.group(1)) / b,
        ),
    ]


def parse_web(out: str, _: Path) -> list[Figure]:
    idle = _find(r"reader page p95 unloaded:\s+([\d.,]+) ms", out)
    loaded = _find(r"reader page p95 under load:\s+([\d.,]+) ms", out)
    head = _find(r"reader page under (\d+) concurrent forged SNS messages", out)
    goal = _find(r"goal p95 under load < (\d+) ms: (met|MISSED)", out)
    if not (idle and loaded and head and goal):
        raise ValueError("bench_web output not understood")
    p0, p1 = _num(idle.group(1)), _num(loaded.group(1))
    return [
        Figure(
            "web",
            f"reader page p95, {head.group(1)} forged SNS messages in flight",
            p1,
            "ms",
            p0,
            "unloaded p95",
            p1 / p0,
            f"< {goal.group(1)} ms",
            _verdict(goal.group(2) == "met"),
        )
    ]


def parse_import(out: str, _: Path) -> list[Figure]:
    base = _find(r"^baseline: csv \+ normalize\s+([\d,]+)", out)
    if not base:
        raise ValueError("bench_import output not understood")
    base_rate = _num(base.group(1))
    figures = []
    for m in re.finditer(r"^(sqlite|postgresql) import\s+([\d,]+)\s+([\d.]+)", out, re.MULTILINE):
        figures.append(
            Figure(
                "import",
                f"CSV import rows/s, {m.group(1)}",
                _num(m.group(2)),
                "rows/s",
                base_rate,
                "csv + normalize only",
                _num(m.group(2)) / base_rate,
            )
        )
    goal_line = re.compile(r"^(sqlite|postgresql)\s{2,}(.+?)\s{2,}(\S+(?: \S+)*)\s+(PASS|MISS)$")
    for line in out.splitlines():
        g = goal_line.match(line.rstrip())
        if not g:
            continue
        backend, goal, measured, verdict = g.groups()
        rate = next((f for f in figures if f.figure.endswith(backend) and "rows/s" in goal), None)
        if rate is not None:  # the rate's own row gets its goal and verdict
            rate.goal, rate.result = goal, verdict
            continue
        figures.append(
            Figure(
                "import",
                f"{goal} ({backend})",
                None,
                "",
                goal=goal,
                result=verdict,
                measured=measured,
            )
        )
    if not figures:
        raise ValueError("bench_import printed no figures")
    return figures


def parse_startup(out: str, _: Path) -> list[Figure]:
    base = _find(r"^python -c pass \(median of \d+\): ([\d.]+) s", out)
    goal = _find(r"^goal each <= ([\d.]+) s", out)
    if not (base and goal):
        raise ValueError("bench_startup output not understood")
    limit, pass_s = _num(goal.group(1)), _num(base.group(1))
    figures = [
        Figure(
            "startup",
            f"mailer {m.group(1)} (median)",
            _num(m.group(2)),
            "s",
            pass_s,
            "python -c pass",
            _num(m.group(2)) / pass_s,
            f"<= {goal.group(1)} s",
            _verdict(_num(m.group(2)) <= limit),
        )
        for m in re.finditer(r"^mailer (.+?) \(median of \d+\): ([\d.]+) s", out, re.MULTILINE)
    ]
    if not figures:
        raise ValueError("bench_startup printed no figures")
    # for scale: each command's CPU time (load stretches it less), and the floor under a
    # command that reads the store (SQLAlchemy's import, then with typer and rich)
    cpu = r"^(mailer .+?) \(median of \d+\): [\d.]+ s.*?, CPU ([\d.]+) s"
    figures += [
        Figure("startup", f"{m.group(1)}, CPU time (median)", _num(m.group(2)), "s")
        for m in re.finditer(cpu, out, re.MULTILINE)
    ]
    floor = r"^import (.+?) \(median of \d+\): ([\d.]+) s"
    figures += [
        Figure(
            "startup",
            f"(floor) import {m.group(1)}",
            _num(m.group(2)),
            "s",
            pass_s,
            "python -c pass",
            _num(m.group(2)) / pass_s,
        )
        for m in re.finditer(floor, out, re.MULTILINE)
    ]
    return figures


def parse_tracking(out: str, _: Path) -> list[Figure]:
    bare = _find(r"^bare 302: ([\d,]+) requests/s, p99 ([\d.]+) ms", out)
    got = _find(r"^redirect /r/: ([\d,]+) requests/s, p99 ([\d.]+) ms", out)
    kept = _find(r"^events written after SIGTERM: (\d+) of (\d+) redirects \(lost (\d+)\)", out)
    if not (bare and got and kept):
        raise ValueError("bench_tracking output not understood")
    rps, p99, bare_rps = _num(got.group(1)), _num(got.group(2)), _num(bare.group(1))
    return [
        Figure(
            "tracking",
            "redirect requests/s, one mailer serve",
            rps,
            "req/s",
            bare_rps,
            "bare 302, same run",
            rps / bare_rps,
            ">= 3,000 req/s",
            _verdict(rps >= 3000),
        ),
        Figure(
            "tracking",
            "redirect p99",
            p99,
            "ms",
            _num(bare.group(2)),
            "bare 302 p99",
            p99 / max(_num(bare.group(2)), 1e-9),
            "< 50 ms",
            _verdict(p99 < 50),
        ),
        Figure(
            "tracking",
            "events lost across SIGTERM",
            _num(kept.group(3)),
            "events",
            _num(kept.group(2)),
            "redirects answered",
            goal="0",
            result=_verdict(kept.group(3) == "0"),
        ),
    ]


def parse_webhooks(out: str, _: Path) -> list[Figure]:
    got = _find(r"^changes without endpoints: ([\d,]+)/s with the outbox, ([\d,]+)/s without", out)
    sent = _find(r"^delivered: (\d+) of (\d+) events, ([\d,]+) events/s", out)
    if not (got and sent):
        raise ValueError("bench_webhooks output not understood")
    rate, base = _num(got.group(1)), _num(got.group(2))
    return [
        Figure(
            "webhooks",
            "consent changes/s, outbox with no endpoint",
            rate,
            "changes/s",
            base,
            "same changes, no lookup",
            base / rate,  # how many times slower
            "<= 1.10 x slower",
            _verdict(base / rate <= 1.10),
        ),
        Figure(
            "webhooks",
            f"events delivered/s, one dispatcher ({sent.group(1)} of {sent.group(2)})",
            _num(sent.group(3)),
            "events/s",
            result="" if sent.group(1) == sent.group(2) else "MISS",
        ),
    ]


def parse_defaults(out: str, _: Path) -> list[Figure]:
    figures = [
        Figure(
            "defaults",
            f"mailer send with defaults, {m.group(1)} ({m.group(2)} readers)",
            _num(m.group(3)),
            "emails/s",
            goal=f">= {m.group(4)}/s",
            result=_verdict(m.group(5) == "met"),
        )
        for m in re.finditer(
            r"^mailer send, defaults, (\w+) \(([\d,]+) readers\): ([\d,]+) emails/s, "
            r"goal >= ([\d,]+): (met|MISSED)",
            out,
            re.MULTILINE,
        )
    ]
    if not figures:
        raise ValueError("bench_send_defaults printed no figures")
    return figures


def parse_confirm(out: str, _: Path) -> list[Figure]:
    """bench_confirm (issue 15): an import's confirmation mails against a full compile each."""
    full = _find(r"^baseline full compile per reader\s+([\d.]+) ms/mail", out)
    spliced = _find(r"^compiled once, spliced per reader\s+([\d.]+) ms/mail", out)
    goal = _find(r"^goal >= (\d+)x faster: (met|MISSED)", out)
    if not (full and spliced and goal):
        raise ValueError("bench_confirm output not understood")
    value, base = _num(spliced.group(1)), _num(full.group(1))
    return [
        Figure(
            "confirm",
            "confirmation mail per reader (import)",
            value,
            "ms/mail",
            base,
            "full compile per reader",
            value / base,
            f">= {goal.group(1)}x faster",
            _verdict(goal.group(2) == "met"),
        )
    ]


def parse_waves(out: str, _: Path) -> list[Figure]:
    """bench_waves (issue 15): the --at-local enqueue beside the plain one, a claim, idling."""
    plain = _find(r"^plain enqueue, ([\d,]+) readers: ([\d.]+) s, after the waves ([\d.]+) s", out)
    waves = _find(r"^waves enqueue \(--at-local\), [\d,]+ readers in (\d+) zones: ([\d.]+) s", out)
    claim = _find(r"^claim of (\d+) rows: ([\d.]+) ms in the first wave, ([\d.]+) ms plain", out)
    idle = _find(r"^between waves: runnable\(\) ([\d.]+) ms, next_release\(\) ([\d.]+) ms", out)
    if not (plain and waves and claim and idle):
        raise ValueError("bench_waves output not understood")
    value = _num(waves.group(2))
    base = (_num(plain.group(2)) + _num(plain.group(3))) / 2
    return [
        Figure(
            "waves",
            f"enqueue {plain.group(1)} readers, {waves.group(1)} zones, --at-local, postgresql",
            value,
            "s",
            base,
            "plain enqueue, same list",
            value / base,
            "<= 30 s",
            _verdict(value <= 30),
        ),
        Figure(
            "waves",
            f"claim of {claim.group(1)} rows, first wave",
            _num(claim.group(2)),
            "ms",
            _num(claim.group(3)),
            "plain campaign",
            _num(claim.group(2)) / _num(claim.group(3)),
        ),
        Figure("waves", "runnable() between waves", _num(idle.group(1)), "ms"),
    ]


Parser = Callable[[str, Path], list[Figure]]
BENCHES: dict[str, tuple[str, list[str], list[str], Parser]] = {
    # name: (script, arguments, quick arguments, parser)
    "import": ("bench_import.py", [], ["--rows", "20000"], parse_import),
    "render": ("bench_render.py", [], ["--readers", "2000", "--renders", "2"], parse_render),
    "send": ("bench_send.py", ["--json", "{json}"], ["--quick", "--json", "{json}"], parse_send),
    "feedback": ("bench_feedback.py", [], ["--events", "600", "--clients", "4"], parse_feedback),
    "guard": ("bench_guard.py", [], ["--rows", "5000", "--repeat", "5"], parse_guard),
    "web": ("bench_web.py", [], ["--pages", "50"], parse_web),
    "startup": ("bench_startup.py", [], ["--runs", "3"], parse_startup),
    "defaults": ("bench_send_defaults.py", [], ["--readers", "2000"], parse_defaults),
    "tracking": ("bench_tracking.py", [], ["--readers", "200", "--seconds", "3"], parse_tracking),
    "confirm": ("bench_confirm.py", [], ["--readers", "60"], parse_confirm),
    "waves": ("bench_waves.py", [], ["--readers", "20000"], parse_waves),
    "webhooks": (
        "bench_webhooks.py",
        [],
        ["--changes", "20", "--rounds", "5", "--events", "30"],
        parse_webhooks,
    ),
}


def run_bench(name: str, quick: bool, logs: Path) -> tuple[list[Figure], float]:
    script, full_args, quick_args, parser = BENCHES[name]
    json_path = logs / f"{name}.json"
    args = [a.replace("{json}", str(json_path)) for a in (quick_args if quick else full_args)]
    print(f"== {name}: scripts/{script} {' '.join(args)}", flush=True)
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, str(SCRIPTS / script), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.monotonic() - started
    (logs / f"{name}.out").write_text(proc.stdout + "\n--- stderr ---\n" + proc.stderr)
    try:
        figures = parser(proc.stdout, json_path)
    except (ValueError, OSError, KeyError, json.JSONDecodeError) as err:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        figures = [
            Figure(name, f"{script} failed (exit {proc.returncode})", None, "", goal=str(err))
        ]
        figures[0].result = "MISS"
        print(f"   {err}; last line: {tail[0][:200]}", flush=True)
    print(f"   done in {seconds:.0f}s (exit {proc.returncode})", flush=True)
    return figures, seconds


def _fmt(value: float | None) -> str:
    if value is None:
        return ""
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}"


def print_table(figures: list[Figure]) -> None:
    head = (
        f"{'figure':<60} {'this run':>12} {'unit':<8} {'baseline/limit':>14} "
        f"{'ratio':>8}  {'goal':<34} result"
    )
    print()
    print(head)
    print("-" * len(head))
    for f in figures:
        ratio = "" if f.ratio is None else f"{f.ratio:.3f}x" if f.ratio < 0.1 else f"{f.ratio:.2f}x"
        print(
            f"{f.bench + ': ' + f.figure:<60.60} {_fmt(f.value) or f.measured:>12} {f.unit:<8} "
            f"{_fmt(f.baseline):>14} {ratio:>8}  {f.goal:<34.34} {f.result}"
        )
    print()
    print("baseline/limit: what each figure is compared with, measured in the same run:")
    for label in sorted({f"{f.bench}: {f.baseline_label}" for f in figures if f.baseline_label}):
        print(f"  {label}")


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
        "load_average": os.getloadavg(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="also write the table as JSON")
    parser.add_argument("--only", default="", help=f"comma-separated: {', '.join(BENCHES)}")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--log-dir", type=Path, help="keep each script's output here")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(BENCHES)
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)} (known: {', '.join(BENCHES)})")
    logs = args.log_dir or Path(tempfile.mkdtemp(prefix="bench-"))
    logs.mkdir(parents=True, exist_ok=True)
    started = datetime.now(UTC)
    info = machine()
    print(
        f"brief-mailer benchmarks, {started:%Y-%m-%d %H:%M} UTC, {info['cpus']} cpus, {info['cpu']}"
    )
    figures: list[Figure] = []
    seconds: dict[str, float] = {}
    for name in names:
        found, seconds[name] = run_bench(name, args.quick, logs)
        figures += found
    print_table(figures)
    missed = [f for f in figures if f.result == "MISS"]
    print(f"{len(missed)} missed; scripts' own output in {logs}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "date": started.isoformat(timespec="seconds"),
                    "machine": info,
                    "quick": args.quick,
                    "seconds": seconds,
                    "figures": [asdict(f) for f in figures],
                },
                indent=2,
            ),
            encoding="utf-8",
        )
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
