"""Access: secret-key scopes, disabled sources, dashboard users and their sessions, the audit log.

`api_key_scopes`: one row per (secret key prefix, scope) — what a key may do (privacy/roles.py names the
scopes). A key with no row here was made before scopes existed (or by `keys secret` without `--scope`)
and keeps every scope, as it always had.

`disabled_sources`: a source whose write key the collector answers with 404 while its row is here.

`users`: dashboard users, each with one role, an argon2 hash of the password (never the password), and
`disabled_at` once disabled. `sessions`: one row per signed-in browser: the SHA-256 of the session token
(the cookie holds the token; the store only its hash), its user, and when it expires.

`audit_log`: who did what to what, when and from where; append-only. Revision 0008 adds triggers (SQLite
and PostgreSQL) that refuse any UPDATE or DELETE of its rows, so no code path, ours or a stray SQL shell's,
can rewrite history.
"""

from __future__ import annotations

import sqlalchemy as sa

from omniweave.storage.ops.tables.base import metadata

api_key_scopes = sa.Table(
    "api_key_scopes",
    metadata,
    sa.Column("prefix", sa.String(32), primary_key=True),
    sa.Column("scope", sa.String(40), primary_key=True),
)

disabled_sources = sa.Table(
    "disabled_sources",
    metadata,
    sa.Column("source_id", sa.String(64), primary_key=True),
    sa.Column("disabled_at", sa.Float, nullable=False),
    sa.Column("disabled_by", sa.String(200), nullable=False),
)

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("email", sa.String(320), nullable=False, unique=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("role", sa.String(40), nullable=False),
    sa.Column("password_hash", sa.String(200), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("disabled_at", sa.Float, nullable=True),
)

sessions = sa.Table(
    "sessions",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("user_id", sa.String(32), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
    sa.Column("origin", sa.String(200), nullable=True),
    sa.Index("sessions_user", "user_id"),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("action", sa.String(60), nullable=False),
    sa.Column("target", sa.String(500), nullable=False),
    sa.Column("detail", sa.Text, nullable=False),  # a JSON object
    sa.Column("origin", sa.String(200), nullable=False),
    sa.Index("audit_log_at", "at"),
    sa.Index("audit_log_action", "action", "at"),
    sqlite_autoincrement=True,
)

APPEND_ONLY_MESSAGE = "audit_log is append-only: rows cannot be updated or deleted"
