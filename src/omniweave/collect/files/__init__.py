"""Offline importers: CSV, Parquet and JSON-lines files turned into events by declarative mappings.

    mapping.py   the mapping model (TOML), validated with clear errors
    totals.py    aggregates over a group of rows (`round(sum(quantity * price), 2)`)
    mappings/    the built-in mappings, one TOML file per source kind
    readers.py   open a file as a DuckDB relation (and say why one cannot be read)
    sql.py       the SQL generated from a mapping (the only place SQL is written)
    engine.py    run a mapping over a file: rows for the log, counts, and bad rows explained
    segment.py   JSON lines of Segment-spec events (the bulk path for online events)

The service operation is `omniweave.collect.service.import_file`.
"""

from omniweave.collect.files.engine import ImportSummary, Prepared, run_mapping
from omniweave.collect.files.mapping import (
    Mapping,
    MappingError,
    builtin_kinds,
    builtin_mapping,
    load_mapping,
    parse_mapping,
)
from omniweave.collect.files.segment import run_segment

__all__ = [
    "ImportSummary",
    "Mapping",
    "MappingError",
    "Prepared",
    "builtin_kinds",
    "builtin_mapping",
    "load_mapping",
    "parse_mapping",
    "run_mapping",
    "run_segment",
]
