"""A paths file read fast: Arrow parses the CSV, identical paths are added up, and the models get the
distinct paths already encoded.

A paths file with one row per journey (the common export) holds far fewer distinct paths than rows:
1,000,000 journeys over nine channels are about 82,000 distinct paths. So the only work per row is Arrow's,
in C++ (split the CSV, parse the numbers, number each row's path text through a dictionary), then one
`numpy.bincount` per column adds the rows up per path text. Arrow reads on one thread: on the shared
two-core machine its threads cost more CPU than they saved time (the read alone, median of 10 runs at load
12-14: 0.37 s of CPU on two threads, 0.24 s on one; 0.23 s with the jemalloc pool). The rest runs once per
distinct path, in Arrow's compute functions: trim the white space around each channel (as `str.strip`,
the reference reader's trimming, does), merge the paths that differ only in spacing, sort them, split
them into touches and number the channels in order of first appearance.

What it accepts is what `measure.attribution.read_paths_csv`, the row-by-row reference reader, accepts,
with the same table: any file it is not sure of (a header on more than one line, a row of the wrong width,
a number Arrow cannot parse or that is negative or not finite, text that is not UTF-8, an empty path or
channel) is handed to the reference reader, which returns the table for a file Arrow is merely stricter
about, and otherwise raises the InputError naming the record, the field and what was expected.

Neither DuckDB, pandas nor the event-log machinery is imported here (`pyarrow.compute` neither: its import
builds a wrapper with documentation for every function, 0.05 s; the functions are called by name):
`omniweave attribution --paths` loads numpy and Arrow's CSV reader and nothing else heavy. On the issue's
1,000,000-row file this reader takes about 0.5 s of CPU where DuckDB took 0.9 s (docs/attribution.md).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from omniweave.measure.attribution import (
    PATH_SEPARATOR,
    REQUIRED_COLUMNS,
    PathRow,
    PathsTable,
    Touches,
    read_paths_csv,
)

BLOCK_BYTES = 1 << 23
"""Arrow parses the file in blocks of this size (8 MiB: a 28 MB file is four)."""


class _NotWhole(Exception):
    """The fast reader cannot take this file whole: the reference reader decides (and words the error)."""


def read_paths_file(path: Path | str) -> PathsTable:
    """A paths CSV as a table of distinct paths: identical paths (after trimming the white space around each
    channel) are added up, rows sorted by path. A file with one row per journey and one with one row per
    path give the same table.

    Conversions, value and nulls are added up in floating point (exact for whole numbers; a value within
    rounding, 1e-12 relative, of the exact sum). Raises InputError for a file that is not a paths file,
    naming the record, the field and what was expected."""
    file = Path(path)
    try:
        return _distinct_paths(file)
    except _NotWhole:
        return aggregate_rows(read_paths_csv(file).rows)


def aggregate_rows(rows: Iterable[PathRow]) -> PathsTable:
    """One row per distinct channel sequence (conversions, value and nulls added up), sorted by the
    path's text (`a>b`, code point order)."""
    merged: dict[tuple[str, ...], list[float]] = {}
    for row in rows:
        sums = merged.get(row.channels)
        if sums is None:
            merged[row.channels] = [row.conversions, row.value, row.nulls]
        else:
            sums[0] += row.conversions
            sums[1] += row.value
            sums[2] += row.nulls
    ordered = sorted(merged, key=PATH_SEPARATOR.join)
    return PathsTable(tuple(PathRow(channels, *merged[channels]) for channels in ordered))


def header_of(file: Path) -> list[str]:
    """The column names of the file's first line (a UTF-8 byte order mark dropped, names trimmed); _NotWhole
    when the first line is not a whole header holding every required column."""
    try:
        with file.open("rb") as handle:
            first = handle.readline()
        fields = next(csv.reader([first.decode("utf-8-sig")], strict=True), None)
    except (OSError, UnicodeDecodeError, csv.Error):
        raise _NotWhole from None
    if not fields:
        raise _NotWhole
    names = [name.strip() for name in fields]
    if any(name not in names for name in REQUIRED_COLUMNS):
        raise _NotWhole
    return names


def _distinct_paths(file: Path) -> PathsTable:
    """Arrow reads the four columns (the path as a dictionary, so that each row's path is a number), the rows
    are added up per path text, then per trimmed path."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    names = header_of(file)
    pool = memory_pool()
    where = {name: i for i, name in enumerate(names)}  # the last of a repeated name, as the reference reader
    columns = [f"c{i}" for i in range(len(names))]
    path, conversions, value, nulls = (columns[where[name]] for name in REQUIRED_COLUMNS)
    types = {path: pa.dictionary(pa.int32(), pa.string())} | dict.fromkeys((conversions, value, nulls), pa.float64())
    try:
        table = pacsv.read_csv(
            file,
            read_options=pacsv.ReadOptions(
                column_names=columns, skip_rows=1, use_threads=False, block_size=BLOCK_BYTES
            ),
            parse_options=pacsv.ParseOptions(
                delimiter=",", quote_char='"', double_quote=True, escape_char=False, newlines_in_values=True
            ),
            convert_options=pacsv.ConvertOptions(
                column_types=types,
                include_columns=[path, conversions, value, nulls],
                null_values=[],
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
                check_utf8=True,
            ),
            memory_pool=pool,
        )
    except MemoryError:
        raise
    except (pa.ArrowException, OSError, ValueError):
        raise _NotWhole from None  # a row of the wrong width, a number Arrow cannot parse, not UTF-8...
    batches = [batch for batch in table.unify_dictionaries(pool).to_batches() if batch.num_rows]
    if not batches:
        return aggregate_rows(())  # a header and no rows
    raw = batches[0].column(0).dictionary  # the columns in the order asked for: path, conversions, value, nulls
    sums = np.zeros((3, len(raw)))
    for batch in batches:  # Arrow's blocks, added up where they lie
        index = _numbers(np.int32, batch.column(0).indices)
        for column, total in enumerate(sums, 1):
            numbers = _numbers(np.float64, batch.column(column))
            if not (np.isfinite(numbers).all() and (numbers >= 0).all()):
                raise _NotWhole  # a negative or infinite number, or NaN: the reference reader names the record
            total += np.bincount(index, weights=numbers, minlength=len(raw))
    return _encoded(raw, sums[0], sums[1], sums[2], pool)


def memory_pool() -> Any:
    """Arrow's jemalloc pool where the wheel has it (Linux), else its default pool.

    On the shared two-core machine the default (mimalloc) pool spent 0.05-0.25 s of system time on the
    issue's 1,000,000-row file, from run to run; jemalloc 0.04-0.05 s (docs/attribution.md, part (d))."""
    import pyarrow as pa

    try:
        return pa.jemalloc_memory_pool()
    except NotImplementedError:
        return pa.default_memory_pool()


def _numbers(dtype: Any, array: Any) -> np.ndarray:
    """An Arrow array without nulls as a numpy array over its data buffer, not a copy (numpy's own conversion
    of an Arrow array imports pandas, a third of a second)."""
    size = np.dtype(dtype).itemsize
    return np.frombuffer(array.buffers()[1], dtype=dtype, count=len(array), offset=array.offset * size)


def _encoded(raw: Any, conversions: np.ndarray, value: np.ndarray, nulls: np.ndarray, pool: Any) -> PathsTable:
    """The table of the distinct raw paths (an Arrow string array) and their sums: paths equal once the
    white space around their channels is trimmed are merged, rows sorted by the trimmed text (code point
    order), channels numbered in order of first appearance, touches flat as the models want them."""
    from pyarrow import _compute as arrow  # pyarrow.compute itself takes 0.05 s to import

    def call(function: str, *args: Any, options: Any = None) -> Any:
        return arrow.call_function(function, list(args), options, pool)

    # `a > b` and `a>b`, the usual spellings, trimmed by a plain replacement; anything else by a pattern
    spaced = arrow.ReplaceSubstringOptions(f" {PATH_SEPARATOR} ", PATH_SEPARATOR)
    around = arrow.ReplaceSubstringOptions(rf"\s*{PATH_SEPARATOR}\s*", PATH_SEPARATOR)
    trimmings = (
        lambda: call("replace_substring", raw, options=spaced),
        lambda: call("utf8_trim_whitespace", call("replace_substring_regex", raw, options=around)),
    )
    for trim in trimmings:  # the pattern only when the replacement left white space around a channel
        keys = trim()
        encoded = call("dictionary_encode", keys)  # each raw path's key, numbered
        distinct = encoded.dictionary
        order = call("array_sort_indices", distinct)
        ordered = call("take", distinct, order)
        parts = call("split_pattern", ordered, options=arrow.SplitPatternOptions(PATH_SEPARATOR))
        touched = call("dictionary_encode", call("list_flatten", parts))  # numbered in order of first appearance
        channels = tuple(touched.dictionary.to_pylist())
        if all(name and name == name.strip() for name in channels):
            break
    else:
        # an empty path or channel, or white space Arrow does not trim (str.strip, the reference reader's
        # trimming, knows more): the reference reader
        raise _NotWhole
    rows = len(ordered)
    rank = np.empty(rows, dtype=np.int64)
    rank[_numbers(np.uint64, order)] = np.arange(rows)
    group = rank[_numbers(np.int32, encoded.indices)]
    lengths = _numbers(np.int32, call("list_value_length", parts)).astype(np.int64)
    row = np.repeat(np.arange(rows, dtype=np.int64), lengths)
    starts = np.cumsum(lengths) - lengths
    touches = Touches(
        channel=_numbers(np.int32, touched.indices).astype(np.int64),
        row=row,
        position=np.arange(len(row), dtype=np.int64) - starts[row],
        length=lengths[row],
        conversions=np.bincount(group, weights=conversions, minlength=rows),
        value=np.bincount(group, weights=value, minlength=rows),
        nulls=np.bincount(group, weights=nulls, minlength=rows),
    )
    return PathsTable.encoded(channels, touches)
