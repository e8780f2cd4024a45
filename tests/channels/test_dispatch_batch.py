"""A channel that takes a batch (`send_many`): the dispatcher hands it a step's claimed rows in one call, each
row committed as `sending` before the call and its outcome recorded after; a batch call that raises or
answers the wrong number of outcomes leaves its rows ambiguous, never resent on their own. The durable
sink of the journeys (FileSink) takes batches: every message once on disk, found by its status lookup."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from omniweave.activate.service.journeys import FileSink, sink_keys
from omniweave.channels.dispatch import Dispatcher
from omniweave.channels.port import Delivered, Message, Outcome, Transient
from omniweave.errors import ConfigError
from omniweave.runtime import Runtime
from omniweave.settings import Settings
from omniweave.storage.ops.engines import open_engine
from omniweave.storage.ops.ledger import Ledger


def sms(i: int) -> Message:
    return Message("sms", f"+4477008{i:05d}", {"body": f"hello {i}"}, person_id=f"P{i}")


class Batching:
    """A channel taking batches, which reads the ledger as each call comes in (what its rows' state is then)."""

    name = "sms"

    def __init__(self, ledger: Ledger, answer_short: bool = False, explode: bool = False):
        self.ledger = ledger
        self.answer_short = answer_short
        self.explode = explode
        self.batches: list[list[str]] = []
        self.seen_status: dict[str, str] = {}
        self.singles: list[str] = []
        self.lock = threading.Lock()

    def send(self, message: Message, idempotency_key: str) -> Outcome:
        self.singles.append(idempotency_key)
        return Delivered(f"one-{idempotency_key}")

    def send_many(self, items: list[tuple[Message, str]]) -> list[Outcome]:
        keys = [key for _, key in items]
        rows = self.ledger.get_many(keys)
        with self.lock:
            self.batches.append(keys)
            self.seen_status.update({k: rows[k].status for k in keys})
        if self.explode:
            raise RuntimeError("batch adapter bug")
        outcomes: list[Outcome] = []
        for message, key in items:
            if message.to.endswith("13"):
                outcomes.append(Transient("busy", retry_after=60))
            else:
                outcomes.append(Delivered(f"id-{key}"))
        return outcomes[:-1] if self.answer_short else outcomes


@pytest.mark.parametrize("workers", [1, 3])
def test_a_batch_channel_gets_each_step_in_one_call_after_the_rows_are_claimed(runtime, workers):
    ledger = Ledger(runtime.store.engine)
    channel = Batching(ledger)
    dispatcher = Dispatcher(ledger, {"sms": channel})
    dispatcher.STEP = 7
    ledger.suppress("sms", "+447700800004", "stop")
    items = [(sms(i), f"b{i}") for i in range(30)]
    results = dispatcher.send_many(items, workers=workers)

    expected_calls = [f"b{i}" for i in range(30) if i != 4]
    assert sorted(k for batch in channel.batches for k in batch) == sorted(expected_calls)  # each called once
    assert channel.singles == []  # never one at a time
    steps = 1 if workers == 1 else -(-30 // dispatcher.STEP)
    assert len(channel.batches) == steps
    assert set(channel.seen_status.values()) == {"sending"}  # committed and claimed before the call
    by_key = {r.key: r for r in results}
    assert by_key["b4"].status == "suppressed"
    assert by_key["b13"].status == "retrying"
    delivered = {k for k, r in by_key.items() if r.status == "delivered"}
    assert delivered == {f"b{i}" for i in range(30)} - {"b4", "b13"}
    rows = ledger.get_many([k for _, k in items])
    assert all(rows[k].status == "delivered" and rows[k].provider_id == f"id-{k}" for k in delivered)
    assert rows["b13"].status == "retrying" and rows["b13"].next_attempt_at is not None

    again = dispatcher.send_many(items, workers=workers)  # a replay: only the waiting retry is tried again
    assert sorted(k for batch in channel.batches for k in batch) == sorted([*expected_calls, "b13"])
    assert {r.key: r.status for r in again} == {r.key: r.status for r in results}


@pytest.mark.parametrize("short", [False, True])
def test_a_batch_call_that_fails_leaves_its_rows_ambiguous_and_they_are_not_resent(runtime, short):
    ledger = Ledger(runtime.store.engine)
    channel = Batching(ledger, answer_short=short, explode=not short)
    dispatcher = Dispatcher(ledger, {"sms": channel})
    items = [(sms(i), f"x{i}") for i in range(5)]
    results = dispatcher.send_many(items)
    assert {r.status for r in results} == {"ambiguous"}
    why = "send_many answered 4 outcomes for 5 messages" if short else "RuntimeError: batch adapter bug"
    assert all(why in (r.reason or "") for r in results)
    assert {r.status for r in ledger.get_many([k for _, k in items]).values()} == {"ambiguous"}
    assert dispatcher.run_due() == []  # ambiguous is never due on its own
    assert len(channel.batches) == 1


def test_the_file_sink_takes_batches_and_every_message_is_on_disk_once(runtime, tmp_path):
    path = tmp_path / "sink.jsonl"
    sink = FileSink(path, "sms")
    ledger = Ledger(runtime.store.engine)
    dispatcher = Dispatcher(ledger, {"sms": sink})
    dispatcher.STEP = 16
    items = [(sms(i), f"f{i}") for i in range(100)]
    results = dispatcher.send_many(items, workers=4)
    assert {r.status for r in results} == {"delivered"}
    keys = sink_keys(path)
    assert sorted(keys) == sorted(k for _, k in items) and len(keys) == len(set(keys))
    assert sink.lookup("f42") == "delivered" and sink.lookup("nope") is None
    dispatcher.send_many(items, workers=4)
    assert len(sink_keys(path)) == 100


def test_a_store_opened_with_synchronous_normal_still_commits_each_claim_with_full(tmp_path):
    """WAL + synchronous=NORMAL (the URL's setting): the connections run at NORMAL, but the ledger's claim, the
    last write before a channel call, commits at FULL (its commit syncs the log and all before it)."""
    url = f"sqlite:///{tmp_path / 'ops.db'}?synchronous=normal"
    rt = Runtime(Settings(home=str(tmp_path), database_url=url))
    try:
        engine = rt.store.engine
        levels: list[tuple[int, str]] = []
        statements: list[str] = []

        @sa.event.listens_for(engine, "before_cursor_execute")
        def seen(conn, cursor, statement, *args):  # noqa: ANN001, ANN202 - SQLAlchemy's event signature
            statements.append(statement)

        @sa.event.listens_for(engine, "commit")
        def committed(conn):  # noqa: ANN001, ANN202
            level = conn.connection.dbapi_connection.execute("PRAGMA synchronous").fetchone()[0]
            writes = [s for s in statements if s.split()[0].upper() in ("UPDATE", "INSERT")]
            levels.append((int(level), writes[-1].split()[0].upper() if writes else ""))
            statements.clear()

        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar_one() == 1  # NORMAL
        ledger = Ledger(engine)
        dispatcher = Dispatcher(ledger, {"sms": FileSink(tmp_path / "sink.jsonl", "sms")})
        results = dispatcher.send_many([(sms(i), f"n{i}") for i in range(5)])
        assert {r.status for r in results} == {"delivered"}
        assert len(sink_keys(tmp_path / "sink.jsonl")) == 5
        writes = [(level, kind) for level, kind in levels if kind]
        # the pending rows (insert), the claim (update to sending) and the outcomes (update): only the claim at FULL
        assert [level for level, _ in writes] == [1, 2, 1]
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar_one() == 1  # back to NORMAL after the claim
    finally:
        rt.close()


def test_a_synchronous_level_that_is_not_one_is_refused_with_the_url_and_the_levels(tmp_path):
    url = f"sqlite:///{tmp_path / 'ops.db'}?synchronous=off"
    with pytest.raises(ConfigError, match=r"synchronous='off' is not a level; expected one of full, normal"):
        open_engine(url)
    with open_engine(f"sqlite:///{tmp_path / 'ops.db'}").connect() as conn:  # the default stays FULL
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar_one() == 2


@pytest.mark.postgres
@pytest.mark.parametrize("mixed", [False, True])
def test_outcomes_are_recorded_in_one_statement_on_postgresql(postgres_url, tmp_path, mixed):
    """PostgreSQL: a step's outcomes in one UPDATE … FROM unnest(…): delivered with its provider id, a retry with
    its time, a dead one with its reason; a column of NULLs only (no retry in the batch) is typed all the same;
    a row no longer `sending` is left as it is."""
    rt = Runtime(Settings(home=str(tmp_path), database_url=postgres_url))
    try:
        ledger = Ledger(rt.store.engine)
        channel = Batching(ledger)
        dispatcher = Dispatcher(ledger, {"sms": channel})
        n = 20 if mixed else 10  # 13 retries in the mixed batch only
        statements: list[str] = []
        sa.event.listen(rt.store.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
        results = dispatcher.send_many([(sms(i), f"p{i}") for i in range(n)])
        updates = [s for s in statements if s.lstrip().upper().startswith("UPDATE SENDS SET STATUS=OUTCOME")]
        assert len(updates) == 1
        rows = ledger.get_many([f"p{i}" for i in range(n)])
        for i in range(n):
            row = rows[f"p{i}"]
            if i == 13:
                assert row.status == "retrying" and row.reason == "busy" and row.next_attempt_at is not None
                assert row.provider_id is None
            else:
                assert row.status == "delivered" and row.provider_id == f"id-p{i}" and row.reason is None
                assert row.next_attempt_at is None
        assert {r.key: r.status for r in results} == {k: r.status for k, r in rows.items()}
        ledger.finish_many([{"key": "p0", "status": "dead", "reason": "late"}], 0.0)  # p0 is not `sending`
        assert ledger.get_many(["p0"])["p0"].status == "delivered"
    finally:
        rt.close()
