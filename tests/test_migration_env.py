"""The Alembic environment sees every table: `alembic check` (autogenerate compared with a
migrated database) finds nothing to do, in a fresh interpreter that imported no table module
before Alembic ran env.py. If env.py saw only the store's tables, autogenerate would propose
dropping the campaigns', deliveries' and feedback tables.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from subscribers.db import make_engine
from subscribers.migrate import upgrade

ROOT = Path(__file__).resolve().parents[1]

CHECK = """
import sys
from alembic import command
from subscribers.db import make_engine
from subscribers.migrate import alembic_config

assert "mailer.sending.models" not in sys.modules, "the check must start without the tables"
command.check(alembic_config(make_engine(sys.argv[1])))
print("no new upgrade operations")
"""


def test_autogenerate_sees_every_table(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'env.db'}"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    done = subprocess.run(
        [sys.executable, "-c", CHECK, url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "no new upgrade operations" in done.stdout
