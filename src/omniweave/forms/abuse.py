"""Keeping bots and floods out of sign-up forms: token buckets per IP and per form, and the render stamp. Pure.

- **Rate limits** (`FormLimiter`): a token bucket per client IP (default 5 sign-ups a minute, bursts of 5)
  and one per form (default 120 a minute, bursts of 60), held in the memory of the `omniweave serve`
  process (one process serves the forms; a restart forgets the buckets, which only forgives a flood).
  A refused request gets HTTP 429 with `Retry-After` and changes nothing.
- **The render stamp**: the page carries `started`, a signed token of the form's name and the time it was
  rendered (forms/service.py signs it with the link key). A submit sooner than the form's `min_seconds`
  after it, or later than `MAX_PAGE_AGE`, or with a stamp that is missing or forged, is refused with a
  message asking to send again (a person can; a bot that posts blind cannot).
- **The honeypot**: a field named `website`, hidden from people and from screen readers; a submit that
  fills it is answered as if it had worked (so a bot learns nothing) and nothing is stored.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass

HONEYPOT = "website"
"""The honeypot field's name."""
MAX_PAGE_AGE = 24 * 3600.0
"""A form page older than this must be reloaded before it is sent."""


class TokenBucket:
    """Token buckets by key: `rate` per second, bursts of `burst`; thread-safe."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float]):
        self.rate = rate
        self.burst = float(max(1, burst))
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """0 when a request under `key` may go now (it takes a token), else the seconds to wait."""
        if self.rate <= 0:
            return 0.0
        with self._lock:
            now = self._clock()
            tokens, last = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            if len(self._buckets) > 100_000:  # forget full buckets: they are the same as no bucket
                full = [k for k, (t, at) in self._buckets.items() if t + (now - at) * self.rate >= self.burst]
                for k in full:
                    del self._buckets[k]
            return (1.0 - tokens) / self.rate


@dataclass(frozen=True)
class Limits:
    """Sign-ups per minute and bursts, per client IP and per form."""

    per_ip_per_minute: float = 5.0
    per_ip_burst: int = 5
    per_form_per_minute: float = 120.0
    per_form_burst: int = 60


class FormLimiter:
    """The two buckets a submit passes: its IP's, then its form's."""

    def __init__(self, limits: Limits, clock: Callable[[], float]):
        self.limits = limits
        self._ip = TokenBucket(limits.per_ip_per_minute / 60.0, limits.per_ip_burst, clock)
        self._form = TokenBucket(limits.per_form_per_minute / 60.0, limits.per_form_burst, clock)

    def check(self, ip: str, form: str) -> int:
        """0 when the submit may go, else whole seconds to wait (for Retry-After)."""
        wait = self._ip.take(ip)
        if wait <= 0:
            wait = self._form.take(form)
        return math.ceil(wait) if wait > 0 else 0


def stamp_problem(stamp: dict[str, object] | None, form: str, min_seconds: float, now: float) -> str | None:
    """Why a submit's verified render stamp refuses it: "too_fast", "expired", or None when it passes
    (a missing or forged stamp, `None`, is "expired": the page must be loaded again)."""
    if stamp is None or stamp.get("f") != form:
        return "expired"
    at = stamp.get("t")
    if not isinstance(at, (int, float)):
        return "expired"
    age = now - float(at)
    if age > MAX_PAGE_AGE:
        return "expired"
    if age < min_seconds:
        return "too_fast"
    return None
