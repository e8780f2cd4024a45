"""Persona figures say over whom they are taken, and a persona's name promises only what its rule selects:
a persona of non-buyers shows no order value or CLV of its one buyer, and an age band stays out of a
name when the rule does not state the age."""

from __future__ import annotations

from typing import Any

import numpy as np

from omniweave.segments.personas import BUYER_KPIS, MIN_BUYERS_FOR_AVERAGES, suggest_personas
from omniweave.shells.cli.personas import _figures


def _world(seed: int = 2) -> dict[str, list[Any]]:
    """Store buyers in their 50s and 60s, online buyers in their 20s, and browsers who have not bought but one
    (an order of 1.75 with a CLV of 481); the browsers and online buyers also differ in age."""
    rng = np.random.default_rng(seed)
    cols: dict[str, list[Any]] = {
        k: []
        for k in (
            "person_id",
            "recency_days",
            "orders",
            "online_orders",
            "store_orders",
            "total_revenue",
            "average_order_value",
            "clv_12m",
            "consent_email",
            "preferred_channel",
            "engagement_by_channel",
            "favourite_categories",
            "age",
        )
    }
    for kind in ("store", "online", "browser"):
        for i in range(100):
            if kind == "browser":
                orders = 1 if i == 0 else 0
                revenue, store, recency, clv = (1.75, 0, 40, 481.0) if orders else (0.0, 0, None, None)
                engagement = [{"channel": "web", "score": int(rng.integers(1, 6))}]
                age = int(rng.integers(50, 60))
            else:
                orders = int(rng.integers(2, 6))
                aov = rng.uniform(120, 180) if kind == "store" else rng.uniform(20, 35)
                revenue, recency, clv = round(orders * aov, 2), int(rng.integers(1, 30)), float(orders * aov * 1.5)
                store = orders if kind == "store" else 0
                channel = "store" if kind == "store" else "web"
                engagement = [{"channel": channel, "score": 5 * orders}]
                age = int(rng.integers(50, 70)) if kind == "store" else int(rng.integers(20, 30))
            cols["person_id"].append(f"{kind}-{i:03d}")
            cols["recency_days"].append(recency)
            cols["orders"].append(orders)
            cols["online_orders"].append(orders - store)
            cols["store_orders"].append(store)
            cols["total_revenue"].append(revenue)
            cols["average_order_value"].append(round(revenue / orders, 2) if orders else None)
            cols["clv_12m"].append(clv)
            cols["consent_email"].append(bool(rng.random() < 0.5))
            cols["preferred_channel"].append(engagement[0]["channel"])
            cols["engagement_by_channel"].append(engagement)
            cols["favourite_categories"].append(["home"])
            cols["age"].append(age)
    return cols


def _browsers(result: Any) -> Any:
    return next(p for p in result.personas if p.buyers <= 1 and p.size >= 90)


def test_a_persona_of_non_buyers_shows_no_average_of_its_one_buyer() -> None:
    result = suggest_personas(_world(), k=3)
    browsers = _browsers(result)
    assert browsers.buyers == 1 and browsers.members == browsers.size
    assert browsers.kpis["buyers_share"] is not None and browsers.kpis["buyers_share"] < 0.02
    for key in BUYER_KPIS:  # not 1.75, not 481: one buyer is no figure about the persona
        assert browsers.kpis.get(key) is None, (key, browsers.kpis)
    assert {browsers.kpi_basis[k] for k in ("average_order_value", "clv_12m", "orders_per_buyer")} == {"buyers"}
    assert {browsers.kpi_basis[k] for k in ("revenue", "orders", "buyers_share")} == {"members"}
    assert "1.75" not in browsers.description and "1 of them" in browsers.description
    text = _figures(browsers)
    assert f"over all {browsers.size:,} members: revenue" in text
    assert f"over the 1 buyers (none shown: fewer than {MIN_BUYERS_FOR_AVERAGES} buyers)" in text
    assert "481" not in text and "1.75" not in text


def test_buyer_figures_are_over_buyers_with_their_count() -> None:
    cols = _world()
    result = suggest_personas(cols, k=3)
    store = next(p for p in result.personas if p.kpis["store_order_share"] == 1.0)
    members = [i for i, pid in enumerate(cols["person_id"]) if pid.startswith("store-")]
    assert store.buyers == store.members == 100
    revenue = sum(cols["total_revenue"][i] for i in members)
    orders = sum(cols["orders"][i] for i in members)
    assert store.kpis["average_order_value"] == round(revenue / orders, 2)
    assert store.kpis["clv_12m"] == round(float(np.mean([cols["clv_12m"][i] for i in members])), 2)
    assert "over the 100 buyers: " in _figures(store) and "AOV" in store.description


def test_an_age_band_is_in_the_name_only_when_the_rule_states_age() -> None:
    result = suggest_personas(_world(), k=3)
    described = [p for p in result.personas if any(t.startswith(("in their", "under", "over")) for t in p.traits)]
    assert described  # the clusters do differ in age, and their descriptions say so
    for p in result.personas:
        stated = {c["trait"] for c in p.where.get("all", [])}
        bands = [t for t in p.traits if t.startswith(("in their", "under 30", "over 60"))]
        for band in bands:
            assert (band in p.name) == ("age" in stated), (p.name, p.where)
        if "age" not in stated:
            assert not any(word in p.name for word in ("in their", "under 30", "over 60")), p.name
