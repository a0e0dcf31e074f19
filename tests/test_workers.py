"""Several `mailer worker` processes on PostgreSQL share one campaign: every reader exactly
once, and the campaign's rate limit holds across them (FOR UPDATE SKIP LOCKED claims, the
shared pacing cursor).

The rate is checked without measuring one (a measured rate flakes on a busy machine; how
fast it goes is scripts/bench.py's): every claim reserves ``n / rate`` seconds on the
campaign's shared cursor and no call goes out before its slot starts, so (1) the cursor
has moved at least ``readers / rate`` seconds past the start (no two claims shared a slot)
and (2) by any moment ``t``, no more than ``rate * (t - start)`` messages plus one batch
have reached SES. Within one worker the slots' spacing is checked with Pacer's injected
clock (tests/test_delivery.py, test_pacer_*)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from mailer.sending import campaigns as camp
from mailer.sending.models import Campaign
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
    with db.sessions() as s:
        assert camp.report(s, cid).counts == {"sent": readers}
        campaign = s.get(Campaign, cid)
        assert campaign is not None
        assert campaign.started_at is not None and campaign.rate_cursor is not None
        start = campaign.started_at.timestamp()
        reserved = campaign.rate_cursor.timestamp() - start
    assert reserved >= readers / rate, f"slots reserved {reserved:.2f} s < {readers / rate} s"
    batch = int(env["MAILER_BATCH_SIZE"])
    times = sorted(m["time"] for m in ses_proc.control.messages())
    early = [
        (k, t - start)
        for k, t in enumerate(times, start=1)
        if k > rate * (t - start) + batch  # faster than the slots allow
    ]
    assert not early, f"{len(early)} messages ahead of the rate, first (n, s): {early[0]}"
