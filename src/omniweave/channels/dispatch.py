"""The dispatcher: ledger first, then the channel, then the outcome — so a message goes out once.

`send(message, key)` writes the ledger row under `key` (nothing happens if the key is already
there: a replayed trigger or a retried command adds no second message), then attempts it:

1. the row is claimed (`pending`/`retrying` -> `sending`, one statement: two workers never both
   send it);
2. an address on the channel's suppression list ends the send as `suppressed`;
3. the channel is called with the key as its idempotency key;
4. the outcome is recorded: `delivered`; `retrying` at a back-off time (the class's
   `RetryPolicy`, honouring `Retry-After`) or `dead` when attempts or the deadline run out;
   `dead` for a terminal failure, and the address suppressed when the failure says so;
   `ambiguous` when the adapter raised (the provider may or may not have the message: never
   resent on its own; `replay` resends it after a person looked).

`run_due()` attempts every row whose time has come (the retries); `dead_letters()` lists what
failed for good, and `replay(keys)` puts dead (or ambiguous) rows back to pending after a fix.
Every outcome is also handed to `on_outcome`, which the service layer turns into events.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

import orjson

from omniweave.channels.port import Channel, Delivered, Message, Outcome, Terminal, Transient, address_key
from omniweave.channels.retry import DEFAULT_POLICIES, RetryPolicy
from omniweave.errors import InputError
from omniweave.storage.ops.ledger import Ledger, LedgerRow


@dataclass(frozen=True)
class SendResult:
    """What became of one send: the ledger status after this attempt and why."""

    key: str
    status: str
    reason: str | None = None
    provider_id: str | None = None
    attempts: int = 0
    new: bool = True

    def to_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


def message_of(row: LedgerRow) -> Message:
    """The message a ledger row holds (what a retry or replay sends)."""
    return Message(
        channel=row.channel,
        to=row.to_address,
        content=orjson.loads(row.content),
        person_id=row.person_id,
        campaign=row.campaign,
        message_name=row.message_name,
        message_class=row.message_class,
    )


class Dispatcher:
    """Sends messages through channel adapters with the ledger, suppressions and retries."""

    def __init__(
        self,
        ledger: Ledger,
        channels: Mapping[str, Channel],
        *,
        policies: Mapping[str, RetryPolicy] | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        on_outcome: Callable[[LedgerRow, Outcome | None], None] | None = None,
    ):
        self.ledger = ledger
        self.channels = dict(channels)
        self.policies = dict(policies or DEFAULT_POLICIES)
        self.clock = clock
        self.rng = rng or random.Random()
        self.on_outcome = on_outcome

    def enqueue(self, message: Message, key: str) -> bool:
        """Write the ledger row for `message` under `key`; False when the key was already there."""
        if not key or len(key) > 200:
            raise InputError(f"an idempotency key must be 1 to 200 characters (got {len(key or '')})", field="key")
        if message.channel not in self.channels:
            raise InputError(
                f"no {message.channel} channel is configured; configured: {', '.join(sorted(self.channels)) or 'none'}",
                field="channel",
            )
        if message.message_class not in self.policies:
            raise InputError(
                f"unknown message class {message.message_class!r}; expected one of {', '.join(sorted(self.policies))}",
                field="message_class",
            )
        return self.ledger.insert(
            {
                "key": key,
                "channel": message.channel,
                "to_address": address_key(message.channel, message.to),
                "person_id": message.person_id,
                "campaign": message.campaign,
                "message_name": message.message_name,
                "message_class": message.message_class,
                "content": orjson.dumps(message.content),
            }
        )

    def send(self, message: Message, key: str) -> SendResult:
        """Ledger row, then one attempt now (when the row is new or waiting); see the module docstring."""
        new = self.enqueue(message, key)
        result = self.attempt(key)
        return replace(result, new=new)

    def attempt(self, key: str) -> SendResult:
        """One attempt of the send under `key`, if it is claimable; else its current state."""
        now = self.clock()
        if not self.ledger.claim(key, now):
            row = self.ledger.get(key)
            if row is None:
                raise InputError(f"no send with key {key!r} in the ledger", field="key")
            return SendResult(key, row.status, row.reason, row.provider_id, row.attempts, new=False)
        row = self.ledger.get(key)
        assert row is not None  # claimed just now
        why = self.ledger.suppression(row.channel, row.to_address)
        if why is not None:
            return self._finish(row, None, "suppressed", f"the address is suppressed ({why})")
        channel = self.channels.get(row.channel)
        if channel is None:
            return self._finish(row, None, "dead", f"no {row.channel} channel is configured")
        try:
            outcome = channel.send(message_of(row), key)
        except InputError as exc:
            return self._finish(row, Terminal(str(exc)), "dead", f"bad message: {exc}")
        except Exception as exc:  # noqa: BLE001 - an adapter bug: the provider may have the message
            return self._finish(row, None, "ambiguous", f"{type(exc).__name__}: {exc}")
        return self._record(row, outcome)

    def _record(self, row: LedgerRow, outcome: Outcome) -> SendResult:
        if isinstance(outcome, Delivered):
            return self._finish(row, outcome, "delivered", None, provider_id=outcome.provider_id)
        if isinstance(outcome, Transient):
            policy = self.policies[row.message_class]
            now = self.clock()
            first = row.first_try_at if row.first_try_at is not None else now
            at = policy.next_attempt_at(
                first_try_at=first, now=now, attempt=row.attempts, retry_after=outcome.retry_after, rng=self.rng
            )
            if at is None:
                gave_up = f"gave up after {row.attempts} attempts: {outcome.reason}"
                return self._finish(row, outcome, "dead", gave_up)
            return self._finish(row, outcome, "retrying", outcome.reason, next_attempt_at=at)
        if outcome.suppress:
            self.ledger.suppress(row.channel, row.to_address, "bounce", outcome.reason)
        return self._finish(row, outcome, "dead", outcome.reason)

    def _finish(
        self,
        row: LedgerRow,
        outcome: Outcome | None,
        status: str,
        reason: str | None,
        *,
        provider_id: str | None = None,
        next_attempt_at: float | None = None,
    ) -> SendResult:
        now = self.clock()
        self.ledger.finish(
            row.key, status, now=now, reason=reason, provider_id=provider_id, next_attempt_at=next_attempt_at
        )
        done = self.ledger.get(row.key)
        assert done is not None
        if self.on_outcome is not None:
            self.on_outcome(done, outcome)
        return SendResult(row.key, status, reason, provider_id, done.attempts, new=False)

    def run_due(self, limit: int = 1000) -> list[SendResult]:
        """Attempt every send whose time has come (new ones and retries), at most `limit`."""
        return [self.attempt(key) for key in self.ledger.due(self.clock(), limit)]

    def next_due_at(self) -> float | None:
        """When the earliest waiting retry is due (None when nothing waits)."""
        waiting = [r.next_attempt_at for r in self.ledger.rows("retrying") if r.next_attempt_at is not None]
        return min(waiting) if waiting else None

    def drain(self, *, timeout: float = 60.0, sleep: Callable[[float], None] = time.sleep) -> list[SendResult]:
        """Attempt due sends until none is pending or retrying, or `timeout` seconds have passed."""
        results: list[SendResult] = []
        end = self.clock() + timeout
        while True:
            results.extend(self.run_due())
            waiting = self.next_due_at()
            if waiting is None or self.clock() >= end:
                return results
            sleep(max(0.0, min(waiting, end) - self.clock()))

    def dead_letters(self) -> list[LedgerRow]:
        """Sends that failed for good (terminal, or out of retries)."""
        return self.ledger.rows("dead")

    def replay(self, keys: Sequence[str] | None = None, *, include_ambiguous: bool = False) -> int:
        """Put dead sends (all, or those of `keys`) back to pending; returns how many. Run `run_due` next."""
        statuses = ("dead", "ambiguous") if include_ambiguous else ("dead",)
        return self.ledger.requeue(keys, statuses, self.clock())
