"""The inbox: every accepted event, in commit order, deduplicated by (source, messageId).

`seq` is the order consumers read in; the unique key `inbox_dedupe` is what makes a repeated
messageId from the same source a no-op, across restarts. Rows stay until every consumer has
passed them and they are older than the dedupe window (`OpStore.prune`).
"""

import sqlalchemy as sa

from omniweave.storage.ops.tables.base import metadata

inbox = sa.Table(
    "inbox",
    metadata,
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("source_id", sa.String(64), nullable=False),
    sa.Column("message_id", sa.String(200), nullable=False),
    sa.Column("received_at", sa.Float, nullable=False),
    sa.Column("payload", sa.LargeBinary, nullable=False),
    sa.UniqueConstraint("source_id", "message_id", name="inbox_dedupe"),
    sqlite_autoincrement=True,
)
