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

from omniweave.errors import TransientStoreError
from omniweave.storage.compaction import batch_name
from omniweave.storage.eventlog import EventLog, events_to_table
from omniweave.storage.ops.store import OpStore

LOADER = "loader"
LOGGED = "omniweave_logged"
"""A top-level key of an inbox payload whose event its producer already wrote to the event log (a batch
segment evaluation's `Segment Entered`, an import's events for the journeys): the inbox hands it to its other
consumers (journey triggers, live segments) and the loader passes over it, so the log holds it once."""


def load_once(store: OpStore, log: EventLog, batch_size: int = 50_000) -> int:
    """Move one micro-batch from the inbox into the event log; returns how many inbox rows it passed (those
    already in the log, `LOGGED`, are passed over)."""
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
        if event.get(LOGGED):
            continue
        event["source"] = row.source_id
        events.append(event)
    if not events:
        store.commit_position(LOADER, end)
        return len(rows)
    table = events_to_table(events, source="")
    # named after the range: a redo rewrites the same file, a compaction merges it (storage/compaction.py)
    try:
        log.append("events", table, batch_name=batch_name(state.position + 1, end))
    except OSError as exc:  # a full disk, a read-only or unmounted warehouse: the inbox keeps the events
        raise TransientStoreError(
            f"the event log could not be written ({type(exc).__name__}: {exc}); {len(rows)} events stay in the "
            f"inbox ({state.position + 1}-{end}) and are loaded once it can be written again"
        ) from exc
    store.commit_position(LOADER, end)
    return len(rows)


def load_all(
    store: OpStore, log: EventLog, batch_size: int = 50_000, progress: Callable[[int], None] | None = None
) -> int:
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

    Every `interval` seconds it looks at the inbox. When the collector is quiet it loads what is
    there, back to back while a backlog fills whole batches. While the collector is busy (the
    inbox grew faster than `busy_events_per_second`), loading would take CPU from answering
    requests, so it waits, up to `max_delay` seconds for the oldest event not yet loaded; then it
    loads everything pending in one go. Under a sustained load the log is thus at most about
    `max_delay` seconds behind the inbox, in large batches (large Parquet files, little cost per
    event); when it is quiet, about `interval`. The inbox is durable and is what real-time
    consumers follow, so a late log loses nothing.
    """

    PRUNE_EVERY_SECONDS = 60.0

    def __init__(
        self,
        store: OpStore,
        log: EventLog,
        batch_size: int,
        interval: float,
        prune: Callable[[], object] | None = None,
        *,
        busy_events_per_second: float = 0.0,
        max_delay: float = 0.0,
    ):
        self.store, self.log, self.batch_size, self.interval = store, log, batch_size, interval
        self.busy_events_per_second, self.max_delay = busy_events_per_second, max_delay
        self._prune = prune
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="omniweave-loader", daemon=True)
        self.last_error: BaseException | None = None
        self.deferrals = 0

    def start(self) -> None:
        self._thread.start()

    def _busy(self, grew: int, seconds: float) -> bool:
        """Whether to leave the CPU to the collector for now."""
        if self.max_delay <= 0 or self.busy_events_per_second <= 0 or seconds <= 0:
            return False
        if grew / seconds <= self.busy_events_per_second:
            return False
        state = self.store.consumers().get(LOADER)
        oldest = self.store.received_at_after(state.position if state else 0)
        return oldest is not None and time.time() - oldest < self.max_delay

    def _run(self) -> None:
        pruned = time.monotonic()
        last_seq: int | None = None
        last_time = time.monotonic()
        while not self._stop.is_set():
            try:
                seq, now = self.store.max_seq(), time.monotonic()
                busy = last_seq is not None and self._busy(seq - last_seq, now - last_time)
                last_seq, last_time = seq, now
                if busy:
                    self.deferrals += 1
                else:
                    while (
                        load_once(self.store, self.log, self.batch_size) >= self.batch_size and not self._stop.is_set()
                    ):
                        pass  # a backlog: whole batches back to back
                if self._prune and time.monotonic() - pruned >= self.PRUNE_EVERY_SECONDS:
                    self._prune()
                    pruned = time.monotonic()
                self.last_error = None
            except Exception as exc:  # noqa: BLE001 - keep loading; the error is reported on /health
                self.last_error = exc
            self._stop.wait(self.interval)

    def stop(self, drain: bool = True) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        if drain:
            load_all(self.store, self.log, self.batch_size)
