"""Forms: sign-ups waiting for (or done with) their double opt-in, with the consent's evidence.

A frozen copy of the table as this revision creates it (storage/ops/tables/forms.py).
"""

import sqlalchemy as sa
from alembic import op

revision = "0009g"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "form_signups",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("form", sa.String(60), nullable=False),
        sa.Column("placement", sa.String(20), nullable=False),
        sa.Column("locale", sa.String(8), nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("email", sa.String(320), nullable=True),
        sa.Column("phone", sa.String(40), nullable=True),
        sa.Column("anonymous_id", sa.String(200), nullable=True),
        sa.Column("purposes", sa.Text, nullable=False),
        sa.Column("submitted_at", sa.Float, nullable=False),
        sa.Column("submitted_ip", sa.String(64), nullable=True),
        sa.Column("user_agent", sa.String(300), nullable=True),
        sa.Column("expires_at", sa.Float, nullable=False),
        sa.Column("confirmed_at", sa.Float, nullable=True),
        sa.Column("confirmed_ip", sa.String(64), nullable=True),
        sa.Column("confirmed_via", sa.String(10), nullable=True),
        sa.Column("coupon", sa.String(64), nullable=True),
    )
    op.create_index("form_signups_status", "form_signups", ["status", "expires_at"])
    op.create_index("form_signups_phone", "form_signups", ["phone", "status"])


def downgrade() -> None:
    op.drop_index("form_signups_phone", table_name="form_signups")
    op.drop_index("form_signups_status", table_name="form_signups")
    op.drop_table("form_signups")
