"""The policy engine's state: one lock row per person, and every decision with its reason.

`policy_persons` exists so that a send's policy check and its ledger insert run under a lock on the
person (`SELECT … FOR UPDATE` on PostgreSQL; SQLite's single writer does the same): two journeys
cannot both pass a frequency cap for the same person at the same time. Caps count the person's rows
in the send ledger (`sends`, index `sends_person`) over rolling windows.
`policy_decisions` keeps every verdict (sent, rescheduled, dropped, skipped) with its reason, so
`journeys explain` and `messages` can say why a message was or was not sent.
"""

import sqlalchemy as sa

from omniweave.storage.ops.tables.base import metadata

policy_persons = sa.Table(
    "policy_persons",
    metadata,
    sa.Column("person_id", sa.String(64), primary_key=True),
    sa.Column("updated_at", sa.Float, nullable=False),
)

policy_decisions = sa.Table(
    "policy_decisions",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("key", sa.String(200), nullable=False),
    sa.Column("person_id", sa.String(64), nullable=True),
    sa.Column("channel", sa.String(20), nullable=False),
    sa.Column("message_class", sa.String(40), nullable=False),
    sa.Column("journey", sa.String(100), nullable=True),
    sa.Column("outcome", sa.String(20), nullable=False),
    sa.Column("reason", sa.String(1000), nullable=True),
    sa.Column("retry_at", sa.Float, nullable=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.Index("policy_decisions_person", "person_id", "at"),
    sa.Index("policy_decisions_key", "key"),
    sqlite_autoincrement=True,
)
