"""The media-mix model recovers what it was simulated from (measure/mmm.py, docs/mmm.md)."""

from __future__ import annotations

import numpy as np
import pytest

from omniweave.errors import InputError
from omniweave.measure.mmm import (
    LiftTest,
    MediaCurve,
    MediaData,
    MediaParams,
    delayed_adstock,
    fit_mmm,
    geometric_adstock,
    hill,
)

# channel: decay, half-saturation (spend per day), shape, revenue per day at saturation
TRUTH = {
    "tv": (0.6, 3000.0, 1.5, 9000.0),
    "radio": (0.3, 800.0, 1.0, 2500.0),
    "print": (0.2, 600.0, 1.2, 1800.0),
}


def flighted(rng: np.random.Generator, days: int, level: float, on: float = 0.6) -> np.ndarray:
    """Weekly bursts: each week on (at a random level) or dark, with day-to-day wobble."""
    weeks = days // 7 + 1
    plan = level * rng.uniform(0.3, 2.0, weeks) * (rng.random(weeks) < on)
    return np.repeat(plan, 7)[:days] * rng.uniform(0.8, 1.2, days)


def simulate(days: int, seed: int, noise: float = 1500.0) -> tuple[MediaData, dict[str, np.ndarray]]:
    """Daily revenue = trend + weekly + yearly seasonality + Σ media (adstock, Hill) + noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(days)
    spend = {c: flighted(rng, days, k) for c, (_, k, _, _) in TRUTH.items()}
    base = 20000 + 5 * t + 3000 * np.sin(2 * np.pi * t / 7) + 4000 * np.sin(2 * np.pi * t / 365.25)
    effect = {c: b * hill(geometric_adstock(spend[c], d), k, s) for c, (d, k, s, b) in TRUTH.items()}
    y = base + sum(effect.values()) + rng.normal(0, noise, days)
    data = MediaData(
        tuple(str(i) for i in range(days)), ("all",), y[None, :], {c: x[None, :] for c, x in spend.items()}
    )
    return data, effect


def roi_errors(days: int, seed: int) -> dict[str, float]:
    data, effect = simulate(days, seed)
    fit = fit_mmm(data, bootstrap=0, holdout=0.0)
    return {c: abs(r.roi - effect[c].sum() / r.spend) / (effect[c].sum() / r.spend) for c, r in fit.channels.items()}


def test_roi_error_shrinks_with_the_length_of_the_data() -> None:
    short = [np.mean(list(roi_errors(365, seed).values())) for seed in (1, 2)]
    long = [np.mean(list(roi_errors(1460, seed).values())) for seed in (1, 2)]
    assert np.mean(long) < np.mean(short)
    assert np.mean(long) < 0.08, long
    assert max(roi_errors(1460, 3).values()) < 0.25


def test_intervals_cover_the_truth_and_the_fit_is_good() -> None:
    data, effect = simulate(1095, 4)
    fit = fit_mmm(data, bootstrap=60, seed=1)
    covered = [
        r.contribution_interval[0] <= effect[c].sum() <= r.contribution_interval[1] for c, r in fit.channels.items()
    ]
    assert sum(covered) >= 1, fit.channels  # the residual bootstrap's intervals are narrow (docs/mmm.md)
    for c, r in fit.channels.items():
        assert r.contribution == pytest.approx(effect[c].sum(), rel=0.2), c
    assert fit.r_squared > 0.8 and fit.mape < 0.1
    assert fit.r_squared_holdout is not None and fit.r_squared_holdout > 0.5
    for channel, r in fit.channels.items():
        assert r.contribution_interval[0] <= r.contribution <= r.contribution_interval[1] * 1.000001
        assert r.roi_interval[0] < r.roi_interval[1]
        assert r.warnings == ()
        # the steady-state curve is close to the true one where the channel actually spent
        decay, k, s, b = TRUTH[channel]
        typical = float(np.mean(data.spend[channel][data.spend[channel] > 0]))
        assert r.curve.revenue(typical) == pytest.approx(b * float(hill(typical, k, s)), rel=0.2)
    # the contributions over time add up with the baseline to the fitted series
    assert np.allclose(fit.baseline + sum(fit.contributions.values()), fit.fitted)
    assert fit.channels["tv"].half_life > fit.channels["print"].half_life


def test_same_seed_same_result_other_seed_other_intervals() -> None:
    data, _ = simulate(400, 5)
    a = fit_mmm(data, bootstrap=15, seed=3)
    b = fit_mmm(data, bootstrap=15, seed=3)
    c = fit_mmm(data, bootstrap=15, seed=4)
    for channel in a.channels:
        assert a.channels[channel] == b.channels[channel]
    assert any(a.channels[ch].roi_interval != c.channels[ch].roi_interval for ch in a.channels)
    assert all(a.channels[ch].roi == c.channels[ch].roi for ch in a.channels)  # the point estimate has no seed


def test_not_identified_constant_spend_and_collinear_channels() -> None:
    data, _ = simulate(365, 6)
    rng = np.random.default_rng(0)
    spend = dict(data.spend)
    spend["outdoor"] = np.full((1, 365), 500.0)
    spend["radio"] = spend["tv"] * 0.3 * rng.uniform(0.97, 1.03, (1, 365))
    fit = fit_mmm(MediaData(data.periods, data.units, data.revenue, spend), bootstrap=0)
    assert any("never varied" in w for w in fit.channels["outdoor"].warnings)
    assert any("moves with tv" in w for w in fit.channels["radio"].warnings)
    assert any("moves with radio" in w for w in fit.channels["tv"].warnings)
    assert fit.channels["print"].warnings == ()


def test_a_lift_test_calibrates_the_channel() -> None:
    data, effect = simulate(240, 7, noise=4000.0)
    truth = float(effect["print"][60:120].sum())
    plain = fit_mmm(data, bootstrap=0, holdout=0.0)
    # a precise lift test pulls that channel's contribution over the test's periods towards the measurement
    for measured in (truth, truth * 2):
        calibrated = fit_mmm(data, bootstrap=0, holdout=0.0, lift_tests=[LiftTest("print", 60, 120, measured, 1.0)])
        over_test = float(calibrated.contributions["print"][60:120].sum())
        assert abs(over_test - measured) < abs(float(plain.contributions["print"][60:120].sum()) - measured)
        assert over_test == pytest.approx(measured, rel=0.1)


def test_regions_and_a_regional_channel() -> None:
    """Three regions of different size; TV national, outdoor bought per region (one region dark)."""
    rng = np.random.default_rng(8)
    days, shares = 730, np.array([0.5, 0.3, 0.2])
    t = np.arange(days)
    tv = flighted(rng, days, 3000.0)
    outdoor = np.stack([flighted(rng, days, 400.0 * s) for s in shares])
    outdoor[2, 300:500] = 0.0  # a regional test: one region dark for a while
    y, truth = [], {"tv": 0.0, "outdoor": 0.0}
    for u, s in enumerate(shares):
        e_tv = s * 9000 * hill(geometric_adstock(tv * s / s, 0.5), 3000.0, 1.3)
        e_out = s * 2000 * hill(geometric_adstock(outdoor[u] / s, 0.2), 400.0, 1.0)
        truth["tv"] += float(e_tv.sum())
        truth["outdoor"] += float(e_out.sum())
        base = s * (20000 + 3000 * np.sin(2 * np.pi * t / 7)) + rng.normal(0, 600 * np.sqrt(s), days)
        y.append(base + e_tv + e_out)
    data = MediaData(
        tuple(map(str, t)),
        ("north", "south", "west"),
        np.array(y),
        {"tv": np.outer(shares, tv), "outdoor": outdoor},
    )
    fit = fit_mmm(data, bootstrap=0)
    for channel in ("tv", "outdoor"):
        assert fit.channels[channel].contribution == pytest.approx(truth[channel], rel=0.12)
    curve = fit.channels["outdoor"].curve
    assert curve.shares == pytest.approx(tuple(y_.sum() / np.sum(y) for y_ in y))
    assert curve.revenue(0.0) == 0.0 and curve.revenue(500.0) > curve.revenue(250.0) > 0
    # the marginal return is the derivative of the curve
    assert curve.marginal(300.0) == pytest.approx((curve.revenue(300.01) - curve.revenue(299.99)) / 0.02, rel=1e-4)


def test_delayed_adstock_finds_the_peak() -> None:
    rng = np.random.default_rng(9)
    days = 500
    x = flighted(rng, days, 1000.0, on=0.4)
    effect = 4000 * hill(delayed_adstock(x, 0.5, 3, 12), 1000.0, 1.0)
    y = 10000 + effect + rng.normal(0, 300, days)
    fit = fit_mmm(
        MediaData(tuple(map(str, range(days))), ("all",), y[None, :], {"tv": x[None, :]}), delayed=True, bootstrap=0
    )
    params = fit.channels["tv"].params
    assert params.delayed and params.peak == 3
    assert fit.channels["tv"].contribution == pytest.approx(effect.sum(), rel=0.1)
    assert MediaParams(0.5, 1.0, 1.0, 3, True, 12).half_life() == 3.0


def test_bad_input_names_the_channel_and_field() -> None:
    data, _ = simulate(60, 10)
    spend = dict(data.spend)
    spend["tv"] = spend["tv"].copy()
    spend["tv"][0, 5] = -1.0
    with pytest.raises(InputError, match="tv.*spend.*period 5 is -1.0; expected a finite number, 0 or more"):
        fit_mmm(MediaData(data.periods, data.units, data.revenue, spend))
    with pytest.raises(InputError, match="radio.*spend.*expected \\(1, 60\\)"):
        fit_mmm(MediaData(data.periods, data.units, data.revenue, {**data.spend, "radio": np.ones((1, 59))}))
    with pytest.raises(InputError, match="print.*every period's spend is 0"):
        fit_mmm(MediaData(data.periods, data.units, data.revenue, {**data.spend, "print": np.zeros((1, 60))}))
    with pytest.raises(InputError, match="lift test 1.*unknown channel 'email'"):
        fit_mmm(data, lift_tests=[LiftTest("email", 0, 10, 100.0, 10.0)])
    with pytest.raises(InputError, match="periods.*at least 28"):
        fit_mmm(MediaData(data.periods[:20], data.units, data.revenue[:, :20], {"tv": data.spend["tv"][:, :20]}))


def test_the_baseline_drifts_only_when_the_data_drift() -> None:
    """GCV lets the level drift more freely (a smaller ridge on the knots) when it steps up and back down than
    on a business with a straight trend, and the media's contributions are better for it."""
    data, effect = simulate(730, 9)
    flat = fit_mmm(data, bootstrap=0, holdout=0.0)
    step = np.zeros(730)
    step[250:480] = 6000.0  # a new competitor leaves for a while: the level moves, no medium did it
    moved = MediaData(data.periods, data.units, data.revenue + step, data.spend)
    drifting = fit_mmm(moved, bootstrap=0, holdout=0.0)
    assert drifting.knot_ridge is not None
    assert flat.knot_ridge is None or flat.knot_ridge > drifting.knot_ridge
    without = fit_mmm(moved, bootstrap=0, holdout=0.0, knot_days=None)
    error = {
        name: np.mean([abs(f.channels[c].contribution - effect[c].sum()) / effect[c].sum() for c in TRUTH])
        for name, f in (("drift", drifting), ("none", without))
    }
    assert error["drift"] < error["none"], error


def test_the_roi_prior_is_pooled_from_the_channels_and_checked() -> None:
    data, effect = simulate(365, 10)
    pooled = fit_mmm(data, bootstrap=0, holdout=0.0)
    unpenalised = fit_mmm(data, bootstrap=0, holdout=0.0, roi_scale=None, transform_priors=False)
    # the scale is the half-normal's maximum-likelihood scale of the first, unpenalised fit's ROIs
    # (that fit is `unpenalised`: the same data, baseline and grid, no priors)
    rois = [r.roi for r in unpenalised.channels.values()]
    assert pooled.roi_scale == pytest.approx(float(np.sqrt(np.mean(np.square(rois)))), rel=1e-9)
    assert fit_mmm(data, bootstrap=0, holdout=0.0, roi_scale=1.5).roi_scale == 1.5
    for bad in (0.0, -1.0, "wide"):
        with pytest.raises(InputError, match="roi_scale"):
            fit_mmm(data, bootstrap=0, roi_scale=bad)  # type: ignore[arg-type]


def test_the_transform_priors_keep_shapes_concave_unless_the_data_insist() -> None:
    """The truth's shapes are 1.0-1.5; without the priors the grid may take an S-shape (2.8) for noise."""
    shapes_with, shapes_without = [], []
    for seed in (11, 12):
        data, _ = simulate(365, seed, noise=3000.0)
        shapes_with += [r.params.shape for r in fit_mmm(data, bootstrap=0, holdout=0.0).channels.values()]
        shapes_without += [
            r.params.shape for r in fit_mmm(data, bootstrap=0, holdout=0.0, transform_priors=False).channels.values()
        ]
    assert np.mean(np.abs(np.log(shapes_with) - np.log(1.2))) <= np.mean(np.abs(np.log(shapes_without) - np.log(1.2)))
    assert max(shapes_with) <= 2.0


def test_weekly_data_recover_the_contributions() -> None:
    """`--granularity week`: the same daily worlds summed into weeks (208 of them); the model's adstock and
    curves are then per week, and the channels' contributions are still recovered."""
    errors = []
    for seed in (4, 5, 6):
        data, effect = simulate(1456, seed)

        def weeks(a: np.ndarray) -> np.ndarray:
            return a.reshape(a.shape[0], -1, 7).sum(axis=2)

        weekly = MediaData(
            data.periods[::7], data.units, weeks(data.revenue), {c: weeks(x) for c, x in data.spend.items()}, 7
        )
        fit = fit_mmm(weekly, bootstrap=0, holdout=0.0)
        assert fit.period_days == 7 and len(fit.periods) == 208 and fit.r_squared > 0.9
        errors += [abs(r.contribution - effect[c].sum()) / effect[c].sum() for c, r in fit.channels.items()]
    assert np.mean(errors) < 0.12 and max(errors) < 0.25, errors


def test_promotions_in_the_baseline_keep_their_revenue_off_the_media() -> None:
    """A retailer runs its sales during TV bursts: without the promotions in the baseline the sales' revenue is
    credited to TV; with them (the `promotions` dataset's indicators) TV's contribution is near its truth."""
    data, effect = simulate(730, 5)
    rng = np.random.default_rng(11)
    tv_weeks = [w for w in range(730 // 7) if data.spend["tv"][0, w * 7 : w * 7 + 7].mean() > 0]
    sale_weeks = sorted(rng.choice(tv_weeks, size=12, replace=False))
    promo = np.zeros(730)
    for w in sale_weeks:
        promo[w * 7 : w * 7 + 7] = 1.0
    revenue = data.revenue + 12000.0 * promo[None, :]
    without = MediaData(data.periods, data.units, revenue, data.spend)
    with_promotions = MediaData(data.periods, data.units, revenue, data.spend, promotions=promo[:, None])
    truth = float(effect["tv"].sum())

    def tv_error(d: MediaData) -> float:
        return abs(float(fit_mmm(d, bootstrap=0, holdout=0.0).contributions["tv"].sum()) - truth) / truth

    plain, aware = tv_error(without), tv_error(with_promotions)
    assert aware < plain and aware < 0.1, (aware, plain)
    assert plain > 0.15, plain  # without them, the sales would have been TV's


def test_a_curve_at_one_spend_is_the_curve_over_an_array_value_for_value() -> None:
    """revenue and marginal take a float path of their own (the optimisers call them per channel per step):
    it must give what the array path gives, for one unit and for several, at 0 and near it. To the last
    few bits, not bit for bit: numpy's vector loops for `power` and `exp` (SIMD, chosen by the CPU and the
    array's alignment) may round the last bit differently from the scalar functions (seen in CI:
    5.02475095175962e-12 against 5.024750951759621e-12)."""
    rng = np.random.default_rng(5)
    for i in range(500):
        params = MediaParams(0.5, float(rng.uniform(1, 1e4)), float(rng.uniform(0.3, 4)))
        shares, mix = ((0.3, 0.7), (0.4, 0.6)) if i % 2 else ((0.3, 0.7), (0.0, 1.0))
        curve = MediaCurve("tv", float(rng.uniform(1, 1e4)), params, shares, mix)
        for x in (0.0, 1e-9, float(rng.uniform(0, 100)), float(rng.uniform(0, 2e4))):
            assert curve.revenue(x) == pytest.approx(float(curve.revenue(np.array([x]))[0]), rel=1e-13, abs=0)
            assert curve.marginal(x) == pytest.approx(float(curve.marginal(np.array([x]))[0]), rel=1e-13, abs=0)
            assert isinstance(curve.revenue(x), float) and isinstance(curve.marginal(np.float64(x)), float)
