"""The warehouse engines, DuckDB and Spark: every difference between them, in this one module.

Pipeline code is written once against Ibis expressions. Where the two engines spell a function
differently (JSON paths, product arrays, epoch numbers, local time, hexadecimal text), `Dialect`
gives the spelling; a pure function finds the dialect of the tables it was handed with
`dialect_of(table)`, so no function below the shells takes an engine name. Where a query must be
SQL, it is written once in DuckDB's dialect and `transpile` turns it into Spark SQL with sqlglot.

`Engine` is the engine of one Runtime (chosen by the `engine` setting or `--engine`): how to open
an Ibis connection on it, read Parquet datasets and files through it, and run SQL on it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Literal, cast

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir
import pyarrow as pa
import sqlglot
import sqlglot.expressions as exp
from ibis.common.exceptions import IbisError

from omniweave.errors import ConfigError, TerminalStoreError

EngineName = Literal["duckdb", "spark"]
ENGINES: tuple[EngineName, ...] = ("duckdb", "spark")
"""The engines the warehouse runs on ('pyspark' is accepted as another name for 'spark')."""


def engine_name(value: str, where: str = "engine") -> EngineName:
    """`value` as one of ENGINES ('pyspark' means 'spark'); a ConfigError naming `where` otherwise."""
    name = "spark" if value == "pyspark" else value
    for engine in ENGINES:
        if engine == name:
            return engine
    raise ConfigError(f"{where}: unknown warehouse engine {value!r}; expected 'duckdb' or 'spark'")


# --- the two engines' spellings ------------------------------------------------------------------

_PRODUCT = dt.Array(
    dt.Struct(
        {"product_id": "string", "name": "string", "category": "string", "price": "float64", "quantity": "float64"}
    )
)


@ibis.udf.scalar.builtin(name="json_extract_string")
def _duck_json(doc: str, path: str) -> str: ...  # type: ignore[empty-body]


@ibis.udf.scalar.builtin(name="get_json_object")
def _spark_json(doc: str, path: str) -> str: ...  # type: ignore[empty-body]


@ibis.udf.scalar.builtin(name="json_extract_string")
def _duck_json_many(doc: str, paths: dt.Array(dt.string)) -> dt.Array(dt.string): ...  # type: ignore[empty-body,valid-type]


@ibis.udf.scalar.builtin(name="timezone")
def _duck_local(zone: str, ts: dt.Timestamp(timezone="UTC")) -> dt.timestamp: ...  # type: ignore[empty-body,valid-type]


@ibis.udf.scalar.builtin(name="from_utc_timestamp")
def _spark_local(ts: dt.Timestamp(timezone="UTC"), zone: str) -> dt.timestamp: ...  # type: ignore[empty-body,valid-type]


@ibis.udf.scalar.builtin(name="epoch_us")
def _duck_epoch_us(ts: dt.Timestamp(timezone="UTC")) -> dt.int64: ...  # type: ignore[empty-body,valid-type]


@ibis.udf.scalar.builtin(name="unix_micros")
def _spark_epoch_us(ts: dt.Timestamp(timezone="UTC")) -> dt.int64: ...  # type: ignore[empty-body,valid-type]


@ibis.udf.scalar.builtin(name="from_json")
def _duck_products(doc: str, schema: str) -> _PRODUCT: ...  # type: ignore[empty-body,valid-type]


@ibis.udf.scalar.builtin(name="from_json")
def _spark_products(doc: str, schema: str) -> _PRODUCT: ...  # type: ignore[empty-body,valid-type]


@ibis.udf.scalar.builtin(name="date_diff")
def _duck_date_diff(part: str, start: dt.date, end: dt.date) -> dt.int64: ...  # type: ignore[empty-body,valid-type]


@ibis.udf.scalar.builtin(name="unix_date")
def _spark_unix_date(day: dt.date) -> dt.int32: ...  # type: ignore[empty-body,valid-type]


@ibis.udf.scalar.builtin(name="conv")
def _spark_conv(number: str, from_base: int, to_base: int) -> str: ...  # type: ignore[empty-body]


@dataclass(frozen=True)
class Dialect:
    """JSON paths, product arrays, epoch numbers, local time and hex text, spelled for DuckDB or for Spark.

    Get one with `dialect_of(table)` (pure code) or `Runtime.engine.dialect` (services)."""

    name: EngineName

    @property
    def spark(self) -> bool:
        return self.name == "spark"

    def json(self, doc: ir.StringValue, key: str) -> ir.StringValue:
        """The text of `doc.key` (dots for nesting), NULL when absent."""
        path = "$." + key
        return _spark_json(doc, path) if self.spark else _duck_json(doc, path)

    def with_json_fields(
        self, table: ir.Table, doc: str, fields: Mapping[str, str], where: ir.BooleanValue | None = None
    ) -> ir.Table:
        """`table` plus a column `name` = `json(doc, key)` for each of `fields` (NULL where `where` is false).

        DuckDB parses each document once for all the fields, and only on the rows `where` selects.
        """
        if self.spark:
            return table.mutate(
                **{
                    name: self.json(table[doc], key)
                    if where is None
                    else ibis.cases((where, self.json(table[doc], key)), else_=ibis.null("string"))
                    for name, key in fields.items()
                }
            )
        paths = ibis.literal(["$." + key for key in fields.values()], dt.Array(dt.string))
        values = _duck_json_many(table[doc], paths)
        if where is not None:
            values = ibis.cases((where, values), else_=ibis.null(dt.Array(dt.string)))
        parsed = table.mutate(_parsed=values)
        return parsed.mutate(**{name: parsed._parsed[i] for i, name in enumerate(fields)}).drop("_parsed")

    def products(self, items: ir.StringValue) -> ir.ArrayValue:
        """The JSON text of an order's `products` as an array of {product_id, name, category, price, quantity}."""
        if self.spark:
            return _spark_products(
                items, "array<struct<product_id:string,name:string,category:string,price:double,quantity:double>>"
            )
        return _duck_products(
            items,
            '[{"product_id":"VARCHAR","name":"VARCHAR","category":"VARCHAR","price":"DOUBLE","quantity":"DOUBLE"}]',
        )

    def epoch_seconds(self, ts: ir.TimestampValue) -> ir.IntegerValue:
        """Whole seconds since 1970-01-01 UTC.

        On DuckDB straight from the instant: Ibis's spelling casts to a naive timestamp first, which
        goes through the session time zone (a time-zone library call per row, and another day if
        the session is not in UTC).
        """
        return ts.epoch_seconds() if self.spark else _duck_epoch_us(ts) // 1_000_000

    def epoch_micros(self, ts: ir.TimestampValue) -> ir.IntegerValue:
        """Microseconds since 1970-01-01 UTC (whole timestamps, to order by)."""
        return _spark_epoch_us(ts) if self.spark else _duck_epoch_us(ts)

    def epoch_day(self, day: ir.DateValue) -> ir.IntegerValue:
        """Days since 1970-01-01 of a date, as int64 (so that periods are integer arithmetic on every engine)."""
        if self.spark:
            return _spark_unix_date(day).cast("int64")
        return _duck_date_diff("day", ibis.literal(date(1970, 1, 1)), day).cast("int64")

    def local_time(self, ts: ir.TimestampValue, zone: ir.StringValue) -> ir.TimestampValue:
        """The wall-clock time of the UTC instant `ts` in the IANA time zone `zone`."""
        return _spark_local(ts, zone) if self.spark else _duck_local(zone, ts)

    def hex_to_int(self, digits: ir.StringValue) -> ir.IntegerValue:
        """Text of hexadecimal digits (at most 15) as an int64: DuckDB casts '0x...' text, Spark converts the base.

        (Adding up the digits one by one in portable Ibis took 1.6 s per segment at 1 M persons.)"""
        number = _spark_conv(digits, 16, 10) if self.spark else ibis.literal("0x") + digits
        return number.cast("int64")


DUCKDB = Dialect("duckdb")
SPARK = Dialect("spark")
_BACKEND_DIALECTS = {"duckdb": DUCKDB, "pyspark": SPARK}


def dialect_of(expr: ir.Expr) -> Dialect:
    """The dialect of the engine that will run `expr`: its tables' backend; an expression over in-memory
    tables only runs on Ibis's default backend, DuckDB."""
    try:
        backend = expr._find_backend()
    except IbisError:
        return DUCKDB
    try:
        return _BACKEND_DIALECTS[backend.name]
    except KeyError:
        raise ConfigError(
            f"tables on the Ibis backend {backend.name!r}; the warehouse runs on 'duckdb' or 'pyspark'"
        ) from None


# --- SQL written once ----------------------------------------------------------------------------

_STRFTIME_DIRECTIVE = re.compile(r"%[a-zA-Z%]")


def _split_literal_letters(node: exp.Expression) -> exp.Expression:
    """strftime(ts, '%Y-%m-%dT...Z') as strftime pieces joined by literal text, where the format has letters
    outside its directives (sqlglot would hand them to Spark's date_format unquoted, where they are patterns)."""
    if not isinstance(node, exp.TimeToStr) or not isinstance(node.args.get("format"), exp.Literal):
        return node
    fmt = node.args["format"].this
    pieces: list[tuple[str, str]] = []  # (kind, text): "format" runs of directives and punctuation, "text" letters
    position = 0
    for match in re.finditer(r"[A-Za-z]+", _STRFTIME_DIRECTIVE.sub(lambda m: "\0" * len(m.group()), fmt)):
        if match.start() > position:
            pieces.append(("format", fmt[position : match.start()]))
        pieces.append(("text", fmt[match.start() : match.end()]))
        position = match.end()
    if not any(kind == "text" for kind, _ in pieces):
        return node
    if position < len(fmt):
        pieces.append(("format", fmt[position:]))
    parts: list[exp.Expression] = [
        exp.TimeToStr(this=node.this.copy(), format=exp.Literal.string(text))
        if kind == "format"
        else exp.Literal.string(text)
        for kind, text in pieces
    ]
    joined = parts[0]
    for part in parts[1:]:
        joined = exp.DPipe(this=joined, expression=part)
    return exp.Paren(this=joined)


def transpile(sql: str, dialect: Dialect) -> str:
    """`sql`, written in DuckDB's dialect, in the dialect of the engine (sqlglot; unchanged for DuckDB)."""
    if not dialect.spark:
        return sql
    tree = sqlglot.parse_one(sql, read="duckdb").transform(_split_literal_letters)
    return tree.sql(dialect="spark")


# --- an engine for one Runtime -------------------------------------------------------------------


class Engine:
    """The warehouse engine of one Runtime: DuckDB in-process, or Spark (a session handed in, else one started
    in local mode on first use). Everything the warehouse does differently per engine goes through here."""

    def __init__(
        self,
        name: str = "duckdb",
        spark_session: Any = None,
        spark_master: str = "",
        memory_limit: int | None = None,
        temp_directory: str | None = None,
    ):
        self.name: EngineName = engine_name(name)
        self.memory_limit = memory_limit  # bytes a DuckDB connection may hold before it spills (None: DuckDB's)
        self.temp_directory = temp_directory  # where DuckDB spills
        self.dialect = _BACKEND_DIALECTS["pyspark" if self.name == "spark" else "duckdb"]
        if spark_session is not None and self.name != "spark":
            raise ConfigError(f"a Spark session was handed to the {self.name!r} engine; choose engine 'spark'")
        self._spark_session = spark_session
        self.spark_master = spark_master or "local[2]"  # where a session started here runs (`spark_master` setting)

    def __repr__(self) -> str:
        return f"Engine({self.name!r})"

    def spark_session(self) -> Any:
        """The Spark session, unless one was handed in started on first use on `spark_master` (local mode by
        default; a standalone, YARN or Kubernetes master otherwise). Spark's own configuration (spark-defaults.conf
        in $SPARK_CONF_DIR, PYSPARK_SUBMIT_ARGS) adds to it: executor memory, cores, shuffle partitions, jars."""
        if self._spark_session is None:
            try:
                from pyspark.sql import SparkSession
            except ModuleNotFoundError as exc:
                raise ConfigError("the Spark engine needs PySpark: pip install 'omniweave[spark]'") from exc
            self._spark_session = (
                SparkSession.builder.master(self.spark_master)
                .appName("omniweave")
                .config("spark.ui.enabled", "false")
                .config("spark.sql.session.timeZone", "UTC")
                .getOrCreate()
            )
        return self._spark_session

    def connect(self, fs: Any) -> Any:
        """A new Ibis connection on the engine that reads the fsspec filesystem `fs` (the event log's)."""
        if self.name == "duckdb":
            from omniweave.storage.duckdb_compat import ibis_connect

            con = ibis_connect()
            self.limit_memory(con.con)
            if not _is_local(fs):
                # DuckDB reads the same fsspec filesystem the log was written through
                con.con.register_filesystem(fs)
            return con
        session = self.spark_session()  # first: without PySpark it says which extra to install
        return ibis.pyspark.connect(session)

    def limit_memory(self, duck: Any) -> None:
        """Apply the memory limit and the spill folder to a raw DuckDB connection (any DuckDB the stages open)."""
        if self.memory_limit is not None:
            duck.execute(f"SET memory_limit = '{int(self.memory_limit)}B'")
        if self.temp_directory is not None:
            duck.execute(f"SET temp_directory = '{_sql_text(self.temp_directory)}'")

    def read_dataset(self, con: Any, name: str, url: str, files: list[str] | None = None) -> ir.Table:
        """The Parquet dataset at `url` (day partitions as columns) as the table `name`; files written before
        a column was added to the log's schema read it as NULL. `files` (URLs): read only these files of it,
        as the log lists them (without the files a compaction superseded), rather than every file in the folder."""
        if self.name == "duckdb":
            source = files if files else url + "/**/*.parquet"
            return _duck_parquet(con, source, name)
        if not files:
            return con.read_parquet(url, table_name=name, mergeSchema=True)
        frame = con._session.read.option("basePath", url).option("mergeSchema", "true").parquet(*files)
        frame.createOrReplaceTempView(name)
        return con.table(name)

    def empty_table(self, con: Any, name: str, empty: pa.Table) -> ir.Table:
        """The table `name` with no rows, with the schema of `empty`."""
        if self.name == "duckdb":
            return con.create_table(name, empty, overwrite=True)
        return con.create_view(name, ibis.memtable(empty), overwrite=True)

    def read_files(self, con: Any, name: str, urls: list[str], base_url: str) -> ir.Table:
        """Only these Parquet files of the dataset at `base_url` as one table, partition columns read from paths."""
        if self.name == "duckdb":
            return _duck_parquet(con, urls, None)
        frame = con._session.read.option("basePath", base_url).option("mergeSchema", "true").parquet(*urls)
        view = f"_{name}_files_{abs(hash(tuple(urls))):x}"
        frame.createOrReplaceTempView(view)
        return con.table(view)

    def set_threads(self, con: Any, threads: int | None) -> None:
        """Cap the engine's worker threads (DuckDB; Spark has its own settings, so nothing there)."""
        if threads is not None and self.name == "duckdb":
            con.raw_sql(f"SET threads = {int(threads)}")

    def register(self, con: Any, name: str, table: pa.Table) -> None:
        """Make the Arrow `table` queryable as `name` in SQL on this connection (a temporary table or view)."""
        if self.name == "duckdb":
            con.create_table(name, table, temp=True, overwrite=True)
        else:
            con.create_view(name, ibis.memtable(table), overwrite=True)

    def register_parquet(self, con: Any, name: str, url: str) -> None:
        """Make the Parquet file(s) at `url` queryable as `name` in SQL, read by the engine (never by Python)."""
        if self.name == "duckdb":
            con.raw_sql(f"CREATE OR REPLACE TEMP VIEW {name} AS SELECT * FROM read_parquet('{_sql_text(url)}')")
        else:
            con._session.read.parquet(url).createOrReplaceTempView(name)

    def batches(self, con: Any, sql: str, rows_per_batch: int = 500_000) -> Iterator[pa.RecordBatch]:
        """The result of `sql` (DuckDB's dialect, transpiled for Spark) as Arrow record batches, streamed: the
        whole result is never in memory at once on DuckDB (Spark hands its partitions over one by one)."""
        if self.name == "duckdb":
            reader = con.con.sql(sql).to_arrow_reader(rows_per_batch)
            yield from reader
            return
        frame = con.raw_sql(transpile(sql, self.dialect))
        for row_batch in _chunks(frame.toLocalIterator(), rows_per_batch):
            yield pa.RecordBatch.from_pylist([row.asDict() for row in row_batch])

    def rows(self, con: Any, sql: str) -> list[dict[str, Any]]:
        """The rows of `sql` (DuckDB's dialect, transpiled for Spark) as dictionaries."""
        if self.name == "duckdb":
            return cast(list[dict[str, Any]], con.sql(sql).to_pyarrow().to_pylist())
        return [row.asDict() for row in con.raw_sql(transpile(sql, self.dialect)).collect()]


def _duck_parquet(con: Any, source: str | list[str], name: str | None) -> ir.Table:
    """Parquet files (a glob or a list) read by DuckDB, day partitions as columns, columns united by name: local
    files through Ibis; files on object storage (s3://, gs://, ...) through the fsspec filesystem registered on
    the connection, since Ibis would have DuckDB load its httpfs extension for them (a download, other credentials).
    """
    sources = [source] if isinstance(source, str) else list(source)
    if not any("://" in s and not s.startswith("file://") for s in sources):
        return con.read_parquet(source, table_name=name, hive_partitioning=True, union_by_name=True)
    view = name or f"_files_{abs(hash(tuple(sources))):x}"
    listing = ", ".join(f"'{_sql_text(s)}'" for s in sources)
    con.con.execute(
        f'CREATE OR REPLACE TEMP VIEW "{view}" AS SELECT * FROM read_parquet([{listing}], '
        "hive_partitioning = true, union_by_name = true)"
    )
    return con.table(view)


def _chunks(items: Iterator[Any], size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _sql_text(text: str) -> str:
    return text.replace("'", "''")


class MemoryLimitError(TerminalStoreError):
    """A stage ran out of the memory the `memory_limit` setting gives it (DuckDB could not spill enough)."""


@contextmanager
def memory_guard(stage: str, limit: int | None, setting: str = "memory_limit") -> Iterator[None]:
    """Turn an out-of-memory inside `stage` (DuckDB's OutOfMemoryException, Python's MemoryError) into a
    MemoryLimitError that names the stage and the setting."""
    import duckdb

    try:
        yield
    except (duckdb.OutOfMemoryException, MemoryError, OSError) as exc:
        # DuckDB's error reaches an Arrow stream reader as an OSError "Out of Memory Error: ..."
        if isinstance(exc, OSError) and not str(exc).startswith("Out of Memory"):
            raise
        if not limit:
            size = "DuckDB's default"
        else:
            size = f"{limit / 2**30:.1f} GiB" if limit >= 2**30 else f"{limit / 2**20:.0f} MiB"
        raise MemoryLimitError(
            f"{stage} ran out of memory under {setting} = {size} ({type(exc).__name__}: {str(exc)[:200]}); "
            f"raise the {setting} setting (OMNIWEAVE_{setting.upper()}, e.g. '12GB' or '70%'), give the spill "
            "folder (<home>/spill) more disk, or run the stage on Spark"
        ) from exc


def _is_local(fs: Any) -> bool:
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return protocol in ("file", "local")


def partitioned(expr: ir.Table, column: str, count: int, folder: str) -> tuple[ir.Table, list[ir.Table]]:
    """`expr` cut by `column` (whole numbers 0 to count - 1) into parts to be read one at a time, and the whole;
    both without `column`.

    On DuckDB `expr` runs once and is written as Parquet under `folder` (a folder per part, PARTITION_BY):
    neither the whole nor a part is then held in memory, and each part is read back alone. Other engines
    keep `expr` (`.cache()`) and filter it.
    """
    backend = expr._find_backend()
    if backend.name == "duckdb":
        backend.to_parquet(expr, folder, partition_by=column, overwrite_or_ignore=True)
        base = Path(folder)
        if any(base.glob("*/*.parquet")):
            whole = backend.read_parquet(str(base / "*" / "*.parquet"), hive_partitioning=True)
            parts = [
                backend.read_parquet(str(base / f"{column}={k}" / "*.parquet"), hive_partitioning=True)
                if any((base / f"{column}={k}").glob("*.parquet"))
                else whole.limit(0)
                for k in range(count)
            ]
            return whole.drop(column), [p.drop(column) for p in parts]
    whole = expr.cache()
    return whole.drop(column), [whole.filter(whole[column] == k).drop(column) for k in range(count)]


def to_arrow(expr: ir.Table) -> pa.Table:
    """Run `expr` and return Arrow with every timestamp (nested ones too) as UTC, whatever the engine."""
    table = expr.to_pyarrow()
    return table.cast(pa.schema([f.with_type(_utc_type(f.type)) for f in table.schema]))


def _utc_type(typ: pa.DataType) -> pa.DataType:
    # Spark hands back naive timestamps (the session time zone is UTC); DuckDB hands back UTC ones
    if pa.types.is_timestamp(typ):
        return pa.timestamp("us", tz="UTC")
    if pa.types.is_list(typ) or pa.types.is_large_list(typ):
        return pa.list_(_utc_type(typ.value_type))
    if pa.types.is_struct(typ):
        return pa.struct([typ.field(i).with_type(_utc_type(typ.field(i).type)) for i in range(typ.num_fields)])
    return typ
