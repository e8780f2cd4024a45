"""The operational store: sources and keys, the inbox of accepted events, consumer positions.

SQLite (embedded default) or PostgreSQL, through SQLAlchemy Core. The tables are defined per
area in `storage/ops/tables/`, and the schema is brought up to date by Alembic revisions
(`storage/ops/migrations/`) every time a store opens (`storage/ops/migrate.py`).

The inbox is a durable, ordered feed: every accepted event gets a sequence number when it is
committed; consumers (the event-log loader, live segments; journey triggers later) each keep
their own position. Deduplication by (source, messageId) is the inbox's unique key, so it
survives restarts; rows stay at least `dedupe_hours` and until every consumer has passed them.
"""

from __future__ import annotations

import secrets
import sqlite3
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from omniweave.errors import TerminalStoreError, TransientStoreError
from omniweave.storage.ops import apikeys, migrate
from omniweave.storage.ops.engines import SQLITE_BUSY_SECONDS, open_engine, sqlite_pragmas
from omniweave.storage.ops.tables import consumers, imports, inbox, metadata, secret_keys, sources

__all__ = [
    "SQLITE_BUSY_SECONDS",
    "ConsumerState",
    "InboxRow",
    "OpStore",
    "SecretKeyInfo",
    "consumers",
    "imports",
    "inbox",
    "metadata",
    "secret_keys",
    "sources",
]


@dataclass(frozen=True)
class InboxRow:
    seq: int
    source_id: str
    payload: bytes


@dataclass(frozen=True)
class ConsumerState:
    position: int
    pending_end: int | None


@dataclass(frozen=True)
class SecretKeyInfo:
    """What the store knows about a secret key: never the key itself."""

    prefix: str
    name: str
    created_at: float

    def to_dict(self) -> dict[str, object]:
        return {"prefix": self.prefix, "name": self.name, "created_at": self.created_at}


class OpStore:
    """The operational store behind one SQLAlchemy engine."""

    def __init__(self, url: str):
        """Open the store at `url` (SQLite file or PostgreSQL) and migrate its schema to the newest
        revision. A bad URL or missing driver is a ConfigError; a store that cannot be reached is
        a TransientStoreError."""
        self.engine = open_engine(url)
        self.dialect = self.engine.dialect.name
        self._appender: sqlite3.Connection | None = None  # SQLite: append's own connection
        self._appender_lock = threading.Lock()
        self._sqlite_insert: dict[int, str] = {}
        migrate.upgrade(self.engine)

    def close(self) -> None:
        if self._appender is not None:
            self._appender.close()
            self._appender = None
        self.engine.dispose()

    # --- sources and keys -------------------------------------------------------------
    def create_source(self, name: str) -> tuple[str, str]:
        """Create a source; returns (source id, write key). Names are unique."""
        source_id = uuid.uuid4().hex[:16]
        write_key = "wk_" + secrets.token_urlsafe(24)
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    sources.insert().values(id=source_id, name=name, write_key=write_key, created_at=time.time())
                )
        except sa.exc.IntegrityError as exc:
            raise TerminalStoreError(f"a source named {name!r} already exists") from exc
        return source_id, write_key

    def list_sources(self) -> list[dict[str, object]]:
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.select(sources).order_by(sources.c.created_at))]

    def source_for_write_key(self, write_key: str) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sources.c.id).where(sources.c.write_key == write_key)).scalar()

    def ensure_source(self, name: str) -> str:
        """The id of the source called `name`, created if needed (importers use one per kind)."""
        with self.engine.connect() as conn:
            found = conn.execute(sa.select(sources.c.id).where(sources.c.name == name)).scalar()
        if found:
            return found
        try:
            return self.create_source(name)[0]
        except TerminalStoreError:
            with self.engine.connect() as conn:
                return conn.execute(sa.select(sources.c.id).where(sources.c.name == name)).scalar_one()

    def create_secret_key(self, name: str) -> str:
        """Make a secret key for the REST API and return it: the only time it is ever shown, since
        the store keeps just its prefix and hash."""
        for attempt in range(3):  # a new key's 48-bit prefix may, once in an age, be taken already
            made = apikeys.new_secret_key()
            try:
                with self.engine.begin() as conn:
                    conn.execute(
                        secret_keys.insert().values(
                            prefix=made.prefix, key_hash=made.key_hash, name=name, created_at=time.time()
                        )
                    )
                return made.key
            except sa.exc.IntegrityError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def secret_key_name(self, key: object) -> str | None:
        """Who the secret key `key` was made for, or None if it is not a valid key (unknown,
        revoked, malformed, or not a string at all)."""
        prefix = apikeys.lookup_prefix(key)
        if prefix is None:
            return None
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(secret_keys.c.key_hash, secret_keys.c.name).where(secret_keys.c.prefix == prefix)
            ).first()
        if row is None or not apikeys.matches(str(key), row[0]):
            return None
        return str(row[1])

    def is_secret_key(self, key: object) -> bool:
        """Whether `key` opens the REST API."""
        return self.secret_key_name(key) is not None

    def list_secret_keys(self) -> list[SecretKeyInfo]:
        """The secret keys by prefix, name and creation time (the keys themselves are not kept)."""
        query = sa.select(secret_keys.c.prefix, secret_keys.c.name, secret_keys.c.created_at).order_by(
            secret_keys.c.created_at
        )
        with self.engine.connect() as conn:
            return [SecretKeyInfo(str(r[0]), str(r[1]), float(r[2])) for r in conn.execute(query)]

    def revoke_secret_key(self, prefix: str) -> bool:
        """Delete the secret key with this prefix; False if there was none."""
        with self.engine.begin() as conn:
            return conn.execute(secret_keys.delete().where(secret_keys.c.prefix == prefix)).rowcount > 0

    # --- the inbox ----------------------------------------------------------------------
    def _insert_ignoring_duplicates(self) -> sa.Insert:
        if self.dialect == "postgresql":
            return postgresql.insert(inbox).on_conflict_do_nothing(constraint="inbox_dedupe")
        if self.dialect == "sqlite":
            return sqlite.insert(inbox).on_conflict_do_nothing()
        return inbox.insert()

    def append(self, rows: Sequence[tuple[str, str, float, bytes]]) -> int:
        """Commit (source_id, message_id, received_at, payload) rows; duplicates are ignored.

        Returns when the rows are durable. All rows commit in one transaction, in order.
        """
        if not rows:
            return 0
        if self.dialect == "sqlite":
            return self._append_sqlite(rows)
        params = [{"source_id": s, "message_id": m, "received_at": r, "payload": p} for s, m, r, p in rows]
        try:
            with self.engine.begin() as conn:
                if self.dialect == "postgresql":
                    # serialise writers so that sequence order is commit order for consumers
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(727274)"))
                if self.dialect == "postgresql":  # executemany's rowcount is -1 there: count RETURNING rows
                    return len(conn.execute(self._insert_ignoring_duplicates().returning(inbox.c.seq), params).all())
                result = conn.execute(self._insert_ignoring_duplicates(), params)
                return max(result.rowcount, 0)
        except sa.exc.OperationalError as exc:
            raise TransientStoreError(f"could not commit {len(rows)} events to the inbox: {exc}") from exc

    _SQLITE_ROWS_PER_INSERT = 200  # 4 parameters a row stays under SQLite's oldest limit of 999

    def _append_sqlite(self, rows: Sequence[tuple[str, str, float, bytes]]) -> int:
        """SQLite: on a connection of its own, straight through the driver (the collector commits
        many small groups a second, and SQLAlchemy's bookkeeping per transaction would cost more
        than the inserts); multi-row INSERTs, so the driver runs (and releases the GIL) once per
        200 rows rather than once per row."""
        size = self._SQLITE_ROWS_PER_INSERT
        with self._appender_lock:
            connection = self._sqlite_appender()
            try:
                connection.execute("BEGIN IMMEDIATE")
                before = connection.total_changes
                for start in range(0, len(rows), size):
                    chunk = rows[start : start + size]
                    sql = self._sqlite_insert.get(len(chunk))
                    if sql is None:
                        sql = self._sqlite_insert[len(chunk)] = (
                            "INSERT INTO inbox (source_id, message_id, received_at, payload) VALUES "
                            + ",".join(["(?,?,?,?)"] * len(chunk))
                            + " ON CONFLICT DO NOTHING"
                        )
                    connection.execute(sql, tuple(value for row in chunk for value in row))
                inserted = connection.total_changes - before
                connection.execute("COMMIT")
            except sqlite3.Error as exc:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                if isinstance(exc, sqlite3.OperationalError):
                    raise TransientStoreError(f"could not commit {len(rows)} events to the inbox: {exc}") from exc
                raise
            return inserted

    def _sqlite_appender(self) -> sqlite3.Connection:
        """The connection `append` uses on SQLite (opened on first use; used under `_appender_lock`)."""
        if self._appender is None:
            connection = sqlite3.connect(
                self.engine.url.database or ":memory:", isolation_level=None, check_same_thread=False
            )
            sqlite_pragmas(connection, None)
            self._appender = connection
        return self._appender

    def read(self, after: int, limit: int | None = None, upto: int | None = None) -> list[InboxRow]:
        """Inbox rows with seq > after (and <= upto), in order."""
        query = sa.select(inbox.c.seq, inbox.c.source_id, inbox.c.payload).where(inbox.c.seq > after)
        if upto is not None:
            query = query.where(inbox.c.seq <= upto)
        query = query.order_by(inbox.c.seq)
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return [InboxRow(int(r[0]), r[1], bytes(r[2])) for r in conn.execute(query)]

    def max_seq(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(inbox.c.seq), 0))).scalar_one())

    def received_at_after(self, seq: int) -> float | None:
        """When the first inbox row after `seq` was received (epoch seconds), None if none."""
        query = sa.select(inbox.c.received_at).where(inbox.c.seq > seq).order_by(inbox.c.seq).limit(1)
        with self.engine.connect() as conn:
            value = conn.execute(query).scalar()
        return None if value is None else float(value)

    def inbox_count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(inbox)).scalar_one())

    def prune(self, dedupe_seconds: float, now: float | None = None) -> int:
        """Drop rows every consumer has passed and that are older than the dedupe window."""
        now = time.time() if now is None else now
        with self.engine.begin() as conn:
            low = conn.execute(sa.select(sa.func.min(consumers.c.position))).scalar()
            if low is None:
                return 0
            result = conn.execute(inbox.delete().where(inbox.c.seq <= low, inbox.c.received_at < now - dedupe_seconds))
            return max(result.rowcount, 0)

    # --- consumers ----------------------------------------------------------------------
    def consumer(self, name: str) -> ConsumerState:
        """A consumer's saved position (created at 0 the first time it is asked for; two processes asking at
        once, say a server's loader and another's, both get the one row: the second insert does nothing)."""
        query = sa.select(consumers.c.position, consumers.c.pending_end).where(consumers.c.name == name)
        with self.engine.begin() as conn:
            row = conn.execute(query).first()
            if row is None:
                dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
                conn.execute(
                    dialect.insert(consumers)
                    .values(name=name, position=0, pending_end=None, updated_at=time.time())
                    .on_conflict_do_nothing(index_elements=["name"])
                )
                row = conn.execute(query).first()
            assert row is not None
            return ConsumerState(int(row[0]), None if row[1] is None else int(row[1]))

    def mark_pending(self, name: str, pending_end: int) -> None:
        """Record that `name` is about to process up to `pending_end` (so a retry redoes exactly that)."""
        with self.engine.begin() as conn:
            conn.execute(
                consumers.update()
                .where(consumers.c.name == name)
                .values(pending_end=pending_end, updated_at=time.time())
            )

    def commit_position(self, name: str, position: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                consumers.update()
                .where(consumers.c.name == name)
                .values(position=position, pending_end=None, updated_at=time.time())
            )

    def consumers(self) -> dict[str, ConsumerState]:
        with self.engine.connect() as conn:
            return {
                r[0]: ConsumerState(int(r[1]), r[2])
                for r in conn.execute(sa.select(consumers.c.name, consumers.c.position, consumers.c.pending_end))
            }

    # --- import log ---------------------------------------------------------------------
    def record_import(self, kind: str, file: str, read: int, imported: int, duplicate: int, rejected: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                imports.insert().values(
                    kind=kind,
                    file=file,
                    rows_read=read,
                    rows_imported=imported,
                    rows_duplicate=duplicate,
                    rows_rejected=rejected,
                    finished_at=time.time(),
                )
            )
