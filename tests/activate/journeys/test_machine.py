"""The journey machine: pure transitions for every step kind, holdout, goal, correlation, windows across DST."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from omniweave.activate.journeys import machine as M
from omniweave.activate.journeys.model import (
    Branch,
    BranchArm,
    CallWebhook,
    Condition,
    Entry,
    EventCount,
    Exit,
    Goal,
    IssueCoupon,
    Journey,
    PropertyFilter,
    Send,
    Split,
    Step,
    UpdateTrait,
    Wait,
    WaitForEvent,
    WaitUntilWindow,
)

T0 = 1_780_000_000.0


def journey(steps: dict[str, object], start: str, **kw: object) -> Journey:
    return Journey(
        name="j",
        entry=Entry("event", event="Product Added", correlate="cart_id"),
        start=start,
        steps={k: Step(k, a) for k, a in steps.items()},  # type: ignore[arg-type]
        version=1,
        **kw,  # type: ignore[arg-type]
    )


def state(node: str, person: str = "P1", **ctx: object) -> M.RunState:
    return M.RunState("r1", person, node, T0, {"trigger": {"cart_id": "c1"}, "corr": "c1", **ctx})


def test_wait_parks_then_moves_on_when_due() -> None:
    j = journey({"w": Wait(3600, "x"), "x": Exit("done")}, "w")
    first = M.advance(j, state("w"), M.Facts(), T0)
    assert (first.status, first.wake_at, first.node) == ("active", T0 + 3600, "w")
    assert [s.outcome for s in first.steps] == ["waited"]
    early = M.advance(j, M.RunState("r1", "P1", "w", T0, first.context), M.Facts(), T0 + 10)
    assert early.wake_at == T0 + 3600 and early.steps == ()
    later = M.advance(j, M.RunState("r1", "P1", "w", T0, first.context), M.Facts(), T0 + 3600)
    assert later.status == "exited" and [s.outcome for s in later.steps] == ["exited"]


def test_wait_for_event_parks_with_the_trigger_correlation_and_wakes_or_times_out() -> None:
    j = journey(
        {
            "o": WaitForEvent(86400, "done", "send", event="Order Completed", correlate="cart_id"),
            "send": Send("cart_reminder", "email", "done"),
            "done": Exit("converted"),
        },
        "o",
    )
    parked = M.advance(j, state("o"), M.Facts(), T0)
    assert parked.status == "waiting" and parked.wait == M.WaitSpec("Order Completed", T0 + 86400, "cart_id", "c1")
    woken_ctx = M.woken_context(parked.context, "o", "Order Completed", {"cart_id": "c1"})
    woken = M.advance(j, M.RunState("r1", "P1", "o", T0, woken_ctx), M.Facts(), T0 + 5)
    assert woken.status == "converted" and [s.outcome for s in woken.steps] == ["woken", "exited"]
    timed = M.advance(j, M.RunState("r1", "P1", "o", T0, parked.context, timed_out=True), M.Facts(), T0 + 86400)
    assert timed.effect is not None and timed.effect.node == "send"
    assert [s.outcome for s in timed.steps] == ["timeout"]


def test_correlate_as_names_the_awaited_events_property() -> None:
    j = journey(
        {
            "o": WaitForEvent(60, "x", "x", event="Order Completed", correlate="cart_id", correlate_as="checkout_id"),
            "x": Exit(),
        },
        "o",
    )
    parked = M.advance(j, state("o"), M.Facts(), T0)
    assert parked.wait is not None and (parked.wait.corr_property, parked.wait.corr_value) == ("checkout_id", "c1")


def test_branch_on_traits_and_events_chains_to_an_effect() -> None:
    cond = Condition(
        traits=(PropertyFilter("lifetime_value", "gt", 500),),
        events=(EventCount("Order Completed", within=90 * 86400, min_count=2),),
    )
    j = journey(
        {
            "b": Branch((BranchArm(cond, "vip"),), "plain"),
            "vip": Send("cart_reminder", "email", "x"),
            "plain": Exit("not vip"),
            "x": Exit(),
        },
        "b",
    )
    orders = [M.EventFact("Order Completed", T0 - 86400), M.EventFact("Order Completed", T0 - 2 * 86400)]
    rich = M.advance(j, state("b"), M.Facts(traits={"lifetime_value": 900}, events=orders), T0)
    assert rich.effect is not None and rich.effect.node == "vip"
    assert rich.steps[0].outcome == "branched" and "arm 1" in rich.steps[0].reason
    one_order = M.advance(j, state("b"), M.Facts(traits={"lifetime_value": 900}, events=orders[:1]), T0)
    assert one_order.status == "exited" and one_order.end_reason == "not vip"
    poor = M.advance(j, state("b"), M.Facts(traits={"lifetime_value": 10}, events=orders), T0)
    assert poor.status == "exited"


def test_split_is_sticky_and_follows_the_weights() -> None:
    arms = (("a", 30.0, "sa"), ("b", 70.0, "sb"))
    j = journey({"s": Split(arms), "sa": Exit("a"), "sb": Exit("b")}, "s")
    picks = [M.advance(j, state("s", f"P{i}"), M.Facts(), T0).variant for i in range(4000)]
    again = [M.advance(j, state("s", f"P{i}"), M.Facts(), T0 + 99).variant for i in range(4000)]
    assert picks == again
    share_a = picks.count("a") / len(picks)
    assert 0.27 < share_a < 0.33


def test_holdout_walks_the_journey_without_sending() -> None:
    j = journey({"s": Send("cart_reminder", "email", "x"), "x": Exit("done")}, "s", holdout=0.2)
    people = [f"P{i}" for i in range(3000)]
    held = [p for p in people if M.in_holdout(j, p)]
    assert 0.17 < len(held) / len(people) < 0.23
    ctx = M.entry_context(j, held[0], {"cart_id": "c1"})
    out = M.advance(j, M.RunState("r", held[0], "s", T0, ctx), M.Facts(), T0)
    assert out.effect is None and out.status == "exited"
    assert [s.outcome for s in out.steps] == ["held_out", "exited"]
    free = next(p for p in people if p not in held)
    out = M.advance(j, M.RunState("r", free, "s", T0, M.entry_context(j, free, {})), M.Facts(), T0)
    assert out.effect is not None and isinstance(out.effect.action, Send)


@pytest.mark.parametrize(
    "action",
    [IssueCoupon("winback", "x"), UpdateTrait("winback_sent", True, "x"), CallWebhook("https://h.example/x", "x")],
)
def test_effects_stop_the_walk_and_after_effect_takes_next_or_on_error(action: object) -> None:
    j = Journey(
        name="j",
        entry=Entry("api"),
        start="e",
        steps={"e": Step("e", action, on_error="bad"), "x": Step("x", Exit()), "bad": Step("bad", Exit("error"))},  # type: ignore[arg-type]
        version=1,
    )
    out = M.advance(j, state("e"), M.Facts(), T0)
    assert out.effect is not None and out.effect.action == action
    assert M.after_effect(j, "e", True) == "x" and M.after_effect(j, "e", False) == "bad"


def test_goal_needs_the_same_cart_within_the_window() -> None:
    j = journey({"x": Exit()}, "x", goal=Goal("Order Completed", 7 * 86400, correlate="cart_id"))
    s = state("x")
    assert M.goal_met(j, j.goal, s, "Order Completed", {"cart_id": "c1"}, T0 + 3600)
    assert not M.goal_met(j, j.goal, s, "Order Completed", {"cart_id": "c2"}, T0 + 3600)
    assert not M.goal_met(j, j.goal, s, "Order Completed", {"cart_id": "c1"}, T0 + 8 * 86400)
    assert not M.goal_met(j, j.goal, s, "Product Viewed", {"cart_id": "c1"}, T0 + 3600)


def test_a_missing_step_fails_the_run_with_the_reason() -> None:
    j = journey({"b": Branch((), "gone")}, "b")
    out = M.advance(j, state("b"), M.Facts(), T0)
    assert out.status == "failed" and "gone" in out.steps[-1].reason


@pytest.mark.parametrize("tz", ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kathmandu"])
def test_window_opens_at_local_time_across_dst(tz: str) -> None:
    z = ZoneInfo(tz)
    for month in range(1, 13):
        start = datetime(2026, month, 1, 22, 0, tzinfo=z).timestamp()
        opens = M.next_window_open(start, tz, "09:00", "20:00", ["mon", "tue", "wed", "thu", "fri"])
        local = datetime.fromtimestamp(opens, z)
        assert (local.hour, local.minute) == (9, 0) and local.weekday() < 5 and opens > start
        assert opens - start < 4 * 86400


def test_window_step_waits_in_the_persons_zone() -> None:
    j = journey(
        {"w": WaitUntilWindow("09:00", "20:00", ("mon", "tue", "wed", "thu", "fri", "sat", "sun"), "x"), "x": Exit()},
        "w",
    )
    z = ZoneInfo("Asia/Kathmandu")
    night = datetime(2026, 3, 10, 23, 0, tzinfo=z).timestamp()
    out = M.advance(j, state("w"), M.Facts(traits={"timezone": "Asia/Kathmandu"}), night)
    assert out.wake_at == datetime(2026, 3, 11, 9, 0, tzinfo=z).timestamp()
    inside = M.advance(j, state("w"), M.Facts(traits={"timezone": "Asia/Kathmandu"}), night + 11 * 3600)
    assert inside.status == "exited"


def test_window_step_uses_the_policys_dst_correct_window() -> None:
    """The machine has no copy of its own: a window whose start Berlin skips (02:30 on 29 March 2026) opens
    when the clock jumps to 03:00 (as `activate.policy.next_window_open` says); an unknown zone is UTC."""
    from omniweave.activate.policy import next_window_open

    assert M.next_window_open is next_window_open
    j = journey({"w": WaitUntilWindow("02:30", "04:00", ("SUN", "Monday"), "x"), "x": Exit()}, "w")
    berlin = ZoneInfo("Europe/Berlin")
    before = datetime(2026, 3, 28, 22, 0, tzinfo=ZoneInfo("UTC")).timestamp()
    out = M.advance(j, state("w"), M.Facts(traits={"timezone": "Europe/Berlin"}), before)
    assert datetime.fromtimestamp(out.wake_at or 0, berlin).isoformat() == "2026-03-29T03:00:00+02:00"
    out = M.advance(j, state("w"), M.Facts(traits={"timezone": "Mars/Base"}), before)
    assert datetime.fromtimestamp(out.wake_at or 0, ZoneInfo("UTC")).isoformat() == "2026-03-29T02:30:00+00:00"


def test_filters() -> None:
    f = M.filter_holds
    assert f(PropertyFilter("a", "eq", 1), {"a": "1"}) and not f(PropertyFilter("a", "ne", 1), {"a": 1})
    assert f(PropertyFilter("a", "in", ("x", "y")), {"a": "y"}) and f(PropertyFilter("a", "not_in", ("x",)), {"a": "z"})
    assert f(PropertyFilter("a", "exists"), {"a": 0}) and f(PropertyFilter("a", "missing"), {})
    assert f(PropertyFilter("a", "contains", "ap"), {"a": "laptop"}) and not f(PropertyFilter("a", "gt", 5), {})
    assert f(PropertyFilter("a", "lte", 5), {"a": 5}) and not f(PropertyFilter("a", "lt", 5), {"a": 5})


def test_run_id_is_deterministic() -> None:
    assert M.run_id("j", "P1", "m1") == M.run_id("j", "P1", "m1") != M.run_id("j", "P1", "m2")
