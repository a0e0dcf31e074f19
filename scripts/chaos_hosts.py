#!/usr/bin/env python3
"""Several hosts, proven (issue 18): three worker hosts share one campaign through one
PostgreSQL across a network that fails, checked from the SES test server's record.

The run builds its own test bed and tears it down at the end, also on failure: a bridge in
the machine's namespace on a private /24 (10.213.N.0/24, N random per run), a scratch
PostgreSQL cluster (``initdb``/``pg_ctl`` as the ``postgres`` user) listening on the
bridge's address only, the SES-compatible test server (tests/support/ses_server.py) in a
network namespace of its own, and three worker hosts (``ip netns exec <ns> mailer worker
--once``), each namespace joined to the bridge by a veth pair. The machine's own PostgreSQL
is not touched.

While the campaign sends:

* one host's link is cut (``ip link set ... down``) for longer than a worker lease, then
  restored: its rows are claimed again by the others, its late results rejected by the fence;
* one host is SIGSTOPped for longer than a lease, then SIGCONTed: the same;
* the PostgreSQL connections of one host are cut (``pg_terminate_backend`` by its address):
  it reconnects and goes on.

The cluster runs with ``idle_in_transaction_session_timeout`` (docs/deploy.md says why: a
host that vanishes inside a claim holds the campaign row's lock until the server drops it).

Figures, from the server's record: accepted, lost (must be 0), duplicates against their
bound (the campaign's ``reclaimed``), late results the fence rejected (from the workers'
logs), and the rate across hosts against the limit (from the accept timestamps).

Profiles: ``--profile full`` (default: 60,000 readers, rate error within 10% asserted),
``--profile ci`` (4,800 readers, what tests/test_hosts_netns.py runs, loose rate bound).
Needs root and iproute2. Usage::

    scripts/chaos_hosts.py [--profile full|ci] [--readers N] [--rate R] [--json FILE]

Exit status 1 if an invariant broke.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, select, text  # noqa: E402
from sqlalchemy.orm import Session, sessionmaker  # noqa: E402

import mailer.models_registry  # noqa: E402,F401  (all tables on Base.metadata)
from mailer.config import Settings  # noqa: E402
from mailer.sending.leases import HEARTBEAT_TTL  # noqa: E402
from mailer.sending.models import Campaign, Delivery, Lease  # noqa: E402
from subscribers.db import make_engine, session_factory  # noqa: E402
from tests.delivery_helpers import make_campaign, seed_list  # noqa: E402
from tests.support.scratch import scratch_postgres  # noqa: E402
from tests.support.ses_server import SesServerClient  # noqa: E402

KEY = "hosts-chaos-secret-key-8d1c0b7e5a"  # real transports refuse a weak key
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "hosts",
    "AWS_SECRET_ACCESS_KEY": "hosts",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": "/dev/null",
    "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    "AWS_EC2_METADATA_DISABLED": "true",
}
FENCED = re.compile(r"(\d+) late results rejected by the fence")
#: a vanished host's open transaction (it may hold the campaign row) is dropped after this
IDLE_TX_TIMEOUT = "5s"
WORKERS = 3


@dataclass(frozen=True)
class Profile:
    readers: int
    rate: float  # MAILER_SEND_RATE: the one limit across hosts
    fault_at: float  # seconds into the run the link cut starts
    rate_tolerance: float  # asserted |rate error|
    timeout: float


PROFILES = {
    "full": Profile(60_000, 200.0, 20.0, 0.10, 900.0),
    "ci": Profile(4_800, 40.0, 8.0, 0.35, 420.0),
}


@dataclass
class Figures:
    readers: int
    rate_limit: float
    seconds: float = 0.0
    accepted: int = 0
    lost: int = 0
    duplicates: int = 0
    bound: int = 0  # the campaign's reclaimed rows: at most these may have gone twice
    fenced: int = 0  # late results the fence rejected (the workers' logs)
    rate: float = 0.0  # accepted / (last accept - first accept)
    rate_error: float = 0.0
    peak_rate: float = 0.0  # busiest 10-second window
    duplicates_at: list[float] = field(default_factory=list)  # seconds into the run, each
    faults_at: dict[str, float] = field(default_factory=dict)  # seconds into the run
    started: float = 0.0  # wall clock (the SES server's accept times are wall clock too)
    link_down_seconds: float = 0.0
    stopped_seconds: float = 0.0
    backends_cut: int = 0
    worker_exits: list[int] = field(default_factory=list)
    status: str = ""
    left_behind: list[str] = field(default_factory=list)  # the bed's remains after teardown
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), check=check, capture_output=True, text=True)


def bed_unavailable() -> str | None:
    """Why the bed cannot be built here (None: it can)."""
    if os.geteuid() != 0:
        return "the multi-host bed needs root (network namespaces)"
    for tool in ("ip", "initdb", "pg_ctl", "runuser"):
        if shutil.which(tool) is None:
            return f"the multi-host bed needs {tool!r} (scripts/setup installs it)"
    return None


class Bed:
    """Namespaces, veth pairs and a bridge with unique names; :meth:`close` removes them."""

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:5]
        self.tag = tag
        self.net = f"10.213.{random.randint(1, 254)}"
        self.bridge = f"hb{tag}"
        self.host_addr = f"{self.net}.1"
        self.namespaces: dict[str, str] = {}  # role -> namespace
        self.addrs: dict[str, str] = {}
        self.links: dict[str, str] = {}  # role -> the host-side veth

    def build(self, roles: list[str]) -> None:
        sh("ip", "link", "add", self.bridge, "type", "bridge")
        sh("ip", "addr", "add", f"{self.host_addr}/24", "dev", self.bridge)
        sh("ip", "link", "set", self.bridge, "up")
        for i, role in enumerate(roles, start=2):
            ns, outside, inside = f"h{self.tag}{role}", f"h{self.tag}{role}o", f"h{self.tag}{role}i"
            sh("ip", "netns", "add", ns)
            self.namespaces[role] = ns
            sh("ip", "link", "add", outside, "type", "veth", "peer", "name", inside)
            self.links[role] = outside
            sh("ip", "link", "set", inside, "netns", ns)
            sh("ip", "link", "set", outside, "master", self.bridge)
            sh("ip", "link", "set", outside, "up")
            self.addrs[role] = f"{self.net}.{i}"
            sh("ip", "-n", ns, "addr", "add", f"{self.addrs[role]}/24", "dev", inside)
            sh("ip", "-n", ns, "link", "set", inside, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")

    def link(self, role: str, up: bool) -> None:
        sh("ip", "link", "set", self.links[role], "up" if up else "down")

    def exec_args(self, role: str) -> list[str]:
        return ["ip", "netns", "exec", self.namespaces[role]]

    def leftovers(self) -> list[str]:
        """This run's namespaces and links still on the machine (none after :meth:`close`)."""
        names = sh("ip", "netns", "list").stdout + sh("ip", "-br", "link").stdout
        return sorted({w.split("@")[0] for w in names.split() if w.startswith(f"h{self.tag}")})

    def close(self) -> list[str]:
        left = []
        for outside in self.links.values():  # the pair goes with it, at once
            sh("ip", "link", "del", outside, check=False)
        for ns in self.namespaces.values():
            if sh("ip", "netns", "del", ns, check=False).returncode:
                left.append(ns)
        sh("ip", "link", "del", self.bridge, check=False)
        if sh("ip", "link", "show", self.bridge, check=False).returncode == 0:
            left.append(self.bridge)
        return left


@contextmanager
def network_bed(bed: Bed, roles: list[str]) -> Iterator[Bed]:
    try:
        bed.build(roles)
        yield bed
    finally:
        left = bed.close()
        if left:
            print(f"chaos_hosts: could not remove {left}", file=sys.stderr)


@contextmanager
def scratch_cluster(address: str, logs: Path | None = None) -> Iterator[str]:
    """A PostgreSQL cluster of its own, listening on ``address`` only; an admin URL."""
    data = Path(tempfile.mkdtemp(prefix="hosts-pg-"))
    shutil.chown(data, "postgres", "postgres")
    port = str(random.randint(20_000, 40_000))
    runuser = ["runuser", "-u", "postgres", "--"]
    try:
        sh(*runuser, "initdb", "-D", str(data / "db"), "-A", "trust", "-U", "postgres")
        with (data / "db" / "pg_hba.conf").open("a") as hba:
            hba.write(f"host all all {address.rsplit('.', 1)[0]}.0/24 trust\n")
        options = (
            f"-c listen_addresses={address} -p {port} -c unix_socket_directories={data} "
            f"-c idle_in_transaction_session_timeout={IDLE_TX_TIMEOUT} -c fsync=off "
            "-c max_connections=200"
        )
        sh(*runuser, "pg_ctl", "-D", str(data / "db"), "-o", options, "-l", str(data / "log"),
           "-w", "start")  # fmt: skip
        try:
            yield f"postgresql+psycopg://postgres@{address}:{port}/postgres"
        finally:
            sh(*runuser, "pg_ctl", "-D", str(data / "db"), "-m", "immediate", "stop", check=False)
            if logs is not None:
                shutil.copy(data / "log", logs / "postgresql.log")
    finally:
        shutil.rmtree(data, ignore_errors=True)


@contextmanager
def ses_in(bed: Bed, role: str) -> Iterator[SesServerClient]:
    """The SES test server in ``role``'s namespace, on its veth address."""
    args = [*bed.exec_args(role), sys.executable, "-m", "tests.support.ses_server"]
    args += ["--host", bed.addrs[role], "--port", "8025", "--config", '{"keep_raw": false}']
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        found = re.search(r"listening on (http://\S+)", line)
        if not found:
            raise RuntimeError(f"ses_server did not start: {line!r}")
        yield SesServerClient(found.group(1))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_until_sending(sessions: sessionmaker[Session], cid: int, deadline: float) -> None:
    """Until the three workers hold leases and the campaign has sent rows: a link cut while
    a worker is still starting up makes it exit (systemd would restart it; the bed does not)."""
    live = select(func.count()).select_from(Lease).where(Lease.name.like("worker:%"))
    sent = select(func.count()).where(Delivery.campaign_id == cid, Delivery.status == "sent")
    while time.monotonic() < deadline:
        with sessions() as s:
            if s.scalar(live) == WORKERS and s.scalar(sent):
                return
        time.sleep(0.2)
    raise RuntimeError("the workers did not start sending within 2 minutes")


def _cut_backends(admin_url: str, db_url: str, addr: str) -> int:
    engine = make_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = db_url.rsplit("/", 1)[1]
    with engine.connect() as c:
        n = c.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = :db AND client_addr = CAST(:addr AS inet)"
            ),
            {"db": name, "addr": addr},
        ).scalar_one()
    engine.dispose()
    return int(n)


def run(profile: Profile, *, readers: int | None = None, rate: float | None = None,
        logs: Path | None = None, verbose: bool = False) -> Figures:  # fmt: skip
    """Build the bed, send one campaign through the three faults, check, tear down."""
    n = readers or profile.readers
    limit = rate or profile.rate
    fig = Figures(n, limit)
    lapse = HEARTBEAT_TTL + 10  # longer than a worker lease
    roles = ["ses"] + [f"w{i}" for i in range(1, WORKERS + 1)]
    logdir = logs or Path(tempfile.mkdtemp(prefix="hosts-logs-"))
    bed = Bed()
    with ExitStack() as stack:
        stack.enter_context(network_bed(bed, roles))
        admin = stack.enter_context(scratch_cluster(bed.host_addr, logdir))
        url = stack.enter_context(scratch_postgres(admin, "hosts"))
        ses = stack.enter_context(ses_in(bed, "ses"))
        engine = make_engine(url)
        stack.callback(engine.dispose)
        sessions = session_factory(engine)
        _, emails = seed_list(sessions, n, slug="hosts", domain="hosts.example.com")
        settings = Settings(database_url=url, secret_key=KEY, env="test")
        cid, _, _ = make_campaign(sessions, settings, slug="hosts")
        env = dict(os.environ)
        env.update(
            AWS_ENV,
            MAILER_DATABASE_URL=url,
            MAILER_SECRET_KEY=KEY,
            MAILER_ENV="test",
            MAILER_OUTBOX_DIR=str(logdir / "outbox"),
            MAILER_TRANSPORT="ses",
            MAILER_SES_ENDPOINT_URL=ses.url,
            MAILER_SES_REGION="us-east-1",
            MAILER_SES_API="bulk",
            MAILER_SEND_RATE=str(limit),
            MAILER_SEND_CONCURRENCY="4",
            MAILER_BATCH_SIZE="100",
        )
        workers: dict[str, subprocess.Popen[bytes]] = {}
        for role in roles[1:]:
            with (logdir / f"{role}.log").open("wb") as log:
                workers[role] = subprocess.Popen(
                    [*bed.exec_args(role), sys.executable, "-m", "mailer", "worker", "--once"],
                    env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                )  # fmt: skip

        def stop_all() -> None:
            for proc in workers.values():
                if proc.poll() is None:
                    os.kill(proc.pid, signal.SIGCONT)
                    proc.kill()
                proc.wait()

        stack.callback(stop_all)
        _wait_until_sending(sessions, cid, time.monotonic() + 120)
        started = time.monotonic()
        fig.started = time.time()  # duplicates_at and faults_at count from here
        # the faults, by seconds after every worker holds a lease and rows are sent:
        # cut w1's link, pause w2, cut w3's connections
        plan = [
            (profile.fault_at, "w1 link down"),
            (profile.fault_at + 8, "w3 backends cut"),
            (profile.fault_at + lapse, "w1 link up"),
            (profile.fault_at + lapse + 2, "w2 SIGSTOP"),
            (profile.fault_at + 2 * lapse + 2, "w2 SIGCONT"),
        ]
        marks: dict[str, float] = {}
        while True:
            elapsed = time.monotonic() - started
            while plan and elapsed >= plan[0][0]:
                _, event = plan.pop(0)
                marks[event] = elapsed
                if verbose:
                    print(f"  {elapsed:6.1f}s {event}", file=sys.stderr)
                if event == "w1 link down":
                    bed.link("w1", up=False)
                elif event == "w1 link up":
                    bed.link("w1", up=True)
                elif event == "w2 SIGSTOP":
                    os.kill(workers["w2"].pid, signal.SIGSTOP)
                elif event == "w2 SIGCONT":
                    os.kill(workers["w2"].pid, signal.SIGCONT)
                elif event == "w3 backends cut":
                    for _ in range(20):  # between two of its transactions it may hold none
                        fig.backends_cut = _cut_backends(admin, url, bed.addrs["w3"])
                        if fig.backends_cut:
                            break
                        time.sleep(0.25)
            if not plan and all(p.poll() is not None for p in workers.values()):
                break
            if elapsed > profile.timeout:
                fig.problems.append(f"not done after {profile.timeout:.0f}s")
                break
            time.sleep(0.2)
        stop_all()
        fig.seconds = time.monotonic() - started
        fig.faults_at = {k: round(v, 1) for k, v in marks.items()}
        fig.link_down_seconds = marks.get("w1 link up", 0) - marks.get("w1 link down", 0)
        fig.stopped_seconds = marks.get("w2 SIGCONT", 0) - marks.get("w2 SIGSTOP", 0)
        fig.worker_exits = [p.returncode for p in workers.values()]
        for role in workers:
            fig.fenced += sum(
                int(m) for m in FENCED.findall((logdir / f"{role}.log").read_text(errors="replace"))
            )
        with sessions() as s:
            campaign = s.get(Campaign, cid)
            assert campaign is not None
            fig.status, fig.bound = campaign.status, campaign.reclaimed
        _check(fig, ses, set(emails), limit, profile.rate_tolerance, logdir)
    fig.left_behind = bed.leftovers()
    if fig.left_behind:
        fig.problems.append(f"the bed was not torn down: {fig.left_behind}")
    return fig


def _check(fig: Figures, ses: SesServerClient, readers: set[str], limit: float,
           tolerance: float, logdir: Path) -> None:  # fmt: skip
    got = ses.recipients()
    fig.accepted = sum(got.values())
    fig.lost = len(readers - set(got))
    fig.duplicates = sum(n - 1 for n in got.values() if n > 1)
    messages = ses.messages()
    accepts = [(round(float(m["time"]) - fig.started, 3), m["to"]) for m in messages]
    (logdir / "accepts.json").write_text(json.dumps(accepts))
    times = sorted(float(m["time"]) for m in messages)
    seen: set[str] = set()
    for m in sorted(messages, key=lambda m: float(m["time"])):
        for rcpt in m["to"]:
            if rcpt in seen:
                fig.duplicates_at.append(round(float(m["time"]) - fig.started, 1))
            seen.add(rcpt)
    if len(times) > 1 and times[-1] > times[0]:
        fig.rate = (len(times) - 1) / (times[-1] - times[0])
        fig.rate_error = fig.rate / limit - 1
        j = 0
        for i, t in enumerate(times):
            while times[j] < t - 10:
                j += 1
            fig.peak_rate = max(fig.peak_rate, (i - j + 1) / 10)
    if fig.status != "done":
        fig.problems.append(f"campaign {fig.status}, not done")
    if fig.lost:
        fig.problems.append(f"{fig.lost} readers lost")
    if set(got) - readers:
        fig.problems.append("the server accepted addresses that are not readers")
    if fig.duplicates > fig.bound:
        fig.problems.append(f"{fig.duplicates} duplicates over their bound {fig.bound}")
    if fig.bound == 0:
        fig.problems.append("no row was claimed again: the faults did not bite")
    if abs(fig.rate_error) > tolerance:
        fig.problems.append(f"rate {fig.rate:.1f}/s is {fig.rate_error:+.0%} off {limit}/s")
    if any(fig.worker_exits):
        fig.problems.append(f"a worker exited non-zero: {fig.worker_exits}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", choices=sorted(PROFILES), default="full")
    parser.add_argument("--readers", type=int)
    parser.add_argument("--rate", type=float)
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--logs", type=Path, help="keep the workers' logs here")
    args = parser.parse_args(argv)
    why = bed_unavailable()
    if why:
        print(f"chaos_hosts: {why}", file=sys.stderr)
        return 2
    if args.logs:
        args.logs.mkdir(parents=True, exist_ok=True)
    fig = run(
        PROFILES[args.profile], readers=args.readers, rate=args.rate, logs=args.logs, verbose=True
    )
    row = asdict(fig)
    print(json.dumps(row, indent=2))
    if args.json:
        args.json.write_text(json.dumps(row, indent=2) + "\n")
    for problem in fig.problems:
        print(f"chaos_hosts: {problem}", file=sys.stderr)
    return 0 if fig.ok else 1


if __name__ == "__main__":
    sys.exit(main())
