"""The array path of `resolve` (identity.service.bulk) against the object path (identity.graph.Stitcher):
the same persons on the demo world and on random identity graphs, explanations kept, memory errors clear."""

from __future__ import annotations

import json
import posixpath
import shutil
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from omniweave.identity.graph import Rules
from omniweave.identity.service.operations import explain_identifier, explain_link
from omniweave.identity.service.resolve import load_stitcher, resolve, rules_from_settings
from omniweave.runtime import Runtime
from omniweave.settings import Settings
from omniweave.storage.engine import MemoryLimitError
from omniweave.storage.eventlog import EVENT_SCHEMA
from tests.conftest import shared_demo_world


def _identities(runtime: Runtime) -> set[tuple[Any, ...]]:
    path = posixpath.join(runtime.log.dataset_path("identities"), "identities.parquet")
    return {tuple(row.values()) for row in pq.read_table(path).to_pylist()}


def _forget(home: Path) -> None:
    for name in ("identity_state", "identities"):
        shutil.rmtree(home / "warehouse" / name, ignore_errors=True)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = shared_demo_world(tmp_path_factory, "bulk-demo", customers=150, days=10, seed=5, bulk=True)
    return home


def test_the_demo_world_gives_the_same_persons_on_both_paths(demo: Path, tmp_path: Path) -> None:
    homes = {}
    for method in ("objects", "arrays"):
        home = tmp_path / method
        shutil.copytree(demo, home)
        _forget(home)
        runtime = Runtime(Settings(home=str(home)))
        summary = resolve(runtime, method=method)
        homes[method] = (runtime, summary)
    (objects, by_objects), (arrays, by_arrays) = homes["objects"], homes["arrays"]
    assert _identities(arrays) == _identities(objects)
    assert (by_arrays.persons, by_arrays.identifiers, by_arrays.observations) == (
        by_objects.persons,
        by_objects.identifiers,
        by_objects.observations,
    )
    assert by_arrays.demoted == by_objects.demoted and by_arrays.probabilistic_links == by_objects.probabilistic_links
    # the saved graph reads back as the object path's: the same persons, and the probabilistic merges are logged
    graph = load_stitcher(arrays)
    assert graph.persons() == load_stitcher(objects).persons()
    merges = [link for link in graph.merge_log() if link.message_id.startswith("probabilistic:")]
    assert merges and all("match p=" in link.message_id for link in merges)
    # `identity explain` works on it: the chain of a probabilistic merge, and a person's links
    link = merges[0]
    start, chain = explain_link(arrays, f"{link.a[0]}:{link.a[1]}", f"{link.b[0]}:{link.b[1]}")
    assert start == link.a and chain and chain[-1].b in (link.b, link.a) or chain[-1].a == link.b
    person = explain_identifier(arrays, f"{link.a[0]}:{link.a[1]}")
    assert person.links and link.b in {(k, v) for k, vs in person.identifiers.items() for v in vs}
    # nothing new: nothing changes; the object path can continue the array path's graph and vice versa
    again = resolve(arrays, method="arrays")
    assert again.events == 0 and again.persons == by_arrays.persons and _identities(arrays) == _identities(objects)
    resolve(arrays, method="objects")
    assert _identities(arrays) == _identities(objects)


def test_a_stage_out_of_memory_is_a_clear_error(demo: Path, tmp_path: Path) -> None:
    home = tmp_path / "small"
    shutil.copytree(demo, home)
    _forget(home)
    runtime = Runtime(Settings(home=str(home), memory_limit="2MB"))
    with pytest.raises(MemoryLimitError) as caught:
        resolve(runtime, probabilistic=False, method="arrays")
    message = str(caught.value)
    assert "resolve ran out of memory" in message and "memory_limit" in message and "2 MiB" in message


# --- random identity graphs ----------------------------------------------------------------------

T0 = datetime(2026, 1, 1, tzinfo=UTC)
USERS = ["u1", "u2", "u3", " u4 ", "anonymous", "C-100", "c 101"]
EMAILS = ["a@x.com", "A@X.com ", "b@y.org", "c@z.net", "test@x.com", "not-an-email", "d@w.io"]
PHONES = ["07700 900001", "+447700900002", "0770090000", "12"]
CARDS = ["L1", "l-2", "L3", "0000000000"]
NUMBERS = ["C-100", "c101", "100", "C-102"]
DEVICES = ["DEV-A", "dev-b", "dev-c"]
COUPONS = ["SAVE1", "SAVE2", "MAIL20"]

maybe = st.one_of


def _pick(values: list[str]) -> st.SearchStrategy[str | None]:
    return st.one_of(st.none(), st.sampled_from(values))


event = st.fixed_dictionaries(
    {
        "minute": st.integers(0, 30),
        "user": _pick(USERS),
        "anon": _pick([f"anon-{i}" for i in range(8)]),
        "email": _pick(EMAILS),
        "context_email": _pick(EMAILS),
        "phone": _pick(PHONES),
        "card": _pick(CARDS),
        "number": _pick(NUMBERS),
        "device": _pick(DEVICES),
        "coupon": _pick(COUPONS),
        "external": _pick(["L1", "L9", "u2"]),
    }
)


def _rows(events: list[dict[str, Any]], offset: int) -> pa.Table:
    rows = []
    for i, e in enumerate(events):
        traits = {
            k: v for k, v in (("email", e["email"]), ("phone", e["phone"]), ("customer_number", e["number"])) if v
        }
        context: dict[str, Any] = {"traits": {"email": e["context_email"]}} if e["context_email"] else {}
        if e["device"]:
            context["device"] = {"id": e["device"]}
        if e["external"]:
            kind = "loyalty_card" if e["external"].startswith("L") else "user_id"
            context["externalIds"] = [{"id": e["external"], "type": kind, "collection": "users"}]
        if e["card"]:
            traits["loyalty_card"] = e["card"]
        stamp = T0 + timedelta(minutes=e["minute"])
        rows.append(
            {
                "message_id": f"m{offset + i:04d}",
                "type": "track",
                "event": "Order Completed",
                "user_id": e["user"],
                "anonymous_id": e["anon"],
                "timestamp": stamp,
                "received_at": stamp,
                "context": json.dumps(context),
                "properties": json.dumps({"coupon": e["coupon"]} if e["coupon"] else {}),
                "traits": json.dumps(traits),
            }
        )
    return pa.Table.from_pylist(rows, schema=EVENT_SCHEMA)


RULES = replace(
    rules_from_settings(Settings().identity),
    limits={"user_id": 1, "email": 2, "phone": 1, "loyalty_card": 1, "customer_number": 1, "device_id": 2},
    share_limits={"user_id": 2, "email": 2},
)


def _run(home: Path, batches: list[list[dict[str, Any]]], method: str, rules: Rules) -> set[tuple[Any, ...]]:
    runtime = Runtime(Settings(home=str(home)))
    offset = 0
    for n, batch in enumerate(batches):
        runtime.log.append("events", _rows(batch, offset), f"batch-{n}")
        offset += len(batch)
        resolve(runtime, rules=rules, probabilistic=False, method=method)
    return _identities(runtime)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(first=st.lists(event, min_size=1, max_size=25), later=st.lists(event, max_size=10))
def test_random_graphs_give_the_same_persons_on_both_paths(
    tmp_path_factory: pytest.TempPathFactory, first: list[dict[str, Any]], later: list[dict[str, Any]]
) -> None:
    batches = [first, later] if later else [first]
    base = tmp_path_factory.mktemp("graph")
    objects = _run(base / "objects", batches, "objects", RULES)
    arrays = _run(base / "arrays", batches, "arrays", RULES)
    assert arrays == objects
    # and all at once, on the array path
    assert _run(base / "once", [first + later], "arrays", RULES) == objects


def test_an_identifier_named_twice_in_an_event_is_observed_once(tmp_path: Path) -> None:
    """traits and context.traits with one e-mail, a coupon issued and redeemed in one event, an external id
    listed twice or also in traits: the saved observations hold each identifier of an event once, like the
    object path's."""
    events = [
        {**dict.fromkeys(("user", "anon", "phone", "number", "device", "coupon", "external", "card")), "minute": 0}
        | {"email": "a@x.com", "context_email": "A@X.com ", "card": "L1", "external": "L1"},
        {**dict.fromkeys(("user", "phone", "number", "device", "coupon", "external", "card")), "minute": 1}
        | {"anon": "anon-1", "email": "b@y.org", "context_email": "c@z.net", "external": "u2", "user": "u2"},
    ]
    table = _rows(events, 0).to_pylist()
    context = json.loads(table[1]["context"])
    context["externalIds"] = context["externalIds"] * 2  # the same entry twice
    table[1]["context"] = json.dumps(context)
    table[0]["properties"] = json.dumps({"coupon_code": "SAVE1", "coupon": "save1"})
    observed: dict[str, list[tuple[str, str, str]]] = {}
    for method in ("objects", "arrays"):
        runtime = Runtime(Settings(home=str(tmp_path / method)))
        runtime.log.append("events", pa.Table.from_pylist(table, schema=EVENT_SCHEMA), "batch-0")
        resolve(runtime, rules=RULES, probabilistic=False, method=method)
        rows = pq.read_table(posixpath.join(runtime.log.dataset_path("identity_state"), "observations.parquet"))
        observed[method] = sorted((r["message_id"], r["kind"], r["value"]) for r in rows.to_pylist())
    assert observed["arrays"] == observed["objects"]
    assert ("m0000", "email", "a@x.com") in observed["arrays"] and ("m0000", "coupon_code", "SAVE1") in observed[
        "arrays"
    ]
    assert len(observed["arrays"]) == len(set(observed["arrays"]))


def test_the_records_of_the_extraction_scan_are_record_tables(tmp_path: Path) -> None:
    """A first full build takes the probabilistic tier's records from its own scan of the log: the same
    records as `record_table`'s scan, omniweave's own events with traits included."""
    from omniweave.identity.service import bulk
    from omniweave.identity.service.resolve import ResolveSummary, record_table

    base = {
        **dict.fromkeys(
            ("user", "anon", "phone", "number", "device", "coupon", "external", "card", "email", "context_email")
        ),
        "minute": 0,
    }
    events = [
        base | {"email": "a@x.com", "anon": "anon-1"},
        base | {"minute": 1, "context_email": "b@y.org", "user": "u1", "coupon": "SAVE1"},
        base | {"minute": 2, "email": "a@x.com", "anon": "anon-2", "device": "dev-b"},
        base | {"minute": 3, "email": "c@z.net", "external": "L1"},
        base | {"minute": 4, "anon": "anon-3"},
    ]
    rows = _rows(events, 0).to_pylist()
    for row, where in zip(rows, ("traits", "context", "traits", "traits", "traits"), strict=True):
        document = json.loads(row[where])
        target = document.setdefault("traits", {}) if where == "context" else document
        target.update({"firstName": "Ann", "postcode": "AB1 2CD"} if row is not rows[4] else {})
        row[where] = json.dumps(document)
    rows[2]["event"] = "Segment Entered"  # omniweave's own: no identity evidence, but a record
    rows[3]["properties"] = json.dumps({"coupon_code": "X1"})
    runtime = Runtime(Settings(home=str(tmp_path)))
    runtime.log.append("events", pa.Table.from_pylist(rows, schema=EVENT_SCHEMA), "batch-0")
    spill = bulk.Spill(str(tmp_path))
    try:
        summary = ResolveSummary()
        extracted = bulk.extract(runtime, RULES, summary, spill, None, runtime.log.files("events"), records=True)
        scanned = extracted.record_table()
    finally:
        spill.remove()
    expected = record_table(runtime)
    assert summary.events == 4 and expected.num_rows == 4
    assert sorted(scanned.to_pylist(), key=str) == sorted(expected.to_pylist(), key=str)
