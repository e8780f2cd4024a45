"""Locks between processes that rewrite the event log's files: compaction and privacy deletion.

Both read a set of Parquet files and write others in their place; run at once, one could write back
rows the other just removed (a compaction merging a file a deletion is scrubbing). `eventlog_lock`
lets one of them at a time touch the log's files. It lives with the operational store, which every
process of one installation shares, and is released by the operating system or the database when its
holder dies (a `kill -9` leaves no stale lock):

- SQLite (one machine): `flock` on a file beside the database (`<database>-eventlog.lock`);
- PostgreSQL (several machines): a session advisory lock held on a connection of its own;
- an in-memory SQLite store: a lock of this process.

The loader does not take it: its files are new, under names no compaction or deletion is working on.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa

from omniweave.errors import TransientStoreError
from omniweave.storage.ops.store import OpStore

EVENTLOG_PG_LOCK = 727276
"""Advisory lock id of the event log's rewriters (migrations use 727275, the inbox's writers 727274)."""

_POLL_SECONDS = 0.05
_MEMORY_LOCKS: dict[int, threading.Lock] = {}
_MEMORY_GUARD = threading.Lock()


class LockBusy(TransientStoreError):
    """Another process held the event log's lock for longer than the caller would wait."""


@contextmanager
def eventlog_lock(store: OpStore, timeout: float | None = None, holder: str = "") -> Iterator[None]:
    """Hold the event log's rewrite lock for the `with` block; wait at most `timeout` seconds for it (None:
    as long as it takes), else raise LockBusy naming `holder` (what wanted it)."""
    if store.dialect == "postgresql":
        with _pg_lock(store, timeout, holder):
            yield
        return
    database = store.engine.url.database
    if not database or database == ":memory:":
        with _memory_lock(id(store), timeout, holder):
            yield
        return
    with _file_lock(f"{os.path.abspath(database)}-eventlog.lock", timeout, holder):
        yield


def _busy(holder: str, timeout: float | None) -> LockBusy:
    return LockBusy(
        f"{holder or 'a writer of the event log'} waited {timeout:g} s for the event log's lock, held by another"
        " process (a compaction or a privacy deletion); try again when it is done"
    )


@contextmanager
def _file_lock(path: str, timeout: float | None, holder: str) -> Iterator[None]:
    deadline = None if timeout is None else time.monotonic() + timeout
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if deadline is not None and time.monotonic() >= deadline:
                    raise _busy(holder, timeout) from None
                time.sleep(_POLL_SECONDS)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextmanager
def _pg_lock(store: OpStore, timeout: float | None, holder: str) -> Iterator[None]:
    deadline = None if timeout is None else time.monotonic() + timeout
    with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        while not conn.execute(sa.text("SELECT pg_try_advisory_lock(:id)"), {"id": EVENTLOG_PG_LOCK}).scalar():
            if deadline is not None and time.monotonic() >= deadline:
                raise _busy(holder, timeout)
            time.sleep(_POLL_SECONDS)
        try:
            yield
        finally:
            conn.execute(sa.text("SELECT pg_advisory_unlock(:id)"), {"id": EVENTLOG_PG_LOCK})


@contextmanager
def _memory_lock(key: int, timeout: float | None, holder: str) -> Iterator[None]:
    with _MEMORY_GUARD:
        lock = _MEMORY_LOCKS.setdefault(key, threading.Lock())
    if not lock.acquire(timeout=-1 if timeout is None else timeout):
        raise _busy(holder, timeout)
    try:
        yield
    finally:
        lock.release()
