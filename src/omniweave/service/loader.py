"""The loader: moves the inbox into the event log in micro-batches, crash-safely.

Each step reads a range of the inbox, records the range as pending, writes it to the log under
a name derived from the range, then commits the new position. A crash anywhere makes the next
step redo exactly the same range under the same file names, so every acknowledged event ends up
in the log exactly once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import orjson

from omniweave.adapters.eventlog import EventLog, events_to_table
from omniweave.adapters.opstore import OpStore

LOADER = "loader"


def load_once(store: OpStore, log: EventLog, batch_size: int = 50_000) -> int:
    """Move one micro-batch from the inbox into the event log; returns how many events moved."""
    state = store.consumer(LOADER)
    if state.pending_end is None:
        rows = store.read(after=state.position, limit=batch_size)
        if not rows:
            return 0
        end = rows[-1].seq
        store.mark_pending(LOADER, end)
    else:
        end = state.pending_end
        rows = store.read(after=state.position, upto=end)
    events = []
    for row in rows:
        event = orjson.loads(row.payload)
        event["source"] = row.source_id
        events.append(event)
    table = events_to_table(events, source="")
    log.append("events", table, batch_name=f"inbox-{state.position + 1:015d}-{end:015d}")
    store.commit_position(LOADER, end)
    return len(rows)


def load_all(store: OpStore, log: EventLog, batch_size: int = 50_000, progress: Callable[[int], None] | None = None) -> int:
    """Drain the inbox into the log; returns how many events moved."""
    total = 0
    while True:
        moved = load_once(store, log, batch_size)
        if not moved:
            return total
        total += moved
        if progress:
            progress(moved)


class BackgroundLoader:
    """Moves the inbox to the log in a thread until stopped (used by `serve`).

    It takes a batch every `interval` seconds, and back to back while a backlog fills whole
    batches. Waiting between partial batches keeps batches (and Parquet files) large and the cost
    per event low while requests are streaming in: the loader would otherwise chase the
    collector with batches of a few hundred events, each paying for a file of its own."""

    def __init__(self, store: OpStore, log: EventLog, batch_size: int, interval: float,
                 prune: Callable[[], object] | None = None):
        self.store, self.log, self.batch_size, self.interval = store, log, batch_size, interval
        self._prune = prune
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="omniweave-loader", daemon=True)
        self.last_error: BaseException | None = None

    def start(self) -> None:
        self._thread.start()

    PRUNE_EVERY_SECONDS = 60.0

    def _run(self) -> None:
        pruned = time.monotonic()
        while not self._stop.is_set():
            try:
                moved = load_once(self.store, self.log, self.batch_size)
                if self._prune and time.monotonic() - pruned >= self.PRUNE_EVERY_SECONDS:
                    self._prune()
                    pruned = time.monotonic()
                self.last_error = None
            except Exception as exc:  # noqa: BLE001 - keep loading; the error is reported on /health
                self.last_error = exc
                moved = 0
            if moved < self.batch_size:  # caught up: let the next batch fill
                self._stop.wait(self.interval)

    def stop(self, drain: bool = True) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        if drain:
            load_all(self.store, self.log, self.batch_size)
