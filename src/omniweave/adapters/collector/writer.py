"""Group commit: one writer thread commits the rows of many concurrent requests per transaction.

A durable commit (SQLite WAL with synchronous=FULL, or PostgreSQL) costs an fsync; paying it
per request would cap the collector at the disk's fsync rate. Instead each request hands its
rows to `GroupCommitWriter.commit` and awaits; the writer thread takes everything queued so far,
commits it in one transaction, then wakes every waiting request (one `call_soon_threadsafe` per
event loop per group). A request is answered only after its rows are durable.

If a group fails, each request in it is retried on its own, so one bad request cannot fail the
others; requests whose rows still cannot be committed get the error.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from typing import Sequence

from omniweave.adapters.opstore import OpStore
from omniweave.errors import StoreError, TerminalStoreError

log = logging.getLogger("omniweave.collector")

Row = tuple[str, str, float, bytes]
_Pending = tuple[Sequence[Row], "asyncio.Future[None]", asyncio.AbstractEventLoop]
_STOP = object()


def _settle(futures: list["asyncio.Future[None]"], errors: list[BaseException | None]) -> None:
    for future, error in zip(futures, errors):
        if future.done():  # the request was cancelled (client went away); its rows are committed anyway
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)


class GroupCommitWriter:
    """Commits batches of inbox rows from many requests in shared transactions, on one thread."""

    def __init__(self, store: OpStore, max_group_rows: int = 10_000):
        self.store = store
        self.max_group_rows = max_group_rows
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="omniweave-group-commit", daemon=True)
        self._stopped = False
        self.groups_committed = 0
        self.rows_committed = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Commit everything already queued, then end the thread."""
        if self._stopped:
            return
        self._stopped = True
        self._queue.put(_STOP)
        if self._thread.is_alive():
            self._thread.join()

    async def commit(self, rows: Sequence[Row]) -> None:
        """Return once `rows` are durable in the inbox (raises StoreError if they cannot be)."""
        if self._stopped or not self._thread.is_alive():
            raise TerminalStoreError("the collector is shutting down")
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
            size = len(group[0][0])
            while size < self.max_group_rows:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stopping = True
                    break
                group.append(item)  # type: ignore[arg-type]
                size += len(item[0])  # type: ignore[index]
            self._commit_group(group)

    def _commit_group(self, group: list[_Pending]) -> None:
        errors: list[BaseException | None]
        try:
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
        self.groups_committed += 1
        self.rows_committed += sum(len(rows) for (rows, _, _), e in zip(group, errors) if e is None)
        by_loop: dict[asyncio.AbstractEventLoop, tuple[list["asyncio.Future[None]"], list[BaseException | None]]] = {}
        for (_, future, loop), error in zip(group, errors):
            futures, errs = by_loop.setdefault(loop, ([], []))
            futures.append(future)
            errs.append(error)
        for loop, (futures, errs) in by_loop.items():
            try:
                loop.call_soon_threadsafe(_settle, futures, errs)
            except RuntimeError:  # that event loop has closed; nobody is waiting any more
                pass


def _as_store_error(exc: BaseException) -> StoreError:
    if isinstance(exc, StoreError):
        return exc
    log.error("could not commit events to the inbox: %r", exc)
    return TerminalStoreError(f"could not commit events to the inbox: {exc}")
