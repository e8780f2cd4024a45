"""Bring an operational store's schema up to date when it opens: Alembic, run from code.

The revisions live in `migrations/versions/` inside the package, so users need no alembic.ini
and no command: `OpStore(url)` calls `upgrade`. Several processes may open a store at once (the
collector and its helper processes, parallel importers), so the upgrade runs in one transaction
under a lock that every migrating process takes first: PostgreSQL's transaction advisory lock,
SQLite's `BEGIN EXCLUSIVE`. Whoever gets the lock second finds the schema at HEAD and does
nothing. DDL is transactional on both, so a failed upgrade leaves the store as it was.

A store written before migrations existed has the tables of revision 0001 and no
`alembic_version` table; revision 0001 creates only the tables that are missing, so such a store
upgrades in place like any other.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from omniweave.errors import TerminalStoreError, TransientStoreError
from omniweave.storage.ops.engines import open_engine

MIGRATIONS = Path(__file__).parent / "migrations"
HEAD = "0009g"  # the newest revision in migrations/versions (tests/storage/test_migrations.py checks it)
_PG_LOCK = 727275  # advisory lock id of migrations (the inbox's writers use 727274)

if TYPE_CHECKING:
    from alembic.config import Config

# Alembic is imported only when a store needs migrating: importing it costs a few tenths of a
# second, and every CLI command and every helper process of the collector opens a store.


def current_revision(engine: sa.Engine) -> str | None:
    """The revision the store's schema is at (None: no revision recorded yet)."""
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table("alembic_version"):
            return None
        return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()


def script_head() -> str | None:
    """The newest revision shipped in the package (reads the revision files: slower than HEAD)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config()).get_current_head()


def upgrade(engine: sa.Engine) -> None:
    """Run every revision the store has not had yet, under the migration lock."""
    try:
        if current_revision(engine) == HEAD:
            return
    except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
        raise TransientStoreError(f"operational store {engine.url!r} is unreachable: {exc}") from exc
    from alembic.util import CommandError

    try:
        if engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
            _upgrade_sqlite(engine)
        else:
            with engine.begin() as conn:
                if engine.dialect.name == "postgresql":
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": _PG_LOCK})
                _upgrade_on(conn)
    except CommandError as exc:  # e.g. a revision newer than this release knows
        raise TerminalStoreError(
            f"cannot migrate the operational store {engine.url!r} to revision {HEAD}: {exc}"
            " (was it opened by a newer omniweave?)"
        ) from exc
    except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
        raise TransientStoreError(f"operational store {engine.url!r} is unreachable: {exc}") from exc


def _upgrade_sqlite(engine: sa.Engine) -> None:
    """SQLite: pysqlite does not begin transactions before DDL, so on a connection of our own the
    driver is left in autocommit and the transaction is begun by hand as EXCLUSIVE: the lock."""
    locked = open_engine(engine.url.render_as_string(hide_password=False), poolclass=NullPool)

    @sa.event.listens_for(locked, "connect")
    def _autocommit_driver(dbapi_conn, _record):  # type: ignore[no-untyped-def]
        dbapi_conn.isolation_level = None

    @sa.event.listens_for(locked, "begin")
    def _begin_exclusive(conn):  # type: ignore[no-untyped-def]
        conn.exec_driver_sql("BEGIN EXCLUSIVE")

    try:
        with locked.begin() as conn:
            _upgrade_on(conn)
    finally:
        locked.dispose()


def _upgrade_on(conn: sa.Connection) -> None:
    from alembic import command

    config = _config()
    config.attributes["connection"] = conn
    command.upgrade(config, "head")


def _config() -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config
