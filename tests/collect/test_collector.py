"""The HTTP collector: endpoints, bodies, auth, limits, error bodies, dedupe, clock skew, UTM.

Request/response behaviour runs against `create_app(settings)` through FastAPI's TestClient (the
real app, its real committer process and a real SQLite store); a few tests run against a live
`omniweave serve` process. Stored events are checked in the Parquet event log after the loader
has moved the inbox there.
"""

from __future__ import annotations

import base64
import gzip
import os
import signal
import time
import uuid
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from fastapi.testclient import TestClient

from omniweave.collect.loader import load_all
from omniweave.runtime import Runtime
from omniweave.settings import Settings
from omniweave.shells.api.app import create_app
from tests.conftest import LiveServer, create_write_key, free_port, start_server


class Collector:
    """A TestClient on the real app, with a source's write key and a way to read the log."""

    def __init__(self, client: TestClient, runtime: Runtime, write_key: str):
        self.client, self.runtime, self.write_key = client, runtime, write_key

    def post(
        self,
        path: str,
        body: Any,
        *,
        key: str | None = "basic",
        headers: dict[str, str] | None = None,
        raw: bool = False,
    ) -> httpx.Response:
        headers = dict(headers or {})
        if key == "basic":
            headers["Authorization"] = basic(self.write_key)
        content = body if raw else orjson.dumps(body)
        headers.setdefault("Content-Type", "application/json")
        return self.client.post(path, content=content, headers=headers)

    def events(self, where: str = "true") -> list[dict[str, Any]]:
        """Every event in the log (after moving the inbox there), ordered by messageId."""
        load_all(self.runtime.store, self.runtime.log)
        table = self.runtime.warehouse().sql(f"select * from events where {where} order by message_id")
        return table.to_pylist()


def basic(key: str) -> str:
    return "Basic " + base64.b64encode(f"{key}:".encode()).decode()


def track(i: int | str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "track",
        "event": "Product Viewed",
        "userId": f"u{i}",
        "messageId": f"m-{i}",
        "properties": {"price": 9.5},
        **extra,
    }


@pytest.fixture
def collector_for(tmp_path) -> Iterator[Any]:
    opened: list[TestClient] = []

    def make(**overrides: Any) -> Collector:
        settings = Settings(home=str(tmp_path / f"home-{len(opened)}"), **overrides)
        runtime = Runtime(settings)
        _, write_key = runtime.store.create_source("web")
        client = TestClient(create_app(settings))
        client.__enter__()
        opened.append(client)
        return Collector(client, runtime, write_key)

    yield make
    for client in opened:
        client.__exit__(None, None, None)


@pytest.fixture
def collector(collector_for: Any) -> Collector:
    return collector_for()


# --- endpoints ------------------------------------------------------------------------------

SINGLE_EVENTS = {
    "track": {"event": "Order Completed", "properties": {"revenue": 12.5, "order_id": "o1"}},
    "identify": {"traits": {"email": "ann@example.com"}},
    "page": {"name": "Home", "properties": {"url": "https://shop.example/"}},
    "screen": {"name": "Basket"},
    "group": {"groupId": "g1", "traits": {"name": "Acme"}},
    "alias": {"previousId": "anon-1"},
}


@pytest.mark.parametrize("kind", list(SINGLE_EVENTS))
def test_each_single_event_endpoint(collector: Collector, kind: str) -> None:
    body = {"userId": "u1", "messageId": f"{kind}-1", **SINGLE_EVENTS[kind]}
    response = collector.post(f"/v1/{kind}", body)
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True}
    [event] = collector.events()
    assert (event["type"], event["message_id"], event["user_id"]) == (kind, f"{kind}-1", "u1")


@pytest.mark.parametrize("path", ["/v1/batch", "/v1/import", "/b", "/v1/b"])
def test_batch_endpoints_apply_batch_level_fields(collector: Collector, path: str) -> None:
    sent_at = "2026-03-01T12:00:00.000Z"
    body = {
        "batch": [
            track(1, timestamp="2026-03-01T11:50:00.000Z"),
            track(2, context={"app": {"name": "own"}}),
            {
                "type": "identify",
                "userId": "u3",
                "messageId": "m-3",
                "sentAt": "2026-03-01T12:00:05.000Z",
                "timestamp": "2026-03-01T12:00:05.000Z",
            },
        ],
        "context": {"library": {"name": "analytics-python"}, "app": {"name": "batch"}},
        "sentAt": sent_at,
        "writeKey": collector.write_key,
    }
    response = collector.post(path, body, key=None, headers={"Content-Type": "text/plain"})
    assert response.status_code == 200, response.text
    events = collector.events()
    assert [e["message_id"] for e in events] == ["m-1", "m-2", "m-3"]
    contexts = [orjson.loads(e["context"]) for e in events]
    assert [c["library"]["name"] for c in contexts] == ["analytics-python"] * 3
    assert [c["app"]["name"] for c in contexts] == ["batch", "own", "batch"]  # an item's own context wins
    assert events[0]["sent_at"] == datetime(2026, 3, 1, 12, 0, tzinfo=UTC)  # from the batch
    assert events[2]["sent_at"] == datetime(2026, 3, 1, 12, 0, 5, tzinfo=UTC)  # its own


@pytest.mark.parametrize(
    "letter,kind", [("t", "track"), ("i", "identify"), ("p", "page"), ("s", "screen"), ("g", "group"), ("a", "alias")]
)
@pytest.mark.parametrize("prefix", ["", "/v1"])
def test_analytics_js_short_paths_with_text_plain_bodies(
    collector: Collector, letter: str, kind: str, prefix: str
) -> None:
    body = {
        "writeKey": collector.write_key,
        "anonymousId": "anon-9",
        "messageId": f"ajs-{letter}",
        "type": kind,
        **SINGLE_EVENTS[kind],
    }
    response = collector.post(
        f"{prefix}/{letter}", body, key=None, headers={"Content-Type": "text/plain;charset=UTF-8"}
    )
    assert response.status_code == 200, response.text
    [event] = collector.events()
    assert (event["type"], event["anonymous_id"]) == (kind, "anon-9")


@pytest.mark.parametrize("encoding,compress", [("gzip", gzip.compress), ("deflate", zlib.compress)])
def test_compressed_bodies(collector: Collector, encoding: str, compress: Any) -> None:
    body = compress(orjson.dumps({"batch": [track(i) for i in range(50)]}))
    response = collector.post("/v1/batch", body, raw=True, headers={"Content-Encoding": encoding})
    assert response.status_code == 200, response.text
    assert len(collector.events()) == 50


def test_noop_endpoint_stores_nothing(collector: Collector) -> None:
    response = collector.post("/v1/noop", {"batch": [track(1)]}, key=None)
    assert response.status_code == 200 and response.json() == {"success": True}
    assert collector.events() == []


def test_health(collector: Collector) -> None:
    collector.post("/v1/track", track(1))
    body = collector.client.get("/health").json()
    assert body["status"] == "ok"
    assert body["inbox_last_seq"] == 1
    assert set(body["loader"]) == {"running", "position", "lag", "last_error", "restarts"}
    assert body["loader"]["lag"] == 1  # no loader runs inside create_app(); `serve` adds one


# --- CORS and the analytics-next settings document -----------------------------------------


def test_cors_preflight_and_headers(collector: Collector) -> None:
    origin = "https://shop.example"
    preflight = collector.client.options(
        "/v1/batch",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,authorization",
        },
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == origin
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert preflight.headers["access-control-allow-headers"] == "content-type,authorization"
    for path, body, key in [
        ("/v1/t", track(1), "basic"),
        ("/v1/t", {"event": "x"}, "basic"),
        ("/v1/t", track(2), None),
    ]:
        response = collector.post(path, body, key=key, headers={"Origin": origin})
        assert response.headers["access-control-allow-origin"] == origin, (response.status_code, response.text)
    no_origin = collector.post("/v1/track", track(3))
    assert no_origin.headers["access-control-allow-origin"] == "*"


def test_settings_document_for_analytics_next(collector: Collector) -> None:
    response = collector.client.get(
        f"/v1/projects/{collector.write_key}/settings", headers={"Origin": "https://x.example"}
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "https://x.example"
    doc = response.json()
    assert doc["integrations"]["Segment.io"] == {
        **doc["integrations"]["Segment.io"],
        "apiKey": collector.write_key,
        "apiHost": "testserver/v1",
        "protocol": "http",
    }
    for key in (
        "plan",
        "edgeFunction",
        "analyticsNextEnabled",
        "middlewareSettings",
        "enabledMiddleware",
        "legacyVideoPluginsEnabled",
        "remotePlugins",
    ):
        assert key in doc
    assert doc["metrics"]["sampleRate"] == 0 and doc["remotePlugins"] == []
    behind_tls = collector.client.get(
        f"/v1/projects/{collector.write_key}/settings",
        headers={"X-Forwarded-Proto": "https", "Host": "collect.shop.example"},
    )
    assert behind_tls.json()["integrations"]["Segment.io"]["apiHost"] == "collect.shop.example/v1"
    assert behind_tls.json()["integrations"]["Segment.io"]["protocol"] == "https"
    assert collector.client.get("/v1/projects/wk_unknown/settings").status_code == 401


# --- auth and rate limits ------------------------------------------------------------------


def test_three_ways_to_send_the_write_key(collector: Collector) -> None:
    key = collector.write_key
    assert collector.post("/v1/track", track(1)).status_code == 200
    assert (
        collector.post("/v1/track", track(2), key=None, headers={"Authorization": f"Bearer {key}"}).status_code == 200
    )
    assert collector.post("/v1/track", {**track(3), "writeKey": key}, key=None).status_code == 200
    assert [e["message_id"] for e in collector.events()] == ["m-1", "m-2", "m-3"]


@pytest.mark.parametrize(
    "headers,body_key",
    [
        ({}, None),
        ({"Authorization": basic("wk_wrong")}, None),
        ({"Authorization": "Bearer wk_wrong"}, None),
        ({}, "wk_wrong"),
        ({"Authorization": "Basic !!!notbase64"}, None),
        ({"Authorization": "Digest abc"}, None),
    ],
)
def test_missing_or_wrong_write_key_is_401(collector: Collector, headers: dict[str, str], body_key: str | None) -> None:
    body = track(1) if body_key is None else {**track(1), "writeKey": body_key}
    response = collector.post("/v1/track", body, key=None, headers=headers)
    assert response.status_code == 401
    payload = response.json()
    assert payload["success"] is False and payload["errors"][0]["field"] == "writeKey"
    assert payload["code"] == "unauthorized" and payload["message"].startswith("field writeKey: ")
    assert collector.events() == []


def test_a_wrong_header_key_wins_over_a_right_body_key(collector: Collector) -> None:
    body = {**track(1), "writeKey": collector.write_key}
    assert collector.post("/v1/track", body, key=None, headers={"Authorization": basic("wk_wrong")}).status_code == 401


def test_rate_limit_per_source_answers_429_with_retry_after(collector_for: Any) -> None:
    limited = collector_for(rate_limit_per_second=0.01, rate_limit_burst=2)  # a token every 100 s
    assert limited.post("/v1/track", track(1)).status_code == 200
    assert limited.post("/v1/track", track(2)).status_code == 200
    refused = limited.post("/v1/track", track(3))
    assert refused.status_code == 429
    assert refused.json()["code"] == "rate_limited"
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.json()["errors"][0]["reason"].startswith("more than 0.01 requests per second")
    _, other_key = limited.runtime.store.create_source("app")
    assert limited.post("/v1/track", track(4), key=None, headers={"Authorization": basic(other_key)}).status_code == 200
    assert [e["message_id"] for e in limited.events()] == ["m-1", "m-2", "m-4"]


# --- malformed input: one table, each with its documented 400 body ---------------------------

BIG = "x" * (40 * 1024)

# name: (path, body, headers, [(index, field, words in reason)], valid items in the same request)
MALFORMED: dict[str, tuple[str, Any, dict[str, str], list[tuple[Any, Any, str]], int]] = {
    "invalid JSON": ("/v1/batch", b'{"batch": [', {}, [(None, None, "not valid JSON")], 0),
    "top level not an object": ("/v1/batch", b"[1, 2]", {}, [(None, None, "expected a JSON object")], 0),
    "batch not an array": ("/v1/batch", {"batch": {"type": "track"}}, {}, [(None, "batch", "expected an array")], 0),
    "single event not an object": ("/v1/track", b'"hello"', {}, [(0, None, "expected a JSON object")], 0),
    "item not an object": (
        "/v1/batch",
        {"batch": [track(1), 5, track(2)]},
        {},
        [(1, None, "expected a JSON object")],
        2,
    ),
    "no userId or anonymousId": (
        "/v1/batch",
        {"batch": [track(1), {"type": "track", "event": "E"}, track(2)]},
        {},
        [(1, "userId", "userId or an anonymousId")],
        2,
    ),
    "unknown type": (
        "/v1/batch",
        {"batch": [{**track(1), "type": "purchase"}, track(2)]},
        {},
        [(0, "type", "unknown type 'purchase'")],
        1,
    ),
    "missing event name": ("/v1/track", {"userId": "u1"}, {}, [(0, "event", "non-empty event name")], 0),
    "bad timestamp": (
        "/v1/batch",
        {"batch": [track(1), {**track(2), "timestamp": "yesterday"}]},
        {},
        [(1, "timestamp", "not an ISO 8601 timestamp")],
        1,
    ),
    "bad sentAt": (
        "/v1/batch",
        {"batch": [{**track(1), "sentAt": {"at": 1}}, track(2)]},
        {},
        [(0, "sentAt", "expected an ISO 8601")],
        1,
    ),
    "wrong id type": (
        "/v1/batch",
        {"batch": [{**track(1), "userId": {"id": 1}}]},
        {},
        [(0, "userId", "expected a string")],
        0,
    ),
    "properties not an object": (
        "/v1/batch",
        {"batch": [{**track(1), "properties": [1]}, track(2)]},
        {},
        [(0, "properties", "expected a JSON object")],
        1,
    ),
    "group without groupId": ("/v1/group", {"userId": "u1"}, {}, [(0, "groupId", "needs a groupId")], 0),
    "alias without previousId": ("/v1/alias", {"userId": "u1"}, {}, [(0, "previousId", "needs a previousId")], 0),
    "wrong property type on Order Completed": (
        "/v1/batch",
        {"batch": [track(1), {**track(2), "event": "Order Completed", "properties": {"revenue": "lots"}}, track(3)]},
        {},
        [(1, "properties.revenue", "expected a number")],
        2,
    ),
    "messageId too long": (
        "/v1/batch",
        {"batch": [{**track(1), "messageId": "m" * 201}, track(2)]},
        {},
        [(0, "messageId", "the limit is 200")],
        1,
    ),
    "oversize event": (
        "/v1/batch",
        {"batch": [track(1), {**track(2), "properties": {"blob": BIG}}, track(3)]},
        {},
        [(1, None, "the limit is 32768 bytes")],
        2,
    ),
    "several bad items": (
        "/v1/batch",
        {"batch": [{"type": "track"}, track(1), {"type": "nope", "userId": "u"}]},
        {},
        [(0, "userId", "userId or an anonymousId"), (2, "type", "unknown type")],
        1,
    ),
    "oversize request": (
        "/v1/batch",
        {"batch": [{**track(i), "properties": {"blob": "y" * 20_000}} for i in range(220)]},
        {},
        [(None, None, "larger than the limit of 4194304 bytes")],
        0,
    ),
    "gzip bomb": (
        "/v1/batch",
        gzip.compress(b'{"batch": [' + b" " * 20_000_000 + b"]}"),
        {"Content-Encoding": "gzip"},
        [(None, None, "larger than the limit")],
        0,
    ),
    "bad gzip": (
        "/v1/batch",
        orjson.dumps({"batch": [track(1)]}),
        {"Content-Encoding": "gzip"},
        [(None, "Content-Encoding", "not valid gzip")],
        0,
    ),
    "truncated gzip": (
        "/v1/batch",
        gzip.compress(orjson.dumps({"batch": [track(1)]}))[:-12],
        {"Content-Encoding": "gzip"},
        [(None, "Content-Encoding", "truncated")],
        0,
    ),
    "unsupported encoding": (
        "/v1/batch",
        orjson.dumps({"batch": [track(1)]}),
        {"Content-Encoding": "br"},
        [(None, "Content-Encoding", "unsupported Content-Encoding")],
        0,
    ),
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_input_gets_a_400_naming_item_and_field(collector: Collector, name: str) -> None:
    path, body, headers, expected, valid = MALFORMED[name]
    raw = isinstance(body, bytes)
    response = collector.post(path, body, raw=raw, headers=headers)
    assert response.status_code == 400, response.text
    payload = response.json()
    assert payload["success"] is False and payload["code"] == "invalid_request"
    assert payload["accepted"] == valid
    assert expected[0][2] in payload["message"]
    assert [(e["index"], e["field"]) for e in payload["errors"]] == [(i, f) for i, f, _ in expected]
    for error, (_, _, words) in zip(payload["errors"], expected, strict=False):
        assert words in error["reason"], error
    # the valid items of the same request were committed, and only they
    assert len(collector.events()) == valid


def test_oversize_chunked_request_without_content_length(collector: Collector) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"batch": ['
        for i in range(2200):
            yield orjson.dumps({**track(i), "properties": {"blob": "z" * 2000}}) + b","
        yield orjson.dumps(track(9999)) + b"]}"

    response = collector.client.post(
        "/v1/batch", content=chunks(), headers={"Authorization": basic(collector.write_key)}
    )
    assert response.status_code == 400
    assert response.json()["errors"] == [
        {
            "index": None,
            "field": None,
            "reason": "the request body is larger than the limit of 4194304 bytes (after decompression)",
        }
    ]
    assert collector.events() == []


def test_nothing_is_lost_around_bad_requests(collector: Collector) -> None:
    """Every malformed request between good ones: each valid event is stored, exactly once."""
    untouched = [track(k) for k in range(1, 4)]  # the valid items the table uses, unchanged
    expected: set[str] = set()
    for n, name in enumerate(MALFORMED):
        path, body, headers, _, _ = MALFORMED[name]
        good = [track(f"{n}-{k}") for k in range(3)]
        assert collector.post("/v1/batch", {"batch": good}).status_code == 200
        expected.update(e["messageId"] for e in good)
        assert collector.post(path, body, raw=isinstance(body, bytes), headers=headers).status_code == 400
        if isinstance(body, dict) and isinstance(body.get("batch"), list) and name != "oversize request":
            expected.update(item["messageId"] for item in body["batch"] if item in untouched)
    stored = [e["message_id"] for e in collector.events()]
    assert len(stored) == len(set(stored))
    assert set(stored) == expected


# --- dedupe, clock skew, enrichment ----------------------------------------------------------


def test_resending_the_same_message_ids_adds_nothing(collector: Collector) -> None:
    batch = {"batch": [track(i) for i in range(40)]}
    for _ in range(3):
        assert collector.post("/v1/batch", batch).status_code == 200
    assert collector.post("/v1/track", track(7)).status_code == 200  # single endpoint, same id
    assert (
        collector.post(
            "/v1/batch", gzip.compress(orjson.dumps(batch)), raw=True, headers={"Content-Encoding": "gzip"}
        ).status_code
        == 200
    )
    events = collector.events()
    assert len(events) == 40 and len({e["message_id"] for e in events}) == 40
    assert collector.runtime.store.inbox_count() == 40


def test_events_without_message_id_get_one(collector: Collector) -> None:
    body = {"batch": [{"type": "track", "event": "E", "userId": "u1"} for _ in range(3)]}
    assert collector.post("/v1/batch", body).status_code == 200
    ids = [e["message_id"] for e in collector.events()]
    assert len(set(ids)) == 3 and all(i.startswith("api-") for i in ids)


def test_clock_skew_is_corrected_from_sent_at(collector: Collector) -> None:
    # the device clock runs 2 hours ahead: it stamped the event 10 minutes before sending
    device_now = datetime.now(UTC) + timedelta(hours=2)
    original = device_now - timedelta(minutes=10)
    body = {**track(1), "originalTimestamp": original.isoformat(), "sentAt": device_now.isoformat()}
    assert collector.post("/v1/track", body).status_code == 200
    # batch-level sentAt applies to an item with its own timestamp
    batch = {"batch": [{**track(2), "timestamp": original.isoformat()}], "sentAt": device_now.isoformat()}
    assert collector.post("/v1/batch", batch).status_code == 200
    for event in collector.events():
        skew = event["sent_at"] - event["original_timestamp"]
        assert skew == timedelta(minutes=10)
        corrected = event["received_at"] - skew
        assert abs(event["timestamp"] - corrected) <= timedelta(milliseconds=1)


def test_utm_parameters_become_context_campaign(collector: Collector) -> None:
    url = "https://shop.example/sale?utm_source=newsletter&utm_medium=email&utm_campaign=spring&utm_term=shoes&utm_content=hero"
    page = {"type": "page", "anonymousId": "a1", "messageId": "p-1", "properties": {"url": url}}
    tracked = {**track(1), "context": {"page": {"url": url.replace("spring", "summer")}}}
    explicit = {**track(2), "context": {"campaign": {"name": "own"}, "page": {"url": url}}}
    assert collector.post("/v1/batch", {"batch": [page, tracked, explicit]}).status_code == 200
    events = {e["message_id"]: e for e in collector.events()}
    assert (events["p-1"]["campaign_source"], events["p-1"]["campaign_medium"], events["p-1"]["campaign_name"]) == (
        "newsletter",
        "email",
        "spring",
    )
    assert orjson.loads(events["p-1"]["context"])["campaign"] == {
        "source": "newsletter",
        "medium": "email",
        "name": "spring",
        "term": "shoes",
        "content": "hero",
    }
    assert events["m-1"]["campaign_name"] == "summer"
    assert events["m-2"]["campaign_name"] == "own"  # an explicit campaign is kept


def test_client_ip_is_added_to_context(collector: Collector) -> None:
    collector.post("/v1/track", track(1), headers={"X-Forwarded-For": "203.0.113.9, 10.0.0.1"})
    collector.post("/v1/track", {**track(2), "context": {"ip": "198.51.100.1"}})
    ips = [orjson.loads(e["context"]).get("ip") for e in collector.events()]
    assert ips == ["203.0.113.9", "198.51.100.1"]


def test_many_concurrent_requests_share_commits(collector: Collector) -> None:
    import concurrent.futures

    def send(n: int) -> int:
        return collector.post("/v1/batch", {"batch": [track(f"{n}-{k}") for k in range(10)]}).status_code

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        assert set(pool.map(send, range(200))) == {200}
    assert len(collector.events()) == 2000


# --- the committer process -------------------------------------------------------------------


def test_a_store_failure_is_a_503_for_that_request_only(collector: Collector) -> None:
    """A request whose rows the store refuses gets a 503 with Retry-After; the requests committed
    in the same group still get their 200 and keep their events."""
    import concurrent.futures
    import sqlite3

    database = sqlite3.connect(collector.runtime.settings.resolved_database_url.removeprefix("sqlite:///"))
    database.execute(
        "CREATE TRIGGER poison BEFORE INSERT ON inbox WHEN NEW.message_id = 'm-poison' "
        "BEGIN SELECT RAISE(ABORT, 'the disk is on fire'); END"
    )
    database.commit()
    database.close()

    def send(n: int) -> httpx.Response:
        return collector.post("/v1/batch", {"batch": [track("poison" if n == 7 else f"{n}-{k}") for k in range(3)]})

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(send, range(24)))
    refused = responses[7]
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    assert "the disk is on fire" in refused.json()["message"]
    assert [r.status_code for i, r in enumerate(responses) if i != 7] == [200] * 23
    stored = {e["message_id"] for e in collector.events()}
    assert stored == {f"m-{n}-{k}" for n in range(24) if n != 7 for k in range(3)}


def test_the_committer_on_either_operational_store(tmp_path, opstore_url: str) -> None:
    """The same requests through the committer process on SQLite and on PostgreSQL: a batch with a
    bad item, a duplicate, a single event; the inbox ends up with exactly the valid events."""
    settings = Settings(home=str(tmp_path / "home"), database_url=opstore_url)
    runtime = Runtime(settings)
    _, write_key = runtime.store.create_source("web")
    try:
        with TestClient(create_app(settings)) as client:
            post = Collector(client, runtime, write_key).post
            mixed = post("/v1/batch", {"batch": [track(1), {"type": "track", "event": "x"}, track(2)]})
            assert mixed.status_code == 400 and mixed.json()["accepted"] == 2
            assert [e["index"] for e in mixed.json()["errors"]] == [1]
            assert post("/v1/batch", {"batch": [track(1), track(3)]}).status_code == 200
            assert post("/v1/track", track(4)).status_code == 200
            assert client.get("/health").json()["collector"]["events"] == 5
        messages = [orjson.loads(row.payload)["messageId"] for row in runtime.store.read(0)]
        assert messages == ["m-1", "m-2", "m-3", "m-4"]
    finally:
        runtime.close()


def test_a_dead_committer_is_replaced(collector: Collector) -> None:
    committer = collector.client.app.state.collector.committer  # type: ignore[attr-defined]
    assert collector.post("/v1/track", track(1)).status_code == 200
    os.kill(committer.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while committer.pid is not None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert collector.post("/v1/track", track(2)).status_code == 200
    assert committer.stats()["restarts"] == 1
    assert {e["message_id"] for e in collector.events()} == {"m-1", "m-2"}


# --- against a live `omniweave serve` --------------------------------------------------------


def wait_for_loader(server: LiveServer, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        health = httpx.get(f"{server.base_url}/health").json()
        if health["loader"]["lag"] == 0 or time.monotonic() > deadline:
            return health
        time.sleep(0.1)


def count_events(server: LiveServer) -> tuple[int, int]:
    rt = server.runtime()
    try:
        total, distinct = (
            rt.warehouse()
            .sql("select count(*) as n, count(distinct message_id) as d from events")
            .to_pylist()[0]
            .values()
        )
    finally:
        rt.close()
    return int(total), int(distinct)


def test_live_server_stores_gzip_batches_and_dedupes(live_server: LiveServer) -> None:
    run = uuid.uuid4().hex[:8]
    batch = {"batch": [track(f"{run}-{i}") for i in range(300)], "sentAt": datetime.now(UTC).isoformat()}
    body = gzip.compress(orjson.dumps(batch))
    with httpx.Client(base_url=live_server.base_url, auth=(live_server.write_key, "")) as client:
        for _ in range(2):
            response = client.post("/v1/batch", content=body, headers={"Content-Encoding": "gzip"})
            assert response.status_code == 200 and response.json() == {"success": True}
    health = wait_for_loader(live_server)
    assert health["loader"] == {**health["loader"], "running": True, "lag": 0, "last_error": None}
    assert health["inbox_last_seq"] == 300
    assert count_events(live_server) == (300, 300)


def test_live_server_auth_cors_and_errors(live_server: LiveServer) -> None:
    base = live_server.base_url
    preflight = httpx.options(
        f"{base}/v1/t", headers={"Origin": "https://a.example", "Access-Control-Request-Method": "POST"}
    )
    assert preflight.status_code == 204 and preflight.headers["access-control-allow-origin"] == "https://a.example"
    assert httpx.post(f"{base}/v1/track", json=track(1), headers={"Authorization": basic("wk_nope")}).status_code == 401
    bad = httpx.post(
        f"{base}/v1/batch", json={"batch": [track(1), {"type": "track"}]}, auth=(live_server.write_key, "")
    )
    assert bad.status_code == 400
    assert bad.json() == {
        "success": False,
        "code": "invalid_request",
        "accepted": 1,
        "message": "item 1, field userId: every event needs a userId or an anonymousId",
        "errors": [{"index": 1, "field": "userId", "reason": "every event needs a userId or an anonymousId"}],
    }
    ok = httpx.post(
        f"{base}/t",
        content=orjson.dumps({**track(2), "writeKey": live_server.write_key}),
        headers={"Content-Type": "text/plain"},
    )
    assert ok.status_code == 200
    settings = httpx.get(f"{base}/v1/projects/{live_server.write_key}/settings").json()
    assert settings["integrations"]["Segment.io"]["apiHost"] == f"{base.removeprefix('http://')}/v1"
    wait_for_loader(live_server)
    assert count_events(live_server) == (2, 2)


def test_serve_drains_the_inbox_on_shutdown(tmp_path) -> None:
    """With a loader that would not run again for an hour, a graceful stop still moves everything."""
    home = tmp_path / "home"
    write_key = create_write_key(home)
    port = free_port()
    process, _ = start_server(home, port, {"OMNIWEAVE_LOADER_INTERVAL_SECONDS": "3600"})
    try:
        server = LiveServer(f"http://127.0.0.1:{port}", write_key, home, process, {})
        time.sleep(0.5)  # let the loader finish its first (empty) pass and go to sleep
        batch = {"batch": [track(i) for i in range(500)]}
        assert httpx.post(f"{server.base_url}/v1/batch", json=batch, auth=(write_key, "")).status_code == 200
        process.terminate()
        # uvicorn shuts down gracefully, then re-raises the SIGTERM it caught
        assert process.wait(timeout=60) in (0, -signal.SIGTERM)
    finally:
        if process.poll() is None:
            process.kill()
    rt = server.runtime()
    try:
        assert rt.store.inbox_count() == 500
        state = rt.store.consumers()["loader"]
        assert state.position == rt.store.max_seq() and state.pending_end is None
    finally:
        rt.close()
    assert count_events(server) == (500, 500)


def test_a_dead_loader_is_restarted(live_server: LiveServer) -> None:
    from tests.collect.test_collector_crash import loader_processes

    [loader_pid] = loader_processes(live_server.home)
    os.kill(loader_pid, signal.SIGKILL)
    batch = {"batch": [track(i) for i in range(50)]}
    assert (
        httpx.post(f"{live_server.base_url}/v1/batch", json=batch, auth=(live_server.write_key, "")).status_code == 200
    )
    deadline = time.monotonic() + 30
    while not (new := loader_processes(live_server.home)) or new == [loader_pid]:
        assert time.monotonic() < deadline, "the loader was not restarted"
        time.sleep(0.1)
    health = wait_for_loader(live_server)
    assert health["loader"]["running"] and health["loader"]["lag"] == 0
    assert health["loader"]["restarts"] == 1
    assert count_events(live_server) == (50, 50)
