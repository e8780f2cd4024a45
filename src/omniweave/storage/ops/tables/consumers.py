"""Inbox consumers (the loader, live segments, journey triggers): one row each with its position.

`pending_end` is set before a consumer processes a range and cleared when it commits, so a
consumer that died mid-way redoes exactly that range.
"""

import sqlalchemy as sa

from omniweave.storage.ops.tables.base import metadata

consumers = sa.Table(
    "consumers",
    metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("position", sa.BigInteger, nullable=False),
    sa.Column("pending_end", sa.BigInteger, nullable=True),
    sa.Column("updated_at", sa.Float, nullable=False),
)
