"""Privacy: the consent history, data-subject requests and their receipts, suppressed identifiers.

Frozen copies of the tables as this revision creates them (storage/ops/tables/privacy.py).
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "consent_history",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("subject", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("purpose", sa.String(40), nullable=False),
        sa.Column("granted", sa.Boolean, nullable=False),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("reference", sa.String(200), nullable=False),
        sa.Column("stated_at", sa.Float, nullable=False),
        sa.Column("recorded_at", sa.Float, nullable=False),
        sa.UniqueConstraint("subject", "purpose", "source", "reference", name="consent_history_statement"),
        sqlite_autoincrement=True,
    )
    op.create_index("consent_history_subject", "consent_history", ["subject", "purpose", "stated_at"])
    op.create_table(
        "privacy_requests",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("person_id", sa.String(64), nullable=True),
        sa.Column("work", sa.LargeBinary, nullable=True),
        sa.Column("error", sa.String(2000), nullable=True),
        sa.Column("requested_by", sa.String(200), nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("finished_at", sa.Float, nullable=True),
    )
    op.create_table(
        "privacy_receipts",
        sa.Column("request_id", sa.String(64), primary_key=True),
        sa.Column("target", sa.String(300), primary_key=True),
        sa.Column("action", sa.String(40), nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("detail", sa.String(2000), nullable=True),
        sa.Column("at", sa.Float, nullable=False),
    )
    op.create_table(
        "privacy_blocked",
        sa.Column("digest", sa.String(64), primary_key=True),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("privacy_blocked")
    op.drop_table("privacy_receipts")
    op.drop_table("privacy_requests")
    op.drop_index("consent_history_subject", table_name="consent_history")
    op.drop_table("consent_history")
