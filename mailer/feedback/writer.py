"""Group commit for the webhook: events from concurrent requests share a transaction.

Each request hands its verified event to :meth:`FeedbackWriter.apply` and awaits the
outcome; a writer thread takes every event waiting (up to ``batch``), applies them in one
transaction and commits once, then answers each request. Nothing is answered before the
commit, so a 200 still means "stored". If anything in a batch fails, the batch is rolled
back and each event is applied again on its own, so one bad event fails only its own
request (which answers 500 and is retried by SNS).

SQLite has one writer, so one thread; another database gets as many as its connection
pool holds. Threads start on first use and end after a minute without work.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from mailer.config import Settings
from mailer.feedback.events import SESEvent
from mailer.feedback.rules import Outcome, apply_event
from subscribers.db import transaction

__all__ = ["FeedbackWriter"]

log = logging.getLogger(__name__)

_IDLE_SECONDS = 60.0

_Item = tuple[SESEvent, asyncio.AbstractEventLoop, "asyncio.Future[Outcome]"]


class FeedbackWriter:
    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        *,
        threads: int | None = None,
        batch: int = 64,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.max_threads = threads or _writer_slots(sessions)
        self.batch = batch
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self.batches = 0  # how many commits served how many events (ops, benchmarks)
        self.events = 0

    async def apply(self, event: SESEvent) -> Outcome:
        """Apply ``event`` in a shared transaction; return once it is committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Outcome] = loop.create_future()
        self._queue.put((event, loop, future))
        self._ensure_thread()
        return await future

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._threads >= self.max_threads:
                return
            self._threads += 1
        threading.Thread(target=self._run, name="feedback-writer", daemon=True).start()

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException:  # never leave the count claiming a thread that is gone
            with self._lock:
                self._threads -= 1
            log.exception("feedback writer thread stopped")
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
            self._write(batch)

    def _write(self, batch: list[_Item]) -> None:
        results: list[Outcome | BaseException]
        try:
            with transaction(self.sessions) as session:
                results = [apply_event(session, event, self.settings) for event, _, _ in batch]
            self.batches += 1
            self.events += len(batch)
        except Exception as err:
            if len(batch) == 1:
                log.exception("applying SES event %s failed", batch[0][0].sns_message_id)
                results = [err]
            else:  # find the culprit: each on its own
                results = [self._alone(event) for event, _, _ in batch]
        for (_, loop, future), result in zip(batch, results, strict=True):
            try:
                loop.call_soon_threadsafe(_settle, future, result)
            except RuntimeError:  # that request's event loop is gone; the commit stands
                log.debug("event loop closed before the outcome could be delivered")

    def _alone(self, event: SESEvent) -> Outcome | BaseException:
        try:
            with transaction(self.sessions) as session:
                outcome = apply_event(session, event, self.settings)
        except Exception as err:
            log.exception("applying SES event %s failed", event.sns_message_id)
            return err
        self.batches += 1
        self.events += 1
        return outcome


def _settle(future: asyncio.Future[Any], result: Outcome | BaseException) -> None:
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
