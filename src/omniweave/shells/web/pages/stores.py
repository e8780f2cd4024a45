"""Stores: per store, for a chosen period, its visits and visitors, sales and sales per square foot (the KPI
catalogue by store: `measure.service.reports.kpi_report`, the same as `omniweave kpis --by store`), its coupon
redemptions and the share of its sales bought by people touched online first, or online at any time before
(`measure.service.store_figures.store_figures`, whose docstring defines them). `?store=<id>` is one store's page:
those figures over time, and its local campaigns and in-store events (`store_activity`)."""

from __future__ import annotations

from typing import Any

from omniweave.errors import InputError
from omniweave.measure.service.reports import KpiReport, KpiRequest, kpi_report
from omniweave.measure.service.store_figures import StoreFigures, store_activity, store_directory, store_figures
from omniweave.shells.web import view
from omniweave.shells.web.app import Context, page

STORE_KPIS = ("store_visits", "store_visitors", "revenue_in_store", "sales_per_square_foot")
"""The catalogue's KPIs a store's row shows (docs/kpis.md)."""
COLUMNS = (
    "store",
    "name",
    "visits",
    "visitors",
    "sales",
    "sales per sq ft",
    "coupon redemptions",
    "online-first share %",
    "online-before share %",
    "partial",
)
"""The `stores` table (and its CSV): visits = store_visits, visitors = store_visitors, sales = revenue_in_store,
sales per sq ft = sales_per_square_foot (the KPI catalogue); the rest from store_figures."""
COUNTS = ("count", "persons")
"""KPI units shown as whole numbers."""
TREND_PERIODS = {"day": 62, "week": 26, "month": 24}
"""Periods a store's charts show, ending at the chosen one."""


def _kpis(ctx: Context, period: str) -> KpiReport:
    return ctx.cached(
        ("stores", "kpis", period), lambda: kpi_report(ctx.runtime, KpiRequest(period=period, by="store"))
    )


def _figures(ctx: Context, period: str) -> StoreFigures:
    return ctx.cached(("stores", "figures", period), lambda: store_figures(ctx.runtime, period=period))


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


@page("stores", "Stores")
def stores(ctx: Context) -> view.Page:
    period = view.parse_period(ctx.get("period"))
    at = view.parse_day(ctx.get("at"), "at")
    wanted = ctx.get("store")
    report, figures = _kpis(ctx, period), _figures(ctx, period)
    directory: dict[str, dict[str, Any]] = ctx.cached(("stores", "directory"), lambda: store_directory(ctx.runtime))
    # per (period, store): the catalogue's store KPIs (value and partial) and store_figures' row
    kpis: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for r in report.rows:
        if r["kpi"] in STORE_KPIS and r["dimension_value"]:
            kpis.setdefault((r["period"], r["dimension_value"]), {})[r["kpi"]] = r
    extra = {(r["period"], r["store_id"]): r for r in figures.rows}
    known = sorted(set(directory) | {s for _, s in kpis} | {s for _, s in extra})
    periods = sorted({p for p, _ in kpis} | {p for p, _ in extra})
    if wanted is not None and wanted not in known:
        listed = ", ".join(known) if known else "none yet (import the stores, till receipts or store visits)"
        raise InputError(f"no store {wanted!r}; the stores are {listed}", field="store")
    title = "Stores" if wanted is None else f"Stores · {_name(directory, wanted)}"
    out = view.Page("dashboard/stores.html", title)
    out.context.update(period=period, periods=periods, chosen=None, store=wanted, directory=directory)
    if not periods:
        return out
    chosen = view.period_start(at, period).isoformat() if at else periods[-1]
    if chosen not in periods:
        raise InputError(
            f"no store has a figure for the {period} starting {chosen}; the data covers {periods[0]} to {periods[-1]}",
            field="at",
        )

    def row(p: str, store: str) -> tuple[Any, ...]:
        k, f = kpis.get((p, store), {}), extra.get((p, store), {})

        def value(name: str) -> Any:
            found = k[name]["value"] if name in k else None
            return int(found) if found is not None and k[name]["unit"] in COUNTS and found.is_integer() else found

        return (
            store,
            _name(directory, store, with_id=False),
            value("store_visits"),
            value("store_visitors"),
            value("revenue_in_store"),
            value("sales_per_square_foot"),
            f.get("coupon_redemptions"),
            _round(f.get("online_first_share")),
            _round(f.get("online_before_share")),
            any(r.get("partial") for r in k.values()),
        )

    out.context.update(chosen=chosen, columns=COLUMNS)
    if wanted is None:
        _all_stores(out, period, chosen, [row(chosen, s) for s in known if (chosen, s) in kpis or (chosen, s) in extra])
    else:
        index = periods.index(chosen)
        window = periods[max(0, index - TREND_PERIODS[period] + 1) : index + 1]
        _one_store(ctx, out, period, chosen, wanted, [(p, row(p, wanted)) for p in window])
    return out


def _name(directory: dict[str, dict[str, Any]], store: str, *, with_id: bool = True) -> str:
    name = directory.get(store, {}).get("name")
    if not name:
        return store
    return f"{name} ({store})" if with_id else str(name)


def _all_stores(out: view.Page, period: str, chosen: str, rows: list[tuple[Any, ...]]) -> None:
    table = view.Table("stores", f"Stores in the {period} starting {chosen}", COLUMNS, tuple(rows))
    out.add(table)
    label = [f"{r[1]} ({r[0]})" if r[1] != r[0] else r[0] for r in rows]
    sqft = view.bar_chart(
        view.Table(
            "sales_per_sqft",
            "Sales per square foot",
            ("store", "sales per sq ft"),
            tuple((name, r[5]) for name, r in zip(label, rows, strict=True)),
        ),
        "store",
        ["sales per sq ft"],
        f"In-store sales per square foot of floor area, per store, in the {period} starting {chosen}",
        horizontal=True,
    )
    online = view.bar_chart(
        view.Table(
            "online_share",
            "Share of sales from people touched online",
            ("store", "online first %", "online before %"),
            tuple((name, r[7], r[8]) for name, r in zip(label, rows, strict=True)),
        ),
        "store",
        ["online first %", "online before %"],
        f"Per store, the % of in-store sales (by known buyers) whose buyer's first touch was online, and whose buyer "
        f"had any online touch before the purchase, in the {period} starting {chosen}",
        horizontal=True,
    )
    for chart in (sqft, online):
        chart.option["yAxis"]["inverse"] = True  # the first store on top, as in the table
        out.add(chart)
    out.context.update(rows=rows, charts=[sqft, online], partial_any=any(r[-1] for r in rows))


def _one_store(
    ctx: Context, out: view.Page, period: str, chosen: str, store: str, series: list[tuple[str, tuple[Any, ...]]]
) -> None:
    history = view.Table(
        "store_periods",
        f"{_name(out.context['directory'], store)} per {period}",
        ("period", *COLUMNS[2:]),
        tuple((p, *r[2:]) for p, r in series),
    )
    out.add(history)
    traffic = view.line_chart(
        view.Table(
            "trend_traffic",
            "Visits, visitors and coupon redemptions",
            ("period", "visits", "visitors", "coupon redemptions"),
            tuple((p, r[2], r[3], r[6]) for p, r in series),
        ),
        "period",
        ["visits", "visitors", "coupon redemptions"],
        f"Store visits, distinct visitors and coupon redemptions per {period}, over {len(series)} {period}s",
    )
    sales = view.line_chart(
        view.Table(
            "trend_sales",
            "Sales per square foot",
            ("period", "sales per sq ft"),
            tuple((p, r[5]) for p, r in series),
        ),
        "period",
        ["sales per sq ft"],
        f"In-store sales per square foot of floor area per {period}, over {len(series)} {period}s",
    )
    online = view.line_chart(
        view.Table(
            "trend_online",
            "Share of sales from people touched online (%)",
            ("period", "online first %", "online before %"),
            tuple((p, r[7], r[8]) for p, r in series),
        ),
        "period",
        ["online first %", "online before %"],
        f"Per {period}, the % of the store's sales (by known buyers) whose buyer's first touch was online, and whose "
        f"buyer had any online touch before the purchase, over {len(series)} {period}s",
        y_name="%",
    )
    for chart in (traffic, sales, online):
        out.add(chart)
    activity = ctx.cached(("stores", "activity", store), lambda: store_activity(ctx.runtime, store))
    campaigns = view.Table(
        "campaigns",
        "Local campaigns",
        (
            "campaign",
            "coupon redemptions",
            "redeemed order revenue",
            "other events",
            "persons",
            "first day",
            "last day",
        ),
        tuple(
            (
                c["campaign"],
                c["coupon_redemptions"],
                c["redeemed_order_revenue"],
                c["other_events"],
                c["persons"],
                c["first_day"],
                c["last_day"],
            )
            for c in activity.campaigns
        ),
    )
    gatherings = view.Table(
        "store_events",
        "In-store events",
        ("event", "name", "RSVPs", "attended", "first day", "last day"),
        tuple(
            (e["event_id"], e["event_name"], e["rsvps"], e["attended"], e["first_day"], e["last_day"])
            for e in activity.store_events
        ),
    )
    out.add(campaigns)
    out.add(gatherings)
    now = dict(series)[chosen]
    out.context.update(
        now=dict(zip(COLUMNS, now, strict=True)),
        charts=[traffic, sales, online],
        info=out.context["directory"].get(store, {}),
        store_name=_name(out.context["directory"], store),
    )
