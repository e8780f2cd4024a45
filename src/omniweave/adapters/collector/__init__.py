"""The HTTP collector: takes events from any Segment or RudderStack SDK, unchanged.

    body.py     reading a request body within limits (gzip/deflate, bombs), parsing JSON, keys
    intake.py   turning a parsed body into canonical inbox rows plus a list of rejected items
    limits.py   per-source token buckets and the write key → source cache
    writer.py   group commit: one thread commits the rows of many concurrent requests at once
    routes.py   the Starlette handlers (Segment endpoints, analytics.js short paths, CORS,
                the analytics-next settings document, a no-op endpoint for benchmarks)

An accepted request is committed to the operational store's inbox before it gets its 200;
the loader (service/loader.py) moves the inbox into the Parquet event log afterwards.
"""

from omniweave.adapters.collector.routes import Collector
from omniweave.adapters.collector.writer import GroupCommitWriter

__all__ = ["Collector", "GroupCommitWriter"]
