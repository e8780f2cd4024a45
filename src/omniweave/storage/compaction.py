"""Compaction of the event log: a day partition's many small loader files merged into few of a target size.

The loader writes one file per micro-batch, named after the inbox range it holds:
`inbox-<first seq>-<last seq>.parquet` (15 digits each). A compacted file is named the same way after the
union of the ranges it merged, so the protocol is one rule about names, applied where every reader lists
the log's files (`EventLog.files`):

    in a day folder, a file whose range lies strictly inside another file's range is *superseded*
    (its rows are in the other file) and is left out of the listing.

Swapping many files for one is then a single rename: the compacted file is written under a temporary name
no reader lists (`.tmp-compact-…`) and renamed to its final name. A listing made before the rename sees the
small files, one made after sees the compacted file, never both and never neither. Superseded files stay on
disk `grace_seconds` after the file that holds their rows appeared (a reader that listed them just before
can still open them), then a later pass removes them.

A crash (`kill -9`) loses and duplicates nothing: before the rename there is only a temporary file (removed
by the next pass), after it only superseded files (removed by the next pass after the grace). A loader that
redoes a batch already compacted writes a file that is superseded on arrival.

What a pass may merge, per day folder: a *run* of loader files that are consecutive by range among the
folder's visible ones (so the merged range holds no other visible file), each ending at or before the
loader's committed position (`upto`: no batch can later land inside the merged range but a redo of one
already in it) and, while the day is open (today, UTC), older than `min_age_seconds`. Runs are cut into
groups of at most `target_bytes` (sum of the files' sizes); a group of two files or more becomes one file.
Files of other writers (importers, the demo) are left as they are: they are large already.

Rows are kept as they are: same columns (the union of the sources', missing ones NULL), same values,
in range order.
"""

from __future__ import annotations

import os
import posixpath
import re
import uuid
from collections.abc import Callable, Collection, Iterable, Sequence
from contextlib import AbstractContextManager, suppress
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

if TYPE_CHECKING:
    from omniweave.storage.eventlog import EventLog

_BATCH = re.compile(r"^inbox-(\d{15})-(\d{15})\.parquet$")
TEMP_PREFIX = ".tmp-compact-"
ROW_GROUP_ROWS = 262_144
"""Rows buffered before a row group is written (loader files hold a few rows each; one row group per source
would make the compacted file slow to read)."""


def batch_name(first: int, last: int) -> str:
    """The file name (without `.parquet`) of the inbox range first..last, as the loader and compaction write it."""
    return f"inbox-{first:015d}-{last:015d}"


def batch_range(path: str) -> tuple[int, int] | None:
    """The inbox range a file of the log holds, from its name; None for a file not written by the loader."""
    found = _BATCH.match(posixpath.basename(path))
    return (int(found.group(1)), int(found.group(2))) if found else None


def superseded(paths: Iterable[str]) -> dict[str, str]:
    """Each superseded file of `paths` -> the visible file that holds its rows (see the module docstring).

    Only files in the same folder supersede each other."""
    by_folder: dict[str, list[tuple[int, int, str]]] = {}
    for path in paths:
        found = batch_range(path)
        if found is not None:
            by_folder.setdefault(posixpath.dirname(path), []).append((found[0], found[1], path))
    out: dict[str, str] = {}
    for ranged in by_folder.values():
        if len(ranged) < 2:
            continue
        ranged.sort(key=lambda r: (r[0], -r[1]))  # by first seq; of equal firsts the widest first
        widest_end, widest = -1, ""
        for _first, last, path in ranged:
            if last <= widest_end:
                out[path] = widest
            else:
                widest_end, widest = last, path
    return out


def visible(paths: Sequence[str]) -> list[str]:
    """`paths` without the superseded files, in the same order."""
    hidden = superseded(paths)
    return [p for p in paths if p not in hidden] if hidden else list(paths)


@dataclass(frozen=True)
class CompactionOptions:
    """How a pass compacts (the `compaction_*` settings; docs/scale.md)."""

    target_bytes: int = 128 * 1024 * 1024
    min_age_seconds: float = 300.0
    grace_seconds: float = 900.0


@dataclass(frozen=True)
class FileInfo:
    path: str
    size: int
    modified: float  # seconds since the epoch


@dataclass(frozen=True)
class DayCompaction:
    """What one pass did to one day folder."""

    dataset: str
    day: str
    files_before: int  # visible files (what a reader lists) when the pass began
    files_after: int  # visible files when it ended
    merged: int  # loader files merged into new ones
    written: int  # compacted files written
    rows: int  # rows copied into them
    removed: int  # superseded files removed (their grace was over)

    def to_dict(self) -> dict[str, object]:
        return {
            "dataset": self.dataset,
            "day": self.day,
            "files_before": self.files_before,
            "files_after": self.files_after,
            "merged": self.merged,
            "written": self.written,
            "rows": self.rows,
            "removed": self.removed,
        }


def _modified(info: dict[str, Any]) -> float:
    """When a listed file was last written, from an fsspec listing (local, S3, memory and others)."""
    for key in ("mtime", "LastModified", "last_modified", "created", "updated"):
        value = info.get(key)
        if value is None:
            continue
        if isinstance(value, datetime):
            return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, str):
            try:
                return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
            except ValueError:
                continue
    return 0.0  # unknown: as old as can be


def list_folder(log: EventLog, folder: str) -> tuple[list[FileInfo], list[FileInfo]]:
    """The Parquet files of a day folder and the compaction's temporary files there (listed afresh: object
    stores' file systems keep listings in a cache, which other processes' writes do not refresh)."""
    log.fs.invalidate_cache(folder)
    try:
        entries = log.fs.ls(folder, detail=True)
    except FileNotFoundError:
        return [], []
    files, temps = [], []
    for info in entries:
        if info.get("type") == "directory":
            continue
        name = posixpath.basename(info["name"].rstrip("/"))
        path = posixpath.join(folder, name)
        item = FileInfo(path, int(info.get("size") or 0), _modified(info))
        if name.startswith(TEMP_PREFIX):
            temps.append(item)
        elif name.endswith(".parquet") and not name.startswith("."):
            files.append(item)
    files.sort(key=lambda f: f.path)
    return files, temps


def plan_groups(
    files: Sequence[FileInfo],
    options: CompactionOptions,
    upto: int,
    now: float,
    day_open: bool,
    written: Collection[str] = (),
) -> list[list[FileInfo]]:
    """The groups of a folder's files that a pass merges, each into one file (see the module docstring).
    Files `written` by this pass are left for the next one (merging them again at once would rewrite the
    same rows over and over while a backlog is worked through)."""
    hidden = superseded(f.path for f in files)
    ranged = sorted(
        ((batch_range(f.path), f) for f in files if f.path not in hidden and batch_range(f.path) is not None),
        key=lambda item: item[0] or (0, 0),
    )
    groups: list[list[FileInfo]] = []
    current: list[FileInfo] = []
    size = 0

    def close() -> None:
        nonlocal current, size
        if len(current) >= 2:
            groups.append(current)
        current, size = [], 0

    for span, info in ranged:
        assert span is not None
        eligible = (
            span[1] <= upto
            and info.path not in written
            and (not day_open or now - info.modified >= options.min_age_seconds)
        )
        if not eligible or info.size >= options.target_bytes:
            close()
            continue
        if current and size + info.size > options.target_bytes:
            close()
        current.append(info)
        size += info.size
    close()
    return groups


def _day_of(folder: str) -> date | None:
    found = re.search(r"date=(\d{4}-\d{2}-\d{2})$", folder.rstrip("/"))
    return date.fromisoformat(found.group(1)) if found else None


def day_folders(log: EventLog, dataset: str = "events") -> list[str]:
    """The day folders (`date=YYYY-MM-DD`) of a dataset, oldest first."""
    root = log.dataset_path(dataset)
    log.fs.invalidate_cache(root)
    try:
        entries = log.fs.ls(root, detail=True)
    except FileNotFoundError:
        return []
    folders = []
    for info in entries:
        path = info["name"].rstrip("/")
        if info.get("type") == "directory" and _day_of(path) is not None:
            folders.append(posixpath.join(root, posixpath.basename(path)))
    return sorted(folders)


def compact_day(
    log: EventLog,
    folder: str,
    *,
    upto: int,
    lock: Callable[[], AbstractContextManager[object]],
    options: CompactionOptions,
    now: Callable[[], float],
    dataset: str = "events",
) -> DayCompaction:
    """One pass over one day folder: merge its groups (one at a time, each under `lock`), then remove its
    superseded files whose grace is over and temporary files left by a crash."""
    day = _day_of(folder)
    day_text = day.isoformat() if day else posixpath.basename(folder)
    files, _ = list_folder(log, folder)
    before = len(visible([f.path for f in files]))
    merged = rows = removed = 0
    written: list[str] = []
    while True:
        files, temps = list_folder(log, folder)
        day_open = day is None or day >= datetime.fromtimestamp(now(), UTC).date()
        groups = plan_groups(files, options, upto, now(), day_open, written)
        if not groups and not temps and not _removable(files, options, now()):
            break
        with lock():
            # planned again under the lock: a deletion may have rewritten or removed files meanwhile
            files, temps = list_folder(log, folder)
            for temp in temps:  # left by a compaction that died; none runs now (we hold the lock)
                log.fs.rm(temp.path)
            groups = plan_groups(files, options, upto, now(), day_open, written)
            if groups:
                path, copied = _merge(log, folder, groups[0])
                written.append(path)
                rows += copied
                merged += len(groups[0])
            else:
                removed += _remove_superseded(log, files, options, now())
                break
    files, _ = list_folder(log, folder)
    after = len(visible([f.path for f in files]))
    return DayCompaction(dataset, day_text, before, after, merged, len(written), rows, removed)


def _removable(files: Sequence[FileInfo], options: CompactionOptions, now: float) -> list[str]:
    """Superseded files whose grace is over: the file holding their rows appeared `grace_seconds` ago."""
    modified = {f.path: f.modified for f in files}
    return [
        path
        for path, holder in superseded(modified).items()
        if now - modified.get(holder, now) >= options.grace_seconds
    ]


def _remove_superseded(log: EventLog, files: Sequence[FileInfo], options: CompactionOptions, now: float) -> int:
    doomed = _removable(files, options, now)
    for path in doomed:
        with suppress(FileNotFoundError):
            log.fs.rm(path)
    return len(doomed)


def _merge(log: EventLog, folder: str, group: Sequence[FileInfo]) -> tuple[str, int]:
    """Write the rows of `group` (consecutive by range) as one file named after their union; returns its path
    and the rows."""
    from omniweave.storage.eventlog import DICTIONARY_COLUMNS

    spans = [batch_range(f.path) for f in group]
    first = min(s[0] for s in spans if s is not None)
    last = max(s[1] for s in spans if s is not None)
    final = posixpath.join(folder, batch_name(first, last) + ".parquet")
    temp = posixpath.join(folder, f"{TEMP_PREFIX}{uuid.uuid4().hex}")
    ordered = sorted(group, key=lambda f: batch_range(f.path) or (0, 0))
    schemas = []
    for info in ordered:
        with log.fs.open(info.path, "rb") as fh:
            schemas.append(pq.read_schema(fh))
    schema = pa.unify_schemas(schemas, promote_options="permissive")
    total = 0
    pending: list[pa.Table] = []
    pending_rows = 0
    with log.fs.open(temp, "wb") as out:
        writer = pq.ParquetWriter(
            out, schema, compression="zstd", use_dictionary=[n for n in schema.names if n in DICTIONARY_COLUMNS]
        )
        try:
            for info in ordered:
                with log.fs.open(info.path, "rb") as fh:
                    table = _conform(pq.read_table(fh), schema)
                pending.append(table)
                pending_rows += table.num_rows
                total += table.num_rows
                if pending_rows >= ROW_GROUP_ROWS:
                    writer.write_table(pa.concat_tables(pending), row_group_size=ROW_GROUP_ROWS)
                    pending, pending_rows = [], 0
            if pending:
                writer.write_table(pa.concat_tables(pending), row_group_size=ROW_GROUP_ROWS)
        finally:
            writer.close()
        _sync(out)
    log.fs.mv(temp, final)  # the swap: from here on readers list `final` instead of the group
    _sync_folder(log, folder)
    return final, total


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table` with the columns of `schema`, in its order: a column it lacks is NULL (as a reader of the folder
    with union_by_name sees it)."""
    columns = [
        table.column(f.name).cast(f.type) if f.name in table.column_names else pa.nulls(table.num_rows, f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(columns, schema=schema)


def _sync(handle: Any) -> None:
    """Flush a local file to disk before it is renamed into place (elsewhere the store makes it durable)."""
    try:
        handle.flush()
        os.fsync(handle.fileno())
    except (AttributeError, OSError, ValueError):
        pass


def _sync_folder(log: EventLog, folder: str) -> None:
    protocol = log.fs.protocol if isinstance(log.fs.protocol, str) else log.fs.protocol[0]
    if protocol in ("file", "local"):
        fsync_dir(folder)


def fsync_dir(path: str) -> None:
    """Make a local folder's entries (a rename, a new or removed file) durable; best effort: a folder that
    cannot be opened or synced is left as it is."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@dataclass(frozen=True)
class CompactionRun:
    """What one pass over the log did, day by day."""

    days: tuple[DayCompaction, ...] = field(default_factory=tuple)

    @property
    def merged(self) -> int:
        return sum(d.merged for d in self.days)

    @property
    def written(self) -> int:
        return sum(d.written for d in self.days)

    def to_dict(self) -> dict[str, object]:
        return {"days": [d.to_dict() for d in self.days], "merged": self.merged, "written": self.written}


def compact_log(
    log: EventLog,
    *,
    upto: int,
    lock: Callable[[], AbstractContextManager[object]],
    options: CompactionOptions,
    now: Callable[[], float],
    days: Sequence[date] | None = None,
    dataset: str = "events",
) -> CompactionRun:
    """One pass over every day folder of `dataset` (or only `days`); see `compact_day`."""
    wanted = None if days is None else {d.isoformat() for d in days}
    out = []
    for folder in day_folders(log, dataset):
        day = _day_of(folder)
        if wanted is not None and (day is None or day.isoformat() not in wanted):
            continue
        out.append(compact_day(log, folder, upto=upto, lock=lock, options=options, now=now, dataset=dataset))
    return CompactionRun(tuple(out))
