"""The demo's journeys over the world's last days: the holdout's lift against the world's true effect, and
`journeys stats` against counts made from the sink, the ledger and the runs."""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa

from omniweave.settings import Settings
from tests.conftest import omniweave_cmd

pytestmark = pytest.mark.slow

WORLD = {"customers": 1000, "days": 28, "seed": 7, "journey_days": 14}
"""The smallest world whose last 14 days give the cart journey a holdout big enough for a test."""


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, Any]:
    from omniweave.demo.runner import run_demo

    settings = Settings(home=str(tmp_path_factory.mktemp("journeys") / "home"))
    return settings, run_demo(settings, console=None, **WORLD)


def _sink_keys(folder: Path) -> list[str]:
    from omniweave.demo.journeys import SINK_FILE

    lines = (folder / SINK_FILE).read_bytes().splitlines()
    return [str(orjson.loads(line)["key"]) for line in lines if line.strip()]


def test_the_cart_journeys_holdout_lift_recovers_the_true_effect(demo: tuple[Settings, Any]) -> None:
    _, result = demo
    truths = {t.journey: t for t in result.journeys.journeys}
    cart = truths["cart_abandonment"]
    assert cart.held_out > 0 and cart.treated > cart.held_out and cart.sent > 0
    assert cart.true_uplift is not None and cart.true_uplift > 0
    low, high = cart.interval
    assert low <= cart.true_uplift <= high, (cart.measured, cart.true_uplift)
    assert cart.covered
    # the truth written beside the data is the one printed
    doc = json.loads((result.folder / "ground_truth" / "journeys.json").read_text())
    row = doc["journeys"]["cart_abandonment"]
    assert row["true_uplift"] == pytest.approx(cart.true_uplift, abs=1e-6)
    assert row["expected_incremental_conversions"] == pytest.approx(cart.true_uplift * cart.treated, abs=1e-3)
    # every other journey with reactions and both groups is covered too, or says it is not
    printed = {r["journey"]: r for r in result.journeys.rows()}
    for name, truth in truths.items():
        assert printed[name]["truth in interval"] == ("" if truth.covered is None else "yes" if truth.covered else "NO")


def test_journeys_stats_equal_counts_from_the_sink_ledger_and_runs(demo: tuple[Settings, Any]) -> None:
    from omniweave.activate.journeys.machine import in_holdout
    from omniweave.activate.service.journey_stats import builtin_paths, load_journey_file
    from omniweave.runtime import Runtime
    from omniweave.storage.ops.tables import sends
    from omniweave.storage.ops.tables.journeys import journey_runs

    settings, result = demo
    sunk = Counter(key.split(":")[1] for key in _sink_keys(result.folder))
    runtime = Runtime(settings)
    try:
        with runtime.store.engine.connect() as conn:
            delivered = Counter(
                str(key).split(":")[1]
                for (key,) in conn.execute(
                    sa.select(sends.c.key).where(sends.c.key.like("j:%"), sends.c.status == "delivered")
                )
            )
            runs = conn.execute(
                sa.select(journey_runs.c.journey, journey_runs.c.person_id, journey_runs.c.status)
            ).all()
    finally:
        runtime.close()
    assert sunk == delivered  # each message the ledger delivered is in the sink once
    journeys = {p.stem: load_journey_file(p) for p in builtin_paths()}
    for truth in result.journeys.journeys:
        name = truth.journey
        mine = [(person, status) for j, person, status in runs if j == name]
        held = [status for person, status in mine if in_holdout(journeys[name], person)]
        treated = [status for person, status in mine if not in_holdout(journeys[name], person)]
        assert truth.entered == len(mine), name
        assert truth.sent == sunk.get(name, 0), name
        assert (truth.treated, truth.held_out) == (len(treated), len(held)), name
        if truth.measured:
            rate = treated.count("converted") / len(treated) - held.count("converted") / len(held)
            assert truth.measured["difference"] == pytest.approx(rate, abs=1e-12), name
    # the same numbers `omniweave journeys stats` prints
    out = subprocess.run(
        omniweave_cmd("--home", settings.home, "journeys", "stats", "cart_abandonment", "--format", "json"),
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    stats = json.loads(out.stdout)
    cart = next(t for t in result.journeys.journeys if t.journey == "cart_abandonment")
    assert stats["lift"]["difference"] == pytest.approx(cart.measured["difference"], abs=1e-12)
    assert stats["lift"]["difference_interval"] == pytest.approx(list(cart.interval), abs=1e-12)
    assert (stats["treated"]["runs"], stats["held_out"]["runs"]) == (cart.treated, cart.held_out)


def test_the_customers_reactions_are_in_the_warehouse(demo: tuple[Settings, Any]) -> None:
    from omniweave.storage.query import run_query

    settings, result = demo
    m = result.manifest
    (row,) = run_query(
        settings,
        "SELECT count(*) FILTER (WHERE message_id LIKE 'demo-journey-%') AS reactions, count(*) AS orders "
        "FROM events WHERE event = 'Order Completed' AND channel != 'store'",
    ).to_pylist()
    assert row["reactions"] == result.journeys.reaction_orders > 0
    assert row["orders"] == m["orders_online"] + result.journeys.reaction_orders  # the world's own, all there
    (rsvp,) = run_query(settings, "SELECT count(*) AS n FROM events WHERE event = 'Store Event RSVP'").to_pylist()
    assert rsvp["n"] == result.journeys.reactions.get("Store Event RSVP", 0) > 0
