"""Group commit: items from concurrent requests share a transaction.

:class:`GroupWriter` is the seam; two kinds of item go through it:

* the SES webhook's events (``mailer.feedback.writer.FeedbackWriter``): each request
  hands its verified event to :meth:`GroupWriter.apply` and awaits the outcome. Nothing
  is answered before the commit, so a 200 still means "stored".
* tracking hits (``mailer.feedback.tracking.intake``): the redirect hands its hit to
  :meth:`GroupWriter.put` and answers at once; :meth:`GroupWriter.flush` waits until
  everything put so far is written (SIGTERM, tests).

A writer thread takes every item waiting (up to ``batch``), writes them in one transaction
and commits once, then answers each request that waits. If anything in a batch fails, the
batch is rolled back and each item is written again on its own, so one bad item fails only
its own request (which answers 500 and is retried by SNS; a hit that fails alone is logged).

SQLite has one writer, so one thread; another database gets as many as its connection
pool holds. Threads start on first use and end after a minute without work.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from subscribers.db import transaction

__all__ = ["GroupWriter"]

log = logging.getLogger(__name__)

_IDLE_SECONDS = 60.0

T = TypeVar("T")
R = TypeVar("R")

#: an item, and the loop and future of the request awaiting it (None: nobody waits)
_Item = tuple[T, asyncio.AbstractEventLoop | None, "asyncio.Future[R] | None"]


class GroupWriter(Generic[T, R]):
    """Writes items in shared transactions: ``write(session, items)`` returns one result
    per item, in order, inside the transaction the writer commits."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        write: Callable[[Session, Sequence[T]], list[R]],
        *,
        threads: int | None = None,
        batch: int = 64,
        name: str = "group-writer",
        describe: Callable[[T], str] = repr,
        retry_for: float = 0.0,
    ) -> None:
        self.sessions = sessions
        #: a batch nobody awaits that fails on the database itself (down, locked, timed out:
        #: an OperationalError) is tried again for up to this many seconds before it is split
        self.retry_for = retry_for
        self._write_items = write
        self.max_threads = threads or _writer_slots(sessions)
        self.batch = batch
        self.name = name
        self._describe = describe
        self._queue: queue.SimpleQueue[_Item[T, R]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._done = threading.Condition(self._lock)
        self._threads = 0
        self._unfinished = 0  # put or applied, not yet written (or failed)
        self.batches = 0  # how many commits served how many items (ops, benchmarks)
        self.events = 0
        self.failed = 0  # items that could not be written even alone

    async def apply(self, item: T) -> R:
        """Write ``item`` in a shared transaction; return once it is committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._enqueue((item, loop, future))
        return await future

    def put(self, item: T) -> None:
        """Queue ``item`` to be written soon and return at once (nobody awaits it)."""
        self._enqueue((item, None, None))

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every item handed in so far is written (or failed); False when
        ``timeout`` seconds passed first."""
        deadline = time.monotonic() + timeout
        with self._done:
            while self._unfinished:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._done.wait(left)
        return True

    @property
    def pending(self) -> int:
        """Items handed in and not yet written."""
        with self._lock:
            return self._unfinished

    def _enqueue(self, entry: _Item[T, R]) -> None:
        with self._lock:
            self._unfinished += 1
        self._queue.put(entry)
        self._ensure_thread()

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._threads >= self.max_threads:
                return
            self._threads += 1
        threading.Thread(target=self._run, name=self.name, daemon=True).start()

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException:  # never leave the count claiming a thread that is gone
            with self._lock:
                self._threads -= 1
            log.exception("%s thread stopped", self.name)
            raise

    def _loop(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=_IDLE_SECONDS)
            except queue.Empty:
                with self._lock:
                    if self._queue.empty():
                        self._threads -= 1
                        return
                continue
            batch = [first]
            while len(batch) < self.batch:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                self._write(batch)
            finally:
                with self._done:
                    self._unfinished -= len(batch)
                    self._done.notify_all()

    def _write(self, batch: list[_Item[T, R]]) -> None:
        results: list[R | BaseException]
        try:
            results = self._commit(batch)
        except Exception as err:
            if len(batch) == 1:
                log.exception("%s: writing %s failed", self.name, self._describe(batch[0][0]))
                self.failed += 1
                results = [err]
            else:  # find the culprit: each on its own
                results = [self._alone(item) for item, _, _ in batch]
        for (_, loop, future), result in zip(batch, results, strict=True):
            if loop is None or future is None:
                continue
            try:
                loop.call_soon_threadsafe(_settle, future, result)
            except RuntimeError:  # that request's event loop is gone; the commit stands
                log.debug("event loop closed before the outcome could be delivered")

    def _commit(self, batch: list[_Item[T, R]]) -> list[R | BaseException]:
        """One transaction for the batch; a batch nobody awaits waits out a database that
        is away (``retry_for``), so a slow or locked database delays the writing only."""
        deadline = time.monotonic() + self.retry_for
        pause = 0.1
        while True:
            try:
                with transaction(self.sessions) as session:
                    results = list(self._write_items(session, [item for item, _, _ in batch]))
                self.batches += 1
                self.events += len(batch)
                return list(results)
            except OperationalError as err:
                waited = all(future is None for _, _, future in batch)
                if not waited or time.monotonic() + pause > deadline:
                    raise
                log.warning("%s: the database is away (%s); again in %.1f s", self.name, err, pause)
                time.sleep(pause)
                pause = min(pause * 2, 5.0)

    def _alone(self, item: T) -> R | BaseException:
        try:
            with transaction(self.sessions) as session:
                (outcome,) = self._write_items(session, [item])
        except Exception as err:
            log.exception("%s: writing %s failed", self.name, self._describe(item))
            self.failed += 1
            return err
        self.batches += 1
        self.events += 1
        return outcome


def _settle(future: asyncio.Future[Any], result: Any) -> None:
    if future.done():  # the request went away
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)


def _writer_slots(sessions: sessionmaker[Session]) -> int:
    """SQLite has one writer; elsewhere as many as the pool keeps connections."""
    bind = sessions.kw.get("bind")
    if bind is None or bind.dialect.name == "sqlite":
        return 1
    size = getattr(bind.pool, "size", None)
    return max(1, int(size())) if callable(size) else 4
