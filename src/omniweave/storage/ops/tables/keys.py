"""Keys: sources with their write keys, and secret keys for the REST API.

A write key identifies a source (a site, an app, a till system); by the Segment spec it ships
inside web pages and apps, so it is a public identifier and is stored as it is.

A secret key opens the REST API, so the store never holds it: a row keeps the key's non-secret
`prefix` (how a key is looked up) and the SHA-256 of the whole key (see `storage/ops/secrets.py`).
"""

import sqlalchemy as sa

from omniweave.storage.ops.tables.base import metadata

sources = sa.Table(
    "sources",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("write_key", sa.String(100), nullable=False, unique=True),
    sa.Column("created_at", sa.Float, nullable=False),
)

secret_keys = sa.Table(
    "secret_keys",
    metadata,
    sa.Column("prefix", sa.String(32), primary_key=True),
    sa.Column("key_hash", sa.String(64), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)
