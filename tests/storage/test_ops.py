"""The operational store on SQLite and PostgreSQL: sources and keys, the inbox, consumers, pruning."""

from __future__ import annotations

import threading
import time

import pytest

from omniweave.errors import ConfigError, TerminalStoreError, TransientStoreError
from omniweave.storage.ops.store import OpStore


@pytest.fixture
def store(opstore_url: str):
    s = OpStore(opstore_url)
    yield s
    s.close()


def rows(source: str, ids, received_at: float | None = None) -> list[tuple[str, str, float, bytes]]:
    now = time.time() if received_at is None else received_at
    return [(source, str(i), now, f'{{"messageId":"{i}"}}'.encode()) for i in ids]


def test_sources_and_write_keys(store: OpStore) -> None:
    source_id, write_key = store.create_source("web")
    assert write_key.startswith("wk_")
    assert store.source_for_write_key(write_key) == source_id
    assert store.source_for_write_key("wk_nobody") is None
    with pytest.raises(TerminalStoreError, match="already exists"):
        store.create_source("web")
    assert store.ensure_source("web") == source_id
    other = store.ensure_source("till")
    assert other != source_id and store.ensure_source("till") == other
    assert [s["name"] for s in store.list_sources()] == ["web", "till"]


def test_secret_keys(store: OpStore) -> None:
    key = store.create_secret_key("admin")
    assert store.is_secret_key(key)
    assert not store.is_secret_key("sk_wrong")


def test_append_keeps_order_and_payloads(store: OpStore) -> None:
    assert store.append([]) == 0
    assert store.append(rows("s1", range(5))) == 5
    assert store.append(rows("s2", range(5, 8))) == 3
    read = store.read(after=0)
    assert [r.seq for r in read] == sorted(r.seq for r in read)
    assert [r.payload for r in read] == [f'{{"messageId":"{i}"}}'.encode() for i in range(8)]
    assert [r.source_id for r in read] == ["s1"] * 5 + ["s2"] * 3
    assert store.max_seq() == read[-1].seq
    assert store.inbox_count() == 8


def test_duplicates_are_ignored_within_and_across_appends(store: OpStore) -> None:
    assert store.append(rows("s1", [1, 2, 3])) == 3
    # same messageIds again, plus a repeat inside one append, plus a new one
    assert store.append(rows("s1", [2, 3, 4, 4])) == 1
    # the same messageId from another source is a different event
    assert store.append(rows("s2", [1])) == 1
    assert store.inbox_count() == 5
    assert sorted((r.source_id, r.payload) for r in store.read(after=0)) == sorted(
        [
            ("s1", b'{"messageId":"1"}'),
            ("s1", b'{"messageId":"2"}'),
            ("s1", b'{"messageId":"3"}'),
            ("s1", b'{"messageId":"4"}'),
            ("s2", b'{"messageId":"1"}'),
        ]
    )


def test_large_append_with_duplicates_across_statement_chunks(store: OpStore) -> None:
    ids = list(range(1000)) + [0, 250, 999, 500]  # repeats land in other INSERT chunks
    assert store.append(rows("s1", ids)) == 1000
    assert store.inbox_count() == 1000
    assert store.append(rows("s1", range(990, 1010))) == 10
    payloads = [r.payload for r in store.read(after=0)]
    assert payloads == [f'{{"messageId":"{i}"}}'.encode() for i in range(1010)]


def test_read_after_limit_upto(store: OpStore) -> None:
    store.append(rows("s1", range(10)))
    seqs = [r.seq for r in store.read(after=0)]
    assert [r.seq for r in store.read(after=seqs[2], limit=3)] == seqs[3:6]
    assert [r.seq for r in store.read(after=seqs[2], upto=seqs[4])] == seqs[3:5]
    assert store.read(after=seqs[-1]) == []


def test_concurrent_appends_from_threads_lose_nothing(store: OpStore) -> None:
    def worker(n: int) -> None:
        for batch in range(5):
            store.append(rows("s1", [f"{n}-{batch}-{i}" for i in range(20)]))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.inbox_count() == 4 * 5 * 20
    seqs = [r.seq for r in store.read(after=0)]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


def test_consumer_positions_and_pending(store: OpStore) -> None:
    assert store.consumer("loader").position == 0
    assert store.consumer("loader").pending_end is None
    store.mark_pending("loader", 42)
    assert store.consumer("loader").pending_end == 42
    store.commit_position("loader", 42)
    state = store.consumer("loader")
    assert (state.position, state.pending_end) == (42, None)
    store.consumer("journeys")
    assert {name: s.position for name, s in store.consumers().items()} == {"loader": 42, "journeys": 0}


def test_two_processes_asking_for_a_new_consumer_at_once_both_get_it(opstore_url: str) -> None:
    """Two loaders starting together (a server's and a test's, say) used to fail with
    `UNIQUE constraint failed: consumers.name`: both saw no row and both inserted."""
    stores = [OpStore(opstore_url) for _ in range(2)]
    names = [f"consumer-{i}" for i in range(20)]
    errors: list[BaseException] = []

    def ask(store: OpStore, barrier: threading.Barrier) -> None:
        for name in names:
            try:
                barrier.wait(timeout=30)
                assert store.consumer(name).position == 0
            except BaseException as exc:  # noqa: BLE001 - collected and asserted below
                errors.append(exc)

    barrier = threading.Barrier(2)
    threads = [threading.Thread(target=ask, args=(s, barrier)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    try:
        assert errors == []
        assert sorted(stores[0].consumers()) == sorted(names)
    finally:
        for s in stores:
            s.close()


def test_prune_drops_only_old_rows_every_consumer_has_passed(store: OpStore) -> None:
    old = time.time() - 3 * 3600
    store.append(rows("s1", range(10), received_at=old))
    store.append(rows("s1", range(10, 15)))  # recent
    seqs = [r.seq for r in store.read(after=0)]
    assert store.prune(dedupe_seconds=3600) == 0  # no consumers yet: nothing is safe to drop
    store.consumer("loader")
    store.commit_position("loader", seqs[-1])
    store.consumer("slow")
    store.commit_position("slow", seqs[5])
    assert store.prune(dedupe_seconds=3600) == 6  # old and passed by both consumers
    assert [r.seq for r in store.read(after=0)] == seqs[6:]
    # dedupe still holds for the rows kept ...
    assert store.append(rows("s1", [7, 12])) == 0
    # ... and a messageId older than the dedupe window is accepted again (the documented window)
    assert store.append(rows("s1", [0])) == 1
    store.commit_position("slow", seqs[-1])
    assert store.prune(dedupe_seconds=3600) == 4  # the rest of the old rows; recent ones stay
    assert store.inbox_count() == 6


def test_record_import(store: OpStore) -> None:
    store.record_import("till", "/data/till.csv", 10, 8, 1, 1)


def test_bad_urls_are_config_errors() -> None:
    with pytest.raises(ConfigError):
        OpStore("nosuchdb://x")


@pytest.mark.postgres
def test_unreachable_postgres_is_transient(postgres_admin_url: str) -> None:
    with pytest.raises(TransientStoreError):
        OpStore("postgresql://postgres@127.0.0.1:1/none?connect_timeout=2")


def test_processes_opening_a_new_store_at_once_all_succeed(tmp_path, opstore_url: str) -> None:
    """The server's helper processes and parallel importers may open a fresh store together:
    the race to create its tables must not fail any of them."""
    import concurrent.futures

    with concurrent.futures.ProcessPoolExecutor(4) as pool:
        assert list(pool.map(_open_and_count, [opstore_url] * 8)) == [0] * 8


def _open_and_count(url: str) -> int:
    store = OpStore(url)
    try:
        return store.max_seq()
    finally:
        store.close()


def test_a_store_opens_while_another_connection_holds_a_write_lock_on_a_new_file(tmp_path) -> None:
    """Switching a new file to WAL while another connection is writing in the old journal mode is
    refused at once by SQLite, busy timeout or not (this failed parallel imports in CI): the store
    waits for the writer instead."""
    import sqlite3
    import threading

    path = tmp_path / "ops.db"
    writer = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    writer.execute("CREATE TABLE other (x INTEGER)")
    writer.execute("BEGIN IMMEDIATE")  # a write lock in the rollback journal the file was created with
    writer.execute("INSERT INTO other VALUES (1)")
    done = threading.Timer(0.5, lambda: writer.execute("COMMIT"))
    done.start()
    try:
        store = OpStore(f"sqlite:///{path}")
        try:
            assert store.max_seq() == 0
        finally:
            store.close()
    finally:
        done.join()
        writer.close()
    check = sqlite3.connect(path)
    assert check.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert check.execute("SELECT x FROM other").fetchall() == [(1,)]  # the writer's row is kept
    check.close()
