"""Group commit: one writer thread commits the rows of many concurrent requests per transaction.

A durable commit (SQLite WAL with synchronous=FULL, or PostgreSQL) costs an fsync; paying it
per request would cap the collector at the disk's fsync rate. Instead each request puts its rows
and an asyncio future on a queue and awaits the future. The writer thread takes everything
queued, commits it in one transaction, and answers all those requests with one
`call_soon_threadsafe` per event loop; then it takes whatever queued up meanwhile. The writer
never waits for the event loop between commits, so under load it is always committing.

If a group fails, its requests are retried one by one, so one bad request cannot fail the
others; a request whose rows still cannot be committed gets the error (and no 200).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Sequence

from omniweave.adapters.opstore import OpStore
from omniweave.errors import StoreError, TerminalStoreError

log = logging.getLogger("omniweave.collector")

Row = tuple[str, str, float, bytes]
_Pending = tuple[Sequence[Row], "asyncio.Future[None]", asyncio.AbstractEventLoop]
_STOP = object()


def _settle(futures: list[asyncio.Future[None]], errors: list[BaseException | None]) -> None:
    """Runs on the event loop: answer every request of a group."""
    for future, error in zip(futures, errors):
        if future.done():  # the client went away; its rows are committed all the same
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)


class GroupCommitWriter:
    """Commits the inbox rows of many requests in shared transactions, on one thread."""

    def __init__(self, store: OpStore):
        self.store = store
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._accepting = False
        self.groups_committed = 0
        self.requests_committed = 0
        self.rows_committed = 0
        self.commit_seconds = 0.0  # time spent in store.append, for /health

    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="omniweave-group-commit", daemon=True)
            self._thread.start()
        self._accepting = True

    async def drain(self) -> None:
        """Stop taking requests, commit everything queued, and end the writer thread."""
        await asyncio.get_running_loop().run_in_executor(None, self.stop)

    def stop(self) -> None:
        """Like `drain`, for callers outside an event loop."""
        self._accepting = False
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join()

    async def commit(self, rows: Sequence[Row]) -> None:
        """Return once `rows` are durable in the inbox (raises StoreError if they cannot be)."""
        if not self._accepting:
            if self._thread is not None:
                raise TerminalStoreError("the collector is shutting down")
            self.start()  # an app used without its lifespan (a bare TestClient, say)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._queue.put((rows, future, loop))
        await future

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                break
            group: list[_Pending] = [first]  # type: ignore[list-item]
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stopping = True
                    break
                group.append(item)  # type: ignore[arg-type]
            self._commit_group(group)
        # a request that slipped in while we were told to stop still gets its commit
        late: list[_Pending] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not _STOP:
                late.append(item)  # type: ignore[arg-type]
        if late:
            self._commit_group(late)

    def _commit_group(self, group: list[_Pending]) -> None:
        started = time.perf_counter()
        errors: list[BaseException | None]
        try:
            if len(group) == 1:
                self.store.append(group[0][0])
            else:
                self.store.append([row for rows, _, _ in group for row in rows])
            errors = [None] * len(group)
        except Exception as exc:  # noqa: BLE001 - isolate the failing request(s), below
            if len(group) == 1:
                errors = [_as_store_error(exc)]
            else:
                log.warning("group commit of %d requests failed (%s); committing them one by one", len(group), exc)
                errors = []
                for rows, _, _ in group:
                    try:
                        self.store.append(rows)
                        errors.append(None)
                    except Exception as single:  # noqa: BLE001 - reported to that request
                        errors.append(_as_store_error(single))
        self.commit_seconds += time.perf_counter() - started
        self.groups_committed += 1
        self.requests_committed += sum(1 for error in errors if error is None)
        self.rows_committed += sum(len(rows) for (rows, _, _), error in zip(group, errors) if error is None)
        by_loop: dict[asyncio.AbstractEventLoop, tuple[list[asyncio.Future[None]], list[BaseException | None]]] = {}
        for (_, future, loop), error in zip(group, errors):
            futures, errs = by_loop.setdefault(loop, ([], []))
            futures.append(future)
            errs.append(error)
        for loop, (futures, errs) in by_loop.items():
            try:
                loop.call_soon_threadsafe(_settle, futures, errs)
            except RuntimeError:  # that event loop has closed; nobody is waiting any more
                pass

    def stats(self) -> dict[str, float]:
        """Groups, requests and events committed so far, and the mean group size and commit time."""
        groups = max(self.groups_committed, 1)
        return {
            "groups": self.groups_committed,
            "requests": self.requests_committed,
            "events": self.rows_committed,
            "requests_per_group": round(self.requests_committed / groups, 1),
            "commit_ms": round(self.commit_seconds / groups * 1000, 2),
        }


def _as_store_error(exc: BaseException) -> StoreError:
    if isinstance(exc, StoreError):
        return exc
    log.error("could not commit events to the inbox: %r", exc)
    return TerminalStoreError(f"could not commit events to the inbox: {exc}")
