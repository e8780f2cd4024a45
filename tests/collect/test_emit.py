"""Internal events (deliveries, clicks, STOPs) enter the inbox like any other, deduplicated, all or nothing."""

from __future__ import annotations

import orjson
import pytest

from omniweave.collect.emit import emit
from omniweave.errors import EventError


def event(message_id: str, **extra: object) -> dict[str, object]:
    return {
        "type": "track",
        "event": "Email Delivered",
        "userId": "u1",
        "messageId": message_id,
        "timestamp": "2026-12-01T10:00:00Z",
        "properties": {"channel": "email"},
        **extra,
    }


def test_events_reach_the_inbox_once(runtime):
    assert emit(runtime.store, "omniweave-channels", [event("m1"), event("m2")]) == 2
    assert emit(runtime.store, "omniweave-channels", [event("m1")]) == 0  # a replay of the same fact
    stored = [orjson.loads(r.payload) for r in runtime.store.read(0)]
    assert [e["messageId"] for e in stored] == ["m1", "m2"]
    assert stored[0]["event"] == "Email Delivered" and stored[0]["receivedAt"]


def test_a_malformed_event_stops_the_batch_before_anything_is_written(runtime):
    with pytest.raises(EventError, match="record 1, field 'userId'"):
        emit(runtime.store, "omniweave-channels", [event("m3"), {"type": "track", "event": "X", "messageId": "m4"}])
    assert runtime.store.read(0) == []


def test_emitting_together_validates_at_once_and_writes_once_at_the_end(runtime):
    from omniweave.collect.emit import emitting_together

    with emitting_together():
        emit(runtime.store, "omniweave-channels", [event("a1")])
        emit(runtime.store, "omniweave-channels", [event("a2"), event("a1")])
        with pytest.raises(EventError):
            emit(runtime.store, "omniweave-channels", [{"type": "track", "messageId": "bad"}])
        assert runtime.store.read(0) == []  # nothing written inside the block
    assert [orjson.loads(r.payload)["messageId"] for r in runtime.store.read(0)] == ["a1", "a2"]
