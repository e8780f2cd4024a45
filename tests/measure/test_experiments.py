"""Experiments: z-test and Welch against hand computations and scipy, Holm/Bonferroni by hand,
Beta-Binomial probabilities against Evan Miller's closed form and Monte Carlo, sample size against
R's power.prop.test, the mSPRT's type-I error under repeated peeking (naive peeking inflates it),
and clear errors for malformed arms."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import special, stats

from omniweave.errors import InputError
from omniweave.measure.experiments import (
    ConversionArm,
    RevenueArm,
    adjust_p_values,
    bayesian_conversions,
    compare_conversions,
    compare_revenue,
    power_two_proportions,
    sample_size_two_proportions,
    sequential_conversion_test,
    sequential_revenue_test,
    two_proportion_ztest,
    welch_ttest,
)

# ---------------------------------------------------------------- z-test


def test_ztest_equals_hand_computation():
    # 100/1000 vs 130/1000: pooled p = 0.115, SE = sqrt(.115 · .885 · (2/1000)) = 0.0142671...
    control, treatment = ConversionArm("holdout", 1000, 100), ConversionArm("email", 1000, 130)
    result = two_proportion_ztest(control, treatment)
    se_pooled = math.sqrt(0.115 * 0.885 * 0.002)
    z = 0.03 / se_pooled
    assert result.statistic == pytest.approx(z, rel=1e-12)
    assert result.statistic == pytest.approx(2.10274, abs=1e-5)
    assert result.p_value == pytest.approx(math.erfc(z / math.sqrt(2)), rel=1e-12)  # 2·(1 − Φ(z))
    assert result.difference == pytest.approx(0.03)
    half = 1.959963984540054 * math.sqrt(0.1 * 0.9 / 1000 + 0.13 * 0.87 / 1000)
    assert result.difference_interval == pytest.approx((0.03 - half, 0.03 + half), rel=1e-12)
    assert result.lift == pytest.approx(0.3)
    se_log = math.sqrt(0.9 / (1000 * 0.1) + 0.87 / (1000 * 0.13))
    lo, hi = result.lift_interval
    assert lo == pytest.approx(1.3 * math.exp(-1.959963984540054 * se_log) - 1, rel=1e-12)
    assert hi == pytest.approx(1.3 * math.exp(1.959963984540054 * se_log) - 1, rel=1e-12)


@pytest.mark.parametrize(
    "counts", [(1000, 100, 1000, 130), (523, 17, 611, 35), (80, 40, 95, 41), (20000, 913, 19500, 1002)]
)
def test_ztest_p_value_equals_scipy_chi_square(counts: tuple[int, int, int, int]):
    # the pooled two-sided z-test is the 2×2 chi-square test without continuity correction (z² = χ²)
    n0, c0, n1, c1 = counts
    result = two_proportion_ztest(ConversionArm("a", n0, c0), ConversionArm("b", n1, c1))
    chi2, p, _, _ = stats.chi2_contingency([[c0, n0 - c0], [c1, n1 - c1]], correction=False)
    assert result.statistic**2 == pytest.approx(chi2, rel=1e-10)
    assert result.p_value == pytest.approx(p, rel=1e-9)


def test_identical_degenerate_arms_give_p_one():
    result = two_proportion_ztest(ConversionArm("a", 50, 0), ConversionArm("b", 70, 0))
    assert (result.statistic, result.p_value, result.lift) == (0.0, 1.0, None)


# ---------------------------------------------------------------- Welch


def test_welch_equals_scipy_from_values_and_from_sums():
    rng = np.random.default_rng(7)
    control = rng.exponential(20.0, 300) * (rng.random(300) < 0.3)  # revenue per visitor, mostly 0
    treatment = rng.exponential(24.0, 250) * (rng.random(250) < 0.3)
    expected = stats.ttest_ind(treatment, control, equal_var=False)
    interval = expected.confidence_interval(0.95)
    from_values = welch_ttest(RevenueArm.from_values("holdout", control), RevenueArm.from_values("sms", treatment))
    from_sums = welch_ttest(
        RevenueArm.from_sums("holdout", control.size, control.sum(), (control**2).sum()),
        RevenueArm.from_sums("sms", treatment.size, treatment.sum(), (treatment**2).sum()),
    )
    for result in (from_values, from_sums):
        assert result.statistic == pytest.approx(expected.statistic, rel=1e-9)
        assert result.p_value == pytest.approx(expected.pvalue, rel=1e-9)
        assert result.degrees_of_freedom == pytest.approx(expected.df, rel=1e-9)
        assert result.difference_interval == pytest.approx((interval.low, interval.high), rel=1e-9)
        assert result.difference == pytest.approx(treatment.mean() - control.mean(), rel=1e-12)


def test_welch_hand_computation():
    # means 20.6 and 22.8 of five values each; squared deviations 13.2 and 30.8, variances 3.3 and 7.7
    control = RevenueArm.from_values("a", [19, 20, 22, 23, 19])
    treatment = RevenueArm.from_values("b", [25, 22, 19, 26, 22])
    assert (control.mean, control.variance) == pytest.approx((20.6, 3.3))
    assert (treatment.mean, treatment.variance) == pytest.approx((22.8, 7.7))
    result = welch_ttest(control, treatment)
    se2 = 3.3 / 5 + 7.7 / 5
    assert result.statistic == pytest.approx(2.2 / math.sqrt(se2), rel=1e-12)
    df = se2**2 / ((3.3 / 5) ** 2 / 4 + (7.7 / 5) ** 2 / 4)
    assert result.degrees_of_freedom == pytest.approx(df, rel=1e-12)
    assert result.p_value == pytest.approx(2 * stats.t.sf(2.2 / math.sqrt(se2), df), rel=1e-12)


# ---------------------------------------------------------------- corrections


def test_holm_and_bonferroni_by_hand():
    p = [0.01, 0.04, 0.03]
    # Holm: sorted .01·3 = .03, .03·2 = .06, .04·1 = .04 → running max .06
    assert adjust_p_values(p, "holm") == pytest.approx([0.03, 0.06, 0.06])
    assert adjust_p_values(p, "bonferroni") == pytest.approx([0.03, 0.12, 0.09])
    assert adjust_p_values(p, "none") == pytest.approx(p)
    assert adjust_p_values([0.5, 0.6], "bonferroni") == [1.0, 1.0]


def test_multi_arm_against_holdout_uses_corrected_p_values_and_simultaneous_intervals():
    arms = [
        ConversionArm("email", 2000, 250),
        ConversionArm("holdout", 2000, 200),
        ConversionArm("sms", 2000, 215),
        ConversionArm("push", 2000, 240),
    ]
    result = compare_conversions(arms, control="holdout", correction="holm")
    assert result.control == "holdout"
    assert [c.arm for c in result.comparisons] == ["email", "sms", "push"]
    raw = [two_proportion_ztest(arms[1], arm).p_value for arm in (arms[0], arms[2], arms[3])]
    assert [c.p_value for c in result.comparisons] == pytest.approx(raw)
    assert [c.adjusted_p_value for c in result.comparisons] == pytest.approx(adjust_p_values(raw, "holm"))
    assert [c.significant for c in result.comparisons] == [p <= 0.05 for p in adjust_p_values(raw, "holm")]
    assert all(c.confidence == pytest.approx(1 - 0.05 / 3) for c in result.comparisons)
    uncorrected = compare_conversions(arms, control="holdout", correction="none")
    assert all(c.confidence == pytest.approx(0.95) for c in uncorrected.comparisons)
    wide, narrow = result.comparisons[0].difference_interval, uncorrected.comparisons[0].difference_interval
    assert wide[0] < narrow[0] and wide[1] > narrow[1]


def test_compare_revenue_defaults_to_first_arm_as_control():
    rng = np.random.default_rng(3)
    arms = [
        RevenueArm.from_values(name, rng.gamma(2.0, scale, 400))
        for name, scale in (("holdout", 10.0), ("a", 10.0), ("b", 13.0))
    ]
    result = compare_revenue(arms, correction="bonferroni")
    assert result.control == "holdout" and result.metric == "revenue_per_unit"
    for comparison, arm in zip(result.comparisons, arms[1:], strict=True):
        assert comparison.adjusted_p_value == pytest.approx(min(1.0, 2 * welch_ttest(arms[0], arm).p_value))
    assert result.comparisons[1].significant  # a 30% lift on 400 units each


# ---------------------------------------------------------------- Bayesian


def closed_form_beats(control: tuple[float, float], treatment: tuple[float, float]) -> float:
    """P(p_t > p_c) for whole-number Beta parameters (Evan Miller, "Formulas for Bayesian A/B testing")."""
    (ac, bc), (at, bt) = control, treatment
    terms = [
        special.betaln(ac + i, bc + bt) - math.log(bt + i) - special.betaln(1 + i, bt) - special.betaln(ac, bc)
        for i in range(int(at))
    ]
    return float(np.exp(special.logsumexp(terms)))


@pytest.mark.parametrize(
    "counts", [((100, 10), (100, 15)), ((1000, 100), (1000, 130)), ((40, 3), (60, 2)), ((5000, 260), (5000, 240))]
)
def test_two_arm_probability_equals_closed_form(counts):
    (n0, c0), (n1, c1) = counts
    result = bayesian_conversions([ConversionArm("a", n0, c0), ConversionArm("b", n1, c1)])
    expected = closed_form_beats((1 + c0, 1 + n0 - c0), (1 + c1, 1 + n1 - c1))
    assert result.probability_beats_control["b"] == pytest.approx(expected, abs=1e-9)
    assert result.probability_best["b"] == pytest.approx(expected, abs=1e-9)
    assert result.posteriors[1].alpha == 1 + c1 and result.posteriors[1].beta == 1 + n1 - c1


def test_exact_and_monte_carlo_agree_on_three_arms():
    arms = [ConversionArm("holdout", 1000, 100), ConversionArm("b", 1000, 130), ConversionArm("c", 1000, 110)]
    exact = bayesian_conversions(arms)
    sampled = bayesian_conversions(arms, method="monte_carlo", samples=200_000, seed=11)
    assert sum(exact.probability_best.values()) == pytest.approx(1.0, abs=1e-9)
    for name in ("holdout", "b", "c"):
        assert sampled.probability_best[name] == pytest.approx(exact.probability_best[name], abs=0.005)
        assert sampled.expected_loss[name] == pytest.approx(exact.expected_loss[name], abs=2e-4)
    for name in ("b", "c"):
        assert sampled.probability_beats_control[name] == pytest.approx(
            exact.probability_beats_control[name], abs=0.005
        )
    assert min(exact.expected_loss, key=exact.expected_loss.get) == "b"
    # same seed, same answer
    assert bayesian_conversions(arms, method="monte_carlo", samples=1000, seed=11) == bayesian_conversions(
        arms, method="monte_carlo", samples=1000, seed=11
    )


def test_identical_arms_are_equally_likely_best_and_large_counts_work():
    arms = [ConversionArm(name, 10**6, 50_000) for name in "abcd"]
    result = bayesian_conversions(arms)
    assert list(result.probability_best.values()) == pytest.approx([0.25] * 4, abs=1e-7)
    # E[max of 4] − mean, by Monte Carlo with a fixed seed
    draws = np.random.default_rng(0).beta(50_001, 950_001, size=(200_000, 4))
    assert result.expected_loss["a"] == pytest.approx((draws.max(axis=1) - draws[:, 0]).mean(), rel=0.02)


def test_credible_interval_is_beta_quantiles():
    result = bayesian_conversions([ConversionArm("a", 50, 5), ConversionArm("b", 50, 9)], prior=(2, 3))
    posterior = result.posteriors[0]
    assert (posterior.alpha, posterior.beta) == (7, 48)
    assert posterior.interval == pytest.approx((stats.beta.ppf(0.025, 7, 48), stats.beta.ppf(0.975, 7, 48)))


# ---------------------------------------------------------------- sample size


def test_sample_size_equals_r_power_prop_test():
    # R: power.prop.test(p1 = .50, p2 = .75, power = .90)  ## => n = 76.7
    size = sample_size_two_proportions(0.5, 0.25, power=0.9)
    assert size.unrounded_control == pytest.approx(76.7, abs=0.05)
    assert (size.control, size.treatment, size.total) == (77, 77, 154)
    # R: power.prop.test(n = 50, p1 = .50, p2 = .75)  ## => power = 0.7401659
    assert power_two_proportions(0.5, 0.75, 50) == pytest.approx(0.7401659, abs=1e-7)
    # relative effect: 10% baseline, +20% relative = 12%
    relative = sample_size_two_proportions(0.10, 0.20, relative=True)
    absolute = sample_size_two_proportions(0.10, 0.02)
    assert relative.target == pytest.approx(0.12) and relative.control == absolute.control


def test_sample_size_is_the_inverse_of_power_and_achieves_it_in_simulation():
    size = sample_size_two_proportions(0.10, 0.03, alpha=0.05, power=0.8, ratio=2.0)
    assert power_two_proportions(0.10, 0.13, size.unrounded_control, ratio=2.0) == pytest.approx(0.8, abs=1e-9)
    assert size.treatment == math.ceil(2 * size.unrounded_control)
    rng = np.random.default_rng(5)
    reps = 3000
    c0 = rng.binomial(size.control, 0.10, reps)
    c1 = rng.binomial(size.treatment, 0.13, reps)
    rejected = sum(
        two_proportion_ztest(ConversionArm("a", size.control, a), ConversionArm("b", size.treatment, b)).p_value <= 0.05
        for a, b in zip(c0, c1, strict=True)
    )
    assert rejected / reps == pytest.approx(0.8, abs=0.03)


# ---------------------------------------------------------------- sequential


def _aa_paths(rng: np.random.Generator, reps: int, looks: int, batch: int, rates: tuple[float, float]):
    counts = rng.binomial(batch, rates, size=(reps, looks, 2)).cumsum(axis=1)
    visitors = batch * np.arange(1, looks + 1)
    return counts, visitors


def test_msprt_keeps_type_one_error_under_peeking_while_naive_peeking_inflates_it():
    rng = np.random.default_rng(2024)
    reps, looks, batch, alpha = 600, 20, 250, 0.05
    counts, visitors = _aa_paths(rng, reps, looks, batch, (0.1, 0.1))
    naive = sequential = 0
    for rep in range(reps):
        control = [ConversionArm("holdout", int(n), int(c)) for n, c in zip(visitors, counts[rep, :, 0], strict=True)]
        treatment = [ConversionArm("email", int(n), int(c)) for n, c in zip(visitors, counts[rep, :, 1], strict=True)]
        naive += any(two_proportion_ztest(c, t).p_value <= alpha for c, t in zip(control, treatment, strict=True))
        sequential += sequential_conversion_test(control, treatment, tau=0.02, alpha=alpha).stopped_at is not None
    se = math.sqrt(alpha * (1 - alpha) / reps)
    assert sequential / reps <= alpha + 2 * se
    assert naive / reps > 2.5 * alpha  # peeking 20 times at a fixed-horizon test


def test_msprt_detects_a_real_effect_and_its_outputs_are_monotone():
    rng = np.random.default_rng(9)
    counts, visitors = _aa_paths(rng, 200, 20, 250, (0.10, 0.13))
    stopped = 0
    for rep in range(200):
        result = sequential_conversion_test(
            [ConversionArm("a", int(n), int(c)) for n, c in zip(visitors, counts[rep, :, 0], strict=True)],
            [ConversionArm("b", int(n), int(c)) for n, c in zip(visitors, counts[rep, :, 1], strict=True)],
            tau=0.02,
        )
        p = [look.p_value for look in result.looks]
        lows = [look.interval[0] for look in result.looks]
        highs = [look.interval[1] for look in result.looks]
        assert p == sorted(p, reverse=True) and lows == sorted(lows) and highs == sorted(highs, reverse=True)
        stopped += result.stopped_at is not None
        if result.stopped_at is not None:
            assert result.looks[result.stopped_at - 1].interval[0] > 0  # the interval excludes 0 when p ≤ alpha
    assert stopped / 200 > 0.8


def test_msprt_hand_computation_of_one_look():
    control, treatment = ConversionArm("a", 1000, 100), ConversionArm("b", 1000, 140)
    result = sequential_conversion_test([control], [treatment], tau=0.05, alpha=0.05)
    v = 0.1 * 0.9 / 1000 + 0.14 * 0.86 / 1000
    log_lambda = 0.5 * math.log(v / (v + 0.0025)) + 0.0025 * 0.04**2 / (2 * v * (v + 0.0025))
    assert result.looks[0].p_value == pytest.approx(min(1.0, math.exp(-log_lambda)), rel=1e-12)
    half = math.sqrt(v * (v + 0.0025) / 0.0025 * (math.log((v + 0.0025) / v) - 2 * math.log(0.05)))
    assert result.looks[0].interval == pytest.approx((0.04 - half, 0.04 + half), rel=1e-12)


def test_sequential_revenue_on_cumulative_summaries():
    rng = np.random.default_rng(4)
    a, b = rng.gamma(2.0, 10.0, 2000), rng.gamma(2.0, 10.0, 2000)
    ends = range(200, 2001, 200)
    result = sequential_revenue_test(
        [RevenueArm.from_values("a", a[:n]) for n in ends], [RevenueArm.from_values("b", b[:n]) for n in ends], tau=2.0
    )
    assert len(result.looks) == 10 and result.looks[-1].control_units == 2000
    assert result.looks[-1].difference == pytest.approx(b.mean() - a.mean())


# ---------------------------------------------------------------- malformed input


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: ConversionArm("email", -5, 0), "record email, field 'visitors': got -5; expected a whole number"),
        (lambda: ConversionArm("email", 100, -1), "field 'conversions': got -1"),
        (lambda: ConversionArm("email", 100, 120), "got 120 conversions; expected at most the arm's 100 visitors"),
        (lambda: ConversionArm("email", 10.5, 1), "got 10.5; expected a whole number"),
        (lambda: ConversionArm("email", float("nan"), 1), "expected a whole number"),
        (lambda: ConversionArm.from_units("email", [0, 1, 2]), "expected a one-dimensional array of 0/1"),
        (lambda: RevenueArm.from_values("sms", [3.0]), "expected at least 2"),
        (lambda: RevenueArm.from_values("sms", [3.0, float("inf")]), "value 1 is inf"),
        (lambda: RevenueArm("sms", 10, 2.0, -1.0), "field 'variance'"),
        (lambda: RevenueArm.from_sums("sms", 10, 100.0, 10.0), "expected the sum of the squared values"),
    ],
)
def test_malformed_arms(build, message: str):
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build()


def test_malformed_experiments():
    a, b = ConversionArm("a", 100, 10), ConversionArm("b", 100, 12)
    with pytest.raises(InputError, match="got 1 arm.*expected at least 2"):
        compare_conversions([a])
    with pytest.raises(InputError, match="got 0 arm"):
        bayesian_conversions([])
    with pytest.raises(InputError, match="'a' appear more than once"):
        compare_conversions([a, a])
    with pytest.raises(InputError, match="field 'control': got 'holdout'; expected one of the arms 'a', 'b'"):
        compare_conversions([a, b], control="holdout")
    with pytest.raises(InputError, match="expected a RevenueArm"):
        compare_revenue([a, b])
    with pytest.raises(InputError, match="field 'correction'"):
        compare_conversions([a, b], correction="fdr")
    with pytest.raises(InputError, match="field 'alpha'"):
        compare_conversions([a, b], alpha=1.5)
    with pytest.raises(InputError, match="record a, field 'visitors': got 0 visitors"):
        two_proportion_ztest(ConversionArm("a", 0, 0), b)
    with pytest.raises(InputError, match="field 'prior'"):
        bayesian_conversions([a, b], prior=(0, 1))
    with pytest.raises(InputError, match="field 'method'"):
        bayesian_conversions([a, b], method="guess")
    with pytest.raises(InputError, match="field 'minimum_detectable_effect'.*strictly between 0 and 1"):
        sample_size_two_proportions(0.95, 0.1)
    with pytest.raises(InputError, match="field 'baseline'"):
        sample_size_two_proportions(0.0, 0.1)
    with pytest.raises(InputError, match="field 'tau'"):
        sequential_conversion_test([a], [b], tau=0)
    with pytest.raises(InputError, match="record 2, field 'visitors': visitors fell from 100 to 50"):
        sequential_conversion_test([a, ConversionArm("a", 50, 5)], [b, b], tau=0.01)
    with pytest.raises(InputError, match="1 control looks and 2 treatment looks"):
        sequential_conversion_test([a], [b, b], tau=0.01)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=1, max_size=8))
def test_holm_lies_between_raw_and_bonferroni_and_keeps_the_order(p: list[float]):
    holm, bonferroni = adjust_p_values(p, "holm"), adjust_p_values(p, "bonferroni")
    for raw, h, b in zip(p, holm, bonferroni, strict=True):
        assert raw <= h + 1e-15 and h <= b + 1e-15 and h <= 1.0
    order = np.argsort(p, kind="stable")
    assert all(holm[i] <= holm[j] for i, j in itertools.pairwise(order))
