"""What the daily increment keeps in the identity state so that it need not read the whole log: the share
limits' co-occurrences (the demotion check) and the raw identity records (the probabilistic tier). Both must
be what a full build over every event gives."""

from __future__ import annotations

import posixpath
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from omniweave.identity.service.increment import COOC, RECORDS
from omniweave.identity.service.resolve import RECORD_COLUMNS, merge_records, record_table, resolve
from omniweave.runtime import Runtime
from omniweave.settings import Settings
from tests.conftest import shared_demo_world
from tests.identity.test_bulk import RULES, _identities, _rows, event
from tests.identity.test_increment import _apply, _day, _event


def _state(runtime: Runtime, name: str) -> str:
    return posixpath.join(runtime.log.dataset_path("identity_state"), name)


def _cooc(runtime: Runtime) -> set[tuple[Any, ...]]:
    return {tuple(r.values()) for r in pq.read_table(_state(runtime, COOC)).to_pylist()}


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(first=st.lists(event, min_size=1, max_size=25), second=st.lists(event, min_size=1, max_size=15))
def test_the_cooccurrences_an_increment_saves_are_a_full_builds(
    tmp_path_factory: pytest.TempPathFactory, first: list[dict[str, Any]], second: list[dict[str, Any]]
) -> None:
    base = tmp_path_factory.mktemp("cooc")
    days = [_day(first, 0), _day(second, 1)]
    daily, _ = _apply(base / "daily", days, "arrays")
    once, _ = _apply(base / "once", [days[0] + days[1]], "arrays")
    assert _cooc(daily) == _cooc(once)


def test_a_demotion_counts_the_cooccurrences_an_earlier_increment_saved(tmp_path: Path) -> None:
    """dev-a with u1 (day 1), with u2 (day 2: two user ids, within the limit), with u3 (day 3: three, over
    it). Day 3 sees the demotion only if day 2's increment saved its co-occurrence."""
    days = [
        [_event(1, user="u1", device="dev-a")],
        _day([_event(1, user="u2", device="dev-a")], 1),
        _day([_event(1, user="u3", device="dev-a")], 2),
    ]
    daily, summaries = _apply(tmp_path / "arrays", days, "arrays")
    objects, _ = _apply(tmp_path / "objects", days, "objects")
    assert [s.incremental for s in summaries] == [False, True, False]
    assert summaries[2].demoted == [("device_id", "dev-a")]
    assert _identities(daily) == _identities(objects)


def test_records_are_dropped_when_a_run_does_not_refresh_them(tmp_path: Path) -> None:
    day1 = [_event(1, user="u1", email="a@x.com")]
    runtime, _ = _apply(tmp_path / "home", [day1], "arrays", probabilistic=True)
    assert Path(_state(runtime, RECORDS)).exists()
    runtime.log.append("events", _rows(_day([_event(2, user="u2")], 1), 10), "day-2")
    summary = resolve(runtime, rules=RULES, probabilistic=False, method="arrays")
    assert summary.incremental and summary.events == 1
    assert not Path(_state(runtime, RECORDS)).exists()  # they would miss the new day's records
    # the object path's state has neither: the next array run starts with a full build
    resolve(runtime, rules=RULES, probabilistic=False, method="objects")
    assert not Path(_state(runtime, COOC)).exists()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_demo_world(tmp_path_factory, "bulk-demo", customers=150, days=10, seed=5, bulk=True)


def test_records_of_two_parts_of_the_log_merge_into_the_records_of_all(demo: Path, tmp_path: Path) -> None:
    runtime = Runtime(Settings(home=str(demo)))
    files = runtime.log.files("events")
    assert len(files) >= 2
    half = len(files) // 2
    saved = tmp_path / "records.parquet"
    pq.write_table(record_table(runtime, files[:half]), saved)
    merged = merge_records(str(saved), record_table(runtime, files[half:]))
    whole = record_table(runtime)

    def rows(table: Any) -> set[tuple[Any, ...]]:  # the latest event's time; which of two equal ones is free
        return {tuple(r[c] for c in ("ts", *RECORD_COLUMNS)) for r in table.to_pylist()}

    assert whole.num_rows > 10 and merged.num_rows == whole.num_rows
    assert rows(merged) == rows(whole)
    assert record_table(runtime, []).num_rows == 0


def test_a_message_id_in_two_events_is_one_observation_with_both_identifiers(tmp_path: Path) -> None:
    """The array path numbers events as it extracts them; two events with one message id (in two files) must
    still be one observation: the union of their identifiers at the earlier time, as the object path has it."""
    import pyarrow as pa

    first = _rows([_event(5, anon="anon-1", email="a@x.com"), _event(6, anon="anon-2")], 0)
    second = _rows([_event(1, anon="anon-3", phone="07700 900001")], 0)  # m0000 again, earlier, other ids
    second = second.set_column(0, "message_id", pa.array(["m0000"], pa.string()))
    results = {}
    for method in ("arrays", "objects"):
        runtime = Runtime(Settings(home=str(tmp_path / method)))
        runtime.log.append("events", first, "part-1")
        runtime.log.append("events", second, "part-2")
        results[method] = (runtime, resolve(runtime, rules=RULES, probabilistic=False, method=method))
    (arrays, by_arrays), (objects, by_objects) = results["arrays"], results["objects"]
    assert _identities(arrays) == _identities(objects)
    assert by_arrays.observations == by_objects.observations == 2
    persons = {r["person_id"] for r in pq.read_table(_state(arrays, "../identities/identities.parquet")).to_pylist()}
    assert len(persons) == 2  # anon-1, a@x.com and anon-3's phone together; anon-2 alone
