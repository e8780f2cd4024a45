"""The near-real-time path: events posted to the real collector change event-based memberships at once,
agree with the batch evaluation, and are not announced twice."""

from __future__ import annotations

import base64
import shutil
import subprocess
import time
from datetime import timedelta

import httpx
import orjson
import pytest
import yaml

from omniweave.collect.loader import load_all
from omniweave.events.normalize import format_timestamp
from omniweave.runtime import Runtime
from omniweave.segments import language as S
from omniweave.segments.service import counts as SC
from omniweave.segments.service.evaluate import (
    builtin_segments,
    compiler_for,
    evaluate_segments,
    segments_folder,
)
from omniweave.segments.service.live import LIVE_SOURCE, LiveSegments, live_segment_ids
from omniweave.settings import Settings
from tests.conftest import create_write_key, free_port, omniweave_cmd, start_server

NO_OPENS = {
    "id": "no_email_open_30d",
    "name": "No e-mail opened in 30 days",
    "where": {"all": [{"not_performed": "Email Opened", "within_days": 30}, {"trait": "orders", "gte": 1}]},
}


def _basic(key: str) -> str:
    return "Basic " + base64.b64encode(f"{key}:".encode()).decode()


@pytest.fixture
def home(tmp_path, demo_home):
    target = tmp_path / "home"
    shutil.copytree(demo_home, target)
    folder = segments_folder(str(target))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "no_email_open_30d.yaml").write_text(yaml.safe_dump(NO_OPENS))
    return target


def _pick(rt: Runtime, segments):
    """P1: one coupon in the 90 days, not a coupon hunter; P2: in no_email_open_30d. Both with a user id."""
    state = SC.read_state(rt.log)
    hunters, no_opens = segments["coupon_hunters"].where, segments["no_email_open_30d"].where.children[0]
    compiler = compiler_for(rt, segments, now=state.now)
    compiler.prepare(segments, state)
    counts = compiler.person_counts([hunters, no_opens])
    ids = rt.warehouse().table("identities")
    users = {r["person_id"]: r["value"] for r in ids.filter(ids.kind == "user_id").to_pyarrow().to_pylist()}
    members = rt.warehouse().table("segment_members").to_pyarrow().to_pylist()
    in_no_opens = sorted(m["person_id"] for m in members if m["segment_id"] == "no_email_open_30d")
    p1 = next(p for p in sorted(users) if counts.get(p, {}).get(hunters) == 1)
    p2 = next(p for p in in_no_opens if p in users and p != p1)
    return state.now, (p1, users[p1]), (p2, users[p2])


def test_events_through_the_collector_change_memberships_at_once(home):
    segments = {**builtin_segments(), "no_email_open_30d": S.parse_segment(NO_OPENS)}
    assert {"coupon_hunters", "no_email_open_30d", "event_attendees"} <= set(live_segment_ids(segments))
    assert "cart_abandoners" not in live_segment_ids(segments)  # a sequence: settled by the batch evaluation
    rt = Runtime(Settings(home=str(home)))
    try:
        evaluate_segments(rt, segments)  # the extra segment gets its members and counts
        base, (p1, user1), (p2, user2) = _pick(rt, segments)
        live = LiveSegments(rt, segments)
        while live.step() or live.read_last:  # what the inbox already holds (the demo's own events)
            pass
        assert live.stats.changes == 0
        write_key = create_write_key(home, "web")
        port = free_port()
        server, _ = start_server(home, port, {"OMNIWEAVE_LOADER_INTERVAL_SECONDS": "3600"})
        try:

            def at(hours):
                return format_timestamp(base + timedelta(hours=hours))

            batch = [
                {
                    "type": "track",
                    "event": "Coupon Applied",
                    "userId": user1,
                    "messageId": "live-1",
                    "timestamp": at(1),
                    "properties": {"coupon_id": "SPRING"},
                },
                {
                    "type": "track",
                    "event": "Email Opened",
                    "userId": user2,
                    "messageId": "live-2",
                    "timestamp": at(2),
                    "properties": {"channel": "email"},
                },
                {
                    "type": "track",
                    "event": "Coupon Applied",
                    "anonymousId": "never-seen-before",
                    "messageId": "live-3",
                    "timestamp": at(2),
                },
                {
                    "type": "track",
                    "event": "Coupon Applied",
                    "userId": user2,
                    "messageId": "live-4",
                    "timestamp": format_timestamp(base - timedelta(days=1)),
                },  # late: left to the batch
            ]
            answer = httpx.post(
                f"http://127.0.0.1:{port}/v1/batch",
                json={"batch": batch},
                headers={"Authorization": _basic(write_key)},
                timeout=10,
            )
            assert answer.status_code == 200, answer.text
        finally:
            server.terminate()
            server.wait(timeout=120)
        changes = []
        while True:
            changes += live.step()
            if not live.read_last:
                break
        assert {(c.segment_id, c.person_id, c.entered, c.cause) for c in changes} == {
            ("coupon_hunters", p1, True, "live-1"),
            ("no_email_open_30d", p2, False, "live-2"),
        }
        assert live.stats.unknown_person == 1 and live.stats.before_base >= 1
        # the changes are events in the inbox, dated like their cause; replaying writes nothing new
        rows = [orjson.loads(r.payload) for r in rt.store.read(after=0) if r.payload.find(LIVE_SOURCE.encode()) >= 0]
        assert sorted((e["event"], e["properties"]["segment_id"]) for e in rows) == [
            (S.SEGMENT_ENTERED, "coupon_hunters"),
            (S.SEGMENT_EXITED, "no_email_open_30d"),
        ]
        again = LiveSegments(rt, segments)
        while again.step() or again.read_last:
            pass
        assert len([r for r in rt.store.read(after=0) if r.payload.find(LIVE_SOURCE.encode()) >= 0]) == 2

        # the batch evaluation agrees, and does not announce them again
        load_all(rt.store, rt.log)
        summary = evaluate_segments(rt, segments, now=base + timedelta(hours=3))
        members = rt.warehouse().table("segment_members").to_pyarrow().to_pylist()
        assert {"person_id": p1, "segment_id": "coupon_hunters"} in [
            {"person_id": m["person_id"], "segment_id": m["segment_id"]} for m in members
        ]
        assert p2 not in {m["person_id"] for m in members if m["segment_id"] == "no_email_open_30d"}
        events = rt.warehouse().table("events")
        told = (
            events.filter(events.event.isin((S.SEGMENT_ENTERED, S.SEGMENT_EXITED)) & (events.timestamp > base))
            .select("properties")
            .to_pyarrow()
            .to_pylist()
        )
        about = [
            (orjson.loads(e["properties"])["segment_id"], orjson.loads(e["properties"])["person_id"]) for e in told
        ]
        assert about.count(("coupon_hunters", p1)) == 1 and about.count(("no_email_open_30d", p2)) == 1
        assert "incremental" in summary.counting
    finally:
        rt.close()


def test_follow_from_the_command_line_while_the_collector_runs(home):
    rt = Runtime(Settings(home=str(home)))
    try:
        segments = {**builtin_segments(), "no_email_open_30d": S.parse_segment(NO_OPENS)}
        evaluate_segments(rt, segments)
        base, (p1, user1), _ = _pick(rt, segments)
    finally:
        rt.close()
    write_key = create_write_key(home, "web")
    port = free_port()
    server, env = start_server(home, port)
    follower = subprocess.Popen(
        omniweave_cmd("segments", "follow", "--interval", "0.2"),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        event = {
            "type": "track",
            "event": "Coupon Applied",
            "userId": user1,
            "messageId": "cli-live-1",
            "timestamp": format_timestamp(base + timedelta(minutes=5)),
        }
        answer = httpx.post(
            f"http://127.0.0.1:{port}/v1/track", json=event, headers={"Authorization": _basic(write_key)}, timeout=10
        )
        assert answer.status_code == 200
        rt = Runtime(Settings(home=str(home)))
        try:
            deadline = time.monotonic() + 120  # a failing test's limit, not a claim about speed
            found = []
            while not found and time.monotonic() < deadline and follower.poll() is None:
                found = [
                    orjson.loads(r.payload)
                    for r in rt.store.read(after=0)
                    if b'"cli-live-1"' in r.payload and LIVE_SOURCE.encode() in r.payload
                ]
                time.sleep(0.2)
        finally:
            rt.close()
        assert follower.poll() is None, follower.stderr.read() if follower.stderr else ""
        assert len(found) == 1
        assert found[0]["event"] == S.SEGMENT_ENTERED and found[0]["properties"]["person_id"] == p1
    finally:
        follower.terminate()
        out, err = follower.communicate(timeout=30)
        server.terminate()
        server.wait(timeout=120)
    assert "coupon_hunters" in out and p1 in out, (out, err)


def test_following_before_any_evaluation_is_a_clear_error(tmp_path):
    home = tmp_path / "empty"
    out = subprocess.run(
        omniweave_cmd("segments", "follow", "--once"),
        check=False,
        env={"OMNIWEAVE_HOME": str(home), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2 and "segments evaluate" in out.stderr
