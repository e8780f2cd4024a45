"""CLV maths: the CDNOW sample reproduces the published BG/NBD and Gamma-Gamma parameters, fits recover
simulated parameters better as data grow, the log-likelihood matches its textbook form and its
gradient matches finite differences, predictions agree with a brute-force simulation, the summary
builder reproduces the published CDNOW summary, and bad input is named by record and field.

Data: tests/data/clv (the CDNOW sample from the lifetimes 0.11.3 wheel, MIT; see its README)."""

from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from scipy.special import gammaln

from omniweave.errors import InputError
from omniweave.profiles.clv import (
    BetaGeoFit,
    GammaGammaFit,
    _bgnbd_objective,
    _distinct_rows,
    _gamma_gamma_objective,
    bgnbd_log_likelihood,
    customer_lifetime_value,
    expected_purchases,
    expected_spend,
    fit_bgnbd,
    fit_gamma_gamma,
    gamma_gamma_log_likelihood,
    probability_alive,
    simulate_bgnbd,
    simulate_gamma_gamma,
    summarize_table,
    summarize_transactions,
)
from tests.conftest import omniweave_cmd

DATA = Path(__file__).parents[1] / "data" / "clv"
CALIBRATION_END = "1997-09-30"  # 39 weeks from 1997-01-01


@pytest.fixture(scope="module")
def cdnow() -> pd.DataFrame:
    """Published per-customer summary: x, t_x, T (weeks, 2 decimals), zbar."""
    return pd.read_csv(DATA / "cdnow_customers_summary_with_transactions.csv")


@pytest.fixture(scope="module")
def cdnow_transactions() -> pd.DataFrame:
    return pd.read_csv(
        DATA / "CDNOW_sample.txt",
        sep=r"\s+",
        header=None,
        dtype=str,
        names=["master_id", "customer", "date", "quantity", "amount"],
    )


# ---------------------------------------------------------------- published values


def test_bgnbd_on_cdnow_reproduces_fader_hardie_lee_2005(cdnow):
    fit = fit_bgnbd(cdnow.x, cdnow.t_x, cdnow["T"])
    assert fit.converged and fit.n_customers == 2357
    # published to 3 decimals: r = 0.243, alpha = 4.414, a = 0.793, b = 2.426, LL = -9582.4
    for name, published in {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}.items():
        assert getattr(fit, name) == pytest.approx(published, abs=0.0005 + 1e-6), name
    assert fit.log_likelihood == pytest.approx(-9582.4, abs=0.05)


def test_gamma_gamma_on_cdnow_reproduces_fader_hardie_2013(cdnow):
    fit = fit_gamma_gamma(cdnow.x, cdnow.zbar)
    assert fit.converged and fit.n_customers == 946
    # published to 2 decimals: p = 6.25, q = 3.74, v (gamma) = 15.44; within one unit of the last digit
    for name, published in {"p": 6.25, "q": 3.74, "v": 15.44}.items():
        assert getattr(fit, name) == pytest.approx(published, abs=0.01), name
    # and to 1e-4 what the independent lifetimes 0.11.3 (GammaGammaFitter) finds on this file
    for name, theirs in {"p": 6.248802, "q": 3.744588, "v": 15.447748}.items():
        assert getattr(fit, name) == pytest.approx(theirs, rel=1e-4), name


def test_summary_builder_reproduces_the_published_cdnow_summary(cdnow, cdnow_transactions):
    summary = summarize_table(
        cdnow_transactions,
        customer_col="customer",
        date_col="date",
        value_col="amount",
        observation_end=CALIBRATION_END,
        time_unit="weeks",
    )
    assert len(summary) == 2357 and summary.observation_end == np.datetime64(CALIBRATION_END)
    ours = pd.DataFrame(
        {
            "frequency": summary.frequency,
            "recency": summary.recency,
            "T": summary.T,
            "monetary": summary.monetary_value,
        },
        index=summary.customer.astype(int),
    )
    ours = ours.loc[cdnow.ID]
    assert (ours.frequency.to_numpy() == cdnow.x.to_numpy()).all()
    # the published file rounds to 2 decimals
    np.testing.assert_allclose(ours.recency, cdnow.t_x, atol=0.005 + 1e-9)
    np.testing.assert_allclose(ours["T"], cdnow["T"], atol=0.005 + 1e-9)
    np.testing.assert_allclose(ours.monetary, cdnow.zbar, atol=0.005 + 1e-9)
    # fitted on the unrounded summary, the published parameters still come out
    fit = fit_bgnbd(summary.frequency, summary.recency, summary.T)
    for name, published in {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}.items():
        assert round(getattr(fit, name), 3) == published, name


def test_summary_builder_reads_a_pyarrow_table_the_same_as_pandas(cdnow_transactions):
    kwargs = {"customer_col": "customer", "date_col": "date", "value_col": "amount", "observation_end": CALIBRATION_END}
    from_pandas = summarize_table(cdnow_transactions, **kwargs)
    from_arrow = summarize_table(pa.Table.from_pandas(cdnow_transactions), **kwargs)
    for field in ("customer", "frequency", "recency", "T", "monetary_value"):
        np.testing.assert_array_equal(getattr(from_pandas, field), getattr(from_arrow, field))
    assert from_pandas.time_unit == "days"
    np.testing.assert_allclose(from_pandas.T, np.round(from_pandas.T))


# ---------------------------------------------------------------- the summary builder's conventions


def test_summary_merges_purchases_per_day_and_averages_the_repeat_days():
    summary = summarize_transactions(
        ["a", "a", "a", "b", "a", "c", "b"],
        ["2024-01-01", "2024-01-01T18:30:00", "2024-01-04", "2024-01-02", "2024-01-11", "2024-01-11", "2024-02-01"],
        [10, 5, 20, 7, 40, 3, 1],
        observation_end="2024-01-15",
    )
    assert summary.customer.tolist() == ["a", "b", "c"]
    assert summary.frequency.tolist() == [2, 0, 0]  # a: 3 distinct days; b's second purchase is after the end
    assert summary.recency.tolist() == [10, 0, 0]
    assert summary.T.tolist() == [14, 13, 4]
    assert summary.monetary_value.tolist() == [30, 0, 0]  # (20 + 40) / 2; the first day's 15 is not a repeat


def test_summary_defaults_to_the_last_day_and_converts_offsets_to_utc():
    summary = summarize_transactions(
        [1, 1, 2], pd.to_datetime(["2024-03-01", "2024-03-08", "2024-03-15"]), time_unit="weeks"
    )
    assert summary.observation_end == np.datetime64("2024-03-15")
    assert summary.recency.tolist() == [1, 0] and summary.T.tolist() == [2, 0]
    shifted = summarize_transactions([1, 1], ["2024-03-01T23:00:00-02:00", "2024-03-02T00:30:00+00:00"])
    assert shifted.frequency.tolist() == [0]  # both on 2024-03-02 in UTC


def test_summary_accepts_typed_date_columns():
    import datetime as dt

    days = [dt.date(2024, 1, 1), dt.date(2024, 1, 3), dt.date(2024, 1, 2), dt.date(2024, 1, 9)]
    table = pa.table(
        {
            "customer": pa.array([1, 1, 2, 1]),
            "day": pa.array(days, pa.date32()),
            "stamp": pa.array(
                [dt.datetime(d.year, d.month, d.day, 12) for d in days], pa.timestamp("us", tz="Europe/Paris")
            ),
            "value": pa.array([1.0, 2.5, 3.0, 4.5]),
        }
    )
    expected = summarize_transactions([1, 1, 2, 1], [d.isoformat() for d in days], [1.0, 2.5, 3.0, 4.5])
    for column in ("day", "stamp"):
        summary = summarize_table(table, customer_col="customer", date_col=column, value_col="value")
        assert summary.frequency.tolist() == expected.frequency.tolist() == [2, 0]
        assert summary.recency.tolist() == expected.recency.tolist() == [8, 0]
        assert summary.monetary_value.tolist() == expected.monetary_value.tolist() == [3.5, 0]
    from_numpy = summarize_transactions(np.array([1, 1, 2, 1]), np.array(days, dtype="datetime64[D]"))
    assert from_numpy.T.tolist() == [8, 7]


@pytest.mark.parametrize(
    ("customers", "dates", "values", "end", "unit", "message"),
    [
        (
            ["a", "b", "c"],
            ["2024-01-01", "2024-13-01", "2024-01-02"],
            [1, 2, 3],
            None,
            "days",
            "record 2, field 'date': got '2024-13-01'; expected a date such as 2024-03-01 (ISO 8601)",
        ),
        (["a", "b"], ["2024-01-01", ""], [1, 2], None, "days", "record 2, field 'date': got ''; expected a date"),
        (["a", "b"], ["2024-01-01", None], [1, 2], None, "days", "record 2, field 'date': got an empty value"),
        (
            ["a", "b", "c"],
            ["2024-01-01"] * 3,
            ["1.5", "12,00", "3"],
            None,
            "days",
            "record 2, field 'value': got '12,00'; expected a non-negative number",
        ),
        (
            ["a", "b"],
            ["2024-01-01"] * 2,
            [1, -2],
            None,
            "days",
            "record 2, field 'value': got '-2'; expected a non-negative",
        ),
        (["a", "b"], ["2024-01-01"] * 2, [1, float("inf")], None, "days", "record 2, field 'value': got 'inf'"),
        (["a", ""], ["2024-01-01"] * 2, [1, 2], None, "days", "record 2, field 'customer': the customer id is empty"),
        (["a", None], ["2024-01-01"] * 2, [1, 2], None, "days", "record 2, field 'customer'"),
        (["a"], ["2024-01-01"], [1], None, "months", "field 'time_unit': got 'months'; expected one of days, weeks"),
        (["a"], ["2024-01-01"], [1], "soon", "days", "field 'observation_end': got 'soon'"),
        (["a"], ["2024-01-01"], [1], "2023-12-31", "days", "every transaction is after 2023-12-31"),
        ([], [], [], None, "days", "no transactions"),
        (["a", "b"], ["2024-01-01"], [1, 2], None, "days", "got 1 dates for 2 customer ids"),
    ],
)
def test_summary_builder_names_the_bad_record_and_field(customers, dates, values, end, unit, message):
    with pytest.raises(InputError) as caught:
        summarize_transactions(customers, dates, values, observation_end=end, time_unit=unit)
    assert message in str(caught.value)


def test_summary_table_names_a_missing_column():
    table = pd.DataFrame({"customer": ["a"], "day": ["2024-01-01"]})
    with pytest.raises(InputError, match=r"field 'date': missing column 'date'; got columns \['customer', 'day'\]"):
        summarize_table(table, customer_col="customer", date_col="date")


# ---------------------------------------------------------------- the likelihood


def textbook_bgnbd_log_likelihood(r, alpha, a, b, x, t_x, T):
    """FHL 2005 eq. (6), term by term in plain floats (fine for small x)."""
    beta = math.exp(math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b))
    beta_1 = math.exp(math.lgamma(a) + math.lgamma(b + x) - math.lgamma(a + b + x))
    a1 = math.exp(math.lgamma(r + x) - math.lgamma(r)) * alpha**r
    first = beta_1 / beta * a1 / (alpha + T) ** (r + x)
    second = 0.0
    if x > 0:
        beta_2 = math.exp(math.lgamma(a + 1) + math.lgamma(b + x - 1) - math.lgamma(a + b + x))
        second = beta_2 / beta * a1 / (alpha + t_x) ** (r + x)
    return math.log(first + second)


def test_log_likelihood_matches_the_textbook_form(cdnow):
    params = (0.3, 5.0, 0.9, 2.0)
    rows = cdnow.iloc[::37]
    ours = bgnbd_log_likelihood(params, rows.x, rows.t_x, rows["T"])
    expected = [
        textbook_bgnbd_log_likelihood(*params, x, tx, t) for x, tx, t in zip(rows.x, rows.t_x, rows["T"], strict=True)
    ]
    np.testing.assert_allclose(ours, expected, rtol=1e-10)


def test_log_likelihood_stays_finite_for_heavy_buyers():
    ll = bgnbd_log_likelihood((0.5, 2.0, 0.5, 3.0), [5000, 3000], [10.0, 0.5], [10.0, 300.0])
    assert np.isfinite(ll).all()


def finite_difference(f, point, step=1e-6):
    grad = np.zeros(len(point))
    for i in range(len(point)):
        up, down = point.copy(), point.copy()
        up[i] *= 1 + step
        down[i] *= 1 - step
        grad[i] = (f(up) - f(down)) / (2 * step * point[i])
    return grad


@pytest.mark.parametrize("params", [(0.25, 4.0, 0.8, 2.4), (2.0, 0.5, 3.0, 0.2)])
def test_bgnbd_gradient_matches_finite_differences(cdnow, params):
    rows = _distinct_rows(
        cdnow.x.to_numpy(float), cdnow.t_x.to_numpy(), cdnow["T"].to_numpy(), weights=None, compress=True
    )
    objective = _bgnbd_objective(rows)
    point = np.array(params)
    value, gradient = objective(point)
    assert value == pytest.approx(bgnbd_log_likelihood(params, cdnow.x, cdnow.t_x, cdnow["T"]).sum(), rel=1e-12)
    np.testing.assert_allclose(gradient, finite_difference(lambda p: objective(p)[0], point), rtol=1e-5)


def test_gamma_gamma_gradient_matches_finite_differences(cdnow):
    repeat = cdnow[cdnow.x > 0]
    rows = _distinct_rows(repeat.x.to_numpy(float), repeat.zbar.to_numpy(), weights=None, compress=True)
    objective = _gamma_gamma_objective(rows)
    point = np.array([5.0, 3.0, 12.0])
    value, gradient = objective(point)
    assert value == pytest.approx(gamma_gamma_log_likelihood(point, cdnow.x, cdnow.zbar).sum(), rel=1e-12)
    np.testing.assert_allclose(gradient, finite_difference(lambda p: objective(p)[0], point), rtol=1e-5)


def test_gamma_gamma_log_likelihood_is_the_density_of_the_mean_spend():
    # x = 1: zbar is one purchase, Gamma(p, nu) with nu ~ Gamma(q, v): a compound gamma density
    p, q, v, z = 2.0, 3.0, 10.0, 4.0
    density = math.exp(gammaln(p + q) - gammaln(p) - gammaln(q)) * v**q * z ** (p - 1) / (v + z) ** (p + q)
    assert gamma_gamma_log_likelihood((p, q, v), [1], [z])[0] == pytest.approx(math.log(density), rel=1e-12)


def test_compression_and_weights_change_nothing_but_the_time():
    rng = np.random.default_rng(7)
    T = rng.integers(20, 60, 5000).astype(float)
    x, recency = simulate_bgnbd(5000, r=0.5, alpha=6.0, a=1.2, b=3.0, T=T, rng=rng)
    recency = np.floor(recency)  # a day grid: many equal rows
    compressed, plain = fit_bgnbd(x, recency, T), fit_bgnbd(x, recency, T, compress=False)
    for name in ("r", "alpha", "a", "b", "log_likelihood"):
        assert getattr(compressed, name) == pytest.approx(getattr(plain, name), rel=1e-5), name
    frame = pd.DataFrame({"x": x, "t": recency, "T": T}).value_counts().reset_index()
    weighted = fit_bgnbd(frame.x, frame.t, frame["T"], weights=frame["count"])
    assert weighted.n_customers == len(frame)
    for name in ("r", "alpha", "a", "b", "log_likelihood"):
        assert getattr(weighted, name) == pytest.approx(getattr(plain, name), rel=1e-5), name


# ---------------------------------------------------------------- recovering simulated parameters

BGNBD = {"r": 0.25, "alpha": 4.0, "a": 0.8, "b": 2.5}
GAMMA_GAMMA = {"p": 6.0, "q": 4.0, "v": 15.0}
SEEDS = (0, 1, 2, 3)


def recovery_errors(n: int, seed: int) -> tuple[float, float]:
    """Largest relative parameter error of each model on n simulated customers."""
    rng = np.random.default_rng(seed)
    T = rng.uniform(26, 52, n)
    x, recency = simulate_bgnbd(n, T=T, rng=rng, **BGNBD)
    spend = simulate_gamma_gamma(x, rng=rng, **GAMMA_GAMMA)
    purchases, value = fit_bgnbd(x, recency, T), fit_gamma_gamma(x, spend)
    assert purchases.converged and value.converged
    return (
        max(abs(getattr(purchases, k) / v - 1) for k, v in BGNBD.items()),
        max(abs(getattr(value, k) / v - 1) for k, v in GAMMA_GAMMA.items()),
    )


def test_fits_recover_simulated_parameters_better_as_customers_grow():
    small = np.array([recovery_errors(1_000, seed) for seed in SEEDS])
    large = np.array([recovery_errors(20_000, seed) for seed in SEEDS])
    # sqrt(20) ~ 4.5 times smaller in expectation; ask for 2 on the mean over seeds
    assert (large.mean(axis=0) < small.mean(axis=0) / 2).all(), (small, large)
    # BG/NBD within 20 %, Gamma-Gamma (p, q, v strongly correlated) within 25 %, every seed
    assert (large[:, 0] < 0.20).all() and (large[:, 1] < 0.25).all(), large


# ---------------------------------------------------------------- predictions


def brute_force_customers(
    n: int, r: float, alpha: float, a: float, b: float, T: float, horizon: float, rng: np.random.Generator
) -> tuple[np.ndarray, ...]:
    """Every purchase time of every customer (exponential gaps, dropout after each repeat purchase):
    (frequency, recency) in (0, T], alive at T, purchases in (T, T + horizon]."""
    rate = rng.gamma(r, 1 / alpha, n)
    dropout = rng.beta(a, b, n)
    last_purchase = rng.geometric(dropout)  # the repeat purchase after which the customer leaves
    owner = np.repeat(np.arange(n), last_purchase)
    times = rng.exponential(1.0, len(owner)) / rate[owner]
    starts = np.cumsum(last_purchase) - last_purchase
    times = np.cumsum(times)
    times -= np.repeat(np.concatenate(([0.0], times[starts[1:] - 1])), last_purchase)  # per-customer cumsum
    inside = times <= T
    frequency = np.bincount(owner[inside], minlength=n)
    recency = np.zeros(n)
    np.maximum.at(recency, owner[inside], times[inside])
    future = np.bincount(owner[(times > T) & (times <= T + horizon)], minlength=n)
    alive = frequency < last_purchase
    return frequency, recency, alive, future


def test_predictions_agree_with_a_brute_force_simulation():
    truth = BetaGeoFit(r=0.8, alpha=6.0, a=2.0, b=4.0, log_likelihood=0.0, n_customers=0, iterations=0, converged=True)
    n, T, horizon = 200_000, 30.0, 20.0
    frequency, recency, alive, future = brute_force_customers(
        n, truth.r, truth.alpha, truth.a, truth.b, T, horizon, np.random.default_rng(11)
    )
    predicted = expected_purchases(truth, horizon, frequency, recency, np.full(n, T))
    p_alive = probability_alive(truth, frequency, recency, np.full(n, T))
    # by the law of total expectation, the means agree within sampling error
    assert predicted.mean() == pytest.approx(future.mean(), abs=4 * future.std() / math.sqrt(n))
    assert p_alive.mean() == pytest.approx(alive.mean(), abs=4 * alive.std() / math.sqrt(n))
    for group in (frequency == 0, frequency == 1, frequency >= 5):
        assert predicted[group].mean() == pytest.approx(
            future[group].mean(), abs=4 * future[group].std() / math.sqrt(group.sum())
        )
    # a new customer: E[X(t)] with x = t_x = T = 0, against the unconditional simulation
    new, _, _, _ = brute_force_customers(
        n, truth.r, truth.alpha, truth.a, truth.b, horizon, 0.0, np.random.default_rng(12)
    )
    assert expected_purchases(truth, horizon, [0], [0], [0])[0] == pytest.approx(
        new.mean(), abs=4 * new.std() / math.sqrt(n)
    )


def test_expected_spend_agrees_with_a_simulated_next_purchase():
    truth = GammaGammaFit(p=3.0, q=5.0, v=20.0, log_likelihood=0.0, n_customers=0, iterations=0, converged=True)
    rng = np.random.default_rng(5)
    n = 200_000
    frequency = rng.integers(1, 6, n)
    nu = rng.gamma(truth.q, 1 / truth.v, n)
    mean_spend = rng.gamma(truth.p * frequency, 1 / nu) / frequency
    next_purchase = rng.gamma(truth.p, 1 / nu)
    predicted = expected_spend(truth, frequency, mean_spend)
    error = 4 * next_purchase.std() / math.sqrt(n)
    assert predicted.mean() == pytest.approx(next_purchase.mean(), abs=error)
    high = mean_spend > np.median(mean_spend)
    assert predicted[high].mean() == pytest.approx(next_purchase[high].mean(), abs=2 * error)
    assert expected_spend(truth, [0], [0])[0] == pytest.approx(truth.p * truth.v / (truth.q - 1))


def test_customer_lifetime_value_discounting(cdnow):
    purchases = fit_bgnbd(cdnow.x, cdnow.t_x, cdnow["T"])
    spend = fit_gamma_gamma(cdnow.x, cdnow.zbar)
    args = (purchases, spend, cdnow.x, cdnow.t_x, cdnow["T"], cdnow.zbar)
    plain = customer_lifetime_value(*args, horizon=52)
    expected = expected_purchases(purchases, 52, cdnow.x, cdnow.t_x, cdnow["T"]) * expected_spend(
        spend, cdnow.x, cdnow.zbar
    )
    np.testing.assert_allclose(plain, expected)
    np.testing.assert_allclose(customer_lifetime_value(*args, horizon=52, discount_rate=0.1), plain / 1.1)
    monthly = customer_lifetime_value(*args, horizon=52, discount_rate=0.01, steps=12)
    assert ((monthly < plain) & (monthly > plain / 1.01**12)).all()
    with pytest.raises(InputError, match="field 'steps'"):
        customer_lifetime_value(*args, horizon=52, discount_rate=0.01, steps=0)


# ---------------------------------------------------------------- fit input errors


@pytest.mark.parametrize(
    ("frequency", "recency", "T", "message"),
    [
        ([1, -1], [1, 0], [2, 2], "record 2, field 'frequency': got -1.0; expected a whole number >= 0"),
        ([1, 1.5], [1, 1], [2, 2], "record 2, field 'frequency'"),
        ([1, 1], [1, 3], [2, 2], "record 2, field 'recency': got 3.0 after T = 2.0; expected recency <= T"),
        ([1, 0], [1, 1], [2, 2], "record 2, field 'recency': got 1.0 with no repeat purchase; expected 0"),
        ([1, 1], [1, float("nan")], [2, 2], "record 2, field 'recency': got nan; expected a finite number"),
        ([1, 1], [1, 1], [2], "expected one value per customer"),
        ([0, 0], [0, 0], [2, 2], "no customer has a repeat purchase"),
    ],
)
def test_fit_names_the_bad_record(frequency, recency, T, message):
    with pytest.raises(InputError) as caught:
        fit_bgnbd(frequency, recency, T)
    assert message in str(caught.value)


def test_gamma_gamma_rejects_a_non_positive_mean_spend():
    with pytest.raises(InputError, match="record 2, field 'monetary_value': got 0.0 for a customer with repeat"):
        fit_gamma_gamma([1, 2, 0], [5.0, 0.0, 0.0])


# ---------------------------------------------------------------- the CLI


def run_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMNIWEAVE_HOME": str(tmp_path / "home"), "COLUMNS": "200"}
    return subprocess.run(
        omniweave_cmd("clv", "fit", *args),
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_cli_fits_cdnow_and_prints_the_library_parameters(tmp_path, cdnow_transactions, suffix):
    file = tmp_path / f"cdnow.{suffix}"
    renamed = cdnow_transactions.rename(columns={"customer": "Customer ID", "date": "day"})
    renamed.to_csv(file, index=False) if suffix == "csv" else renamed.to_parquet(file)
    done = run_cli(
        tmp_path,
        "--transactions",
        str(file),
        "--customer-col",
        "Customer ID",
        "--date-col",
        "day",
        "--value-col",
        "amount",
        "--observation-end",
        CALIBRATION_END,
        "--time-unit",
        "weeks",
        "--format",
        "json",
    )
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    summary = summarize_table(
        cdnow_transactions,
        customer_col="customer",
        date_col="date",
        value_col="amount",
        observation_end=CALIBRATION_END,
        time_unit="weeks",
    )
    purchases = fit_bgnbd(summary.frequency, summary.recency, summary.T)
    spend = fit_gamma_gamma(summary.frequency, summary.monetary_value)
    assert document["customers"] == 2357 and document["repeat_customers"] == 946
    assert document["time_unit"] == "weeks" and document["observation_end"] == CALIBRATION_END
    for name in ("r", "alpha", "a", "b", "log_likelihood"):
        assert document["bgnbd"][name] == pytest.approx(getattr(purchases, name), rel=1e-9), name
    for name in ("p", "q", "v", "log_likelihood"):
        assert document["gamma_gamma"][name] == pytest.approx(getattr(spend, name), rel=1e-9), name
    assert round(document["bgnbd"]["r"], 3) == 0.243 and round(document["gamma_gamma"]["p"], 2) == 6.25


def test_cli_prints_a_table_by_default_and_fits_bgnbd_alone_without_values(tmp_path, cdnow_transactions):
    file = tmp_path / "cdnow.csv"
    cdnow_transactions.to_csv(file, index=False)
    done = run_cli(tmp_path, "--transactions", str(file), "--customer-col", "customer", "--date-col", "date")
    assert done.returncode == 0, done.stderr
    assert "2,357 customers" in done.stdout and "alpha" in done.stdout and "gamma_gamma" not in done.stdout


@pytest.mark.parametrize(
    ("rows", "columns", "message"),
    [
        (
            [("a", "2024-01-01", "1")],
            ("customer", "when", "amount"),
            "field 'date': missing column 'date'; got columns ['customer', 'when', 'amount']",
        ),
        (
            [("a", "2024-01-01", "1"), ("a", "2024-01-05", "2"), ("b", "05/01/2024", "3")],
            ("customer", "date", "amount"),
            "record 3, field 'date': got '05/01/2024'; expected a date such as 2024-03-01 (ISO 8601)",
        ),
        (
            [("a", "2024-01-01", "1"), ("a", "2024-01-05", "two")],
            ("customer", "date", "amount"),
            "record 2, field 'amount': got 'two'; expected a non-negative number",
        ),
        (
            [("a", "2024-01-01", "1"), ("", "2024-01-05", "2")],
            ("customer", "date", "amount"),
            "record 2, field 'customer': the customer id is empty; expected an id",
        ),
    ],
)
def test_cli_rejects_bad_input_naming_record_and_column(tmp_path, rows, columns, message):
    file = tmp_path / "bad.csv"
    pd.DataFrame(rows, columns=list(columns)).to_csv(file, index=False)
    done = run_cli(
        tmp_path,
        "--transactions",
        str(file),
        "--customer-col",
        "customer",
        "--date-col",
        "date",
        "--value-col",
        "amount",
    )
    assert done.returncode != 0
    assert message in done.stderr.replace("\n", "")


def test_cli_rejects_a_missing_file_and_an_unknown_time_unit(tmp_path):
    done = run_cli(tmp_path, "--transactions", str(tmp_path / "nope.csv"), "--customer-col", "c", "--date-col", "d")
    assert done.returncode != 0 and "no such file" in done.stderr
    file = tmp_path / "ok.csv"
    file.write_text("c,d\n1,2024-01-01\n1,2024-01-03\n")
    done = run_cli(
        tmp_path, "--transactions", str(file), "--customer-col", "c", "--date-col", "d", "--time-unit", "months"
    )
    assert done.returncode != 0 and "field 'time_unit': got 'months'; expected one of days, weeks" in done.stderr
