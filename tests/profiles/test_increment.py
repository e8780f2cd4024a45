"""The daily increment of the profile build (profiles.service.increment): after a new day, profiling again only
the persons it touched gives the profiles a full build gives, column for column; and every case it cannot
continue (an explicit `now`, a moving custom-trait window, a rewritten file, an identifier gone) takes the
full build."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from omniweave.events.normalize import normalize_event
from omniweave.identity.service.resolve import resolve
from omniweave.profiles.service.build import build_profiles
from omniweave.runtime import Runtime
from omniweave.settings import Settings
from omniweave.storage.eventlog import events_to_table
from tests.identity.test_increment import cut_demo_log


def _profiles(runtime: Runtime) -> pa.Table:
    return runtime.warehouse().table("profiles").to_pyarrow()


def _assert_same(incremental: pa.Table, full: pa.Table) -> None:
    assert incremental.schema == full.schema
    assert incremental.num_rows == full.num_rows
    for name in full.column_names:
        a, b = incremental.column(name).to_pylist(), full.column(name).to_pylist()
        if a != b:
            wrong = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y][:3]
            person = full.column("person_id").to_pylist()
            raise AssertionError(f"column {name}: " + "; ".join(f"{person[i]}: {a[i]!r} != {b[i]!r}" for i in wrong))


@pytest.fixture(scope="module")
def demo_log(tmp_path_factory: pytest.TempPathFactory) -> tuple[pa.Table, pa.Table]:
    """The demo's log cut at a day boundary three quarters of the way through."""
    return cut_demo_log(tmp_path_factory.mktemp("demo"))


def test_the_demo_world_day_by_day_gives_the_profiles_of_a_full_build(
    tmp_path: Path, demo_log: tuple[pa.Table, pa.Table]
) -> None:
    """Days before the cut built in full, segments evaluated (their change events join the log), the rest of the
    log resolved and profiled as an increment: the same table as a full build of the same log."""
    from omniweave.segments.service.evaluate import evaluate_segments

    before, after = demo_log
    runtime = Runtime(Settings(home=str(tmp_path)))
    runtime.log.append("events", before, "part-0")
    resolve(runtime)
    first = build_profiles(runtime)
    assert not first.incremental
    evaluate_segments(runtime)
    runtime.log.append("events", after, "part-1")
    resolve(runtime)
    second = build_profiles(runtime)
    assert second.incremental
    incremental = _profiles(runtime)
    # the increment profiled some persons again and kept others: both kinds are in the comparison
    changed = pc.sum(pc.not_equal(incremental.column("event_count"), 0)).as_py()
    assert changed
    full = build_profiles(runtime, full=True)
    assert not full.incremental and full.persons == second.persons and full.events == second.events
    _assert_same(incremental, _profiles(runtime))
    # a build with nothing new is an increment that changes nothing
    again = build_profiles(runtime)
    assert again.incremental
    _assert_same(_profiles(runtime), incremental)


def _event(n: int, day: int, **fields: Any) -> dict[str, Any]:
    base = datetime(2026, 3, 2, 10, tzinfo=UTC) + timedelta(days=day, minutes=n)
    return {
        "type": "track",
        "event": "Order Completed",
        "messageId": f"m-{day}-{n}",
        "timestamp": base.isoformat().replace("+00:00", "Z"),
        "properties": {"revenue": 10.0 + n, "products": [{"product_id": f"p{n % 3}", "quantity": 1}]},
        "context": {"channel": "web"},
        **fields,
    }


def _append(runtime: Runtime, events: list[dict[str, Any]], name: str) -> None:
    received = datetime(2026, 3, 9, tzinfo=UTC)
    canonical = [normalize_event(e, received_at=received) for e in events]
    runtime.log.append("events", events_to_table(canonical, source="test"), name)


def _shop(tmp_path: Path, name: str) -> Runtime:
    """25 buyers on day 0 (enough for the CLV fit to run), two of whom are merged on day 2 by an event that
    names them both, and a new buyer."""
    runtime = Runtime(Settings(home=str(tmp_path / name)))
    day0 = [_event(i, d, anonymousId=f"a{i}", userId=f"u{i}" if i % 2 else None) for i in range(25) for d in (0, 1)]
    _append(runtime, day0, "day-0")
    return runtime


def test_a_merge_of_two_persons_drops_the_absorbed_row(tmp_path: Path) -> None:
    runtime = _shop(tmp_path, "merge")
    resolve(runtime)
    build_profiles(runtime)
    persons = build_profiles(runtime, full=True).persons
    # a2 (anonymous only) logs in as u3: the persons of a2 and u3 become one
    _append(runtime, [_event(1, 3, anonymousId="a2", userId="u3"), _event(2, 3, anonymousId="new-1")], "day-3")
    resolve(runtime)
    summary = build_profiles(runtime)
    assert summary.incremental and summary.persons == persons  # one person fewer, one new
    incremental = _profiles(runtime)
    build_profiles(runtime, full=True)
    _assert_same(incremental, _profiles(runtime))


def test_what_the_increment_cannot_continue_takes_the_full_build(tmp_path: Path) -> None:
    runtime = _shop(tmp_path, "cases")
    resolve(runtime)
    assert not build_profiles(runtime).incremental  # no state yet

    def day(n: int) -> None:
        _append(runtime, [_event(1, n, anonymousId=f"a{n}")], f"day-{n}")
        resolve(runtime)

    day(3)
    # an explicit `now`: built in full, and no state saved from it
    assert not build_profiles(runtime, now=datetime(2026, 3, 6, tzinfo=UTC)).incremental
    assert not build_profiles(runtime).incremental
    assert build_profiles(runtime).incremental
    # a custom trait with a window moves with `now` for everyone; other traits than the state's
    window = [{"name": "orders_7d", "agg": "count", "event": "Order Completed", "window_days": 7}]
    day(4)
    assert not build_profiles(runtime, traits=window).incremental
    assert not build_profiles(runtime).incremental
    # a file read before rewritten in place (a compaction or a deletion would)
    day(5)
    os.utime(runtime.log.files("events")[0], (1, 1))
    assert not build_profiles(runtime).incremental
    # asked for
    assert not build_profiles(runtime, full=True).incremental
    assert build_profiles(runtime).incremental
