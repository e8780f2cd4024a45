"""Per-source rate limits (token buckets) and the in-memory write key → source id cache."""

from __future__ import annotations

import math
import time
from collections.abc import Callable


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


class KeyCache:
    """Write key → source id, remembered forever once found; unknown keys for a few seconds.

    Keys are random and never reused, so a found key stays valid; remembering misses briefly
    keeps a client with a wrong key from costing a store query per request.
    """

    def __init__(self, miss_ttl: float = 5.0, max_misses: int = 10_000):
        self._found: dict[str, str] = {}
        self._misses: dict[str, float] = {}
        self._miss_ttl = miss_ttl
        self._max_misses = max_misses

    def get(self, key: str) -> str | None:
        """The cached source id (None if unknown or never looked up)."""
        return self._found.get(key)

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
            self._found[key] = source_id
            self._misses.pop(key, None)
            return
        if len(self._misses) >= self._max_misses:
            self._misses.clear()
        self._misses[key] = time.monotonic() + self._miss_ttl
