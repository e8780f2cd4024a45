"""The measure stage's operations as a request in, a frozen result out: KPIs, budget and experiments.

Each result has `to_dict()` (the JSON document of the CLI and the API) and `records()` (its rows for CSV),
so every shell shows the same numbers. Attribution has a module of its own (attribution.py).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from omniweave.measure.budget import BudgetRecommendation
from omniweave.measure.service.budget import DEFAULT_MAX_CHANGE, BudgetHistory
from omniweave.measure.service.experiments import ExperimentReport
from omniweave.measure.service.paths import DEFAULT_LOOKBACK_DAYS
from omniweave.runtime import Runtime
from omniweave.storage.guard import guarded

# --- KPIs ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KpiRequest:
    """Which KPIs, per which period, broken down by what, over which days (docs/kpis.md)."""

    period: str = "month"
    by: str | None = None
    kpis: tuple[str, ...] | None = None
    since: date | None = None
    until: date | None = None
    session_gap_minutes: float = 30.0
    stores: Path | None = None  # a CSV of store_id, floor_area_sqft
    products: Path | None = None  # a CSV of sku (or product_id), cost


@dataclass(frozen=True)
class KpiReport:
    """The KPI catalogue as tidy rows: period (ISO day), kpi, dimension, dimension_value, value, scope,
    group, unit; sorted by period, KPI and dimension value."""

    request: KpiRequest
    columns: tuple[str, ...]
    rows: tuple[dict[str, Any], ...]

    def to_dict(self) -> list[dict[str, Any]]:
        """The rows as JSON values (the `--format json` document)."""
        return [dict(row) for row in self.rows]

    def records(self) -> list[dict[str, Any]]:
        """The rows for CSV, one per period, KPI and dimension value."""
        return self.to_dict()


@guarded("kpis")
def kpi_report(runtime: Runtime, request: KpiRequest) -> KpiReport:
    """The KPI catalogue on the Runtime's warehouse for `request` (InputError for a bad option or file)."""
    from omniweave.measure.service.kpis import floor_areas_from_csv, kpi_table, product_costs_from_csv

    table = kpi_table(
        runtime,
        period=request.period,
        by=request.by,
        kpis=request.kpis or None,
        since=request.since,
        until=request.until,
        session_gap_minutes=request.session_gap_minutes,
        floor_areas=floor_areas_from_csv(request.stores) if request.stores else None,
        product_costs=product_costs_from_csv(request.products) if request.products else None,
    )
    rows = table.to_pylist()
    for row in rows:
        row["period"] = row["period"].isoformat()
    return KpiReport(request=request, columns=tuple(table.column_names), rows=tuple(rows))


# --- budget -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BudgetRequest:
    """How to split the paid channels' spend: total per period (None: as now), the history to learn from."""

    total: float | None = None
    period_days: int = 7
    model: str = "markov"
    lookback_days: float = DEFAULT_LOOKBACK_DAYS
    max_change: float | None = DEFAULT_MAX_CHANGE
    bootstrap: int = 200


BUDGET_COLUMNS = (
    "channel",
    "spend_now",
    "recommended",
    "revenue_now",
    "revenue_then",
    "marginal_return",
    "r_squared",
)


@dataclass(frozen=True)
class BudgetReport:
    """The spend and attributed revenue per period, and the recommended split with its expected change."""

    request: BudgetRequest
    history: BudgetHistory
    advice: BudgetRecommendation

    def to_dict(self) -> dict[str, Any]:
        """The history and the recommendation as JSON values."""
        return {
            "periods": [s.date().isoformat() for s in self.history.starts],
            "period_days": self.history.period_days,
            "model": self.history.model,
            "spend": self.history.spend,
            "revenue": self.history.revenue,
            "recommendation": dataclasses.asdict(self.advice),
        }

    def records(self) -> list[dict[str, Any]]:
        """One record per paid channel: spend and revenue per period now and with the recommended split."""
        a = self.advice
        out = []
        for channel in a.recommended:
            curve = a.curves[channel]
            out.append(
                {
                    "channel": channel,
                    "spend_now": float(a.current[channel]),
                    "recommended": float(a.recommended[channel]),
                    "revenue_now": float(curve.revenue(a.current[channel])),
                    "revenue_then": float(curve.revenue(a.recommended[channel])),
                    "marginal_return": float(a.marginal_returns[channel]),
                    "r_squared": curve.r_squared,
                }
            )
        return out


def budget_report(runtime: Runtime, request: BudgetRequest) -> BudgetReport:
    """Learn response curves from the log's spend and attributed revenue, and recommend a split."""
    from omniweave.measure.service.budget import recommend_from_log

    history, advice = recommend_from_log(
        runtime,
        total=request.total,
        period_days=request.period_days,
        model=request.model,
        lookback_days=request.lookback_days,
        bootstrap=request.bootstrap,
        max_change=request.max_change,
    )
    return BudgetReport(request=request, history=history, advice=advice)


# --- experiments --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExperimentRequest:
    """Which experiment to analyse, against which control, counting which conversions."""

    experiment: str
    control: str | None = None
    conversion_event: str = "Order Completed"
    window_days: int | None = None
    alpha: float = 0.05
    tau: float = 0.01


EXPERIMENT_COLUMNS = (
    "arm",
    "units",
    "conversions",
    "rate",
    "lift",
    "p_holm",
    "p_best",
    "always_valid_p",
    "revenue_per_unit",
)


@dataclass(frozen=True)
class ExperimentAnalysis:
    """An experiment's report (per arm: conversion and revenue, tests against the control)."""

    request: ExperimentRequest
    report: ExperimentReport

    def to_dict(self) -> dict[str, Any]:
        """The whole report as JSON values."""
        return dataclasses.asdict(self.report)

    def records(self) -> list[dict[str, Any]]:
        """One record per arm: units, conversions, rate, lift, Holm-adjusted p, P(best), always-valid p."""
        report = self.report
        comparisons = {c.arm: c for c in report.conversion.comparisons}
        out = []
        for arm in report.arms:
            c = comparisons.get(arm.name)
            seq = report.sequential.get(arm.name)
            out.append(
                {
                    "arm": arm.name,
                    "units": arm.units,
                    "conversions": arm.conversions,
                    "rate": arm.conversions / arm.units if arm.units else None,
                    "lift": c.lift if c is not None else None,
                    "p_holm": c.adjusted_p_value if c is not None else None,
                    "p_best": float(report.bayesian.probability_best[arm.name]),
                    "always_valid_p": seq.looks[-1].p_value if seq is not None and seq.looks else None,
                    "revenue_per_unit": arm.revenue_per_unit,
                }
            )
        return out


def experiment_analysis(runtime: Runtime, request: ExperimentRequest) -> ExperimentAnalysis:
    """Conversion and revenue per arm of an experiment in the log, tested against the control."""
    from omniweave.measure.service.experiments import analyze, experiment_units

    units = experiment_units(
        runtime, request.experiment, conversion_event=request.conversion_event, window_days=request.window_days
    )
    report = analyze(
        units,
        request.experiment,
        control=request.control,
        alpha=request.alpha,
        tau=request.tau,
        conversion_event=request.conversion_event,
        window_days=request.window_days,
    )
    return ExperimentAnalysis(request=request, report=report)
