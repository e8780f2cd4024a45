"""The bulk path for big demo worlds: big files through the importers in chunks, in parallel.

The importers hold a whole file (and its events) in memory, so files of a big world are cut
into chunks — `CHUNK_EVENTS` JSON lines, or `CHUNK_ROWS` CSV rows (a till receipt's line items
stay in one chunk) — and the chunks are imported by worker processes, one per CPU, each with its
own runtime on the same home. Chunks hold distinct records, so the importers' deduplication and
the event log's write-then-rename make parallel imports safe; a chunk file is deleted once
imported, and only a few exist at a time.
"""

from __future__ import annotations

import csv
import io
import multiprocessing
import os
import shutil
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path

from omniweave.collect.files.engine import ImportSummary
from omniweave.demo.sinks import ONLINE_SOURCES
from omniweave.runtime import Runtime
from omniweave.settings import Settings

CHUNK_EVENTS = 200_000
CHUNK_ROWS = 500_000
BIG_FILE_BYTES = 256 * 1024 * 1024
"""Offline files larger than this are imported in chunks."""
CHUNKS_FOLDER = ".chunks"
GROUP_COLUMNS = {"till": "transaction_id"}
"""Kinds whose consecutive rows with the same value of this column form one record."""

Chunk = tuple[Path, int]


def split_jsonl(path: Path, folder: Path, chunk_events: int = CHUNK_EVENTS) -> Iterator[Chunk]:
    """Cut a JSON-lines file into `folder/<name>-NNNNN.jsonl` files; yields each (path, events) when written."""
    folder.mkdir(parents=True, exist_ok=True)
    number, lines = 0, []
    with open(path, "rb") as fh:
        for line in fh:
            lines.append(line)
            if len(lines) >= chunk_events:
                yield _write_chunk(folder, f"{path.stem}-{number:05d}.jsonl", [], lines), len(lines)
                number, lines = number + 1, []
    if lines:
        yield _write_chunk(folder, f"{path.stem}-{number:05d}.jsonl", [], lines), len(lines)


def split_csv(
    path: Path, folder: Path, chunk_rows: int = CHUNK_ROWS, group_column: str | None = None
) -> Iterator[Chunk]:
    """Cut a CSV file (one record per line) into chunks with the header; rows sharing a
    `group_column` value next to each other stay in the same chunk. Yields (path, rows)."""
    folder.mkdir(parents=True, exist_ok=True)
    number, last_key = 0, None
    lines: list[bytes] = []
    with open(path, "rb") as fh:
        header = fh.readline()
        position = next(csv.reader(io.StringIO(header.decode()))).index(group_column) if group_column else -1
        for line in fh:
            key = next(csv.reader(io.StringIO(line.decode())))[position] if position >= 0 else None
            if len(lines) >= chunk_rows and (key is None or key != last_key):
                yield _write_chunk(folder, f"{path.stem}-{number:05d}.csv", [header], lines), len(lines)
                number, lines = number + 1, []
            lines.append(line)
            last_key = key
    if lines:
        yield _write_chunk(folder, f"{path.stem}-{number:05d}.csv", [header], lines), len(lines)


def _write_chunk(folder: Path, name: str, head: list[bytes], lines: list[bytes]) -> Path:
    chunk = folder / name
    with open(chunk, "wb") as out:
        out.writelines(head)
        out.writelines(lines)
    return chunk


_runtime: Runtime | None = None


def _init_worker(settings: Settings) -> None:
    global _runtime
    _runtime = Runtime(settings)


def _import_chunk(kind: str, chunk: Path, runtime: Runtime | None = None) -> ImportSummary:
    from omniweave.collect.service import import_file

    summary = import_file(runtime or _runtime, kind, chunk)  # type: ignore[arg-type]
    chunk.unlink()
    return summary


def import_chunks(
    runtime: Runtime,
    work: Iterator[tuple[str, str, Chunk]],
    summaries: dict[str, ImportSummary],
    advance: Callable[[int], None],
    workers: int,
) -> None:
    """Import `(name, kind, (chunk, rows))` items, adding each chunk's counts to `summaries[name]`."""
    if workers <= 1:
        for name, kind, (chunk, rows) in work:
            summaries[name].add(_import_chunk(kind, chunk, runtime), max_errors=1000)
            advance(rows)
        return
    context = multiprocessing.get_context("spawn")
    pending: deque[tuple[str, int, Future[ImportSummary]]] = deque()

    def finish_oldest() -> None:
        name, rows, future = pending.popleft()
        summaries[name].add(future.result(), max_errors=1000)
        advance(rows)

    with ProcessPoolExecutor(
        workers, mp_context=context, initializer=_init_worker, initargs=(runtime.settings,)
    ) as pool:
        for name, kind, (chunk, rows) in work:
            pending.append((name, rows, pool.submit(_import_chunk, kind, chunk)))
            while len(pending) > workers:  # a few chunks on disk at a time
                finish_oldest()
        while pending:
            finish_oldest()


def _workers(big: bool, workers: int | None) -> int:
    return (workers or os.cpu_count() or 1) if big else 1


def import_online(
    runtime: Runtime,
    folder: Path,
    advance: Callable[[int], None],
    workers: int | None = None,
    chunk_events: int = CHUNK_EVENTS,
) -> dict[str, ImportSummary]:
    """Import `folder/online/*.jsonl` with the `segment` importer; returns a summary per stream.

    `advance(n)` is called as chunks of n events are done.
    """
    chunks_dir = folder / CHUNKS_FOLDER
    shutil.rmtree(chunks_dir, ignore_errors=True)
    size = sum((folder / "online" / f"{stream}.jsonl").stat().st_size for stream in ONLINE_SOURCES)
    summaries = {stream: ImportSummary(file=f"{stream}.jsonl", kind="segment") for stream in ONLINE_SOURCES}
    work = (
        (stream, "segment", chunk)
        for stream in ONLINE_SOURCES
        for chunk in split_jsonl(folder / "online" / f"{stream}.jsonl", chunks_dir, chunk_events)
    )
    try:
        import_chunks(
            runtime, work, summaries, advance, _workers(size > 4 * chunk_events * 1000, workers)
        )  # ~1 kB per event
    finally:
        shutil.rmtree(chunks_dir, ignore_errors=True)
    return summaries


def import_large_csv(
    runtime: Runtime,
    kind: str,
    path: Path,
    advance: Callable[[int], None],
    workers: int | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> ImportSummary:
    """Import a big offline CSV of `kind` in chunks; returns the summary of the whole file."""
    chunks_dir = path.parent.parent / CHUNKS_FOLDER
    shutil.rmtree(chunks_dir, ignore_errors=True)
    summaries = {kind: ImportSummary(file=path.name, kind=kind)}
    work = ((kind, kind, chunk) for chunk in split_csv(path, chunks_dir, chunk_rows, GROUP_COLUMNS.get(kind)))
    try:
        import_chunks(runtime, work, summaries, advance, _workers(True, workers))
    finally:
        shutil.rmtree(chunks_dir, ignore_errors=True)
    return summaries[kind]
