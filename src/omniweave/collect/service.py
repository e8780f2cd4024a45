"""The `import` operation: a file of offline records (or of Segment events) into the event log.

`import_file` picks the mapping (built-in for a kind, or a TOML file), runs the import engine,
appends what is new to the log (`events`, or `spend` for ad spend), records the import in the
operational store and returns an `ImportSummary`. Bad rows are reported, never fatal; a file
that cannot be read at all raises `InputError`. Long imports show a Rich progress bar.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Self

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)

from omniweave.collect.files.engine import ImportSummary, Prepared, run_mapping
from omniweave.collect.files.mapping import builtin_mapping, load_mapping
from omniweave.collect.files.segment import KIND as SEGMENT
from omniweave.collect.files.segment import run_segment
from omniweave.runtime import Runtime
from omniweave.storage.eventlog import EventLog

__all__ = ["ImportSummary", "import_file"]

_PARALLEL_WRITE_ROWS = 50_000


def import_file(
    runtime: Runtime,
    kind: str,
    path: Path,
    mapping: Path | None = None,
    console: Console | None = None,
) -> ImportSummary:
    """Import `path` as source kind `kind` (with `mapping`, a TOML file, if given)."""
    path = Path(path)
    received_at = datetime.now(UTC)
    with ImportProgress(console, f"importing {path.name}") as progress:
        if kind == SEGMENT and mapping is None:
            source_id = runtime.store.ensure_source(f"import:{SEGMENT}")
            summary = ImportSummary(file=path.name, kind=SEGMENT)
            for batch in run_segment(
                path, source_id=source_id, log=runtime.log, received_at=received_at, stage=progress.stage
            ):
                batch = _without_refused(runtime, batch)
                write(runtime.log, batch)
                summary.add(batch.summary)
        else:
            chosen = load_mapping(mapping, kind) if mapping is not None else builtin_mapping(kind)
            source_id = runtime.store.ensure_source(f"import:{chosen.kind}")
            prepared = run_mapping(
                chosen, path, source_id=source_id, log=runtime.log, received_at=received_at, stage=progress.stage
            )
            prepared = _without_refused(runtime, prepared)
            progress.stage(f"writing {prepared.table.num_rows:,} rows to the {prepared.dataset} log", None)
            write(runtime.log, prepared)
            if chosen.announce and prepared.dataset == "events":
                announce(runtime, source_id, prepared.table)
            summary = prepared.summary
    runtime.store.record_import(
        summary.kind, str(path), summary.rows_read, summary.rows_imported, summary.rows_duplicate, summary.rows_rejected
    )
    return summary


def announce(runtime: Runtime, source_id: str, table: pa.Table) -> int:
    """Hand imported events (already in the log) to the inbox's real-time consumers: the journey engine enters
    runs on them as on the collector's (an `email_capture` import starts `welcome_till_capture`). Marked as
    logged (`collect.loader.LOGGED`), so the loader passes over them; under their own messageIds, so importing
    the same file again appends nothing new. How many went in."""
    import orjson

    from omniweave.collect.loader import LOGGED

    received = datetime.now(UTC)
    stamp = received.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    rows = []
    for r in table.select(
        ["message_id", "type", "event", "user_id", "anonymous_id", "timestamp", "context", "properties", "traits"]
    ).to_pylist():
        event: dict[str, object] = {
            "type": r["type"],
            "event": r["event"],
            "messageId": r["message_id"],
            "timestamp": r["timestamp"].isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "receivedAt": stamp,
            LOGGED: True,
        }
        for name, column in (("userId", "user_id"), ("anonymousId", "anonymous_id")):
            if r[column]:
                event[name] = r[column]
        for name in ("context", "properties", "traits"):
            if r[name]:
                event[name] = orjson.loads(r[name])
        rows.append((source_id, str(r["message_id"]), received.timestamp(), orjson.dumps(event)))
    added = 0
    for start in range(0, len(rows), 10_000):
        added += runtime.store.append(rows[start : start + 10_000])
    return added


def _without_refused(runtime: Runtime, prepared: Prepared) -> Prepared:
    """`prepared` without the events of people whose identifiers a privacy request blocked (as the
    collector refuses them: storage/ops/tables/privacy.py), each counted as rejected."""
    from omniweave.storage.ops.tables.privacy import BlockedIdentifiers, refused_rows

    if prepared.dataset != "events":
        return prepared
    refused = refused_rows(prepared.table, BlockedIdentifiers(runtime.store.engine, 0.0).current())
    if not refused:
        return prepared
    keep = pc.invert(pc.is_in(pa.array(range(prepared.table.num_rows)), pa.array(refused)))
    summary = prepared.summary
    summary.rows_imported -= len(refused)
    summary.rows_rejected += len(refused)
    summary.errors.append(f"{len(refused)} rows refused: they name a person who asked not to be tracked")
    return Prepared(prepared.table.filter(keep), prepared.dataset, prepared.batch_name, summary)


def write(log: EventLog, prepared: Prepared) -> None:
    """Append prepared rows to their dataset one day at a time, two days at once for big imports
    (filtering and Parquet encoding release the GIL). Each worker cuts its day out of the table
    with a filter, chunk by chunk, and writes it: no reordered copy of the whole table is made
    (a `take` over DuckDB's chunked result first concatenates the chunks, then gathers), and each
    day's rows are freed as soon as they are written."""
    table = prepared.table
    if prepared.dataset not in ("events", "spend"):  # a reference dataset (stores, products): the file replaces it
        from omniweave.storage.warehouse import write_dataset

        if not prepared.summary.rows_rejected:  # a file with a bad row changes nothing
            write_dataset(log, prepared.dataset, table)
        return
    if table.num_rows == 0:
        return
    date_column = "timestamp" if prepared.dataset == "events" else "date"
    column = table[date_column]
    days = column if pa.types.is_date(column.type) else pc.cast(column, pa.date32())
    unique_days = pc.unique(days)
    if len(unique_days) == 1:
        log.append(prepared.dataset, table, batch_name=prepared.batch_name, date_column=date_column)
        return

    def append_day(day: pa.Scalar) -> None:
        part = table.filter(pc.equal(days, day))
        log.append(prepared.dataset, part, batch_name=prepared.batch_name, date_column=date_column)

    workers = 2 if table.num_rows >= _PARALLEL_WRITE_ROWS else 1
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="omniweave-import-write") as pool:
        list(pool.map(append_day, unique_days.sort()))  # re-raises what a worker raised


class ImportProgress:
    """A Rich progress bar that appears only when an import takes longer than `delay` seconds.

    `stage(name, fraction)` names what is happening now; `fraction` (optional) returns the percent
    done, or a negative number when unknown (DuckDB's `query_progress` does exactly that).
    """

    def __init__(self, console: Console | None, title: str, delay: float = 1.0):
        self.console = console
        self.title = title
        self.delay = delay
        self._name = title
        self._fraction: Callable[[], float] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="omniweave-import-progress", daemon=True)

    def __enter__(self) -> Self:
        if self.console is not None and self.console.is_terminal:  # no bars in logs and pipes
            self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def stage(self, name: str, fraction: Callable[[], float] | None = None) -> None:
        """Say what the import is doing now (and how to ask how far along it is)."""
        self._name, self._fraction = name, fraction

    def _percent(self) -> float | None:
        fraction = self._fraction
        if fraction is None:
            return None
        try:
            value = fraction()
        except duckdb.Error:  # the connection closed between two polls
            return None
        return value if value >= 0 else None

    def _run(self) -> None:
        if self._stop.wait(self.delay):
            return
        columns = (
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=self.console, transient=True) as bar:
            task = bar.add_task(self._name, total=None)
            while not self._stop.wait(0.1):
                percent = self._percent()
                bar.update(
                    task, description=self._name, total=None if percent is None else 100.0, completed=percent or 0.0
                )
