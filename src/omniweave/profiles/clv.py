"""Customer lifetime value: BG/NBD (how often a customer buys, and when they stop) and Gamma-Gamma
(how much they spend per purchase), fitted by maximum likelihood.

Pure functions over arrays: `summarize_transactions` turns dated transactions into the per-customer
summary (frequency, recency, T, monetary value), `fit_bgnbd` and `fit_gamma_gamma` estimate the
population parameters, and `expected_purchases`, `probability_alive`, `expected_spend` and
`customer_lifetime_value` predict per customer. Formulas and conventions: docs/clv.md.

The fits work on the distinct (frequency, recency, T) rows with a count each, and evaluate every
term that depends on the frequency alone once per distinct frequency, so a million customers
summarised on a day grid fit in well under a second.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import betaln, digamma, expit, gammaln, hyp2f1

from omniweave.errors import InputError

TIME_UNITS = {"days": 1, "weeks": 7}
LOG_PARAMETER_BOUND = 25.0  # parameters are searched in [e^-25, e^25]
DATE_EXAMPLE = "a date such as 2024-03-01 (ISO 8601)"


# ---------------------------------------------------------------- the per-customer summary


@dataclass(frozen=True)
class CustomerSummary:
    """One entry per customer, in order of first appearance in the transactions.

    `frequency`: repeat purchases (distinct purchase days after the first); `recency`: first to last
    purchase day; `T`: first purchase day to `observation_end`; both in `time_unit`.
    `monetary_value`: mean value of the repeat purchase days (a day's purchases summed), 0 without.
    """

    customer: np.ndarray
    frequency: np.ndarray
    recency: np.ndarray
    T: np.ndarray
    monetary_value: np.ndarray
    observation_end: np.datetime64
    time_unit: str

    def __len__(self) -> int:
        return len(self.customer)


def _time_unit_days(time_unit: str) -> int:
    if time_unit not in TIME_UNITS:
        raise InputError(f"got {time_unit!r}; expected one of {', '.join(TIME_UNITS)}", field="time_unit")
    return TIME_UNITS[time_unit]


def _as_series(values: Any) -> pd.Series:
    if isinstance(values, pd.Series):
        return values.reset_index(drop=True)
    if hasattr(values, "to_pandas"):  # pyarrow Array / ChunkedArray
        return values.to_pandas().reset_index(drop=True)
    return pd.Series(values if isinstance(values, np.ndarray) else list(values))


def _first_bad(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _shown(raw: object) -> str:
    return "an empty value" if raw is None or (isinstance(raw, float) and math.isnan(raw)) else repr(str(raw))


def _parse_days(values: Any, *, field: str) -> np.ndarray:
    """Calendar days since 1970-01-01 (int64); a time of day is dropped, a UTC offset converted to UTC."""
    series = _as_series(values)
    if isinstance(series.dtype, pd.DatetimeTZDtype):
        parsed = series.dt.tz_convert("UTC").dt.tz_localize(None)
    elif pd.api.types.is_datetime64_any_dtype(series.dtype):
        parsed = series
    else:
        text = series.where(series.isna(), series.astype(str).str.strip())
        parsed = pd.to_datetime(text.mask(text == ""), format="ISO8601", errors="coerce", utc=True)
        parsed = parsed.dt.tz_localize(None)
    bad = parsed.isna().to_numpy()
    if bad.any():
        row = _first_bad(bad)
        raise InputError(f"got {_shown(series.iloc[row])}; expected {DATE_EXAMPLE}", field=field, record=row + 1)
    return parsed.to_numpy().astype("datetime64[D]").astype(np.int64)


def _parse_values(values: Any, *, field: str) -> np.ndarray:
    series = _as_series(values)
    numbers = pd.to_numeric(series, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    bad = ~np.isfinite(numbers) | (numbers < 0)
    if bad.any():
        row = _first_bad(bad)
        raise InputError(f"got {_shown(series.iloc[row])}; expected a non-negative number", field=field, record=row + 1)
    return numbers


def _parse_day(value: object, *, field: str) -> int:
    return int(_parse_days([value], field=field)[0])


def summarize_transactions(
    customers: Any,
    dates: Any,
    values: Any = None,
    *,
    observation_end: object = None,
    time_unit: str = "days",
    fields: Sequence[str] = ("customer", "date", "value"),
) -> CustomerSummary:
    """Per-customer frequency, recency, T and monetary value from one row per transaction.

    Purchases are merged per calendar day (their values summed); transactions after
    `observation_end` (default: the last transaction's day) are ignored. `fields` names the three
    inputs in error messages, which count rows from 1.
    """
    unit = _time_unit_days(time_unit)
    customer_field, date_field, value_field = fields
    ids = _as_series(customers)
    missing = ids.isna().to_numpy() | (ids.astype(str).str.strip() == "").to_numpy()
    if missing.any():
        raise InputError(
            "the customer id is empty; expected an id", field=customer_field, record=_first_bad(missing) + 1
        )
    days = _parse_days(dates, field=date_field)
    if len(days) != len(ids):
        raise InputError(
            f"got {len(days)} dates for {len(ids)} customer ids; expected one per transaction", field=date_field
        )
    amounts = np.zeros(len(days)) if values is None else _parse_values(values, field=value_field)
    if len(amounts) != len(ids):
        raise InputError(
            f"got {len(amounts)} values for {len(ids)} customer ids; expected one per transaction", field=value_field
        )
    if len(ids) == 0:
        raise InputError("no transactions; expected at least one row", field=date_field)
    codes, uniques = pd.factorize(ids, sort=False)
    end = int(days.max()) if observation_end is None else _parse_day(observation_end, field="observation_end")
    kept = days <= end
    if not kept.any():
        raise InputError(
            f"every transaction is after {np.datetime64(end, 'D')}; expected some on or before it",
            field="observation_end",
        )
    codes, days, amounts = codes[kept], days[kept], amounts[kept]

    order = np.lexsort((days, codes))
    codes, days, amounts = codes[order], days[order], amounts[order]
    new_day = np.ones(len(codes), dtype=bool)
    new_day[1:] = (codes[1:] != codes[:-1]) | (days[1:] != days[:-1])
    day_value = np.add.reduceat(amounts, np.flatnonzero(new_day))
    day_customer, day = codes[new_day], days[new_day]
    first = np.ones(len(day), dtype=bool)
    first[1:] = day_customer[1:] != day_customer[:-1]
    last = np.append(first[1:], True)
    customer_of_day = np.cumsum(first) - 1
    purchase_days = np.bincount(customer_of_day)
    frequency = purchase_days - 1
    repeat_value = np.bincount(customer_of_day, weights=day_value) - day_value[first]
    monetary = np.divide(repeat_value, frequency, out=np.zeros(len(frequency)), where=frequency > 0)
    return CustomerSummary(
        customer=np.asarray(uniques)[day_customer[first]],
        frequency=frequency.astype(np.int64),
        recency=(day[last] - day[first]) / unit,
        T=(end - day[first]) / unit,
        monetary_value=monetary,
        observation_end=np.datetime64(end, "D"),
        time_unit=time_unit,
    )


def summarize_table(
    table: Any,
    *,
    customer_col: str,
    date_col: str,
    value_col: str | None = None,
    observation_end: object = None,
    time_unit: str = "days",
) -> CustomerSummary:
    """`summarize_transactions` on the named columns of a pandas DataFrame, a pyarrow Table or a
    mapping of column name to values."""
    if hasattr(table, "column_names"):  # pyarrow
        columns = list(table.column_names)
    elif isinstance(table, Mapping):
        columns = list(table.keys())
    else:  # pandas
        columns = list(table.columns)
    wanted = [customer_col, date_col] + ([value_col] if value_col is not None else [])
    for name in wanted:
        if name not in columns:
            raise InputError(f"missing column {name!r}; got columns {columns}", field=name)
    return summarize_transactions(
        table[customer_col],
        table[date_col],
        None if value_col is None else table[value_col],
        observation_end=observation_end,
        time_unit=time_unit,
        fields=(customer_col, date_col, value_col or "value"),
    )


# ---------------------------------------------------------------- checking and compressing the summary


def _column(values: Any, field: str) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise InputError("expected numbers", field=field) from None
    if array.ndim != 1:
        raise InputError(f"got an array of shape {array.shape}; expected one value per customer", field=field)
    bad = ~np.isfinite(array)
    if bad.any():
        row = _first_bad(bad)
        raise InputError(f"got {array[row]}; expected a finite number", field=field, record=row + 1)
    return array


def _check_lengths(**columns: np.ndarray) -> int:
    sizes = {name: len(col) for name, col in columns.items()}
    if len(set(sizes.values())) > 1:
        raise InputError(f"got lengths {sizes}; expected one value per customer in each")
    return next(iter(sizes.values()))


def _check_rfm(frequency: Any, recency: Any, T: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x, t_x, t = _column(frequency, "frequency"), _column(recency, "recency"), _column(T, "T")
    if _check_lengths(frequency=x, recency=t_x, T=t) == 0:
        raise InputError("no customers; expected at least one", field="frequency")
    for bad, field, reason in (
        ((x < 0) | (x != np.floor(x)), "frequency", lambda i: f"got {x[i]}; expected a whole number >= 0"),
        (t_x < 0, "recency", lambda i: f"got {t_x[i]}; expected a number >= 0"),
        (t_x > t, "recency", lambda i: f"got {t_x[i]} after T = {t[i]}; expected recency <= T"),
        ((x == 0) & (t_x != 0), "recency", lambda i: f"got {t_x[i]} with no repeat purchase; expected 0"),
    ):
        if bad.any():
            row = _first_bad(bad)
            raise InputError(reason(row), field=field, record=row + 1)
    return x, t_x, t


@dataclass(frozen=True)
class _Rows:
    """Distinct rows of a data set with their counts, and the distinct frequencies."""

    columns: tuple[np.ndarray, ...]  # distinct rows, column by column
    weight: np.ndarray  # how many customers share each row
    frequencies: np.ndarray  # distinct frequencies
    frequency_weight: np.ndarray  # customers per distinct frequency
    frequency_index: np.ndarray  # per distinct row, its position in `frequencies`


def _distinct_rows(*columns: np.ndarray, weights: np.ndarray | None, compress: bool) -> _Rows:
    """Collapse equal rows into one with their summed weight (`compress`); rows come out ordered by
    their first column, the frequency."""
    weight = np.ones(len(columns[0])) if weights is None else weights
    if not compress:
        order = np.argsort(columns[0], kind="stable")
        columns, weight = tuple(col[order] for col in columns), weight[order]
    elif len(columns[0]) > 1:
        order = np.lexsort(columns[::-1])
        sorted_cols = [col[order] for col in columns]
        start = np.ones(len(order), dtype=bool)
        start[1:] = np.any([col[1:] != col[:-1] for col in sorted_cols], axis=0)
        groups = np.flatnonzero(start)
        columns = tuple(col[groups] for col in sorted_cols)
        weight = np.add.reduceat(weight[order], groups)
    frequencies, index = np.unique(columns[0], return_inverse=True)
    return _Rows(tuple(columns), weight, frequencies, np.bincount(index, weights=weight), index)


def _dot(u: np.ndarray, v: np.ndarray) -> float:
    """Sum of products without BLAS, whose threads stall the many short evaluations of a fit on a
    busy machine (einsum's own loop is as fast on one core)."""
    return float(np.einsum("i,i->", u, v))


def _check_weights(weights: Any, n: int) -> np.ndarray | None:
    if weights is None:
        return None
    w = _column(weights, "weights")
    if len(w) != n:
        raise InputError(f"got {len(w)} weights for {n} customers; expected one per customer", field="weights")
    if (w < 0).any():
        row = _first_bad(w < 0)
        raise InputError(f"got {w[row]}; expected a number >= 0", field="weights", record=row + 1)
    return w


def _maximise(objective: Any, start: np.ndarray, total_weight: float) -> tuple[np.ndarray, float, int, bool]:
    """Maximise a log-likelihood over log-parameters; returns (parameters, log-likelihood, iterations, ok).

    BFGS rather than L-BFGS-B: the latter's every step calls into a threaded BLAS whose wake-ups
    cost more than a whole evaluation on a busy machine. Outside [-bound, bound] the objective is
    continued by a quadratic wall, so exp() never overflows and the search is pushed back in.
    """

    def negative_mean(theta: np.ndarray) -> tuple[float, np.ndarray]:
        inside = np.clip(theta, -LOG_PARAMETER_BOUND, LOG_PARAMETER_BOUND)
        excess = theta - inside
        params = np.exp(inside)
        ll, grad = objective(params)
        return (-ll / total_weight + float(excess @ excess), -grad * params / total_weight + 2.0 * excess)

    result = minimize(negative_mean, np.log(start), jac=True, method="BFGS", options={"maxiter": 5000, "gtol": 1e-9})
    theta = np.clip(result.x, -LOG_PARAMETER_BOUND, LOG_PARAMETER_BOUND)
    gradient = negative_mean(theta)[1]
    # a line search that cannot improve on a point where the gradient vanishes has converged
    converged = bool(result.success) or float(np.max(np.abs(gradient))) < 1e-6
    on_bound = bool(np.any(np.abs(theta) >= LOG_PARAMETER_BOUND - 1e-9))
    ll = objective(np.exp(theta))[0]
    return np.exp(theta), float(ll), int(result.nit), converged and not on_bound


# ---------------------------------------------------------------- BG/NBD


@dataclass(frozen=True)
class BetaGeoFit:
    """BG/NBD parameters: purchase rates ~ Gamma(shape r, rate alpha) per time unit, dropout
    probability after each repeat purchase ~ Beta(a, b). `log_likelihood` is the total over customers."""

    r: float
    alpha: float
    a: float
    b: float
    log_likelihood: float
    n_customers: int
    iterations: int
    converged: bool


def _bgnbd_terms(params: np.ndarray, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per customer: ln of the second likelihood term over the first (`-inf` without a repeat purchase),
    and ln(alpha + T), ln(alpha + t_x)."""
    r, alpha, a, b = params
    log_at = np.log(alpha + T)
    log_atx = np.log(alpha + t_x)
    repeat = x > 0
    with np.errstate(divide="ignore"):
        log_ratio = np.where(
            repeat, np.log(a) - np.log(np.where(repeat, b + x - 1, 1.0)) + (r + x) * (log_at - log_atx), -np.inf
        )
    return log_ratio, log_at, log_atx


def bgnbd_log_likelihood(params: Sequence[float], frequency: Any, recency: Any, T: Any) -> np.ndarray:
    """Per-customer BG/NBD log-likelihood at `params` = (r, alpha, a, b) (Fader, Hardie & Lee 2005, eq. 6)."""
    r, alpha, a, b = (float(p) for p in params)
    x, t_x, t = _check_rfm(frequency, recency, T)
    log_ratio, log_at, _ = _bgnbd_terms(np.array([r, alpha, a, b]), x, t_x, t)
    return (
        gammaln(r + x)
        - gammaln(r)
        + r * math.log(alpha)
        + betaln(a, b + x)
        - betaln(a, b)
        - (r + x) * log_at
        + np.logaddexp(0.0, log_ratio)
    )


def _softplus_and_sigmoid(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ln(1 + e^z) and 1 / (1 + e^-z), sharing one exponential, stable for any z."""
    e = np.exp(-np.abs(z))
    return np.maximum(z, 0.0) + np.log1p(e), np.where(z >= 0, 1.0, e) / (1.0 + e)


def _bgnbd_objective(rows: _Rows) -> Any:
    x, t_x, T = rows.columns
    w = rows.weight
    xs, wx = rows.frequencies, rows.frequency_weight
    first_repeat = int(np.searchsorted(x, 0.5))  # rows are ordered by frequency
    xp, tp, wp = x[first_repeat:], t_x[first_repeat:], w[first_repeat:]
    xp_index = rows.frequency_index[first_repeat:]
    w_x = w * x
    total = w.sum()
    xs_repeat = np.maximum(xs, 1.0)  # b + x - 1 is only used where x >= 1

    def objective(params: np.ndarray) -> tuple[float, np.ndarray]:
        r, alpha, a, b = params
        # terms of the frequency alone, once per distinct frequency
        ll = _dot(wx, gammaln(r + xs) - gammaln(r) + betaln(a, b + xs) - betaln(a, b))
        d_r = _dot(wx, digamma(r + xs) - digamma(r))
        d_a = _dot(wx, digamma(a + b) - digamma(a + b + xs))
        d_b = _dot(wx, digamma(b + xs) - digamma(a + b + xs) - digamma(b) + digamma(a + b))
        # r ln(alpha) - (r + x) ln(alpha + T), every customer
        log_at = np.log(alpha + T)
        inv_at = 1.0 / (alpha + T)
        w_log_at = _dot(w, log_at)
        ll += r * math.log(alpha) * total - r * w_log_at - _dot(w_x, log_at)
        d_r += math.log(alpha) * total - w_log_at
        d_alpha = r * total / alpha - r * _dot(w, inv_at) - _dot(w_x, inv_at)
        # ln(1 + a/(b+x-1) ((alpha+T)/(alpha+t_x))^(r+x)), customers with a repeat purchase
        gap = log_at[first_repeat:] - np.log(alpha + tp)
        inv_bx = 1.0 / (b + xs_repeat - 1)
        log_ratio = (r + xp) * gap
        log_ratio += (math.log(a) + np.log(inv_bx))[xp_index]
        softplus, sigmoid = _softplus_and_sigmoid(log_ratio)
        ll += _dot(wp, softplus)
        share = wp * sigmoid  # weight of the "dropped out at t_x" term
        d_r += _dot(share, gap)
        d_alpha += _dot(share, (r + xp) * (inv_at[first_repeat:] - 1.0 / (alpha + tp)))
        d_a += share.sum() / a
        d_b -= _dot(share, inv_bx[xp_index])
        return float(ll), np.array([d_r, d_alpha, d_a, d_b])

    return objective


def fit_bgnbd(frequency: Any, recency: Any, T: Any, *, weights: Any = None, compress: bool = True) -> BetaGeoFit:
    """Maximum-likelihood BG/NBD parameters from per-customer frequency, recency and T.

    `weights` (optional) counts customers per row. With `compress`, equal rows are fitted once with
    their count, which changes nothing but the time taken.
    """
    x, t_x, t = _check_rfm(frequency, recency, T)
    w = _check_weights(weights, len(x))
    total = float(len(x) if w is None else w.sum())
    buyers = x > 0 if w is None else (x > 0) & (w > 0)
    if not buyers.any():
        raise InputError("no customer has a repeat purchase; expected at least one frequency > 0", field="frequency")
    rows = _distinct_rows(x, t_x, t, weights=w, compress=compress)
    x_mean = _dot(rows.weight, rows.columns[0]) / total
    t_mean = _dot(rows.weight, rows.columns[2]) / total
    start = np.array([1.0, max(t_mean / max(x_mean, 1e-3), 1e-3), 1.0, 1.0])
    params, ll, iterations, converged = _maximise(_bgnbd_objective(rows), start, total)
    r, alpha, a, b = (float(p) for p in params)
    return BetaGeoFit(r, alpha, a, b, ll, len(x), iterations, converged)


# ---------------------------------------------------------------- is dropout identified?

PROFILE_DROP = 1.92
"""Half the 95 % point of chi-square with one degree of freedom: the profile-likelihood interval."""
P_ALIVE_TOLERANCE = 0.10
"""Dropout counts as identified when the mean P(alive) of the repeat buyers moves by at most this
much across the interval of mean dropout probabilities the data cannot tell apart."""
MIN_HISTORY_GAPS = 1.0
"""Dropout counts as identified only when half the buyers were observed for at least this many mean
times between purchases: a silence can only say "stopped" once it can be longer than the usual gap."""
CHECK_SAMPLE = 20_000
"""Customers (at random, weighted up to the whole) on which the profile likelihood is computed."""
PROFILE_STEPS = 7
"""Bisection steps per end of the interval, in log space between the fit and 1e-6 or 0.999: each end is
found to within about 10 % of its value, plenty to tell whether P(alive) moves."""
_MU_FLOOR = 1e-6
_MU_CEILING = 0.999


@dataclass(frozen=True)
class DropoutCheck:
    """Whether the data pin down how customers drop out, which P(alive) rests on.

    `dropout` is the fitted mean probability of dropping out after a repeat purchase, a / (a + b);
    `dropout_interval` the 95 % profile-likelihood interval of it (every value the data fit almost as
    well, the other parameters re-fitted at each); `p_alive_interval` the mean P(alive) of the repeat
    buyers at the two ends. `history` is the median time from first purchase to the end of observation
    over buyers, `purchase_gap` the population's mean time between purchases (alpha / r), both in the
    fit's time unit. `identified` is False when half the buyers were observed for less than
    `MIN_HISTORY_GAPS` purchase gaps, when P(alive) moves by more than `P_ALIVE_TOLERANCE` inside the
    interval, or when a parameter sits on the search's bound; `reason` then says why, in words.
    """

    identified: bool
    dropout: float
    dropout_interval: tuple[float, float]
    p_alive: float
    p_alive_interval: tuple[float, float]
    history: float
    longest_history: float
    purchase_gap: float
    at_bound: tuple[str, ...]
    reason: str | None

    def to_dict(self) -> dict[str, Any]:
        """The check as JSON values."""
        return {
            "identified": self.identified,
            "dropout": self.dropout,
            "dropout_interval": list(self.dropout_interval),
            "p_alive": self.p_alive,
            "p_alive_interval": list(self.p_alive_interval),
            "history": self.history,
            "longest_history": self.longest_history,
            "purchase_gap": self.purchase_gap,
            "at_bound": list(self.at_bound),
            "reason": self.reason,
        }


def _profile_objective(rows: _Rows, mu: float) -> Any:
    """The BG/NBD log-likelihood over (r, alpha, kappa) with the mean dropout a / (a + b) held at `mu`."""
    full = _bgnbd_objective(rows)

    def objective(params: np.ndarray) -> tuple[float, np.ndarray]:
        r, alpha, kappa = params
        ll, grad = full(np.array([r, alpha, mu * kappa, (1.0 - mu) * kappa]))
        return ll, np.array([grad[0], grad[1], mu * grad[2] + (1.0 - mu) * grad[3]])

    return objective


def _mean_p_alive(params: np.ndarray, x: np.ndarray, t_x: np.ndarray, T: np.ndarray, w: np.ndarray) -> float:
    log_ratio, _, _ = _bgnbd_terms(params, x, t_x, T)
    return _dot(w, expit(-log_ratio)) / float(w.sum())


def dropout_identification(
    fit: BetaGeoFit, frequency: Any, recency: Any, T: Any, *, weights: Any = None, time_unit: str = "days"
) -> DropoutCheck:
    """Check that `fit` (from the same data) identifies dropout, the part of BG/NBD behind P(alive).

    A customer who stopped buying and one who buys rarely look the same until the silence since their
    last purchase is long compared with the time between their purchases. On a short history the
    likelihood is flat in the dropout direction: the maximum may sit at "nobody drops out" (a → 0,
    b → ∞, every P(alive) = 1) while a large dropout fits almost as well. So the fitted mean dropout
    a / (a + b) gets a profile-likelihood interval (bisection in log space, the other three parameters
    re-fitted at each point), and the mean P(alive) of the repeat buyers is computed at both ends: if
    it moves by more than `P_ALIVE_TOLERANCE`, if half the buyers were observed for less than
    `MIN_HISTORY_GAPS` mean gaps between purchases (alpha / r), or if a parameter ended on the search's
    bound, dropout is not identified and P(alive) should not be reported.
    """
    x, t_x, t = _check_rfm(frequency, recency, T)
    w = _check_weights(weights, len(x))
    weight = np.ones(len(x)) if w is None else w
    buyers = weight > 0
    order = np.argsort(t[buyers])
    cumulative = np.cumsum(weight[buyers][order])
    history = float(t[buyers][order][np.searchsorted(cumulative, cumulative[-1] / 2.0)])
    longest = float(t[buyers].max())
    sampled = len(x) > CHECK_SAMPLE
    if sampled:
        # the profile's log-likelihood drop grows with the number of customers: a random sample whose
        # weights add up to the whole gives the same drop, at a fraction of the cost of each re-fit
        kept = np.random.default_rng(0).choice(len(x), CHECK_SAMPLE, replace=False)
        x, t_x, t = x[kept], t_x[kept], t[kept]
        weight = weight[kept] * (float(cumulative[-1]) / float(weight[kept].sum()))
    rows = _distinct_rows(x, t_x, t, weights=weight, compress=True)
    total = float(rows.weight.sum())
    repeat = (x > 0) & (weight > 0)
    rx, rtx, rt, rw = x[repeat], t_x[repeat], t[repeat], weight[repeat]
    gap = fit.alpha / fit.r
    fitted = np.array([fit.r, fit.alpha, fit.a, fit.b])
    at_bound = tuple(
        name
        for name, value in zip(("r", "alpha", "a", "b"), fitted, strict=True)
        if abs(math.log(value)) >= LOG_PARAMETER_BOUND - 1e-6
    )
    best = fit.log_likelihood
    if sampled:  # the sample's own maximum, from the whole's
        fitted, best, _, _ = _maximise(_bgnbd_objective(rows), fitted, total)
    mu_hat = min(max(float(fitted[2] / (fitted[2] + fitted[3])), _MU_FLOOR), _MU_CEILING)
    kappa_hat = float(fitted[2] + fitted[3])
    # the likelihood along a fixed mean dropout has two basins: kappa -> infinity (every customer drops out
    # with the same probability) and kappa -> 0 (some drop out at once, the rest never); start in both
    starts = [np.array([fitted[0], fitted[1], kappa]) for kappa in (max(kappa_hat, 1.0), 0.1)]

    def profile(mu: float) -> tuple[float, np.ndarray]:
        found = [_maximise(_profile_objective(rows, mu), start, total) for start in starts]
        params, ll, _, _ = max(found, key=lambda one: one[1])
        return ll, np.array([params[0], params[1], mu * params[2], (1.0 - mu) * params[2]])

    def end(limit: float) -> tuple[float, np.ndarray]:
        """The interval's end between mu_hat and `limit`: the farthest mu whose profile stays within reach."""
        starts[0] = np.array([fitted[0], fitted[1], max(kappa_hat, 1.0)])
        ll, params = profile(limit)
        if best - ll <= PROFILE_DROP:
            return limit, params
        inside, outside, inside_params = math.log(mu_hat), math.log(limit), fitted
        for _ in range(PROFILE_STEPS):
            middle = 0.5 * (inside + outside)
            ll, params = profile(math.exp(middle))
            if best - ll <= PROFILE_DROP:
                inside, inside_params = middle, params
                starts[0] = np.array([params[0], params[1], max(params[2] + params[3], 1e-6)])
            else:
                outside = middle
        return math.exp(inside), inside_params

    has_repeat = bool(repeat.any())
    p_fit = _mean_p_alive(fitted, rx, rtx, rt, rw) if has_repeat else 1.0
    low, low_params = end(_MU_FLOOR) if mu_hat > _MU_FLOOR else (mu_hat, fitted)
    high, high_params = end(_MU_CEILING) if mu_hat < _MU_CEILING else (mu_hat, fitted)
    p_low = _mean_p_alive(low_params, rx, rtx, rt, rw) if has_repeat else 1.0
    p_high = _mean_p_alive(high_params, rx, rtx, rt, rw) if has_repeat else 1.0
    p_range = (min(p_low, p_high, p_fit), max(p_low, p_high, p_fit))
    reasons = []
    flat = p_range[1] - p_range[0] > P_ALIVE_TOLERANCE
    if history < MIN_HISTORY_GAPS * gap:
        reasons.append(
            f"half the buyers were observed for {history:g} {time_unit} or less (the longest {longest:g}), "
            f"less than the {gap:.3g} {time_unit} between purchases on average, so no silence is yet long "
            "enough to tell a customer who stopped from one who buys rarely"
        )
    if flat:
        reasons.append(
            f"the data fit about as well with a mean dropout after a purchase anywhere from {low:.2g} to "
            f"{high:.2g} (fitted: {mu_hat:.2g}), so the repeat buyers' mean P(alive) could be anywhere from "
            f"{p_range[0]:.2f} to {p_range[1]:.2f}"
        )
    if at_bound:
        reasons.append(f"{', '.join(at_bound)} ended on the search's bound (e^±{LOG_PARAMETER_BOUND:g})")
    if not fit.converged and not at_bound:
        reasons.append("the optimiser did not converge")
    reason = None
    if reasons:
        reason = "dropout is not identified: " + "; ".join(reasons)
        if not flat:
            reason += (
                f" (the data allow a mean P(alive) of the repeat buyers from {p_range[0]:.2f} to {p_range[1]:.2f})"
            )
    return DropoutCheck(
        identified=not reasons,
        dropout=mu_hat,
        dropout_interval=(low, high),
        p_alive=p_fit,
        p_alive_interval=p_range,
        history=history,
        longest_history=longest,
        purchase_gap=gap,
        at_bound=at_bound,
        reason=reason,
    )


def _rfm(fit: BetaGeoFit, frequency: Any, recency: Any, T: Any) -> tuple[np.ndarray, ...]:
    x, t_x, t = _check_rfm(frequency, recency, T)
    log_ratio, log_at, _ = _bgnbd_terms(np.array([fit.r, fit.alpha, fit.a, fit.b]), x, t_x, t)
    return x, t_x, t, log_ratio, log_at


def probability_alive(fit: BetaGeoFit, frequency: Any, recency: Any, T: Any) -> np.ndarray:
    """P(the customer has not dropped out by T), given their history (1 without a repeat purchase)."""
    *_, log_ratio, _ = _rfm(fit, frequency, recency, T)
    return expit(-log_ratio)


def expected_purchases(fit: BetaGeoFit, horizon: float, frequency: Any, recency: Any, T: Any) -> np.ndarray:
    """Expected purchases in (T, T + horizon] per customer, given their history (FHL 2005, eq. 10)."""
    if not (math.isfinite(horizon) and horizon >= 0):
        raise InputError(f"got {horizon}; expected a number of time units >= 0", field="horizon")
    x, _, t, log_ratio, log_at = _rfm(fit, frequency, recency, T)
    r, alpha, a, b = fit.r, fit.alpha, fit.a, fit.b
    after = np.log(alpha + t + horizon)
    bracket = 1.0 - np.exp((r + x) * (log_at - after)) * hyp2f1(
        r + x, b + x, a + b + x - 1, horizon / (alpha + t + horizon)
    )
    return (a + b + x - 1) / (a - 1) * bracket * expit(-log_ratio)


# ---------------------------------------------------------------- Gamma-Gamma


@dataclass(frozen=True)
class GammaGammaFit:
    """Gamma-Gamma parameters: a purchase's value ~ Gamma(shape p, rate nu) with nu ~ Gamma(shape q,
    rate v) per customer. Fitted on customers with a repeat purchase (`n_customers` of them)."""

    p: float
    q: float
    v: float
    log_likelihood: float
    n_customers: int
    iterations: int
    converged: bool


def _check_spend(frequency: Any, monetary_value: Any) -> tuple[np.ndarray, np.ndarray]:
    x, m = _column(frequency, "frequency"), _column(monetary_value, "monetary_value")
    _check_lengths(frequency=x, monetary_value=m)
    bad = (x < 0) | (x != np.floor(x))
    if bad.any():
        row = _first_bad(bad)
        raise InputError(f"got {x[row]}; expected a whole number >= 0", field="frequency", record=row + 1)
    bad = (x > 0) & (m <= 0)
    if bad.any():
        row = _first_bad(bad)
        raise InputError(
            f"got {m[row]} for a customer with repeat purchases; expected a mean spend > 0",
            field="monetary_value",
            record=row + 1,
        )
    return x, m


def gamma_gamma_log_likelihood(params: Sequence[float], frequency: Any, monetary_value: Any) -> np.ndarray:
    """Per-customer Gamma-Gamma log-likelihood of the mean spend at `params` = (p, q, v), customers
    with a repeat purchase only (Fader & Hardie 2013, eq. 4)."""
    p, q, v = (float(k) for k in params)
    x, m = _check_spend(frequency, monetary_value)
    x, m = x[x > 0], m[x > 0]
    return (
        gammaln(p * x + q)
        - gammaln(p * x)
        - gammaln(q)
        + q * math.log(v)
        + (p * x - 1) * np.log(m)
        + p * x * np.log(x)
        - (p * x + q) * np.log(v + x * m)
    )


def _gamma_gamma_objective(rows: _Rows) -> Any:
    x, m = rows.columns
    w = rows.weight
    xs, wx = rows.frequencies, rows.frequency_weight
    total = w.sum()
    log_m, log_x = np.log(m), np.log(x)
    s_xlogm, s_logm, s_xlogx = _dot(w, x * log_m), _dot(w, log_m), _dot(w, x * log_x)
    wx_xs = wx * xs
    spend = x * m

    def objective(params: np.ndarray) -> tuple[float, np.ndarray]:
        p, q, v = params
        log_vm = np.log(v + spend)
        w_log_vm, wx_log_vm = _dot(w, log_vm), _dot(w, x * log_vm)
        ll = (
            _dot(wx, gammaln(p * xs + q) - gammaln(p * xs))
            - total * gammaln(q)
            + q * total * math.log(v)
            + p * s_xlogm
            - s_logm
            + p * s_xlogx
            - p * wx_log_vm
            - q * w_log_vm
        )
        psi = digamma(p * xs + q)
        d_p = _dot(wx_xs, psi - digamma(p * xs)) + s_xlogm + s_xlogx - wx_log_vm
        d_q = _dot(wx, psi) - total * digamma(q) + total * math.log(v) - w_log_vm
        d_v = q * total / v - _dot(w, (p * x + q) / (v + spend))
        return float(ll), np.array([d_p, d_q, d_v])

    return objective


def fit_gamma_gamma(
    frequency: Any, monetary_value: Any, *, weights: Any = None, compress: bool = True
) -> GammaGammaFit:
    """Maximum-likelihood Gamma-Gamma parameters from frequency and mean repeat spend; customers
    without a repeat purchase carry no information on spend and are left out."""
    x, m = _check_spend(frequency, monetary_value)
    w = _check_weights(weights, len(x))
    repeat = x > 0 if w is None else (x > 0) & (w > 0)
    if not repeat.any():
        raise InputError("no customer has a repeat purchase; expected at least one frequency > 0", field="frequency")
    rows = _distinct_rows(x[repeat], m[repeat], weights=None if w is None else w[repeat], compress=compress)
    total = float(rows.weight.sum())
    mean, var = _weighted_moments(rows.columns[1], rows.weight)
    # moment start: spend per purchase ~ Gamma(p, nu), so mean ~ p/nu; take p = 1 + mean^2/var
    p0 = 1.0 + mean * mean / max(var, 1e-12 * mean * mean + 1e-300)
    start = np.array([p0, 2.0, p0 / mean if mean > 0 else 1.0])
    params, ll, iterations, converged = _maximise(_gamma_gamma_objective(rows), start, total)
    p, q, v = (float(k) for k in params)
    return GammaGammaFit(p, q, v, ll, int(repeat.sum()), iterations, converged)


def _weighted_moments(values: np.ndarray, weight: np.ndarray) -> tuple[float, float]:
    mean = _dot(weight, values) / float(weight.sum())
    return mean, _dot(weight, (values - mean) ** 2) / float(weight.sum())


def expected_spend(fit: GammaGammaFit, frequency: Any, monetary_value: Any) -> np.ndarray:
    """Expected value of a customer's future purchase, given their repeat purchases' mean
    (the population mean p v / (q - 1) for a customer without one)."""
    if fit.q <= 1:
        raise InputError(f"got q = {fit.q}; the expected spend needs q > 1", field="q")
    x, m = _check_spend(frequency, monetary_value)
    return fit.p * (fit.v + x * m) / (fit.p * x + fit.q - 1)


def customer_lifetime_value(
    purchases: BetaGeoFit,
    spend: GammaGammaFit,
    frequency: Any,
    recency: Any,
    T: Any,
    monetary_value: Any,
    *,
    horizon: float,
    discount_rate: float = 0.0,
    steps: int = 1,
) -> np.ndarray:
    """Expected value of each customer's purchases in (T, T + horizon]: expected purchases times
    expected spend. With a `discount_rate` (per step), the horizon is cut into `steps` equal steps
    and the purchases expected in step k are discounted by (1 + discount_rate)^k."""
    if not (math.isfinite(discount_rate) and discount_rate > -1):
        raise InputError(f"got {discount_rate}; expected a rate > -1 per step", field="discount_rate")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise InputError(f"got {steps!r}; expected a whole number of steps >= 1", field="steps")
    value = expected_spend(spend, frequency, monetary_value)
    if discount_rate == 0:
        return expected_purchases(purchases, horizon, frequency, recency, T) * value
    total = np.zeros(len(value))
    before = np.zeros(len(value))
    for k in range(1, steps + 1):
        upto = expected_purchases(purchases, horizon * k / steps, frequency, recency, T)
        total += (upto - before) / (1.0 + discount_rate) ** k
        before = upto
    return total * value


# ---------------------------------------------------------------- simulation (tests, benchmarks, what-if)


def simulate_bgnbd(
    n: int, *, r: float, alpha: float, a: float, b: float, T: Any, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Draw (frequency, recency) for `n` customers observed for `T` time units each (scalar or array).

    A customer buys at rate lambda ~ Gamma(r, alpha) and drops out after each repeat purchase with
    probability p ~ Beta(a, b): with N ~ Poisson(lambda T) purchases on offer and the dropout at
    purchase K ~ Geometric(p), x = min(N, K), and the x-th of N uniform arrival times is
    T * Beta(x, N - x + 1).
    """
    t = np.broadcast_to(np.asarray(T, dtype=float), (n,))
    rate = rng.gamma(r, 1.0 / alpha, n)
    dropout = rng.beta(a, b, n)
    offered = rng.poisson(rate * t)
    x = np.minimum(offered, rng.geometric(np.clip(dropout, 1e-300, 1.0)))
    repeat = x > 0
    recency = np.zeros(n)
    recency[repeat] = t[repeat] * rng.beta(x[repeat], offered[repeat] - x[repeat] + 1)
    return x.astype(np.int64), recency


def simulate_gamma_gamma(frequency: Any, *, p: float, q: float, v: float, rng: np.random.Generator) -> np.ndarray:
    """Draw each customer's mean repeat spend (0 without a repeat purchase): nu ~ Gamma(q, rate v),
    the sum of x purchases ~ Gamma(p x, rate nu)."""
    x = np.asarray(frequency, dtype=np.int64)
    nu = rng.gamma(q, 1.0 / v, len(x))
    repeat = x > 0
    mean = np.zeros(len(x))
    mean[repeat] = rng.gamma(p * x[repeat], 1.0 / nu[repeat]) / x[repeat]
    return mean
