"""Overview: the KPI catalogue's headline numbers for a chosen period, the change against the one before,
partial periods marked, online against in-store, and a sparkline per KPI; the four groups of the catalogue
(awareness, engagement, conversion, loyalty). The numbers are `measure.service.reports.kpi_report`'s: the
same as `omniweave kpis --period <p> --format json`."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from omniweave.errors import InputError
from omniweave.measure.service.reports import KpiRequest, kpi_report
from omniweave.shells.web import view
from omniweave.shells.web.app import Context, page

GROUPS = ("awareness", "engagement", "conversion", "loyalty")
SPARK_PERIODS = 12
"""Periods a sparkline shows, ending at the chosen one."""


def kpi_value(value: float | None, unit: str) -> str:
    """A KPI's value as `omniweave kpis` prints it (shells/cli/measure.py `_kpi_value`)."""
    if value is None:
        return "–"
    if unit == "count":
        return f"{value:,.0f}"
    return f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.2f}"


@page("overview", "Overview")
def overview(ctx: Context) -> view.Page:
    period = view.parse_period(ctx.get("period"))
    at = view.parse_day(ctx.get("at"), "at")
    report = ctx.cached(("kpis", period), lambda: kpi_report(ctx.runtime, KpiRequest(period=period)))
    rows = [r for r in report.rows if r["dimension"] == "all"]
    periods = sorted({r["period"] for r in rows})
    out = view.Page("dashboard/overview.html", "Overview")
    if not periods:
        out.context.update(period=period, periods=[], chosen=None, groups=[], split=None)
        return out
    chosen = view.period_start(at, period).isoformat() if at else periods[-1]
    if chosen not in periods:
        raise InputError(
            f"no KPI has a value for the {period} starting {chosen}; the data covers {periods[0]} to {periods[-1]}",
            field="at",
        )
    index = periods.index(chosen)
    previous = periods[index - 1] if index else None
    window = periods[max(0, index - SPARK_PERIODS + 1) : index + 1]
    by_kpi: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for r in rows:
        by_kpi[r["kpi"]][r["period"]] = r
    cards: dict[str, list[dict[str, Any]]] = {g: [] for g in GROUPS}
    table_rows = []
    for kpi, values in by_kpi.items():
        now = values.get(chosen)
        if now is None:
            continue
        before = values.get(previous) if previous else None
        delta = view.change(now["value"], before["value"] if before else None)
        series = [values[p]["value"] if p in values else None for p in window]
        card = {
            "kpi": kpi,
            "label": kpi.replace("_", " "),
            "scope": now["scope"],
            "unit": now["unit"],
            "value": kpi_value(now["value"], now["unit"]),
            "raw": now["value"],
            "previous": kpi_value(before["value"], now["unit"]) if before else "–",
            "delta": delta,
            "partial": bool(now.get("partial")),
            "spark": view.sparkline(series, label=f"{kpi} over the last {len(window)} {period}s"),
        }
        cards.setdefault(now["group"], []).append(card)
        table_rows.append(
            (
                now["group"],
                kpi,
                now["scope"],
                now["unit"],
                now["value"],
                before["value"] if before else None,
                None if delta is None else round(delta * 100, 2),
                bool(now.get("partial")),
            )
        )
    out.add(
        view.Table(
            "kpis",
            f"KPIs for the {period} starting {chosen}",
            ("group", "kpi", "scope", "unit", "value", "previous", "change %", "partial"),
            tuple(table_rows),
        )
    )
    split_rows = []
    for p in window:
        online = by_kpi.get("revenue_online", {}).get(p)
        store = by_kpi.get("revenue_in_store", {}).get(p)
        split_rows.append((p, online["value"] if online else None, store["value"] if store else None))
    split = view.bar_chart(
        view.Table("revenue_split", "Revenue online and in store", ("period", "online", "in store"), tuple(split_rows)),
        "period",
        ["online", "in store"],
        f"Revenue per {period}, online and in store, over the last {len(window)} {period}s",
        stacked=True,
    )
    out.add(split)
    scopes: dict[str, list[dict[str, Any]]] = {"online": [], "in-store": []}
    for group in GROUPS:
        for card in cards.get(group, []):
            if card["scope"] in scopes:
                scopes[card["scope"]].append(card)
    out.context.update(
        period=period,
        periods=periods,
        chosen=chosen,
        previous=previous,
        groups=[(g, cards.get(g, [])) for g in GROUPS],
        split=split,
        scopes=scopes,
        partial_any=any(c["partial"] for g in cards.values() for c in g),
    )
    return out
