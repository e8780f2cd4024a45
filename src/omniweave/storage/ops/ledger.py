"""The send ledger and the suppression list: the SQL behind `channels.dispatch`.

Every state change is one statement guarded by the state it expects (`WHERE status IN …`), so
two workers never both claim a row and a replayed trigger never makes a second row: the key is
the primary key and a second insert of it is ignored.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from omniweave.storage.ops.among import among
from omniweave.storage.ops.tables import sends, suppressions

CLAIMABLE = ("pending", "retrying")
STATUSES = ("pending", "sending", "retrying", "delivered", "dead", "suppressed", "ambiguous")


@dataclass(frozen=True)
class LedgerRow:
    """One send as the ledger holds it."""

    key: str
    channel: str
    to_address: str
    person_id: str | None
    campaign: str | None
    message_name: str | None
    message_class: str
    content: bytes
    status: str
    attempts: int
    provider_id: str | None
    reason: str | None
    created_at: float
    first_try_at: float | None
    next_attempt_at: float | None
    updated_at: float

    def to_dict(self) -> dict[str, object]:
        """The row without its content (which may hold personal data)."""
        out = {k: v for k, v in self.__dict__.items() if k != "content"}
        return out


def _rows(result: sa.CursorResult[Any]) -> Iterator[LedgerRow]:
    """The rows of `result` (every column of `sends`) as LedgerRows, the column names read once (`LedgerRow(**m)`
    on a row mapping builds its key view again for every row: slow)."""
    keys = list(result.keys())
    for row in result:
        yield LedgerRow(**dict(zip(keys, row, strict=True)))


def insert_on(conn: sa.Connection, row: dict[str, object], now: float) -> bool:
    """Write a new pending row on the caller's connection (in its transaction, e.g. with a journey run's
    step); False when the key is already in the ledger."""
    values = {
        "status": "pending",
        "attempts": 0,
        "created_at": now,
        "updated_at": now,
        "first_try_at": None,
        "next_attempt_at": None,
        "provider_id": None,
        "reason": None,
        **row,
    }
    if conn.dialect.name in ("sqlite", "postgresql"):  # one statement: the key's conflict is the answer
        insert = (sqlite if conn.dialect.name == "sqlite" else postgresql).insert(sends).on_conflict_do_nothing()
        return bool(conn.execute(insert, values).rowcount == 1)
    if conn.execute(sa.select(sends.c.key).where(sends.c.key == row["key"])).first() is not None:
        return False
    conn.execute(sends.insert(), values)
    return True


def insert_many_on(conn: sa.Connection, rows: Sequence[dict[str, object]], now: float) -> set[str]:
    """`insert_on` for many rows on the caller's connection: the keys already there read in one query per 500,
    the others inserted in one executemany (a key a concurrent writer inserted meanwhile is left as it is,
    its conflict ignored); the keys that were new."""
    fresh: set[str] = set()
    if conn.dialect.name not in ("sqlite", "postgresql"):
        return {str(r["key"]) for r in rows if insert_on(conn, r, now)}
    dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
    base = {
        "status": "pending",
        "attempts": 0,
        "created_at": now,
        "updated_at": now,
        "first_try_at": None,
        "next_attempt_at": None,
        "provider_id": None,
        "reason": None,
    }
    statement = dialect.insert(sends).on_conflict_do_nothing()
    if conn.dialect.name == "postgresql" and rows:  # no read first: the rows that went in say which keys were new
        unique = list({str(r["key"]): {**base, **r} for r in rows}.values())
        columns = {c.name: [v.get(c.name) for v in unique] for c in sends.c}
        if conn.dialect.driver == "psycopg":  # the contents as a binary array: see `_INSERT_UNNEST_BINARY`
            found = conn.exec_driver_sql(_INSERT_UNNEST_BINARY, columns)
        else:
            found = conn.execute(_INSERT_UNNEST, columns)
        fresh.update(str(k) for (k,) in found)
        return fresh
    for start in range(0, len(rows), 500):
        chunk = rows[start : start + 500]
        there = {
            str(k) for (k,) in conn.execute(sa.select(sends.c.key).where(sends.c.key.in_([r["key"] for r in chunk])))
        }
        values = {str(r["key"]): {**base, **r} for r in chunk if str(r["key"]) not in there}
        if values:  # executemany: one statement compiled once (a multi-row VALUES is compiled per size)
            conn.execute(statement, list(values.values()))
        fresh.update(values)
    return fresh


def _insert_unnest() -> Any:
    """`insert_many_on` on PostgreSQL: the rows as one array per column, unnested into rows, a key already there
    left as it is (ON CONFLICT DO NOTHING) and the new keys returned; compiled once, one round trip, however
    many rows (a multi-row VALUES is parsed again by the driver for every batch: 13% of a step, profiled)."""

    def element(c: sa.Column[Any]) -> Any:  # text without a length: a cast to varchar(n) would cut, not fail
        return postgresql.BYTEA if c.name == "content" else sa.String if isinstance(c.type, sa.String) else c.type

    arrays = [sa.bindparam(c.name, type_=postgresql.ARRAY(element(c))) for c in sends.c]
    rows = sa.func.unnest(*arrays).table_valued(*(sa.column(c.name, c.type) for c in sends.c)).render_derived()
    return (
        postgresql.insert(sends)
        .from_select([c.name for c in sends.c], sa.select(*rows.c))
        .on_conflict_do_nothing()
        .returning(sends.c.key)
    )


_INSERT_UNNEST = _insert_unnest()


def _insert_unnest_binary() -> str:
    """`_INSERT_UNNEST` as psycopg's SQL with the `content` array sent in binary (`%(content)b`): in text an
    array of bytea is every byte in hex, then escaped for the array literal in Python — 0.2-0.4 ms a row of a
    3 KB e-mail on the client (the largest cost of a send in the engine's batch, profiled), 1.5 ms for 500 in
    binary. psycopg takes a format per parameter; SQLAlchemy writes every one as `%(name)s`."""
    from sqlalchemy.dialects.postgresql import psycopg

    sql = str(_INSERT_UNNEST.compile(dialect=psycopg.dialect()))
    text, binary = "%(content)s::BYTEA[]", "%(content)b::BYTEA[]"
    if sql.count(text) != 1:  # pragma: no cover - a SQLAlchemy that writes its parameters otherwise
        raise RuntimeError(f"the ledger's insert does not name its content once as {text!r}: {sql}")
    return sql.replace(text, binary)


_INSERT_UNNEST_BINARY = _insert_unnest_binary()


_CLAIM_ANY = (
    sends.update()
    .where(
        sends.c.key == sa.func.any(sa.bindparam("keys", type_=postgresql.ARRAY(sa.String))),
        sends.c.status.in_(CLAIMABLE),
    )
    .values(
        status="sending",
        attempts=sends.c.attempts + 1,
        first_try_at=sa.func.coalesce(sends.c.first_try_at, sa.bindparam("now", type_=sa.Float)),
        next_attempt_at=None,
        updated_at=sa.bindparam("now", type_=sa.Float),
    )
    .returning(*sends.c)
)
"""`claim_many` on PostgreSQL: the keys as one array parameter, so the statement is compiled once and sent in
one round trip whatever the number of keys (an IN list is compiled again for every length)."""


def _unnest_outcomes() -> sa.Update:
    """`finish_many` on PostgreSQL: the outcomes as five arrays unnested into rows and joined on the key; one
    statement, compiled once (a VALUES list is compiled for every batch) and sent in one round trip."""
    arrays = [
        sa.bindparam(name, type_=postgresql.ARRAY(kind))
        for name, kind in (("k", sa.String), ("s", sa.String), ("r", sa.String), ("p", sa.String), ("n", sa.Float))
    ]
    v = (
        sa.func.unnest(*arrays)
        .table_valued(
            sa.column("k", sa.String),
            sa.column("s", sa.String),
            sa.column("r", sa.String),
            sa.column("p", sa.String),
            sa.column("n", sa.Float),
        )
        .render_derived(name="outcome")
    )
    return (
        sends.update()
        .where(sends.c.key == v.c.k, sends.c.status == "sending")
        .values(
            status=v.c.s,
            reason=v.c.r,
            provider_id=sa.func.coalesce(v.c.p, sends.c.provider_id),
            next_attempt_at=v.c.n,
            updated_at=sa.bindparam("now", type_=sa.Float),
        )
    )


_FINISH_UNNEST = _unnest_outcomes()


class Ledger:
    """The `sends` and `suppressions` tables of one operational store (its SQLAlchemy engine)."""

    def __init__(self, engine: sa.Engine):
        self.engine = engine

    # --- the ledger -----------------------------------------------------------------------------
    def insert(self, row: dict[str, object]) -> bool:
        """Write a new pending row; False when the key is already in the ledger (nothing changed)."""
        with self.engine.begin() as conn:
            return insert_on(conn, row, time.time())

    @contextlib.contextmanager
    def _durable(self) -> Iterator[sa.Connection]:
        """A transaction whose commit is on disk when it returns, also on a SQLite store opened with
        `synchronous=normal` (storage/ops/engines.py): the connection commits it with FULL, which syncs the
        write-ahead log and with it every transaction committed before (the send's pending row and its run's
        step), then goes back to its level. A claim is what precedes a channel call: a power loss may then
        take back an outcome (the row stays `sending`, for reconciliation), never the claim."""
        with self.engine.connect() as conn:
            level = None
            if conn.dialect.name == "sqlite":
                level = int(conn.exec_driver_sql("PRAGMA synchronous").scalar_one())
                if level < 2:  # 0 OFF, 1 NORMAL, 2 FULL, 3 EXTRA; the level can only change outside a transaction
                    conn.exec_driver_sql("PRAGMA synchronous=FULL")
                conn.commit()
            try:
                with conn.begin():
                    yield conn
            finally:
                if level is not None and level < 2:
                    conn.exec_driver_sql(f"PRAGMA synchronous={level}")
                    conn.commit()

    def get(self, key: str) -> LedgerRow | None:
        """The row of `key`, or None."""
        with self.engine.connect() as conn:
            found = conn.execute(sa.select(sends).where(sends.c.key == key)).mappings().first()
        return LedgerRow(**found) if found is not None else None

    def claim(self, key: str, now: float) -> bool:
        """Take the row for one attempt (pending or retrying -> sending); False if someone else has it."""
        with self._durable() as conn:
            result = conn.execute(
                sends.update()
                .where(sends.c.key == key, sends.c.status.in_(CLAIMABLE))
                .values(
                    status="sending",
                    attempts=sends.c.attempts + 1,
                    first_try_at=sa.func.coalesce(sends.c.first_try_at, now),
                    next_attempt_at=None,
                    updated_at=now,
                )
            )
        return bool(result.rowcount == 1)

    def finish(
        self,
        key: str,
        status: str,
        *,
        now: float,
        reason: str | None = None,
        provider_id: str | None = None,
        next_attempt_at: float | None = None,
    ) -> None:
        """Record the outcome of the attempt in progress (sending -> `status`)."""
        values: dict[str, object] = {
            "status": status,
            "updated_at": now,
            "reason": reason,
            "next_attempt_at": next_attempt_at,
        }
        if provider_id is not None:
            values["provider_id"] = provider_id
        with self.engine.begin() as conn:
            conn.execute(sends.update().where(sends.c.key == key, sends.c.status == "sending").values(**values))

    def due(self, now: float, limit: int) -> list[str]:
        """Keys ready for an attempt: pending, or retrying whose time has come; oldest first."""
        query = (
            sa.select(sends.c.key)
            .where(
                sa.or_(
                    sends.c.status == "pending",
                    sa.and_(sends.c.status == "retrying", sends.c.next_attempt_at <= now),
                )
            )
            .order_by(sends.c.created_at, sends.c.key)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [r[0] for r in conn.execute(query)]

    # --- batches: one statement per step for many sends ----------------------------------------
    _CHUNK = 500  # keys per statement (SQLite's bound-parameter limit is far above this)

    def insert_many(self, rows: Sequence[dict[str, object]]) -> set[str]:
        """Write new pending rows in one transaction; returns the keys that were new (the rest existed)."""
        now = time.time()
        inserted: set[str] = set()
        with self.engine.begin() as conn:
            for start in range(0, len(rows), self._CHUNK):
                chunk = rows[start : start + self._CHUNK]
                keys = [str(r["key"]) for r in chunk]
                existing = {k for (k,) in conn.execute(sa.select(sends.c.key).where(sends.c.key.in_(keys)))}
                fresh: dict[str, dict[str, object]] = {}
                for r in chunk:
                    key = str(r["key"])
                    if key not in existing and key not in fresh:
                        fresh[key] = {
                            "status": "pending",
                            "attempts": 0,
                            "created_at": now,
                            "updated_at": now,
                            "first_try_at": None,
                            "next_attempt_at": None,
                            "provider_id": None,
                            "reason": None,
                            **r,
                        }
                if fresh:
                    conn.execute(sends.insert(), list(fresh.values()))
                    inserted.update(fresh)
        return inserted

    def claim_many(self, keys: Sequence[str], now: float) -> list[LedgerRow]:
        """Take every claimable row of `keys` for one attempt, in one statement per chunk; the rows as claimed.
        The claim's commit is durable (see `_durable`) before any of them goes to a channel."""
        claimed: list[LedgerRow] = []
        if not keys:
            return claimed
        with self._durable() as conn:
            if conn.dialect.name == "postgresql":  # one statement whatever the number: the keys as one array
                result = conn.execute(_CLAIM_ANY, {"keys": list(dict.fromkeys(keys)), "now": now})
                return list(_rows(result))
            for start in range(0, len(keys), self._CHUNK):
                chunk = list(dict.fromkeys(keys[start : start + self._CHUNK]))
                result = conn.execute(
                    sends.update()
                    .where(sends.c.key.in_(chunk), sends.c.status.in_(CLAIMABLE))
                    .values(
                        status="sending",
                        attempts=sends.c.attempts + 1,
                        first_try_at=sa.func.coalesce(sends.c.first_try_at, now),
                        next_attempt_at=None,
                        updated_at=now,
                    )
                    .returning(*sends.c)
                )
                claimed.extend(_rows(result))
        return claimed

    def get_many(self, keys: Sequence[str]) -> dict[str, LedgerRow]:
        """The rows of `keys` that exist, by key."""
        out: dict[str, LedgerRow] = {}
        if not keys:
            return out
        with self.engine.connect() as conn:
            for start in range(0, len(keys), self._CHUNK):
                chunk = list(keys[start : start + self._CHUNK])
                for row in _rows(conn.execute(sa.select(sends).where(among(conn, sends.c.key, chunk)))):
                    out[row.key] = row
        return out

    def finish_many(self, outcomes: Sequence[dict[str, object]], now: float) -> None:
        """Record many attempts' outcomes (each: key, status, reason, provider_id, next_attempt_at) at once."""
        if not outcomes:
            return
        statement = (
            sends.update()
            .where(sends.c.key == sa.bindparam("k"), sends.c.status == "sending")
            .values(
                status=sa.bindparam("s"),
                reason=sa.bindparam("r"),
                provider_id=sa.func.coalesce(sa.bindparam("p"), sends.c.provider_id),
                next_attempt_at=sa.bindparam("n"),
                updated_at=now,
            )
        )
        params = [
            {
                "k": o["key"],
                "s": o["status"],
                "r": o.get("reason"),
                "p": o.get("provider_id"),
                "n": o.get("next_attempt_at"),
            }
            for o in outcomes
        ]
        with self.engine.begin() as conn:
            if conn.dialect.name != "postgresql":  # SQLite's executemany runs in process: cheap per row
                conn.execute(statement, params)
                return
            columns = {c: [p[c] for p in params] for c in ("k", "s", "r", "p", "n")}  # one UPDATE … FROM unnest(…)
            conn.execute(_FINISH_UNNEST, {**columns, "now": now})

    def suppressed_among(self, pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """Which of these (channel, address) pairs are suppressed, with the reason."""
        wanted = set(pairs)
        addresses = sorted({address for _, address in wanted})
        out: dict[tuple[str, str], str] = {}
        if not addresses:
            return out
        with self.engine.connect() as conn:
            for start in range(0, len(addresses), self._CHUNK):
                chunk = addresses[start : start + self._CHUNK]
                query = sa.select(suppressions.c.channel, suppressions.c.address, suppressions.c.reason).where(
                    among(conn, suppressions.c.address, chunk)
                )
                for channel, address, reason in conn.execute(query):
                    if (channel, address) in wanted:
                        out[(channel, address)] = str(reason)
        return out

    def rows(self, status: str | None = None, limit: int | None = None) -> list[LedgerRow]:
        """Ledger rows (with `status` when given), oldest first."""
        query = sa.select(sends).order_by(sends.c.created_at, sends.c.key)
        if status is not None:
            query = query.where(sends.c.status == status)
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return list(_rows(conn.execute(query)))

    def counts(self) -> dict[str, int]:
        """How many sends are in each status."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(sends.c.status, sa.func.count()).group_by(sends.c.status)).all()
        return {str(s): int(n) for s, n in rows}

    def mark_stuck_ambiguous(self, older_than: float, now: float) -> int:
        """Rows left `sending` by a crashed worker (not updated since `older_than`) become ambiguous."""
        with self.engine.begin() as conn:
            result = conn.execute(
                sends.update()
                .where(sends.c.status == "sending", sends.c.updated_at < older_than)
                .values(status="ambiguous", reason="the worker stopped while sending: outcome unknown", updated_at=now)
            )
        return int(result.rowcount or 0)

    def requeue(self, keys: Sequence[str] | None, statuses: Iterable[str], now: float) -> int:
        """Put rows in `statuses` (all of them, or those of `keys`) back to pending with a fresh attempt count."""
        query = sends.update().where(sends.c.status.in_(tuple(statuses)))
        if keys is not None:
            query = query.where(sends.c.key.in_(list(keys)))
        with self.engine.begin() as conn:
            result = conn.execute(
                query.values(
                    status="pending", attempts=0, first_try_at=None, next_attempt_at=None, reason=None, updated_at=now
                )
            )
        return int(result.rowcount or 0)

    def find_by_provider_id(self, channel: str, provider_id: str) -> LedgerRow | None:
        """The send a provider's status callback is about."""
        with self.engine.connect() as conn:
            found = (
                conn.execute(sa.select(sends).where(sends.c.channel == channel, sends.c.provider_id == provider_id))
                .mappings()
                .first()
            )
        return LedgerRow(**found) if found is not None else None

    # --- suppressions ---------------------------------------------------------------------------
    def suppress(self, channel: str, address: str, reason: str, detail: str | None = None) -> bool:
        """Add `address` to the channel's suppression list; False when it was there already."""
        with self.engine.begin() as conn:
            if self._suppressed(conn, channel, address):
                return False
            try:
                conn.execute(
                    suppressions.insert().values(
                        channel=channel, address=address, reason=reason, detail=detail, created_at=time.time()
                    )
                )
            except sa.exc.IntegrityError:
                return False
        return True

    def unsuppress(self, channel: str, address: str, reasons: Iterable[str] | None = None) -> bool:
        """Remove `address` from the list (only entries with one of `reasons` when given)."""
        query = suppressions.delete().where(suppressions.c.channel == channel, suppressions.c.address == address)
        if reasons is not None:
            query = query.where(suppressions.c.reason.in_(tuple(reasons)))
        with self.engine.begin() as conn:
            return bool(conn.execute(query).rowcount)

    def suppression(self, channel: str, address: str) -> str | None:
        """Why `address` is suppressed on `channel`, or None when it is not."""
        with self.engine.connect() as conn:
            return self._suppressed(conn, channel, address)

    def suppressions(self, channel: str | None = None) -> list[dict[str, object]]:
        """The suppression list (of one channel when given)."""
        query = sa.select(suppressions).order_by(suppressions.c.channel, suppressions.c.address)
        if channel is not None:
            query = query.where(suppressions.c.channel == channel)
        with self.engine.connect() as conn:
            return [dict(m) for m in conn.execute(query).mappings()]

    @staticmethod
    def _suppressed(conn: sa.Connection, channel: str, address: str) -> str | None:
        found = conn.execute(
            sa.select(suppressions.c.reason).where(suppressions.c.channel == channel, suppressions.c.address == address)
        ).first()
        return None if found is None else str(found[0])
