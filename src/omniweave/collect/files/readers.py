"""Readers: open a CSV, Parquet or JSON-lines file as a DuckDB relation of numbered rows.

Each reader checks that the file can be read at all (not empty, text where text is expected,
a header row) and raises `InputError` naming the file and what is wrong; it never reads the
whole file in Python except for JSON lines. Rows are numbered from 1 in file order (`__row`):
for CSV the first row after the header is row 1; for JSON lines a row is a line of the file.
"""

from __future__ import annotations

import csv
import gzip
import io
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import orjson
import pyarrow as pa

from omniweave.collect.files import sql
from omniweave.errors import InputError

CSV_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".tsv.gz")
PARQUET_SUFFIXES = (".parquet", ".pq")
JSON_SUFFIXES = (".jsonl", ".ndjson", ".json", ".jsonl.gz", ".ndjson.gz", ".json.gz")
_DELIMITERS = (",", ";", "\t", "|")
_HEAD_BYTES = 1 << 16
_SAMPLE_OBJECTS = 1000


@dataclass
class SourceFile:
    """An opened input file: a FROM-able relation of its rows, and one that numbers them (`__row`)."""

    path: Path
    format: str  # csv | parquet | jsonl
    relation: str
    columns: dict[str, str]  # the file's column names -> DuckDB type
    all_present: bool = False  # JSON lines: any mapped key may appear on any line
    invalid: str | None = None  # SQL true when a row could not be parsed
    invalid_reason: str = ""
    raw: str | None = None  # SQL: the raw text of a row
    delimiter: str = ","
    keep: list[Any] = field(default_factory=list)  # registered Arrow tables stay alive
    numbered_relation: str = ""  # with __row; defaults to `relation` (which then has __row)

    def __post_init__(self) -> None:
        self.numbered_relation = self.numbered_relation or self.relation

    def column_sql(self, name: str) -> str:
        """SQL that reads the file's column `name` from a row of `relation`."""
        return sql.json_field(name) if self.format == "jsonl" else sql.column(name)


def file_format(path: Path) -> str:
    """csv, parquet or jsonl, from the file name's ending."""
    name = path.name.lower()
    if name.endswith(CSV_SUFFIXES):
        return "csv"
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    if name.endswith(JSON_SUFFIXES):
        return "jsonl"
    raise InputError(
        f"{path}: unknown file type; expected a name ending in "
        f"{', '.join(CSV_SUFFIXES + PARQUET_SUFFIXES + JSON_SUFFIXES)}"
    )


def open_source(con: duckdb.DuckDBPyConnection, path: Path) -> SourceFile:
    """Open `path` for reading through `con`; raises InputError if it cannot be read at all."""
    fmt = file_format(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if fmt == "csv":
        return _open_csv(con, path)
    if fmt == "parquet":
        return _open_parquet(con, path)
    return _open_jsonl(con, path)


def _head(path: Path) -> bytes:
    try:
        if path.name.lower().endswith(".gz"):
            with gzip.open(path, "rb") as fh:
                return fh.read(_HEAD_BYTES)
        with open(path, "rb") as fh:
            return fh.read(_HEAD_BYTES)
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(f"{path}: cannot be read: {exc}") from exc


def _open_csv(con: duckdb.DuckDBPyConnection, path: Path) -> SourceFile:
    head = _head(path)
    if not head.strip():
        raise InputError(f"{path}: the file is empty; expected a header row with column names")
    if b"\x00" in head:
        raise InputError(f"{path}: not a CSV file (it holds binary data); expected UTF-8 text with a header row")
    first = head.split(b"\n", 1)[0].rstrip(b"\r")
    try:
        line = first.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not a UTF-8 CSV file ({exc.reason} at byte {exc.start} of the header)") from None
    delimiter = max(_DELIMITERS, key=lambda d: (line.count(d), d == ","))
    names = [n.strip() for n in next(csv.reader([line], delimiter=delimiter))]
    names = [n or f"column{i + 1}" for i, n in enumerate(names)]
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise InputError(f"{path}: the header names column {name!r} twice")
        seen.add(name)
    relation, numbered = sql.csv_relation(path, names, delimiter)
    return SourceFile(
        path, "csv", relation, {n: "VARCHAR" for n in names}, delimiter=delimiter, numbered_relation=numbered
    )


def _open_parquet(con: duckdb.DuckDBPyConnection, path: Path) -> SourceFile:
    try:
        described = con.execute(sql.parquet_columns(path)).fetchall()
    except (duckdb.InvalidInputException, duckdb.IOException) as exc:
        raise InputError(f"{path}: not a Parquet file ({str(exc).splitlines()[0]})") from None
    columns = {row[0]: _base_type(row[1]) for row in described}
    relation = sql.parquet_relation(path)
    return SourceFile(path, "parquet", relation, columns)


def _base_type(duck_type: str) -> str:
    return "VARCHAR" if duck_type.upper().startswith("VARCHAR") else duck_type.upper()


def read_json_records(path: Path) -> Iterator[tuple[int, bytes]]:
    """(row number, JSON text) for each record: a line of a JSON-lines file (blank lines skipped,
    numbers are line numbers), or an element of a file holding one JSON array."""
    data = _read_all(path)
    stripped = data.lstrip()
    if stripped.startswith(b"["):
        try:
            items = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise InputError(
                f"{path}: not valid JSON ({exc}); expected one JSON object per line or a JSON array"
            ) from None
        for i, item in enumerate(items, 1):
            yield i, orjson.dumps(item)
        return
    for number, line in enumerate(data.split(b"\n"), 1):
        if line.strip():
            yield number, line


def _read_all(path: Path) -> bytes:
    try:
        if path.name.lower().endswith(".gz"):
            with gzip.open(path, "rb") as fh:
                data = fh.read()
        else:
            data = path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(f"{path}: cannot be read: {exc}") from exc
    if not data.strip():
        raise InputError(f"{path}: the file is empty; expected one JSON object per line")
    if b"\x00" in data[:_HEAD_BYTES]:
        raise InputError(f"{path}: not a JSON-lines file (it holds binary data)")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return data.removeprefix(b"\xef\xbb\xbf")


def _open_jsonl(con: duckdb.DuckDBPyConnection, path: Path) -> SourceFile:
    numbers: list[int] = []
    lines: list[bytes] = []
    for number, text in read_json_records(path):
        numbers.append(number)
        lines.append(text)
    keys: dict[str, None] = {}
    for text in lines[:_SAMPLE_OBJECTS]:
        try:
            obj = orjson.loads(text)
        except orjson.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            keys.update(dict.fromkeys(obj))
    table = pa.table(
        {
            "__row": pa.array(np.asarray(numbers, dtype=np.int64)),
            "__line": pa.array(lines, pa.binary()).cast(pa.string()),
        }
    )
    name = f"__jsonl_{id(table)}"
    con.register(name, table)
    relation = sql.json_lines_relation(name)
    return SourceFile(
        path,
        "jsonl",
        relation,
        {k: "VARCHAR" for k in keys},
        all_present=True,
        invalid="__obj IS NULL",
        invalid_reason="not a JSON object (expected one {...} per line)",
        raw="__line",
        keep=[table],
    )


def parse_csv_line(line: str, delimiter: str) -> list[str]:
    """The fields of one raw CSV line (used to find the key of a row the CSV reader rejected)."""
    try:
        return next(csv.reader(io.StringIO(line), delimiter=delimiter))
    except (csv.Error, StopIteration):
        return []
