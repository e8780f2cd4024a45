"""The revisions, oldest first: `NNNN_what.py` with `revision = "NNNN"`; update `migrate.HEAD` too."""
