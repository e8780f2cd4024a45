"""A collector no single request can knock over (issue 24 §7).

Far-off times used to crash the committer process (an OverflowError out of the clock-skew
correction), and every request in flight with it got a 503. These tests send such events, and
then hypothesis-mutated Segment payloads to every collector route, to a live `omniweave serve`;
no answer may be a 5xx and the committer's restart count (GET /health) must stay 0.
"""

from __future__ import annotations

import base64
import gzip
import string
import threading
import time
import uuid
import zlib
from typing import Any

import httpx
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import LiveServer

FAR_TIMES = [
    {"sentAt": "9999-12-31T23:59:59Z", "originalTimestamp": "2024-05-01T12:00:00Z"},
    {"sentAt": "9999-12-31T23:59:59Z", "timestamp": "0001-01-01T00:00:00Z"},
    {"sentAt": "0001-01-01T00:00:00Z", "originalTimestamp": "9999-12-31T23:59:59Z"},
    {"timestamp": "0001-01-01T00:00:00+01:00"},
    {"timestamp": "9999-12-31T23:59:59-05:00"},
    {"sentAt": "9999-12-31T23:59:59.999999Z", "originalTimestamp": 1},
]


def basic(key: str) -> str:
    return "Basic " + base64.b64encode(f"{key}:".encode()).decode()


def restarts(server: LiveServer) -> int:
    health = httpx.get(f"{server.base_url}/health", timeout=10).json()
    return int(health["collector"]["restarts"])


def committer_pid(server: LiveServer) -> int | None:
    health = httpx.get(f"{server.base_url}/health", timeout=10).json()
    pid = int(health["collector"]["pid"])
    return pid or None


def test_far_times_are_a_400_for_that_item_and_crash_nothing(live_server: LiveServer) -> None:
    auth = {"Authorization": basic(live_server.write_key)}
    pid = committer_pid(live_server)
    assert pid is not None
    answers: list[int] = []

    def steady() -> None:  # requests in flight while the far times arrive
        with httpx.Client(base_url=live_server.base_url, headers=auth, timeout=20) as client:
            for i in range(40):
                event = {"userId": f"steady-{i}", "event": "Steady", "messageId": f"steady-{i}"}
                answers.append(client.post("/v1/track", json=event).status_code)

    background = threading.Thread(target=steady)
    background.start()
    with httpx.Client(base_url=live_server.base_url, headers=auth, timeout=20) as client:
        for n, times in enumerate(FAR_TIMES):
            good = {"type": "track", "userId": "u-1", "event": "Good", "messageId": f"good-{n}"}
            bad = {"type": "track", "userId": "u-1", "event": "Far", "messageId": f"far-{n}", **times}
            response = client.post("/v1/batch", json={"batch": [good, bad]})
            assert response.status_code == 400, response.text
            body = response.json()
            assert body["accepted"] == 1
            assert [e["index"] for e in body["errors"]] == [1]
            assert body["errors"][0]["field"] in ("sentAt", "timestamp", "originalTimestamp")
            assert "year" in body["errors"][0]["reason"]
            single = client.post("/v1/track", json={k: v for k, v in bad.items() if k != "type"})
            assert single.status_code == 400, single.text
    background.join()
    assert answers == [200] * 40
    assert restarts(live_server) == 0
    assert committer_pid(live_server) == pid


# --- the fuzzer -------------------------------------------------------------------------------

ROUTES = [
    "/v1/batch",
    "/v1/import",
    "/v1/track",
    "/v1/identify",
    "/v1/page",
    "/v1/screen",
    "/v1/group",
    "/v1/alias",
    "/t",
    "/i",
    "/p",
    "/s",
    "/g",
    "/a",
    "/b",
    "/v1/t",
    "/v1/b",
    "/v1/m",
    "/v1/noop",
]
CONTENT_TYPES = [
    "application/json",
    "text/plain",
    "text/plain;charset=UTF-8",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "application/octet-stream",
    "",
]
FIELDS = [
    "type",
    "userId",
    "anonymousId",
    "messageId",
    "event",
    "name",
    "groupId",
    "previousId",
    "timestamp",
    "originalTimestamp",
    "sentAt",
    "context",
    "properties",
    "traits",
    "integrations",
    "writeKey",
    "category",
]

far_dates = st.sampled_from(
    [
        "9999-12-31T23:59:59Z",
        "0001-01-01T00:00:00Z",
        "0001-01-01T00:00:00+14:00",
        "9999-12-31T23:59:59-14:00",
        "10000-01-01T00:00:00Z",
        "2024-02-30T00:00:00Z",
        "-0001-01-01T00:00:00Z",
        "1970-01-01",
        "",
    ]
)
huge_numbers = st.sampled_from([10**18, -(10**18), 2**63 - 1, -(2**63), 1e308, -1e308, 1e-308, 0, -1])
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    huge_numbers,
    st.text(max_size=30),
    far_dates,
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.sampled_from([*FIELDS, "x", "url", "page"]), inner, max_size=4)
    ),
    max_leaves=20,
)


def deep(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"a": value}
    return value


def base_event(n: int) -> dict[str, Any]:
    return {
        "type": "track",
        "event": "Order Completed",
        "userId": f"fuzz-{n}",
        "messageId": f"fuzz-{uuid.uuid4().hex}",
        "properties": {"revenue": 10, "currency": "EUR"},
        "context": {"page": {"url": "https://example.com/?utm_source=x"}},
        "timestamp": "2024-05-01T12:00:00.000Z",
        "sentAt": "2024-05-01T12:00:01.000Z",
    }


@st.composite
def mutated_event(draw: st.DrawFn) -> Any:
    event: Any = base_event(draw(st.integers(0, 1000)))
    for _ in range(draw(st.integers(0, 4))):
        how = draw(st.sampled_from(["set", "drop", "far", "huge", "deep", "whole"]))
        key = draw(st.sampled_from(FIELDS))
        if how == "set":
            event[key] = draw(values)
        elif how == "drop":
            event.pop(key, None)
        elif how == "far":
            event[key] = draw(far_dates)
        elif how == "huge":
            event[key] = draw(huge_numbers)
        elif how == "deep":
            event[key] = deep(draw(st.sampled_from([10, 200, 260, 600, 1100])))
        else:
            return draw(values)
    return event


@st.composite
def request_body(draw: st.DrawFn) -> tuple[bytes, dict[str, str]]:
    events = draw(st.lists(mutated_event(), min_size=1, max_size=4))
    shape = draw(st.sampled_from(["batch", "single", "batch-extras", "raw"]))
    document: Any
    if shape == "batch":
        document = {"batch": events}
    elif shape == "batch-extras":
        document = {"batch": events, "sentAt": draw(far_dates), "context": draw(values), "integrations": draw(values)}
    elif shape == "single":
        document = events[0]
    else:
        document = draw(values)
    try:
        body = orjson.dumps(document)
    except orjson.JSONEncodeError:  # nested past orjson's own limit: send the text of a shallower one
        body = orjson.dumps({"batch": [base_event(0)]})
    cut = draw(st.sampled_from(["whole", "whole", "whole", "truncated", "garbage"]))
    if cut == "truncated":
        body = body[: draw(st.integers(0, max(0, len(body) - 1)))]
    elif cut == "garbage":
        body = body + draw(st.binary(min_size=1, max_size=8))
    headers = {"Content-Type": draw(st.sampled_from(CONTENT_TYPES))}
    encoding = draw(st.sampled_from([None, None, "gzip", "deflate", "br", "gzip-truncated"]))
    if encoding == "gzip":
        body = gzip.compress(body)
    elif encoding == "deflate":
        body = zlib.compress(body)
    elif encoding == "gzip-truncated":
        body = gzip.compress(body)[:-6]
        encoding = "gzip"
    if encoding:
        headers["Content-Encoding"] = encoding
    return body, headers


def test_fuzzing_every_collector_route_finds_no_5xx_and_no_restart(live_server: LiveServer) -> None:
    auth_choices = [
        basic(live_server.write_key),
        f"Bearer {live_server.write_key}",
        basic("wrong-key"),
        "Basic !!!",
        "Digest x",
    ]
    client = httpx.Client(base_url=live_server.base_url, timeout=30)
    seen: dict[int, int] = {}
    deadline = time.monotonic() + 45  # bounded: whatever hypothesis has reached by then

    @settings(
        max_examples=400,
        deadline=None,
        derandomize=False,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    @given(
        route=st.sampled_from(ROUTES),
        payload=request_body(),
        auth=st.sampled_from(auth_choices + [None]),
        stray=st.text(alphabet=string.ascii_letters, max_size=5),
    )
    def one_request(route: str, payload: tuple[bytes, dict[str, str]], auth: str | None, stray: str) -> None:
        if time.monotonic() > deadline:
            return
        body, headers = payload
        if auth is not None:
            headers = {**headers, "Authorization": auth}
        if stray:
            headers["AnonymousId"] = stray
        response = client.post(route, content=body, headers=headers)
        seen[response.status_code] = seen.get(response.status_code, 0) + 1
        assert response.status_code < 500, (route, headers, body[:300], response.text[:500])
        if response.status_code >= 400:
            error = response.json()
            assert error["success"] is False and error["message"], response.text

    try:
        one_request()
    finally:
        client.close()
    print(f"fuzzed requests by status: {dict(sorted(seen.items()))}")
    assert restarts(live_server) == 0
    assert seen.get(200, 0) > 0 and seen.get(400, 0) > 0, seen  # the fuzzer reached both sides


def test_the_settings_route_and_odd_methods_answer_without_5xx(live_server: LiveServer) -> None:
    with httpx.Client(base_url=live_server.base_url, timeout=10) as client:
        assert client.get(f"/v1/projects/{live_server.write_key}/settings").status_code == 200
        assert client.get("/v1/projects/%00%ff/settings").status_code == 401
        for route in ("/v1/batch", "/v1/track", "/b"):
            assert client.request("OPTIONS", route).status_code == 204
            assert client.get(route).status_code == 405
    assert restarts(live_server) == 0
