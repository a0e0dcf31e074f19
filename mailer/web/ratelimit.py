"""Subscribe rate limits (per client IP, per address), counted by the ``limits`` library.

The limits exist so the subscribe form cannot be used to bomb an inbox with confirmation
mails. Counted in memory they hold for one ``mailer serve`` process only: several processes
would each allow the full limit. With ``MAILER_RATE_LIMIT_STORAGE=redis://…`` every process
counts in the same Redis (limits' moving-window Lua scripts, atomic there), so the limit is
one limit however many processes serve.

The window is limits' *moving window*: at most ``limit`` hits per key within any ``window``
seconds; a refused hit is not counted; the answer is the seconds until the oldest counted
hit leaves the window (the 429's Retry-After).

Time comes from the caller (the app's clock, which tests move), not from inside the
storage: limits' storages read ``time.time()`` themselves, so the two subclasses below add
``acquire_at``/``window_at``, the same moving-window steps on the same data (Redis: limits'
own Lua scripts; memory: limits' ``events`` lists, newest first) with the timestamp given.
Memory stays bounded: past ``max_keys`` keys the stale ones go, then the oldest.

Redis away: a hit is let through uncounted (the form must not go down with Redis), logged
and counted (``unavailable``, /metrics' ``mailer_rate_limit_unavailable_total``). Redis is
asked with a short timeout (``REDIS_TIMEOUT``: the handlers ask on the event loop, and a
Redis that hangs instead of refusing stalled every page for limits' 5 s), and after a
failure not again for ``RETRY_AFTER`` seconds (by the caller's clock), so an outage costs
one short wait per window, not one per request; then counting resumes by itself.
"""

from __future__ import annotations

import logging
import math
import threading
from typing import Protocol

from limits import RateLimitItemPerSecond
from limits.errors import ConfigurationError
from limits.storage import MemoryStorage, RedisStorage
from limits.storage.memory import Entry

from mailer.errors import ConfigError

__all__ = ["SlidingWindow", "WindowStorage", "make_storage"]

log = logging.getLogger(__name__)

REDIS_SCHEMES = ("redis://", "rediss://", "redis+unix://")
#: seconds a limit waits for Redis to connect or answer (a ``socket_timeout`` in the URL wins)
REDIS_TIMEOUT = 0.5
#: seconds a limit lets hits through uncounted after Redis failed, before asking it again
RETRY_AFTER = 10.0
#: test sends per token per window, from the desk and the API alike (WebState.test_send_limiter)
TEST_SENDS_LIMIT = 12
TEST_SENDS_WINDOW = 3600.0
#: desk sign-in attempts per client network (an IPv4 address or an IPv6 /64) per window
#: (WebState.sign_in_limiter)
SIGN_IN_LIMIT = 10
SIGN_IN_WINDOW = 600.0
#: the window of MAILER_HANDOVER_LIMIT: new issue texts kept per token (WebState.handover_wait)
HANDOVER_WINDOW = 86400.0


class WindowStorage(Protocol):
    """A limits storage that takes the moving window's timestamp from the caller."""

    def acquire_at(self, key: str, limit: int, expiry: int, now: float) -> bool: ...

    def window_at(self, key: str, limit: int, expiry: int, now: float) -> tuple[float, int]: ...

    def keys_held(self) -> int: ...


class ClockedMemoryStorage(MemoryStorage):
    """limits' memory storage, moving window only, with the caller's clock and a key cap."""

    def __init__(self, max_keys: int = 100_000) -> None:
        super().__init__()
        self.timer.cancel()  # its sweeper expires by time.time(); keys are capped below
        self.max_keys = max_keys
        self._window_lock = threading.Lock()

    def acquire_at(self, key: str, limit: int, expiry: int, now: float) -> bool:
        with self._window_lock:
            events = self.events.get(key)
            if events is None:
                if len(self.events) >= self.max_keys:
                    self._evict(now, expiry)
                events = self.events[key] = []
            while events and events[-1].atime < now - expiry:  # newest first; as limits does
                events.pop()
            if len(events) >= limit:
                return False
            entry = Entry(expiry)
            entry.atime, entry.expiry = now, now + expiry
            events.insert(0, entry)
            return True

    def window_at(self, key: str, limit: int, expiry: int, now: float) -> tuple[float, int]:
        with self._window_lock:
            live = [e for e in self.events.get(key, ()) if e.atime >= now - expiry]
        return (live[-1].atime, len(live)) if live else (now, 0)

    def keys_held(self) -> int:
        return len(self.events)

    def _evict(self, now: float, expiry: int) -> None:
        stale = [k for k, events in self.events.items() if not events or events[0].expiry <= now]
        for key in stale:
            del self.events[key]
        while len(self.events) >= self.max_keys:
            del self.events[next(iter(self.events))]


class ClockedRedisStorage(RedisStorage):
    """limits' Redis storage; the moving-window scripts get the caller's timestamp."""

    def acquire_at(self, key: str, limit: int, expiry: int, now: float) -> bool:
        keys = [self.prefixed_key(key)]
        return bool(self.lua_acquire_moving_window(keys, [now, limit, expiry, 1]))

    def window_at(self, key: str, limit: int, expiry: int, now: float) -> tuple[float, int]:
        window = self.lua_moving_window([self.prefixed_key(key)], [now - expiry, limit])
        return (float(window[0]), int(window[1])) if window else (now, 0)

    def keys_held(self) -> int:
        return 0  # held in Redis, which expires them itself


def make_storage(uri: str) -> WindowStorage | None:
    """A shared storage for ``MAILER_RATE_LIMIT_STORAGE``: None for ``memory://`` (each
    window then keeps its own), limits' Redis storage for ``redis://…``."""
    if uri in ("", "memory://"):
        return None
    if not uri.startswith(REDIS_SCHEMES):
        raise ConfigError(
            f"MAILER_RATE_LIMIT_STORAGE: {uri!r} is neither memory:// nor redis://host:port/db"
        )
    try:
        return ClockedRedisStorage(
            uri,
            key_prefix="mailer-ratelimit",
            socket_timeout=REDIS_TIMEOUT,
            socket_connect_timeout=REDIS_TIMEOUT,
        )
    except ConfigurationError as err:  # the redis package is missing
        raise ConfigError(
            f"MAILER_RATE_LIMIT_STORAGE: {err} (pip install 'brief-mailer[redis]')"
        ) from err


class SlidingWindow:
    """At most ``limit`` hits per key within any ``window`` seconds (``limit`` 0: no limit).

    ``name`` keeps the keys of different limits apart in a shared storage.
    """

    def __init__(
        self,
        limit: int,
        window: float,
        *,
        storage: WindowStorage | None = None,
        name: str = "window",
        max_keys: int = 100_000,
    ) -> None:
        if limit < 0 or window <= 0 or max_keys < 1:
            raise ValueError("limit must be >= 0, window > 0 and max_keys >= 1")
        self.limit = limit
        self.window = window
        self.name = name
        self.expiry = max(1, math.ceil(window))  # Redis expires keys in whole seconds
        self.item = RateLimitItemPerSecond(max(limit, 1), self.expiry, namespace="mailer")
        self.storage: WindowStorage = storage or ClockedMemoryStorage(max_keys)
        #: hits let through uncounted because the storage could not be reached
        self.unavailable = 0
        self._ask_again_at = -math.inf  # after a failure: when the storage is asked again

    def hit(self, key: str, now: float) -> float | None:
        """Count one hit for ``key`` at ``now`` (seconds); None if allowed, else the number
        of seconds until the next hit would be (refused hits are not counted).

        A storage that cannot be reached lets the hit through (logged): a Redis outage must
        not take the subscribe form down with it."""
        if self.limit == 0:
            return None
        if now < self._ask_again_at:
            self.unavailable += 1  # += on an int under the GIL: close enough for a gauge
            return None
        slot = self.item.key_for(self.name, key)
        try:
            if self.storage.acquire_at(slot, self.limit, self.expiry, now):
                return None
            oldest, _count = self.storage.window_at(slot, self.limit, self.expiry, now)
        except Exception as err:  # redis.ConnectionError and kin: fail open, say so
            self.unavailable += 1
            self._ask_again_at = now + RETRY_AFTER
            log.warning(
                "rate limit %s not counted, storage unavailable (asked again in %.0f s): %s",
                self.name,
                RETRY_AFTER,
                err,
            )
            return None
        return max(oldest + self.expiry - now, 0.001)

    def __len__(self) -> int:
        """Keys held in this process's memory (0 with a shared storage)."""
        return self.storage.keys_held()
