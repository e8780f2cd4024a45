"""Next-product recommendations from co-purchases online and in store, and their place in the profile."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from omniweave.errors import InputError
from omniweave.events import spec
from omniweave.events.normalize import normalize_event
from omniweave.profiles.service.build import build_profiles, write_identities
from omniweave.profiles.service.recommendations import build_recommendations, recommendations_expr
from omniweave.storage.engine import to_arrow
from omniweave.storage.eventlog import events_to_table
from tests.conftest import on_engine

START = datetime(2026, 5, 1, tzinfo=UTC)
# who bought what (person: [(channel, [products])]); online and till baskets of one person count together
BASKETS = {
    "P1": [("web", ["A", "B"]), ("store", ["C"])],
    "P2": [("store", ["A", "B"])],
    "P3": [("app", ["A", "C"]), ("store", ["D"])],
    "P4": [("web", ["B", "D"])],
    "P5": [("store", ["A"])],
    "P6": [("web", ["E"])],
}


def world() -> list[dict[str, Any]]:
    events, n = [], 0
    for person, baskets in BASKETS.items():
        for channel, products in baskets:
            n += 1
            raw = {
                "type": "track",
                "event": spec.ORDER_COMPLETED,
                "userId": f"u{person}",
                "messageId": f"o{n}",
                "timestamp": (START + timedelta(days=n)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "properties": {
                    "order_id": f"o{n}",
                    "revenue": 10.0 * len(products),
                    "channel": channel,
                    "products": [{"product_id": p, "quantity": 1, "price": 10.0} for p in products],
                },
            }
            events.append(normalize_event(raw, received_at=START))
    return events


@pytest.fixture
def seeded(runtime):
    runtime.log.append("events", events_to_table(world(), "test"), "orders")
    write_identities(runtime, [("user_id", f"u{p}", p) for p in BASKETS])
    return runtime


def expected(top_n: int = 5) -> dict[str, list[str]]:
    """By hand: related(x, y) = persons who bought both; a person's score for y = sum over their x."""
    owned = {p: {x for _, basket in b for x in basket} for p, b in BASKETS.items()}
    related: dict[tuple[str, str], int] = {}
    for items in owned.values():
        for x in items:
            for y in items - {x}:
                related[x, y] = related.get((x, y), 0) + 1
    out = {}
    for person, items in owned.items():
        scores: dict[str, int] = {}
        for (x, y), count in related.items():
            if x in items and y not in items:
                scores[y] = scores.get(y, 0) + count
        if scores:
            out[person] = sorted(scores, key=lambda y: (-scores[y], y))[:top_n]
    return out


def test_recommendations_are_co_purchases_not_yet_bought(seeded):
    summary = build_recommendations(seeded)
    rows = {
        r["person_id"]: r["recommended_products"]
        for r in seeded.warehouse().sql("select * from recommendations").to_pylist()
    }
    assert rows == expected()
    # P5 bought only A, which went with B (P1, P2), C (P1, P3) and D (P3)
    assert rows["P5"] == ["B", "C", "D"] and "P6" not in rows
    assert summary.persons == len(rows)


def test_the_profile_carries_them(seeded):
    build_recommendations(seeded)
    build_profiles(seeded, now=START + timedelta(days=30), traits=[])
    profiles = {r["person_id"]: r for r in seeded.warehouse().sql("select * from profiles").to_pylist()}
    assert profiles["P5"]["recommended_products"] == ["B", "C", "D"]
    assert profiles["P6"]["recommended_products"] == []


def test_bad_sizes_and_missing_identities(seeded, tmp_path):
    wh = seeded.warehouse()
    with pytest.raises(InputError, match="whole numbers >= 1"):
        recommendations_expr(wh.table("events"), wh.table("identities"), top_n=0)
    from omniweave.runtime import Runtime
    from omniweave.settings import Settings

    empty = Runtime(Settings(home=str(tmp_path / "empty")))
    try:
        with pytest.raises(InputError, match="omniweave resolve"):
            build_recommendations(empty)
    finally:
        empty.close()


def test_duckdb_and_spark_agree(seeded, spark_session):
    duck, spark = seeded.warehouse(), on_engine(seeded, "spark", spark_session).warehouse()
    on_duck = to_arrow(recommendations_expr(duck.table("events"), duck.table("identities")).order_by("person_id"))
    on_spark = to_arrow(recommendations_expr(spark.table("events"), spark.table("identities")).order_by("person_id"))
    assert on_duck.to_pylist() == on_spark.to_pylist() and on_duck.num_rows == len(expected())


def test_cli_builds_them(seeded, settings):
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "omniweave", "--home", settings.home, "recommendations", "build"],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert f"recommendations for {len(expected())} persons" in done.stdout
