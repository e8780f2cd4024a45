"""Issue 21's engine semantics, through the real inbox, ledger, coupon tables and the shipped fakes, on SQLite and
PostgreSQL: a send's offer code issued from its message's coupon pool; the trigger never converting its own run;
correlation by dotted paths and through lists; the feedback events on the engine's clock."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
import sqlalchemy as sa

from omniweave.activate.coupons import format_code, is_valid_code
from omniweave.activate.journeys.definition import JourneyInvalid, parse_journey_text
from omniweave.activate.journeys.model import Entry, Exit, Goal, Journey, ReEntry, Send, Step, Wait
from omniweave.activate.service import coupons as coupon_service
from omniweave.activate.service.coupons import create_pool, issue, issue_on
from omniweave.activate.service.journey_stats import builtin_paths, load_journey_file
from omniweave.activate.service.journeys import JourneyEngine, publish, send_key
from omniweave.collect.emit import emit
from omniweave.runtime import Runtime
from omniweave.storage.ops import journeys as Q
from omniweave.storage.ops.ledger import Ledger
from omniweave.storage.ops.tables.journeys import journey_runs
from omniweave.storage.ops.tables.reach import coupons

from .conftest import NOON, Clock

HOUR = 3600.0
DAY = 86400.0


def track(n: str, user: str, event: str, **props: Any) -> dict[str, Any]:
    return {
        "type": "track",
        "messageId": n,
        "userId": user,
        "event": event,
        "properties": props,
        "timestamp": "2026-06-30T12:00:00Z",
    }


def drain(e: JourneyEngine) -> None:
    while e.consume() or e.step():
        pass
    e.dispatch()


def runs(rt: Runtime) -> list[dict[str, Any]]:
    with rt.store.engine.connect() as conn:
        query = sa.select(journey_runs).order_by(journey_runs.c.person_id, journey_runs.c.entry_key)
        return [dict(m) for m in conn.execute(query).mappings()]


def outcomes(rt: Runtime, run_id: str) -> list[tuple[str, str, str]]:
    with rt.store.engine.connect() as conn:
        return [(s["node"], s["outcome"], s["reason"]) for s in Q.steps_of(conn, run_id=run_id)]


def coupon_rows(rt: Runtime) -> list[dict[str, Any]]:
    with rt.store.engine.connect() as conn:
        return [dict(m) for m in conn.execute(sa.select(coupons).order_by(coupons.c.code)).mappings()]


# --- 1. the offer's coupon ---------------------------------------------------------------------------


def gift_journey(on_error: str | None) -> Journey:
    """An API entry, then the built-in `birthday_coupon` message (offer pool `birthday`) on e-mail."""
    steps = [
        Step("gift", Send("birthday_coupon", "email", "done"), on_error=on_error),
        Step("done", Exit("done")),
        Step("sorry", Exit("no coupon")),
    ]
    return Journey(
        name="gift", entry=Entry("api"), start="gift", steps={s.id: s for s in steps}, re_entry=ReEntry("always")
    )


def test_a_send_issues_its_offer_code_from_the_pool_once_and_renders_it(world: Runtime) -> None:
    create_pool(world, "birthday", kind="unique", valid_days=14, campaign="birthday")
    publish(world, gift_journey("sorry"))
    clock = Clock(NOON.timestamp())
    e = JourneyEngine(world, fake=True, clock=clock)
    assert e.enter("gift", "P1", "k1") and e.enter("gift", "P2", "k1")
    drain(e)
    by_person = {r["person_id"]: r for r in runs(world)}
    keys = {p: send_key("gift", "gift", r["id"]) for p, r in by_person.items()}
    issued = coupon_rows(world)
    assert sorted(c["person_id"] for c in issued) == ["P1", "P2"]
    for c in issued:  # recorded against the person as `coupons issue` records it
        assert c["pool"] == "birthday" and c["send_key"] == keys[c["person_id"]]
        assert (c["channel"], c["campaign"], c["message_name"]) == ("email", "gift", "birthday_coupon")
        assert c["issued_at"] == NOON.timestamp() and c["expires_at"] == NOON.timestamp() + 14 * DAY
        assert is_valid_code(c["code"]) and c["redeemed_at"] is None
    ledger = {row.key: row for row in Ledger(world.store.engine).rows()}
    for c in issued:  # the code the person got is their own, in every part the e-mail shows it
        content = orjson.loads(ledger[c["send_key"]].content or b"{}")
        assert format_code(c["code"]) in content["text"] and format_code(c["code"]) in content["html"]
        assert ledger[c["send_key"]].status == "delivered"
    assert {r["status"] for r in by_person.values()} == {"exited"}
    # a retried send (the same send key, e.g. redone after a crash) finds the same code: on the send's
    # connection as the engine issues it, and through `coupons issue`
    first = {c["send_key"]: c["code"] for c in issued}
    with world.store.engine.begin() as conn:
        again = issue_on(conn, "birthday", person_id="P1", send_key=keys["P1"], channel="email", now=clock.at + 60)
    assert again.code == first[keys["P1"]]
    assert issue(world, "birthday", person_id="P1", send_key=keys["P1"]).code == first[keys["P1"]]
    # the run put back at the send step (its advance lost) walks it again: no second code, no second message
    with world.store.engine.begin() as conn:
        conn.execute(
            journey_runs.update()
            .where(journey_runs.c.id == by_person["P1"]["id"])
            .values(node="gift", status="active", wake_at=clock.at, ended_at=None, end_reason=None)
        )
    clock.at += 60
    drain(e)
    assert {c["code"] for c in coupon_rows(world)} == set(first.values())
    assert len(Ledger(world.store.engine).rows()) == 2


def test_an_exhausted_pool_takes_the_on_error_edge_with_the_reason(
    world: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    create_pool(world, "birthday", kind="unique", valid_days=14)
    publish(world, gift_journey("sorry"))
    e = JourneyEngine(world, fake=True, clock=Clock(NOON.timestamp()))
    monkeypatch.setattr(coupon_service, "MAX_DRAWS", 0)  # no draw left: every code space is used up
    assert e.enter("gift", "P1", "k1")
    drain(e)
    (run,) = runs(world)
    assert (run["status"], run["end_reason"]) == ("exited", "no coupon")
    steps = outcomes(world, run["id"])
    assert [(n, o) for n, o, _ in steps] == [("gift", "entered"), ("gift", "error"), ("sorry", "exited")]
    assert "birthday_coupon on email" in steps[1][2] and "pool 'birthday' is exhausted" in steps[1][2]
    assert coupon_rows(world) == [] and Ledger(world.store.engine).rows() == []


def test_a_missing_pool_without_an_on_error_edge_fails_the_run_with_the_reason(world: Runtime) -> None:
    publish(world, gift_journey(None))  # no pool `birthday` in this store
    e = JourneyEngine(world, fake=True, clock=Clock(NOON.timestamp()))
    assert e.enter("gift", "P1", "k1")
    drain(e)
    (run,) = runs(world)
    assert run["status"] == "failed" and "no coupon pool 'birthday'" in run["end_reason"]
    assert [o for _, o, _ in outcomes(world, run["id"])] == ["entered", "error"]
    assert coupon_rows(world) == [] and Ledger(world.store.engine).rows() == []


# --- 2. goals: only events after the trigger ----------------------------------------------------------


def order_journey() -> Journey:
    """Enters on any order, converts on an order within 7 days: the trigger itself meets the goal."""
    steps = {"later": Wait(HOUR, "done"), "done": Exit("done")}
    return Journey(
        name="again",
        entry=Entry("event", event="Order Completed"),
        start="later",
        steps={k: Step(k, a) for k, a in steps.items()},
        re_entry=ReEntry("always"),
        goal=Goal("Order Completed", 7 * DAY),
    )


def test_the_trigger_does_not_convert_its_own_run_a_later_event_does(world: Runtime) -> None:
    publish(world, order_journey())
    clock = Clock(NOON.timestamp())
    e = JourneyEngine(world, fake=True, clock=clock)
    emit(world.store, "web", [track("o1", "u1", "Order Completed", order_id="1")])
    # P2: the trigger and a second order in one inbox batch: the first run converts, the second does not
    emit(world.store, "web", [track("o2", "u2", "Order Completed"), track("o3", "u2", "Order Completed")])
    drain(e)
    status = {(r["person_id"], r["entry_key"]): r["status"] for r in runs(world)}
    assert status == {("P1", "o1"): "active", ("P2", "o2"): "converted", ("P2", "o3"): "active"}
    emit(world.store, "app", [track("o1", "u1", "Order Completed", order_id="1")])  # the trigger again
    clock.at += 60
    drain(e)
    assert {r["entry_key"]: r["status"] for r in runs(world) if r["person_id"] == "P1"} == {"o1": "active"}
    emit(world.store, "web", [track("o4", "u1", "Order Completed", order_id="2")])
    clock.at += 60
    drain(e)
    p1 = {r["entry_key"]: r["status"] for r in runs(world) if r["person_id"] == "P1"}
    assert p1 == {"o1": "converted", "o4": "active"}


def test_the_cross_sell_library_journey_converts_on_a_later_home_order_only(world: Runtime) -> None:
    (path,) = [p for p in builtin_paths() if p.stem == "post_purchase_cross_sell"]
    publish(world, load_journey_file(path, world.settings))
    clock = Clock(NOON.timestamp())
    e = JourneyEngine(world, fake=True, clock=clock)
    laptop = {"products": [{"product_id": "L1", "category": "electronics"}]}
    emit(world.store, "web", [track("o1", "u1", "Order Completed", **laptop)])
    drain(e)
    (run,) = runs(world)
    assert run["status"] not in ("converted", "exited", "failed")
    clock.at += DAY
    home = {"products": [{"product_id": "H1", "category": "home"}]}
    emit(world.store, "web", [track("o2", "u1", "Order Completed", **home)])
    drain(e)
    (run,) = runs(world)
    assert run["status"] == "converted"


# --- 3. correlation paths -----------------------------------------------------------------------------

CART = """
name: carts
entry: {event: Product Added, where: {cart.id: {exists: true}}, correlate: properties.cart.id}
re_entry: always
goal: {event: Order Completed, within: 7d, correlate: cart.id, correlate_as: "products[].cart_id"}
start: ordered
steps:
  ordered:
    wait_for: {event: Order Completed, correlate: cart.id, correlate_as: "products[].cart_id", timeout: 1h}
    on_event: done
    on_timeout: nudge
  nudge: {send: {message: cart_reminder, channel: email}, next: done}
  done: {exit: done}
"""


def test_a_wait_and_a_goal_correlate_by_a_nested_path_and_through_a_list(world: Runtime) -> None:
    journey = parse_journey_text(CART, "carts.yaml")
    publish(world, journey)
    clock = Clock(NOON.timestamp())
    e = JourneyEngine(world, fake=True, clock=clock)
    emit(
        world.store,
        "web",
        [
            track("a1", "u1", "Product Added", cart={"id": "c1"}),
            track("a2", "u1", "Product Added", cart={"id": 22}),  # a number: matched by its text
        ],
    )
    drain(e)
    by_key = {r["entry_key"]: r for r in runs(world)}
    assert {k: r["status"] for k, r in by_key.items()} == {"a1": "waiting", "a2": "waiting"}
    clock.at += 60
    other = {"products": [{"cart_id": "c9"}, {"cart_id": "c1x"}]}
    emit(world.store, "web", [track("o1", "u1", "Order Completed", **other)])
    emit(world.store, "web", [track("o2", "u2", "Order Completed", products=[{"cart_id": "c1"}])])  # not P1's
    drain(e)
    assert {k: r["status"] for k, r in runs_by_key(world).items()} == {"a1": "waiting", "a2": "waiting"}
    clock.at += 60
    both = {"products": [{"cart_id": "c7"}, {"cart_id": "22"}]}
    emit(world.store, "web", [track("o3", "u1", "Order Completed", **both)])
    drain(e)
    now = runs_by_key(world)
    assert now["a2"]["status"] == "converted"  # the goal (the wait's woken run converted at once by the goal)
    assert now["a1"]["status"] == "waiting"
    clock.at += HOUR
    drain(e)
    sent = [row.key for row in Ledger(world.store.engine).rows()]
    assert sent == [send_key("carts", "nudge", by_key["a1"]["id"])]


def runs_by_key(rt: Runtime) -> dict[str, dict[str, Any]]:
    return {r["entry_key"]: r for r in runs(rt)}


def test_a_wait_is_woken_by_a_path_through_a_list(world: Runtime) -> None:
    text = CART.replace(
        "goal: {event: Order Completed, within: 7d, correlate: cart.id", "goal: {event: Never, within: 7d"
    )
    text = text.replace(', correlate_as: "products[].cart_id"}\nstart', "}\nstart")
    publish(world, parse_journey_text(text, "carts.yaml"))
    clock = Clock(NOON.timestamp())
    e = JourneyEngine(world, fake=True, clock=clock)
    emit(world.store, "web", [track("a1", "u1", "Product Added", cart={"id": "c1"})])
    drain(e)
    clock.at += 60
    emit(world.store, "web", [track("o1", "u1", "Order Completed", products=[{"cart_id": "c0"}, {"cart_id": "c1"}])])
    drain(e)
    (run,) = runs(world)
    assert (run["status"], run["end_reason"]) == ("exited", "done")
    assert [o for _, o, _ in outcomes(world, run["id"])] == ["entered", "waited", "woken", "exited"]


@pytest.mark.parametrize(
    ("field", "value", "path", "says"),
    [
        ("correlate_as", "products[0].cart_id", "steps.ordered.wait_for.correlate_as", "has an index"),
        ("correlate_as", "products..cart_id", "steps.ordered.wait_for.correlate_as", "is empty"),
        ("correlate_as", "products[.cart_id", "steps.ordered.wait_for.correlate_as", "a bracket"),
        ("correlate", "cart[].id", "steps.ordered.wait_for.correlate", "goes through no list"),
    ],
)
def test_a_bad_correlation_path_is_reported_with_where_and_what(field: str, value: str, path: str, says: str) -> None:
    old = 'wait_for: {event: Order Completed, correlate: cart.id, correlate_as: "products[].cart_id"'
    new = {
        "correlate_as": f'wait_for: {{event: Order Completed, correlate: cart.id, correlate_as: "{value}"',
        "correlate": f'wait_for: {{event: Order Completed, correlate: "{value}", correlate_as: "products[].cart_id"',
    }[field]
    with pytest.raises(JourneyInvalid) as caught:
        parse_journey_text(CART.replace(old, new), "carts.yaml")
    found = [m for p, m in caught.value.problems if p == path]
    assert found and says in found[0] and repr(value) in found[0], caught.value.problems


def test_the_entry_correlation_path_goes_through_no_list() -> None:
    text = CART.replace("correlate: properties.cart.id}", 'correlate: "items[].cart_id"}')
    with pytest.raises(JourneyInvalid) as caught:
        parse_journey_text(text, "carts.yaml")
    assert any(p == "entry.correlate" and "goes through no list" in m for p, m in caught.value.problems)


# --- 4. the feedback events on the engine's clock -----------------------------------------------------


def test_the_feedback_events_carry_the_engines_clock(world: Runtime) -> None:
    steps = {"hello": Send("cart_reminder", "email", "done"), "done": Exit("done")}
    publish(
        world,
        Journey(name="hello", entry=Entry("api"), start="hello", steps={k: Step(k, a) for k, a in steps.items()}),
    )
    at = NOON.timestamp() - 30 * DAY  # a replayed month-old day: nowhere near the wall clock
    e = JourneyEngine(world, fake=True, clock=Clock(at))
    assert e.enter("hello", "P1", "k1")
    drain(e)
    (row,) = Ledger(world.store.engine).rows()
    assert row.status == "delivered" and row.created_at == at and row.updated_at == at
    delivered = [
        event
        for event in (orjson.loads(r.payload) for r in world.store.read(after=0, limit=1000))
        if event.get("event") == "Email Delivered"
    ]
    assert [event["properties"]["send_key"] for event in delivered] == [row.key]
    stamped = datetime.fromisoformat(delivered[0]["timestamp"].replace("Z", "+00:00"))
    assert stamped == datetime.fromtimestamp(at, UTC)


@pytest.mark.parametrize(
    ("props", "path", "values"),
    [
        ({"cart_id": "c1"}, "cart_id", ["c1"]),
        ({"cart": {"id": 7}}, "cart.id", ["7"]),
        ({"cart": {"id": 7.0}}, "properties.cart.id", ["7"]),
        ({"properties": {"cart": "x"}, "cart": "y"}, "properties.cart", ["x"]),  # a property named `properties`
        ({"cart.id": "flat", "cart": {"id": "deep"}}, "cart.id", ["flat"]),  # a flat key as written first
        ({"products": [{"cart_id": "a"}, {"cart_id": None}, {"cart_id": "b"}]}, "products[].cart_id", ["a", "b"]),
        ({"products": [{"cart_id": "a"}]}, "products.cart_id", ["a"]),
        ({"cart": {"id": {"deeper": 1}}}, "cart.id", []),  # an object is not a value
        ({"cart": "c1"}, "cart.id", []),
    ],
)
def test_correlation_values_read_paths(props: dict[str, Any], path: str, values: list[str]) -> None:
    from omniweave.activate.journeys.conditions import correlation_values

    assert correlation_values(props, path) == values
