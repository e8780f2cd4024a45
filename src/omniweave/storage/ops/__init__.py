"""The operational store: state that changes row by row (keys, the inbox, consumer positions, …).

store.py       OpStore, the one door: every caller goes through its methods
tables/        the tables, one module per area, on one MetaData
migrations/    Alembic revisions; migrate.py runs them (under a lock) whenever a store opens
apikeys.py     secret API keys: format, hash, look-up prefix (pure)
engines.py     the SQLAlchemy engine for a URL, with SQLite's settings
"""
