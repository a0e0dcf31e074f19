"""Leases: which workers are alive, and which one may send on SQLite.

Every worker holds ``worker:<id>`` and renews it every ``HEARTBEAT_SECONDS`` (a thread of
its own); a claim whose worker's lease has lapsed is a dead worker's, and is claimed again
(:mod:`mailer.sending.ledger`). SQLite takes one writer at a time, so there one sending
worker holds ``sqlite-sender`` as well. A worker on this host whose process is gone
(killed, crashed) loses its leases at once when the next worker starts.

A lease's ``generation`` is its fencing token (issue 18): taken again after it lapsed
(the worker was partitioned, paused, suspended), it goes up by one. Claims record the
generation they were made under and every write of their results checks it, so a worker
back from a lapse cannot write over rows another worker claimed again meanwhile.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
from datetime import datetime, timedelta

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session, sessionmaker

from mailer.sending.models import Lease
from subscribers.db import is_sqlite
from subscribers.models import utcnow

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 5.0
HEARTBEAT_TTL = 30.0
SQLITE_LEASE = "sqlite-sender"


def new_worker_id() -> str:
    """``host:pid:random``: readable in the ledger, and tells a dead local process apart."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{random.randrange(16**4):04x}"


def upsert_lease(s: Session, name: str, holder: str, ttl: float) -> int:
    """Take or renew the lease; its generation (fencing token), one higher than before
    when the lease had lapsed or changed hands."""
    lease = s.get(Lease, name, with_for_update=not is_sqlite(s))
    now = utcnow()
    expires = now + timedelta(seconds=ttl)
    if lease is None:
        s.add(Lease(name=name, holder=holder, expires_at=expires, generation=1))
        return 1
    if lease.expires_at <= now or lease.holder != holder:
        lease.generation = lease.generation + 1
    lease.holder, lease.expires_at = holder, expires
    return lease.generation


def beat(s: Session, worker_id: str) -> int:
    """This worker is alive for another ``HEARTBEAT_TTL`` seconds; its lease's generation."""
    return upsert_lease(s, f"worker:{worker_id}", worker_id, HEARTBEAT_TTL)


def live_generation(s: Session, worker_id: str, now: datetime) -> int | None:
    """The generation of the worker's lease if it is live at ``now``; None once it lapsed
    (the worker must not claim until its heartbeat takes it again)."""
    live = select(Lease.generation).where(
        Lease.name == f"worker:{worker_id}", Lease.expires_at > now
    )
    return s.execute(live).scalar_one_or_none()


def take_sqlite_lease(s: Session, worker_id: str) -> bool:
    """Become (or stay) SQLite's one sending worker; False while another one is."""
    lease = s.get(Lease, SQLITE_LEASE)
    if lease is not None and lease.holder != worker_id and lease.expires_at > utcnow():
        return False
    upsert_lease(s, SQLITE_LEASE, worker_id, HEARTBEAT_TTL)
    return True


def sqlite_sender(s: Session) -> str | None:
    """The worker that is SQLite's one sender now (its id), or None."""
    lease = s.get(Lease, SQLITE_LEASE)
    if lease is None or lease.expires_at <= utcnow():
        return None
    return lease.holder


def release(s: Session, worker_id: str) -> None:
    """Drop every lease the worker holds (it stops): its claims are re-claimable at once."""
    s.execute(
        delete(Lease).where(or_(Lease.name == f"worker:{worker_id}", Lease.holder == worker_id))
    )


def reap_dead_local_workers(s: Session) -> int:
    """Drop the leases of workers on this host whose process is gone, so their claims are
    re-claimed at once instead of after the heartbeat lease runs out."""
    host = socket.gethostname()[:40]
    dead = []
    for name, holder in s.execute(select(Lease.name, Lease.holder)):
        parts = holder.split(":")
        local = len(parts) == 3 and parts[0] == host and parts[1].isdigit()
        if local and not _pid_alive(int(parts[1])):
            dead.append(name)
    if dead:
        s.execute(delete(Lease).where(Lease.name.in_(dead)))
    return len(dead)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Heartbeat:
    """Renews a worker's leases from a thread of its own until :meth:`stop`."""

    def __init__(self, sessions: sessionmaker[Session], worker_id: str, *, sqlite: bool) -> None:
        self._sessions = sessions
        self._worker_id = worker_id
        self._sqlite = sqlite
        self._ended = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._ended.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._ended.wait(HEARTBEAT_SECONDS):
            try:
                with self._sessions.begin() as s:
                    beat(s, self._worker_id)
                if self._sqlite:
                    with self._sessions.begin() as s:
                        take_sqlite_lease(s, self._worker_id)
            except Exception:  # a missed beat is retried; the lease outlives several
                log.warning("heartbeat failed", exc_info=True)
