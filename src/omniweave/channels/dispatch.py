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
Every outcome is also handed to `on_outcome` (one row) or `on_outcomes` (a batch), which the service
layer turns into events. `send_many` does all of this for a batch with one statement per step; with
several workers the claims and outcomes of one step are written while the next step's calls are on
the wire.

A channel may also take a batch: `send_many([(message, key), ...])` returning one outcome per message, in
order. The dispatcher then hands it every claimed row of that channel in a step in one call (a durable
sink writes them with one fsync); the order per row is the same (ledger row committed, claimed, called with
its key, outcome recorded), and a `send_many` that raises leaves every row of the call ambiguous.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
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
    attempted: bool = True  # False: this call did not claim it (another had, or it is settled), only read its state

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


@dataclass(frozen=True)
class _Decision:
    """What one attempt made of a send: its new status and why."""

    row: LedgerRow
    outcome: Outcome | None
    status: str
    reason: str | None
    provider_id: str | None = None
    next_attempt_at: float | None = None
    suppress: bool = False

    def values(self) -> dict[str, object]:
        return {
            "key": self.row.key,
            "status": self.status,
            "reason": self.reason,
            "provider_id": self.provider_id,
            "next_attempt_at": self.next_attempt_at,
        }

    def finished(self, now: float) -> LedgerRow:
        """The row as the ledger now holds it."""
        provider_id = self.provider_id if self.provider_id is not None else self.row.provider_id
        return replace(
            self.row,
            status=self.status,
            reason=self.reason,
            provider_id=provider_id,
            next_attempt_at=self.next_attempt_at,
            updated_at=now,
        )


class _Calls:
    """Channel calls of some rows, made by up to `workers` threads that take the next task as they finish (one
    thread: made in `wait`, in the caller's thread). A task is a few rows called one at a time, or every row of
    a channel that takes a batch (`send_many`) in one call."""

    BITE = 4  # rows a thread takes at a time: small enough to balance a slow call, large enough to be cheap

    def __init__(
        self,
        one: Callable[[LedgerRow], Outcome | BaseException],
        many: Callable[[list[LedgerRow]], list[Outcome | BaseException]],
        batched: Callable[[str], bool],
        rows: list[LedgerRow],
        workers: int,
    ):
        self.one = one
        self.many = many
        self.rows = rows
        self.answers: list[Outcome | BaseException | None] = [None] * len(rows)
        together: dict[str, list[int]] = {}
        singles: list[int] = []
        for index, row in enumerate(rows):
            if batched(row.channel):
                together.setdefault(row.channel, []).append(index)
            else:
                singles.append(index)
        self.tasks: list[tuple[bool, list[int]]] = [(True, indices) for indices in together.values()]
        self.tasks += [(False, singles[start : start + self.BITE]) for start in range(0, len(singles), self.BITE)]
        self.next = 0
        self.lock = threading.Lock()
        self.threads = [
            threading.Thread(target=self._run, name=f"omniweave-send-{i}")
            for i in range(min(workers, len(self.tasks)) if workers > 1 else 0)
        ]
        for thread in self.threads:
            thread.start()

    def _run(self) -> None:
        while True:
            with self.lock:
                task = self.next
                self.next += 1
            if task >= len(self.tasks):
                return
            together, indices = self.tasks[task]
            if together:
                for index, answer in zip(indices, self.many([self.rows[i] for i in indices]), strict=True):
                    self.answers[index] = answer
            else:
                for index in indices:
                    self.answers[index] = self.one(self.rows[index])

    def wait(self) -> list[tuple[LedgerRow, Outcome | BaseException]]:
        """Every row with its answer, once all calls are done."""
        if not self.threads:
            self._run()
        for thread in self.threads:
            thread.join()
        return [(row, answer) for row, answer in zip(self.rows, self.answers, strict=True) if answer is not None]


@dataclass
class _Step:
    """A step of `attempt_many`: rows not claimed (their current state), rows settled without a call, the calls."""

    others: dict[str, LedgerRow]
    decided: list[_Decision]
    calls: _Calls
    gone: list[str]


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
        on_outcomes: Callable[[list[tuple[LedgerRow, Outcome | None]]], None] | None = None,
    ):
        self.ledger = ledger
        self.channels = dict(channels)
        self.policies = dict(policies or DEFAULT_POLICIES)
        self.clock = clock
        self.rng = rng or random.Random()
        self.on_outcome = on_outcome
        self.on_outcomes = on_outcomes

    def _row_of(self, message: Message, key: str) -> dict[str, object]:
        """The ledger row for `message` under `key`, or an InputError naming what is wrong."""
        if not key or len(key) > 200:
            raise InputError(f"an idempotency key must be 1 to 200 characters (got {len(key or '')})", field="key")
        if message.channel not in self.channels:
            configured = ", ".join(sorted(self.channels)) or "none"
            raise InputError(f"no {message.channel} channel is configured; configured: {configured}", field="channel")
        if message.message_class not in self.policies:
            valid = ", ".join(sorted(self.policies))
            raise InputError(
                f"unknown message class {message.message_class!r}; expected one of {valid}", field="message_class"
            )
        return {
            "key": key,
            "channel": message.channel,
            "to_address": address_key(message.channel, message.to),
            "person_id": message.person_id,
            "campaign": message.campaign,
            "message_name": message.message_name,
            "message_class": message.message_class,
            "content": orjson.dumps(message.content),
        }

    def enqueue(self, message: Message, key: str) -> bool:
        """Write the ledger row for `message` under `key`; False when the key was already there."""
        return key in self.ledger.insert_many([self._row_of(message, key)])

    def send(self, message: Message, key: str) -> SendResult:
        """Ledger row, then one attempt now (when the row is new or waiting); see the module docstring."""
        return self.send_many([(message, key)])[0]

    def send_many(self, items: Sequence[tuple[Message, str]], *, workers: int = 1) -> list[SendResult]:
        """`send` for many messages: the ledger rows in one transaction, then one attempt each.

        Every message is checked before any row is written (an InputError names the item). With
        `workers` > 1 the channel calls run in that many threads, in pipelined steps (see
        `attempt_many`; the adapters must allow it: the HTTP adapters and the pooled SMTP one do).
        """
        rows = []
        for index, (message, key) in enumerate(items):
            try:
                rows.append(self._row_of(message, key))
            except InputError as exc:
                raise InputError(f"message {index}: {exc}", field=exc.field) from exc
        inserted = self.ledger.insert_many(rows)
        keys = [key for _, key in items]
        return self._attempt(list(dict.fromkeys(keys)), keys, workers, known=True, inserted=inserted)

    def attempt(self, key: str) -> SendResult:
        """One attempt of the send under `key`, if it is claimable; else its current state."""
        return self.attempt_many([key])[0]

    def attempt_many(self, keys: Sequence[str], *, workers: int = 1, written: bool = False) -> list[SendResult]:
        """One attempt of each claimable send of `keys` (the others report their current state), in key order.

        With `workers` > 1 the sends go in steps of `STEP`: while one step's calls are on the wire, the
        ledger records the step before and claims the step after (SQLite and the network both release
        the GIL), so the ledger's writes and fsyncs do not leave the connections idle. An unknown key is
        an InputError before anything is claimed or sent — unless `written` says the caller wrote the rows itself
        (the journey engine's own rows: not read once more to check them), when it is reported `gone`.
        """
        return self._attempt(list(dict.fromkeys(keys)), keys, workers, known=written)

    STEP = 256
    """Sends per pipelined step of `attempt_many` with several workers."""

    def _attempt(
        self,
        unique: list[str],
        keys: Sequence[str],
        workers: int,
        *,
        known: bool,
        inserted: Collection[str] = (),
    ) -> list[SendResult]:
        step = self.STEP if workers > 1 else max(1, len(unique))
        if not known:
            self._require(unique)
        results: dict[str, SendResult] = {}
        in_flight: list[_Step] = []
        try:
            for start in range(0, len(unique), step):
                in_flight.append(self._begin(unique[start : start + step], workers))
                if len(in_flight) > 1:
                    results.update(self._end(in_flight.pop(0), inserted))
            while in_flight:
                results.update(self._end(in_flight.pop(0), inserted))
        except BaseException:
            for waiting in in_flight:  # what is on the wire still gets its outcome recorded
                with contextlib.suppress(Exception):
                    self._end(waiting, inserted)
            raise
        return [results[key] for key in keys]

    def _require(self, keys: Sequence[str]) -> None:
        """An InputError naming the first of `keys` the ledger does not hold."""
        known = self.ledger.get_many(keys)
        missing = [k for k in keys if k not in known]
        if missing:
            raise InputError(f"no send with key {missing[0]!r} in the ledger", field="key")

    def _begin(self, keys: Sequence[str], workers: int) -> _Step:
        """Claim `keys`, settle the suppressed ones, and start the channel calls of the rest."""
        claimed = {row.key: row for row in self.ledger.claim_many(keys, self.clock())}
        others = self.ledger.get_many([k for k in keys if k not in claimed])
        gone = [k for k in keys if k not in claimed and k not in others]  # deleted since it was checked
        suppressed = self.ledger.suppressed_among((r.channel, r.to_address) for r in claimed.values())
        decided: list[_Decision] = []
        calls: list[LedgerRow] = []
        for row in claimed.values():
            why = suppressed.get((row.channel, row.to_address))
            if why is not None:
                decided.append(_Decision(row, None, "suppressed", f"the address is suppressed ({why})"))
            elif row.channel not in self.channels:
                decided.append(_Decision(row, None, "dead", f"no {row.channel} channel is configured"))
            else:
                calls.append(row)
        return _Step(others, decided, _Calls(self._one, self._many, self._batched, calls, workers), gone)

    def _end(self, step: _Step, inserted: Collection[str]) -> dict[str, SendResult]:
        """Wait for a step's calls, decide and record every outcome; the step's results by key (`new`: in `inserted`)."""
        decided = step.decided + [self._decide(row, answer) for row, answer in step.calls.wait()]
        self._record(decided)
        results = {
            key: SendResult(
                key, row.status, row.reason, row.provider_id, row.attempts, new=key in inserted, attempted=False
            )
            for key, row in step.others.items()
        }
        for d in decided:
            key = d.row.key
            provider_id = d.provider_id if d.provider_id is not None else d.row.provider_id
            results[key] = SendResult(key, d.status, d.reason, provider_id, d.row.attempts, new=key in inserted)
        results.update(
            (key, SendResult(key, "gone", "no longer in the ledger", new=False, attempted=False)) for key in step.gone
        )
        return results

    def _batched(self, channel: str) -> bool:
        """Whether the channel takes a batch of messages in one call (`send_many`)."""
        return callable(getattr(self.channels.get(channel), "send_many", None))

    def _many(self, rows: list[LedgerRow]) -> list[Outcome | BaseException]:
        """The rows (all of one channel) in one `send_many` call, each with its row's key; an exception, or an
        answer that is not one outcome per row, is every row's answer (ambiguous: the channel may have some)."""
        try:
            answers = list(self.channels[rows[0].channel].send_many([(message_of(r), r.key) for r in rows]))  # type: ignore[attr-defined]
        except Exception as exc:  # noqa: BLE001 - decided by _decide, as for one row
            return [exc] * len(rows)
        if len(answers) != len(rows):
            wrong = RuntimeError(f"send_many answered {len(answers)} outcomes for {len(rows)} messages")
            return [wrong] * len(rows)
        return answers

    def _one(self, row: LedgerRow) -> Outcome | BaseException:
        """The row's channel called with the row's key; an exception is returned, not raised."""
        try:
            return self.channels[row.channel].send(message_of(row), row.key)
        except Exception as exc:  # noqa: BLE001 - decided by _decide: bad input is dead, the rest ambiguous
            return exc

    def _decide(self, row: LedgerRow, answer: Outcome | BaseException) -> _Decision:
        """What an attempt's answer makes of the send (the row is as claimed: attempts counts this one)."""
        if isinstance(answer, InputError):
            return _Decision(row, Terminal(str(answer)), "dead", f"bad message: {answer}")
        if isinstance(answer, BaseException):  # an adapter bug: the provider may have the message
            return _Decision(row, None, "ambiguous", f"{type(answer).__name__}: {answer}")
        if isinstance(answer, Delivered):
            return _Decision(row, answer, "delivered", None, provider_id=answer.provider_id)
        if isinstance(answer, Transient):
            now = self.clock()
            first = row.first_try_at if row.first_try_at is not None else now
            at = self.policies[row.message_class].next_attempt_at(
                first_try_at=first, now=now, attempt=row.attempts, retry_after=answer.retry_after, rng=self.rng
            )
            if at is None:
                return _Decision(row, answer, "dead", f"gave up after {row.attempts} attempts: {answer.reason}")
            return _Decision(row, answer, "retrying", answer.reason, next_attempt_at=at)
        return _Decision(row, answer, "dead", answer.reason, suppress=answer.suppress)

    def _record(self, decided: list[_Decision]) -> None:
        """Write the decisions (one statement), suppress what must be, and hand the outcomes on."""
        now = self.clock()
        self.ledger.finish_many([d.values() for d in decided], now)
        for d in decided:
            if d.suppress and d.outcome is not None:
                self.ledger.suppress(d.row.channel, d.row.to_address, "bounce", getattr(d.outcome, "reason", None))
        if self.on_outcome is None and self.on_outcomes is None:
            return  # nobody reads the rows as they now are: not built
        done = {d.row.key: d.finished(now) for d in decided}
        if self.on_outcome is not None:
            for d in decided:
                self.on_outcome(done[d.row.key], d.outcome)
        if self.on_outcomes is not None and decided:
            self.on_outcomes([(done[d.row.key], d.outcome) for d in decided])

    def run_due(self, limit: int = 1000, *, workers: int = 1) -> list[SendResult]:
        """Attempt every send whose time has come (new ones and retries), at most `limit`."""
        keys = self.ledger.due(self.clock(), limit)
        return self._attempt(keys, keys, workers, known=True) if keys else []

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
