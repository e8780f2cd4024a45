"""Secret keys are stored hashed: each row keeps a non-secret prefix and the SHA-256 of the key.

Plain keys already issued are hashed in place and keep working: their prefix is the first 16 hex
digits of their hash (new keys carry a 12-hex prefix in the key itself; see storage/ops/apikeys.py).
The table is rebuilt (read, drop, create, insert) inside the migration's transaction.
"""

import hashlib

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    plain = sa.table("secret_keys", sa.column("key", sa.String), sa.column("name", sa.String), sa.column("created_at"))
    rows = bind.execute(sa.select(plain.c.key, plain.c.name, plain.c.created_at)).all()
    op.drop_table("secret_keys")
    hashed = op.create_table(
        "secret_keys",
        sa.Column("prefix", sa.String(32), primary_key=True),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    values = []
    for key, name, created_at in rows:
        digest = hashlib.sha256(str(key).encode("utf-8")).hexdigest()
        values.append({"prefix": digest[:16], "key_hash": digest, "name": name, "created_at": created_at})
    if values:
        op.bulk_insert(hashed, values)


def downgrade() -> None:
    raise NotImplementedError("secret keys cannot be unhashed: revision 0002 cannot be undone")
