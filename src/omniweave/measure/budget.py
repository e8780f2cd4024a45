"""Budget allocation from diminishing-returns response curves.

Per channel, attributed revenue per period is modelled as

    revenue_t = ceiling · hill(adstock_t),   hill(a) = a^s / (a^s + K^s),
    adstock_t = (1 − λ) · spend_t + λ · adstock_{t−1}

(geometric carryover λ, normalised so that a steady spend x has adstock x; half-saturation K in
spend per period; shape s), fitted by bounded least squares. The recommended split of a total
per-period budget maximises the sum of the channels' steady-state revenue, subject to optional
per-channel minimum and maximum spend; its gain over the current split comes with a bootstrap
interval over periods. Formulas and conventions: docs/budget.md.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from scipy import optimize, signal

from omniweave.errors import InputError

MIN_PERIODS = 5  # four parameters per channel, plus one
DECAY_BOUNDS = (0.0, 0.9)
SHAPE_BOUNDS = (0.5, 4.0)
HALF_SATURATION_BOUNDS = (1e-3, 10.0)  # × the channel's largest spend in a period
CEILING_BOUNDS = (0.0, 1e3)  # × the channel's largest revenue in a period


def adstock(spend: np.ndarray, decay: float) -> np.ndarray:
    """Geometric carryover a_t = (1 − λ) x_t + λ a_{t−1}, started at steady state (a_{−1} = x_0)."""
    x = np.asarray(spend, dtype=float)
    if x.size == 0:
        return x
    out, _ = signal.lfilter([1.0 - decay], [1.0, -decay], x, zi=[decay * x[0]])
    return out


def hill(level: np.ndarray | float, half_saturation: float, shape: float) -> np.ndarray:
    """a^s / (a^s + K^s), computed as 1 / (1 + (K/a)^s) to stay finite; 0 at a = 0."""
    a = np.asarray(level, dtype=float)
    with np.errstate(divide="ignore", over="ignore"):
        return np.where(a > 0, 1.0 / (1.0 + (half_saturation / np.where(a > 0, a, 1.0)) ** shape), 0.0)


class Curve(Protocol):
    """Anything with a steady-state response: revenue per period at a spend per period, and its derivative
    (a ResponseCurve fitted here, or measure.mmm's MediaCurve)."""

    def revenue(self, spend_per_period: float | np.ndarray) -> Any: ...

    def marginal(self, spend_per_period: float | np.ndarray) -> Any: ...


@dataclass(frozen=True)
class ResponseCurve:
    """A channel's fitted curve: revenue per period as a function of spend (docs/budget.md)."""

    channel: str
    ceiling: float  # revenue per period at saturation
    half_saturation: float  # steady spend per period that earns half the ceiling
    shape: float  # Hill exponent: ≤ 1 concave, > 1 S-shaped
    decay: float  # share of the adstock carried into the next period
    r_squared: float | None = None

    def predict(self, spend: Sequence[float] | np.ndarray) -> np.ndarray:
        """Revenue of each period of a spend series (carryover included)."""
        return self.ceiling * hill(
            adstock(np.asarray(spend, dtype=float), self.decay), self.half_saturation, self.shape
        )

    def revenue(self, spend_per_period: float | np.ndarray) -> np.ndarray | float:
        """Steady-state revenue per period when spending the same amount every period."""
        result = self.ceiling * hill(spend_per_period, self.half_saturation, self.shape)
        return float(result) if np.ndim(result) == 0 else result

    def marginal(self, spend_per_period: float | np.ndarray) -> np.ndarray | float:
        """d revenue / d spend at a steady spend: ceiling · s K^s x^(s−1) / (x^s + K^s)²."""
        # = ceiling · s · h (1 − h) / x with h = hill(x); x floored where hill is ~0 anyway
        x = np.maximum(np.asarray(spend_per_period, dtype=float), 1e-12 * self.half_saturation)
        h = hill(x, self.half_saturation, self.shape)
        result = self.ceiling * self.shape * h * (1.0 - h) / x
        return float(result) if np.ndim(result) == 0 else result


# ---------------------------------------------------------------- input


def _series(values: object, *, channel: str, field: str) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise InputError("expected a sequence of numbers, one per period", field=field, record=channel) from None
    if array.ndim != 1:
        raise InputError(
            f"got an array of shape {array.shape}; expected one number per period", field=field, record=channel
        )
    bad = np.flatnonzero(~np.isfinite(array) | (array < 0))
    if bad.size:
        raise InputError(
            f"period {int(bad[0]) + 1} is {float(array[bad[0]])}; expected a finite number, 0 or more",
            field=field,
            record=channel,
        )
    return array


def check_history(
    spend: Mapping[str, Sequence[float] | np.ndarray], revenue: Mapping[str, Sequence[float] | np.ndarray]
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Validate per-period spend and attributed revenue per channel: the same channels, the same
    number of periods everywhere, finite values of 0 or more, some spend in every channel."""
    channels = list(spend)
    missing = [c for c in channels if c not in revenue]
    extra = [c for c in revenue if c not in spend]
    if missing or extra:
        name = (missing or extra)[0]
        side = "revenue" if missing else "spend"
        raise InputError(
            f"channel has no {side} series; expected the same channels in spend and revenue "
            f"(spend: {sorted(map(str, spend))}, revenue: {sorted(map(str, revenue))})",
            field=side,
            record=name,
        )
    if not channels:
        raise InputError("got no channels; expected at least one", field="spend")
    history: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    periods = None
    for channel in channels:
        x = _series(spend[channel], channel=channel, field="spend")
        y = _series(revenue[channel], channel=channel, field="revenue")
        if x.size != y.size:
            raise InputError(
                f"got {x.size} spend periods and {y.size} revenue periods; expected one revenue per spend period",
                field="revenue",
                record=channel,
            )
        if periods is None:
            periods = (channel, x.size)
        elif x.size != periods[1]:
            raise InputError(
                f"got {x.size} periods, but channel {periods[0]!r} has {periods[1]}; expected the "
                f"same periods for every channel",
                field="spend",
                record=channel,
            )
        if x.size < MIN_PERIODS:
            raise InputError(
                f"got {x.size} periods; expected at least {MIN_PERIODS} to fit a curve", field="spend", record=channel
            )
        if not x.any():
            raise InputError(
                "every period's spend is 0; expected some spend to fit a curve", field="spend", record=channel
            )
        history[str(channel)] = (x, y)
    return history


# ---------------------------------------------------------------- fitting


def _model(theta: np.ndarray, x: np.ndarray) -> np.ndarray:
    ceiling, half, shape, decay = theta
    return ceiling * hill(adstock(x, decay), half, shape)


def fit_response_curve(
    channel: str,
    spend: Sequence[float] | np.ndarray,
    revenue: Sequence[float] | np.ndarray,
    *,
    weights: np.ndarray | None = None,
    start: ResponseCurve | None = None,
) -> ResponseCurve:
    """Least-squares fit of ceiling, half-saturation, shape and decay within bounded ranges,
    from several starting points (or from `start` alone); `weights` count each period's residual."""
    history = check_history({channel: spend}, {channel: revenue})
    x, y = history[str(channel)]
    if weights is not None and np.shape(weights) != x.shape:
        raise InputError(
            f"got {np.size(weights)} weights; expected one per period ({x.size})", field="weights", record=channel
        )
    sx, sy = float(x.max()), float(y.max())
    if sy == 0:
        return ResponseCurve(str(channel), 0.0, float(x[x > 0].mean()), 1.0, 0.0, r_squared=None)
    xs, ys = x / sx, y / sy
    root_w = np.sqrt(np.ones_like(ys) if weights is None else np.asarray(weights, dtype=float))
    lower = [CEILING_BOUNDS[0], HALF_SATURATION_BOUNDS[0], SHAPE_BOUNDS[0], DECAY_BOUNDS[0]]
    upper = [CEILING_BOUNDS[1], HALF_SATURATION_BOUNDS[1], SHAPE_BOUNDS[1], DECAY_BOUNDS[1]]

    def residuals(theta: np.ndarray) -> np.ndarray:
        return root_w * (_model(theta, xs) - ys)

    if start is not None:
        starts = [np.clip([start.ceiling / sy, start.half_saturation / sx, start.shape, start.decay], lower, upper)]
    else:
        starts = []
        for decay in (0.0, 0.4, 0.8):
            for shape in (1.0, 2.5):
                for half in (0.3, 1.0):
                    level = hill(1.0, half, shape)
                    starts.append(np.array([min(1.0 / float(level), upper[0]), half, shape, decay]))
    best = None
    for theta0 in starts:
        fit = optimize.least_squares(residuals, theta0, bounds=(lower, upper), method="trf", x_scale="jac")
        if best is None or fit.cost < best.cost:
            best = fit
    assert best is not None
    ceiling, half, shape, decay = best.x
    fitted = _model(best.x, xs)
    total = float(((ys - ys.mean()) ** 2).sum())
    r_squared = 1.0 - float(((ys - fitted) ** 2).sum()) / total if total > 0 else None
    return ResponseCurve(
        str(channel), float(ceiling * sy), float(half * sx), float(shape), float(decay), r_squared=r_squared
    )


def fit_response_curves(
    spend: Mapping[str, Sequence[float]], revenue: Mapping[str, Sequence[float]]
) -> dict[str, ResponseCurve]:
    """One curve per channel (the columns of `spend` and `revenue`: mappings or DataFrames)."""
    history = check_history(spend, revenue)
    return {channel: fit_response_curve(channel, x, y) for channel, (x, y) in history.items()}


# ---------------------------------------------------------------- optimisation


def _project(point: np.ndarray, lower: np.ndarray, upper: np.ndarray, total: float) -> np.ndarray:
    """The feasible split nearest to shifting `point` by a constant: clip(point + μ, lower, upper) summing to total."""
    low, high = float(total - point.max()) - 1.0, float(total - point.min()) + 1.0
    low = min(low, float((lower - point).min()))
    high = max(high, float((upper - point).max()))
    for _ in range(200):
        mid = (low + high) / 2
        if np.clip(point + mid, lower, upper).sum() < total:
            low = mid
        else:
            high = mid
    return np.clip(point + (low + high) / 2, lower, upper)


def _check_bounds(
    channels: list[str], total: float, bounds: Mapping[str, tuple[float | None, float | None]] | None
) -> tuple[np.ndarray, np.ndarray]:
    if (
        isinstance(total, bool)
        or not isinstance(total, int | float | np.integer | np.floating)
        or not math.isfinite(total)
        or total < 0
    ):
        raise InputError(f"got {total!r}; expected a total budget per period, 0 or more", field="total")
    lower = np.zeros(len(channels))
    upper = np.full(len(channels), float(total))
    for name, pair in (bounds or {}).items():
        if name not in channels:
            raise InputError(
                f"unknown channel; expected one of {', '.join(map(repr, channels))}", field="bounds", record=name
            )
        low, high = pair
        low = 0.0 if low is None else float(low)
        high = float(total) if high is None else float(high)
        if not (math.isfinite(low) and low >= 0 and not math.isnan(high) and high >= low):
            raise InputError(
                f"got ({pair[0]!r}, {pair[1]!r}); expected 0 ≤ minimum ≤ maximum", field="bounds", record=name
            )
        index = channels.index(name)
        lower[index], upper[index] = low, min(high, float(total))
    if lower.sum() > total + 1e-9 * max(total, 1.0) or upper.sum() < total - 1e-9 * max(total, 1.0):
        raise InputError(
            f"the minimums sum to {lower.sum():g} and the maximums to {upper.sum():g}; expected the "
            f"total {total:g} between them",
            field="bounds",
        )
    return lower, upper


def total_revenue(curves: Mapping[str, Curve], split: Mapping[str, float]) -> float:
    """Expected revenue per period of a split at steady state: Σ_c R_c(x_c)."""
    return math.fsum(float(curves[c].revenue(x)) for c, x in split.items())


def optimise_split(
    curves: Mapping[str, Curve],
    total: float,
    *,
    bounds: Mapping[str, tuple[float | None, float | None]] | None = None,
    start: Mapping[str, float] | None = None,
    restarts: int = 12,
    seed: int = 0,
) -> dict[str, float]:
    """The split of `total` spend per period maximising Σ_c R_c(x_c) with Σ x_c = total and
    minimum ≤ x_c ≤ maximum: SLSQP from `start`, the equal split and `restarts` random feasible
    splits (seeded), keeping the best (curves with shape > 1 are not concave)."""
    channels = list(curves)
    if not channels:
        raise InputError("got no curves; expected at least one channel", field="curves")
    lower, upper = _check_bounds(channels, total, bounds)
    if total == 0:
        return dict.fromkeys(channels, 0.0)
    scale = float(total)
    lo, hi = lower / scale, upper / scale
    curve_list = [curves[c] for c in channels]

    def objective(z: np.ndarray) -> tuple[float, np.ndarray]:
        x = np.maximum(z, 0.0) * scale
        value = sum(float(c.revenue(v)) for c, v in zip(curve_list, x, strict=True))
        grad = np.array([float(c.marginal(v)) for c, v in zip(curve_list, x, strict=True)]) * scale
        return -value, -grad

    rng = np.random.default_rng(seed)
    candidates = [np.full(len(channels), 1.0 / len(channels))]
    if start is not None:
        candidates.insert(0, np.array([float(start.get(c, 0.0)) for c in channels]) / scale)
    candidates += list(rng.dirichlet(np.ones(len(channels)), size=restarts))
    best_z, best_value = None, -math.inf
    constraint = {"type": "eq", "fun": lambda z: z.sum() - 1.0, "jac": lambda z: np.ones_like(z)}
    for candidate in candidates:
        z0 = _project(np.asarray(candidate, dtype=float), lo, hi, 1.0)
        fit = optimize.minimize(
            objective,
            z0,
            jac=True,
            method="SLSQP",
            bounds=list(zip(lo, hi, strict=True)),
            constraints=[constraint],
            options={"maxiter": 500, "ftol": 1e-12},
        )
        z = _project(np.clip(fit.x, lo, hi), lo, hi, 1.0)
        for point in (z, z0):
            value = -objective(point)[0]
            if value > best_value:
                best_z, best_value = point, value
    assert best_z is not None
    return {c: float(v) * scale for c, v in zip(channels, best_z, strict=True)}


# ---------------------------------------------------------------- recommendation


@dataclass(frozen=True)
class BudgetRecommendation:
    """Current (mean per period) and recommended split, their expected revenue per period, and a
    bootstrap interval for the expected change (the recommended split held fixed)."""

    curves: dict[str, ResponseCurve]
    total: float
    current: dict[str, float]
    recommended: dict[str, float]
    current_revenue: float
    recommended_revenue: float
    change: float
    change_interval: tuple[float, float]
    confidence: float
    marginal_returns: dict[str, float]  # revenue per extra unit of spend at the recommended split
    bootstrap: int


def recommend_budget(
    spend: Mapping[str, Sequence[float]],
    revenue: Mapping[str, Sequence[float]],
    *,
    total: float | None = None,
    bounds: Mapping[str, tuple[float | None, float | None]] | None = None,
    bootstrap: int = 200,
    confidence: float = 0.9,
    seed: int = 0,
) -> BudgetRecommendation:
    """Fit a curve per channel, split `total` spend per period (default: the current mean total) to
    maximise expected attributed revenue, and bootstrap the periods to bound the expected gain.

    Each bootstrap replicate draws the periods with replacement (as weights on the residuals, so
    carryover is still computed on the real sequence), refits every curve from the point estimate
    and re-evaluates both splits; the interval is the percentile interval of the change.
    """
    history = check_history(spend, revenue)
    if isinstance(bootstrap, bool) or not isinstance(bootstrap, int) or bootstrap < 0:
        raise InputError(f"got {bootstrap!r}; expected a whole number of replicates, 0 or more", field="bootstrap")
    if isinstance(confidence, bool) or not isinstance(confidence, int | float) or not 0 < confidence < 1:
        raise InputError(f"got {confidence!r}; expected a number strictly between 0 and 1", field="confidence")
    curves = {channel: fit_response_curve(channel, x, y) for channel, (x, y) in history.items()}
    current = {channel: float(x.mean()) for channel, (x, _) in history.items()}
    budget = math.fsum(current.values()) if total is None else total
    recommended = optimise_split(curves, budget, bounds=bounds, start=current, seed=seed)
    current_revenue = total_revenue(curves, current)
    recommended_revenue = total_revenue(curves, recommended)
    change = recommended_revenue - current_revenue

    rng = np.random.default_rng(seed)
    periods = next(iter(history.values()))[0].size
    changes = []
    for _ in range(bootstrap):
        weights = rng.multinomial(periods, np.full(periods, 1.0 / periods)).astype(float)
        replicate = {
            channel: fit_response_curve(channel, x, y, weights=weights, start=curves[channel])
            for channel, (x, y) in history.items()
        }
        changes.append(total_revenue(replicate, recommended) - total_revenue(replicate, current))
    if changes:
        tail = (1 - confidence) / 2 * 100
        low, high = np.percentile(changes, [tail, 100 - tail])
        interval = (float(low), float(high))
    else:
        interval = (math.nan, math.nan)
    return BudgetRecommendation(
        curves=curves,
        total=float(budget),
        current=current,
        recommended=recommended,
        current_revenue=current_revenue,
        recommended_revenue=recommended_revenue,
        change=change,
        change_interval=interval,
        confidence=float(confidence),
        marginal_returns={c: float(curves[c].marginal(x)) for c, x in recommended.items()},
        bootstrap=bootstrap,
    )


# ---------------------------------------------------------------- advice from any curves (the media-mix model)

GOALS = ("revenue", "profit")
UNSPENT = "(unspent)"


@dataclass(frozen=True)
class LinearCurve:
    """Revenue proportional to spend: used for the budget left unspent under the profit goal (each unit
    kept is worth 1 / margin of revenue, i.e. one unit of profit)."""

    rate: float

    def revenue(self, spend_per_period: float | np.ndarray) -> Any:
        """rate · x."""
        result = self.rate * np.asarray(spend_per_period, dtype=float)
        return float(result) if np.ndim(result) == 0 else result

    def marginal(self, spend_per_period: float | np.ndarray) -> Any:
        """rate."""
        result = np.full(np.shape(spend_per_period), self.rate)
        return float(result) if np.ndim(result) == 0 else result


@dataclass(frozen=True)
class SplitAdvice:
    """A recommended split of a budget per period under given curves (docs/budget.md): the goal's value
    (revenue, or profit = margin · revenue − spend) now and then, the change with its interval over the
    curves' bootstrap replicates, each channel's allowed range and its marginal return there."""

    goal: str
    margin: float | None
    total: float
    current: dict[str, float]
    recommended: dict[str, float]
    unspent: float
    bounds: dict[str, tuple[float, float]]
    current_revenue: float
    recommended_revenue: float
    current_value: float
    recommended_value: float
    change: float
    change_interval: tuple[float, float]
    confidence: float
    marginal_returns: dict[str, float]
    replicates: int
    expected: dict[str, float] = field(default_factory=dict)  # revenue per period per channel at the recommendation


def goal_value(curves: Mapping[str, Curve], split: Mapping[str, float], goal: str, margin: float | None) -> float:
    """Revenue per period of a split (goal revenue), or margin · revenue − spend (goal profit)."""
    revenue = total_revenue(curves, {c: x for c, x in split.items() if c in curves})
    if goal == "revenue":
        return revenue
    assert margin is not None
    return margin * revenue - math.fsum(x for c, x in split.items() if c in curves)


def _allowed(
    channels: list[str],
    current: Mapping[str, float],
    total: float,
    bounds: Mapping[str, tuple[float | None, float | None]] | None,
    max_change: float | None,
) -> dict[str, tuple[float, float]]:
    out: dict[str, tuple[float, float]] = {}
    for name in bounds or {}:
        if name not in channels:
            raise InputError(
                f"unknown channel; expected one of {', '.join(map(repr, channels))}", field="bounds", record=name
            )
    for c in channels:
        low, high = 0.0, float(total)
        if max_change is not None:
            low, high = max(0.0, (1 - max_change) * current[c]), min(high, (1 + max_change) * current[c])
        given = (bounds or {}).get(c)
        if given is not None:
            g_low = 0.0 if given[0] is None else float(given[0])
            g_high = float(total) if given[1] is None else float(given[1])
            if not (math.isfinite(g_low) and g_low >= 0 and not math.isnan(g_high) and g_high >= g_low):
                raise InputError(
                    f"got ({given[0]!r}, {given[1]!r}); expected 0 ≤ minimum ≤ maximum", field="bounds", record=c
                )
            low, high = max(low, g_low), min(high, g_high)
            if low > high:
                raise InputError(
                    f"bounds {g_low:g}:{g_high:g} and the maximum change ({max_change:g} of {current[c]:g}) leave "
                    f"nothing; expected ranges that overlap (widen --bounds or --max-change)",
                    field="bounds",
                    record=c,
                )
        out[c] = (low, high)
    return out


def advise_split(
    curves: Mapping[str, Curve],
    current: Mapping[str, float],
    *,
    total: float | None = None,
    bounds: Mapping[str, tuple[float | None, float | None]] | None = None,
    max_change: float | None = 0.5,
    goal: str = "revenue",
    margin: float | None = None,
    replicates: Sequence[Mapping[str, Curve]] = (),
    confidence: float = 0.9,
    seed: int = 0,
    restarts: int = 12,
) -> SplitAdvice:
    """Split `total` spend per period (default: the current total) to maximise the goal under `curves`.

    Each channel stays within its `bounds` and within ±`max_change` of its current spend (None: no
    limit). Goal "revenue" spends the whole total; goal "profit" (needs `margin`, the gross margin as
    a share of revenue) may leave part unspent when the next unit earns less than it costs. The
    change's interval re-scores both splits under each replicate's curves (bootstrap draws of the
    fit); the same inputs and seed give the same answer. `restarts`: the optimiser's seeded random starts."""
    channels = list(curves)
    if not channels:
        raise InputError("got no curves; expected at least one channel", field="curves")
    missing = [c for c in channels if c not in current]
    if missing:
        raise InputError("no current spend; expected one per channel", field="current", record=missing[0])
    if goal not in GOALS:
        raise InputError(f"got {goal!r}; expected one of {', '.join(GOALS)}", field="goal")
    if goal == "profit" and (margin is None or not 0 < margin <= 1):
        raise InputError(f"got {margin!r}; expected a gross margin in (0, 1] for goal profit", field="margin")
    if max_change is not None and not max_change >= 0:
        raise InputError(f"got {max_change}; expected a share of current spend, 0 or more", field="max_change")
    now = {c: float(current[c]) for c in channels}
    budget = math.fsum(now.values()) if total is None else total
    _check_bounds(channels, budget, None)  # the total itself
    allowed = _allowed(channels, now, float(budget), bounds, max_change)
    pool: dict[str, Curve] = dict(curves)
    limits = dict(allowed)
    if goal == "profit":
        assert margin is not None
        pool[UNSPENT] = LinearCurve(1.0 / margin)
        limits[UNSPENT] = (0.0, float(budget))
    start = dict(now)
    if goal == "profit":
        start[UNSPENT] = max(0.0, float(budget) - math.fsum(now.values()))
    split = optimise_split(pool, float(budget), bounds=limits, start=start, seed=seed, restarts=restarts)
    recommended = {c: split[c] for c in channels}
    unspent = split.get(UNSPENT, 0.0)
    now_value = goal_value(curves, now, goal, margin)
    then_value = goal_value(curves, recommended, goal, margin)
    changes = [goal_value(r, recommended, goal, margin) - goal_value(r, now, goal, margin) for r in replicates]
    if changes:
        tail = (1 - confidence) / 2 * 100
        low, high = np.percentile(changes, [tail, 100 - tail])
        interval = (float(low), float(high))
    else:
        interval = (math.nan, math.nan)
    return SplitAdvice(
        goal=goal,
        margin=margin,
        total=float(budget),
        current=now,
        recommended=recommended,
        unspent=float(unspent),
        bounds=allowed,
        current_revenue=total_revenue(curves, now),
        recommended_revenue=total_revenue(curves, recommended),
        current_value=now_value,
        recommended_value=then_value,
        change=then_value - now_value,
        change_interval=interval,
        confidence=float(confidence),
        marginal_returns={c: float(curves[c].marginal(x)) for c, x in recommended.items()},
        replicates=len(changes),
        expected={c: float(curves[c].revenue(x)) for c, x in recommended.items()},
    )
