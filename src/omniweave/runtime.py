"""The runtime: the stores and engines for one Settings, opened lazily and shared by a process."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

from omniweave.settings import Settings
from omniweave.storage.eventlog import EventLog
from omniweave.storage.ops.store import OpStore
from omniweave.storage.warehouse import Warehouse


class Runtime:
    """Everything a service operation needs, built from one Settings object."""

    def __init__(self, settings: Settings):
        self.settings = settings
        Path(settings.home).mkdir(parents=True, exist_ok=True)

    @cached_property
    def store(self) -> OpStore:
        return OpStore(self.settings.resolved_database_url)

    @cached_property
    def log(self) -> EventLog:
        return EventLog(self.settings.resolved_warehouse_url)

    def warehouse(self, engine: str = "duckdb", spark_session: Any = None) -> Warehouse:
        """A fresh view of the warehouse (sees every file written so far)."""
        return Warehouse(self.log, engine=engine, spark_session=spark_session)

    def close(self) -> None:
        if "store" in self.__dict__:
            self.store.close()
