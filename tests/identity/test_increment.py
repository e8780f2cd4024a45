"""The daily increment of `resolve` (identity.service.increment): a full build of day 1 and the increment of
day 2 give the graph a full build of both days gives, and the object path's; merges of two existing persons
are logged, splits hold, and a late event or a change of the demoted identifiers falls back to the full build."""

from __future__ import annotations

import posixpath
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from omniweave.identity.graph import Rules
from omniweave.identity.service.operations import explain_link, split_identifier
from omniweave.identity.service.resolve import ResolveSummary, load_stitcher, resolve
from omniweave.runtime import Runtime
from omniweave.settings import Settings
from tests.identity.test_bulk import RULES, _identities, _rows, event


def _day(events: list[dict[str, Any]], day: int) -> list[dict[str, Any]]:
    return [{**e, "minute": e["minute"] + day * 24 * 60} for e in events]


def _apply(
    home: Path, days: list[list[dict[str, Any]]], method: str, rules: Rules = RULES, probabilistic: bool = False
) -> tuple[Runtime, list[ResolveSummary]]:
    """Each day appended to the log and resolved in turn (message ids unique across days)."""
    runtime = Runtime(Settings(home=str(home)))
    offset, summaries = 0, []
    for n, events in enumerate(days):
        runtime.log.append("events", _rows(events, offset), f"day-{n}")
        offset += len(events)
        summaries.append(resolve(runtime, rules=rules, probabilistic=probabilistic, method=method))
    return runtime, summaries


def _persons(runtime: Runtime) -> dict[str, set[tuple[str, str]]]:
    return {p: {(k, v) for k, vs in ids.items() for v in vs} for p, ids in load_stitcher(runtime).persons().items()}


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(first=st.lists(event, min_size=1, max_size=25), second=st.lists(event, min_size=1, max_size=15))
def test_a_full_build_and_an_increment_give_the_graph_of_a_full_build(
    tmp_path_factory: pytest.TempPathFactory, first: list[dict[str, Any]], second: list[dict[str, Any]]
) -> None:
    base = tmp_path_factory.mktemp("increment")
    days = [_day(first, 0), _day(second, 1)]
    daily, by_day = _apply(base / "daily", days, "arrays")
    once, _ = _apply(base / "once", [days[0] + days[1]], "arrays")
    objects, _ = _apply(base / "objects", days, "objects")
    assert _identities(daily) == _identities(once) == _identities(objects)
    assert _persons(daily) == _persons(objects)
    assert by_day[1].persons == len(_persons(objects))
    # a third run with nothing new changes nothing
    again = resolve(daily, rules=RULES, probabilistic=False, method="arrays")
    assert again.events == 0 and _identities(daily) == _identities(objects)


def _event(minute: int, **ids: str) -> dict[str, Any]:
    blank = dict.fromkeys(("user", "anon", "email", "context_email", "phone", "card", "number", "device"))
    return {**blank, "coupon": None, "external": None, "minute": minute, **ids}


def test_the_increment_merges_two_existing_persons_and_logs_it(tmp_path: Path) -> None:
    day1 = [
        _event(1, anon="anon-1", email="a@x.com"),
        _event(2, anon="anon-2", phone="07700 900001"),
        _event(3, anon="anon-3", card="L3"),
    ]
    day2 = _day([_event(5, anon="anon-9", email="a@x.com", phone="+447700900001"), _event(6, anon="anon-8")], 1)
    daily, summaries = _apply(tmp_path / "daily", [day1, day2], "arrays")
    objects, _ = _apply(tmp_path / "objects", [day1, day2], "objects")
    assert [s.incremental for s in summaries] == [False, True]
    assert summaries[1].events == 2 and summaries[1].merges == 1
    assert _identities(daily) == _identities(objects)
    persons = _persons(daily)
    assert persons == _persons(objects) and len(persons) == 3  # A+B merged, C, the new anon-8
    merges = [link for link in load_stitcher(daily).merge_log() if link.merged]
    assert len(merges) == 1 and merges[0].message_id == "m0003" and "merged" in merges[0].rule
    # the person founded first survives; `explain` finds the chain from anon-1 to anon-2 through the merge
    survivor = merges[0].survivor
    assert {("anonymous_id", "anon-1"), ("anonymous_id", "anon-2")} <= persons[survivor]
    _, chain = explain_link(daily, "anonymous_id:anon-1", "anonymous_id:anon-2")
    assert any(link.message_id == "m0003" for link in chain)
    # the increment kept the full build's observations and added its own file: the object path reads both
    state = Path(daily.log.dataset_path("identity_state"))
    assert len(list(state.glob("observations-*.parquet"))) == 1
    assert len(load_stitcher(daily).observations) == 5


def test_a_split_holds_in_the_increment(tmp_path: Path) -> None:
    day1 = [_event(1, user="u1", email="a@x.com", anon="anon-1"), _event(2, user="u1", phone="07700 900001")]
    day2 = _day([_event(1, anon="anon-5")], 1)
    day3 = _day([_event(1, email="a@x.com", phone="07700 900001", anon="anon-6")], 2)
    homes = {}
    for method in ("arrays", "objects"):
        runtime, _ = _apply(tmp_path / method, [day1], method)
        person = load_stitcher(runtime).person_of(("email", "a@x.com"))
        split_identifier(runtime, person, "phone:+447700900001")
        runtime.log.append("events", _rows(day2, 10), "day-2")
        resolve(runtime, rules=RULES, probabilistic=False, method=method)  # a full build after the split
        runtime.log.append("events", _rows(day3, 20), "day-3")
        homes[method] = (runtime, resolve(runtime, rules=RULES, probabilistic=False, method=method))
    (daily, summary), (objects, _) = homes["arrays"], homes["objects"]
    assert summary.incremental and summary.refused == 1
    assert _identities(daily) == _identities(objects)
    graph = load_stitcher(daily)
    assert graph.person_of(("email", "a@x.com")) != graph.person_of(("phone", "+447700900001"))
    refusals = pq.read_table(posixpath.join(daily.log.dataset_path("identity_state"), "refusals.parquet"))
    assert any(rule.startswith("split:") for rule in refusals.column("rule").to_pylist())


def test_a_late_event_or_a_new_demotion_takes_the_full_build(tmp_path: Path) -> None:
    day1 = [_event(1, user="u1", device="dev-a"), _event(2, user="u2", device="dev-a"), _event(3, user="u3")]
    late = [_event(0, anon="anon-late", user="u3")]  # before the graph's last observation
    demoting = _day([_event(1, user="u3", device="dev-a")], 1)  # dev-a now seen with three user ids
    for name, days in (("late", [day1, late]), ("demoting", [day1, demoting])):
        daily, summaries = _apply(tmp_path / name / "arrays", days, "arrays")
        objects, _ = _apply(tmp_path / name / "objects", days, "objects")
        assert not summaries[1].incremental and summaries[1].events == 1
        assert _identities(daily) == _identities(objects)
    assert summaries[1].demoted == [("device_id", "dev-a")]


def cut_demo_log(source: Path) -> tuple[pa.Table, pa.Table]:
    """A small demo world's log (80 customers, 6 days) cut at the day boundary three quarters of the way
    through: (the events before, the events from it on)."""
    import pyarrow.compute as pc

    from omniweave.demo.runner import run_demo

    run_demo(Settings(home=str(source)), customers=80, days=6, seed=7, console=None, bulk=True)
    events = pq.read_table(str(source / "warehouse" / "events"))
    stamps = events.column("timestamp").to_pylist()
    cut = min(stamps) + (max(stamps) - min(stamps)) * 3 / 4
    cut = cut.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    before = events.filter(pc.less(events.column("timestamp"), cut)).drop_columns(["date"])
    after = events.filter(pc.greater_equal(events.column("timestamp"), cut)).drop_columns(["date"])
    assert before.num_rows and after.num_rows
    return before, after


@pytest.mark.slow
def test_the_demo_world_day_by_day_gives_the_persons_of_a_full_build(tmp_path: Path) -> None:
    """The demo's log split at a day boundary: a full build of the days before it, then the rest as an
    increment (with the probabilistic tier), against one full build of everything."""
    import pyarrow.compute as pc

    before, after = cut_demo_log(tmp_path / "demo")
    results = {}
    for name, parts in (("daily", [before, after]), ("once", [before, after])):
        runtime = Runtime(Settings(home=str(tmp_path / name)))
        summaries = []
        for n, part in enumerate(parts):
            runtime.log.append("events", part, f"part-{n}")
            if name == "daily":
                summaries.append(resolve(runtime, method="arrays"))
        if name == "once":
            summaries.append(resolve(runtime, method="arrays"))
        results[name] = (runtime, summaries)
    (daily, by_day), (once, _) = results["daily"], results["once"]
    from omniweave.events.spec import INTERNAL_EVENTS

    evidence = pc.sum(pc.invert(pc.is_in(pc.fill_null(after.column("event"), ""), pa.array(INTERNAL_EVENTS)))).as_py()
    assert by_day[1].incremental and by_day[1].events == evidence  # segment changes are no identity evidence
    assert _identities(daily) == _identities(once)
