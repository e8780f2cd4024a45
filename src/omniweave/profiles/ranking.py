"""Per-key rankings as Ibis expressions: the first values of each person (or product) in an order, used by
the profile columns (favourite products, preferred channel) and the recommendations."""

from __future__ import annotations

from collections.abc import Sequence

import ibis
import ibis.expr.types as ir


def ordered(table: ir.Table, key: str, value: str, order: Sequence[ir.Value]) -> ir.Table:
    """Per `key`, `_items`: a struct (order..., v=value) per row, sorted ascending: by `order` (negate a score to
    put the highest first), ties by the value.

    Sorting each key's few rows in a list costs less than ranking all rows in a window.
    """
    fields: dict[str, ir.Value] = {f"k{i}": o for i, o in enumerate(order)}
    grouped = table.group_by(key).aggregate(_items=ibis.struct({**fields, "v": table[value]}).collect())
    return grouped.mutate(_items=grouped._items.sort())


def top(table: ir.Table, key: str, value: str, order: Sequence[ir.Value], n: int, name: str) -> ir.Table:
    """Per `key`, the first `n` values in `order` (see `ordered`), as the list `name`."""
    ranked = ordered(table, key, value, order)
    return ranked.select(key, **{name: ranked._items[:n].map(lambda item: item.v)})


def best(table: ir.Table, key: str, value: str, order: Sequence[ir.Value], name: str) -> ir.Table:
    """Per `key`, the first value in `order` (see `ordered`), as the column `name`."""
    ranked = ordered(table, key, value, order)
    return ranked.select(key, **{name: ranked._items[0].v})
