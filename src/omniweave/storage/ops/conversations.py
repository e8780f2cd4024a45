"""Messaging conversations: when a person last wrote to us on a channel, and their last keyword.

WhatsApp allows free-form messages only within 24 hours of the person's last inbound message
(templates otherwise), so the SMS/WhatsApp adapter asks `last_inbound_at` before a free-form send,
and the inbound webhook calls `record_inbound`. One row per (channel, address).
"""

from __future__ import annotations

import sqlalchemy as sa

from omniweave.storage.ops.tables.reach import conversations


class Conversations:
    """The `conversations` table of one operational store (its SQLAlchemy engine)."""

    def __init__(self, engine: sa.Engine):
        self.engine = engine

    def record_inbound(self, channel: str, address: str, at: float, keyword: str | None = None) -> None:
        """Note an inbound message from `address` at `at` (a later time never goes backwards)."""
        with self.engine.begin() as conn:
            found = conn.execute(
                sa.select(conversations.c.last_inbound_at).where(
                    conversations.c.channel == channel, conversations.c.address == address
                )
            ).first()
            if found is None:
                try:
                    conn.execute(
                        conversations.insert().values(
                            channel=channel, address=address, last_inbound_at=at, last_keyword=keyword
                        )
                    )
                    return
                except sa.exc.IntegrityError:
                    pass
            conn.execute(
                conversations.update()
                .where(conversations.c.channel == channel, conversations.c.address == address)
                .values(
                    last_inbound_at=sa.func.max(conversations.c.last_inbound_at, at)
                    if conn.dialect.name == "sqlite"
                    else sa.func.greatest(conversations.c.last_inbound_at, at),
                    last_keyword=keyword,
                )
            )

    def last_inbound_at(self, channel: str, address: str) -> float | None:
        """When `address` last wrote to us on `channel` (epoch seconds), None when never."""
        with self.engine.connect() as conn:
            found = conn.execute(
                sa.select(conversations.c.last_inbound_at).where(
                    conversations.c.channel == channel, conversations.c.address == address
                )
            ).first()
        return None if found is None else float(found[0])

    def last_keyword(self, channel: str, address: str) -> str | None:
        """The last keyword (STOP, START, HELP …) `address` sent on `channel`, None when none."""
        with self.engine.connect() as conn:
            found = conn.execute(
                sa.select(conversations.c.last_keyword).where(
                    conversations.c.channel == channel, conversations.c.address == address
                )
            ).first()
        return None if found is None or found[0] is None else str(found[0])
