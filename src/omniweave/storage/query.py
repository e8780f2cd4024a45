"""Ad-hoc SQL over the warehouse tables."""

from __future__ import annotations

import csv
import sys

import orjson
import pyarrow as pa
from rich.console import Console
from rich.table import Table

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


def write_result(result: pa.Table, fmt: str, console: Console) -> None:
    """Print a result as a table, CSV or JSON (one array of objects)."""
    rows = result.to_pylist()
    if fmt == "json":
        sys.stdout.write(orjson.dumps(rows, default=str, option=orjson.OPT_INDENT_2).decode() + "\n")
    elif fmt == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(result.column_names)
        for row in rows:
            writer.writerow(["" if v is None else v for v in row.values()])
    else:
        table = Table(*result.column_names)
        for row in rows[:1000]:
            table.add_row(*("" if v is None else str(v) for v in row.values()))
        console.print(table)
        if len(rows) > 1000:
            console.print(f"({len(rows)} rows, first 1000 shown)")
