"""The official Python SDKs, unchanged, against a live `omniweave serve`.

`segment-analytics-python` (module `segment.analytics`) and `rudder-sdk-python` (module
`rudderstack.analytics`) each send 5,000 events of every type through their own background
consumers (batches of 100 to `<host>/v1/batch`, HTTP Basic auth with the write key; Segment
also puts `writeKey` in the body; RudderStack gzips by default, Segment does not). Afterwards
every event is in the event log exactly once, and sending the same messageIds again adds
nothing.

What the libraries do (read from their source, versions 2.4.0 and 2.1.9):

- both generate `messageId` as a uuid4 unless `message_id=` is passed, and return
  `(queued, message)` from every call, so the id can be recorded;
- both POST `{"batch": [...], "sentAt": ...}` to `host.rstrip("/") + "/v1/batch"`;
- both report `context.library.name == "analytics-python"`, so the source (write key) is what
  tells them apart in the log;
- RudderStack treats only HTTP 200 as success (a 201/202 would be retried, then reported);
- RudderStack's `identify` puts traits in `context.traits`, never at the top level.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.conftest import LiveServer, create_write_key

EVENTS_PER_LIBRARY = 5_000
TYPES = ("track", "identify", "page", "screen", "group", "alias")


# --- the two libraries --------------------------------------------------------------------


def segment_client(host: str, write_key: str, on_error: Callable[..., None], **options: Any) -> Any:
    from segment.analytics import Client

    options.setdefault("max_retries", 3)
    return Client(write_key=write_key, host=host, on_error=on_error, **options)


def rudder_client(host: str, write_key: str, on_error: Callable[..., None], **options: Any) -> Any:
    from rudderstack.analytics import Client

    # `host` is the data plane URL (the module-level setting is called `dataPlaneUrl`).
    options.setdefault("max_retries", 3)
    return Client(write_key=write_key, host=host, on_error=on_error, **options)


LIBRARIES = {"segment": segment_client, "rudder": rudder_client}


def call_arguments(library: str, i: int) -> tuple[str, dict[str, Any]]:
    """The i-th call a library makes: a deterministic mix of every event type."""
    kind = TYPES[i % len(TYPES)]
    user = f"{library}-user-{i % 700}"
    anonymous = f"{library}-anon-{i % 900}"
    if kind == "track":
        return kind, {
            "user_id": user,
            "event": "Product Viewed" if i % 4 else "Order Completed",
            "properties": {"product_id": f"sku-{i % 50}", "price": 9.99, "revenue": 19.98, "n": i},
        }
    if kind == "identify":
        return kind, {
            "user_id": user,
            "anonymous_id": anonymous,
            "traits": {"email": f"{user}@example.com", "plan": "gold", "n": i},
        }
    if kind == "page":
        return kind, {
            "anonymous_id": anonymous,
            "name": "Pricing",
            "category": "Docs",
            "properties": {"url": f"https://shop.example.com/pricing?utm_source=news&utm_campaign=c{i % 3}"},
        }
    if kind == "screen":
        return kind, {"user_id": user, "name": "Basket", "properties": {"n": i}}
    if kind == "group":
        return kind, {
            "user_id": user,
            "group_id": f"{library}-company-{i % 40}",
            "traits": {"name": "Acme"},
        }
    return kind, {"previous_id": anonymous, "user_id": user}


def expected_types(n: int) -> Counter[str]:
    return Counter(TYPES[i % len(TYPES)] for i in range(n))


@dataclass
class Sent:
    """What one library was asked to send, and what it reported back."""

    library: str
    message_ids: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    statuses: list[int | None] = field(default_factory=list)

    def on_error(self, error: Exception, batch: list[dict[str, Any]]) -> None:
        with self.lock:
            self.errors.append(f"{self.library}: {error!r} {error} ({len(batch)} events)")
            self.statuses.append(getattr(error, "status", None))


def send_all(client: Any, sent: Sent, n: int, replay: bool = False) -> None:
    """Make n calls (with the recorded messageIds when replaying), then flush and stop the client."""
    for i in range(n):
        method, kwargs = call_arguments(sent.library, i)
        if replay:
            kwargs["message_id"] = sent.message_ids[i]
        queued, message = getattr(client, method)(**kwargs)
        assert queued, f"{sent.library}: the client's queue refused call {i}"
        if replay:
            assert message["messageId"] == sent.message_ids[i]
        else:
            sent.message_ids.append(message["messageId"])
    client.flush()
    client.join()


# --- the event log ------------------------------------------------------------------------


def wait_until_loaded(server: LiveServer, timeout: float = 60.0) -> None:
    """Wait until the server's loader has moved everything in the inbox into the event log."""
    rt = server.runtime()
    try:
        deadline = time.monotonic() + timeout
        while True:
            target = rt.store.max_seq()
            loader = rt.store.consumers().get("loader")
            if target == 0 or (loader is not None and loader.position >= target and loader.pending_end is None):
                return
            if time.monotonic() > deadline:
                pytest.fail(f"the loader did not catch up: inbox at {target}, loader at {loader}")
            time.sleep(0.2)
    finally:
        rt.close()


def query(server: LiveServer, sql: str) -> list[dict[str, Any]]:
    rt = server.runtime()
    try:
        return rt.warehouse().sql(sql).to_pylist()
    finally:
        rt.close()


def source_ids(server: LiveServer) -> dict[str, str]:
    rt = server.runtime()
    try:
        return {str(row["name"]): str(row["id"]) for row in rt.store.list_sources()}
    finally:
        rt.close()


@pytest.fixture
def sources(live_server: LiveServer) -> Iterator[dict[str, str]]:
    """A write key per library: the fixture's own key for Segment, one made while serving for RudderStack."""
    yield {
        "segment": live_server.write_key,
        "rudder": create_write_key(live_server.home, "rudder-python"),
    }


# --- tests --------------------------------------------------------------------------------


def in_parallel(send: Callable[[str], object]) -> None:
    """Run `send(library)` for both libraries at once, as two applications would."""
    threads = [threading.Thread(target=send, args=(lib,)) for lib in LIBRARIES]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def test_official_python_sdks_deliver_every_event_exactly_once(
    live_server: LiveServer, sources: dict[str, str]
) -> None:
    sent = {library: Sent(library) for library in LIBRARIES}
    # Segment: defaults (no gzip, batches of 100); RudderStack: defaults (gzip, batches of 100).
    clients = {
        library: LIBRARIES[library](live_server.base_url, sources[library], sent[library].on_error)
        for library in LIBRARIES
    }
    in_parallel(lambda lib: send_all(clients[lib], sent[lib], EVENTS_PER_LIBRARY))
    assert [e for s in sent.values() for e in s.errors] == []
    for library, s in sent.items():
        assert len(set(s.message_ids)) == EVENTS_PER_LIBRARY, f"{library} generated duplicate messageIds"

    wait_until_loaded(live_server)
    ids = source_ids(live_server)
    by_source = {ids["test-source"]: "segment", ids["rudder-python"]: "rudder"}
    rows = query(
        live_server,
        "select source, count(*) as total, count(distinct message_id) as distinct_ids from events group by source",
    )
    assert {by_source[r["source"]]: (r["total"], r["distinct_ids"]) for r in rows} == {
        "segment": (EVENTS_PER_LIBRARY, EVENTS_PER_LIBRARY),
        "rudder": (EVENTS_PER_LIBRARY, EVENTS_PER_LIBRARY),
    }
    logged = query(
        live_server,
        "select source, message_id, type, event, user_id, anonymous_id, group_id, "
        "previous_id, campaign_source, campaign_name, context, traits from events",
    )
    for library in LIBRARIES:
        mine = [r for r in logged if by_source[r["source"]] == library]
        assert {r["message_id"] for r in mine} == set(sent[library].message_ids)
        assert Counter(r["type"] for r in mine) == expected_types(EVENTS_PER_LIBRARY)
        assert {json.loads(r["context"])["library"]["name"] for r in mine} == {"analytics-python"}
        # spot checks on what each type carries
        first = {r["message_id"]: r for r in mine}
        for i in range(12):
            row = first[sent[library].message_ids[i]]
            method, kwargs = call_arguments(library, i)
            assert row["type"] == method
            assert row["user_id"] == kwargs.get("user_id")
            if method == "track":
                assert row["event"] == kwargs["event"]
            if method in ("page", "screen"):
                assert row["event"] == kwargs["name"]
            if method == "page":
                assert (row["campaign_source"], row["campaign_name"]) == ("news", f"c{i % 3}")
            if method == "group":
                assert row["group_id"] == kwargs["group_id"]
            if method == "alias":
                assert row["previous_id"] == kwargs["previous_id"]
            if method == "identify":
                assert row["anonymous_id"] == kwargs["anonymous_id"]
                if library == "segment":
                    assert json.loads(row["traits"])["email"] == kwargs["traits"]["email"]

    # The same messageIds again, through new clients with the other settings: nothing is added.
    resent = {library: Sent(library, message_ids=sent[library].message_ids) for library in LIBRARIES}
    replay_clients = {
        "segment": segment_client(
            live_server.base_url,
            sources["segment"],
            resent["segment"].on_error,
            gzip=True,
            upload_size=250,
        ),
        "rudder": rudder_client(
            live_server.base_url,
            sources["rudder"],
            resent["rudder"].on_error,
            gzip=False,
            upload_size=50,
        ),
    }
    in_parallel(lambda lib: send_all(replay_clients[lib], resent[lib], EVENTS_PER_LIBRARY, replay=True))
    assert [e for s in resent.values() for e in s.errors] == []
    wait_until_loaded(live_server)
    rows = query(
        live_server,
        "select count(*) as total, count(distinct message_id) as distinct_ids from events",
    )
    assert rows == [{"total": 2 * EVENTS_PER_LIBRARY, "distinct_ids": 2 * EVENTS_PER_LIBRARY}]


@pytest.mark.parametrize("library", ["segment", "rudder"])
def test_unknown_write_key_is_refused_and_reported_to_the_sdk(live_server: LiveServer, library: str) -> None:
    sent = Sent(library)
    client = LIBRARIES[library](live_server.base_url, "wk_not-a-key", sent.on_error, max_retries=0)
    send_all(client, sent, 3)
    # The library must see the HTTP status (an APIError), or it retries as if the network had failed.
    assert sent.statuses and set(sent.statuses) == {401}, sent.errors
    wait_until_loaded(live_server)
    assert query(live_server, "select count(*) as n from events") == [{"n": 0}]


def test_rudder_identify_traits_reach_the_traits_column(live_server: LiveServer) -> None:
    sent = Sent("rudder")
    client = rudder_client(live_server.base_url, live_server.write_key, sent.on_error)
    _queued, message = client.identify(user_id="u-1", traits={"email": "u-1@example.com"})
    client.flush()
    client.join()
    assert sent.errors == []
    wait_until_loaded(live_server)
    rows = query(live_server, f"select traits from events where message_id = '{message['messageId']}'")
    assert json.loads(rows[0]["traits"]).get("email") == "u-1@example.com"


def test_rudder_batches_within_the_librarys_own_limits_are_accepted(
    live_server: LiveServer,
) -> None:
    sent = Sent("rudder")
    client = rudder_client(live_server.base_url, live_server.write_key, sent.on_error, max_retries=0)
    for i in range(100):  # about 800 KB in one batch, each event well under the 32 KB event limit
        client.track(user_id=f"u-{i}", event="Catalogue Downloaded", properties={"pages": "x" * 8_000})
    client.flush()
    client.join()
    assert sent.errors == []
    wait_until_loaded(live_server)
    assert query(live_server, "select count(*) as n from events") == [{"n": 100}]
