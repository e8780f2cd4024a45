"""Readings of Segment-spec property and trait values as Ibis expressions, shared by every stage that reads
them from the log (profiles, segments, measure): one definition of an order's value and of a stated yes/no."""

from __future__ import annotations

import ibis
import ibis.expr.types as ir


def order_value(revenue: ir.StringValue, total: ir.StringValue) -> ir.FloatingValue:
    """An order's value from the text of its `revenue` property, else `total`, else 0 (Segment's e-commerce spec)."""
    return ibis.coalesce(revenue.cast("float64"), total.cast("float64"), ibis.literal(0.0))


def yes_no(raw: ir.StringValue) -> ir.BooleanValue:
    """A stated yes/no (JSON true/false, 1/0, yes/no, any case) as a boolean; anything else is NULL."""
    said = raw.lower()
    return ibis.cases(
        (said.isin(("true", "1", "yes")), True), (said.isin(("false", "0", "no")), False), else_=ibis.null("boolean")
    )
