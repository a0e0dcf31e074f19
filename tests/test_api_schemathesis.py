"""schemathesis against /api/v1/openapi.json of a running server (real HTTP, SQLite and
PostgreSQL): generated requests to every operation, with an ops token and without one.
No answer is a 5xx; every answer's status, content type, headers and body match the
document; an answer given with the token is refused without it (ignored_auth); a missing
required header and an undocumented method are refused.
Bounded (a few examples per operation) so the whole run stays under a minute."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import BaseSchema, Case
from schemathesis.specs.openapi.checks import (
    allow_header_conformance,
    content_type_conformance,
    ignored_auth,
    missing_required_header,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from tests.api_support import ADMIN_TOKEN, issue_text, running_api
from tests.conftest import Database

CHECKS = [
    schemathesis.checks.not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
    response_headers_conformance,
    ignored_auth,
    missing_required_header,
    unsupported_method,
    allow_header_conformance,
]


@pytest.fixture
def api_url(db: Database) -> Iterator[str]:
    with running_api(db, subscribe_ip_limit=10_000) as api:
        for n in range(2):  # something for the generated keys and ids to find
            api.post_issue(issue_text(n))
        with api.client(ADMIN_TOKEN) as c:
            key = api.post_issue(issue_text(0))
            c.post("/api/v1/campaigns", json={"issue": key, "list": "brief"})
        yield api.url


CALLS: list[str] = []


def _check(case: Case) -> None:
    CALLS.append(case.operation.label)
    case.call_and_validate(headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, checks=CHECKS)
    anonymous = case.call()
    assert anonymous.status_code == 401, (case.operation.label, anonymous.text[:200])


def test_api_matches_its_openapi_document(api_url: str) -> None:
    schema: BaseSchema = schemathesis.openapi.from_url(f"{api_url}/api/v1/openapi.json")
    labels = []
    for result in schema.get_all_operations():
        operation = result.ok()
        labels.append(operation.label)
        run = settings(
            max_examples=8,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )(given(operation.as_strategy())(_check))
        run()
    assert len(labels) == 17, labels
    assert set(CALLS) == set(labels)  # every operation was called
