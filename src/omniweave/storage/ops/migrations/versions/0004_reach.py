"""Push subscriptions, conversations (WhatsApp's 24-hour window), coupon pools and coupons.

Frozen copies of the tables as this revision creates them (storage/ops/tables/reach.py).
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "push_subscriptions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("endpoint", sa.Text, nullable=False),
        sa.Column("p256dh", sa.String(200), nullable=False),
        sa.Column("auth", sa.String(100), nullable=False),
        sa.Column("person_id", sa.String(64), nullable=True),
        sa.Column("user_id", sa.String(200), nullable=True),
        sa.Column("anonymous_id", sa.String(200), nullable=True),
        sa.Column("user_agent", sa.String(500), nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("push_subscriptions_person", "push_subscriptions", ["person_id"])
    op.create_table(
        "conversations",
        sa.Column("channel", sa.String(20), primary_key=True),
        sa.Column("address", sa.String(500), primary_key=True),
        sa.Column("last_inbound_at", sa.Float, nullable=False),
        sa.Column("last_keyword", sa.String(40), nullable=True),
    )
    op.create_table(
        "soft_bounces",
        sa.Column("channel", sa.String(20), primary_key=True),
        sa.Column("address", sa.String(500), primary_key=True),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("last_reason", sa.String(1000), nullable=True),
        sa.Column("last_at", sa.Float, nullable=False),
    )
    op.create_table(
        "coupon_pools",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("static_code", sa.String(100), nullable=True),
        sa.Column("campaign", sa.String(200), nullable=True),
        sa.Column("code_length", sa.Integer, nullable=False),
        sa.Column("prefix", sa.String(10), nullable=True),
        sa.Column("valid_days", sa.Integer, nullable=False),
        sa.Column("description", sa.String(500), nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "coupons",
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
        sa.Column("shared", sa.Boolean, nullable=False),
    )
    op.create_index("coupons_person", "coupons", ["person_id"])
    op.create_index("coupons_pool", "coupons", ["pool"])
    op.create_index("coupons_pool_send", "coupons", ["pool", "send_key"], unique=True)


def downgrade() -> None:
    op.drop_index("coupons_pool_send", table_name="coupons")
    op.drop_index("coupons_pool", table_name="coupons")
    op.drop_index("coupons_person", table_name="coupons")
    op.drop_table("coupons")
    op.drop_table("coupon_pools")
    op.drop_table("soft_bounces")
    op.drop_table("conversations")
    op.drop_index("push_subscriptions_person", table_name="push_subscriptions")
    op.drop_table("push_subscriptions")
