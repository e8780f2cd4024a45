"""A/B and multi-arm experiments with a holdout, on conversion and revenue metrics.

Pure maths over per-arm counts or sums (or per-unit arrays, reduced to them):

- frequentist: the two-proportion z-test and Welch's t-test of every arm against the control
  (the holdout), with confidence intervals for the difference and the relative lift, and Holm or
  Bonferroni correction across arms;
- Bayesian: Beta-Binomial posteriors, the probability that each arm is best and its expected
  loss, by exact one-dimensional integration or by Monte Carlo with a fixed seed;
- planning: the sample size per arm to detect a given effect on a conversion rate;
- peeking-safe monitoring: the mixture sequential probability ratio test (mSPRT), whose
  always-valid p-values and confidence intervals may be looked at after every batch of data.

Formulas and conventions: docs/experiments.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol, TypeVar

import numpy as np
from scipy import integrate, stats

from omniweave.errors import InputError

CORRECTIONS = ("holm", "bonferroni", "none")
BAYES_METHODS = ("exact", "monte_carlo")
_TAIL = 1e-12  # posterior mass ignored at each end when integrating numerically


# ---------------------------------------------------------------- arms


def _whole_count(value: object, *, field: str, record: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise InputError(f"got {value!r}; expected a whole number, 0 or more", field=field, record=record)
    number = float(value)
    if not math.isfinite(number) or number < 0 or number != int(number):
        raise InputError(f"got {value!r}; expected a whole number, 0 or more", field=field, record=record)
    return int(number)


def _finite(value: object, *, field: str, record: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise InputError(f"got {value!r}; expected a finite number", field=field, record=record)
    if not math.isfinite(float(value)):
        raise InputError(f"got {value!r}; expected a finite number", field=field, record=record)
    return float(value)


@dataclass(frozen=True)
class ConversionArm:
    """One arm of a conversion test: how many units (visitors, customers) and how many converted."""

    name: str
    visitors: int
    conversions: int

    def __post_init__(self) -> None:
        record = str(self.name)
        visitors = _whole_count(self.visitors, field="visitors", record=record)
        conversions = _whole_count(self.conversions, field="conversions", record=record)
        if conversions > visitors:
            raise InputError(
                f"got {conversions} conversions; expected at most the arm's {visitors} visitors",
                field="conversions",
                record=record,
            )
        object.__setattr__(self, "visitors", visitors)
        object.__setattr__(self, "conversions", conversions)

    @classmethod
    def from_units(cls, name: str, converted: Sequence[object] | np.ndarray) -> ConversionArm:
        """An arm from one 0/1 (or True/False) outcome per unit."""
        values = np.asarray(converted)
        if values.ndim != 1 or not np.isin(values, (0, 1)).all():
            raise InputError("expected a one-dimensional array of 0/1 outcomes", field="converted", record=name)
        return cls(name, int(values.size), int(values.sum()))

    @property
    def rate(self) -> float:
        """The conversion rate (0 for an arm with no visitors)."""
        return self.conversions / self.visitors if self.visitors else 0.0


@dataclass(frozen=True)
class RevenueArm:
    """One arm of a revenue test: units, their mean value (e.g. revenue per visitor, zeros
    included) and the sample variance (ddof = 1)."""

    name: str
    units: int
    mean: float
    variance: float

    def __post_init__(self) -> None:
        record = str(self.name)
        units = _whole_count(self.units, field="units", record=record)
        if units < 2:
            raise InputError(
                f"got {units} units; expected at least 2 to estimate a variance", field="units", record=record
            )
        mean = _finite(self.mean, field="mean", record=record)
        variance = _finite(self.variance, field="variance", record=record)
        if variance < 0:
            raise InputError(f"got {variance}; expected a variance of 0 or more", field="variance", record=record)
        object.__setattr__(self, "units", units)
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "variance", variance)

    @classmethod
    def from_values(cls, name: str, values: Sequence[float] | np.ndarray) -> RevenueArm:
        """An arm from one value per unit (units that bought nothing count as 0)."""
        array = np.asarray(values, dtype=float)
        if array.ndim != 1:
            raise InputError("expected a one-dimensional array of values", field="values", record=name)
        bad = np.flatnonzero(~np.isfinite(array))
        if bad.size:
            raise InputError(
                f"value {int(bad[0])} is {array[bad[0]]}; expected finite numbers", field="values", record=name
            )
        if array.size < 2:
            raise InputError(
                f"got {array.size} values; expected at least 2 to estimate a variance", field="values", record=name
            )
        return cls(name, int(array.size), float(array.mean()), float(array.var(ddof=1)))

    @classmethod
    def from_sums(cls, name: str, units: int, total: float, total_squares: float) -> RevenueArm:
        """An arm from its unit count, the sum of the values and the sum of their squares."""
        count = _whole_count(units, field="units", record=name)
        total = _finite(total, field="total", record=name)
        total_squares = _finite(total_squares, field="total_squares", record=name)
        if count < 2:
            raise InputError(
                f"got {count} units; expected at least 2 to estimate a variance", field="units", record=name
            )
        centred = total_squares - total * total / count
        if centred < -1e-9 * max(total_squares, 1.0):
            raise InputError(
                f"got {total_squares}, less than total²/units = {total * total / count}; "
                f"expected the sum of the squared values",
                field="total_squares",
                record=name,
            )
        return cls(name, count, total / count, max(centred, 0.0) / (count - 1))


class _Named(Protocol):
    @property
    def name(self) -> str: ...


_Arm = TypeVar("_Arm", bound=_Named)


def _check_arms(arms: Sequence[object], kind: type[_Arm], control: str | None) -> tuple[list[_Arm], int]:
    """The arms, each checked to be a `kind`, with distinct names, and the position of the control (0 if none given)."""
    if len(arms) < 2:
        raise InputError(f"got {len(arms)} arm(s); expected at least 2 (a control and a treatment)", field="arms")
    checked: list[_Arm] = []
    for position, arm in enumerate(arms, 1):
        if not isinstance(arm, kind):
            raise InputError(f"got {type(arm).__name__}; expected a {kind.__name__}", field="arms", record=position)
        checked.append(arm)
    names = [arm.name for arm in checked]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise InputError(
            f"arm name(s) {', '.join(map(repr, duplicates))} appear more than once; expected one arm per name",
            field="name",
        )
    if control is None:
        return checked, 0
    if control not in names:
        raise InputError(f"got {control!r}; expected one of the arms {', '.join(map(repr, names))}", field="control")
    return checked, names.index(control)


# ---------------------------------------------------------------- frequentist


@dataclass(frozen=True)
class Comparison:
    """One arm against the control. `difference` = arm − control; `lift` = arm / control − 1
    (None when the control's value is 0). Intervals are two-sided at `confidence`."""

    arm: str
    control: str
    test: str  # "z" (two proportions) or "welch"
    control_value: float
    arm_value: float
    difference: float
    difference_interval: tuple[float, float]
    lift: float | None
    lift_interval: tuple[float, float] | None
    statistic: float
    degrees_of_freedom: float | None
    p_value: float
    confidence: float
    adjusted_p_value: float | None = None
    significant: bool | None = None


@dataclass(frozen=True)
class ExperimentResult:
    """Every arm against the control, p-values adjusted for the number of comparisons."""

    metric: str  # "conversion_rate" or "revenue_per_unit"
    control: str
    alpha: float
    correction: str
    comparisons: tuple[Comparison, ...]


def _check_probability(value: object, *, field: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float | np.integer | np.floating)
        or not 0 < float(value) < 1
    ):
        raise InputError(f"got {value!r}; expected a number strictly between 0 and 1", field=field)
    return float(value)


def _lift_interval(
    arm_value: float, control_value: float, arm_var: float, control_var: float, z: float
) -> tuple[float, float] | None:
    """Delta method on log(arm / control); needs both values above 0."""
    if arm_value <= 0 or control_value <= 0:
        return None
    log_ratio = math.log(arm_value / control_value)
    se = math.sqrt(arm_var / arm_value**2 + control_var / control_value**2)
    return math.exp(log_ratio - z * se) - 1.0, math.exp(log_ratio + z * se) - 1.0


def _p_from_statistic(statistic: float, difference: float, se: float, dist: object) -> tuple[float, float]:
    if se == 0:
        return (0.0, 1.0) if difference == 0 else (math.copysign(math.inf, difference), 0.0)
    return statistic, float(2 * dist.sf(abs(statistic)))  # type: ignore[attr-defined]


def two_proportion_ztest(control: ConversionArm, treatment: ConversionArm, *, confidence: float = 0.95) -> Comparison:
    """Two-sided z-test of equal conversion rates (pooled standard error), with a Wald interval for
    the difference (unpooled) and a delta-method interval for the relative lift."""
    confidence = _check_probability(confidence, field="confidence")
    for arm in (control, treatment):
        if arm.visitors == 0:
            raise InputError("got 0 visitors; expected at least 1", field="visitors", record=arm.name)
    p0, p1, n0, n1 = control.rate, treatment.rate, control.visitors, treatment.visitors
    pooled = (control.conversions + treatment.conversions) / (n0 + n1)
    se_pooled = math.sqrt(pooled * (1 - pooled) * (1 / n0 + 1 / n1))
    difference = p1 - p0
    statistic, p_value = _p_from_statistic(
        difference / se_pooled if se_pooled else 0.0, difference, se_pooled, stats.norm
    )
    var0, var1 = p0 * (1 - p0) / n0, p1 * (1 - p1) / n1
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    half = z * math.sqrt(var0 + var1)
    return Comparison(
        arm=treatment.name,
        control=control.name,
        test="z",
        control_value=p0,
        arm_value=p1,
        difference=difference,
        difference_interval=(difference - half, difference + half),
        lift=p1 / p0 - 1 if p0 > 0 else None,
        lift_interval=_lift_interval(p1, p0, var1, var0, z),
        statistic=statistic,
        degrees_of_freedom=None,
        p_value=p_value,
        confidence=confidence,
    )


def welch_ttest(control: RevenueArm, treatment: RevenueArm, *, confidence: float = 0.95) -> Comparison:
    """Two-sided Welch t-test of equal means (unequal variances, Welch–Satterthwaite degrees of
    freedom), with a t interval for the difference and a delta-method interval for the lift."""
    confidence = _check_probability(confidence, field="confidence")
    var0, var1 = control.variance / control.units, treatment.variance / treatment.units
    se = math.sqrt(var0 + var1)
    difference = treatment.mean - control.mean
    if se > 0:
        df = (var0 + var1) ** 2 / (var0**2 / (control.units - 1) + var1**2 / (treatment.units - 1))
    else:
        df = float(control.units + treatment.units - 2)
    dist = stats.t(df)
    statistic, p_value = _p_from_statistic(difference / se if se else 0.0, difference, se, dist)
    half = float(dist.ppf(0.5 + confidence / 2)) * se
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    return Comparison(
        arm=treatment.name,
        control=control.name,
        test="welch",
        control_value=control.mean,
        arm_value=treatment.mean,
        difference=difference,
        difference_interval=(difference - half, difference + half),
        lift=treatment.mean / control.mean - 1 if control.mean > 0 else None,
        lift_interval=_lift_interval(treatment.mean, control.mean, var1, var0, z),
        statistic=statistic,
        degrees_of_freedom=df,
        p_value=p_value,
        confidence=confidence,
    )


def adjust_p_values(p_values: Sequence[float], method: str = "holm") -> list[float]:
    """Family-wise error control across comparisons: `holm` (step-down), `bonferroni` or `none`."""
    if method not in CORRECTIONS:
        raise InputError(f"got {method!r}; expected one of {', '.join(CORRECTIONS)}", field="correction")
    p = np.asarray(p_values, dtype=float)
    if p.ndim != 1 or ((p < 0) | (p > 1) | ~np.isfinite(p)).any():
        raise InputError("expected p-values between 0 and 1", field="p_values")
    m = p.size
    if method == "none" or m == 0:
        return p.tolist()
    if method == "bonferroni":
        return np.minimum(1.0, p * m).tolist()
    order = np.argsort(p, kind="stable")
    stepped = np.maximum.accumulate(np.minimum(1.0, p[order] * (m - np.arange(m))))
    adjusted = np.empty(m)
    adjusted[order] = stepped
    return adjusted.tolist()


def _compare(
    arms: list, control_index: int, test: Callable[..., Comparison], metric: str, alpha: float, correction: str
) -> ExperimentResult:
    alpha = _check_probability(alpha, field="alpha")
    if correction not in CORRECTIONS:
        raise InputError(f"got {correction!r}; expected one of {', '.join(CORRECTIONS)}", field="correction")
    control = arms[control_index]
    treatments = [arm for i, arm in enumerate(arms) if i != control_index]
    # simultaneous (Bonferroni) intervals whenever the p-values are corrected
    per_interval = alpha / len(treatments) if correction != "none" else alpha
    raw = [test(control, arm, confidence=1 - per_interval) for arm in treatments]
    adjusted = adjust_p_values([c.p_value for c in raw], correction)
    comparisons = tuple(
        replace(c, adjusted_p_value=p, significant=p <= alpha) for c, p in zip(raw, adjusted, strict=True)
    )
    return ExperimentResult(metric, control.name, alpha, correction, comparisons)


def compare_conversions(
    arms: Sequence[ConversionArm], *, control: str | None = None, alpha: float = 0.05, correction: str = "holm"
) -> ExperimentResult:
    """Every arm's conversion rate against the control's (the holdout; the first arm by default),
    by the two-proportion z-test, p-values corrected across the arms."""
    checked, index = _check_arms(arms, ConversionArm, control)
    return _compare(checked, index, two_proportion_ztest, "conversion_rate", alpha, correction)


def compare_revenue(
    arms: Sequence[RevenueArm], *, control: str | None = None, alpha: float = 0.05, correction: str = "holm"
) -> ExperimentResult:
    """Every arm's mean value per unit against the control's, by Welch's t-test, p-values
    corrected across the arms."""
    checked, index = _check_arms(arms, RevenueArm, control)
    return _compare(checked, index, welch_ttest, "revenue_per_unit", alpha, correction)


# ---------------------------------------------------------------- Bayesian


@dataclass(frozen=True)
class BetaPosterior:
    """Beta(alpha, beta) posterior of one arm's conversion rate, with an equal-tailed credible interval."""

    arm: str
    alpha: float
    beta: float
    mean: float
    interval: tuple[float, float]


@dataclass(frozen=True)
class BayesianResult:
    """Posteriors, P(arm is best), P(arm beats the control) and expected loss E[max_j p_j − p_arm]."""

    control: str
    method: str
    posteriors: tuple[BetaPosterior, ...]
    probability_best: dict[str, float]
    probability_beats_control: dict[str, float]
    expected_loss: dict[str, float]


def _support(a: float, b: float) -> tuple[float, float]:
    return float(stats.beta.ppf(_TAIL, a, b)), float(stats.beta.isf(_TAIL, a, b))


def _exact_best(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """P(arm i is best) = ∫ f_i(x) Π_{j≠i} F_j(x) dx and E[max_j p_j] = ∫_0^1 1 − Π_j F_j(x) dx."""
    k = a.size
    supports = [_support(a[i], b[i]) for i in range(k)]

    def log_cdf_product(x: float, skip: int | None) -> float:
        return sum(float(stats.beta.logcdf(x, a[j], b[j])) for j in range(k) if j != skip)

    best = np.empty(k)
    for i in range(k):
        lo, hi = supports[i]
        mode = min(max((a[i] - 1) / (a[i] + b[i] - 2), lo), hi) if a[i] + b[i] > 2 else (lo + hi) / 2
        value, _ = integrate.quad(
            lambda x, i=i: math.exp(float(stats.beta.logpdf(x, a[i], b[i])) + log_cdf_product(x, i)),
            lo,
            hi,
            points=[mode],
            limit=200,
            epsabs=1e-13,
            epsrel=1e-10,
        )
        best[i] = value
    lo = min(s[0] for s in supports)
    hi = max(s[1] for s in supports)
    tail, _ = integrate.quad(
        lambda x: -math.expm1(log_cdf_product(x, None)),
        lo,
        hi,
        limit=200,
        points=[float(m) for m in a / (a + b) if lo < m < hi],
        epsabs=1e-13,
        epsrel=1e-10,
    )
    expected_max = lo + tail
    return best / best.sum(), expected_max - a / (a + b)


def _exact_beats(a0: float, b0: float, a1: float, b1: float) -> float:
    """P(p_1 > p_0) = ∫ f_1(x) F_0(x) dx."""
    lo, hi = _support(a1, b1)
    value, _ = integrate.quad(
        lambda x: math.exp(float(stats.beta.logpdf(x, a1, b1)) + float(stats.beta.logcdf(x, a0, b0))),
        lo,
        hi,
        points=[a1 / (a1 + b1)],
        limit=200,
        epsabs=1e-13,
        epsrel=1e-10,
    )
    return min(max(value, 0.0), 1.0)


def bayesian_conversions(
    arms: Sequence[ConversionArm],
    *,
    control: str | None = None,
    prior: tuple[float, float] = (1.0, 1.0),
    method: str = "exact",
    samples: int = 200_000,
    seed: int = 0,
    credible: float = 0.95,
) -> BayesianResult:
    """Beta-Binomial analysis: each arm's rate has posterior Beta(prior_a + conversions,
    prior_b + visitors − conversions); `exact` integrates numerically, `monte_carlo` draws
    `samples` joint draws from a generator seeded with `seed`."""
    checked, index = _check_arms(arms, ConversionArm, control)
    if method not in BAYES_METHODS:
        raise InputError(f"got {method!r}; expected one of {', '.join(BAYES_METHODS)}", field="method")
    if len(prior) != 2 or not all(isinstance(v, int | float) and math.isfinite(v) and v > 0 for v in prior):
        raise InputError(f"got {prior!r}; expected two positive numbers (a, b) of a Beta prior", field="prior")
    credible = _check_probability(credible, field="credible")
    a = np.array([prior[0] + arm.conversions for arm in checked], dtype=float)
    b = np.array([prior[1] + arm.visitors - arm.conversions for arm in checked], dtype=float)
    names = [arm.name for arm in checked]
    posteriors = tuple(
        BetaPosterior(
            name,
            float(ai),
            float(bi),
            float(ai / (ai + bi)),
            (float(stats.beta.ppf((1 - credible) / 2, ai, bi)), float(stats.beta.isf((1 - credible) / 2, ai, bi))),
        )
        for name, ai, bi in zip(names, a, b, strict=True)
    )
    if method == "exact":
        best, loss = _exact_best(a, b)
        beats = {name: _exact_beats(a[index], b[index], a[i], b[i]) for i, name in enumerate(names) if i != index}
    else:
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
            raise InputError(f"got {samples!r}; expected a whole number of draws, 1 or more", field="samples")
        draws = np.random.default_rng(seed).beta(a, b, size=(samples, a.size))
        best = np.bincount(draws.argmax(axis=1), minlength=a.size) / samples
        loss = (draws.max(axis=1, keepdims=True) - draws).mean(axis=0)
        beats = {name: float((draws[:, i] > draws[:, index]).mean()) for i, name in enumerate(names) if i != index}
    return BayesianResult(
        control=names[index],
        method=method,
        posteriors=posteriors,
        probability_best=dict(zip(names, best.tolist(), strict=True)),
        probability_beats_control=beats,
        expected_loss=dict(zip(names, np.maximum(loss, 0.0).tolist(), strict=True)),
    )


# ---------------------------------------------------------------- planning


@dataclass(frozen=True)
class SampleSize:
    """Units needed per arm (rounded up) for a two-sided two-proportion z-test."""

    control: int
    treatment: int
    baseline: float
    target: float
    alpha: float
    power: float
    unrounded_control: float

    @property
    def total(self) -> int:
        return self.control + self.treatment


def sample_size_two_proportions(
    baseline: float,
    minimum_detectable_effect: float,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
    relative: bool = False,
    ratio: float = 1.0,
) -> SampleSize:
    """Units per arm to detect a change from `baseline` to `baseline + effect` (or
    `baseline · (1 + effect)` when `relative`) with a two-sided test at `alpha` and the given
    power; `ratio` = treatment units / control units (e.g. 9 for a 10% holdout as control).

    n_control = (z_{1−α/2} √(p̄ q̄ (1 + 1/k)) + z_{power} √(p0 q0 + p1 q1 / k))² / (p1 − p0)²,
    p̄ = (p0 + k p1) / (1 + k) — the pooled-variance formula of Fleiss (and R's power.prop.test).
    """
    p0 = _check_probability(baseline, field="baseline")
    alpha = _check_probability(alpha, field="alpha")
    power = _check_probability(power, field="power")
    effect = _finite(minimum_detectable_effect, field="minimum_detectable_effect", record="minimum_detectable_effect")
    ratio = _finite(ratio, field="ratio", record="ratio")
    if ratio <= 0:
        raise InputError(f"got {ratio}; expected a positive ratio of treatment to control units", field="ratio")
    p1 = p0 * (1 + effect) if relative else p0 + effect
    if effect == 0 or not 0 < p1 < 1:
        raise InputError(
            f"got {minimum_detectable_effect!r}, a target rate of {p1:.6g}; expected a non-zero "
            f"effect that keeps the rate strictly between 0 and 1",
            field="minimum_detectable_effect",
        )
    k = ratio
    pooled = (p0 + k * p1) / (1 + k)
    z_alpha = float(stats.norm.isf(alpha / 2))
    z_power = float(stats.norm.ppf(power))
    root = z_alpha * math.sqrt(pooled * (1 - pooled) * (1 + 1 / k)) + z_power * math.sqrt(
        p0 * (1 - p0) + p1 * (1 - p1) / k
    )
    n_control = root**2 / (p1 - p0) ** 2
    return SampleSize(math.ceil(n_control - 1e-9), math.ceil(k * n_control - 1e-9), p0, p1, alpha, power, n_control)


def power_two_proportions(
    baseline: float, target: float, control_units: float, *, alpha: float = 0.05, ratio: float = 1.0
) -> float:
    """Power of the two-sided two-proportion z-test with `control_units` in the control and
    `ratio · control_units` in the treatment (the inverse of sample_size_two_proportions;
    the far tail is neglected, as in R's power.prop.test)."""
    p0 = _check_probability(baseline, field="baseline")
    p1 = _check_probability(target, field="target")
    alpha = _check_probability(alpha, field="alpha")
    n = _finite(control_units, field="control_units", record="control_units")
    k = _finite(ratio, field="ratio", record="ratio")
    if n <= 0 or k <= 0:
        raise InputError(f"got {n} control units and ratio {k}; expected both positive", field="control_units")
    pooled = (p0 + k * p1) / (1 + k)
    z_alpha = float(stats.norm.isf(alpha / 2))
    numerator = abs(p1 - p0) * math.sqrt(n) - z_alpha * math.sqrt(pooled * (1 - pooled) * (1 + 1 / k))
    return float(stats.norm.cdf(numerator / math.sqrt(p0 * (1 - p0) + p1 * (1 - p1) / k)))


# ---------------------------------------------------------------- sequential (mSPRT)


@dataclass(frozen=True)
class SequentialLook:
    """The state of the test after one look: always-valid p-value and interval (both monotone:
    the p-value never rises, the interval never widens)."""

    look: int
    control_units: int
    treatment_units: int
    difference: float
    p_value: float
    interval: tuple[float, float]
    reject: bool


@dataclass(frozen=True)
class SequentialResult:
    """Every look of an mSPRT; `stopped_at` is the first look whose p-value fell to alpha or below."""

    alpha: float
    tau: float
    looks: tuple[SequentialLook, ...]
    stopped_at: int | None


def always_valid(
    differences: np.ndarray, variances: np.ndarray, *, tau: float, alpha: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Always-valid p-values and interval bounds of the normal-mixture SPRT (Johari et al. 2017) for
    a difference estimated with the given variance at each look, mixing over N(0, tau²).

    Λ_n = √(V/(V+τ²)) exp(τ² θ̂² / (2V(V+τ²))), p_n = min(p_{n−1}, 1/Λ_n);
    interval θ̂ ± √(V(V+τ²)/τ² · (log((V+τ²)/V) − 2 log α)), intersected over the looks.
    """
    theta = np.asarray(differences, dtype=float)
    v = np.asarray(variances, dtype=float)
    tau2 = tau * tau
    safe = np.where(v > 0, v, 1.0)
    log_lambda = 0.5 * np.log(safe / (safe + tau2)) + tau2 * theta**2 / (2 * safe * (safe + tau2))
    log_lambda = np.where(v > 0, log_lambda, 0.0)  # no variance yet: no evidence
    p = np.minimum.accumulate(np.minimum(1.0, np.exp(-log_lambda)))
    half = np.sqrt(safe * (safe + tau2) / tau2 * (np.log((safe + tau2) / safe) - 2 * math.log(alpha)))
    half = np.where(v > 0, half, np.inf)
    low = np.maximum.accumulate(theta - half)
    high = np.minimum.accumulate(theta + half)
    return p, low, high


def _check_looks(control: Sequence, treatment: Sequence, kind: type, units: str) -> None:
    if len(control) != len(treatment):
        raise InputError(
            f"got {len(control)} control looks and {len(treatment)} treatment looks; expected "
            f"one pair of cumulative arms per look",
            field="looks",
        )
    if not control:
        raise InputError("got no looks; expected at least one", field="looks")
    for series in (control, treatment):
        for look, arm in enumerate(series, 1):
            if not isinstance(arm, kind):
                raise InputError(f"got {type(arm).__name__}; expected a {kind.__name__}", field="looks", record=look)
            if look > 1 and getattr(arm, units) < getattr(series[look - 2], units):
                raise InputError(
                    f"{units} fell from {getattr(series[look - 2], units)} to "
                    f"{getattr(arm, units)}; expected cumulative counts that never decrease",
                    field=units,
                    record=look,
                )


def _sequential(
    control_units: Sequence[int],
    treatment_units: Sequence[int],
    theta: Sequence[float],
    variances: Sequence[float],
    tau: float,
    alpha: float,
) -> SequentialResult:
    alpha = _check_probability(alpha, field="alpha")
    tau = _finite(tau, field="tau", record="tau")
    if tau <= 0:
        raise InputError(f"got {tau}; expected a positive mixture scale (the effect size you care about)", field="tau")
    p, low, high = always_valid(np.asarray(theta), np.asarray(variances), tau=tau, alpha=alpha)
    looks = tuple(
        SequentialLook(i + 1, int(n0), int(n1), float(d), float(pv), (float(lo), float(hi)), bool(pv <= alpha))
        for i, (n0, n1, d, pv, lo, hi) in enumerate(
            zip(control_units, treatment_units, theta, p, low, high, strict=True)
        )
    )
    stopped = next((look.look for look in looks if look.reject), None)
    return SequentialResult(alpha, tau, looks, stopped)


def sequential_conversion_test(
    control: Sequence[ConversionArm], treatment: Sequence[ConversionArm], *, tau: float, alpha: float = 0.05
) -> SequentialResult:
    """mSPRT on the difference of conversion rates, given the cumulative counts of each arm at every
    look; safe to stop at the first look with p ≤ alpha however often one looks. `tau` is the
    scale of plausible differences (e.g. the minimum detectable effect, in rate units)."""
    _check_looks(control, treatment, ConversionArm, "visitors")
    _check_looks(control, treatment, ConversionArm, "conversions")
    theta, variances = [], []
    for c, t in zip(control, treatment, strict=True):
        theta.append(t.rate - c.rate)
        variances.append(
            c.rate * (1 - c.rate) / c.visitors + t.rate * (1 - t.rate) / t.visitors
            if c.visitors and t.visitors
            else 0.0
        )
    return _sequential([c.visitors for c in control], [t.visitors for t in treatment], theta, variances, tau, alpha)


def sequential_revenue_test(
    control: Sequence[RevenueArm], treatment: Sequence[RevenueArm], *, tau: float, alpha: float = 0.05
) -> SequentialResult:
    """mSPRT on the difference of mean value per unit, given each arm's cumulative summary at every
    look; `tau` is the scale of plausible differences in value units."""
    _check_looks(control, treatment, RevenueArm, "units")
    theta = [t.mean - c.mean for c, t in zip(control, treatment, strict=True)]
    variances = [c.variance / c.units + t.variance / t.units for c, t in zip(control, treatment, strict=True)]
    return _sequential([c.units for c in control], [t.units for t in treatment], theta, variances, tau, alpha)
