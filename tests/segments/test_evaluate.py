"""Segments: the language's checks, the built-in library against hand-written SQL on the demo world,
DuckDB == Spark, memberships over time and the CLI."""

from __future__ import annotations

import json
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest

from omniweave.errors import InputError
from omniweave.runtime import Runtime
from omniweave.segments import language as S
from omniweave.segments.service.evaluate import (
    builtin_segments,
    compiler_for,
    evaluate_segments,
    load_segments,
    member_ids,
    read_segment_file,
)
from omniweave.settings import Settings
from tests.conftest import omniweave_cmd, on_engine
from tests.segments.reference_sql import BUILTIN_SQL, open_reference, reference_members
from tests.storage.test_spark_cluster import mixed_segment

# --- the language ------------------------------------------------------------------------------------


def test_every_problem_is_reported_at_once():
    doc = {
        "id": "bad id!",
        "colour": "red",
        "where": {
            "all": [
                {"trait": "orders", "gtt": 3},
                {
                    "performed": "Order Completed",
                    "at_least": -1,
                    "within_days": 0,
                    "where": [{"property": "revenue", "gt": [1, 2]}],
                },
                {"bucket": {"salt": "", "from": 50, "to": 10}},
                {"trait": "x", "eq": 1, "in": [1]},
                "not a condition",
            ]
        },
    }
    with pytest.raises(S.SegmentError) as caught:
        S.parse_segment(doc, source="bad.yaml")
    paths = [p for p, _ in caught.value.problems]
    assert "id" in paths and "colour" in paths
    assert "where.all[0].gtt" in paths  # unknown field, and no operator
    assert "where.all[1].at_least" in paths and "where.all[1].within_days" in paths
    assert "where.all[1].where[0].gt" in paths
    assert "where.all[2].bucket.salt" in paths
    assert "where.all[3]" in paths  # two operators
    assert "where.all[4]" in paths
    assert len(caught.value.problems) >= 9
    assert "bad.yaml" in str(caught.value) and "gtt" in str(caught.value)


def test_a_well_formed_definition_parses():
    seg = S.parse_segment(
        {
            "id": "s",
            "name": "S",
            "where": {
                "any": [
                    {"trait": "total_revenue", "between": [10, 20]},
                    {
                        "performed": "Product Viewed",
                        "within_days": 7,
                        "then_not": {"event": "Order Completed", "within_hours": 24},
                    },
                    {"not": {"in_segment": "other"}},
                    {"bucket": {"salt": "h", "from": 0, "to": 10}},
                ]
            },
        }
    )
    assert isinstance(seg.where, S.AnyOf)
    assert seg.where.children[0] == S.Trait("total_revenue", "between", (10, 20))
    behaviour = seg.where.children[1]
    assert isinstance(behaviour, S.Behaviour) and behaviour.then_not == S.ThenNot("Order Completed", 24.0)
    assert S.segment_references(seg.where) == {"other"}


def test_unknown_references_and_cycles_are_errors():
    a = S.parse_segment({"id": "a", "where": {"in_segment": "b"}})
    b = S.parse_segment({"id": "b", "where": {"in_segment": "a"}})
    with pytest.raises(S.SegmentError, match="cycle"):
        S.evaluation_order({"a": a, "b": b})
    with pytest.raises(S.SegmentError, match="unknown segment 'b'"):
        S.evaluation_order({"a": a})
    c = S.parse_segment({"id": "c", "where": {"trait": "orders", "gt": 0}})
    assert S.evaluation_order({"a": S.parse_segment({"id": "a", "where": {"in_segment": "c"}}), "c": c}) == ["c", "a"]


def test_segment_files_yaml_toml_and_broken(tmp_path):
    folder = tmp_path / "segments"
    folder.mkdir()
    (folder / "big.yaml").write_text("name: Big spenders\nwhere:\n  trait: total_revenue\n  gte: 500\n")
    (folder / "store_only_buyers.toml").write_text(
        'name = "Mine"\n[where]\ntrait = "store_orders"\ngte = 3\n'
    )  # replaces the built-in of that id
    segments = load_segments(str(tmp_path), folder=folder)
    assert segments["big"].where == S.Trait("total_revenue", "gte", 500)
    assert segments["store_only_buyers"].name == "Mine"
    assert "cart_abandoners" in segments  # the library is there too
    (folder / "broken.yaml").write_text("name: [unclosed\n")
    (folder / "wrong.yaml").write_text("where:\n  trait: orders\n")
    with pytest.raises(InputError) as caught:
        load_segments(str(tmp_path), folder=folder)
    message = str(caught.value)
    assert "broken.yaml" in message and "wrong.yaml" in message and "expected exactly one operator" in message


def test_the_library_parses_and_covers_the_issue():
    library = builtin_segments()
    assert {
        "store_only_buyers",
        "online_only_buyers",
        "omnichannel_buyers",
        "cart_abandoners",
        "lapsing_high_value",
        "coupon_hunters",
        "event_attendees",
        "new_till_subscribers",
        "qr_scanners_unidentified",
        "bounced_visitors",
    } <= set(library)
    assert all(seg.description for seg in library.values())


def test_bucket_of_is_stable_and_spread():
    assert S.bucket_of("holdout", "p1") == S.bucket_of("holdout", "p1")
    buckets = [S.bucket_of("holdout", f"p{i}") for i in range(5000)]
    assert min(buckets) == 0 and max(buckets) == 99
    assert 400 < sum(b < 10 for b in buckets) < 600  # about a tenth


# --- on the demo world ---------------------------------------------------------------------------------


def _sql_members(home: Path, now, query: str) -> list[str]:
    """Run a hand-written query of tests/segments/reference_sql.py over the warehouse's Parquet files."""
    rt = Runtime(Settings(home=str(home)))
    try:
        url = {name: rt.log.dataset_url(name) for name in ("profiles", "identities", "events")}
    finally:
        rt.close()
    con = open_reference(url, now.isoformat())
    try:
        return reference_members(con, query, now.isoformat())
    finally:
        con.close()


def test_builtin_segments_select_what_hand_written_sql_selects(demo_home):
    rt = Runtime(Settings(home=str(demo_home)))
    try:
        library = builtin_segments()
        compiler = compiler_for(rt, library)
        shared = compiler_for(rt, library)
        shared.prepare(library)  # every condition counted once, for all segments (what evaluate_segments does)
        assert set(BUILTIN_SQL) == set(library)
        for sid, query in BUILTIN_SQL.items():
            ours = member_ids(compiler, sid)
            expected = _sql_members(demo_home, compiler.now, query)
            assert ours == expected, (sid, len(ours), len(expected))
            assert member_ids(shared, sid) == ours, sid
            assert ours, f"{sid} is empty on the demo world: the comparison would prove nothing"
    finally:
        rt.close()


def test_same_memberships_on_duckdb_and_spark(demo_home, spark_session):
    extra = mixed_segment()
    # the built-in segments (and this one) are compared on every engine by the Spark cluster test
    # (tests/storage/test_spark_cluster.py, evaluate_segments, all at once); here this one segment both ways,
    # compiled alone and with the counts shared among segments
    segments = {"mixed": extra}
    rt = Runtime(Settings(home=str(demo_home)))
    try:
        duck = compiler_for(rt, segments)
        spark = compiler_for(on_engine(rt, "spark", spark_session), segments, now=duck.now)
        for sid in sorted(segments):
            assert member_ids(duck, sid) == member_ids(spark, sid), sid
        # counted once for all segments, per event key (what evaluate_segments does), on both engines
        for compiler in (duck, spark):
            compiler.prepare(segments)
        for sid in sorted(segments):
            assert member_ids(duck, sid) == member_ids(spark, sid), sid
        mixed = member_ids(duck, "mixed")
        assert mixed and all(S.bucket_of("holdout", p) < 60 for p in mixed)
    finally:
        rt.close()


def test_bucket_on_the_engine_equals_python(demo_home):
    rt = Runtime(Settings(home=str(demo_home)))
    try:
        segs = {
            f"b{i}": S.parse_segment({"id": f"b{i}", "where": {"bucket": {"salt": "s", "from": lo, "to": hi}}})
            for i, (lo, hi) in enumerate([(0, 10), (10, 55), (55, 100)])
        }
        compiler = compiler_for(rt, segs)
        everyone = rt.warehouse().table("profiles").person_id.to_pyarrow().to_pylist()
        parts = [member_ids(compiler, sid) for sid in segs]
        assert sorted(p for part in parts for p in part) == sorted(everyone)  # a partition
        for (lo, hi), part in zip([(0, 10), (10, 55), (55, 100)], parts, strict=True):
            assert part == sorted(p for p in everyone if lo <= S.bucket_of("s", p) < hi)
    finally:
        rt.close()


def test_compile_errors_name_every_bad_trait_at_once(demo_home):
    seg = S.parse_segment(
        {
            "id": "wrong",
            "where": {
                "all": [
                    {"trait": "no_such_trait", "eq": 1},
                    {"trait": "orders", "contains": 3},
                    {"trait": "total_revenue", "before_days_ago": 3},
                    {"trait": "emails", "eq": "a@b.c"},
                    {"trait": "orders", "eq": "many"},
                ]
            },
        }
    )
    rt = Runtime(Settings(home=str(demo_home)))
    try:
        with pytest.raises(S.SegmentError) as caught:
            compiler_for(rt, {"wrong": seg}).members("wrong")
    finally:
        rt.close()
    paths = [p for p, _ in caught.value.problems]
    assert paths == [
        "where.all[0].trait",
        "where.all[1].contains",
        "where.all[2].before_days_ago",
        "where.all[3].eq",
        "where.all[4].eq",
    ]
    assert "unknown trait 'no_such_trait'" in str(caught.value) and "total_revenue" in str(caught.value)


def test_memberships_over_time_become_events(tmp_path, demo_home):
    import shutil

    home = tmp_path / "home"
    shutil.copytree(demo_home, home)
    rt = Runtime(Settings(home=str(home)))
    try:
        big = {"big": S.parse_segment({"id": "big", "where": {"trait": "total_revenue", "gte": 100}})}
        first = evaluate_segments(rt, big)
        assert first.results[0].members == first.results[0].entered > 0
        again = evaluate_segments(rt, big)
        assert (again.results[0].entered, again.results[0].exited, again.events_written) == (0, 0, 0)
        bigger = {"big": S.parse_segment({"id": "big", "where": {"trait": "total_revenue", "gte": 300}})}
        later = first.now + timedelta(hours=1)
        third = evaluate_segments(rt, bigger, now=later)
        r = third.results[0]
        assert r.entered == 0 and r.exited == first.results[0].members - r.members > 0
        members = rt.warehouse().table("segment_members").to_pyarrow().to_pylist()
        assert {m["since"] for m in members} == {first.now}  # stayers keep when they entered
        # the change events are in the log and belong to the persons, like any event
        from omniweave.identity.persons import with_person

        wh = rt.warehouse()
        ev = with_person(wh.table("events"), wh.table("identities"))
        exits = ev.filter(ev.event == S.SEGMENT_EXITED).select("person_id", "properties").to_pyarrow().to_pylist()
        assert len(exits) == r.exited
        assert all(json.loads(e["properties"])["segment_id"] == "big" for e in exits)
        assert all(json.loads(e["properties"])["person_id"] == e["person_id"] for e in exits)
    finally:
        rt.close()


def test_evaluating_before_profiles_is_a_clear_error(runtime):
    with pytest.raises(InputError, match="no profiles yet"):
        evaluate_segments(runtime, builtin_segments())


def test_cli_validate_and_evaluate(tmp_path, demo_home):
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: x\nwhere:\n  all:\n    - trait: orders\n      gtt: 1\n    - performed: 3\n")
    good = tmp_path / "good.toml"
    good.write_text('name = "Good"\n[where]\ntrait = "orders"\ngte = 1\n')
    out = subprocess.run(
        omniweave_cmd("--home", str(demo_home), "segments", "validate", str(good), str(bad)),
        check=False,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2
    assert "good.toml: ok (good)" in out.stdout
    assert "where.all[0].gtt" in out.stderr and "where.all[1].performed" in out.stderr
    out = subprocess.run(
        omniweave_cmd("--home", str(demo_home), "segments", "evaluate", "--format", "json"),
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(out.stdout)
    sizes = {s["segment_id"]: s["members"] for s in result["segments"]}
    assert set(sizes) >= set(BUILTIN_SQL) and sizes["store_only_buyers"] > 0
    out = subprocess.run(
        omniweave_cmd("--home", str(demo_home), "segments", "list", "--format", "json"),
        capture_output=True,
        text=True,
        check=True,
    )
    assert "cart_abandoners" in {s["id"] for s in json.loads(out.stdout)}


def test_read_segment_file_names_the_file(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("where: {trait: orders, gt: 1}\nid: ok_1\n")
    assert read_segment_file(path).id == "ok_1"
    path.write_text("where: [1, 2\n")
    with pytest.raises(InputError, match=r"x\.yaml"):
        read_segment_file(path)


def test_segments_through_the_rest_api(tmp_path, demo_home):
    import shutil

    from fastapi.testclient import TestClient

    from omniweave.shells.api.app import create_app

    home = tmp_path / "home"
    shutil.copytree(demo_home, home)
    settings = Settings(home=str(home))
    rt = Runtime(settings)
    try:
        secret = rt.store.create_secret_key("segments")
    finally:
        rt.close()
    auth = {"Authorization": f"Bearer {secret}"}
    with TestClient(create_app(settings)) as client:
        assert client.get("/v1/segments").status_code == 401
        listed = client.get("/v1/segments", headers=auth).json()
        sizes = {s["id"]: s["members"] for s in listed}
        assert sizes["store_only_buyers"] > 0  # the demo evaluated the library
        one = client.get("/v1/segments/store_only_buyers", headers=auth).json()
        assert one["members"] == sizes["store_only_buyers"]
        assert len(one["person_ids"]) == min(one["members"], 1000)  # the list stops at 1,000 ids
        assert client.get("/v1/segments/nope", headers=auth).status_code == 404
        bad = client.put(
            "/v1/segments/vip",
            headers=auth,
            json={"where": {"all": [{"trait": "total_revenu", "gte": 100}, {"trait": "orders", "between": [1]}]}},
        )
        assert bad.status_code == 400
        assert [e["field"] for e in bad.json()["errors"]] == ["where.all[1].between"]  # the language's own check first
        unknown = client.put("/v1/segments/vip", headers=auth, json={"where": {"trait": "total_revenu", "gte": 100}})
        assert unknown.status_code == 400 and "unknown trait 'total_revenu'" in unknown.json()["message"]
        assert not (home / "segments" / "vip.yaml").exists()  # nothing written while it has problems
        good = client.put(
            "/v1/segments/vip", headers=auth, json={"name": "VIP", "where": {"trait": "total_revenue", "gte": 100}}
        )
        assert good.status_code == 200 and good.json()["id"] == "vip"
    assert read_segment_file(home / "segments" / "vip.yaml").where == S.Trait("total_revenue", "gte", 100)


def test_segment_changes_are_not_touches_of_the_person(tmp_path, demo_home):
    """The demo built the profiles, then evaluated the segments (logging their changes): rebuilding the
    profiles over a log that now holds those events gives the very same profiles."""
    import shutil

    import pyarrow.parquet as pq

    from omniweave.profiles.service.build import build_profiles

    home = tmp_path / "home"
    shutil.copytree(demo_home, home)
    rt = Runtime(Settings(home=str(home)))
    try:
        path = rt.log.files("profiles")[0]
        before = pq.read_table(path)
        ev = rt.warehouse().table("events")
        assert ev.filter(ev.event == S.SEGMENT_ENTERED).count().execute() > 0
        build_profiles(rt)
        after = pq.read_table(rt.log.files("profiles")[0])
    finally:
        rt.close()
    assert after.equals(before)
    assert "omniweave" not in {c for cs in after.column("channels").to_pylist() for c in cs}
