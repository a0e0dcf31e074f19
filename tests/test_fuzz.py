"""Fuzzing the parsers that read outside input: only the project's own clear errors.

* issue parsers (brief and Markdown, forced and auto-detected): an Issue or IssueParseError;
* the CSV importer on arbitrary bytes into a real SQLite store: an Issue-free InputError or
  per-row problems, and no row lost (added + updated + unchanged + skipped == data rows);
* the SES event parser on arbitrary JSON and text: an event, a setup notice or FeedbackError;
* the SNS verifier on arbitrary dicts (and mutations of a really signed envelope): a message
  or VerificationError.

Every test has a deadline so a pathological input shows up as a failure, not a hang.
Round trips of well-formed issues live in tests/test_issue_properties.py; the SNS forgery
matrix in tests/test_sns.py.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailer.config import Settings
from mailer.errors import FeedbackError, InputError, IssueParseError, VerificationError
from mailer.feedback.events import SESEvent, SetupNotice, parse_payload
from mailer.feedback.sns import SNSMessage, SNSVerifier
from mailer.issue.files import parse_issue_text
from mailer.issue.model import Issue
from subscribers import store
from subscribers.db import make_engine, session_factory
from subscribers.importer import Problem, import_csv, read_rows
from subscribers.migrate import upgrade
from tests.plugins.sns_certs import TOPIC_ARN, SNSSigner

FUZZ = settings(
    max_examples=150,
    deadline=2000,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# -- issue parsers ---------------------------------------------------------------------------

PIECES = st.sampled_from(
    [
        "The China Brief",
        "# ",
        "## ",
        "**",
        "Friday, November 28, 2026",
        "November 28, 2026",
        "https://example.com/a",
        "http://",
        "[link](https://example.com)",
        "---",
        "\n",
        "\n\n",
        "\r\n",
        "- ",
        "* ",
        "1. ",
        "Subject: ",
        "\x00",
        "\u202e",
        "\ufeff",
        "中国",
        "<script>",
        "&amp;",
        "    ",
        "\t",
    ]
)
ISSUE_TEXT = st.one_of(
    st.text(max_size=400),
    st.lists(st.one_of(PIECES, st.text(max_size=20)), max_size=60).map("".join),
)


@FUZZ
@given(text=ISSUE_TEXT, fmt=st.sampled_from([None, "brief", "markdown"]))
def test_issue_parsers_give_an_issue_or_a_parse_error(text: str, fmt: str | None) -> None:
    try:
        issue = parse_issue_text(text, source="fuzz", fmt=fmt)
    except IssueParseError as err:
        assert str(err)  # says what is wrong
        return
    assert isinstance(issue, Issue)
    assert issue.key()  # a parsed issue is complete enough to be identified


# -- CSV importer ----------------------------------------------------------------------------

HEADER = st.sampled_from(
    ["email", "email,name", "name;email;city", "Email\tName", "e-mail,name,plan", "name", ""]
)
CELL = st.one_of(
    st.sampled_from(
        ["a@example.com", "B@Example.COM", "x@y", "not an address", '"quoted, cell"', '"', ""]
    ),
    st.emails().map(str),
    st.text(max_size=12),
)
DELIMS = st.sampled_from([",", ";", "\t"])


@st.composite
def csv_bytes(draw: st.DrawFn) -> bytes:
    """Mostly CSV-shaped (header, delimiters, quotes, odd cells), sometimes raw bytes."""
    if draw(st.integers(0, 4)) == 0:
        return draw(st.binary(max_size=300))
    delim = draw(DELIMS)
    header = draw(HEADER).replace(",", delim)
    rows = draw(st.lists(st.lists(CELL, max_size=4).map(delim.join), max_size=12))
    newline = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    text = newline.join([header, *rows])
    bom = "\ufeff" if draw(st.booleans()) else ""
    return (bom + text).encode("utf-8")


def _data_records(data: bytes) -> int | None:
    """Non-blank records after the header, counted with the csv module on its own."""
    try:
        lines = io.StringIO(data.decode("utf-8-sig"), newline="")
        first = lines.readline()
        counts = {d: first.count(d) for d in (",", ";", "\t")}
        delim = max(counts, key=lambda d: counts[d]) if any(counts.values()) else ","
        records = csv.reader(lines, delimiter=delim)
        return sum(1 for cells in records if any(c.strip() for c in cells))
    except (UnicodeDecodeError, csv.Error):
        return None


@pytest.fixture(scope="module")
def sqlite_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    path = tmp_path_factory.mktemp("fuzz") / "store.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    yield session_factory(engine)
    engine.dispose()


_lists = itertools.count(1)


@FUZZ
@given(data=csv_bytes())
def test_csv_reader_raises_only_input_errors(data: bytes) -> None:
    problems: list[Problem] = []
    try:
        rows = list(read_rows(io.BytesIO(data), "fuzz.csv", problems.append))
    except InputError as err:
        assert str(err).startswith("fuzz.csv")  # names the file
        return
    for row in rows:
        assert row.line >= 2  # data starts after the header
    for p in problems:
        assert p.reason and p.line >= 2
    expected = _data_records(data)
    if expected is not None:
        assert len(rows) + len(problems) == expected


@FUZZ
@given(data=csv_bytes())
def test_csv_import_into_sqlite_never_loses_a_row(
    data: bytes, sqlite_store: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    slug = f"fuzz{next(_lists)}"
    with sqlite_store.begin() as s:
        store.create_list(s, slug, name="Fuzz", from_address="Fuzz <f@example.org>")
    path = tmp_path_factory.mktemp("csv") / "in.csv"
    path.write_bytes(data)
    try:
        report = import_csv(sqlite_store, path, slug, confirmed=True)
    except InputError as err:
        assert "in.csv" in str(err)
        return
    handled = report.added + report.updated + report.unchanged + report.skipped_total
    assert handled >= report.rows  # every row read was added, updated, kept or skipped
    expected = _data_records(data)
    if expected is not None:
        assert handled == expected


# -- SES event parser ------------------------------------------------------------------------

JSON_LEAF = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20)
)
KEYS = st.sampled_from(
    [
        "eventType",
        "notificationType",
        "mail",
        "bounce",
        "complaint",
        "delivery",
        "Type",
        "Message",
        "MessageId",
        "timestamp",
        "messageId",
        "destination",
        "tags",
        "bouncedRecipients",
        "emailAddress",
        "bounceType",
        "Bounce",
        "Complaint",
        "Delivery",
        "Notification",
    ]
)
JSON_VALUE = st.recursive(
    JSON_LEAF,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.one_of(KEYS, st.text(max_size=5)), inner)
    ),
    max_leaves=25,
)
SES_FIXTURES = Path(__file__).parent / "fixtures" / "ses_events"


def _fixture_events() -> list[dict[str, Any]]:
    found = []
    for p in sorted(SES_FIXTURES.glob("*.json")) if SES_FIXTURES.is_dir() else []:
        data = json.loads(p.read_text(encoding="utf-8"))
        if isinstance(data, dict):
            found.append(data)
    return found or [{"eventType": "Bounce", "mail": {}, "bounce": {}}]


@st.composite
def mutated_event(draw: st.DrawFn) -> dict[str, Any]:
    """A real-looking event with one part replaced by arbitrary JSON."""
    event: dict[str, Any] = json.loads(json.dumps(draw(st.sampled_from(_fixture_events()))))
    target = event
    for _ in range(draw(st.integers(0, 2))):
        subs = [k for k, v in target.items() if isinstance(v, dict)]
        if not subs:
            break
        target = target[draw(st.sampled_from(sorted(subs)))]
    if target:
        key = draw(st.sampled_from(sorted(target)))
        target[key] = draw(JSON_VALUE)
    return event


@FUZZ
@given(
    payload=st.one_of(
        JSON_VALUE.map(json.dumps),
        st.text(max_size=200),
        st.binary(max_size=200),
        JSON_VALUE,
        mutated_event(),
        mutated_event().map(json.dumps),
        mutated_event().map(
            lambda e: {"Type": "Notification", "MessageId": "m", "Message": json.dumps(e)}
        ),
    )
)
def test_ses_event_parser_raises_only_feedback_errors(payload: Any) -> None:
    try:
        result = parse_payload(payload)
    except FeedbackError as err:
        assert str(err)
        return
    assert isinstance(result, (SESEvent, SetupNotice))


# -- SNS verifier ----------------------------------------------------------------------------


def _sns_settings() -> Settings:
    return Settings(env="test", sns_topic_arns=(TOPIC_ARN,))


SNS_KEYS = st.sampled_from(
    [
        "Type",
        "MessageId",
        "TopicArn",
        "Message",
        "Timestamp",
        "SignatureVersion",
        "Signature",
        "SigningCertURL",
        "Subject",
        "Token",
        "SubscribeURL",
        "UnsubscribeURL",
    ]
)


@FUZZ
@given(envelope=st.dictionaries(st.one_of(SNS_KEYS, st.text(max_size=8)), JSON_VALUE))
def test_sns_verifier_on_arbitrary_dicts(envelope: dict[str, Any], sns_signer: SNSSigner) -> None:
    verifier = SNSVerifier(_sns_settings(), fetch_cert=sns_signer.fetch)
    with pytest.raises(VerificationError) as info:
        verifier.verify(envelope)
    assert str(info.value)


SIGNED = {"Type", "MessageId", "TopicArn", "Message", "Timestamp", "Subject"}
SIGNED |= {"SignatureVersion", "Signature", "SigningCertURL"}  # what checks the signature


@FUZZ
@given(field=SNS_KEYS, value=JSON_VALUE)
def test_sns_verifier_on_a_signed_envelope_with_one_field_changed(
    field: str, value: Any, sns_signer: SNSSigner
) -> None:
    envelope = sns_signer.notification(json.dumps({"eventType": "Send", "mail": {}}))
    changed = envelope.get(field) != value
    envelope[field] = value
    verifier = SNSVerifier(_sns_settings(), fetch_cert=sns_signer.fetch)
    try:
        message = verifier.verify(envelope)
    except VerificationError as err:
        assert str(err)
        return
    assert isinstance(message, SNSMessage)
    assert not (changed and field in SIGNED), f"{field} changed to {value!r} and still accepted"
