"""The operational store's schema under Alembic: new stores, a home of the release before
migrations upgraded in place, concurrent openers, and secret keys that are stored hashed."""

from __future__ import annotations

import concurrent.futures
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from omniweave.errors import TerminalStoreError
from omniweave.storage.ops import migrate
from omniweave.storage.ops.store import OpStore
from omniweave.storage.ops.tables import metadata

RELEASE_0 = Path(__file__).parents[1] / "data" / "homes" / "release_0" / "omniweave.db"


@pytest.fixture
def store(opstore_url: str):
    s = OpStore(opstore_url)
    yield s
    s.close()


def _all_values(engine: sa.Engine) -> list[object]:
    """Every value in every column of every table (alembic's own included)."""
    values: list[object] = []
    with engine.connect() as conn:
        for name in sa.inspect(conn).get_table_names():
            for row in conn.execute(sa.text(f'SELECT * FROM "{name}"')):
                values.extend(row)
    return values


def _holds(engine: sa.Engine, secret: str) -> bool:
    """Whether `secret` appears anywhere in the database, as text or inside bytes."""
    for value in _all_values(engine):
        if isinstance(value, bytes | bytearray | memoryview):
            if secret.encode() in bytes(value):
                return True
        elif secret in str(value):
            return True
    return False


def test_the_shipped_head_is_the_one_the_store_checks_for() -> None:
    assert migrate.script_head() == migrate.HEAD


def test_a_new_store_is_created_by_the_migrations_and_matches_the_tables(store: OpStore) -> None:
    assert migrate.current_revision(store.engine) == migrate.HEAD
    with store.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []


def test_opening_again_changes_nothing(opstore_url: str) -> None:
    first = OpStore(opstore_url)
    first.create_source("web")
    first.close()
    again = OpStore(opstore_url)
    try:
        with again.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all() == [migrate.HEAD]
        assert [s["name"] for s in again.list_sources()] == ["web"]
    finally:
        again.close()


def test_secret_keys_are_stored_hashed_and_looked_up_by_prefix(store: OpStore) -> None:
    admin = store.create_secret_key("admin")
    board = store.create_secret_key("dashboard")
    assert admin != board and admin.startswith("sk_")
    assert store.is_secret_key(admin) and store.is_secret_key(board)
    assert store.secret_key_name(admin) == "admin" and store.secret_key_name(board) == "dashboard"
    listed = store.list_secret_keys()
    assert [(k.name, k.prefix) for k in listed] == [("admin", admin.split("_")[1]), ("dashboard", board.split("_")[1])]
    assert not any(admin in str(k.to_dict()) for k in listed)
    for key in (admin, board):
        assert not _holds(store.engine, key)
        assert not _holds(store.engine, key.split("_", 2)[2])  # nor the secret part on its own
    assert store.revoke_secret_key(board.split("_")[1])
    assert not store.is_secret_key(board) and store.is_secret_key(admin)
    assert not store.revoke_secret_key("000000000000")


def test_malformed_and_wrong_keys_are_refused_without_errors(store: OpStore) -> None:
    key = store.create_secret_key("admin")
    _, write_key = store.create_source("web")
    prefix, secret = key.split("_", 2)[1:]
    other_secret = ("A" if secret[0] != "A" else "B") + secret[1:]
    refused: list[object] = [
        "",
        "sk_",
        "sk__",
        "sk_wrong",
        f"sk_{prefix}_",
        f"sk_{prefix}_{other_secret}",  # right prefix, wrong secret
        f"sk_{'0' * 12}_{secret}",  # right secret, another prefix
        *([f"sk_{prefix.upper()}_{secret}"] if prefix.upper() != prefix else []),  # an all-digit prefix has no case
        key + "x",
        key[:-1],
        " " + key,
        key + "\n",
        key.replace("sk_", "SK_"),
        "sk_" + "é" * 43,
        "sk_" + "x" * 100_000,
        write_key,
        None,
        42,
        key.encode(),
        [key],
    ]
    for candidate in refused:
        assert not store.is_secret_key(candidate), candidate
        assert store.secret_key_name(candidate) is None
    assert store.is_secret_key(key)


def _copy_release_0(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(RELEASE_0, home / "omniweave.db")
    return home


def _read_plain(path: Path) -> dict[str, list[tuple[object, ...]]]:
    conn = sqlite3.connect(path)
    try:
        return {
            table: conn.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()
            for table in ("sources", "secret_keys", "inbox", "consumers", "imports")
        }
    finally:
        conn.close()


def test_a_home_from_the_release_before_migrations_upgrades_in_place(tmp_path: Path) -> None:
    from omniweave.runtime import Runtime
    from omniweave.settings import Settings

    home = _copy_release_0(tmp_path)
    before = _read_plain(home / "omniweave.db")
    plain_keys = {str(key): str(name) for key, name, _ in before["secret_keys"]}
    assert sorted(plain_keys.values()) == ["admin", "dashboard"] and len(before["inbox"]) == 6

    runtime = Runtime(Settings(home=str(home)))
    try:
        store = runtime.store
        assert migrate.current_revision(store.engine) == migrate.HEAD
        with store.engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), metadata) == []
        # the data survived ...
        after = _read_plain(home / "omniweave.db")
        for table in ("sources", "inbox", "consumers", "imports"):
            assert after[table] == before[table], table
        # ... write keys still find their sources ...
        for source_id, _name, write_key, _created in before["sources"]:
            assert store.source_for_write_key(str(write_key)) == source_id
        # ... the old secret keys still open the API, and none is left in plain
        for key, name in plain_keys.items():
            assert store.secret_key_name(key) == name
            assert not _holds(store.engine, key)
        assert sorted(k.name for k in store.list_secret_keys()) == ["admin", "dashboard"]
        # the store goes on as usual: new keys, appends after the old rows, consumers where they were
        assert store.is_secret_key(store.create_secret_key("new"))
        assert store.append([(str(before["sources"][0][0]), "web-new", 0.0, b"{}")]) == 1
        assert store.max_seq() == max(int(str(r[0])) for r in before["inbox"]) + 1
        assert {n: s.position for n, s in store.consumers().items()} == {"loader": 4, "segments-live": 2}
    finally:
        runtime.close()


def _open_and_name(args: tuple[str, str]) -> str | None:
    url, key = args
    store = OpStore(url)
    try:
        return store.secret_key_name(key)
    finally:
        store.close()


def test_processes_opening_an_old_home_at_once_migrate_it_once(tmp_path: Path) -> None:
    home = _copy_release_0(tmp_path)
    key, name = next((str(k), str(n)) for k, n, _ in _read_plain(home / "omniweave.db")["secret_keys"])
    url = f"sqlite:///{home / 'omniweave.db'}"
    with concurrent.futures.ProcessPoolExecutor(4) as pool:
        assert list(pool.map(_open_and_name, [(url, key)] * 8)) == [name] * 8
    store = OpStore(url)
    try:
        assert len(store.list_secret_keys()) == 2
    finally:
        store.close()


def test_a_store_without_revisions_upgrades_in_place_on_both_engines(opstore_url: str) -> None:
    """What the release before migrations left on PostgreSQL too: revision 0001's tables, plain
    keys, no alembic_version. (On SQLite the real file of that release is tested above.)"""
    engine = sa.create_engine(opstore_url.replace("postgresql://", "postgresql+psycopg://"))
    old = sa.MetaData()
    for name, key in (("secret_keys", "key"), ("sources", "id")):
        extra = [sa.Column("write_key", sa.String(100))] if name == "sources" else []
        sa.Table(name, old, sa.Column(key, sa.String(100), primary_key=True), sa.Column("name", sa.String(200)), *extra)
        old.tables[name].append_column(sa.Column("created_at", sa.Float))
    old.create_all(engine)
    plain = "sk_" + "Q" * 43
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO secret_keys VALUES (:k, 'ops', 1.0)"), {"k": plain})
        conn.execute(sa.text("INSERT INTO sources VALUES ('s1', 'web', 'wk_abc', 1.0)"))
    engine.dispose()
    store = OpStore(opstore_url)
    try:
        assert migrate.current_revision(store.engine) == migrate.HEAD
        assert store.secret_key_name(plain) == "ops" and not _holds(store.engine, plain)
        assert store.source_for_write_key("wk_abc") == "s1"
        assert store.inbox_count() == 0 and store.consumer("loader").position == 0  # missing tables were created
    finally:
        store.close()


def test_a_store_from_a_newer_release_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ops.db'}"
    OpStore(url).close()
    conn = sqlite3.connect(tmp_path / "ops.db")
    conn.execute("UPDATE alembic_version SET version_num = '9999'")
    conn.commit()
    conn.close()
    with pytest.raises(TerminalStoreError, match="newer omniweave"):
        OpStore(url)


def test_the_key_the_cli_prints_opens_the_api(tmp_path: Path) -> None:
    """`omniweave keys secret` prints the key once, as its last line; that key opens the REST API
    (and the store keeps no copy of it); `keys secrets` lists it by prefix, `keys revoke` ends it."""
    import os

    from fastapi.testclient import TestClient

    from omniweave.settings import Settings
    from omniweave.shells.api.app import create_app
    from tests.conftest import omniweave_cmd

    home = tmp_path / "home"
    env = {**os.environ, "OMNIWEAVE_HOME": str(home)}
    done = subprocess.run(
        omniweave_cmd("keys", "secret", "--name", "crm"), env=env, capture_output=True, text=True, check=True
    )
    key = done.stdout.strip().splitlines()[-1]
    assert key.startswith("sk_") and done.stdout.count(key) == 1
    store = OpStore(f"sqlite:///{home / 'omniweave.db'}")
    try:
        assert store.secret_key_name(key) == "crm" and not _holds(store.engine, key)
    finally:
        store.close()
    with TestClient(create_app(Settings(home=str(home)))) as client:
        params = {"identifier": "email:nobody@example.com"}
        assert client.get("/v1/profiles", params=params).status_code == 401
        assert (
            client.get("/v1/profiles", params=params, headers={"Authorization": "Bearer sk_wrong"}).status_code == 401
        )
        answer = client.get("/v1/profiles", params=params, headers={"Authorization": f"Bearer {key}"})
        assert answer.status_code != 401 and answer.status_code < 500, answer.text
    # listed by prefix and name, never the key; revoked, it no longer opens the API
    prefix = key.split("_")[1]
    listed = subprocess.run(omniweave_cmd("keys", "secrets"), env=env, capture_output=True, text=True, check=True)
    assert prefix in listed.stdout and "crm" in listed.stdout and key.split("_", 2)[2] not in listed.stdout
    subprocess.run(omniweave_cmd("keys", "revoke", prefix), env=env, capture_output=True, text=True, check=True)
    again = subprocess.run(omniweave_cmd("keys", "revoke", prefix), env=env, capture_output=True, text=True)
    assert again.returncode == 2 and "no secret key with prefix" in again.stderr
    with TestClient(create_app(Settings(home=str(home)))) as client:
        params = {"identifier": "email:nobody@example.com"}
        assert client.get("/v1/profiles", params=params, headers={"Authorization": f"Bearer {key}"}).status_code == 401
