"""The chaos run (scripts/chaos.py) in its CI profile: 3 campaigns of 1,500 readers on
PostgreSQL, each sent through SIGKILLed senders, cut PostgreSQL connections and a throttling,
failing (plain 500s, and 500s after accepting: real duplicates) and slow SES server.

From the server's record, per run: no reader lost, no suppressed reader mailed, duplicates
within the campaign's re-claimed count plus the after-accept failures, and the ledger's sent
rows equal to the server's recipients. The full profile is ``scripts/chaos.py``."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def _chaos() -> ModuleType:
    spec = importlib.util.spec_from_file_location("chaos_script", ROOT / "scripts" / "chaos.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["chaos_script"] = module
    spec.loader.exec_module(module)
    return module


def test_campaigns_survive_kills_cuts_and_ses_faults(pg_url: str) -> None:
    # pg_url: skip (or fail in CI) when PostgreSQL is unreachable; the run makes its own
    # scratch database on the same server
    chaos = _chaos()
    figures = chaos.run_chaos(
        campaigns=3, readers=1_500, seed=20261128, api="mixed", timeout=90, verbose=True
    )
    assert len(figures) == 3
    for fig in figures:
        assert fig.problems == [], fig
        assert fig.status == "done"
        assert fig.lost == 0 and fig.suppressed_sent == 0
        assert fig.duplicates <= fig.bound
        assert fig.ledger_matches_server and fig.ledger_sent == fig.active
        assert fig.accepted == fig.active + fig.duplicates
    # the faults really happened: senders were killed and connections were cut
    assert sum(f.kills for f in figures) >= 3
    assert sum(f.backends_cut for f in figures) >= 1
    assert {f.api for f in figures} == {"single", "bulk"}
    assert {f.failure_mode for f in figures} == {"5xx", "after-accept"}
