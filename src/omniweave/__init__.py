"""omniweave: an open-source omnichannel marketing platform."""

import os

__version__ = "0.1.0"

# DuckDB's allocator (its own jemalloc, configured by DUCKDB_JE_MALLOC_CONF, read once when duckdb is
# first imported) hands freed memory back to the kernel after one second. A profile build frees and
# reuses gigabytes from one step to the next, and every page handed back is faulted in again: at
# 1 M persons / 30 M events the kernel time of those faults was a fifth of the build's CPU. Kept for
# 30 s instead, memory is reused while a job runs and still returned when the process idles. A value
# set by the user wins.
os.environ.setdefault("DUCKDB_JE_MALLOC_CONF", "dirty_decay_ms:30000,muzzy_decay_ms:30000")
