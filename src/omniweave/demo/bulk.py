"""The bulk path for big demo worlds: the online JSON lines through the `segment` importer.

The files are cut into chunks of `CHUNK_EVENTS` events (the importer holds a whole file in
memory) and the chunks are imported by worker processes, one per CPU, each with its own
runtime on the same home. Chunks hold distinct events, so the importers' deduplication and the
event log's write-then-rename make parallel imports safe; a chunk file is deleted once imported.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path

from omniweave.demo.sinks import ONLINE_SOURCES
from omniweave.importers.engine import ImportSummary
from omniweave.service.runtime import Runtime
from omniweave.settings import Settings

CHUNK_EVENTS = 200_000
CHUNKS_FOLDER = ".chunks"


def split_jsonl(path: Path, folder: Path, chunk_events: int = CHUNK_EVENTS) -> Iterator[tuple[Path, int]]:
    """Cut a JSON-lines file into `folder/<name>-NNNNN.jsonl` files; yields each (path, events) when written."""
    folder.mkdir(parents=True, exist_ok=True)
    number, lines = 0, []
    with open(path, "rb") as fh:
        for line in fh:
            lines.append(line)
            if len(lines) >= chunk_events:
                yield _write_chunk(folder, path.stem, number, lines), len(lines)
                number, lines = number + 1, []
    if lines:
        yield _write_chunk(folder, path.stem, number, lines), len(lines)


def _write_chunk(folder: Path, stem: str, number: int, lines: list[bytes]) -> Path:
    chunk = folder / f"{stem}-{number:05d}.jsonl"
    with open(chunk, "wb") as out:
        out.writelines(lines)
    return chunk


_runtime: Runtime | None = None


def _init_worker(settings: Settings) -> None:
    global _runtime
    _runtime = Runtime(settings)


def _import_chunk(chunk: Path, runtime: Runtime | None = None) -> ImportSummary:
    from omniweave.service.imports import import_file

    summary = import_file(runtime or _runtime, "segment", chunk)  # type: ignore[arg-type]
    chunk.unlink()
    return summary


def import_online(runtime: Runtime, folder: Path, advance: Callable[[int], None],
                  workers: int | None = None, chunk_events: int = CHUNK_EVENTS) -> dict[str, ImportSummary]:
    """Import `folder/online/*.jsonl` with the `segment` importer; returns a summary per stream.

    `advance(n)` is called as chunks of n events are done.
    """
    chunks_dir = folder / CHUNKS_FOLDER
    shutil.rmtree(chunks_dir, ignore_errors=True)
    sizes = {stream: (folder / "online" / f"{stream}.jsonl").stat().st_size for stream in ONLINE_SOURCES}
    big = sum(sizes.values()) > 4 * chunk_events * 1000  # ~1 kB per event
    workers = (workers or os.cpu_count() or 1) if big else 1
    totals = {stream: ImportSummary(file=f"{stream}.jsonl", kind="segment") for stream in ONLINE_SOURCES}

    def add(stream: str, part: ImportSummary, events: int) -> None:
        total = totals[stream]
        total.rows_read += part.rows_read
        total.rows_imported += part.rows_imported
        total.rows_duplicate += part.rows_duplicate
        total.rows_rejected += part.rows_rejected
        total.records_written += part.records_written
        total.errors.extend(part.errors[:100])
        advance(events)

    def chunks() -> Iterator[tuple[str, Path, int]]:
        for stream in ONLINE_SOURCES:
            for chunk, events in split_jsonl(folder / "online" / f"{stream}.jsonl", chunks_dir, chunk_events):
                yield stream, chunk, events

    try:
        if workers <= 1:
            for stream, chunk, events in chunks():
                add(stream, _import_chunk(chunk, runtime), events)
            return totals
        context = multiprocessing.get_context("spawn")
        pending: deque[tuple[str, int, Future[ImportSummary]]] = deque()
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                                 initargs=(runtime.settings,)) as pool:
            for stream, chunk, events in chunks():
                pending.append((stream, events, pool.submit(_import_chunk, chunk)))
                while len(pending) > workers:  # a few chunks on disk at a time
                    done_stream, done_events, future = pending.popleft()
                    add(done_stream, future.result(), done_events)
            while pending:
                done_stream, done_events, future = pending.popleft()
                add(done_stream, future.result(), done_events)
        return totals
    finally:
        shutil.rmtree(chunks_dir, ignore_errors=True)
