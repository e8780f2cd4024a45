"""The runtime: the stores and the engine for one Settings, opened lazily and shared by a process."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

from omniweave.settings import Settings, memory_limit_bytes
from omniweave.storage.engine import Engine
from omniweave.storage.eventlog import EventLog
from omniweave.storage.ops.store import OpStore
from omniweave.storage.warehouse import Warehouse


class Runtime:
    """Everything a service operation needs, built from one Settings object.

    The warehouse engine is the settings' `engine` ("duckdb" or "spark"); a Spark session may be handed
    in (tests share one, a cluster job brings its own), else Spark starts one in local mode on first use.
    Services take the Runtime and never an engine name: `runtime.engine` and `runtime.warehouse()` carry it.
    """

    def __init__(self, settings: Settings, spark_session: Any = None):
        self.settings = settings
        self._spark_session = spark_session
        Path(settings.home).mkdir(parents=True, exist_ok=True)

    @cached_property
    def engine(self) -> Engine:
        """The warehouse engine (its name, its dialect and, for Spark, the session), one per Runtime."""
        return Engine(
            self.settings.engine,
            spark_session=self._spark_session,
            spark_master=self.settings.spark_master,
            memory_limit=memory_limit_bytes(self.settings.memory_limit),
            temp_directory=str(Path(self.settings.home) / "spill"),
        )

    @cached_property
    def store(self) -> OpStore:
        return OpStore(self.settings.resolved_database_url)

    @cached_property
    def log(self) -> EventLog:
        return EventLog(self.settings.resolved_warehouse_url)

    def warehouse(self) -> Warehouse:
        """A fresh view of the warehouse on the Runtime's engine (sees every file written so far: call it
        again after writing a dataset, rather than keeping an old view)."""
        return Warehouse(self.log, self.engine)

    def close(self) -> None:
        if "store" in self.__dict__:
            self.store.close()
