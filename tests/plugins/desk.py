"""Pytest fixture ``desk``: the editor's desk (tests.desk_support.Desk) over the test's
store, closed after the test. A test file wanting other settings defines its own.

The desk's support module is imported when the fixture runs, not when pytest loads this
plugin: it imports another plugin (sns_certs) that pytest must load first to rewrite its
asserts."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.conftest import Database
    from tests.desk_support import Desk


@pytest.fixture
def desk(db: Database) -> Iterator[Desk]:
    from tests.desk_support import Desk

    d = Desk(db)
    yield d
    d.close()
