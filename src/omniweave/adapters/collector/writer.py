"""Group commit: one writer thread commits the rows of many concurrent requests per transaction.

A durable commit (SQLite WAL with synchronous=FULL, or PostgreSQL) costs an fsync; paying it
per request would cap the collector at the disk's fsync rate. Instead each request adds its rows
to the event loop's open group and awaits. While the writer thread commits one group, the next
one fills up; when the commit returns, every request of that group is answered and the next
group goes to the writer. The loop and the thread meet once per group, not once per request,
which matters as much as the fsync: every hand-over between threads costs a GIL round trip.

If a group fails, its requests are retried one by one, so one bad request cannot fail the
others; a request whose rows still cannot be committed gets the error (and no 200).
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

from omniweave.adapters.opstore import OpStore
from omniweave.errors import StoreError, TerminalStoreError

log = logging.getLogger("omniweave.collector")

Row = tuple[str, str, float, bytes]


class _Group:
    """The requests of one event loop waiting for the same commit."""

    __slots__ = ("parts", "futures")

    def __init__(self) -> None:
        self.parts: list[Sequence[Row]] = []
        self.futures: list[asyncio.Future[None]] = []


class _LoopState:
    __slots__ = ("open", "busy")

    def __init__(self) -> None:
        self.open: _Group | None = None
        self.busy = False


class GroupCommitWriter:
    """Commits the inbox rows of many requests in shared transactions, on one thread."""

    def __init__(self, store: OpStore):
        self.store = store
        self._executor: ThreadPoolExecutor | None = None
        self._loops: dict[asyncio.AbstractEventLoop, _LoopState] = {}
        self._closed = False
        self.groups_committed = 0
        self.rows_committed = 0

    def start(self) -> None:
        self._closed = False
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="omniweave-group-commit")

    async def drain(self) -> None:
        """Stop taking requests and wait until every queued group is committed."""
        self._closed = True
        while any(state.busy or state.open for state in self._loops.values()):
            await asyncio.sleep(0.01)

    def stop(self) -> None:
        """End the writer thread (after `drain`, nothing is left to commit)."""
        self._closed = True
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    async def commit(self, rows: Sequence[Row]) -> None:
        """Return once `rows` are durable in the inbox (raises StoreError if they cannot be)."""
        if self._closed or self._executor is None:
            raise TerminalStoreError("the collector is shutting down")
        loop = asyncio.get_running_loop()
        state = self._loops.get(loop)
        if state is None:
            for closed in [other for other in self._loops if other.is_closed()]:
                del self._loops[closed]
            state = self._loops[loop] = _LoopState()
        group = state.open
        if group is None:
            group = state.open = _Group()
        future = loop.create_future()
        group.parts.append(rows)
        group.futures.append(future)
        if not state.busy:
            self._send(loop, state)
        await future

    def _send(self, loop: asyncio.AbstractEventLoop, state: _LoopState) -> None:
        group, state.open, state.busy = state.open, None, True
        assert group is not None and self._executor is not None
        done = loop.run_in_executor(self._executor, self._commit_group, group)
        done.add_done_callback(lambda finished: self._settle(loop, state, group, finished))

    def _commit_group(self, group: _Group) -> list[BaseException | None]:
        """Runs on the writer thread: one transaction for the group, or one per request if that fails."""
        try:
            if len(group.parts) == 1:
                self.store.append(group.parts[0])
            else:
                self.store.append([row for part in group.parts for row in part])
            errors: list[BaseException | None] = [None] * len(group.parts)
        except Exception as exc:  # noqa: BLE001 - isolate the failing request(s), below
            if len(group.parts) == 1:
                errors = [_as_store_error(exc)]
            else:
                log.warning("group commit of %d requests failed (%s); committing them one by one", len(group.parts), exc)
                errors = []
                for part in group.parts:
                    try:
                        self.store.append(part)
                        errors.append(None)
                    except Exception as single:  # noqa: BLE001 - reported to that request
                        errors.append(_as_store_error(single))
        self.groups_committed += 1
        self.rows_committed += sum(len(part) for part, error in zip(group.parts, errors) if error is None)
        return errors

    def _settle(self, loop: asyncio.AbstractEventLoop, state: _LoopState, group: _Group,
                finished: "asyncio.Future[list[BaseException | None]]") -> None:
        state.busy = False
        if finished.cancelled() or finished.exception() is not None:
            failure = finished.exception() if not finished.cancelled() else None
            errors: list[BaseException | None] = [_as_store_error(failure or RuntimeError("cancelled"))] * len(group.futures)
        else:
            errors = finished.result()
        for future, error in zip(group.futures, errors):
            if future.done():  # the client went away; its rows are committed all the same
                continue
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)
        if state.open is not None and self._executor is not None:
            self._send(loop, state)


def _as_store_error(exc: BaseException) -> StoreError:
    if isinstance(exc, StoreError):
        return exc
    log.error("could not commit events to the inbox: %r", exc)
    return TerminalStoreError(f"could not commit events to the inbox: {exc}")
