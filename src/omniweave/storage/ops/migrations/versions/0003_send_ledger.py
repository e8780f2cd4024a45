"""The send ledger (`sends`) and the suppression list (`suppressions`) for the channels.

Frozen copies of the tables as this revision creates them (storage/ops/tables/messages.py).
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sends",
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
    )
    op.create_index("sends_due", "sends", ["status", "next_attempt_at"])
    op.create_index("sends_provider", "sends", ["channel", "provider_id"])
    op.create_table(
        "suppressions",
        sa.Column("channel", sa.String(20), primary_key=True),
        sa.Column("address", sa.String(500), primary_key=True),
        sa.Column("reason", sa.String(40), nullable=False),
        sa.Column("detail", sa.String(1000), nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("suppressions")
    op.drop_index("sends_provider", table_name="sends")
    op.drop_index("sends_due", table_name="sends")
    op.drop_table("sends")
