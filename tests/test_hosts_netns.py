"""Several hosts on a network that fails (issue 18), in the CI profile of
scripts/chaos_hosts.py: three worker hosts in network namespaces, the SES test server in its
own, a scratch PostgreSQL cluster on the bridge's address; one host's link cut past its lease
then restored, one host SIGSTOPped past its lease then SIGCONTed, one host's database
connections terminated.

From the server's record: every reader accepted, none lost, duplicates within the rows
claimed again after a lapse (which the faults must have caused), late results rejected by the
fence, the rate across hosts within a loose bound of the limit (a loaded 2-core machine; the
10% goal is the full profile's), every worker done with exit 0, and the bed torn down."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "chaos_hosts_script", ROOT / "scripts" / "chaos_hosts.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["chaos_hosts_script"] = module
    spec.loader.exec_module(module)
    return module


def test_three_hosts_survive_a_cut_link_a_paused_host_and_cut_connections(
    tmp_path: Path,
) -> None:
    hosts = _script()
    why = hosts.bed_unavailable()
    if why:
        pytest.skip(why)
    profile = hosts.PROFILES["ci"]
    fig = hosts.run(profile, logs=tmp_path, verbose=True)
    print(fig)
    assert fig.status == "done"
    assert fig.lost == 0 and fig.accepted >= fig.readers
    assert fig.bound > 0  # the lapsed hosts' rows were claimed again by the others
    assert fig.duplicates <= fig.bound
    assert fig.fenced > 0  # and their late results were rejected by the fence
    assert fig.link_down_seconds > hosts.HEARTBEAT_TTL
    assert fig.stopped_seconds > hosts.HEARTBEAT_TTL
    assert fig.backends_cut > 0
    assert abs(fig.rate_error) <= profile.rate_tolerance
    assert fig.worker_exits == [0, 0, 0]
    assert fig.left_behind == []
    assert fig.problems == []
