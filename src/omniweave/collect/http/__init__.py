"""The HTTP collector: takes events from any Segment or RudderStack SDK, unchanged.

    body.py     reading a request body within limits (gzip/deflate, bombs), parsing JSON, keys
    intake.py   turning a parsed body into canonical inbox rows plus a list of rejected items
    limits.py   per-source token buckets and the write key → source cache
    committer.py  the helper process that validates events and group-commits them to the inbox
    routes.py   the Starlette handlers (Segment endpoints, analytics.js short paths, CORS,
                the analytics-next settings document, a no-op endpoint for benchmarks)

An accepted request is committed to the operational store's inbox before it gets its 200;
the loader (collect/loader.py) moves the inbox into the Parquet event log afterwards.
"""

from omniweave.collect.http.committer import Committer
from omniweave.collect.http.routes import Collector

__all__ = ["Collector", "Committer"]
