"""The bulk path for online events: JSON lines of Segment-spec events, each validated with
`events.normalize.normalize_event`, in batches (orjson to parse, Arrow to hold, DuckDB to deduplicate).

An event keeps its own `messageId`; one without gets a deterministic id from its text, so that
importing the same file again adds nothing. Clock-skew correction needs the time the event was
received: an export's `receivedAt` is kept; without one, `sentAt` stands in for it (a file is not
a live request, so no correction is made); without either, the import time is used.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from omniweave.collect.files import sql
from omniweave.collect.files.engine import (
    ImportSummary,
    Prepared,
    already_logged,
    batch_name,
    connect,
    shown,
    to_arrow,
)
from omniweave.collect.files.readers import file_format, read_json_records
from omniweave.errors import EventError, InputError
from omniweave.events.normalize import (
    deterministic_message_id,
    normalize_event,
    parse_timestamp,
)
from omniweave.storage.eventlog import EVENT_SCHEMA, EventLog, events_to_table

KIND = "segment"
BATCH_ROWS = 100_000


def run_segment(
    path: Path,
    *,
    source_id: str,
    log: EventLog,
    received_at: datetime,
    stage: Callable[[str, Callable[[], float] | None], None] | None = None,
    batch_rows: int = BATCH_ROWS,
) -> Iterator[Prepared]:
    """Validate the events of a JSON-lines file; yields one `Prepared` batch (new events only and
    that batch's counts) per `batch_rows` records. The caller writes each batch as it comes."""
    if file_format(path) != "jsonl":
        raise InputError(f"{path}: the segment kind reads JSON lines (.jsonl, .ndjson, .json), one event per line")
    records = list(read_json_records(path))
    done = [0]
    if stage:
        stage(f"validating {len(records):,} events", lambda: 100.0 * done[0] / max(len(records), 1))
    con = connect()
    try:
        con.execute(sql.seen_ids())
        for start in range(0, len(records), batch_rows):
            batch = records[start : start + batch_rows]
            yield _batch(con, log, path, batch, source_id, received_at, start // batch_rows)
            done[0] += len(batch)
    finally:
        con.close()


def _batch(
    con: duckdb.DuckDBPyConnection,
    log: EventLog,
    path: Path,
    batch: list[tuple[int, bytes]],
    source_id: str,
    received_at: datetime,
    number: int,
) -> Prepared:
    summary = ImportSummary(file=path.name, kind=KIND, rows_read=len(batch))
    events: list[dict[str, Any]] = []
    rows: list[int] = []
    for row, text in batch:
        try:
            events.append(_event(text, row, received_at))
        except _Rejected as exc:
            summary.errors.append(f"{path.name}:row {row}: {exc}")
            continue
        rows.append(row)
    summary.rows_rejected = len(batch) - len(events)
    table = events_to_table(events, source=source_id).append_column("__row", pa.array(rows, pa.int64()))
    table = table.filter(pc.invert(already_logged(con, log, "events", source_id, table["message_id"])))
    con.register("__batch", table)
    fresh = to_arrow(con, sql.new_segment_events("__batch"))
    con.register("__fresh", fresh)
    con.execute(sql.remember_ids("__fresh"))
    con.unregister("__fresh")
    con.unregister("__batch")
    fresh = fresh.cast(EVENT_SCHEMA)
    summary.rows_imported = summary.records_written = fresh.num_rows
    summary.rows_duplicate = len(events) - fresh.num_rows
    name = f"{batch_name(KIND, fresh, 'message_id')}-{number:05d}"
    return Prepared(fresh, "events", name, summary)


class _Rejected(Exception):
    """One line that is not a valid event (the message is the error line without the file:row)."""


def _event(text: bytes, row: int, received_at: datetime) -> dict[str, Any]:
    try:
        raw = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise _Rejected(f"not valid JSON ({exc}) (got {shown(text.decode(errors='replace'))})") from None
    if not isinstance(raw, dict):
        raise _Rejected(f"expected a JSON object, got {type(raw).__name__} (got {shown(text.decode())})")
    if not raw.get("messageId"):
        raw["messageId"] = deterministic_message_id(KIND, hashlib.sha256(text.strip()).hexdigest())
    try:
        received = received_at
        for field in ("receivedAt", "sentAt"):
            if raw.get(field) is not None:
                received = parse_timestamp(raw[field], field=field, index=row)
                break
        return normalize_event(raw, received_at=received, index=row)
    except EventError as exc:
        field = exc.field or "event"
        return _reject(field, exc.reason, _lookup(raw, field))


def _reject(field: str, reason: str, value: Any) -> dict[str, Any]:
    text = value if isinstance(value, str) else orjson.dumps(value).decode() if value is not None else ""
    raise _Rejected(f"field {field!r}: {reason} (got {shown(text)})")


def _lookup(raw: dict[str, Any], dotted: str) -> Any:
    value: Any = raw
    for part in dotted.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value
