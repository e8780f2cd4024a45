"""A media-mix model: revenue per period (and per region) = baseline + Σ_c media effect of channel c.

    y[u, t] = a_u + share_u · (baseline_t · γ) + Σ_c β_c · share_u · hill(adstock_c(x[c, u, ·] / share_u)_t)

- `u` is a unit (a region, or the whole business as one unit), `share_u` its share of revenue: a
  region responds like the whole business scaled to its size (spend per head of the region);
- the baseline has a trend, weekly and yearly Fourier terms, holiday and promotion indicators;
- adstock is geometric, normalised so that a steady spend x has adstock x (`(1 − λ) Σ λ^l x_{t−l}`),
  or delayed with a peak θ (weights λ^((l − θ)²), normalised to sum to 1, over `max_lag` periods);
- hill(a) = a^s / (a^s + K^s), so β_c is the channel's revenue per period at saturation.

Fit (regularised maximum likelihood under Gaussian noise): the baseline is profiled out (ridge on its
seasonal terms), each channel's nonlinear parameters (λ, K, s, and θ when delayed) are chosen on a
grid by coordinate descent, and for each choice the β are the non-negative least-squares solution.
Everything is computed from Gram matrices of the candidates' columns built once, so a sweep costs
microseconds per candidate. How freely the baseline's level may drift (no knots, or knots under one of
KNOT_RIDGES) is chosen by generalised cross-validation. Priors enter as penalties σ² · (−2 log density):
on each channel's transform (decay, shape, half-saturation), on its ROI (half-normal, its scale pooled
from the channels' unpenalised ROIs), and per lift test (incremental revenue of a channel over some
periods, ± se) ((contribution − measured) / se)² · σ², a Gaussian prior on that contribution.

Uncertainty: a seeded moving-block residual bootstrap (blocks of whole periods, the same blocks in
every unit), each replicate re-choosing the grid parameters locally from the point estimate and
re-solving β. Intervals are percentile intervals. Same data and seed → same numbers.
Formulas, conventions and checks: docs/mmm.md.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import optimize, signal

from omniweave.errors import InputError

DECAYS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
HALF_SATURATIONS = (0.3, 0.45, 0.65, 0.9, 1.25, 1.75, 2.5, 3.5, 5.0)  # × the channel's mean spend per period
SHAPES = (1.0, 1.4, 2.0, 2.8)
PEAKS = (0, 1, 2, 3)  # delayed adstock only (periods)
CORRELATION_LIMIT = 0.9
MIN_VARIATION = 0.05  # coefficient of variation of spend below which a channel is "never varied"
KNOT_DAYS = 56  # the baseline's level may drift, with a knot every 8 weeks
KNOT_RIDGES = (10.0, 1.0, 0.1)  # how freely the level may drift: chosen by generalised cross-validation
# the prior on each channel's ROI: half-normal with this scale (None: no prior); "pooled": the scale is estimated
# from the channels' unpenalised ROIs (the half-normal's maximum-likelihood scale, √ mean ROI²): the channels'
# returns are taken to come from one distribution, whose spread the data tell
ROI_SCALE: float | str | None = "pooled"
# priors on each channel's transform (as pymc-marketing's defaults, on our parametrisation): decay ~ Beta(1, 3);
# log(shape) ~ Normal(0, 0.5), i.e. concave (s = 1) unless the data insist; log(half-saturation / mean spend per
# period) ~ Normal(0, 1)
DECAY_PRIOR = (1.0, 3.0)
SHAPE_PRIOR_SD = 0.5
HALF_SATURATION_PRIOR_SD = 1.0


# ---------------------------------------------------------------- transforms


def geometric_adstock(spend: np.ndarray, decay: float) -> np.ndarray:
    """(1 − λ) Σ_l λ^l x_{t−l} along the last axis, starting from nothing spent before the first period."""
    x = np.asarray(spend, dtype=float)
    return signal.lfilter([1.0 - decay], [1.0, -decay], x, axis=-1)


def delayed_adstock(spend: np.ndarray, decay: float, peak: int, max_lag: int) -> np.ndarray:
    """Σ_l w_l x_{t−l} with w_l ∝ λ^((l − θ)²), l < max_lag, normalised to sum to 1 (peak at θ)."""
    x = np.asarray(spend, dtype=float)
    lags = np.arange(max_lag)
    w = np.power(decay, (lags - peak) ** 2.0) if decay > 0 else (lags == peak).astype(float)
    w = w / w.sum()
    return signal.lfilter(w, [1.0], x, axis=-1)


def hill(level: np.ndarray | float, half_saturation: float, shape: float) -> np.ndarray:
    """a^s / (a^s + K^s), as 1 / (1 + (K/a)^s); 0 at a = 0."""
    a = np.asarray(level, dtype=float)
    with np.errstate(divide="ignore", over="ignore"):
        return np.where(a > 0, 1.0 / (1.0 + (half_saturation / np.where(a > 0, a, 1.0)) ** shape), 0.0)


@dataclass(frozen=True)
class MediaParams:
    """One channel's transform: adstock decay λ (and peak θ when delayed), Hill half-saturation K
    (in spend per period per unit of share) and shape s."""

    decay: float
    half_saturation: float
    shape: float
    peak: int = 0
    delayed: bool = False
    max_lag: int = 12

    def adstock(self, spend: np.ndarray) -> np.ndarray:
        """The adstocked spend along the last axis."""
        if self.delayed:
            return delayed_adstock(spend, self.decay, self.peak, self.max_lag)
        return geometric_adstock(spend, self.decay)

    def half_life(self) -> float:
        """Periods until half of a period's spend has had its effect (geometric: ln ½ / ln λ)."""
        if not self.delayed:
            return 0.0 if self.decay <= 0 else math.log(0.5) / math.log(self.decay)
        lags = np.arange(self.max_lag)
        w = np.power(self.decay, (lags - self.peak) ** 2.0) if self.decay > 0 else (lags == self.peak).astype(float)
        cumulative = np.cumsum(w / w.sum())
        return float(np.searchsorted(cumulative, 0.5))


@dataclass(frozen=True)
class MediaCurve:
    """A channel's steady-state response: revenue per period when spending x every period, split
    over the units in the channel's usual mix: β Σ_u share_u hill(x · mix_u / share_u)."""

    channel: str
    beta: float
    params: MediaParams
    shares: tuple[float, ...] = (1.0,)
    mix: tuple[float, ...] = (1.0,)

    def revenue(self, spend_per_period: float | np.ndarray) -> Any:
        """Expected revenue per period at a steady spend (float in, float out; arrays elementwise)."""
        if np.ndim(spend_per_period) == 0:  # the optimisers' case: the same arithmetic on a float, without numpy
            return self._revenue_at(float(spend_per_period))
        x = np.asarray(spend_per_period, dtype=float)
        out = np.zeros_like(x)
        for share, part in zip(self.shares, self.mix, strict=True):
            if part > 0:
                out = out + share * hill(x * part / share, self.params.half_saturation, self.params.shape)
        out = self.beta * out
        return float(out) if np.ndim(out) == 0 else out

    def marginal(self, spend_per_period: float | np.ndarray) -> Any:
        """d revenue / d spend at a steady spend: Σ_u β mix_u s h(1 − h) / a_u with a_u = x mix_u / share_u."""
        if np.ndim(spend_per_period) == 0:
            return self._marginal_at(float(spend_per_period))
        x = np.maximum(np.asarray(spend_per_period, dtype=float), 1e-12 * self.params.half_saturation)
        out = np.zeros_like(x)
        for share, part in zip(self.shares, self.mix, strict=True):
            if part > 0:
                a = x * part / share
                h = hill(a, self.params.half_saturation, self.params.shape)
                out = out + part * self.params.shape * h * (1 - h) / a
        out = self.beta * out
        return float(out) if np.ndim(out) == 0 else out

    def _revenue_at(self, x: float) -> float:
        k, s, out = self.params.half_saturation, self.params.shape, 0.0
        for share, part in zip(self.shares, self.mix, strict=True):
            if part > 0:
                a = x * part / share
                out = out + share * (1.0 / (1.0 + (k / a) ** s) if a > 0 else 0.0)
        return self.beta * out

    def _marginal_at(self, x: float) -> float:
        k, s, out = self.params.half_saturation, self.params.shape, 0.0
        x = max(x, 1e-12 * k)
        for share, part in zip(self.shares, self.mix, strict=True):
            if part > 0:
                a = x * part / share
                h = 1.0 / (1.0 + (k / a) ** s) if a > 0 else 0.0
                out = out + part * s * h * (1 - h) / a
        return self.beta * out


# ---------------------------------------------------------------- input


@dataclass(frozen=True)
class LiftTest:
    """A measured incremental revenue of `channel` over periods [start, end) (indices into the
    data's periods), with its standard error: calibrates that channel's contribution."""

    channel: str
    start: int
    end: int
    incremental: float
    se: float


@dataclass(frozen=True)
class MediaData:
    """Revenue and spend per unit and period, and the baseline's calendar.

    `revenue` is [unit, period]; `spend[c]` is [unit, period] (a national channel's spend split
    over units by their share, a regional channel's as spent); `holidays` and `promotions` are
    [period, k] indicators (k may be 0); `period_days` is 1 (days) or 7 (weeks)."""

    periods: tuple[str, ...]
    units: tuple[str, ...]
    revenue: np.ndarray
    spend: Mapping[str, np.ndarray]
    period_days: int = 1
    holidays: np.ndarray | None = None
    promotions: np.ndarray | None = None
    weekday0: int = 0  # weekday of the first period (0 Monday), for the weekly terms
    dayofyear0: int = 0  # day of the year of the first period, for the yearly terms

    @property
    def channels(self) -> list[str]:
        return list(self.spend)

    def shares(self) -> np.ndarray:
        """Each unit's share of the revenue."""
        totals = np.clip(self.revenue.sum(axis=1), 0, None)
        return totals / totals.sum() if totals.sum() > 0 else np.full(len(self.units), 1 / len(self.units))


def check_data(data: MediaData) -> MediaData:
    """Validate shapes and values, naming the channel (record) and field of the first problem."""
    y = np.asarray(data.revenue, dtype=float)
    if y.ndim == 1:
        y = y[None, :]
    if y.ndim != 2 or y.shape[0] != len(data.units) or y.shape[1] != len(data.periods):
        raise InputError(
            f"got an array of shape {np.shape(data.revenue)}; expected [units={len(data.units)}, "
            f"periods={len(data.periods)}]",
            field="revenue",
        )
    if not np.isfinite(y).all():
        u, t = np.argwhere(~np.isfinite(y))[0]
        raise InputError(
            f"period {data.periods[t]} is {y[u, t]}; expected a finite number", field="revenue", record=data.units[u]
        )
    if len(data.periods) < 28:
        raise InputError(
            f"got {len(data.periods)} periods; expected at least 28 to fit a media-mix model", field="periods"
        )
    if not data.spend:
        raise InputError("got no channels; expected spend for at least one channel", field="spend")
    spend: dict[str, np.ndarray] = {}
    for channel, values in data.spend.items():
        try:
            x = np.asarray(values, dtype=float)
        except (TypeError, ValueError):
            raise InputError("expected numbers per unit and period", field="spend", record=channel) from None
        if x.ndim == 1:
            x = x[None, :]
        if x.shape != y.shape:
            raise InputError(
                f"got an array of shape {x.shape}; expected {y.shape} (units, periods)", field="spend", record=channel
            )
        bad = np.argwhere(~np.isfinite(x) | (x < 0))
        if bad.size:
            u, t = bad[0]
            raise InputError(
                f"unit {data.units[u]!r}, period {data.periods[t]} is {x[u, t]}; expected a finite number, 0 or more",
                field="spend",
                record=channel,
            )
        if not x.any():
            raise InputError("every period's spend is 0; expected some spend to measure", field="spend", record=channel)
        spend[str(channel)] = x
    extras = {}
    for name in ("holidays", "promotions"):
        value = getattr(data, name)
        if value is None:
            extras[name] = np.zeros((y.shape[1], 0))
            continue
        array = np.asarray(value, dtype=float)
        if array.ndim == 1:
            array = array[:, None]
        if array.shape[0] != y.shape[1] or not np.isfinite(array).all():
            raise InputError(
                f"got an array of shape {array.shape}; expected finite [periods={y.shape[1]}, k]", field=name
            )
        extras[name] = array
    if data.period_days not in (1, 7):
        raise InputError(f"got {data.period_days}; expected 1 (days) or 7 (weeks)", field="period_days")
    return MediaData(
        data.periods,
        data.units,
        y,
        spend,
        data.period_days,
        extras["holidays"],
        extras["promotions"],
        data.weekday0,
        data.dayofyear0,
    )


def identification_warnings(data: MediaData) -> dict[str, list[str]]:
    """Per channel, why its effect may not be identified: spend that never varied, or spend that
    moves with another channel's (correlation of total spend per period above 0.9)."""
    totals = {c: x.sum(axis=0) for c, x in data.spend.items()}
    out: dict[str, list[str]] = {c: [] for c in totals}
    for c, x in totals.items():
        mean = float(x.mean())
        if mean <= 0 or float(x.std()) / mean < MIN_VARIATION:
            out[c].append(f"spend never varied (coefficient of variation {float(x.std()) / max(mean, 1e-12):.3f})")
    names = list(totals)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            xa, xb = totals[a], totals[b]
            if xa.std() == 0 or xb.std() == 0:
                continue
            r = float(np.corrcoef(xa, xb)[0, 1])
            if r > CORRELATION_LIMIT:
                out[a].append(f"spend moves with {b} (correlation {r:.2f})")
                out[b].append(f"spend moves with {a} (correlation {r:.2f})")
    return out


# ---------------------------------------------------------------- design


def baseline_design(
    data: MediaData, shares: np.ndarray, knot_periods: int | None = None, knot_ridge: float = KNOT_RIDGES[-1]
) -> tuple[np.ndarray, np.ndarray]:
    """Rows unit-major ([u0 t0..tT, u1 ...]); columns: one intercept per unit, then share-scaled trend,
    a level that may drift (hat functions every `knot_periods`, ridge-penalised), weekly (daily data) and
    yearly Fourier terms, holidays, promotions. Returns (B, ridge per column)."""
    units, periods = data.revenue.shape
    t = np.arange(periods, dtype=float)
    shared: list[np.ndarray] = [t / max(periods - 1, 1)]
    ridge: list[float] = [0.0]
    if knot_periods:
        for knot in np.arange(0, periods + knot_periods, knot_periods):
            shared.append(np.clip(1 - np.abs(t - knot) / knot_periods, 0, None))
            ridge.append(knot_ridge)
    if data.period_days == 1:
        day = (t + data.weekday0) % 7
        for k in (1, 2, 3):
            shared += [np.sin(2 * np.pi * k * day / 7), np.cos(2 * np.pi * k * day / 7)]
            ridge += [1e-2, 1e-2]
    doy = data.dayofyear0 + t * data.period_days
    for k in (1, 2, 3):
        shared += [np.sin(2 * np.pi * k * doy / 365.25), np.cos(2 * np.pi * k * doy / 365.25)]
        ridge += [1e-2, 1e-2]
    for extra in (data.holidays, data.promotions):
        assert extra is not None
        for j in range(extra.shape[1]):
            shared.append(extra[:, j])
            ridge.append(1e-2)
    s = np.stack(shared, axis=1)  # [T, k]
    s = (s - s.mean(axis=0)) / np.where(s.std(axis=0) > 0, s.std(axis=0), 1.0)
    intercepts = np.kron(np.eye(units), np.ones((periods, 1)))
    scaled = np.concatenate([share * s for share in shares], axis=0)
    return np.concatenate([intercepts, scaled], axis=1), np.array([0.0] * units + ridge)


@dataclass(frozen=True)
class _Candidates:
    channel: str
    params: list[MediaParams]
    columns: np.ndarray  # [rows, G] media columns (share_u · hill(adstock(x_u / share_u)))
    index: dict[tuple[int, ...], int]  # grid position -> candidate
    positions: list[tuple[int, ...]]


def _candidates(channel: str, spend: np.ndarray, shares: np.ndarray, delayed: bool, max_lag: int) -> _Candidates:
    per_head = spend / shares[:, None]
    scale = float(per_head.mean())
    params: list[MediaParams] = []
    cols: list[np.ndarray] = []
    index: dict[tuple[int, ...], int] = {}
    positions: list[tuple[int, ...]] = []
    peaks = PEAKS if delayed else (0,)
    for i, decay in enumerate(DECAYS):
        for p, peak in enumerate(peaks):
            stock = MediaParams(decay, 1.0, 1.0, peak, delayed, max_lag).adstock(per_head)
            for j, k in enumerate(HALF_SATURATIONS):
                for m, shape in enumerate(SHAPES):
                    mp = MediaParams(decay, k * scale, shape, peak, delayed, max_lag)
                    index[(i, p, j, m)] = len(params)
                    positions.append((i, p, j, m))
                    params.append(mp)
                    cols.append((shares[:, None] * hill(stock, mp.half_saturation, shape)).ravel())
    return _Candidates(channel, params, np.stack(cols, axis=1), index, positions)


# ---------------------------------------------------------------- fit


@dataclass(frozen=True)
class ChannelResult:
    """One channel's estimates, each with its bootstrap interval (low, high)."""

    channel: str
    spend: float
    contribution: float
    contribution_interval: tuple[float, float]
    roi: float
    roi_interval: tuple[float, float]
    marginal_roi: float
    marginal_roi_interval: tuple[float, float]
    params: MediaParams
    half_life: float
    curve: MediaCurve
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class MmmFit:
    """A fitted media-mix model: per-channel results, fit quality, series for charts, replicates."""

    periods: tuple[str, ...]
    units: tuple[str, ...]
    period_days: int
    channels: dict[str, ChannelResult]
    r_squared: float
    mape: float
    r_squared_holdout: float | None
    mape_holdout: float | None
    holdout_periods: int
    sigma: float
    actual: np.ndarray  # [period] revenue summed over units
    fitted: np.ndarray  # [period]
    baseline: np.ndarray  # [period]
    contributions: dict[str, np.ndarray]  # channel -> [period]
    replicate_curves: tuple[dict[str, MediaCurve], ...]
    seed: int
    bootstrap: int
    confidence: float
    lift_tests: tuple[LiftTest, ...] = field(default_factory=tuple)
    knot_ridge: float | None = None  # the baseline's drifting level: its ridge as chosen by GCV (None: no drift)
    roi_scale: float | None = None  # the ROI prior's half-normal scale used (None: no ROI prior)

    def curves(self) -> dict[str, MediaCurve]:
        """The point-estimate response curves."""
        return {c: r.curve for c, r in self.channels.items()}


class _Problem:
    """The profiled least-squares problem over the candidate columns of every channel."""

    def __init__(
        self,
        data: MediaData,
        rows: np.ndarray | None,
        delayed: bool,
        max_lag: int,
        knot_periods: int | None,
        knot_ridge: float = KNOT_RIDGES[-1],
        cands: list[_Candidates] | None = None,
    ) -> None:
        self.data = data
        self.shares = data.shares()
        self.y_full = data.revenue.ravel()
        self.rows = np.arange(self.y_full.size) if rows is None else rows
        self.channels = data.channels
        self.cands = cands or [_candidates(c, data.spend[c], self.shares, delayed, max_lag) for c in self.channels]
        b_full, ridge = baseline_design(data, self.shares, knot_periods, knot_ridge)
        self.b_full = b_full
        b = b_full[self.rows]
        scale = float(np.abs(self.y_full[self.rows]).mean()) or 1.0
        self.scale = scale
        gram = b.T @ b + np.diag(ridge * len(self.rows))
        self.b_solve = np.linalg.pinv(gram) @ b.T  # α = b_solve · (y − Mβ)
        self.baseline_dof = float(np.einsum("ij,ji->", b, self.b_solve))  # trace of the baseline's hat matrix
        self.b = b
        self.m = np.concatenate([c.columns[self.rows] for c in self.cands], axis=1) * scale
        self.offsets = np.cumsum([0] + [c.columns.shape[1] for c in self.cands])
        self.mr = self.m - b @ (self.b_solve @ self.m)  # (I − H) M
        self.base_gram = self.m.T @ self.mr
        self.base_gram = (self.base_gram + self.base_gram.T) / 2
        self.gram = self.base_gram
        self.extra_rhs = np.zeros(self.m.shape[1])
        self.param_penalty = np.zeros(self.m.shape[1])
        self.spend_rows = np.array([data.spend[c].ravel()[self.rows].sum() for c in self.channels])

    def penalise(
        self, sigma: float, lift_tests: Sequence[LiftTest], roi_scale: float | None, transform_priors: bool = True
    ) -> None:
        """Add the priors, on the scale of the likelihood (noise σ, penalties σ² · (−2 log density)): each
        channel's ROI ~ half-normal(roi_scale), its transform's (DECAY_PRIOR, SHAPE_PRIOR_SD,
        HALF_SATURATION_PRIOR_SD), and each lift test's measured contribution ± se."""
        gram = self.base_gram.copy()
        extra = np.zeros(self.m.shape[1])
        penalty = np.zeros(self.m.shape[1])
        if transform_priors:
            a_decay, b_decay = DECAY_PRIOR
            for ci, cand in enumerate(self.cands):
                scale = float((self.data.spend[cand.channel] / self.shares[:, None]).mean())
                for g, mp in enumerate(cand.params):
                    log_p = (a_decay - 1) * math.log(max(mp.decay, 1e-3)) + (b_decay - 1) * math.log(1 - mp.decay)
                    log_p -= 0.5 * (math.log(mp.shape) / SHAPE_PRIOR_SD) ** 2
                    log_p -= 0.5 * (math.log(mp.half_saturation / scale) / HALF_SATURATION_PRIOR_SD) ** 2
                    penalty[self.offsets[ci] + g] = -2 * sigma**2 * log_p
        if roi_scale:
            for ci in range(len(self.channels)):
                sl = slice(self.offsets[ci], self.offsets[ci + 1])
                a = sigma * self.m[:, sl].sum(axis=0) / self.spend_rows[ci] / roi_scale
                gram[sl, sl] += np.diag(a * a)
        units, periods = self.data.revenue.shape
        for test in lift_tests:
            ci = self.channels.index(test.channel)
            mask = np.zeros((units, periods))
            mask[:, test.start : test.end] = 1.0
            w = sigma / test.se
            a = w * (mask.ravel() @ self.cands[ci].columns) * self.scale
            sl = slice(self.offsets[ci], self.offsets[ci + 1])
            gram[sl, sl] += np.outer(a, a)
            extra[sl] += a * w * test.incremental
        self.gram, self.extra_rhs, self.param_penalty = gram, extra, penalty

    def rhs(self, y: np.ndarray) -> np.ndarray:
        """M'(I − H) y (+ the lift tests' targets)."""
        return self.mr.T @ y + self.extra_rhs

    def solve(self, chosen: Sequence[int], rhs: np.ndarray) -> tuple[np.ndarray, float]:
        """Non-negative β for the chosen global columns; returns (β, objective up to a constant)."""
        idx = np.asarray(chosen)
        g = self.gram[np.ix_(idx, idx)]
        r = rhs[idx]
        try:
            beta = np.linalg.solve(g, r)
        except np.linalg.LinAlgError:
            beta = -np.ones(len(idx))
        if (beta < 0).any():
            evals, evecs = np.linalg.eigh(g)
            root = evecs @ np.diag(np.sqrt(np.clip(evals, 1e-12 * max(evals.max(), 1e-300), None))) @ evecs.T
            beta, _ = optimize.nnls(root, np.linalg.solve(root, r))
        return beta, float(beta @ g @ beta - 2 * beta @ r + self.param_penalty[idx].sum())

    def descend(
        self, rhs: np.ndarray, start: list[int], *, local: bool, sweeps: int = 8
    ) -> tuple[list[int], np.ndarray]:
        """Coordinate descent over each channel's grid (all of it, or ±2 steps along each axis around the current point)."""
        chosen = list(start)
        best_beta, best = self.solve([self.offsets[i] + g for i, g in enumerate(chosen)], rhs)
        for _ in range(sweeps):
            changed = False
            for ci, cand in enumerate(self.cands):
                if local:
                    here = cand.positions[chosen[ci]]
                    options = set()
                    for dim in range(4):
                        for step in (-2, -1, 1, 2):
                            pos = list(here)
                            pos[dim] += step
                            if tuple(pos) in cand.index:
                                options.add(cand.index[tuple(pos)])
                    options_list = sorted(options)
                else:
                    options_list = list(range(len(cand.params)))
                for g in options_list:
                    if g == chosen[ci]:
                        continue
                    trial = list(chosen)
                    trial[ci] = g
                    beta, value = self.solve([self.offsets[i] + k for i, k in enumerate(trial)], rhs)
                    if value < best - 1e-12 * abs(best):
                        best, best_beta, chosen, changed = value, beta, trial, True
            if not changed:
                break
        return chosen, best_beta

    def predict(self, chosen: list[int], beta: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Fitted values over all rows, baseline over all rows and the media columns × β (rows × C)."""
        cols = np.stack([self.cands[i].columns[:, g] for i, g in enumerate(chosen)], axis=1) * self.scale
        media = cols * beta
        alpha = self.b_solve @ (y[self.rows] - media[self.rows].sum(axis=1))
        base = self.b_full @ alpha
        return base + media.sum(axis=1), base, media


def _start(problem: _Problem) -> list[int]:
    return [c.index[(len(DECAYS) // 2, 0, len(HALF_SATURATIONS) // 2, 1)] for c in problem.cands]


def _quality(actual: np.ndarray, fitted: np.ndarray) -> tuple[float, float]:
    total = float(((actual - actual.mean()) ** 2).sum())
    r2 = 1 - float(((actual - fitted) ** 2).sum()) / total if total > 0 else math.nan
    positive = actual > 0
    mape = (
        float(np.mean(np.abs(actual[positive] - fitted[positive]) / actual[positive])) if positive.any() else math.nan
    )
    return r2, mape


def _interval(values: Sequence[float] | np.ndarray, confidence: float, estimate: float) -> tuple[float, float]:
    """The replicates' percentile interval, moved so that it is centred as the replicates are around their
    median but on the point estimate (the replicates re-search the grid only near the point estimate, so
    their centre can drift from it; their spread is what they tell)."""
    if not len(values):
        return (math.nan, math.nan)
    tail = (1 - confidence) / 2 * 100
    low, mid, high = np.percentile(np.asarray(values, dtype=float), [tail, 50, 100 - tail])
    # every quantity here is ≥ 0 (β ≥ 0), so is its interval
    return max(0.0, float(estimate + low - mid)), max(0.0, float(estimate + high - mid))


def fit_mmm(
    data: MediaData,
    *,
    delayed: bool = False,
    max_lag: int = 12,
    holdout: float = 0.15,
    bootstrap: int = 100,
    block: int | None = None,
    confidence: float = 0.9,
    lift_tests: Sequence[LiftTest] = (),
    roi_scale: float | str | None = ROI_SCALE,
    transform_priors: bool = True,
    knot_days: int | None = KNOT_DAYS,
    seed: int = 0,
) -> MmmFit:
    """Fit the model, its holdout check and its bootstrap (see the module docstring)."""
    data = check_data(data)
    if isinstance(bootstrap, bool) or not isinstance(bootstrap, int) or bootstrap < 0:
        raise InputError(f"got {bootstrap!r}; expected a whole number of replicates, 0 or more", field="bootstrap")
    if not 0 < confidence < 1:
        raise InputError(f"got {confidence!r}; expected a number strictly between 0 and 1", field="confidence")
    if not 0 <= holdout < 0.5:
        raise InputError(f"got {holdout!r}; expected a share of the periods in [0, 0.5)", field="holdout")
    units, periods = data.revenue.shape
    for i, test in enumerate(lift_tests):
        if test.channel not in data.spend:
            raise InputError(
                f"unknown channel {test.channel!r}; expected one of {data.channels}",
                field="channel",
                record=f"lift test {i + 1}",
            )
        if not (0 <= test.start < test.end <= periods) or not test.se > 0:
            raise InputError(
                f"got periods [{test.start}, {test.end}) and se {test.se}; expected periods within "
                f"[0, {periods}) and se > 0",
                field="period",
                record=f"lift test {i + 1}",
            )
    y = data.revenue.ravel()
    spend_total = {c: float(x.sum()) for c, x in data.spend.items()}
    shares = data.shares()
    block = block or (28 if data.period_days == 1 else 4)
    knots = max(2, round(knot_days / data.period_days)) if knot_days else None

    # how freely the baseline's level may drift: no knots, or knots under each ridge, whichever has the
    # smallest generalised cross-validation error n·RSS / (n − dof)² (dof: the baseline's hat-matrix trace
    # plus four per channel)
    cands = [_candidates(c, data.spend[c], shares, delayed, max_lag) for c in data.channels]
    options = [(None, 0.0)] + ([(knots, r) for r in KNOT_RIDGES] if knots else [])
    best_gcv = math.inf
    for knot_periods, knot_ridge in options:
        trial = _Problem(data, None, delayed, max_lag, knot_periods, knot_ridge, cands)
        ch_t, bt_t = trial.descend(trial.rhs(y), _start(trial), local=False)
        fit_t, _, _ = trial.predict(ch_t, bt_t, y)
        dof_t = trial.baseline_dof + 4 * len(trial.channels)
        gcv = y.size * float(((y - fit_t) ** 2).sum()) / max(y.size - dof_t, 1.0) ** 2
        if gcv < best_gcv:
            best_gcv, problem, chosen, beta, knot_choice = gcv, trial, ch_t, bt_t, (knot_periods, knot_ridge)
    fitted, base, media = problem.predict(chosen, beta, y)
    dof = max(y.size - problem.baseline_dof - 4 * len(problem.channels), 1)
    sigma = math.sqrt(float(((y - fitted) ** 2).sum()) / dof)
    if roi_scale == "pooled":
        first_roi = [float(media[:, i].sum()) / problem.spend_rows[i] for i in range(len(problem.channels))]
        roi_scale = max(math.sqrt(float(np.mean(np.square(first_roi)))), 1e-6)
    elif isinstance(roi_scale, str) or (roi_scale is not None and not roi_scale > 0):
        raise InputError(f"got {roi_scale!r}; expected a positive number, 'pooled' or None", field="roi_scale")
    if lift_tests or roi_scale or transform_priors:
        problem.penalise(sigma, lift_tests, roi_scale, transform_priors)
        chosen, beta = problem.descend(problem.rhs(y), chosen, local=False)
        fitted, base, media = problem.predict(chosen, beta, y)

    # time-ordered holdout: fit on the first periods, predict the last ones
    hold = int(round(periods * holdout))
    r2_out = mape_out = None
    if hold >= 7:
        train = np.concatenate([np.arange(u * periods, u * periods + periods - hold) for u in range(units)])
        sub = _Problem(data, train, delayed, max_lag, *knot_choice, cands)
        sub.penalise(sigma, lift_tests, roi_scale, transform_priors)
        c_sub, b_sub = sub.descend(sub.rhs(y[train]), chosen, local=False)
        f_sub, _, _ = sub.predict(c_sub, b_sub, y)
        test_mask = np.zeros((units, periods), bool)
        test_mask[:, periods - hold :] = True
        actual_h = data.revenue[:, periods - hold :].sum(axis=0)
        fitted_h = f_sub.reshape(units, periods)[:, periods - hold :].sum(axis=0)
        r2_out, mape_out = _quality(actual_h, fitted_h)

    def summarise(ch: list[int], bt: np.ndarray) -> dict[str, tuple[float, float, float, MediaCurve]]:
        out = {}
        for ci, channel in enumerate(problem.channels):
            params = problem.cands[ci].params[ch[ci]]
            x = data.spend[channel]
            b = float(bt[ci]) * problem.scale

            def revenue_of(spend: np.ndarray, params: MediaParams = params, b: float = b) -> float:
                per_head = spend / shares[:, None]
                level = hill(params.adstock(per_head), params.half_saturation, params.shape)
                return b * float((shares[:, None] * level).sum())

            contribution = revenue_of(x)
            marginal = (revenue_of(x * 1.01) - contribution) / (0.01 * spend_total[channel])
            mix = x.sum(axis=1) / x.sum()
            curve = MediaCurve(channel, b, params, tuple(map(float, shares)), tuple(map(float, mix)))
            out[channel] = (contribution, contribution / spend_total[channel], marginal, curve)
        return out

    point = summarise(chosen, beta)
    rng = np.random.default_rng(seed)
    residuals = (y - fitted).reshape(units, periods)
    draws: dict[str, list[tuple[float, float, float]]] = {c: [] for c in problem.channels}
    replicate_curves = []
    starts = np.arange(0, periods - block + 1)
    for _ in range(bootstrap):
        picks = rng.choice(starts, size=math.ceil(periods / block))
        idx = (picks[:, None] + np.arange(block)[None, :]).ravel()[:periods]
        y_star = (fitted.reshape(units, periods) + residuals[:, idx]).ravel()
        ch_b, bt_b = problem.descend(problem.rhs(y_star), chosen, local=True, sweeps=3)
        summary = summarise(ch_b, bt_b)
        replicate_curves.append({c: s[3] for c, s in summary.items()})
        for c, s in summary.items():
            draws[c].append(s[:3])

    warnings = identification_warnings(data)
    results = {}
    for channel in problem.channels:
        contribution, roi, marginal, curve = point[channel]
        d = np.array(draws[channel]).reshape(-1, 3)
        results[channel] = ChannelResult(
            channel=channel,
            spend=spend_total[channel],
            contribution=contribution,
            contribution_interval=_interval(d[:, 0], confidence, contribution),
            roi=roi,
            roi_interval=_interval(d[:, 1], confidence, roi),
            marginal_roi=marginal,
            marginal_roi_interval=_interval(d[:, 2], confidence, marginal),
            params=curve.params,
            half_life=curve.params.half_life(),
            curve=curve,
            warnings=tuple(warnings[channel]),
        )
    actual = data.revenue.sum(axis=0)
    fitted_t = fitted.reshape(units, periods).sum(axis=0)
    r2, mape = _quality(actual, fitted_t)
    return MmmFit(
        periods=data.periods,
        units=data.units,
        period_days=data.period_days,
        channels=results,
        r_squared=r2,
        mape=mape,
        r_squared_holdout=r2_out,
        mape_holdout=mape_out,
        holdout_periods=hold if hold >= 7 else 0,
        sigma=sigma,
        actual=actual,
        fitted=fitted_t,
        baseline=base.reshape(units, periods).sum(axis=0),
        contributions={c: media[:, i].reshape(units, periods).sum(axis=0) for i, c in enumerate(problem.channels)},
        replicate_curves=tuple(replicate_curves),
        seed=seed,
        bootstrap=bootstrap,
        confidence=confidence,
        lift_tests=tuple(lift_tests),
        knot_ridge=knot_choice[1] if knot_choice[0] else None,
        roi_scale=float(roi_scale) if roi_scale else None,
    )
