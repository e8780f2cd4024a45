"""Messages: the send ledger, and the suppression list every send honours.

`sends` is the ledger. A row is written *before* a channel is called; its `key` is the
idempotency key the channel carries (the e-mail Message-ID, a provider's idempotency header), so
a send is attempted under one key however often it is retried or replayed. `status` walks

    pending -> sending -> delivered
                       -> retrying -> sending ...   (a transient failure; `next_attempt_at` set)
                       -> dead                       (terminal, or retries exhausted: the dead-letter list)
                       -> ambiguous                  (a crash while sending: the outcome is unknown)
    pending -> suppressed                            (the address is on the suppression list)

`content` keeps the rendered message (JSON) so that a retry or a replay sends the same thing.

`suppressions` holds the addresses no message may go to on a channel: hard bounces, complaints,
unsubscribes, STOP keywords, gone push subscriptions, and manual entries.
"""

import sqlalchemy as sa

from omniweave.storage.ops.tables.base import metadata

sends = sa.Table(
    "sends",
    metadata,
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("channel", sa.String(20), nullable=False),
    sa.Column("to_address", sa.String(500), nullable=False),
    sa.Column("person_id", sa.String(64), nullable=True),
    sa.Column("campaign", sa.String(200), nullable=True),
    sa.Column("message_name", sa.String(200), nullable=True),
    sa.Column("message_class", sa.String(40), nullable=False),
    sa.Column("content", sa.LargeBinary, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("provider_id", sa.String(200), nullable=True),
    sa.Column("reason", sa.String(1000), nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("first_try_at", sa.Float, nullable=True),
    sa.Column("next_attempt_at", sa.Float, nullable=True),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Index("sends_due", "status", "next_attempt_at"),
    sa.Index("sends_provider", "channel", "provider_id"),
    sa.Index("sends_person", "person_id", "created_at"),
)

suppressions = sa.Table(
    "suppressions",
    metadata,
    sa.Column("channel", sa.String(20), primary_key=True),
    sa.Column("address", sa.String(500), primary_key=True),
    sa.Column("reason", sa.String(40), nullable=False),
    sa.Column("detail", sa.String(1000), nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
)
