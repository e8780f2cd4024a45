"""Removing a person from every place their data lives: the warehouse, the operational store, the home.

Each function takes the needles of `privacy.subjects.needles` (lower-cased texts that mark a record as
the person's) and returns receipts, one per target it changed (a target it did not change gets none):

- `scrub_warehouse`: every Parquet file under the warehouse (the event log and every derived dataset:
  identities, identity state, profiles, segment members, …). A file with matching rows is rewritten
  without them: written under a temporary name (which no reader lists), fsynced, renamed over the old one
  (readers see the old file or the new, never half of one); a file left empty is removed.
- `scrub_inbox`: inbox rows (loaded or not) whose event holds a needle.
- `scrub_operational`: the send ledger, policy decisions, coupons (kept, anonymised, so counts stay
  right), journey runs, waits and entries (removed; step history anonymised), push subscriptions,
  conversations, soft bounces and the suppression list, the consent history, form sign-ups (kept without
  their personal columns, so the forms' counts by form, placement and status stay right).
- `scrub_files`: every other file under the home (audience exports, logs, print files): text files lose
  the lines that hold a needle, other files that hold one are removed.
- `compact_store`: SQLite is vacuumed and its write-ahead log truncated (deleted rows leave no bytes in
  free pages); PostgreSQL's touched tables get VACUUM FULL.
"""

from __future__ import annotations

import os
import posixpath
import sqlite3
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa

from omniweave.privacy.requests import Receipt
from omniweave.privacy.subjects import SHORT, text_matches
from omniweave.runtime import Runtime
from omniweave.storage.compaction import fsync_dir
from omniweave.storage.eventlog import day_partition
from omniweave.storage.locks import eventlog_lock
from omniweave.storage.ops import forms_privacy
from omniweave.storage.ops.tables import (
    consent_history,
    conversations,
    coupons,
    inbox,
    journey_entries,
    journey_runs,
    journey_steps,
    journey_waits,
    policy_decisions,
    policy_persons,
    push_subscriptions,
    sends,
    suppressions,
)
from omniweave.storage.ops.tables.privacy import privacy_requests
from omniweave.storage.ops.tables.reach import soft_bounces

DELETED = "(deleted)"
_SEARCHABLE = (pa.types.is_string, pa.types.is_large_string, pa.types.is_dictionary)
_NESTED = (pa.types.is_list, pa.types.is_large_list, pa.types.is_struct, pa.types.is_map)
MAX_TEXT_FILE_BYTES = 256 * 1024 * 1024


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _condition(schema: pa.Schema, found: tuple[str, ...]) -> str | None:
    """DuckDB SQL giving `hit` per row of `t`: does it hold a needle in a text (or nested) column? None: no
    column can."""
    longs = [n for n in found if len(n) >= SHORT]
    shorts = [n for n in found if len(n) < SHORT]
    texts = []
    for fld in schema:
        if not (any(test(fld.type) for test in _SEARCHABLE) or any(test(fld.type) for test in _NESTED)):
            continue
        texts.append(f'lower(CAST("{fld.name.replace(chr(34), chr(34) * 2)}" AS VARCHAR))')
    if not texts:
        return None
    # every text column of the row joined once (by a character no needle holds), then each needle sought once
    joined = "concat_ws(chr(31), " + ", ".join(texts) + ")"
    parts = [f"contains(__privacy_text, {_sql_text(n)})" for n in longs]
    if shorts:
        parts += [f"{text} IN ({', '.join(map(_sql_text, shorts))})" for text in texts]
    return f"SELECT coalesce({' OR '.join(parts) or 'false'}, false) AS hit FROM (SELECT *, {joined} AS __privacy_text FROM t)"


def matching_mask(
    table: pa.Table, found: tuple[str, ...], con: duckdb.DuckDBPyConnection | None = None
) -> pa.Array | None:
    """A boolean per row of `table`: does it hold a needle? None when no column can. `con`: a DuckDB
    connection to reuse (opening one costs more than scanning a small file)."""
    condition = _condition(table.schema, found)
    if condition is None or table.num_rows == 0:
        return None
    own = con is None
    db = duckdb.connect() if con is None else con
    try:
        db.register("t", table)
        mask = db.sql(condition).to_arrow_table().column("hit")
        db.unregister("t")
    finally:
        if own:
            db.close()
    return mask.combine_chunks()


def replace_parquet(runtime: Runtime, path: str, table: pa.Table) -> None:
    """Swap `table` in as the Parquet file `path`: written beside it under a name no reader lists, synced
    to disk, renamed over it (the rename is atomic), the folder synced. Other file systems: EventLog's
    write-then-rename."""
    log = runtime.log
    if log.fs.protocol not in ("file", ("file", "local")) and "file" not in log.fs.protocol:
        log.replace_file(path, table)
        return
    folder = os.path.dirname(path)
    temp = os.path.join(folder, f".tmp-privacy-{uuid.uuid4().hex}")
    try:
        with open(temp, "wb") as fh:
            pq.write_table(table, fh, compression="zstd")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temp, path)
    finally:
        if os.path.exists(temp):
            os.remove(temp)
    fsync_dir(folder)


def _remove(runtime: Runtime, path: str) -> None:
    runtime.log.fs.rm(path)
    fsync_dir(os.path.dirname(path))


def _dataset_of(root: str, path: str) -> str:
    rel = posixpath.relpath(path, root)
    return rel.split("/", 1)[0]


def parquet_files(runtime: Runtime) -> list[str]:
    """Every Parquet file under the warehouse (every dataset), temporary files left out."""
    log = runtime.log
    if not log.fs.exists(log.root):
        return []
    return sorted(
        p for p in log.fs.find(log.root) if p.endswith(".parquet") and not posixpath.basename(p).startswith(".")
    )


def _read(runtime: Runtime, path: str) -> pa.Table:
    with runtime.log.fs.open(path, "rb") as fh:
        return pq.ParquetFile(fh).read()


def scrub_warehouse(runtime: Runtime, found: tuple[str, ...]) -> list[Receipt]:
    """Rewrite every Parquet file with rows holding a needle; one receipt per dataset changed."""
    removed: dict[str, list[int]] = {}
    con = duckdb.connect()
    try:
        # the event log's lock: a compaction merging a file while it is scrubbed would write the rows back
        with eventlog_lock(runtime.store, timeout=EVENTLOG_LOCK_SECONDS, holder="a privacy deletion"):
            for path in parquet_files(runtime):
                _scrub_file(runtime, path, found, con, removed)
    finally:
        con.close()
    now = time.time()
    return [
        Receipt(f"warehouse:{name}", "removed", rows, f"{rows} rows from {files} files rewritten atomically", now)
        for name, (rows, files) in sorted(removed.items())
    ]


def _scrub_file(
    runtime: Runtime, path: str, found: tuple[str, ...], con: duckdb.DuckDBPyConnection, removed: dict[str, list[int]]
) -> None:
    """Rewrite one Parquet file without the rows holding a needle; tally them in `removed` by dataset."""
    try:
        table = _read(runtime, path)
    except FileNotFoundError:  # replaced or removed by a writer meanwhile (its new file is listed next time)
        return
    mask = matching_mask(table, found, con)
    if mask is None or not mask.true_count:
        return
    kept = table.filter(pa.compute.invert(mask))
    if kept.num_rows:
        replace_parquet(runtime, path, kept)
    else:
        _remove(runtime, path)
    tally = removed.setdefault(_dataset_of(runtime.log.root, path), [0, 0])
    tally[0] += mask.true_count
    tally[1] += 1


def matching_rows(runtime: Runtime, dataset: str, found: tuple[str, ...]) -> list[dict[str, Any]]:
    """The rows of `dataset` holding a needle (an export's view of the person there)."""
    out: list[dict[str, Any]] = []
    con = duckdb.connect()
    try:
        for path in runtime.log.files(dataset):
            table = _read(runtime, path)
            mask = matching_mask(table, found, con)
            if mask is not None and mask.true_count:
                out += table.filter(mask).to_pylist()
    finally:
        con.close()
    return out


LOADER_WAIT_SECONDS = 15.0
EVENTLOG_LOCK_SECONDS = 600.0
"""How long a deletion waits for a compaction to give the event log's lock back (it holds it one merge at a time)."""


def _wait_for_loader(runtime: Runtime, doomed: list[int]) -> None:
    """A running loader may have read some of the deleted rows before they went (a batch in flight, between
    its `pending_end` and its commit): wait until that batch is committed, so that the warehouse is scrubbed
    after it lands and not before. A batch that started after the deletion cannot hold the rows. A stale
    `pending_end` (a loader that died) is waited for at most LOADER_WAIT_SECONDS: its redo no longer finds them."""
    deadline = time.monotonic() + LOADER_WAIT_SECONDS
    while doomed and time.monotonic() < deadline:
        state = runtime.store.consumer("loader")
        end = state.pending_end
        if end is None or not any(state.position < seq <= end for seq in doomed):
            return
        time.sleep(0.1)


def scrub_inbox(runtime: Runtime, found: tuple[str, ...]) -> list[Receipt]:
    """Delete inbox rows whose event holds a needle (whether or not the loader has read them)."""
    engine = runtime.store.engine
    doomed: list[int] = []
    last = 0
    with engine.connect() as conn:
        while True:
            rows = conn.execute(
                sa.select(inbox.c.seq, inbox.c.payload).where(inbox.c.seq > last).order_by(inbox.c.seq).limit(5000)
            ).all()
            if not rows:
                break
            last = rows[-1].seq
            doomed += [r.seq for r in rows if text_matches_json(bytes(r.payload), found)]
    with engine.begin() as conn:
        for start in range(0, len(doomed), 500):
            conn.execute(inbox.delete().where(inbox.c.seq.in_(doomed[start : start + 500])))
    _wait_for_loader(runtime, doomed)
    return (
        [
            Receipt(
                "ops:inbox",
                "removed",
                len(doomed),
                "events not yet loaded, and loaded ones kept for dedupe",
                time.time(),
            )
        ]
        if doomed
        else []
    )


def text_matches_json(payload: bytes, found: tuple[str, ...]) -> bool:
    """Whether an event's JSON holds a needle: as a substring (long needles) or as a whole value."""
    text = payload.decode("utf-8", "replace").lower()
    if any(n in text for n in found if len(n) >= SHORT):
        return True
    shorts = [n for n in found if len(n) < SHORT]
    if not shorts:
        return False
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return False
    return any(text_matches(str(v).lower(), tuple(shorts)) for v in _values(doc))


def _values(doc: Any) -> Iterable[Any]:
    if isinstance(doc, dict):
        for value in doc.values():
            yield from _values(value)
    elif isinstance(doc, list):
        for value in doc:
            yield from _values(value)
    elif doc is not None:
        yield doc


def scrub_operational(
    runtime: Runtime, person_ids: tuple[str, ...], found: tuple[str, ...], subject_digests: tuple[str, ...]
) -> list[Receipt]:
    """Remove or anonymise the person's rows in the operational store; one receipt per table changed."""
    pids = list(person_ids) or ["(no person)"]
    texts = list(found)
    done: list[tuple[str, str, int, str]] = []

    def count(table: str, action: str, result: Any, detail: str) -> None:
        if result.rowcount and result.rowcount > 0:
            done.append((table, action, int(result.rowcount), detail))

    with runtime.store.engine.begin() as conn:
        if runtime.store.dialect == "sqlite":
            conn.exec_driver_sql("PRAGMA secure_delete=ON")
        mine = sa.or_(sends.c.person_id.in_(pids), sa.func.lower(sends.c.to_address).in_(texts))
        count(
            "sends",
            "anonymised",
            conn.execute(sends.update().where(mine).values(to_address=DELETED, person_id=None, content=b"{}")),
            "address, person and content removed; channel, campaign, status and times kept for counts",
        )
        count(
            "policy_decisions",
            "anonymised",
            conn.execute(
                policy_decisions.update().where(policy_decisions.c.person_id.in_(pids)).values(person_id=None)
            ),
            "person removed; outcomes kept for counts",
        )
        count(
            "policy_persons",
            "removed",
            conn.execute(policy_persons.delete().where(policy_persons.c.person_id.in_(pids))),
            "",
        )
        count(
            "coupons",
            "anonymised",
            conn.execute(coupons.update().where(coupons.c.person_id.in_(pids)).values(person_id=None)),
            "issued codes kept without their person, for redemption counts",
        )
        count(
            "coupons (redeemed)",
            "anonymised",
            conn.execute(coupons.update().where(coupons.c.redeemed_by.in_(pids)).values(redeemed_by=None)),
            "",
        )
        count(
            "journey_waits",
            "removed",
            conn.execute(journey_waits.delete().where(journey_waits.c.person_id.in_(pids))),
            "",
        )
        count(
            "journey_runs", "removed", conn.execute(journey_runs.delete().where(journey_runs.c.person_id.in_(pids))), ""
        )
        count(
            "journey_entries",
            "removed",
            conn.execute(journey_entries.delete().where(journey_entries.c.person_id.in_(pids))),
            "",
        )
        count(
            "journey_steps",
            "anonymised",
            conn.execute(journey_steps.update().where(journey_steps.c.person_id.in_(pids)).values(person_id=DELETED)),
            "steps kept without their person, for journey stats",
        )
        push = sa.or_(
            push_subscriptions.c.person_id.in_(pids),
            sa.func.lower(push_subscriptions.c.user_id).in_(texts),
            sa.func.lower(push_subscriptions.c.anonymous_id).in_(texts),
        )
        count("push_subscriptions", "removed", conn.execute(push_subscriptions.delete().where(push)), "")
        for table in (conversations, soft_bounces, suppressions):
            count(
                table.name, "removed", conn.execute(table.delete().where(sa.func.lower(table.c.address).in_(texts))), ""
            )
        count(
            "consent_history",
            "removed",
            conn.execute(consent_history.delete().where(consent_history.c.subject.in_(list(subject_digests) or ["-"]))),
            "",
        )
        kept, expired = forms_privacy.anonymise(conn, found)
        if kept + expired:
            done.append(
                (
                    "form_signups",
                    "anonymised",
                    kept + expired,
                    "e-mail, phone, visitor id, IPs and browser removed; form, placement, status, times and the"
                    f" words shown kept for counts ({expired} pending ones expired)",
                )
            )
        count(
            "privacy_requests",
            "anonymised",
            conn.execute(
                privacy_requests.update().where(privacy_requests.c.person_id.in_(pids)).values(person_id=None)
            ),
            "earlier requests about the person keep no person id",
        )
    now = time.time()
    return [Receipt(f"ops:{name}", action, n, detail, now) for name, action, n, detail in done]


def compact_store(runtime: Runtime) -> Receipt:
    """Leave no bytes of deleted rows in the store's files: SQLite VACUUM and a truncated WAL; PostgreSQL
    VACUUM FULL of the tables a deletion touches."""
    engine = runtime.store.engine
    if runtime.store.dialect == "sqlite":
        problem = ""
        for attempt in range(COMPACT_ATTEMPTS):
            try:
                _vacuum_sqlite(engine)
                return Receipt("ops:compact", "rewritten", 1, "SQLite vacuumed, write-ahead log truncated", time.time())
            except (sa.exc.OperationalError, sqlite3.OperationalError) as exc:  # another process held a lock
                problem = str(exc)
                time.sleep(0.2 * (attempt + 1))
        detail = (
            f"the store stayed busy ({problem}): deleted rows were zeroed in place (secure_delete), the file is"
            " vacuumed by the next request or `omniweave privacy resume`"
        )
        return Receipt("ops:compact", "deferred", 0, detail, time.time())
    names = [
        "inbox",
        "sends",
        "coupons",
        "journey_runs",
        "journey_waits",
        "suppressions",
        "consent_history",
        "form_signups",
    ]
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for name in names:
            conn.exec_driver_sql(f"VACUUM FULL {name}")
    return Receipt("ops:compact", "rewritten", len(names), "PostgreSQL VACUUM FULL of the touched tables", time.time())


COMPACT_ATTEMPTS = 10


def _vacuum_sqlite(engine: sa.Engine) -> None:
    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        assert raw is not None
        raw.commit()
        previous = raw.isolation_level
        raw.isolation_level = None
        try:
            raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            raw.execute("VACUUM")
            busy = raw.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        finally:
            raw.isolation_level = previous
    if busy and busy[0]:
        raise sqlite3.OperationalError("a reader kept the write-ahead log from being truncated")


def _skipped(path: Path, database: Path | None) -> bool:
    if path.suffix == ".parquet" or path.name.startswith(".tmp-"):
        return True
    if database is not None and path.name.startswith(database.name):  # the db, -wal, -shm, -journal
        return path.parent == database.parent
    return False


def scrub_files(runtime: Runtime, found: tuple[str, ...]) -> list[Receipt]:
    """Every file under the home but Parquet and the SQLite store: text files lose the lines holding a
    needle (written to a temporary file, synced, renamed); other files holding one are removed."""
    home = Path(runtime.settings.home)
    url = runtime.settings.resolved_database_url
    database = Path(url.removeprefix("sqlite:///").split("?", 1)[0]) if url.startswith("sqlite:///") else None
    needles = [n.encode() for n in found if len(n) >= SHORT]
    receipts = []
    for path in sorted(p for p in home.rglob("*") if p.is_file()):
        try:
            if _skipped(path, database) or path.stat().st_size > MAX_TEXT_FILE_BYTES:
                continue
            data = path.read_bytes()
        except FileNotFoundError:  # a temporary file of another process, gone meanwhile
            continue
        lowered = data.lower()
        if not any(n in lowered for n in needles):
            continue
        rel = str(path.relative_to(home))
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            path.unlink()
            receipts.append(Receipt(f"file:{rel}", "removed", 1, "not text: the whole file", time.time()))
            continue
        lines = text.splitlines(keepends=True)
        kept = [line for line in lines if not any(n in line.lower().encode() for n in needles)]
        temp = path.with_name(f".tmp-privacy-{uuid.uuid4().hex}")
        try:
            with open(temp, "w", encoding="utf-8") as fh:
                fh.write("".join(kept))
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(temp, path)
        finally:
            temp.unlink(missing_ok=True)
        receipts.append(Receipt(f"file:{rel}", "removed", len(lines) - len(kept), "lines removed", time.time()))
    return receipts


def retention_cutoff(days: int, now: datetime | None = None) -> datetime:
    """The instant before which a dataset kept `days` days is removed."""
    return (now or datetime.now(UTC)) - timedelta(days=days)


def expire_dataset(runtime: Runtime, dataset: str, days: int, now: datetime | None = None) -> Receipt:
    """Remove what `dataset` holds from before `days` ago: whole day partitions older than the cutoff, and
    in the partition of the cutoff's day (or files outside day partitions) the rows whose `timestamp` is
    older, rewritten like a deletion."""
    with eventlog_lock(runtime.store, timeout=EVENTLOG_LOCK_SECONDS, holder="retention"):
        return _expire_dataset(runtime, dataset, days, now)


def _expire_dataset(runtime: Runtime, dataset: str, days: int, now: datetime | None) -> Receipt:
    cutoff = retention_cutoff(days, now)
    rows = files = 0
    # superseded files too: left behind, they would be listed again once their compacted file is removed
    for path in runtime.log.files(dataset, superseded=True):
        day = day_partition(path)
        if day is not None and day < cutoff.date():
            rows += pq.ParquetFile(runtime.log.fs.open(path, "rb")).metadata.num_rows
            _remove(runtime, path)
            files += 1
            continue
        if day is not None and day > cutoff.date():
            continue
        table = _read(runtime, path)
        if "timestamp" not in table.column_names:
            continue
        old = pa.compute.less(table.column("timestamp"), pa.scalar(cutoff, table.schema.field("timestamp").type))
        old = pa.compute.fill_null(old, False)
        if not pa.compute.sum(old).as_py():
            continue
        kept = table.filter(pa.compute.invert(old))
        rows += table.num_rows - kept.num_rows
        files += 1
        if kept.num_rows:
            replace_parquet(runtime, path, kept)
        else:
            _remove(runtime, path)
    detail = f"kept {days} days (before {cutoff.isoformat(timespec='seconds')} removed); {files} files"
    return Receipt(f"warehouse:{dataset}", "removed", rows, detail, time.time())
