"""A throw-away PostgreSQL database for benchmarks and chaos runs.

Made next to the database ``admin_url`` names (same server and credentials), migrated to
head, and dropped afterwards even when its users still hold connections: a run never
touches the database it was pointed at.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import make_url, text

from subscribers.db import make_engine, normalize_url
from subscribers.migrate import upgrade


@contextmanager
def scratch_postgres(admin_url: str, prefix: str, *, migrate: bool = True) -> Iterator[str]:
    """The URL of a fresh database named ``<prefix>_<random>``; dropped on exit."""
    admin_url = normalize_url(admin_url)
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = make_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        if migrate:
            engine = make_engine(url)
            upgrade(engine)
            engine.dispose()
        yield url
    finally:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


__all__ = ["scratch_postgres"]
