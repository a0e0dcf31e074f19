"""Several `mailer worker` processes on PostgreSQL share one campaign: every reader exactly
once, and the campaign's rate limit holds across them (FOR UPDATE SKIP LOCKED claims, the
shared pacing cursor)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from mailer.sending import campaigns as camp
from tests.conftest import Database
from tests.delivery_helpers import make_campaign, seed_list
from tests.support.ses_server import SesServerProcess


@pytest.fixture
def ses_proc(aws_env: dict[str, str]) -> Iterator[SesServerProcess]:
    with SesServerProcess(latency=0.02, max_send_rate=0) as proc:
        yield proc


@pytest.mark.parametrize(
    ("api", "readers", "rate"),
    [("bulk", 30_000, 1000.0), ("single", 3_000, 200.0)],
)
def test_three_workers_share_a_campaign(
    db: Database, ses_proc: SesServerProcess, api: str, readers: int, rate: float
) -> None:
    if db.backend != "postgresql":
        pytest.skip("several workers need PostgreSQL (SQLite allows one sender)")
    _, emails = seed_list(db.sessions, readers)
    settings = db.settings()
    cid, enqueued, _ = make_campaign(db.sessions, settings)
    assert enqueued == readers
    env = db.env(
        MAILER_TRANSPORT="ses",
        MAILER_SES_ENDPOINT_URL=ses_proc.url,
        MAILER_SES_REGION="us-east-1",
        MAILER_SES_API=api,
        MAILER_SEND_RATE=str(rate),
        MAILER_SEND_CONCURRENCY="8",
        MAILER_BATCH_SIZE="200" if api == "bulk" else "50",
    )
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "mailer", "worker", "--once"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outputs = [w.communicate(timeout=240) for w in workers]
    for w, (_, err) in zip(workers, outputs, strict=True):
        assert w.returncode == 0, err
    assert ses_proc.control is not None
    got = ses_proc.control.recipients()
    assert set(got) == set(emails)
    assert max(got.values()) == 1  # each reader exactly once
    sent_by = [int(out.split("sent ")[1].split(",")[0]) for out, _ in outputs if "sent " in out]
    assert sum(sent_by) == readers and len([n for n in sent_by if n > 0]) == 3  # all worked
    times = sorted(m["time"] for m in ses_proc.control.messages())
    measured = (len(times) - 1) / (times[-1] - times[0])
    assert abs(measured - rate) / rate <= 0.10, f"rate {measured:.0f}/s vs limit {rate:.0f}/s"
    with db.sessions() as s:
        assert camp.report(s, cid).counts == {"sent": readers}
