"""Budget: adstock and Hill by hand, recovery of known curve parameters from simulated periods,
an optimiser whose split has equal marginal returns (KKT at the bounds), beats random feasible
splits and a brute-force grid, keeps the total, a seeded bootstrap interval, and clear errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from omniweave.errors import InputError
from omniweave.measure.budget import (
    ResponseCurve,
    adstock,
    fit_response_curve,
    fit_response_curves,
    hill,
    optimise_split,
    recommend_budget,
    total_revenue,
)

TRUE = {
    "search": ResponseCurve("search", 500.0, 40.0, 2.0, 0.3),
    "social": ResponseCurve("social", 300.0, 80.0, 1.2, 0.5),
    "tv": ResponseCurve("tv", 800.0, 150.0, 2.5, 0.6),
}


def simulate(seed: int, periods: int = 104, noise: float = 0.02):
    """Spend varying between 0.1 and 2.5 half-saturations; revenue from the true curves plus noise."""
    rng = np.random.default_rng(seed)
    spend, revenue = {}, {}
    for channel, curve in TRUE.items():
        x = rng.uniform(0.1, 2.5, periods) * curve.half_saturation
        spend[channel] = x
        revenue[channel] = np.maximum(curve.predict(x) + rng.normal(0, noise * curve.ceiling, periods), 0.0)
    return spend, revenue


# ---------------------------------------------------------------- the curve


def test_adstock_and_hill_by_hand():
    # λ = 0.5, started at steady state: a_-1 = 10 → 10, 5, 2.5, 0.5·20 + 1.25 = 11.25
    assert adstock(np.array([10.0, 0.0, 0.0, 20.0]), 0.5) == pytest.approx([10.0, 5.0, 2.5, 11.25])
    assert adstock(np.array([3.0, 7.0]), 0.0) == pytest.approx([3.0, 7.0])
    assert hill(np.array([0.0, 40.0, 80.0]), 40.0, 2.0) == pytest.approx([0.0, 0.5, 0.8])
    curve = TRUE["search"]
    assert curve.revenue(40.0) == pytest.approx(250.0)
    # a constant spend has adstock equal to the spend, so each period earns the steady-state revenue
    assert curve.predict(np.full(6, 40.0)) == pytest.approx(np.full(6, 250.0))


@pytest.mark.parametrize("curve", list(TRUE.values()) + [ResponseCurve("concave", 100.0, 20.0, 0.7, 0.0)])
def test_marginal_is_the_derivative(curve: ResponseCurve):
    x = np.array([1.0, 10.0, 50.0, 200.0, 1000.0])
    h = 1e-5 * x
    numeric = (curve.revenue(x + h) - curve.revenue(x - h)) / (2 * h)
    assert curve.marginal(x) == pytest.approx(numeric, rel=1e-6)
    assert curve.marginal(40.0) == pytest.approx(float(curve.marginal(np.array([40.0]))[0]))


# ---------------------------------------------------------------- fitting


def test_noiseless_data_recovers_the_parameters_exactly():
    spend, revenue = simulate(seed=3, periods=60, noise=0.0)
    for channel, fitted in fit_response_curves(spend, revenue).items():
        true = TRUE[channel]
        assert fitted.ceiling == pytest.approx(true.ceiling, rel=1e-3), channel
        assert fitted.half_saturation == pytest.approx(true.half_saturation, rel=1e-3), channel
        assert fitted.shape == pytest.approx(true.shape, rel=1e-3), channel
        assert fitted.decay == pytest.approx(true.decay, abs=1e-3), channel
        assert fitted.r_squared == pytest.approx(1.0, abs=1e-9)


def test_noisy_data_recovers_the_parameters_closely():
    spend, revenue = simulate(seed=1)
    fitted = fit_response_curves(spend, revenue)
    for channel, true in TRUE.items():
        curve = fitted[channel]
        assert curve.ceiling == pytest.approx(true.ceiling, rel=0.1), channel
        assert curve.half_saturation == pytest.approx(true.half_saturation, rel=0.1), channel
        assert curve.shape == pytest.approx(true.shape, rel=0.15), channel
        assert curve.decay == pytest.approx(true.decay, abs=0.05), channel
        assert curve.r_squared > 0.95


def test_weights_drop_residuals_but_keep_carryover():
    # corrupt the revenue of ten periods: weight 0 on them removes their residuals while their
    # spend still carries over into the next periods, so the true curve is found again
    spend, revenue = simulate(seed=2, periods=60, noise=0.0)
    x, y = spend["tv"], revenue["tv"].copy()
    y[::6] = 0.0
    weights = np.ones(60)
    weights[::6] = 0.0
    weighted = fit_response_curve("tv", x, y, weights=weights)
    unweighted = fit_response_curve("tv", x, y)
    true = TRUE["tv"]
    assert weighted.ceiling == pytest.approx(true.ceiling, rel=1e-3)
    assert weighted.decay == pytest.approx(true.decay, abs=1e-3)
    assert unweighted.ceiling != pytest.approx(true.ceiling, rel=0.02)
    assert fit_response_curve("zero", x, np.zeros(60)).ceiling == 0.0


# ---------------------------------------------------------------- optimisation


def random_feasible_splits(
    rng: np.random.Generator, count: int, total: float, lower: np.ndarray, upper: np.ndarray
) -> np.ndarray:
    """Rejection sampling of splits with lower ≤ x ≤ upper summing to total."""
    splits = []
    while len(splits) < count:
        x = lower + rng.dirichlet(np.ones(lower.size)) * (total - lower.sum())
        if (x <= upper + 1e-12).all():
            splits.append(x)
    return np.array(splits)


@pytest.mark.parametrize("total", [150.0, 400.0, 900.0])
def test_optimal_split_has_equal_marginal_returns_and_beats_random_splits(total: float):
    split = optimise_split(TRUE, total)
    assert math.fsum(split.values()) == pytest.approx(total, rel=1e-9)
    best = total_revenue(TRUE, split)
    funded = [c for c, x in split.items() if x > 1e-6 * total]
    marginals = [TRUE[c].marginal(split[c]) for c in funded]
    assert max(marginals) == pytest.approx(min(marginals), rel=1e-4)
    for c, x in split.items():  # KKT: an unfunded channel's first unit earns no more than the rest
        if c not in funded:
            assert TRUE[c].marginal(x) <= max(marginals) * (1 + 1e-6)
    rng = np.random.default_rng(0)
    channels = list(TRUE)
    for x in random_feasible_splits(rng, 2000, total, np.zeros(3), np.full(3, total)):
        assert total_revenue(TRUE, dict(zip(channels, x, strict=True))) <= best + 1e-9 * best


def test_two_channels_match_a_brute_force_grid():
    curves = {"a": ResponseCurve("a", 100.0, 30.0, 3.0, 0.0), "b": ResponseCurve("b", 60.0, 10.0, 1.0, 0.0)}
    grid = np.linspace(0, 80.0, 800_001)
    values = curves["a"].revenue(grid) + curves["b"].revenue(80.0 - grid)
    split = optimise_split(curves, 80.0)
    assert total_revenue(curves, split) == pytest.approx(float(values.max()), rel=1e-9)
    assert split["a"] == pytest.approx(float(grid[values.argmax()]), abs=1e-3)


def test_bounds_are_respected_with_kkt_conditions():
    bounds = {"tv": (None, 100.0), "social": (200.0, None)}
    split = optimise_split(TRUE, 400.0, bounds=bounds)
    assert math.fsum(split.values()) == pytest.approx(400.0, rel=1e-9)
    assert split["tv"] <= 100.0 + 1e-9 and split["social"] >= 200.0 - 1e-9
    # the free optimum funds tv above 100 and social below 200 (with tv capped alone, social takes
    # about 158), so both bounds bind
    free = optimise_split(TRUE, 400.0)
    assert free["tv"] > 100.0 and free["social"] < 200.0
    assert split["tv"] == pytest.approx(100.0, abs=1e-6) and split["social"] == pytest.approx(200.0, abs=1e-6)
    lam = TRUE["search"].marginal(split["search"])  # the interior channel sets the price of a unit
    assert TRUE["tv"].marginal(split["tv"]) >= lam * (1 - 1e-6)  # capped: would like more
    assert TRUE["social"].marginal(split["social"]) <= lam * (1 + 1e-6)  # floored: would like less
    rng = np.random.default_rng(1)
    lower, upper = np.array([0.0, 200.0, 0.0]), np.array([400.0, 400.0, 100.0])
    best = total_revenue(TRUE, split)
    for x in random_feasible_splits(rng, 1000, 400.0, lower, upper):
        assert total_revenue(TRUE, dict(zip(TRUE, x, strict=True))) <= best * (1 + 1e-9)


# ---------------------------------------------------------------- recommendation


def test_recommendation_on_simulated_history():
    spend, revenue = simulate(seed=1)
    result = recommend_budget(spend, revenue, bootstrap=40, seed=7)
    assert result.total == pytest.approx(sum(x.mean() for x in spend.values()))
    assert math.fsum(result.recommended.values()) == pytest.approx(result.total, rel=1e-9)
    assert result.current == pytest.approx({c: x.mean() for c, x in spend.items()})
    assert result.change == pytest.approx(result.recommended_revenue - result.current_revenue)
    assert result.change > 0
    low, high = result.change_interval
    assert low <= result.change <= high
    true_change = total_revenue(TRUE, result.recommended) - total_revenue(TRUE, result.current)
    assert low - 0.05 * abs(true_change) <= true_change <= high + 0.05 * abs(true_change)
    marginals = list(result.marginal_returns.values())
    assert max(marginals) == pytest.approx(min(marginals), rel=1e-3)
    # fixed seed: the same interval again
    assert recommend_budget(spend, revenue, bootstrap=40, seed=7).change_interval == result.change_interval


def test_recommendation_with_total_and_bounds():
    spend, revenue = simulate(seed=5, periods=52)
    result = recommend_budget(spend, revenue, total=500.0, bounds={"tv": (50.0, 150.0)}, bootstrap=0)
    assert math.fsum(result.recommended.values()) == pytest.approx(500.0, rel=1e-9)
    assert 50.0 - 1e-9 <= result.recommended["tv"] <= 150.0 + 1e-9
    assert all(math.isnan(v) for v in result.change_interval)


# ---------------------------------------------------------------- malformed input


GOOD = [10.0, 20.0, 30.0, 40.0, 50.0, 60.0]


@pytest.mark.parametrize(
    ("spend", "revenue", "message"),
    [
        ({"tv": [10, -5, 3, 4, 5, 6]}, {"tv": GOOD}, "record tv, field 'spend': period 2 is -5.0; expected a finite"),
        ({"tv": GOOD}, {"tv": [1, 2, float("nan"), 4, 5, 6]}, "record tv, field 'revenue': period 3 is nan"),
        ({"tv": GOOD}, {"tv": GOOD[:5]}, "record tv, field 'revenue': got 6 spend periods and 5 revenue periods"),
        (
            {"tv": GOOD, "sms": GOOD + [1.0]},
            {"tv": GOOD, "sms": GOOD + [1.0]},
            "record sms, field 'spend': got 7 periods, but channel 'tv' has 6",
        ),
        ({"tv": GOOD, "sms": GOOD}, {"tv": GOOD}, "record sms, field 'revenue': channel has no revenue series"),
        ({"tv": GOOD[:4]}, {"tv": GOOD[:4]}, "got 4 periods; expected at least 5"),
        ({"tv": [0.0] * 6}, {"tv": GOOD}, "every period's spend is 0"),
        ({"tv": [[1, 2], [3, 4]]}, {"tv": GOOD}, "expected one number per period"),
        ({"tv": ["a"] * 6}, {"tv": GOOD}, "expected a sequence of numbers"),
        ({}, {}, "got no channels"),
    ],
)
def test_malformed_history(spend, revenue, message: str):
    with pytest.raises(InputError, match=message):
        recommend_budget(spend, revenue, bootstrap=0)


def test_malformed_budget_options():
    with pytest.raises(InputError, match="field 'total'"):
        optimise_split(TRUE, -1.0)
    with pytest.raises(InputError, match="record radio, field 'bounds': unknown channel"):
        optimise_split(TRUE, 100.0, bounds={"radio": (0, 10)})
    with pytest.raises(InputError, match=r"record tv, field 'bounds': got \(50, 10\); expected 0 ≤ minimum ≤ maximum"):
        optimise_split(TRUE, 100.0, bounds={"tv": (50, 10)})
    with pytest.raises(InputError, match="the minimums sum to 120 .* expected the total 100"):
        optimise_split(TRUE, 100.0, bounds={"tv": (60, None), "search": (60, None)})
    with pytest.raises(InputError, match="the minimums sum to 0 and the maximums to 30"):
        optimise_split(TRUE, 100.0, bounds={c: (0, 10) for c in TRUE})
    spend, revenue = simulate(seed=0, periods=10)
    with pytest.raises(InputError, match="field 'bootstrap'"):
        recommend_budget(spend, revenue, bootstrap=-1)
    with pytest.raises(InputError, match="field 'confidence'"):
        recommend_budget(spend, revenue, confidence=95)
    with pytest.raises(InputError, match="record tv, field 'weights': got 3 weights"):
        fit_response_curve("tv", spend["tv"], revenue["tv"], weights=np.ones(3))
    assert optimise_split(TRUE, 0.0) == dict.fromkeys(TRUE, 0.0)


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(10, 1000), st.floats(5, 200), st.floats(0.5, 4), st.floats(0, 0.5)), min_size=1, max_size=4
    ),
    st.floats(1, 1000),
)
def test_any_split_keeps_the_total_and_the_bounds(params, total: float):
    curves = {f"c{i}": ResponseCurve(f"c{i}", *p) for i, p in enumerate(params)}
    cap = total / len(curves) * 1.5
    bounds = {"c0": (None, cap)}
    split = optimise_split(curves, total, bounds=bounds)
    assert math.fsum(split.values()) == pytest.approx(total, rel=1e-9)
    assert all(x >= -1e-12 for x in split.values()) and split["c0"] <= cap * (1 + 1e-12)
    equal = dict.fromkeys(curves, total / len(curves))  # feasible: the cap is 1.5 × the equal share
    assert total_revenue(curves, split) >= total_revenue(curves, equal) * (1 - 1e-9)
