"""An in-process sliding-window rate limiter (per IP, per address).

Enough for one ``mailer serve`` process, which is how the reader pages run: the limits
exist so the subscribe form cannot be used to bomb an inbox with confirmation mails, and a
restart forgetting them is harmless. Memory is bounded: each key keeps at most ``limit``
timestamps, and past ``max_keys`` keys the stale ones are dropped, then the oldest.
"""

from __future__ import annotations

import threading
from collections import deque


class SlidingWindow:
    """At most ``limit`` hits per key within any ``window`` seconds (``limit`` 0: no limit)."""

    def __init__(self, limit: int, window: float, *, max_keys: int = 100_000) -> None:
        if limit < 0 or window <= 0 or max_keys < 1:
            raise ValueError("limit must be >= 0, window > 0 and max_keys >= 1")
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str, now: float) -> float | None:
        """Count one hit for ``key`` at ``now`` (seconds); None if allowed, else the number
        of seconds until the next hit would be (refused hits are not counted)."""
        if self.limit == 0:
            return None
        with self._lock:
            hits = self._hits.get(key)
            if hits is None:
                if len(self._hits) >= self.max_keys:
                    self._evict(now)
                hits = self._hits[key] = deque()
            while hits and hits[0] <= now - self.window:
                hits.popleft()
            if len(hits) >= self.limit:
                return max(hits[0] + self.window - now, 0.001)
            hits.append(now)
            return None

    def _evict(self, now: float) -> None:
        stale = [k for k, h in self._hits.items() if not h or h[-1] <= now - self.window]
        for k in stale:
            del self._hits[k]
        while len(self._hits) >= self.max_keys:
            del self._hits[next(iter(self._hits))]

    def __len__(self) -> int:
        return len(self._hits)
