"""Webhooks out through the real `mailer` processes (issue 14, Must show): a receiver on
loopback that verifies the Standard Webhooks signature gets `campaign.done` for a real
`mailer send`, and gets it after coming back up when it was down during the send. And the
`mailer webhooks` commands, with what a user can get wrong. On SQLite and PostgreSQL."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from subscribers.outbox import EVENT_TYPES, WebhookDelivery
from tests.cli_support import run_cli
from tests.conftest import Database
from tests.delivery_helpers import ISSUE, seed_list
from tests.webhook_receiver import Receiver

READERS = 5


def _mailer(db: Database, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return run_cli(db, *args, timeout=180, **{"COLUMNS": "250", **extra})


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().reserve()
    yield r
    r.stop()


def _add(db: Database, url: str, events: str) -> tuple[int, str]:
    done = _mailer(db, "webhooks", "add", url, "--events", events)
    assert done.returncode == 0, done.stderr
    endpoint = re.search(r"^webhook (\d+):", done.stdout, re.M)
    secret = re.search(r"^secret: (whsec_\S+)$", done.stdout, re.M)
    assert endpoint and secret, done.stdout
    assert "not shown again" in done.stderr
    return int(endpoint.group(1)), secret.group(1)


def _states(db: Database) -> list[str]:
    with db.sessions() as s:
        return list(s.scalars(select(WebhookDelivery.status).order_by(WebhookDelivery.id)))


def test_campaign_done_reaches_a_receiver_that_was_down_during_the_send(
    db: Database, receiver: Receiver
) -> None:
    seed_list(db.sessions, READERS)
    _, secret = _add(db, receiver.url, "campaign.started,campaign.done")

    sent = _mailer(db, "send", str(ISSUE), "--list", "brief")  # the receiver is down
    assert sent.returncode == 0, sent.stderr
    assert _states(db) == ["pending", "pending"]  # started and done, in the outbox

    once = _mailer(db, "worker", "--once")  # tries once: refused, nothing lost
    assert once.returncode == 0, once.stderr
    assert _states(db) == ["pending", "pending"]
    log = _mailer(db, "webhooks", "log", "--failed")
    assert log.returncode == 0, log.stderr
    assert log.stdout.count("ConnectError") == 2, log.stdout

    receiver.secret = secret
    receiver.start()  # back up, on the same port
    worker = subprocess.Popen(
        [sys.executable, "-m", "mailer", "worker", "--poll", "0.2"],
        env=db.env(MAILER_WEBHOOK_RETRY_BASE="1s"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=db.tmp,
    )
    try:
        done = receiver.wait_for("campaign.done", timeout=90)
        started = receiver.wait_for("campaign.started", timeout=30)
    finally:
        worker.send_signal(signal.SIGTERM)
        _out, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err
    campaign = done["data"]["campaign"]
    assert campaign["status"] == "done"
    assert campaign["list"] == "brief"
    assert campaign["counts"] == {"sent": READERS}
    assert campaign["finished_at"] is not None
    assert started["data"]["campaign"]["id"] == campaign["id"]
    assert all(r.error is None for r in receiver.received)  # every request verified
    assert _states(db) == ["delivered", "delivered"]
    log = _mailer(db, "webhooks", "log")
    assert "HTTP 204" in log.stdout and "ConnectError" in log.stdout


def test_a_password_in_the_url_is_never_listed(db: Database) -> None:
    url = "https://hooks:s3cr3t-pass@example.com/brief"
    added = _mailer(db, "webhooks", "add", url, "--events", "campaign.done")
    listed = _mailer(db, "webhooks", "list")
    assert listed.returncode == 0, listed.stderr
    for out in (added.stdout, listed.stdout):
        assert "s3cr3t-pass" not in out
        assert "https://hooks:***@example.com/brief" in out


def test_the_webhooks_commands(db: Database, receiver: Receiver) -> None:
    endpoint_id, secret = _add(db, receiver.url, "campaign.done, guard.tripped")

    listed = _mailer(db, "webhooks", "list")
    assert listed.returncode == 0, listed.stderr
    assert receiver.url in listed.stdout
    assert "campaign.done, guard.tripped" in listed.stdout
    assert secret not in listed.stdout  # shown once, at add

    down = _mailer(db, "webhooks", "test", str(endpoint_id))
    assert down.returncode == 1
    assert "ConnectError" in down.stderr

    receiver.secret = secret
    receiver.start()
    up = _mailer(db, "webhooks", "test", str(endpoint_id))
    assert up.returncode == 0, up.stderr
    assert "HTTP 204" in up.stdout
    (event,) = receiver.verified("webhook.test")
    assert event["data"] == {"endpoint": endpoint_id, "events": ["campaign.done", "guard.tripped"]}

    off = _mailer(db, "webhooks", "disable", str(endpoint_id))
    assert off.returncode == 0, off.stderr
    assert re.search(
        rf"│\s*{endpoint_id}\s*│.*│\s*no\s*│", _mailer(db, "webhooks", "list").stdout, re.M
    )
    on = _mailer(db, "webhooks", "enable", str(endpoint_id))
    assert on.returncode == 0, on.stderr
    assert re.search(
        rf"│\s*{endpoint_id}\s*│.*│\s*yes\s*│", _mailer(db, "webhooks", "list").stdout, re.M
    )

    removed = _mailer(db, "webhooks", "remove", str(endpoint_id))
    assert removed.returncode == 0, removed.stderr
    again = _mailer(db, "webhooks", "remove", str(endpoint_id))
    assert again.returncode == 1
    assert f"no webhook endpoint {endpoint_id}" in again.stderr
    assert "Traceback" not in again.stderr


@pytest.mark.parametrize(
    ("url", "events", "says"),
    [
        (
            "https://example.com/h",
            "campaign.done,campaign.exploded",
            "unknown event 'campaign.exploded'",
        ),
        ("https://example.com/h", "", "no events given"),
        ("file:///etc/passwd", "campaign.done", "must be http:// or https://"),
        ("http://127.0.0.1:notaport/h", "campaign.done", "not a webhook URL"),
    ],
)
def test_bad_input_to_add_is_one_clear_line(db: Database, url: str, events: str, says: str) -> None:
    done = _mailer(db, "webhooks", "add", url, "--events", events)
    assert done.returncode == 1
    assert says in done.stderr
    assert "Traceback" not in done.stderr
    if "event" in says:
        assert all(t in done.stderr for t in EVENT_TYPES)  # the valid names, listed
    assert _mailer(db, "webhooks", "list").stdout.count("example.com") == 0
