"""Channels: what each channel reached, engaged, converted and cost in a chosen period; the attribution models side
by side and where they disagree; the media-mix model's contributions, response curves and recommended budget.

Query parameters (a bad one is a 400 naming it):

- `period` (day, week, month; default month) and `at` (a day inside the period; default the latest period with a
  KPI), as on the Overview. The KPI catalogue, reach and engagement are per period; attribution runs on the
  journeys of the orders in [the period's first day, the next period's first day), which is
  `omniweave attribution --since <first day> --until <last day>`. A free since/until range is not offered: the
  KPI catalogue is per whole period only.
- `model`: the attribution model whose credited conversions, revenue and ROI the per-channel table shows
  (default markov); the attribution tables show every model.
- `total`: spend per period to split over the media-mix model's channels (default: as now), `omniweave budget
  --total`.

The media-mix model is the one `omniweave mmm fit` saved (the `mmm_fit` dataset): fitting takes far longer than a
page may (35 s on the 600-customer demo world), so the page never fits one; without a saved fit it says which
command makes one. The budget split is `omniweave budget`'s on that fit (its defaults: goal revenue, each channel
within ±50 % of its current spend, seed 0).

Every figure is a service function's: `kpi_report(by="channel")` (`omniweave kpis --by channel`),
`attribution_report` (`omniweave attribution`), `channel_reach` and `response_curves`
(measure/service/channel_figures.py), `saved_fit` (`omniweave mmm report`) and `budget_from_mmm`
(`omniweave budget`).
"""

from __future__ import annotations

import dataclasses
import math
from datetime import UTC, date, datetime, timedelta
from typing import Any

from omniweave.errors import InputError
from omniweave.measure.attribution import MODELS
from omniweave.measure.service.attribution import AttributionRequest, attribution_report
from omniweave.measure.service.budget import MediaBudgetRequest, budget_from_mmm
from omniweave.measure.service.channel_figures import channel_reach, response_curves
from omniweave.measure.service.kpis import PREVIOUS_PERIOD_KPIS
from omniweave.measure.service.mmm import SavedFit, saved_fit
from omniweave.measure.service.reports import KpiRequest, kpi_report
from omniweave.shells.web import view
from omniweave.shells.web.app import Context, page

DEFAULT_MODEL = "markov"
FIT_COMMAND = "omniweave mmm fit"


def period_end(start: date, period: str) -> date:
    """The first day of the period after the one starting `start`."""
    if period == "day":
        return start + timedelta(days=1)
    if period == "week":
        return start + timedelta(days=7)
    return (start.replace(day=28) + timedelta(days=4)).replace(day=1)


def parse_model(text: str | None) -> str:
    model = text or DEFAULT_MODEL
    if model not in MODELS:
        raise InputError(f"model must be one of {', '.join(MODELS)}, got {model!r}", field="model")
    return model


def parse_total(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        total = float(text)
    except ValueError:
        total = math.nan
    if not (math.isfinite(total) and total > 0):
        raise InputError(f"total must be a spend per period above 0, got {text!r}", field="total")
    return total


def bars(table: view.Table, x: str, series: list[str], description: str) -> view.Chart:
    """Horizontal bars of `series` per row of `table`, top to bottom in the table's order, tall enough for
    every bar of a row to be seen."""
    chart = view.bar_chart(table, x, series, description, horizontal=True)
    chart.option["yAxis"]["inverse"] = True
    chart.option["legend"] = {"top": 0, "type": "scroll"}
    chart.option["grid"]["top"] = 40
    return dataclasses.replace(chart, height=max(300, (6 * len(series) + 10) * len(table.rows) + 90))


@page("channels", "Channels")
def channels(ctx: Context) -> view.Page:
    period = view.parse_period(ctx.get("period"))
    at = view.parse_day(ctx.get("at"), "at")
    model = parse_model(ctx.get("model"))
    total = parse_total(ctx.get("total"))
    out = view.Page("dashboard/channels.html", "Channels")
    out.context.update(period=period, model=model, models=MODELS, total=ctx.get("total") or "", fit_command=FIT_COMMAND)
    kpis = ctx.cached(
        ("channels:kpis", period), lambda: kpi_report(ctx.runtime, KpiRequest(period=period, by="channel"))
    )
    periods = sorted({r["period"] for r in kpis.rows})
    if not periods:
        out.context.update(periods=[], chosen=None)
        add_media_mix(ctx, out, total)
        return out
    chosen = view.period_start(at, period).isoformat() if at else periods[-1]
    if chosen not in periods:
        raise InputError(
            f"no KPI has a value for the {period} starting {chosen}; the data covers {periods[0]} to {periods[-1]}",
            field="at",
        )
    start = date.fromisoformat(chosen)
    end = period_end(start, period)
    rows = [r for r in kpis.rows if r["period"] == chosen]
    out.context.update(
        periods=periods,
        chosen=chosen,
        last_day=(end - timedelta(days=1)).isoformat(),
        partial=any(r["partial"] for r in rows if r["kpi"] not in PREVIOUS_PERIOD_KPIS),
    )
    attribution, problem = _attribution(ctx, start, end)
    out.context["attribution_problem"] = problem
    _summary(ctx, out, period, chosen, model, attribution)
    _kpis_by_channel(out, period, chosen, rows)
    if attribution is not None:
        _attribution_tables(out, attribution)
    add_media_mix(ctx, out, total)
    return out


def _attribution(ctx: Context, start: date, end: date) -> tuple[dict[str, Any] | None, str | None]:
    """Every model's credit for the orders of [start, end) as `omniweave attribution --format json` prints it,
    or why there is none (a home without persons yet)."""
    since = datetime(start.year, start.month, start.day, tzinfo=UTC)
    until = datetime(end.year, end.month, end.day, tzinfo=UTC)
    try:
        return ctx.cached(
            ("channels:attribution", since, until),
            lambda: attribution_report(ctx.runtime, AttributionRequest(since=since, until=until)).to_dict(),
        ), None
    except InputError as exc:
        return None, str(exc)


def _summary(
    ctx: Context, out: view.Page, period: str, chosen: str, model: str, attribution: dict[str, Any] | None
) -> None:
    """One row per channel: persons reached and engaged, reported impressions and clicks, and `model`'s credited
    conversions and revenue, spend, ROAS and ROI."""
    reach = ctx.cached(("channels:reach", period), lambda: channel_reach(ctx.runtime, period=period))
    reached = {r["channel"]: r for r in reach.rows if r["period"] == chosen}
    credit = attribution["models"][model]["channels"] if attribution else {}
    earned = attribution["models"][model].get("returns", {}) if attribution else {}
    spend = attribution.get("spend", {}) if attribution else {}
    names = sorted({*reached, *credit, *spend}, key=lambda label: (label.startswith("("), label.casefold(), label))
    rows = []
    for name in names:
        r = reached.get(name, {})
        c = credit.get(name)
        e = earned.get(name)
        rows.append(
            (
                name,
                r.get("reached"),
                r.get("engaged"),
                r.get("engagement_rate"),
                r.get("impressions"),
                r.get("clicks"),
                c["conversions"] if c else None,
                c["value"] if c else None,
                spend.get(name),
                e["roas"] if e else None,
                e["roi"] if e else None,
            )
        )
    out.add(
        view.Table(
            "channels",
            f"Channels in the {period} starting {chosen} (credit by {model})",
            (
                "channel",
                "persons reached",
                "persons engaged",
                "engagement rate %",
                "impressions (reported)",
                "clicks (reported)",
                "conversions",
                "credited revenue",
                "spend",
                "ROAS",
                "ROI",
            ),
            tuple(rows),
        )
    )
    paid = tuple((row[0], row[8], row[7]) for row in rows if row[8])
    chart = bars(
        view.Table(
            "spend_revenue", f"Spend and revenue credited by {model}", ("channel", "spend", "credited revenue"), paid
        ),
        "channel",
        ["spend", "credited revenue"],
        f"Spend and revenue credited by the {model} model per paid channel, in the {period} starting {chosen}",
    )
    out.add(chart)
    out.context.update(summary=out.tables["channels"], spend_chart=chart)


def _kpis_by_channel(out: view.Page, period: str, chosen: str, rows: list[dict[str, Any]]) -> None:
    """The KPI catalogue broken down by channel for the chosen period: a row per KPI, a column per channel."""
    channels = sorted({r["dimension_value"] for r in rows})
    values: dict[tuple[str, str, str], dict[str, float]] = {}
    for r in rows:
        values.setdefault((r["group"], r["kpi"], r["unit"]), {})[r["dimension_value"]] = r["value"]
    out.add(
        view.Table(
            "kpis",
            f"KPIs by channel, {period} starting {chosen}",
            ("group", "kpi", "unit", *channels),
            tuple((*key, *(cells.get(c) for c in channels)) for key, cells in values.items()),
        )
    )


def _attribution_tables(out: view.Page, doc: dict[str, Any]) -> None:
    """Credited conversions and revenue per channel and model, side by side, and each model's ROI."""
    models = list(doc["models"])
    labels = list(next(iter(doc["models"].values()))["channels"]) if models else []
    tables = {}
    for measure, title in (("conversions", "Conversions credited"), ("value", "Revenue credited")):
        tables[measure] = view.Table(
            "attribution" if measure == "conversions" else "attribution_value",
            f"{title} per channel by each model (total {doc['total_conversions' if measure == 'conversions' else 'total_conversion_value']:,.2f})",
            ("channel", *models),
            tuple((ch, *(doc["models"][m]["channels"][ch][measure] for m in models)) for ch in labels),
        )
    disagree = bars(
        tables["conversions"],
        "channel",
        models,
        "Conversions credited to each channel by each attribution model, side by side: where the bars of a channel "
        "differ in length, the models disagree about it",
    )
    out.add(disagree)
    out.add(tables["value"])
    spend = doc.get("spend", {})
    paid = [label for label in labels if spend.get(label, 0.0) > 0]  # the labels with spend have a return
    out.add(
        view.Table(
            "attribution_roi",
            "Return on spend by model (ROI = credited revenue / spend − 1)",
            ("channel", "spend", *models),
            tuple(
                (label, spend[label], *(doc["models"][m]["returns"][label]["roi"] for m in models)) for label in paid
            ),
        )
    )
    out.context.update(attribution=doc, disagree=disagree)


def add_media_mix(ctx: Context, out: view.Page, total: float | None) -> None:
    """The saved media-mix fit: per-channel figures, contributions over time, response curves, and the budget split
    `omniweave budget` recommends on it (with `total`). Nothing when no fit is saved (the page names the command)."""
    saved = ctx.cached(("channels:mmm",), lambda: saved_fit(ctx.runtime))
    out.context["mmm"] = saved.document if saved else None
    if saved is None:
        return
    doc = saved.document
    unit = "day" if doc["period_days"] == 1 else "week"
    columns = (
        "channel",
        "spend",
        "contribution",
        "contribution_low",
        "contribution_high",
        "roi",
        "roi_low",
        "roi_high",
        "marginal_roi",
        "half_life",
    )
    out.add(
        view.Table(
            "mmm_channels",
            f"Media-mix model from {doc['first_day']}: what each channel added ({doc['confidence']:.0%} intervals)",
            columns,
            tuple(tuple(r[c] for c in columns) for r in doc["channels"]),
        )
    )
    contributions = _contributions(doc, unit)
    curves = _curves(saved, unit)
    out.add(contributions)
    out.add(curves)
    try:
        report = ctx.cached(
            ("channels:budget", total), lambda: budget_from_mmm(ctx.runtime, MediaBudgetRequest(total=total))
        )
    except InputError as exc:
        if total is None:
            raise
        raise InputError(f"{total:g} per period cannot be split: {exc.reason}", field="total") from exc
    records = report.records()
    split = bars(
        view.Table(
            "budget",
            f"Recommended spend per {unit} under the media-mix model",
            ("channel", "spend_now", "recommended", "minimum", "maximum", "revenue_then", "marginal_return"),
            tuple(
                tuple(
                    r[c]
                    for c in (
                        "channel",
                        "spend_now",
                        "recommended",
                        "minimum",
                        "maximum",
                        "revenue_then",
                        "marginal_return",
                    )
                )
                for r in records
            ),
        ),
        "channel",
        ["spend_now", "recommended"],
        f"Spend per {unit} per channel now and as recommended by the media-mix model; the table gives each "
        "channel's allowed range",
    )
    out.add(split)
    a = report.advice
    low, high = a.change_interval
    out.add(
        view.Table(
            "budget_change",
            f"Expected {a.goal} per {unit} with the recommended split",
            (
                "goal",
                "total",
                "current",
                "recommended",
                "change",
                "change_low",
                "change_high",
                "confidence",
                "replicates",
                "unspent",
            ),
            (
                (
                    a.goal,
                    a.total,
                    a.current_value,
                    a.recommended_value,
                    a.change,
                    low,
                    high,
                    a.confidence,
                    a.replicates,
                    a.unspent,
                ),
            ),
        )
    )
    out.context.update(
        mmm_unit=unit, contributions_chart=contributions, curves_chart=curves, budget_chart=split, advice=a
    )


def _contributions(doc: dict[str, Any], unit: str) -> view.Chart:
    """Revenue per period: each channel's contribution stacked; the actual revenue, the fit and the baseline as lines
    (the baseline is not stacked under the channels: a fit's baseline may dip below zero)."""
    series = doc["series"]
    channels = [r["channel"] for r in doc["channels"]]
    table = view.Table(
        "mmm_contributions",
        f"Revenue per {unit} and what the model puts it down to",
        ("period", "actual", "fitted", "baseline", *channels),
        tuple(
            (
                p,
                series["actual"][i],
                series["fitted"][i],
                series["baseline"][i],
                *(series[f"contribution_{c}"][i] for c in channels),
            )
            for i, p in enumerate(doc["periods"])
        ),
    )
    lines = [
        {"name": name, "type": "line", "showSymbol": False, "data": table.column(name), "lineStyle": {"width": 2}}
        for name in ("actual", "fitted", "baseline")
    ]
    stacked = [
        {"name": c, "type": "line", "stack": "channels", "areaStyle": {}, "showSymbol": False, "data": table.column(c)}
        for c in channels
    ]
    option = {
        "tooltip": {"trigger": "axis"},
        "legend": {"top": 0, "type": "scroll"},
        "grid": {"left": 64, "right": 16, "top": 56, "bottom": 32},
        "xAxis": {"type": "category", "data": table.column("period")},
        "yAxis": {"type": "value", "name": f"revenue per {unit}"},
        "series": [*stacked, *lines],
    }
    return view.Chart(
        table,
        option,
        f"Revenue per {unit} over {len(doc['periods'])} {unit}s from {doc['first_day']}: each channel's contribution "
        "stacked, and the actual revenue, the model's fit and its baseline (what it expects without media) as lines",
        height=340,
    )


def _curves(saved: SavedFit, unit: str) -> view.Chart:
    """Each channel's response curve: revenue per period at a steady spend, against that spend as a multiple of
    the current one (so that channels of very different budgets share the axis)."""
    points = response_curves(saved)
    columns = ("channel", "times_current", "spend", "revenue", "marginal_return")
    table = view.Table(
        "mmm_curves",
        f"Response curves: revenue per {unit} at a steady spend",
        columns,
        tuple(tuple(p[c] for c in columns) for p in points),
    )
    channels = list(dict.fromkeys(p["channel"] for p in points))
    series: list[dict[str, Any]] = [
        {
            "name": c,
            "type": "line",
            "showSymbol": False,
            "data": [[p["times_current"], p["revenue"]] for p in points if p["channel"] == c],
        }
        for c in channels
    ]
    if series:
        series[0]["markLine"] = {
            "symbol": "none",
            "silent": True,
            "label": {"formatter": "now"},
            "lineStyle": {"type": "dashed", "color": "#4a4a55"},
            "data": [{"xAxis": 1}],
        }
    option = {
        "tooltip": {"trigger": "axis"},
        "legend": {"top": 0, "type": "scroll"},
        "grid": {"left": 64, "right": 16, "top": 56, "bottom": 40},
        "xAxis": {"type": "value", "name": "× current spend", "nameLocation": "middle", "nameGap": 24},
        "yAxis": {"type": "value", "name": f"revenue per {unit}"},
        "series": series,
    }
    return view.Chart(
        table,
        option,
        f"Each channel's response curve: expected revenue per {unit} at a steady spend from 0 to 3 times its "
        "current spend (1 = now); a flattening curve means the next unit of spend earns less",
        height=340,
    )
