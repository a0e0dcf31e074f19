"""Pytest fixture ``desk``: the editor's desk (tests.desk_support.Desk) over the test's
store, closed after the test. A test file wanting other settings defines its own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import Database
from tests.desk_support import Desk


@pytest.fixture
def desk(db: Database) -> Iterator[Desk]:
    d = Desk(db)
    yield d
    d.close()
