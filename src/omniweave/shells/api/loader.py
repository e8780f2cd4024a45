"""The event-log loader beside the server, in a child process (`omniweave serve`).

Turning events into Parquet is CPU-bound Python; in a thread it would compete with request
handling for the GIL. The child runs the ordinary `BackgroundLoader` (and the log's
`BackgroundCompactor`, every `compaction_interval_seconds`); it dies with the server
(collect/childproc.py: PR_SET_PDEATHSIG, plus EOF on its stdin), holds a lock file so two loaders
never run on one home at once, and on a graceful shutdown drains the inbox before exiting.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import select
import subprocess
import threading
import time
from pathlib import Path

from omniweave.collect.childproc import settings_from_stdin, spawn
from omniweave.runtime import Runtime
from omniweave.settings import Settings

log = logging.getLogger("omniweave.loader")


class LoaderProcess:
    """The event-log loader in a child process, restarted if it dies, its last error readable here."""

    def __init__(self, settings: Settings, restart_delay: float = 1.0):
        self.settings = settings
        self.restart_delay = restart_delay
        self.process: subprocess.Popen[bytes] | None = None
        self.last_error: str | None = None
        self.restarts = 0
        self._stopping = False

    def start(self) -> None:
        code = "from omniweave.shells.api.loader import run_loader_child; run_loader_child()"
        self.process = spawn(
            code, self.settings, args=["--loader-for", str(self.settings.home)], stdout=subprocess.PIPE
        )
        threading.Thread(target=self._watch, args=(self.process,), name="omniweave-loader-watch", daemon=True).start()

    def _watch(self, process: subprocess.Popen[bytes]) -> None:
        """Read the child's reports; start a new child if this one dies while we still need it."""
        assert process.stdout is not None
        for line in process.stdout:
            try:
                error = json.loads(line).get("error")
            except ValueError:
                continue
            if error != self.last_error:  # the server's log says when loading fails and when it works again
                if error is not None:
                    log.warning("the event-log loader failed: %s", error)
                elif self.last_error is not None:
                    log.warning("the event-log loader works again (it had failed: %s)", self.last_error)
            self.last_error = error
        code = process.wait()
        if not self._stopping:
            self.last_error = f"the loader process exited with code {code}; restarted"
            time.sleep(self.restart_delay)
            if not self._stopping:
                self.restarts += 1
                self.start()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 120.0) -> None:
        """Ask the loader to drain the inbox into the log and exit; kill it if it takes too long."""
        self._stopping = True
        if self.process is None or self.process.poll() is not None:
            return
        try:
            assert self.process.stdin is not None
            self.process.stdin.write(b"drain\n")
            self.process.stdin.flush()
            self.process.wait(timeout=timeout)
        except (BrokenPipeError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait()


def run_loader_child() -> None:
    """Entry point of the loader process (see LoaderProcess); reports its state as JSON lines."""
    from omniweave.collect.loader import BackgroundLoader

    settings, pending = settings_from_stdin()
    # Background work: under CPU pressure, answering requests comes first; the inbox is durable
    # and the loader catches up as soon as the collector is less busy. SCHED_IDLE (Linux) runs it
    # only on CPU time nothing else wants; elsewhere, a low priority. Threads started later
    # (the loader's, DuckDB's, Arrow's) inherit it.
    if hasattr(os, "SCHED_IDLE"):
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    else:
        os.nice(10)
    Path(settings.home).mkdir(parents=True, exist_ok=True)
    lock = open(Path(settings.home) / "loader.lock", "w")  # noqa: SIM115 - held for the life of the process
    fcntl.flock(lock, fcntl.LOCK_EX)
    runtime = Runtime(settings)
    loader = BackgroundLoader(
        runtime.store,
        runtime.log,
        settings.loader_batch_size,
        settings.loader_interval_seconds,
        prune=lambda: runtime.store.prune(settings.dedupe_hours * 3600),
        busy_events_per_second=settings.loader_busy_events_per_second,
        max_delay=settings.loader_max_delay_seconds,
    )
    loader.start()
    compactor = None
    if settings.compaction_interval_seconds > 0:  # the log's day partitions, merged beside the loader
        from omniweave.collect.compaction import BackgroundCompactor

        compactor = BackgroundCompactor(runtime, settings.compaction_interval_seconds)
        compactor.start()

    def describe(error: BaseException | None) -> str | None:
        if error is None and compactor is not None and compactor.last_error is not None:
            return f"compaction: {type(compactor.last_error).__name__}: {compactor.last_error}"
        return None if error is None else f"{type(error).__name__}: {error}"

    def report(message: str | None) -> str | None:
        os.write(1, json.dumps({"error": message}).encode() + b"\n")
        return message

    reported = report(None)
    while True:
        if not pending:
            readable, _, _ = select.select([0], [], [], 0.5)
            if readable:
                pending = os.read(0, 1024)
                if not pending:  # the server is gone without asking us to drain
                    os._exit(1)
        if b"drain" in pending:
            if compactor is not None:
                compactor.stop()
            loader.stop(drain=True)
            report(describe(loader.last_error))
            runtime.close()
            return
        pending = b""
        if describe(loader.last_error) != reported:
            reported = report(describe(loader.last_error))
