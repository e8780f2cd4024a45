"""Reach: push subscriptions, messaging conversations (the WhatsApp 24-hour window), coupons.

`push_subscriptions`: one row per browser subscription (its endpoint and keys), collected through
the API; a push service's 404/410 deletes it.

`conversations`: per channel and address, when the person last wrote to us (WhatsApp allows
free-form messages only within 24 hours of it; templates otherwise) and their last keyword.

`soft_bounces`: per channel and address, how many temporary delivery failures it has had (an
e-mail 4xx, a delayed DSN); the third puts the address on the suppression list.

`coupon_pools` and `coupons`: a pool is either static (one code for everyone: never identity) or
unique (codes generated per person). A unique code's row says who got it, through which send
(ledger key), channel, campaign and message, until when it is valid, and when, where and by whom
it was redeemed (`shared` when the redeemer is not the recipient).
"""

import sqlalchemy as sa

from omniweave.storage.ops.tables.base import metadata

push_subscriptions = sa.Table(
    "push_subscriptions",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),  # SHA-256 of the endpoint, hex
    sa.Column("endpoint", sa.Text, nullable=False),
    sa.Column("p256dh", sa.String(200), nullable=False),
    sa.Column("auth", sa.String(100), nullable=False),
    sa.Column("person_id", sa.String(64), nullable=True),
    sa.Column("user_id", sa.String(200), nullable=True),  # the site's userId given with the subscription
    sa.Column("anonymous_id", sa.String(200), nullable=True),
    sa.Column("user_agent", sa.String(500), nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Index("push_subscriptions_person", "person_id"),
)

conversations = sa.Table(
    "conversations",
    metadata,
    sa.Column("channel", sa.String(20), primary_key=True),
    sa.Column("address", sa.String(500), primary_key=True),
    sa.Column("last_inbound_at", sa.Float, nullable=False),
    sa.Column("last_keyword", sa.String(40), nullable=True),
)

soft_bounces = sa.Table(
    "soft_bounces",
    metadata,
    # temporary failures an address has had (4xx SMTP replies, delayed DSNs): the third suppresses it
    sa.Column("channel", sa.String(20), primary_key=True),
    sa.Column("address", sa.String(500), primary_key=True),
    sa.Column("count", sa.Integer, nullable=False),
    sa.Column("last_reason", sa.String(1000), nullable=True),
    sa.Column("last_at", sa.Float, nullable=False),
)

coupon_pools = sa.Table(
    "coupon_pools",
    metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("kind", sa.String(10), nullable=False),  # static | unique
    sa.Column("static_code", sa.String(100), nullable=True),
    sa.Column("campaign", sa.String(200), nullable=True),
    sa.Column("code_length", sa.Integer, nullable=False),
    sa.Column("prefix", sa.String(10), nullable=True),  # written before every code of a unique pool
    sa.Column("valid_days", sa.Integer, nullable=False),
    sa.Column("description", sa.String(500), nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
)

coupons = sa.Table(
    "coupons",
    metadata,
    sa.Column("code", sa.String(100), primary_key=True),
    sa.Column("pool", sa.String(100), nullable=False),
    sa.Column("person_id", sa.String(64), nullable=True),
    sa.Column("send_key", sa.String(200), nullable=True),
    sa.Column("channel", sa.String(20), nullable=True),
    sa.Column("campaign", sa.String(200), nullable=True),
    sa.Column("message_name", sa.String(200), nullable=True),
    sa.Column("issued_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=True),
    sa.Column("redeemed_at", sa.Float, nullable=True),
    sa.Column("redeemed_by", sa.String(64), nullable=True),
    sa.Column("redeemed_via", sa.String(40), nullable=True),
    sa.Column("redemption_event", sa.String(200), nullable=True),
    sa.Column("shared", sa.Boolean, nullable=False, default=False),
    sa.Index("coupons_person", "person_id"),
    sa.Index("coupons_pool", "pool"),
    sa.Index("coupons_pool_send", "pool", "send_key", unique=True),  # one code per send: retries get the same
)
