"""The event log's compaction as a service: `compact` (one pass, `omniweave log compact`) and
`BackgroundCompactor` (a pass every `compaction_interval_seconds`, beside the loader in `omniweave serve`).

The protocol (names, the swap, crashes) is storage/compaction.py's; this module supplies what it needs from
the operational store: the loader's committed position (nothing the loader may still write is merged) and
the event log's lock (storage/locks.py), which privacy deletion takes too, so the two never rewrite the same
files at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import date

from omniweave.collect.loader import LOADER
from omniweave.errors import ConfigError
from omniweave.runtime import Runtime
from omniweave.settings import Settings
from omniweave.storage.compaction import CompactionOptions, CompactionRun, compact_log
from omniweave.storage.locks import LockBusy, eventlog_lock

__all__ = ["BackgroundCompactor", "CompactionRun", "compact", "compaction_options"]


def compaction_options(settings: Settings, grace_seconds: float | None = None) -> CompactionOptions:
    """The `compaction_*` settings (a ConfigError names a bad one); `grace_seconds` overrides the grace."""
    values = {
        "compaction_target_bytes": settings.compaction_target_bytes,
        "compaction_min_age_seconds": settings.compaction_min_age_seconds,
        "compaction_grace_seconds": settings.compaction_grace_seconds if grace_seconds is None else grace_seconds,
    }
    for name, value in values.items():
        if value < 0 or (name == "compaction_target_bytes" and value == 0):
            raise ConfigError(f"setting {name} = {value!r}: expected a positive number")
    return CompactionOptions(
        target_bytes=int(values["compaction_target_bytes"]),
        min_age_seconds=float(values["compaction_min_age_seconds"]),
        grace_seconds=float(values["compaction_grace_seconds"]),
    )


def compact(
    runtime: Runtime,
    days: Sequence[date] | None = None,
    *,
    options: CompactionOptions | None = None,
    wait_seconds: float | None = None,
) -> CompactionRun:
    """One compaction pass over the event log (every day, or only `days`). Waits for the event log's lock
    at most `wait_seconds` at a time (None: as long as it takes; a LockBusy error after it)."""
    options = options or compaction_options(runtime.settings)
    upto = runtime.store.consumer(LOADER).position

    def lock() -> AbstractContextManager[None]:
        return eventlog_lock(runtime.store, timeout=wait_seconds, holder="compaction")

    return compact_log(runtime.log, upto=upto, lock=lock, options=options, now=time.time, days=days)


class BackgroundCompactor:
    """Runs a compaction pass every `interval` seconds in a thread until stopped (`serve`'s loader process).

    A pass that finds the lock taken (a privacy deletion running) gives way and tries at the next interval;
    any other error is kept in `last_error` (reported on /health with the loader's) and the next pass runs."""

    LOCK_WAIT_SECONDS = 1.0

    def __init__(self, runtime: Runtime, interval: float):
        self.runtime, self.interval = runtime, interval
        self.options = compaction_options(runtime.settings)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="omniweave-compactor", daemon=True)
        self.last_error: BaseException | None = None
        self.passes = 0

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                compact(self.runtime, options=self.options, wait_seconds=self.LOCK_WAIT_SECONDS)
                self.passes += 1
                self.last_error = None
            except LockBusy:
                continue
            except Exception as exc:  # noqa: BLE001 - keep compacting; the error is reported on /health
                self.last_error = exc

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)
