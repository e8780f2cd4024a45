"""Journeys: versions, runs, waits, entries, step history.

Frozen copies of the tables as this revision creates them (storage/ops/tables/journeys.py).
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "journey_versions",
        sa.Column("journey", sa.String(100), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("definition", sa.LargeBinary, nullable=False),
        sa.Column("checksum", sa.String(64), nullable=False),
        sa.Column("published_at", sa.Float, nullable=False),
        sa.Column("note", sa.String(1000), nullable=True),
    )
    op.create_table(
        "journey_runs",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("journey", sa.String(100), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("person_id", sa.String(64), nullable=False),
        sa.Column("entry_key", sa.String(200), nullable=False),
        sa.Column("node", sa.String(100), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("variant", sa.String(40), nullable=True),
        sa.Column("wake_at", sa.Float, nullable=True),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.Column("lease_until", sa.Float, nullable=True),
        sa.Column("context", sa.LargeBinary, nullable=False),
        sa.Column("entered_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("ended_at", sa.Float, nullable=True),
        sa.Column("end_reason", sa.String(1000), nullable=True),
        sa.UniqueConstraint("journey", "person_id", "entry_key", name="journey_runs_entry"),
    )
    op.create_index("journey_runs_due", "journey_runs", ["status", "wake_at"])
    op.create_index("journey_runs_person", "journey_runs", ["person_id", "journey"])
    op.create_table(
        "journey_waits",
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("person_id", sa.String(64), nullable=False),
        sa.Column("event", sa.String(200), nullable=False),
        sa.Column("corr_property", sa.String(100), nullable=True),
        sa.Column("corr_value", sa.String(500), nullable=True),
        sa.Column("until", sa.Float, nullable=False),
    )
    op.create_index("journey_waits_person", "journey_waits", ["person_id", "event"])
    op.create_table(
        "journey_entries",
        sa.Column("journey", sa.String(100), primary_key=True),
        sa.Column("person_id", sa.String(64), primary_key=True),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("last_entered_at", sa.Float, nullable=False),
    )
    op.create_table(
        "journey_steps",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("journey", sa.String(100), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("person_id", sa.String(64), nullable=False),
        sa.Column("node", sa.String(100), nullable=False),
        sa.Column("outcome", sa.String(40), nullable=False),
        sa.Column("reason", sa.String(1000), nullable=True),
        sa.Column("at", sa.Float, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("journey_steps_node", "journey_steps", ["journey", "node"])
    op.create_index("journey_steps_run", "journey_steps", ["run_id"])
    op.create_index("journey_steps_person", "journey_steps", ["person_id"])


def downgrade() -> None:
    for table in ("journey_steps", "journey_entries", "journey_waits", "journey_runs", "journey_versions"):
        op.drop_table(table)
