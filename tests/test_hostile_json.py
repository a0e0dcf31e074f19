"""Malformed but parseable JSON at every entrance (issue 13, item 7): the safe loader itself,
the SQS poller (moto over HTTP) and `mailer feedback ingest`. Each shape is an InputError:
set aside as poison, or one line from the CLI; never a RecursionError or a traceback.
(The webhook's share is in test_webhook.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from mailer import safejson
from mailer.errors import InputError
from mailer.feedback.models import FeedbackEvent, PoisonMessage
from mailer.feedback.queue import QueuePoller
from tests.cli_support import InProcess
from tests.conftest import Database
from tests.plugins.aws import MotoHandle
from tests.plugins.sns_certs import TOPIC_ARN, SNSSigner
from tests.test_feedback_queue import Feed, make_feed

FIXTURES = Path(__file__).parent / "fixtures" / "ses_events"

#: The shapes of the issue, each small enough for one SQS message (256 KiB).
SHAPES = {
    "100k-open-brackets": "[" * 100_000,
    "50k-nested-objects": '{"":' * 50_000 + "1" + "}" * 50_000,
    "200k-digit-integer": '{"eventType": ' + "9" * 200_000 + "}",
}
#: ... and as files, where nothing limits the size: the issue's 900,000-digit integer.
FILE_SHAPES = {**SHAPES, "900k-digit-integer": '{"n": ' + "9" * 900_000 + "}"}


# -- the loader ------------------------------------------------------------------------------


@pytest.mark.parametrize("text", FILE_SHAPES.values(), ids=FILE_SHAPES.keys())
def test_loader_turns_each_shape_into_an_input_error(text: str) -> None:
    with pytest.raises(InputError) as info:
        safejson.loads(text, what="payload")
    assert not isinstance(info.value, safejson.JSONSyntaxError)
    assert str(info.value).startswith("payload ")


def test_loader_limits() -> None:
    deep = "[" * 64 + "]" * 64
    assert safejson.loads(deep) is not None  # 64 levels: fine
    with pytest.raises(InputError, match="nested more than 64 levels"):
        safejson.loads("[" + deep + "]")
    wide = json.dumps({"a": [{"b": [1, 2.5, "x", None, True]}] * 1000, "n": 10**20})
    assert safejson.loads(wide)["n"] == 10**20
    with pytest.raises(InputError, match="number longer than 100"):
        safejson.loads("1." + "5" * 200)
    for text in ("NaN", "[Infinity]", "{nope", "", b"\xff\xfe{"):
        with pytest.raises(safejson.JSONSyntaxError):
            safejson.loads(text)


# -- SQS -------------------------------------------------------------------------------------


@pytest.fixture
def feed(moto: MotoHandle) -> Feed:
    return make_feed(moto, raw=True)


@pytest.mark.parametrize("verify", [False, True], ids=["unverified", "verified"])
def test_sqs_poller_sets_each_shape_aside(
    db: Database, feed: Feed, sns_signer: SNSSigner, verify: bool
) -> None:
    signed = sns_signer.notification(SHAPES["100k-open-brackets"])  # the shape as its Message
    bodies = [*SHAPES.values(), json.dumps(signed)]
    for body in bodies:
        feed.send_raw(body)
    poller = QueuePoller(
        feed.sqs,
        feed.queue_url,
        db.sessions,
        db.settings(sns_topic_arns=(TOPIC_ARN,)),
        wait_seconds=0,
        retry_delay=0,
        verify=verify,
        fetch_cert=sns_signer.fetch,
    )
    stats = poller.run(once=True)
    assert (stats.received, stats.poisoned, stats.applied, stats.retried) == (4, 4, 0, 0)
    assert feed.waiting() == 0
    with db.sessions() as s:
        errors = list(s.scalars(select(PoisonMessage.error)))
        assert s.scalar(select(FeedbackEvent.id)) is None
    assert len(errors) == 4
    expected = ("nested more than 64 levels", "number longer than 100")
    assert all(any(e in error for e in expected) for error in errors), errors
    assert not any("RecursionError" in error for error in errors)


# -- feedback ingest -------------------------------------------------------------------------


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
def test_ingest_reports_each_shape_in_one_line(
    db: Database, tmp_path: Path, mailer_in_process: InProcess
) -> None:
    files = []
    for name, text in FILE_SHAPES.items():
        path = tmp_path / f"{name}.json"
        path.write_text(text)
        files.append(path)
    good = (FIXTURES / "event_delivery.json").read_text().replace("\n", "")
    lines = tmp_path / "mixed.jsonl"
    lines.write_text(good + "\n" + SHAPES["50k-nested-objects"] + "\n")
    result = mailer_in_process(db, "feedback", "ingest", *map(str, files), str(lines))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "RecursionError" not in result.stderr
    assert "applied 1, already seen 0, setup notices 0, failed 5" in result.stdout
    said = result.stderr.strip().splitlines()
    # the one good event matches no delivery of this empty store: said once, with the rule
    assert [x for x in said if x.startswith("matched no delivery: ")] == [
        next(x for x in said if x.startswith(f"matched no delivery: {lines}:1: "))
    ]
    assert sum(x.startswith("an event is matched by mail.messageId") for x in said) == 1
    errors = [
        x
        for x in said
        if not x.startswith(("matched no delivery: ", "an event is matched by mail.messageId"))
    ]
    assert len(errors) == 5, errors
    for path in files:
        line = next(e for e in errors if e.startswith(str(path)))
        assert "nested more than 64 levels" in line or "number longer than 100" in line
    assert any(e.startswith(f"{lines}:2: ") and "nested more than 64" in e for e in errors)
