"""`mailer feedback poll` with a database it cannot use: each failure is one explained line
(as the CLI says it: subscribers.db_errors.explain), never the driver's SQL and
parameters, and the message stays in the queue for a later receive. Real SQS (moto over
HTTP), on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from mailer.feedback.models import PoisonMessage
from mailer.feedback.queue import QueuePoller
from subscribers.db import make_engine, session_factory
from tests.conftest import Database
from tests.plugins.aws import MotoHandle
from tests.test_feedback_queue import event, make_feed


def _unusable(db: Database, tmp: Path) -> tuple[str, str]:
    """A URL of this backend the poller cannot use, and what the operator must read."""
    if db.backend == "sqlite":
        path = tmp / "gone" / "store.db"
        return f"sqlite:///{path}", f"there is no file {path}"
    url = make_url(db.url).set(host="127.0.0.1", port=1)
    return url.render_as_string(hide_password=False), "cannot reach the database at 127.0.0.1:1"


def test_a_database_failure_is_logged_as_one_explained_line(
    db: Database, moto: MotoHandle, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    feed = make_feed(moto, raw=False)
    feed.publish(event("event_bounce", "ana@example.net", "m-db"))
    url, says = _unusable(db, tmp_path)
    engine = make_engine(url, create=False, open_timeout=1)
    settings = db.settings(database_url=url, db_timeout=1.0)
    poller = QueuePoller(
        feed.sqs,
        feed.queue_url,
        session_factory(engine),
        settings,
        wait_seconds=0,
        retry_delay=30,  # back in the queue, not in this run
        max_attempts=5,
    )
    with caplog.at_level(logging.WARNING, logger="mailer.feedback.queue"):
        stats = poller.run(once=True)
    engine.dispose()
    assert (stats.received, stats.retried, stats.applied, stats.poisoned) == (1, 1, 0, 0)
    lines = [r.getMessage() for r in caplog.records if r.name == "mailer.feedback.queue"]
    assert len(lines) == 1, lines
    for line in lines:
        assert says in line, line
        assert "\n" not in line and "[SQL:" not in line and "sqlalche.me" not in line, line
    assert feed.waiting() == 1  # nothing lost: SQS hands it out again


@pytest.mark.parametrize("kind", [["Notification"], {"a": 1}, 7, None])
def test_a_body_whose_type_is_not_a_string_is_set_aside_at_once(
    db: Database, moto: MotoHandle, kind: object
) -> None:
    """With verification on, an envelope Type that is a list or an object (unhashable) is
    bad input like any other: set aside on its first receive, not retried as a crash."""
    feed = make_feed(moto, raw=False)
    feed.send_raw(json.dumps({"Type": kind, "Message": "{}"}))
    poller = QueuePoller(
        feed.sqs,
        feed.queue_url,
        db.sessions,
        db.settings(),
        wait_seconds=0,
        retry_delay=30,
        max_attempts=5,
        verify=True,
    )
    stats = poller.run(once=True)
    assert (stats.received, stats.poisoned, stats.retried) == (1, 1, 0)
    with db.sessions() as s:
        row = s.scalar(select(PoisonMessage))
        assert row is not None and "not an SNS envelope" in row.error
    assert feed.waiting() == 0
