"""The schema of the release before migrations: sources, secret keys (plain), inbox, consumers, imports.

Frozen copies of the tables as they were (later revisions change them; this one must not).
A store from that release already has every table, so only the missing ones are created.
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _tables(metadata: sa.MetaData) -> list[sa.Table]:
    return [
        sa.Table(
            "sources",
            metadata,
            sa.Column("id", sa.String(64), primary_key=True),
            sa.Column("name", sa.String(200), nullable=False, unique=True),
            sa.Column("write_key", sa.String(100), nullable=False, unique=True),
            sa.Column("created_at", sa.Float, nullable=False),
        ),
        sa.Table(
            "secret_keys",
            metadata,
            sa.Column("key", sa.String(100), primary_key=True),
            sa.Column("name", sa.String(200), nullable=False),
            sa.Column("created_at", sa.Float, nullable=False),
        ),
        sa.Table(
            "inbox",
            metadata,
            sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
            sa.Column("source_id", sa.String(64), nullable=False),
            sa.Column("message_id", sa.String(200), nullable=False),
            sa.Column("received_at", sa.Float, nullable=False),
            sa.Column("payload", sa.LargeBinary, nullable=False),
            sa.UniqueConstraint("source_id", "message_id", name="inbox_dedupe"),
            sqlite_autoincrement=True,
        ),
        sa.Table(
            "consumers",
            metadata,
            sa.Column("name", sa.String(100), primary_key=True),
            sa.Column("position", sa.BigInteger, nullable=False),
            sa.Column("pending_end", sa.BigInteger, nullable=True),
            sa.Column("updated_at", sa.Float, nullable=False),
        ),
        sa.Table(
            "imports",
            metadata,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("kind", sa.String(100), nullable=False),
            sa.Column("file", sa.Text, nullable=False),
            sa.Column("rows_read", sa.Integer, nullable=False),
            sa.Column("rows_imported", sa.Integer, nullable=False),
            sa.Column("rows_duplicate", sa.Integer, nullable=False),
            sa.Column("rows_rejected", sa.Integer, nullable=False),
            sa.Column("finished_at", sa.Float, nullable=False),
        ),
    ]


def upgrade() -> None:
    bind = op.get_bind()
    metadata = sa.MetaData()
    tables = _tables(metadata)
    existing = set(sa.inspect(bind).get_table_names())
    metadata.create_all(bind, tables=[t for t in tables if t.name not in existing])


def downgrade() -> None:
    metadata = sa.MetaData()
    metadata.drop_all(op.get_bind(), tables=_tables(metadata))
