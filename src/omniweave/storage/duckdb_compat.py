"""DuckDB 2 under Ibis 12: the few spellings DuckDB 2.0 dropped that Ibis 12 still calls.

omniweave runs on DuckDB 2, which builds the profiles of 1 M persons / 30 M events with a fifth less
CPU and a third less memory than DuckDB 1.5 (same profiles in every column; docs/profiles.md).
Ibis 12, the newest Ibis, was written for DuckDB 1.x and calls three things DuckDB 2.0 removed or
changed:

- `fetch_arrow_table()` (now `to_arrow_table()`), gone from connections and deprecated on
  relations: Ibis reads schemas and small results with it;
- `DuckDBPyConnection.fetch_record_batch(rows_per_batch)` (now `to_arrow_reader(batch_size)`):
  Ibis's `to_pyarrow_batches`;
- lambdas written `x -> f(x)`, which DuckDB 2 refuses unless the connection sets
  `lambda_syntax = 'ENABLE_SINGLE_ARROW'`: Ibis compiles `ArrayValue.map` / `filter` that way.

`install()` (run on import) adds the two methods back under their old names when they are missing,
and `ibis_connect` opens an Ibis DuckDB connection with the lambda setting. On DuckDB 1.x both are
no-ops. Nothing else in omniweave needs to know which DuckDB it runs on.
"""

from __future__ import annotations

import warnings
from typing import Any

import duckdb

MAJOR = int(duckdb.__version__.split(".", 1)[0])
LAMBDA_CONFIG = {"lambda_syntax": "ENABLE_SINGLE_ARROW"} if MAJOR >= 2 else {}
"""Connection settings that let DuckDB 2 read the lambdas Ibis 12 writes."""


def _fetch_arrow_table(self: Any, *args: Any, **kwargs: Any) -> Any:
    with warnings.catch_warnings():
        # DuckDB 2 warns that a DB-API result makes an extra copy as Arrow; Ibis only reads schemas
        # and small results this way (its to_pyarrow goes through a relation, without the copy)
        warnings.simplefilter("ignore", UserWarning)
        return self.to_arrow_table(*args, **kwargs)


def _fetch_record_batch(self: Any, rows_per_batch: int = 1_000_000) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return self.to_arrow_reader(rows_per_batch)


def _relation_arrow_table(self: Any, *args: Any, **kwargs: Any) -> Any:
    return self.to_arrow_table(*args, **kwargs)


def install() -> None:
    """Give DuckDB 2's connection class the methods Ibis 12 calls (idempotent; nothing on DuckDB 1.x)."""
    cls = duckdb.DuckDBPyConnection
    if not hasattr(cls, "fetch_arrow_table"):
        cls.fetch_arrow_table = _fetch_arrow_table  # type: ignore[attr-defined]  # added back: DuckDB 2 removed it
    if not hasattr(cls, "fetch_record_batch"):
        cls.fetch_record_batch = _fetch_record_batch  # type: ignore[attr-defined]  # added back: DuckDB 2 removed it
    if MAJOR >= 2:  # kept by DuckDB 2 on relations, but deprecated (a warning on every Ibis schema lookup)
        duckdb.DuckDBPyRelation.fetch_arrow_table = _relation_arrow_table  # type: ignore[method-assign]  # replaced on purpose


def ibis_connect(database: str = ":memory:", **config: Any) -> Any:
    """`ibis.duckdb.connect(database, **config)` that Ibis 12 can drive on DuckDB 2."""
    import ibis

    return ibis.duckdb.connect(database, **LAMBDA_CONFIG, **config)


install()
