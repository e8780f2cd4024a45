"""Budget from the log: the media-mix model's curves (default), or per-period spend and attributed revenue.

`budget_from_mmm` splits a budget under the curves of the saved media-mix fit (measure.service.mmm), with
bounds, a maximum change per channel and goal revenue or profit. The rest of this module is the
attribution basis (`--basis attribution`):

The history is cut into consecutive periods of `period_days` from the first day with spend. For
each period, the journeys of the orders in it (measure.service.paths, same lookback and touches as
`omniweave attribution`) are credited by one attribution model (default Markov), and each channel's
credited revenue is set against its spend in that period (the `spend` dataset). Channels that
never had spend are left out: there is nothing to allocate to them. measure.budget then fits an
adstock + Hill response curve per channel and splits the budget (docs/budget.md).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from omniweave.errors import InputError
from omniweave.measure.attribution import MODELS, attribute
from omniweave.measure.budget import BudgetRecommendation, SplitAdvice, advise_split, recommend_budget
from omniweave.measure.service.mmm import MmmRequest, SavedFit, fit_from_log, saved_fit
from omniweave.measure.service.paths import DEFAULT_LOOKBACK_DAYS, journeys_from_log
from omniweave.runtime import Runtime


@dataclass(frozen=True)
class BudgetHistory:
    """Per period (starting on `starts`), spend and attributed revenue per paid channel."""

    starts: tuple[datetime, ...]
    period_days: int
    model: str
    spend: dict[str, list[float]]
    revenue: dict[str, list[float]]


def budget_history(
    runtime: Runtime, *, period_days: int = 7, model: str = "markov", lookback_days: float = DEFAULT_LOOKBACK_DAYS
) -> BudgetHistory:
    """Spend and `model`-attributed revenue per paid channel, per whole period of `period_days` days."""
    if isinstance(period_days, bool) or not isinstance(period_days, int) or period_days < 1:
        raise InputError(f"got {period_days!r}; expected a whole number of days >= 1", field="period_days")
    if model not in MODELS:
        raise InputError(f"got {model!r}; expected one of {', '.join(MODELS)}", field="model")
    if not runtime.log.has_data("spend"):
        raise InputError(
            "no spend in the warehouse: import ad spend first (omniweave import ad_spend FILE)", field="spend"
        )
    days = runtime.warehouse().sql("SELECT min(date) AS first, max(date) AS last FROM spend").to_pylist()[0]
    first = datetime(days["first"].year, days["first"].month, days["first"].day, tzinfo=UTC)
    last = datetime(days["last"].year, days["last"].month, days["last"].day, tzinfo=UTC) + timedelta(days=1)
    step = timedelta(days=period_days)
    starts: list[datetime] = []
    while first + step * (len(starts) + 1) <= last:
        starts.append(first + step * len(starts))
    spend: dict[str, list[float]] = {}
    revenue: dict[str, list[float]] = {}
    for i, start in enumerate(starts):
        journeys = journeys_from_log(runtime, since=start, until=start + step, lookback_days=lookback_days)
        credited = attribute(journeys.paths, model).value if journeys.paths.channels else {}
        for channel, cost in journeys.spend.items():
            spend.setdefault(channel, [0.0] * len(starts))[i] = cost
        for channel, value in credited.items():
            revenue.setdefault(channel, [0.0] * len(starts))[i] = value
    paid = sorted(c for c, series in spend.items() if any(series))
    return BudgetHistory(
        tuple(starts),
        period_days,
        model,
        {c: spend[c] for c in paid},
        {c: revenue.get(c, [0.0] * len(starts)) for c in paid},
    )


DEFAULT_MAX_CHANGE = 0.5
"""By default no channel's spend moves more than half its current level: a curve fitted on a few
periods says little about spend far from what was tried (the MMM tools' usual guard)."""


def recommend_from_log(
    runtime: Runtime,
    *,
    total: float | None = None,
    period_days: int = 7,
    model: str = "markov",
    lookback_days: float = DEFAULT_LOOKBACK_DAYS,
    max_change: float | None = DEFAULT_MAX_CHANGE,
    bootstrap: int = 200,
    seed: int = 0,
) -> tuple[BudgetHistory, BudgetRecommendation]:
    """The history above and measure.budget's recommendation for `total` spend per period (default: as now), each
    channel kept within ±`max_change` of its current mean spend (None: anywhere from 0 to the total)."""
    if max_change is not None and not max_change >= 0:
        raise InputError(f"got {max_change}; expected a share of current spend, 0 or more", field="max_change")
    history = budget_history(runtime, period_days=period_days, model=model, lookback_days=lookback_days)
    bounds = None
    if max_change is not None:
        bounds = {
            c: (max(0.0, 1 - max_change) * sum(x) / len(x), (1 + max_change) * sum(x) / len(x))
            for c, x in history.spend.items()
        }
    return history, recommend_budget(
        history.spend, history.revenue, total=total, bounds=bounds, bootstrap=bootstrap, seed=seed
    )


# ---------------------------------------------------------------- the media-mix model's curves (the default basis)


@dataclass(frozen=True)
class MediaBudgetRequest:
    """Split `total` spend per period (None: as now) under the media-mix model's curves (docs/budget.md)."""

    total: float | None = None
    bounds: tuple[tuple[str, float | None, float | None], ...] = ()
    goal: str = "revenue"
    margin: float | None = None  # gross margin (share of revenue) for goal profit; None: from the products
    max_change: float | None = DEFAULT_MAX_CHANGE
    seed: int = 0
    refit: bool = False  # fit the model again even if a saved fit exists


@dataclass(frozen=True)
class MediaBudgetReport:
    """The advice, the period it is per, and whether the model was fitted for it."""

    request: MediaBudgetRequest
    advice: SplitAdvice
    period_days: int
    first_day: str
    periods: int
    fitted_now: bool

    def records(self) -> list[dict[str, Any]]:
        """One row per channel: spend now and recommended (per period), allowed range, revenue then, marginal return."""
        a = self.advice
        return [
            {
                "channel": c,
                "spend_now": a.current[c],
                "recommended": a.recommended[c],
                "minimum": a.bounds[c][0],
                "maximum": a.bounds[c][1],
                "revenue_then": a.expected[c],
                "marginal_return": a.marginal_returns[c],
            }
            for c in a.recommended
        ]

    def to_dict(self) -> dict[str, Any]:
        """The advice as JSON values."""
        return {
            "basis": "mmm",
            "period_days": self.period_days,
            "first_day": self.first_day,
            "periods": self.periods,
            "fitted_now": self.fitted_now,
            "advice": dataclasses.asdict(self.advice),
        }


def margin_from_products(runtime: Runtime) -> float | None:
    """The mean gross margin of the `products` dataset ((price − cost) / price, or its `margin` column)."""
    if not runtime.log.has_data("products"):
        return None
    table = runtime.warehouse().table("products")
    columns = set(table.columns)
    if {"price", "cost"} <= columns:
        rows = table.select(p=table.price.cast("float64"), c=table.cost.cast("float64")).to_pyarrow().to_pylist()
        margins = [(r["p"] - r["c"]) / r["p"] for r in rows if r["p"] and r["c"] is not None and r["p"] > 0]
    elif "margin" in columns:
        margins = [
            r["m"] for r in table.select(m=table.margin.cast("float64")).to_pyarrow().to_pylist() if r["m"] is not None
        ]
    else:
        return None
    return sum(margins) / len(margins) if margins else None


def budget_from_mmm(runtime: Runtime, request: MediaBudgetRequest, fit: MmmRequest | None = None) -> MediaBudgetReport:
    """Recommend a split under the saved media-mix fit (fitted now, and saved, if there is none or `refit`)."""
    saved = None if request.refit else saved_fit(runtime)
    fitted_now = saved is None
    if saved is None:
        report = fit_from_log(runtime, fit or MmmRequest(seed=request.seed))
        saved = SavedFit(report.to_dict())
    margin = request.margin
    if request.goal == "profit" and margin is None:
        margin = margin_from_products(runtime)
        if margin is None:
            raise InputError(
                "no margin: give --margin or import the products list (price and cost) for goal profit", field="margin"
            )
    bounds = {}
    for channel, low, high in request.bounds:
        bounds[channel] = (low, high)
    advice = advise_split(
        saved.curves(),
        saved.current_spend(),
        total=request.total,
        bounds=bounds,
        max_change=request.max_change,
        goal=request.goal,
        margin=margin,
        replicates=saved.replicates(),
        seed=request.seed,
    )
    doc = saved.document
    return MediaBudgetReport(request, advice, doc["period_days"], doc["first_day"], len(doc["periods"]), fitted_now)
