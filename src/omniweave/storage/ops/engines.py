"""Opening the operational store's SQLAlchemy engine: URL forms, drivers, SQLite's settings."""

from __future__ import annotations

import functools
import sqlite3
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from omniweave.errors import ConfigError

SQLITE_BUSY_SECONDS = 30.0


SYNCHRONOUS = ("full", "normal")
"""SQLite's durability levels a store's URL may ask for (`sqlite:///path?synchronous=normal`); FULL by default.

With WAL, `synchronous=FULL` syncs the log at every commit: a commit survives a power loss. `NORMAL` syncs
it only at checkpoints: a commit still survives the process being killed (`kill -9`: the log is in the
operating system's cache), but a power loss or an OS crash may take the last transactions back (never
a torn database). NORMAL saves one fsync per commit (a few ms each: the journeys worker commits per batch
of runs, per claim and per outcome). What stays durable under NORMAL: the inbox's appender connection
syncs every append (an acknowledged event survives power loss), and the send ledger's claim commits
with FULL (everything committed before it, the send's pending row with its run's step included, is on
disk before any channel is called), so a lost tail can only take back outcomes — rows left `sending`,
which reconciliation settles — never let a message go out twice."""


def open_engine(url: str, **options: Any) -> sa.Engine:
    """An engine for `url` (`postgresql://` uses psycopg 3; a SQLite file's folder is created),
    with SQLite's busy timeout, WAL and the URL's `synchronous` level (FULL unless it says
    `?synchronous=normal`, see SYNCHRONOUS) on every connection. Bad URLs and missing drivers
    are a ConfigError that says what to install."""
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    synchronous = "full"
    if url.startswith("sqlite"):
        url, synchronous = _synchronous_of(url)
    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    try:
        engine = sa.create_engine(url, pool_pre_ping=not url.startswith("sqlite"), **options)
    except (ModuleNotFoundError, sa.exc.ArgumentError) as exc:
        hint = " (pip install 'omniweave[postgres]')" if "postgresql" in url else ""
        raise ConfigError(f"cannot open operational store {url!r}: {exc}{hint}") from exc
    if engine.dialect.name == "sqlite":
        sa.event.listen(engine, "connect", functools.partial(sqlite_pragmas, synchronous=synchronous))
    return engine


def _synchronous_of(url: str) -> tuple[str, str]:
    """A SQLite URL without its `synchronous` parameter, and the level it asks for (a ConfigError naming
    the URL and the levels when it is not one of SYNCHRONOUS)."""
    if "?" not in url or "synchronous=" not in url.split("?", 1)[1]:
        return url, "full"
    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError as exc:
        raise ConfigError(f"cannot open operational store {url!r}: {exc}") from exc
    level = str(parsed.query.get("synchronous") or "").lower()
    if level not in SYNCHRONOUS:
        raise ConfigError(
            f"operational store {url!r}: synchronous={parsed.query.get('synchronous')!r} is not a level; "
            f"expected one of {', '.join(SYNCHRONOUS)}"
        )
    return parsed.difference_update_query(["synchronous"]).render_as_string(hide_password=False), level


def sqlite_pragmas(dbapi_conn: sqlite3.Connection, _record: object, synchronous: str = "full") -> None:
    """Busy timeout, WAL and `synchronous` (FULL unless told, see SYNCHRONOUS) on a new SQLite connection."""
    cur = dbapi_conn.cursor()
    # first: switching to WAL takes a lock too, and without a busy timeout a connection opened while
    # another process writes (parallel imports on a loaded machine) fails at once with "database is locked"
    cur.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_SECONDS * 1000)}")
    _switch_to_wal(cur)
    level = "NORMAL" if synchronous == "normal" else "FULL"  # FULL: an acknowledged write survives power loss too
    cur.execute(f"PRAGMA synchronous={level}")
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
