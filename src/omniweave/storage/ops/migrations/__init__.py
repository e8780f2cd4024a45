"""Alembic revisions of the operational store, run by `storage/ops/migrate.py` when a store opens."""
