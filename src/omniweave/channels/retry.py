"""Back-off for transient failures: exponential with full jitter, honouring `Retry-After`.

The n-th retry waits a random time in [0, min(cap, base * 2**n)] ("full jitter": retries of many
messages spread out instead of arriving together), or the provider's `Retry-After` when it gave
one (never less). A message class has a deadline: once the next attempt would land after it, the
send gives up as terminal ("expired") instead — a promotion is not worth sending hours late.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from omniweave.errors import InputError


@dataclass(frozen=True)
class RetryPolicy:
    """How one message class retries: first delay, the largest delay, attempts and deadline (seconds)."""

    base: float = 1.0
    cap: float = 300.0
    max_attempts: int = 8
    deadline: float = 6 * 3600.0

    def __post_init__(self) -> None:
        problems = [
            f"{name} must be > 0 (got {value!r})"
            for name, value in (("base", self.base), ("cap", self.cap), ("deadline", self.deadline))
            if not value > 0
        ]
        if self.max_attempts < 1:
            problems.append(f"max_attempts must be >= 1 (got {self.max_attempts!r})")
        if problems:
            raise InputError("retry policy: " + "; ".join(problems), field="retry")

    def delay(self, attempt: int, retry_after: float | None = None, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry number `attempt` (1 for the first retry)."""
        ceiling = min(self.cap, self.base * 2 ** max(0, attempt - 1))
        jittered = (rng or random).uniform(0.0, ceiling)
        return max(jittered, retry_after) if retry_after is not None else jittered

    def next_attempt_at(
        self,
        *,
        first_try_at: float,
        now: float,
        attempt: int,
        retry_after: float | None,
        rng: random.Random | None = None,
    ) -> float | None:
        """When to try again after failed attempt number `attempt`, or None to give up (attempts or deadline)."""
        if attempt >= self.max_attempts:
            return None
        at = now + self.delay(attempt, retry_after, rng)
        return None if at > first_try_at + self.deadline else at


DEFAULT_POLICIES = {
    "transactional": RetryPolicy(base=1.0, cap=120.0, max_attempts=10, deadline=24 * 3600.0),
    "promotional": RetryPolicy(base=2.0, cap=600.0, max_attempts=8, deadline=6 * 3600.0),
    "time_critical": RetryPolicy(base=0.5, cap=30.0, max_attempts=6, deadline=15 * 60.0),
}
"""The retry policy of each message class (deadline: a promotion 6 h, a one-time code 15 min)."""
