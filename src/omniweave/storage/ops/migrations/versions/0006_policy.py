"""The policy engine: per-person lock rows, decisions; the ledger's per-person index (caps).

Frozen copies of the tables as this revision creates them (storage/ops/tables/policy.py).
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "policy_persons",
        sa.Column("person_id", sa.String(64), primary_key=True),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "policy_decisions",
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
        sqlite_autoincrement=True,
    )
    op.create_index("policy_decisions_person", "policy_decisions", ["person_id", "at"])
    op.create_index("policy_decisions_key", "policy_decisions", ["key"])
    op.create_index("sends_person", "sends", ["person_id", "created_at"])


def downgrade() -> None:
    op.drop_index("sends_person", table_name="sends")
    op.drop_table("policy_decisions")
    op.drop_table("policy_persons")
