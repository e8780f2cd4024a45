"""Per-source rate limits (token buckets), the write key → source look-up (disabled sources included) and its
in-memory cache."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

import sqlalchemy as sa

from omniweave.storage.ops.store import OpStore
from omniweave.storage.ops.tables.access import disabled_sources
from omniweave.storage.ops.tables.keys import sources


class RateLimiter:
    """A token bucket per source: `rate` requests per second, bursts of up to `burst`.

    `rate` 0 means unlimited. Single-threaded use only (the event loop), so no lock.
    """

    def __init__(self, rate: float, burst: int = 0, clock: Callable[[], float] = time.monotonic):
        self.rate = rate
        self.burst = float(burst or max(1, math.ceil(rate)))
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}

    def wait_time(self, source_id: str) -> float:
        """0 if a request from `source_id` may go now (and takes a token), else seconds to wait."""
        if self.rate <= 0:
            return 0.0
        now = self._clock()
        tokens, last = self._buckets.get(source_id, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens >= 1.0:
            self._buckets[source_id] = (tokens - 1.0, now)
            return 0.0
        self._buckets[source_id] = (tokens, now)
        return (1.0 - tokens) / self.rate


class SharedRateLimiter(RateLimiter):
    """A RateLimiter several threads may share (the REST API checks keys in FastAPI's worker threads)."""

    def __init__(self, rate: float, burst: int = 0, clock: Callable[[], float] = time.monotonic):
        super().__init__(rate, burst, clock)
        self._lock = threading.Lock()

    def wait_time(self, source_id: str) -> float:
        with self._lock:
            return super().wait_time(source_id)


DISABLED = "\x00disabled"
"""What `lookup_source` gives for the write key of a disabled source (never a source id)."""


def lookup_source(store: OpStore, write_key: str) -> str | None:
    """The source id of a write key, DISABLED if its source is disabled, None if the key is unknown."""
    query = (
        sa.select(sources.c.id, disabled_sources.c.source_id)
        .select_from(sources.outerjoin(disabled_sources, disabled_sources.c.source_id == sources.c.id))
        .where(sources.c.write_key == write_key)
    )
    with store.engine.connect() as conn:
        row = conn.execute(query).first()
    if row is None:
        return None
    return DISABLED if row[1] is not None else str(row[0])


class KeyCache:
    """Write key → source id (or DISABLED), remembered for `ttl` seconds; unknown keys for `miss_ttl`.

    Remembering keeps the store out of nearly every request; the time limit is how soon a source that
    was disabled (or enabled again) is answered accordingly by every collector process.
    """

    def __init__(self, miss_ttl: float = 5.0, max_misses: int = 10_000, ttl: float = 5.0):
        self._found: dict[str, tuple[str, float]] = {}
        self._misses: dict[str, float] = {}
        self._miss_ttl = miss_ttl
        self._ttl = ttl
        self._max_misses = max_misses

    def get(self, key: str) -> str | None:
        """The cached source id or DISABLED (None if unknown, expired or never looked up)."""
        found = self._found.get(key)
        if found is None:
            return None
        if found[1] < time.monotonic():
            del self._found[key]
            return None
        return found[0]

    def recently_missed(self, key: str) -> bool:
        expires = self._misses.get(key)
        if expires is None:
            return False
        if expires < time.monotonic():
            del self._misses[key]
            return False
        return True

    def remember(self, key: str, source_id: str | None) -> None:
        if source_id is not None:
            if len(self._found) >= self._max_misses:
                self._found.clear()
            self._found[key] = (source_id, time.monotonic() + self._ttl)
            self._misses.pop(key, None)
            return
        if len(self._misses) >= self._max_misses:
            self._misses.clear()
        self._misses[key] = time.monotonic() + self._miss_ttl
