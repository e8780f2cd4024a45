"""The warehouse: the event log's Parquet datasets as Ibis tables, on DuckDB or Spark.

Pipeline code takes Ibis expressions from `Warehouse.table(name)` and runs unchanged on either
engine. DuckDB runs in-process (default); PySpark runs in local mode or on a cluster
(`pip install 'omniweave[spark]'`).
"""

from __future__ import annotations

from typing import Any

import ibis
import ibis.expr.types as ir
import pyarrow as pa

from omniweave.errors import ConfigError
from omniweave.storage.eventlog import EVENT_SCHEMA, SPEND_SCHEMA, EventLog

DATASETS: dict[str, pa.Schema] = {"events": EVENT_SCHEMA, "spend": SPEND_SCHEMA}


def _empty(name: str) -> pa.Table:
    """A dataset of the log with no rows yet, with its schema (and `events` its day partition column)."""
    empty = DATASETS[name].empty_table()
    return empty.append_column("date", pa.array([], pa.date32())) if name == "events" else empty


class Warehouse:
    """Named tables (`events`, `spend`, ...) over the event log, through one Ibis backend."""

    def __init__(self, log: EventLog, engine: str = "duckdb", spark_session: Any = None):
        self.log = log
        self.engine = engine
        if engine == "duckdb":
            from omniweave.storage.duckdb_compat import ibis_connect

            self.con = ibis_connect()
            protocol = log.fs.protocol if isinstance(log.fs.protocol, str) else log.fs.protocol[0]
            if protocol not in ("file", "local"):
                # DuckDB reads the same fsspec filesystem the log was written through
                self.con.con.register_filesystem(log.fs)
        elif engine in ("spark", "pyspark"):
            try:
                from pyspark.sql import SparkSession
            except ModuleNotFoundError as exc:
                raise ConfigError("the Spark engine needs PySpark: pip install 'omniweave[spark]'") from exc
            session = spark_session or (
                SparkSession.builder.master("local[2]")
                .appName("omniweave")
                .config("spark.ui.enabled", "false")
                .config("spark.sql.session.timeZone", "UTC")
                .getOrCreate()
            )
            self.con = ibis.pyspark.connect(session)
        else:
            raise ConfigError(f"unknown warehouse engine {engine!r}; expected 'duckdb' or 'spark'")
        self._tables: dict[str, ir.Table] = {}

    def table(self, name: str) -> ir.Table:
        """The dataset `name` as an Ibis table (empty, with its schema, if nothing was written yet)."""
        if name in self._tables:
            return self._tables[name]
        if name not in DATASETS and not self.log.has_data(name):
            raise ConfigError(f"unknown warehouse table {name!r}; tables: {', '.join(self.names())}")
        if self.log.has_data(name):
            if self.engine == "duckdb":
                pattern = self.log.dataset_url(name) + "/**/*.parquet"
                # by name: files written before a column was added to the log's schema read it as NULL
                table = self.con.read_parquet(pattern, table_name=name, hive_partitioning=True, union_by_name=True)
            else:
                table = self.con.read_parquet(self.log.dataset_url(name), table_name=name, mergeSchema=True)
        else:
            empty = _empty(name)
            table = (
                self.con.create_table(name, empty, overwrite=True)
                if self.engine == "duckdb"
                else self.con.create_view(name, ibis.memtable(empty), overwrite=True)
            )
        self._tables[name] = table
        return table

    def files_table(self, name: str, paths: list[str]) -> ir.Table:
        """Only these files of dataset `name` (paths as `EventLog.files` gives them) as one table, with the
        partition columns (`date`) read from the paths like `table`: a fixed snapshot of the dataset, and
        a way to read only the day partitions a query needs. An empty list gives the empty table."""
        if not paths:
            return ibis.memtable(_empty(name))
        protocol = self.log.fs.protocol if isinstance(self.log.fs.protocol, str) else self.log.fs.protocol[0]
        urls = paths if protocol in ("file", "local") else [self.log.fs.unstrip_protocol(p) for p in paths]
        if self.engine == "duckdb":
            return self.con.read_parquet(urls, hive_partitioning=True, union_by_name=True)
        session = self.con._session
        frame = session.read.option("basePath", self.log.dataset_url(name)).option("mergeSchema", "true").parquet(*urls)
        view = f"_{name}_files_{abs(hash(tuple(paths))):x}"
        frame.createOrReplaceTempView(view)
        return self.con.table(view)

    def names(self) -> list[str]:
        """The tables: the log's own datasets, then every derived dataset written so far (`profiles`, ...)."""
        root = self.log.root
        derived = []
        if self.log.fs.exists(root):
            for entry in self.log.fs.ls(root, detail=False):
                name = entry.rstrip("/").rsplit("/", 1)[-1]
                if name not in DATASETS and name.isidentifier() and self.log.has_data(name):
                    derived.append(name)
        return [*DATASETS, *sorted(derived)]

    def register_all(self) -> None:
        """Make every dataset queryable by name in SQL."""
        for name in self.names():
            self.table(name)

    def sql(self, query: str) -> pa.Table:
        """Run SQL over the warehouse tables and return the result as Arrow."""
        self.register_all()
        return self.con.sql(query).to_pyarrow()
