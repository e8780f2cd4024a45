"""Opening the operational store's SQLAlchemy engine: URL forms, drivers, SQLite's settings."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from omniweave.errors import ConfigError

SQLITE_BUSY_SECONDS = 30.0


def open_engine(url: str, **options: Any) -> sa.Engine:
    """An engine for `url` (`postgresql://` uses psycopg 3; a SQLite file's folder is created),
    with SQLite's busy timeout, WAL and full sync on every connection. Bad URLs and missing
    drivers are a ConfigError that says what to install."""
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    try:
        engine = sa.create_engine(url, pool_pre_ping=not url.startswith("sqlite"), **options)
    except (ModuleNotFoundError, sa.exc.ArgumentError) as exc:
        hint = " (pip install 'omniweave[postgres]')" if "postgresql" in url else ""
        raise ConfigError(f"cannot open operational store {url!r}: {exc}{hint}") from exc
    if engine.dialect.name == "sqlite":
        sa.event.listen(engine, "connect", sqlite_pragmas)
    return engine


def sqlite_pragmas(dbapi_conn: sqlite3.Connection, _record: object) -> None:
    """Busy timeout, WAL and synchronous=FULL on a new SQLite connection."""
    cur = dbapi_conn.cursor()
    # first: switching to WAL takes a lock too, and without a busy timeout a connection opened while
    # another process writes (parallel imports on a loaded machine) fails at once with "database is locked"
    cur.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_SECONDS * 1000)}")
    _switch_to_wal(cur)
    cur.execute("PRAGMA synchronous=FULL")  # an acknowledged event survives power loss too
    cur.close()


def _switch_to_wal(cur: sqlite3.Cursor) -> None:
    """Put the database file in WAL mode (a property of the file: once is enough).

    The switch needs the file to itself, and while another connection holds a write lock in the
    old journal mode SQLite refuses it at once, without waiting out the busy timeout (parallel
    importers opening a new store together failed so in CI). So: only switch when the file is not
    in WAL yet, and retry a refused switch for up to SQLITE_BUSY_SECONDS.
    """
    deadline = time.monotonic() + SQLITE_BUSY_SECONDS
    while True:
        try:
            if str(cur.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)
