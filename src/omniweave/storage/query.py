"""Ad-hoc SQL over the warehouse tables."""

from __future__ import annotations

import pyarrow as pa

from omniweave.errors import InputError
from omniweave.runtime import Runtime
from omniweave.settings import Settings


def run_query(settings: Settings, sql: str) -> pa.Table:
    """Run `sql` over `events`, `spend`, ... on the settings' engine and return Arrow; a bad query is an InputError."""
    warehouse = Runtime(settings).warehouse()
    try:
        return warehouse.sql(sql)
    except Exception as exc:  # the engines raise many kinds; the user needs the message
        if type(exc).__module__.startswith(("omniweave",)):
            raise
        raise InputError(f"query failed: {exc}", field="sql") from exc
