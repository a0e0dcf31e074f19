#!/usr/bin/env python3
"""Chaos run: campaigns sent through faults, checked from the SES server's record.

Each run seeds a list, enqueues the fixture issue and sends it with real sender processes
(``mailer campaigns resume`` and ``mailer worker --once``) against the SES-compatible test
server in its own process, on a scratch PostgreSQL database. While it sends, a seeded
"monkey" SIGKILLs senders, cuts every other PostgreSQL connection
(``pg_terminate_backend``) and switches the server's faults: throttling (429), failures
(500, nothing sent; or ``error_after_accept``: recorded, then 500 — a real duplicate on
retry) and slowness (latency, spikes). Senders are restarted until the campaign is done.

At the end of each run, from the server's record:

* lost = 0: every active reader was accepted at least once, no suppressed reader was;
* duplicates <= bound: the campaign's ``reclaimed`` count (rows in flight at a crash) plus
  the after-accept failures the server counted (x50 entries per call with SendBulkEmail);
  a run uses either plain 500s or after-accept 500s, so the server's ``InternalFailure``
  count is exactly the after-accept count in the runs that use them;
* ledger = server: the readers with a ``sent`` row are exactly the accepted recipients.

Profiles: ``--profile full`` (default; 20 campaigns of 20,000 readers), ``--profile ci``
(3 of 1,500; what tests/test_chaos.py runs). Usage::

    scripts/chaos.py [--profile full|ci] [--campaigns N] [--readers N] [--seed N]
                     [--api single|bulk|mixed] [--json FILE]

Exit status 1 if any run breaks an invariant.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import Engine, select, text  # noqa: E402

import mailer.models_registry  # noqa: E402,F401  (all tables on Base.metadata)
from mailer.config import Settings  # noqa: E402
from mailer.sending.models import Campaign, Delivery, DeliveryStatus  # noqa: E402
from subscribers import store  # noqa: E402
from subscribers.db import make_engine, session_factory  # noqa: E402
from subscribers.models import Subscriber  # noqa: E402
from tests.delivery_helpers import make_campaign, seed_list  # noqa: E402
from tests.support.scratch import scratch_postgres  # noqa: E402
from tests.support.ses_server import SesServerClient, SesServerProcess  # noqa: E402

PG_ADMIN = os.environ.get(
    "MAILER_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
PROFILES = {"full": (20, 20_000), "ci": (3, 1_500)}
BULK_ENTRIES = 50  # SendBulkEmail entries per call (mailer.transports.ses.BULK_MAX)
SUPPRESSED = 3  # readers suppressed before each campaign: must receive nothing
CHAOS_KEY = "chaos-secret-key-5e8b1f0a2c9d4736"  # real transports refuse a weak key
CUT_SQL = (
    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
)
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "chaos",
    "AWS_SECRET_ACCESS_KEY": "chaos",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": "/dev/null",
    "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    "AWS_EC2_METADATA_DISABLED": "true",
}
CALM: dict[str, Any] = {
    "latency": 0.004,
    "spike_probability": 0.0,
    "spike_latency": 0.0,
    "throttle_probability": 0.0,
    "error_probability": 0.0,
    "error_after_accept_probability": 0.0,
}


@dataclass
class RunFigures:
    """One campaign's figures; ``ok`` when every invariant held."""

    run: int
    api: str
    failure_mode: str  # "5xx" (nothing sent) or "after-accept" (sent, then 500)
    readers: int
    active: int
    seconds: float = 0.0
    sender_starts: int = 0
    kills: int = 0
    cuts: int = 0
    backends_cut: int = 0
    fault_switches: int = 0
    crashed: int = 0  # senders that exited non-zero without being killed
    reclaimed: int = 0
    throttled: int = 0
    server_errors: int = 0
    after_accept: int = 0
    accepted: int = 0
    duplicates: int = 0
    bound: int = 0
    lost: int = 0
    suppressed_sent: int = 0
    ledger_sent: int = 0
    ledger_matches_server: bool = False
    status: str = ""
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


class Senders:
    """The sender processes of one run: start, SIGKILL, reap, and tell crashes apart."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.running: list[subprocess.Popen[bytes]] = []
        self.killed: set[int] = set()
        self.starts = 0
        self.crashed = 0
        self.crash_logs: list[str] = []
        self._log_of: dict[int, Path] = {}

    def start(self, args: list[str]) -> None:
        self.starts += 1
        path = self.logs / f"sender-{self.starts}.log"
        with path.open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "mailer", *args],
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        self._log_of[proc.pid] = path
        self.running.append(proc)

    def kill_one(self, rng: random.Random) -> bool:
        alive = [p for p in self.running if p.poll() is None]
        if not alive:
            return False
        victim = rng.choice(alive)
        os.kill(victim.pid, signal.SIGKILL)
        self.killed.add(victim.pid)
        victim.wait()
        return True

    def reap(self) -> None:
        for proc in [p for p in self.running if p.poll() is not None]:
            self.running.remove(proc)
            if proc.returncode != 0 and proc.pid not in self.killed:
                self.crashed += 1
                log = self._log_of[proc.pid].read_text(errors="replace")
                self.crash_logs.append(f"exit {proc.returncode}\n{log[-3000:]}")

    def stop_all(self) -> None:
        for proc in self.running:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        self.running.clear()


def _internal_failures(control: SesServerClient) -> int:
    calls = control.stats()["calls"]
    return sum(calls.get(op, {}).get("InternalFailure", 0) for op in ("SendEmail", "SendBulkEmail"))


def _throttled(control: SesServerClient) -> int:
    calls = control.stats()["calls"]
    return sum(
        calls.get(op, {}).get("TooManyRequestsException", 0)
        for op in ("SendEmail", "SendBulkEmail")
    )


def _faults(rng: random.Random, failure_mode: str) -> dict[str, Any]:
    """One random fault phase: calm, throttling, failing, or slow (one at a time)."""
    kind = rng.choice(["calm", "throttle", "fail", "slow", "mixed"])
    cfg = dict(CALM)
    if kind in ("throttle", "mixed"):
        cfg["throttle_probability"] = rng.uniform(0.05, 0.2)
    if kind in ("fail", "mixed"):
        key = "error_probability" if failure_mode == "5xx" else "error_after_accept_probability"
        cfg[key] = rng.uniform(0.02, 0.08)
    if kind == "slow":
        cfg.update(latency=rng.uniform(0.02, 0.06), spike_probability=0.05, spike_latency=0.5)
    return cfg


#: how long a cut waits for a running sender to connect (a sender just started spends its
#: first seconds importing, longer on a loaded machine); then it is spent, having cut nothing
CUT_WAIT = 5.0


def _cut(engine: Engine, senders: Senders) -> int:
    """Cut every other connection to the campaign's database; while senders run but none
    is connected yet, wait for one (up to CUT_WAIT), so that a cut lands on a sender."""
    deadline = time.monotonic() + CUT_WAIT
    while True:
        with engine.connect() as c:
            n = int(c.execute(text(CUT_SQL)).scalar_one())
            c.commit()
        senders.reap()
        if n or not senders.running or time.monotonic() > deadline:
            return n
        time.sleep(0.05)


def run_one(
    run: int,
    url: str,
    ses: SesServerProcess,
    *,
    readers: int,
    api: str,
    failure_mode: str,
    rng: random.Random,
    kills: int,
    cuts: int,
    switches: int,
    timeout: float,
    logs: Path,
) -> RunFigures:
    """Send one campaign through faults until it is done; check it from the server's record."""
    control = ses.control
    assert control is not None
    control.reset()
    control.configure(**CALM)
    engine = make_engine(url)
    sessions = session_factory(engine)
    slug = f"chaos{run}"
    _, emails = seed_list(sessions, readers, slug=slug, domain=f"c{run}.example.com")
    suppressed = set(emails[:SUPPRESSED])
    with sessions.begin() as s:
        for e in suppressed:
            store.suppress(s, e, "complaint")
    settings = Settings(database_url=url, secret_key=CHAOS_KEY, env="test")
    cid, _, _ = make_campaign(sessions, settings, slug=slug, force=True)
    fig = RunFigures(run, api, failure_mode, readers, readers - len(suppressed))
    env = dict(os.environ)
    env.update(
        AWS_ENV,
        MAILER_DATABASE_URL=url,
        MAILER_SECRET_KEY=CHAOS_KEY,
        MAILER_ENV="test",
        MAILER_OUTBOX_DIR=str(logs / "outbox"),
        MAILER_TRANSPORT="ses",
        MAILER_SES_ENDPOINT_URL=ses.url,
        MAILER_SES_REGION="us-east-1",
        MAILER_SES_API=api,
        MAILER_SEND_CONCURRENCY="4",
        MAILER_BATCH_SIZE="100" if api == "bulk" else "40",
    )
    senders = Senders(env, logs)
    started = time.monotonic()
    # the monkey's budget for this run; once spent, faults are off and the senders finish
    budget = {"kill": kills, "cut": cuts, "switch": switches}
    next_event = time.monotonic() + rng.uniform(0.3, 1.0)
    try:
        while True:
            senders.reap()
            with sessions() as s:
                status = s.get(Campaign, cid, populate_existing=True)
                assert status is not None
                fig.status = status.status
            if fig.status not in ("scheduled", "sending") and not senders.running:
                break
            if time.monotonic() - started > timeout:
                fig.problems.append(f"not done after {timeout:.0f}s (status {fig.status})")
                break
            if not senders.running:  # resume, and sometimes a second worker alongside
                if fig.status == "scheduled":
                    senders.start(["worker", "--once"])
                else:
                    senders.start(["campaigns", "resume", str(cid)])
                if rng.random() < 0.5:
                    senders.start(["worker", "--once"])
            now = time.monotonic()
            if now >= next_event and any(budget.values()):
                action = rng.choice([k for k, v in budget.items() if v])
                budget[action] -= 1
                if action == "kill" and senders.kill_one(rng):
                    fig.kills += 1
                elif action == "cut":
                    fig.cuts += 1
                    fig.backends_cut += _cut(engine, senders)
                elif action == "switch":
                    fig.fault_switches += 1
                    control.configure(**_faults(rng, failure_mode))
                if not any(budget.values()):
                    control.configure(**CALM)
                next_event = now + rng.uniform(0.3, 1.5)
            time.sleep(0.05)
    finally:
        senders.stop_all()
        control.configure(**CALM)
    fig.seconds = time.monotonic() - started
    fig.sender_starts, fig.crashed = senders.starts, senders.crashed
    _check(fig, control, sessions, cid, set(emails) - suppressed, suppressed, api)
    for log in senders.crash_logs[:2]:
        lines = [ln.strip() for ln in log.splitlines() if ln.strip()]
        where = [ln for ln in lines if "mailer" in ln and ln.startswith("File")][-1:]
        errors = [ln for ln in lines if "Error" in ln][-1:]
        last = lines[-1:] if not errors else []
        print(
            f"  run {run}: a sender exited: {lines[0]} {where} {errors} {last}"[:400],
            file=sys.stderr,
        )
    engine.dispose()
    return fig


def _check(
    fig: RunFigures,
    control: SesServerClient,
    sessions: Any,
    cid: int,
    active: set[str],
    suppressed: set[str],
    api: str,
) -> None:
    got = control.recipients()
    fig.accepted = sum(got.values())
    fig.duplicates = sum(n - 1 for n in got.values())
    fig.throttled = _throttled(control)
    failures = _internal_failures(control)
    fig.server_errors = failures
    fig.after_accept = failures if fig.failure_mode == "after-accept" else 0
    with sessions() as s:
        campaign = s.get(Campaign, cid)
        fig.reclaimed = campaign.reclaimed
        ledger = set(
            s.scalars(
                select(Subscriber.email)
                .join(Delivery, Delivery.subscriber_id == Subscriber.id)
                .where(Delivery.campaign_id == cid, Delivery.status == DeliveryStatus.SENT)
            )
        )
    per_call = BULK_ENTRIES if api == "bulk" else 1
    fig.bound = fig.reclaimed + fig.after_accept * per_call
    fig.lost = len(active - set(got))
    fig.suppressed_sent = len(suppressed & set(got))
    fig.ledger_sent = len(ledger)
    fig.ledger_matches_server = ledger == set(got)
    if fig.status != "done":
        fig.problems.append(f"campaign ended {fig.status}")
    if fig.lost:
        fig.problems.append(f"lost {fig.lost} readers")
    if fig.suppressed_sent:
        fig.problems.append(f"{fig.suppressed_sent} suppressed readers got it")
    if fig.duplicates > fig.bound:
        fig.problems.append(f"duplicates {fig.duplicates} > bound {fig.bound}")
    if not fig.ledger_matches_server:
        fig.problems.append(
            f"ledger ({len(ledger)} sent) != server ({len(got)} recipients): "
            f"{len(ledger - set(got))} only in the ledger, {len(set(got) - ledger)} only at SES"
        )


COLUMNS = [
    ("run", "run"),
    ("api", "api"),
    ("failure_mode", "5xx mode"),
    ("readers", "readers"),
    ("seconds", "s"),
    ("sender_starts", "starts"),
    ("kills", "kills"),
    ("cuts", "cuts"),
    ("crashed", "crashed"),
    ("fault_switches", "faults"),
    ("throttled", "429s"),
    ("server_errors", "500s"),
    ("reclaimed", "reclaimed"),
    ("after_accept", "after-acc"),
    ("duplicates", "dups"),
    ("bound", "bound"),
    ("lost", "lost"),
    ("ledger_matches_server", "ledger=ses"),
]


def print_row(fig: RunFigures, header: bool = False) -> None:
    if header:
        print("  ".join(f"{label:>9}" for _, label in COLUMNS) + "  result")
    cells = []
    for key, _ in COLUMNS:
        value = getattr(fig, key)
        cells.append(f"{value:9.1f}" if isinstance(value, float) else f"{value!s:>9}")
    print("  ".join(cells) + "  " + ("ok" if fig.ok else "FAIL: " + "; ".join(fig.problems)))
    sys.stdout.flush()


def run_chaos(
    *,
    campaigns: int,
    readers: int,
    seed: int,
    api: str = "mixed",
    kills: int = 3,
    cuts: int = 2,
    switches: int = 4,
    timeout: float = 600.0,
    admin_url: str = PG_ADMIN,
    verbose: bool = True,
) -> list[RunFigures]:
    """Run ``campaigns`` chaos runs on a scratch database; the figures of each."""
    rng = random.Random(seed)
    figures: list[RunFigures] = []
    with (
        scratch_postgres(admin_url, "chaos") as url,
        tempfile.TemporaryDirectory(prefix="chaos-") as tmp,
        SesServerProcess(max_send_rate=0, keep_raw=False, seed=seed, **CALM) as ses,
    ):
        for run in range(1, campaigns + 1):
            run_api = api if api != "mixed" else ("single" if run % 2 else "bulk")
            mode = "after-accept" if run % 3 != 1 else "5xx"
            logs = Path(tmp) / f"run{run}"
            logs.mkdir()
            fig = run_one(
                run,
                url,
                ses,
                readers=readers,
                api=run_api,
                failure_mode=mode,
                rng=rng,
                kills=kills,
                cuts=cuts,
                switches=switches,
                timeout=timeout,
                logs=logs,
            )
            figures.append(fig)
            if verbose:
                print_row(fig, header=run == 1)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", choices=sorted(PROFILES), default="full")
    parser.add_argument("--campaigns", type=int, help="runs (default from the profile)")
    parser.add_argument("--readers", type=int, help="readers per campaign (profile)")
    parser.add_argument("--seed", type=int, default=int(time.time()) % 100_000)
    parser.add_argument("--api", choices=["single", "bulk", "mixed"], default="mixed")
    parser.add_argument("--kills", type=int, default=3, help="SIGKILLs per run")
    parser.add_argument("--cuts", type=int, default=2, help="connection cuts per run")
    parser.add_argument("--switches", type=int, default=4, help="fault changes per run")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per run")
    parser.add_argument("--postgres-url", default=PG_ADMIN, help="where to make a scratch db")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    args = parser.parse_args(argv)
    campaigns, readers = PROFILES[args.profile]
    campaigns = args.campaigns or campaigns
    readers = args.readers or readers
    print(f"chaos: {campaigns} campaigns x {readers} readers, seed {args.seed}, api {args.api}")
    figures = run_chaos(
        campaigns=campaigns,
        readers=readers,
        seed=args.seed,
        api=args.api,
        kills=args.kills,
        cuts=args.cuts,
        switches=args.switches,
        timeout=args.timeout,
        admin_url=args.postgres_url,
    )
    bad = [f for f in figures if not f.ok]
    total_dups = sum(f.duplicates for f in figures)
    print(
        f"total: {len(figures)} runs, {sum(f.accepted for f in figures)} accepted, "
        f"lost {sum(f.lost for f in figures)}, duplicates {total_dups} "
        f"(bound {sum(f.bound for f in figures)}), kills {sum(f.kills for f in figures)}, "
        f"cuts {sum(f.cuts for f in figures)}, failed runs {len(bad)}"
    )
    if args.json:
        args.json.write_text(
            json.dumps([{**asdict(f), "ok": f.ok} for f in figures], indent=2), encoding="utf-8"
        )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
