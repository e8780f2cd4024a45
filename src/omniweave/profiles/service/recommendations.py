"""Next-product recommendations: item-to-item co-purchase across online and store baskets.

Two products are related by the number of persons who bought both (online, in the app or at a
till: a person's purchases are one basket history whatever the channel, which is what identity
resolution buys). Each product keeps its `NEIGHBOURS` most related products; a person's
candidates are the neighbours of what they bought, scored by the sum of those counts, minus what
they already bought; the top `TOP_N` (ties by product id) are their recommendations. One Ibis
expression, DuckDB and Spark alike; written as the dataset `recommendations` (person_id,
recommended_products), which `build_profiles` adds to the profile as `recommended_products`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir

from omniweave.errors import InputError
from omniweave.events import spec
from omniweave.identity.persons import with_person
from omniweave.profiles.ranking import top
from omniweave.runtime import Runtime
from omniweave.storage.engine import dialect_of, to_arrow
from omniweave.storage.warehouse import write_dataset

NEIGHBOURS = 20
TOP_N = 5


@dataclass(frozen=True)
class RecommendationsSummary:
    persons: int
    products: int
    path: str


def recommendations_expr(
    events: ir.Table,
    identities: ir.Table,
    *,
    now: datetime | None = None,
    neighbours: int = NEIGHBOURS,
    top_n: int = TOP_N,
) -> ir.Table:
    """(person_id, recommended_products) for every buyer with at least one recommendation (on the engine of
    `events`)."""
    if neighbours < 1 or top_n < 1:
        raise InputError(f"got neighbours={neighbours}, top_n={top_n}; expected whole numbers >= 1", field="top_n")
    d = dialect_of(events)
    orders = events.filter(events.event == spec.ORDER_COMPLETED)
    if now is not None:
        orders = orders.filter(orders.timestamp <= ibis.literal(now, dt.Timestamp(timezone="UTC")))
    orders = with_person(orders, identities)
    lines = orders.select("person_id", item=d.products(d.json(orders.properties, "products")).unnest())
    bought = lines.select("person_id", product=lines.item.product_id).filter(ibis._.product.notnull()).distinct()
    other = bought.select(_person=bought.person_id, related=bought.product)
    pairs = bought.join(other, (bought.person_id == other._person) & (bought.product != other.related))
    together = pairs.group_by(["product", "related"]).aggregate(persons=pairs.count())
    ranked = together.mutate(
        _rn=ibis.row_number().over(group_by="product", order_by=[together.persons.desc(), together.related])
    )
    near = ranked.filter(ranked._rn < neighbours).select("product", "related", "persons")
    candidates = bought.join(near, "product")
    scored = candidates.group_by(["person_id", "related"]).aggregate(score=candidates.persons.sum())
    owned = bought.select(_p=bought.person_id, _owned=bought.product)
    fresh = scored.anti_join(owned, (scored.person_id == owned._p) & (scored.related == owned._owned))
    return top(fresh, "person_id", "related", [-fresh.score], top_n, "recommended_products")


def build_recommendations(runtime: Runtime, now: datetime | None = None) -> RecommendationsSummary:
    """Rebuild the `recommendations` dataset from the orders in the log and the resolved identities."""
    if not runtime.log.has_data("identities"):
        raise InputError(
            "no identities yet: run `omniweave resolve` before building recommendations", field="identities"
        )
    warehouse = runtime.warehouse()
    expr = recommendations_expr(
        warehouse.table("events"),
        warehouse.table("identities"),
        now=now.astimezone(UTC) if now else None,
    )
    table = to_arrow(expr.order_by("person_id"))
    path = write_dataset(runtime.log, "recommendations", table)
    products = {p for row in table.column("recommended_products").to_pylist() for p in row}
    return RecommendationsSummary(persons=table.num_rows, products=len(products), path=path)
