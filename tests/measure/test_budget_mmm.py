"""The split under any curves (measure.budget.advise_split): the media-mix model's basis for `omniweave budget`."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from omniweave.errors import InputError
from omniweave.measure.budget import advise_split, goal_value
from omniweave.measure.mmm import MediaCurve, MediaParams

CURVES = {
    "tv": MediaCurve("tv", 9000.0, MediaParams(0.6, 900.0, 1.6)),
    "radio": MediaCurve("radio", 2000.0, MediaParams(0.3, 250.0, 1.1)),
    "print": MediaCurve("print", 700.0, MediaParams(0.2, 200.0, 1.0)),
}
NOW = {"tv": 400.0, "radio": 300.0, "print": 200.0}


def brute_force(total: float, step: float, goal: str = "revenue", margin: float | None = None) -> float:
    """The best goal value over a grid of splits (spending up to `total` for profit, exactly it for revenue)."""
    best = -np.inf
    for tv, radio in itertools.product(np.arange(0, total + step, step), repeat=2):
        for print_ in [total - tv - radio] if goal == "revenue" else np.arange(0, total - tv - radio + step, step):
            if print_ < -1e-9:
                continue
            best = max(best, goal_value(CURVES, {"tv": tv, "radio": radio, "print": print_}, goal, margin))
    return float(best)


def test_revenue_split_matches_brute_force_and_keeps_the_total() -> None:
    advice = advise_split(CURVES, NOW, max_change=None)
    assert sum(advice.recommended.values()) == pytest.approx(900.0)
    assert advice.recommended_value >= brute_force(900.0, 10.0) - 1e-6
    assert advice.change == pytest.approx(advice.recommended_value - advice.current_value)
    inside = [c for c, x in advice.recommended.items() if 1 < x < 899]
    returns = [advice.marginal_returns[c] for c in inside]
    assert max(returns) - min(returns) < 0.01 * max(returns)  # equal marginal returns inside the bounds


def test_profit_may_leave_budget_unspent() -> None:
    advice = advise_split(CURVES, NOW, total=3000.0, max_change=None, goal="profit", margin=0.4)
    assert advice.unspent > 0
    assert sum(advice.recommended.values()) + advice.unspent == pytest.approx(3000.0)
    assert advice.recommended_value >= brute_force(3000.0, 50.0, "profit", 0.4) - 1e-6
    for c, x in advice.recommended.items():  # the last unit spent earns at least what it costs
        if x > 1:
            assert 0.4 * advice.marginal_returns[c] == pytest.approx(1.0, rel=0.02)


def test_bounds_max_change_interval_and_determinism() -> None:
    replicates = [
        {c: MediaCurve(c, v.beta * f, v.params) for c, v in CURVES.items()} for f in np.linspace(0.8, 1.2, 21)
    ]
    a = advise_split(CURVES, NOW, bounds={"tv": (None, 500.0)}, replicates=replicates, seed=1)
    b = advise_split(CURVES, NOW, bounds={"tv": (None, 500.0)}, replicates=replicates, seed=1)
    assert a == b
    assert a.recommended["tv"] <= 500.0 + 1e-6
    for c, x in a.recommended.items():
        assert 0.5 * NOW[c] - 1e-6 <= x <= 1.5 * NOW[c] + 1e-6
    low, high = a.change_interval
    assert low <= a.change <= high and a.replicates == 21


def test_bad_options_name_the_field() -> None:
    with pytest.raises(InputError, match="bounds.*unknown channel"):
        advise_split(CURVES, NOW, bounds={"sms": (0, 1)})
    with pytest.raises(InputError, match="tv.*leave nothing"):
        advise_split(CURVES, NOW, bounds={"tv": (700.0, 800.0)})
    with pytest.raises(InputError, match="margin.*expected a gross margin"):
        advise_split(CURVES, NOW, goal="profit")
    with pytest.raises(InputError, match="goal.*expected one of revenue, profit"):
        advise_split(CURVES, NOW, goal="fame")
