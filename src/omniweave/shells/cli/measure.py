"""CLI commands of the measure stage: `attribution`, `kpis`, `budget` and `experiments ...`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from omniweave.shells.cli.common import OutputFormat, console, err_console, opened, reported
from omniweave.shells.render import Grid, emit, grid

if TYPE_CHECKING:
    from omniweave.measure.service.attribution import AttributionReport
    from omniweave.measure.service.budget import MediaBudgetReport
    from omniweave.measure.service.reports import BudgetReport, ExperimentAnalysis, KpiReport


experiments_app = typer.Typer(
    help="A/B and multi-arm tests recorded in the event log (docs/experiments.md).", no_args_is_help=True
)


def attribution(
    ctx: typer.Context,
    paths: Annotated[
        Path | None,
        typer.Option(
            help="A paths CSV (path, total_conversions, total_conversion_value, total_null); without it, journeys are built from the event log."
        ),
    ] = None,
    model: Annotated[
        str, typer.Option(help="first_touch, last_touch, linear, position_based, time_decay, markov, shapley or all.")
    ] = "all",
    format: Annotated[OutputFormat, typer.Option("--format", help="Output format.")] = OutputFormat.table,
    half_life: Annotated[
        float, typer.Option(help="time_decay: touches before the conversion at which a touch's weight halves.")
    ] = 1.0,
    allocation: Annotated[
        str, typer.Option(help="markov: global (totals split by removal effect) or per_journey.")
    ] = "global",
    order: Annotated[int, typer.Option(help="markov: order of the chain (a state is the last N channels).")] = 1,
    value_effects: Annotated[
        str,
        typer.Option(
            help="markov: value split by the removal effects of the value-weighted chain (value, "
            "ChannelAttribution's) or of the conversion chain (conversion)."
        ),
    ] = "value",
    lookback_days: Annotated[
        float, typer.Option(help="Event log: days before an order in which touches count.")
    ] = 30.0,
    dedup_minutes: Annotated[
        float,
        typer.Option(
            help="Event log: a touch on the same channel (or campaign) this soon after another counts once; 0 keeps all."
        ),
    ] = 30.0,
    by: Annotated[str, typer.Option(help="Event log: credit channels or campaigns (channel or campaign).")] = "channel",
    since: Annotated[
        str | None, typer.Option(help="Event log: first day (YYYY-MM-DD) or instant (ISO 8601) of the period.")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Event log: last day (YYYY-MM-DD, included) or end instant (ISO 8601, excluded).")
    ] = None,
    exposures: Annotated[
        bool, typer.Option(help="Event log: also count opens, impressions and received pushes as touches.")
    ] = False,
    engine: Annotated[
        str | None, typer.Option(help="Event log: duckdb or spark (default: the engine setting).")
    ] = None,
) -> None:
    """Credit conversions and value to channels with one attribution model, or all side by side.

    With --paths, on a paths file; otherwise on journeys built from the event log (docs/attribution.md),
    with ROAS and ROI wherever the spend dataset has spend for a channel or campaign.
    """
    from omniweave.measure.period import parse_moment
    from omniweave.measure.service.attribution import AttributionRequest, attribution_report, model_names

    where = str(paths) if paths is not None else "event log"
    hint = "" if paths is not None else " (or pass --paths FILE.csv to attribute a paths file)"
    with reported(where, hint):
        request = AttributionRequest(
            models=model_names(model, "--model"),
            paths=paths,
            half_life=half_life,
            allocation=allocation,
            order=order,
            value_effects=value_effects,
            lookback_days=lookback_days,
            dedup_minutes=dedup_minutes,
            by=by,
            since=parse_moment(since, "--since"),
            until=parse_moment(until, "--until", end=True),
            exposures=exposures,
        )
    if paths is not None:  # a file needs no home: no stores opened, no event-log machinery imported
        with reported(where, hint):
            report = attribution_report(None, request)
    else:
        with opened(ctx, engine) as rt, reported(where, hint):
            report = attribution_report(rt, request)
    emit(
        console,
        format,
        document=report.to_dict(),
        records=report.records(),
        columns=report.columns(),
        views=attribution_views(report),
    )


def amount(number: float) -> str:
    """A credit, spend or ratio with two decimals and thousands separators; never `-0.00`."""
    return f"{round(number, 2) + 0.0:,.2f}"


MODEL_SHORT = {"first_touch": "first", "last_touch": "last", "position_based": "position", "time_decay": "decay"}


def attribution_views(report: AttributionReport) -> list[Grid | str]:
    """The tables of an attribution report: credited conversions, credited value, and return on spend."""
    results = report.results
    key = report.journeys.by if report.journeys is not None else "channel"
    shown = report.labels
    views: list[Grid | str] = []
    for measure, total in (("conversions", report.table.total_conversions), ("value", report.table.total_value)):
        views.append(
            grid(
                [key, *(MODEL_SHORT.get(r.model, r.model) for r in results)],
                [[ch, *(amount(getattr(r, measure).get(ch, 0.0)) for r in results)] for ch in shown],
                title=f"credited {measure} (total {total:,.2f})",
            )
        )
    journeys = report.journeys
    if journeys is not None:
        views.append(
            f"{len(report.table.rows):,} distinct paths, {report.total_null:,.0f} journeys "
            f"without an order; {journeys.untouched_conversions:,.0f} orders "
            f"({journeys.untouched_value:,.2f}) had no touch in their {journeys.lookback_days:g}-day "
            "lookback and are not credited"
        )
        spend = report.spend
        if spend:
            views.append(
                grid(
                    [journeys.by, "spend", *(f"ROAS {MODEL_SHORT.get(r.model, r.model)}" for r in results)],
                    [
                        [
                            label,
                            amount(spend[label]),
                            *(amount(report.earned[r.model][label].roas) for r in results),
                        ]
                        for label in report.labels
                        if spend.get(label, 0.0) > 0
                    ],
                    title="return on spend (ROAS = credited value / spend; ROI = ROAS - 1)",
                )
            )
    return views


def kpis(
    ctx: typer.Context,
    period: Annotated[str, typer.Option(help="day, week or month.")] = "month",
    by: Annotated[str | None, typer.Option(help="A breakdown: channel, store or campaign.")] = None,
    kpi: Annotated[list[str] | None, typer.Option("--kpi", help="Only these KPIs (repeat the option).")] = None,
    since: Annotated[str | None, typer.Option(help="First day (YYYY-MM-DD).")] = None,
    until: Annotated[str | None, typer.Option(help="Last day (YYYY-MM-DD).")] = None,
    session_gap_minutes: Annotated[float, typer.Option(help="Inactivity that ends a web/app session.")] = 30.0,
    stores: Annotated[
        Path | None,
        typer.Option(help="A CSV with store_id, floor_area_sqft instead of the imported stores dataset."),
    ] = None,
    products: Annotated[
        Path | None,
        typer.Option(help="A CSV with sku (or product_id), cost instead of the imported products dataset."),
    ] = None,
    engine: Annotated[str | None, typer.Option(help="duckdb or spark (default: the engine setting).")] = None,
    format: Annotated[OutputFormat, typer.Option("--format", help="table, json or csv.")] = OutputFormat.table,
) -> None:
    """The omnichannel KPI catalogue (awareness, engagement, conversion, loyalty) per period (docs/kpis.md)."""
    from omniweave.measure.period import parse_day
    from omniweave.measure.service.reports import KpiRequest, kpi_report

    with reported():
        request = KpiRequest(
            period=period,
            by=by,
            kpis=tuple(kpi) if kpi else None,
            since=parse_day(since, "--since"),
            until=parse_day(until, "--until"),
            session_gap_minutes=session_gap_minutes,
            stores=stores,
            products=products,
        )
    with opened(ctx, engine) as rt:
        report = kpi_report(rt, request)
    emit(
        console,
        format,
        document=report.to_dict(),
        records=report.records(),
        columns=report.columns,
        views=kpi_views(report),
    )


def _kpi_value(value: float, unit: str) -> str:
    if unit == "count":
        return f"{value:,.0f}"
    return f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.2f}"


WIDE_PERIODS = 4
"""Up to this many periods, KPIs are shown a column per period (a trend reads across a row); beyond, a row
per period and KPI, so a long or sparse history does not become many narrow parts."""


def kpi_views(report: KpiReport) -> list[Grid | str]:
    """KPIs as a person reads them: one table per KPI group; a row per KPI (and breakdown value) with a
    column per period when there are few periods, else a row per period and KPI."""
    from omniweave.measure.service.kpis import PREVIOUS_PERIOD_KPIS

    request = report.request
    rows = report.rows
    periods = sorted({row["period"] for row in rows})
    # a period that is not whole (the current one, one the data starts or ends inside) is marked with "*"
    partial = {row["period"] for row in rows if row.get("partial") and row["kpi"] not in PREVIOUS_PERIOD_KPIS}

    def label(p: str) -> str:
        return (p[:7] if request.period == "month" else p) + ("*" if p in partial else "")

    def mark(row: dict[str, object]) -> str:  # a whole period's growth or retention against a partial one
        return "*" if row.get("partial") and row["period"] not in partial else ""

    title = f" KPIs per {request.period}" + (f" by {request.by}" if request.by else "")
    views: list[Grid | str] = []
    for group in dict.fromkeys(row["group"] for row in rows):
        mine = [row for row in rows if row["group"] == group]
        if len(periods) > WIDE_PERIODS:
            views.append(
                grid(
                    ["period", "kpi", *([request.by] if request.by else []), "value"],
                    [
                        [
                            label(r["period"]),
                            r["kpi"],
                            *([r["dimension_value"]] if request.by else []),
                            _kpi_value(r["value"], r["unit"])
                            + ("" if r["unit"] in ("count", "") else f" {r['unit']}")
                            + mark(r),
                        ]
                        for r in mine
                    ],
                    title=group + title,
                    keys=3 if request.by else 2,
                )
            )
            continue
        keyed: dict[tuple[str, ...], dict[str, str]] = {}
        units: dict[tuple[str, ...], str] = {}
        for row in mine:
            key = (row["kpi"], row["dimension_value"]) if request.by else (row["kpi"],)
            keyed.setdefault(key, {})[row["period"]] = _kpi_value(row["value"], row["unit"]) + mark(row)
            units[key] = row["unit"]
        columns = ["kpi", *([request.by] if request.by else []), "unit", *(label(p) for p in periods)]
        views.append(
            grid(
                columns,
                [[*key, units[key], *(cells.get(p, "") for p in periods)] for key, cells in keyed.items()],
                title=group + title,
                keys=len(columns) - len(periods),
            )
        )
    if not rows:
        views.append("no KPI has a value for these options")
    elif any(row.get("partial") for row in rows):
        views.append(
            "* a partial period (not over yet, or the data starts or ends inside it); growth and retention "
            "against a partial period are marked partial too (docs/kpis.md)"
        )
    return views


def budget(
    ctx: typer.Context,
    total: Annotated[float | None, typer.Option(help="Spend per period to split (default: the current mean).")] = None,
    bounds: Annotated[
        list[str] | None, typer.Option(help="channel=min:max spend per period (either side may be empty); repeatable.")
    ] = None,
    goal: Annotated[
        str, typer.Option(help="revenue, or profit (margin × revenue − spend; may leave some unspent).")
    ] = "revenue",
    margin: Annotated[
        float | None, typer.Option(help="Gross margin for --goal profit (default: the products').")
    ] = None,
    basis: Annotated[str, typer.Option(help="mmm (the media-mix model) or attribution (attributed revenue).")] = "mmm",
    refit: Annotated[bool, typer.Option(help="mmm: fit the model again even if a fit is saved.")] = False,
    seed: Annotated[int, typer.Option(help="Seed (same seed, same split and interval).")] = 0,
    period_days: Annotated[int, typer.Option(help="attribution: days per period of the history.")] = 7,
    model: Annotated[str, typer.Option(help="attribution: the model that credits revenue to channels.")] = "markov",
    lookback_days: Annotated[
        float, typer.Option(help="attribution: touches this many days before an order count.")
    ] = 30.0,
    max_change: Annotated[
        float, typer.Option(help="Keep each channel within this share of its current spend (-1: no limit).")
    ] = 0.5,
    bootstrap: Annotated[int, typer.Option(help="attribution: bootstrap replicates for the interval.")] = 200,
    format: Annotated[OutputFormat, typer.Option("--format", help="table, json or csv.")] = OutputFormat.table,
) -> None:
    """Recommend a budget split over the paid channels, under the media-mix model's curves (docs/budget.md)."""
    from omniweave.errors import InputError

    if basis == "attribution":
        from omniweave.measure.service.reports import BUDGET_COLUMNS, BudgetRequest, budget_report

        request = BudgetRequest(
            total=total,
            period_days=period_days,
            model=model,
            lookback_days=lookback_days,
            max_change=None if max_change < 0 else max_change,
            bootstrap=bootstrap,
        )
        with opened(ctx) as rt:
            report = budget_report(rt, request)
        emit(
            console,
            format,
            document=report.to_dict(),
            records=report.records(),
            columns=BUDGET_COLUMNS,
            views=budget_views(report),
        )
        return
    from omniweave.measure.service.budget import MediaBudgetRequest, budget_from_mmm

    with reported("budget"):
        if basis != "mmm":
            raise InputError(f"got {basis!r}; expected mmm or attribution", field="basis")
        parsed = tuple(_bound(text) for text in bounds or ())
    media_request = MediaBudgetRequest(
        total=total,
        bounds=parsed,
        goal=goal,
        margin=margin,
        max_change=None if max_change < 0 else max_change,
        seed=seed,
        refit=refit,
    )
    with opened(ctx) as rt:
        media = budget_from_mmm(rt, media_request)
    records = media.records()
    emit(
        console,
        format,
        document=media.to_dict(),
        records=records,
        columns=tuple(records[0]) if records else ("channel",),
        views=media_budget_views(media),
    )


def _bound(text: str) -> tuple[str, float | None, float | None]:
    """`channel=min:max` (either side may be empty) as (channel, min, max)."""
    from omniweave.errors import InputError

    channel, eq, rest = text.partition("=")
    low, colon, high = rest.partition(":")
    try:
        if not (eq and colon and channel):
            raise ValueError
        return channel.strip().lower(), float(low) if low.strip() else None, float(high) if high.strip() else None
    except ValueError:
        raise InputError(
            f"got {text!r}; expected channel=min:max, e.g. tv=100:500 or print=:50", field="bounds"
        ) from None


def media_budget_views(report: MediaBudgetReport) -> list[Grid | str]:
    """The recommended split per channel under the media-mix model, and the expected change with its interval."""
    a = report.advice
    unit = "day" if report.period_days == 1 else "week"
    table = grid(
        ["channel", "now", "recommended", "range", "revenue then", "next unit"],
        [
            [
                r["channel"],
                f"{r['spend_now']:,.0f}",
                f"{r['recommended']:,.0f}",
                f"{r['minimum']:,.0f}-{r['maximum']:,.0f}",
                f"{r['revenue_then']:,.0f}",
                f"{r['marginal_return']:.2f}",
            ]
            for r in report.records()
        ],
        title=f"spend per {unit} under the media-mix model ({report.periods} {unit}s from {report.first_day})",
    )
    low, high = a.change_interval
    what = "revenue" if a.goal == "revenue" else f"profit (margin {a.margin:.0%})"
    lines: list[Grid | str] = [
        table,
        f"expected {what} per {unit}: {a.current_value:,.2f} now, {a.recommended_value:,.2f} with the "
        f"recommended split ({a.change:+,.2f}; {a.confidence:.0%} interval {low:+,.2f} to {high:+,.2f} over "
        f"{a.replicates} bootstrap fits)",
    ]
    if a.unspent > 0:
        lines.append(f"left unspent: {a.unspent:,.2f} per {unit} (the next unit would earn less than it costs)")
    if report.fitted_now:
        lines.append("the media-mix model was fitted for this (saved; `omniweave mmm report` shows it)")
    return lines


def budget_views(report: BudgetReport) -> list[Grid | str]:
    """The recommended split per channel, and the expected revenue per period with its interval."""
    advice, history = report.advice, report.history
    table = grid(
        ["channel", "spend now", "recommended", "revenue now", "revenue then", "marginal return", "fit R²"],
        [
            [
                r["channel"],
                f"{r['spend_now']:,.2f}",
                f"{r['recommended']:,.2f}",
                f"{r['revenue_now']:,.2f}",
                f"{r['revenue_then']:,.2f}",
                f"{r['marginal_return']:,.3f}",
                "" if r["r_squared"] is None else f"{r['r_squared']:.2f}",
            ]
            for r in report.records()
        ],
        title=f"{len(history.starts)} periods of {history.period_days} days, revenue credited by {history.model}",
    )
    low, high = advice.change_interval
    return [
        table,
        f"expected revenue per period: {advice.current_revenue:,.2f} now, {advice.recommended_revenue:,.2f} "
        f"with the recommended split ({advice.change:+,.2f}; {advice.confidence:.0%} interval "
        f"{low:+,.2f} to {high:+,.2f})",
    ]


@experiments_app.command("list")
def experiments_list(
    ctx: typer.Context,
    format: Annotated[OutputFormat, typer.Option("--format", help="table, json or csv.")] = OutputFormat.table,
) -> None:
    """Experiments in the log (Experiment Viewed events): arms and exposures."""
    from omniweave.measure.service.experiments import list_experiments

    with opened(ctx) as rt:
        rows = [{"experiment": name, "arms": arms, "exposures": events} for name, arms, events in list_experiments(rt)]
    emit(
        console,
        format,
        document=rows,
        records=rows,
        columns=("experiment", "arms", "exposures"),
        views=[
            grid(
                ["experiment", "arms", "exposures"], [[r["experiment"], r["arms"], f"{r['exposures']:,}"] for r in rows]
            )
        ],
    )


@experiments_app.command("analyze")
def experiments_analyze(
    ctx: typer.Context,
    experiment: Annotated[str, typer.Argument(help="The experiment_id of its Experiment Viewed events.")],
    control: Annotated[str | None, typer.Option(help="The control (holdout) arm; default: the first by name.")] = None,
    conversion_event: Annotated[str, typer.Option(help="The event that counts as a conversion.")] = "Order Completed",
    window_days: Annotated[
        int | None, typer.Option(help="Count conversions this many days after the first exposure.")
    ] = None,
    alpha: Annotated[float, typer.Option(help="Significance level (two-sided).")] = 0.05,
    tau: Annotated[float, typer.Option(help="mSPRT: the difference in conversion rate worth finding.")] = 0.01,
    format: Annotated[OutputFormat, typer.Option("--format", help="table, json or csv.")] = OutputFormat.table,
) -> None:
    """Conversion and revenue per arm against the control: z-test, Welch, P(best), and an always-valid p-value."""
    from omniweave.measure.service.reports import EXPERIMENT_COLUMNS, ExperimentRequest, experiment_analysis

    request = ExperimentRequest(
        experiment=experiment,
        control=control,
        conversion_event=conversion_event,
        window_days=window_days,
        alpha=alpha,
        tau=tau,
    )
    with opened(ctx) as rt:
        analysis = experiment_analysis(rt, request)
    emit(
        console,
        format,
        document=analysis.to_dict(),
        records=analysis.records(),
        columns=EXPERIMENT_COLUMNS,
        views=[experiment_grid(analysis)],
    )


def _shown(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def experiment_grid(analysis: ExperimentAnalysis) -> Grid:
    """One row per arm: units, conversions, rate, lift, Holm p, P(best), always-valid p, revenue per unit."""
    report, request = analysis.report, analysis.request
    return grid(
        ["arm", "units", "conversions", "rate", "lift", "p (Holm)", "P(best)", "always-valid p", "revenue/unit"],
        [
            [
                r["arm"],
                f"{r['units']:,}",
                f"{r['conversions']:,}",
                _shown(r["rate"], ".2%"),
                _shown(r["lift"], "+.1%"),
                _shown(r["p_holm"], ".4f"),
                f"{r['p_best']:.3f}",
                _shown(r["always_valid_p"], ".4f"),
                f"{r['revenue_per_unit']:.2f}",
            ]
            for r in analysis.records()
        ],
        title=f"{request.experiment}: {report.conversion_event}"
        + (f" within {request.window_days} days" if request.window_days else "")
        + f"; control {report.control}"
        + (f"; {report.mixed_units:,} units saw several arms (left out)" if report.mixed_units else ""),
    )


@experiments_app.command("sample-size")
def experiments_sample_size(
    baseline: Annotated[float, typer.Option(help="The control's conversion rate, e.g. 0.05.")],
    mde: Annotated[float, typer.Option(help="The smallest absolute difference worth finding, e.g. 0.01.")],
    alpha: Annotated[float, typer.Option(help="Significance level (two-sided).")] = 0.05,
    power: Annotated[float, typer.Option(help="Power.")] = 0.8,
) -> None:
    """Units per arm needed to find a difference in conversion rate."""
    from omniweave.errors import InputError
    from omniweave.measure.experiments import sample_size_two_proportions

    try:
        result = sample_size_two_proportions(baseline, mde, alpha=alpha, power=power)
    except InputError as exc:
        err_console.print(str(exc), style="red", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    console.print(
        f"{result.control:,} units in the control and {result.treatment:,} in the treatment "
        f"({result.total:,} in all) to find {result.baseline:.2%} -> {result.target:.2%} "
        f"at alpha {result.alpha} with power {result.power}"
    )


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the root `app`."""
    app.command()(attribution)
    app.command()(kpis)
    app.command()(budget)
    app.add_typer(experiments_app, name="experiments")
