"""Alembic's entry point: runs the revisions on the connection `storage/ops/migrate.py` hands over."""

from alembic import context

from omniweave.storage.ops.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("the operational store's migrations run from omniweave.storage.ops.migrate.upgrade")
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
