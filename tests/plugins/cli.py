"""Pytest fixture ``mailer_in_process``: ``mailer ARGS`` in the test's own process
(tests.cli_support.in_process), its environment set through monkeypatch."""

from __future__ import annotations

import pytest

from tests.cli_support import InProcess, in_process


@pytest.fixture
def mailer_in_process(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> InProcess:
    return in_process(monkeypatch, capsys)
