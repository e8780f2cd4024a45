"""The warehouse: the event log's Parquet datasets as Ibis tables, on DuckDB or Spark.

Pipeline code takes Ibis expressions from `Warehouse.table(name)` and runs unchanged on either
engine. DuckDB runs in-process (default); PySpark runs in local mode or on a cluster
(`pip install 'omniweave[spark]'`). What the engines do differently lives in storage/engine.py.
`write_dataset` replaces a derived dataset (profiles, segment_members, ...) in one swap.
"""

from __future__ import annotations

import posixpath
from typing import Any

import ibis
import ibis.expr.types as ir
import pyarrow as pa

from omniweave.errors import ConfigError
from omniweave.storage.engine import Dialect, Engine
from omniweave.storage.eventlog import EVENT_SCHEMA, SPEND_SCHEMA, EventLog

DATASETS: dict[str, pa.Schema] = {"events": EVENT_SCHEMA, "spend": SPEND_SCHEMA}


def _empty(name: str) -> pa.Table:
    """A dataset of the log with no rows yet, with its schema (and `events` its day partition column)."""
    empty = DATASETS[name].empty_table()
    return empty.append_column("date", pa.array([], pa.date32())) if name == "events" else empty


class Warehouse:
    """Named tables (`events`, `spend`, ...) over the event log, through one Ibis connection on the engine.

    A warehouse is a view: it sees the files written before each table was first read. The Runtime's
    `warehouse()` gives a fresh one; its `engine` (`Engine`: name, dialect, Spark session) is the Runtime's.
    """

    def __init__(self, log: EventLog, engine: Engine | None = None):
        self.log = log
        self.engine = engine or Engine()
        self.con = self.engine.connect(log.fs)
        self._tables: dict[str, ir.Table] = {}

    @property
    def dialect(self) -> Dialect:
        """The engine's spellings (see storage.engine)."""
        return self.engine.dialect

    def table(self, name: str) -> ir.Table:
        """The dataset `name` as an Ibis table (empty, with its schema, if nothing was written yet)."""
        if name in self._tables:
            return self._tables[name]
        if name not in DATASETS and not self.log.has_data(name):
            raise ConfigError(f"unknown warehouse table {name!r}; tables: {', '.join(self.names())}")
        if name == "events":
            # the listed files, not the folder: a compaction's superseded files are left out (storage/compaction.py)
            files = self.log.files(name)
            table = (
                self.engine.read_dataset(self.con, name, self.log.dataset_url(name), self._urls(files))
                if files
                else self.engine.empty_table(self.con, name, _empty(name))
            )
        elif self.log.has_data(name):
            table = self.engine.read_dataset(self.con, name, self.log.dataset_url(name))
        else:
            table = self.engine.empty_table(self.con, name, _empty(name))
        self._tables[name] = table
        return table

    def files_table(self, name: str, paths: list[str]) -> ir.Table:
        """Only these files of dataset `name` (paths as `EventLog.files` gives them) as one table, with the
        partition columns (`date`) read from the paths like `table`: a fixed snapshot of the dataset, and
        a way to read only the day partitions a query needs. An empty list gives the empty table."""
        if not paths:
            return ibis.memtable(_empty(name))
        return self.engine.read_files(self.con, name, self._urls(paths), self.log.dataset_url(name))

    def _urls(self, paths: list[str]) -> list[str]:
        """Paths of the log's file system as the engine reads them (with the protocol, but for local files)."""
        protocol = self.log.fs.protocol if isinstance(self.log.fs.protocol, str) else self.log.fs.protocol[0]
        return paths if protocol in ("file", "local") else [self.log.fs.unstrip_protocol(p) for p in paths]

    def set_threads(self, threads: int | None) -> None:
        """Cap the engine's worker threads for this view's queries (DuckDB; None leaves the default)."""
        self.engine.set_threads(self.con, threads)

    def rows(self, sql: str, **tables: pa.Table) -> list[dict[str, Any]]:
        """The rows of `sql` (written in DuckDB's dialect; transpiled for Spark) over the warehouse tables
        and the Arrow `tables` given, registered under their names."""
        for name, arrow in tables.items():
            self.engine.register(self.con, name, arrow)
        return self.engine.rows(self.con, sql)

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


def write_dataset(log: EventLog, name: str, table: pa.Table) -> str:
    """Replace the warehouse dataset `name` by `table` (one Parquet file, swapped in by a rename), so that
    a reader sees the old dataset or the new one, never half of it; returns the dataset's URL."""
    folder = log.dataset_path(name)
    log.fs.makedirs(folder, exist_ok=True)
    final = posixpath.join(folder, f"{name}.parquet")
    stale = [p for p in log.files(name) if p.rstrip("/").rsplit("/", 1)[-1] != f"{name}.parquet"]
    log.replace_file(final, table)
    for path in stale:
        log.fs.rm(path)
    return log.dataset_url(name)
