"""The import engine: runs a mapping over a file in DuckDB and returns the rows to log.

One streaming query does the work (see `collect.files.sql`); Python only counts, and, when some
rows were bad, runs a second query to say which row, which field and why. Nothing is written
here: the caller appends `Prepared.table` to the event log (or the spend dataset).

Bad rows never stop an import: they are reported and left out, good rows are kept. Rows that
share a record key (a till receipt's line items) are accepted or rejected together, so that a
corrected file can be imported again later (its events would otherwise count as duplicates).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from omniweave.collect.files import sql
from omniweave.collect.files.mapping import Mapping
from omniweave.collect.files.readers import SourceFile, open_source, parse_csv_line
from omniweave.collect.files.sql import MappingSQL, SourceShape
from omniweave.errors import InputError
from omniweave.storage.eventlog import EVENT_SCHEMA, SPEND_SCHEMA, EventLog, with_flat_columns

FILE_ERRORS = (duckdb.InvalidInputException, duckdb.IOException, duckdb.ConversionException)
"""What DuckDB raises for a file it cannot read (other DuckDB errors are bugs, and propagate)."""

MAX_ERRORS = 100_000
"""At most this many bad rows are described one by one; the summary still counts them all."""

Stage = Callable[[str, "Callable[[], float] | None"], None]


@dataclass
class ImportSummary:
    """What an import did: rows read, imported, duplicate (already imported) and rejected.

    Row numbers in `errors` count data rows from 1, as a spreadsheet shows them below the
    header: row 1 is the first row after the CSV header (spreadsheet line 2); for JSON lines,
    row N is line N of the file; for Parquet, the N-th row.
    """

    file: str
    kind: str
    rows_read: int = 0
    rows_imported: int = 0
    rows_duplicate: int = 0
    rows_rejected: int = 0
    records_written: int = 0
    dataset: str = "events"
    errors: list[str] = field(default_factory=list)

    def add(self, part: ImportSummary, max_errors: int | None = None) -> None:
        """Add the counts and errors of a part of this import (a batch, a chunk of the file)."""
        self.rows_read += part.rows_read
        self.rows_imported += part.rows_imported
        self.rows_duplicate += part.rows_duplicate
        self.rows_rejected += part.rows_rejected
        self.records_written += part.records_written
        room = len(part.errors) if max_errors is None else max(0, max_errors - len(self.errors))
        self.errors.extend(part.errors[:room])

    def describe(self) -> str:
        """One line for people: what was read, imported, skipped and rejected."""
        what = {"events": "events", "spend": "spend rows"}.get(self.dataset, f"{self.dataset} rows")
        return (
            f"{self.file} ({self.kind}): {self.rows_read:,} rows read, {self.rows_imported:,} imported "
            f"as {self.records_written:,} {what}, {self.rows_duplicate:,} duplicate (already imported), "
            f"{self.rows_rejected:,} rejected"
        )


@dataclass
class Prepared:
    """Rows ready to append to `dataset` under `batch_name`, and the summary of the import."""

    table: pa.Table
    dataset: str
    batch_name: str
    summary: ImportSummary


def connect() -> duckdb.DuckDBPyConnection:
    """A fresh in-memory DuckDB connection set up for importing (UTC, progress reporting)."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET enable_progress_bar = true")
    con.execute("SET enable_progress_bar_print = false")
    return con


def to_arrow(con: duckdb.DuckDBPyConnection, query: str) -> pa.Table:
    """A query's result as one Arrow table. Through the relation API DuckDB builds the Arrow
    batches in parallel as part of the query (`execute` would collect rows, then convert them)."""
    return arrow_table(con.sql(query))


def arrow_table(result: duckdb.DuckDBPyRelation | duckdb.DuckDBPyConnection) -> pa.Table:
    """All rows of a relation (or of an executed statement) as one Arrow table (DuckDB 2 copies the rows
    once more for an executed statement, so pass relations: `con.sql(query, params=...)`)."""
    return result.to_arrow_table()


def already_logged(
    con: duckdb.DuckDBPyConnection, log: EventLog, dataset: str, source_id: str, ids: pa.Array | pa.ChunkedArray
) -> pa.Array | pa.ChunkedArray:
    """For each id, whether `dataset` already holds it for `source_id` (one pass over the log's
    ids; memory for the new ids only)."""
    if len(ids) == 0 or not log.has_data(dataset):
        return pc.is_null(ids)  # all false (ids are never null), built without a Python value
    url = log.dataset_url(dataset)
    if "://" in url and not url.startswith("file://"):
        con.register_filesystem(log.fs)
    con.register("__candidates", pa.table({"id": ids}))
    try:
        found = arrow_table(
            con.sql(
                sql.logged_ids(url, "message_id" if dataset == "events" else "spend_id", "__candidates"),
                params=[source_id],
            )
        )["id"]
    finally:
        con.unregister("__candidates")
    if len(found) == 0:
        return pc.is_null(ids)  # all false
    if len(found) == len(ids):  # the found ids are distinct and among `ids`: all logged (a re-import)
        return pc.is_valid(ids)  # all true
    return pc.is_in(ids, value_set=found.combine_chunks())


def shape_of(mapping: Mapping, source: SourceFile) -> SourceShape:
    """Match the mapping's columns to the file's (exactly, else ignoring case and spaces)."""
    folded = {name.strip().lower(): name for name in source.columns}
    column_sql: dict[str, str | None] = {}
    types: dict[str, str] = {}
    missing = []
    for col in mapping.columns:
        actual = col.name if col.name in source.columns else folded.get(col.name.strip().lower())
        if actual is None and source.all_present:
            if col.name in mapping.required_columns and source.columns:
                missing.append(col.name)
            actual = col.name
        if actual is None:
            if col.name in mapping.required_columns:
                missing.append(col.name)
            column_sql[col.name] = None
            continue
        column_sql[col.name] = source.column_sql(actual)
        types[col.name] = source.columns.get(actual, "VARCHAR")
    if missing:
        has = ", ".join(repr(c) for c in source.columns) or "none"
        raise InputError(
            f"{source.path}: missing required column{'s' if len(missing) > 1 else ''} "
            f"{', '.join(repr(c) for c in missing)}; the file has columns {has}; a {mapping.kind!r} file "
            f"needs {', '.join(repr(c) for c in mapping.required_columns)} (see docs/file-formats.md)"
        )
    return SourceShape(
        source.relation,
        column_sql,
        types,
        source.invalid,
        source.raw,
        source.numbered_relation,
        empty_is_null=source.format == "csv",
    )


def run_mapping(
    mapping: Mapping,
    path: Path,
    *,
    source_id: str,
    log: EventLog,
    received_at: datetime,
    stage: Stage | None = None,
) -> Prepared:
    """Read `path` through `mapping`; returns the new rows (not yet written) and the summary."""
    stage = stage or (lambda _name, _fraction: None)
    con = connect()
    try:
        source = open_source(con, path)
        shape = shape_of(mapping, source)
        dataset = mapping.kind if mapping.target == "reference" else mapping.target
        plan = MappingSQL(mapping, shape, source_id, received_at)
        stage(f"reading {path.name}", con.query_progress)
        try:
            out = to_arrow(con, plan.main_query())
        except FILE_ERRORS as exc:
            raise InputError(f"{path}: cannot be read as {source.format}: {str(exc).splitlines()[0]}") from None
        rejects = _csv_rejects(con, source, mapping)
        stage("checking what was imported before", con.query_progress)
        if mapping.target == "reference":  # the file replaces the dataset: nothing in it was imported before
            logged = pc.is_null(out["__key"])
        else:
            ids = out["message_id" if dataset == "events" else "spend_id"]
            logged = already_logged(con, log, dataset, source_id, ids)
        return _finish(mapping, path, source, plan, con, out, logged, rejects, dataset, stage)
    finally:
        con.close()


@dataclass
class _Rejects:
    """Rows the CSV reader itself could not split into the header's columns."""

    rows: list[int] = field(default_factory=list)  # data-row numbers, sorted
    errors: list[tuple[int, str]] = field(default_factory=list)
    keys: set[str] = field(default_factory=set)


def _csv_rejects(con: duckdb.DuckDBPyConnection, source: SourceFile, mapping: Mapping) -> _Rejects:
    found = _Rejects()
    if source.format != "csv":
        return found
    rows = con.execute(sql.CSV_REJECTS).fetchall()
    names = list(source.columns)
    key_index = [names.index(k) if k in names else -1 for k in mapping.key]
    for line, column, kind, text, message in rows:
        row = int(line) - 1
        found.rows.append(row)
        where = f"field {column!r}: " if column else ""
        reason = str(message).splitlines()[0] if message else str(kind).lower()
        what = "does not match the header" if "COLUMNS" in str(kind) else "cannot be read"
        found.errors.append(
            (row, f"{source.path.name}:row {row}: {where}the row {what} ({reason}) (got {shown(text)})")
        )
        fields = parse_csv_line(text or "", source.delimiter)
        if mapping.group is not None and all(0 <= i < len(fields) for i in key_index):
            found.keys.add("\x1f".join(fields[i].strip() for i in key_index))
    return found


def shown(value: object) -> str:
    """A value as error messages show it: quoted, cut at 80 characters."""
    text = "" if value is None else str(value)
    return "'" + (text if len(text) <= 80 else text[:77] + "...") + "'"


def _finish(
    mapping: Mapping,
    path: Path,
    source: SourceFile,
    plan: MappingSQL,
    con: duckdb.DuckDBPyConnection,
    out: pa.Table,
    logged: pa.Array,
    rejects: _Rejects,
    dataset: str,
    stage: Stage,
) -> Prepared:
    grouping = mapping.group is not None
    bad = out["__bad"]
    if rejects.keys:
        bad = pc.or_(bad, pc.is_in(out["__key"], pa.array(sorted(rejects.keys), pa.string())))
    bad = pc.or_kleene(bad, pc.is_null(bad))  # unknown is bad (fill_null(True) would import pandas)
    ok = pc.invert(bad)
    dup = pc.and_(ok, logged)
    good = pc.and_(ok, pc.invert(logged))
    rows = out["__rows"]

    def total(mask: pa.ChunkedArray | pa.Array) -> int:
        return int(pc.sum(pc.filter(rows, mask)).as_py() or 0)

    n_good = int(pc.sum(pc.cast(good, pa.int64())).as_py() or 0)
    rejected = total(bad) + len(rejects.rows)
    duplicate = total(dup) + (0 if grouping else total(good) - n_good)
    imported = total(good) if grouping else n_good
    summary = ImportSummary(
        file=path.name,
        kind=mapping.kind,
        rows_read=total(pc.is_valid(rows)) + len(rejects.rows),
        rows_imported=imported,
        rows_duplicate=duplicate,
        rows_rejected=rejected,
        dataset=dataset,
    )
    if rejected:
        stage("describing rejected rows", None)
        bad_keys = pc.filter(out["__key"], bad).to_pylist() if grouping else []
        summary.errors = _describe_errors(mapping, source, plan, con, sorted(set(bad_keys) | rejects.keys), rejects)
    if mapping.target == "reference":
        names = [*plan.keys, *(name for name, _ in mapping.fields)]
        schema = pa.schema([out.schema.field(name) for name in names])
    else:
        schema = EVENT_SCHEMA if dataset == "events" else SPEND_SCHEMA
    if mapping.target == "reference" and rejected:  # the file replaces the list: all of it, or none of it
        good = pc.and_(good, pa.scalar(False))
        n_good = summary.rows_imported = 0
    if n_good < out.num_rows:
        out = out.filter(good)
    if dataset == "events":
        out = with_flat_columns(out)
    table = out.select(schema.names).cast(schema)
    summary.records_written = table.num_rows
    return Prepared(table, dataset, batch_name(mapping.kind, table, schema.names[0]), summary)


def _describe_errors(
    mapping: Mapping,
    source: SourceFile,
    plan: MappingSQL,
    con: duckdb.DuckDBPyConnection,
    bad_keys: list[str],
    rejects: _Rejects,
) -> list[str]:
    sql, checked = plan.errors_query(with_keys=bool(bad_keys))
    params = [bad_keys] if bad_keys else []
    result = con.execute(sql + f" LIMIT {MAX_ERRORS + 1}", params)
    columns = [d[0] for d in result.description]
    name = source.path.name
    key_label = mapping.key[0] if len(mapping.key) == 1 else "+".join(mapping.key)
    found: list[tuple[int, str]] = list(rejects.errors)
    for count, values in enumerate(result.fetchall(), 1):
        row = dict(zip(columns, values, strict=True))
        if count > MAX_ERRORS:
            found.append((1 << 62, f"{name}: more rejected rows than the first {MAX_ERRORS:,} are not listed"))
            break
        number = _file_row(int(row["__row"]), rejects.rows)
        if row.get("__invalid"):
            found.append((number, f"{name}:row {number}: {source.invalid_reason} (got {shown(row.get('__raw'))})"))
        elif not row["__bad"]:
            key = str(row["__key"]).replace("\x1f", "+")
            found.append(
                (
                    number,
                    (
                        f"{name}:row {number}: field {key_label!r}: not imported because another row "
                        f"of the same record is bad (got {shown(key)})"
                    ),
                )
            )
        else:
            for i, column in checked:
                if row[f"e{i}"] is not None:
                    found.append(
                        (number, (f"{name}:row {number}: field {column!r}: {row[f'e{i}']} (got {shown(row[f'g{i}'])})"))
                    )
    found.sort(key=lambda item: item[0])
    return [text for _, text in found]


def _file_row(number: int, rejected: list[int]) -> int:
    """The data-row number in the file of the `number`-th row the CSV reader accepted."""
    for row in rejected:
        if row <= number:
            number += 1
        else:
            break
    return number


def batch_name(kind: str, table: pa.Table, id_column: str) -> str:
    """The same name for the same rows (a retry overwrites instead of doubling)."""
    if table.num_rows == 0:
        return f"import-{kind}-empty"
    bounds = pc.min_max(table[id_column]).as_py()
    digest = hashlib.sha256(f"{kind}|{table.num_rows}|{bounds['min']}|{bounds['max']}".encode()).hexdigest()
    return f"import-{kind}-{digest[:20]}"
