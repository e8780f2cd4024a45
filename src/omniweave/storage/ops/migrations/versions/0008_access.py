"""Access: secret-key scopes, disabled sources, users, sessions, and the append-only audit log.

Frozen copies of the tables as this revision creates them (storage/ops/tables/access.py), and the
triggers that refuse UPDATE and DELETE on audit_log (SQLite: RAISE(ABORT); PostgreSQL: a plpgsql function).
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_MESSAGE = "audit_log is append-only: rows cannot be updated or deleted"


def upgrade() -> None:
    op.create_table(
        "api_key_scopes",
        sa.Column("prefix", sa.String(32), primary_key=True),
        sa.Column("scope", sa.String(40), primary_key=True),
    )
    op.create_table(
        "disabled_sources",
        sa.Column("source_id", sa.String(64), primary_key=True),
        sa.Column("disabled_at", sa.Float, nullable=False),
        sa.Column("disabled_by", sa.String(200), nullable=False),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("email", sa.String(320), nullable=False, unique=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("role", sa.String(40), nullable=False),
        sa.Column("password_hash", sa.String(200), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("disabled_at", sa.Float, nullable=True),
    )
    op.create_table(
        "sessions",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
        sa.Column("origin", sa.String(200), nullable=True),
    )
    op.create_index("sessions_user", "sessions", ["user_id"])
    op.create_table(
        "audit_log",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(60), nullable=False),
        sa.Column("target", sa.String(500), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("origin", sa.String(200), nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("audit_log_at", "audit_log", ["at"])
    op.create_index("audit_log_action", "audit_log", ["action", "at"])
    if op.get_context().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"RAISE EXCEPTION '{_MESSAGE}'; END $$"
        )
        op.execute(
            "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log "
            "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()"
        )
        op.execute(
            "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log "
            "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()"
        )
    else:
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_log_no_{verb.lower()} BEFORE {verb} ON audit_log "
                f"BEGIN SELECT RAISE(ABORT, '{_MESSAGE}'); END"
            )


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_truncate ON audit_log")
        op.execute("DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log")
        op.execute("DROP FUNCTION IF EXISTS audit_log_append_only()")
    op.drop_table("audit_log")
    op.drop_table("sessions")
    op.drop_table("users")
    op.drop_table("disabled_sources")
    op.drop_table("api_key_scopes")
