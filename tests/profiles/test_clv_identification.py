"""Is dropout identified? BG/NBD on simulated customers whose parameters are known: a history shorter
than the time between purchases is reported as not identifying dropout (in `clv fit`, and as a NULL
`p_alive` with a note in the profiles); a long enough one is identified and fitted as before."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from omniweave.profiles import clv
from omniweave.profiles.service.build import with_clv
from omniweave.shells.cli.main import app

DROPOUT = {"r": 1.4, "alpha": 80.0, "a": 0.8, "b": 2.5}  # a purchase every ~57 days, 24 % stop after each
NO_DROPOUT = {"r": 1.4, "alpha": 80.0, "a": 1e-4, "b": 1e4}  # the demo world: nobody stops buying


def simulated(truth: dict[str, float], days: int, seed: int, n: int = 2000) -> tuple[np.ndarray, ...]:
    """(frequency, recency, T) in whole days of `n` customers who made their first purchase on a random
    day of a `days`-day history."""
    rng = np.random.default_rng(seed)
    T = rng.integers(0, days + 1, n).astype(float)
    x, recency = clv.simulate_bgnbd(n, T=T, rng=rng, **truth)
    return x.astype(float), np.minimum(np.round(recency), T), T


def true_mean_p_alive(truth: dict[str, float], x: np.ndarray, recency: np.ndarray, T: np.ndarray) -> float:
    known = clv.BetaGeoFit(truth["r"], truth["alpha"], truth["a"], truth["b"], 0.0, len(x), 0, True)
    return float(clv.probability_alive(known, x, recency, T)[x > 0].mean())


@pytest.mark.parametrize("seed", [1, 2])
def test_a_history_shorter_than_the_purchase_gap_does_not_identify_dropout(seed: int) -> None:
    x, recency, T = simulated(DROPOUT, 60, seed)
    fit = clv.fit_bgnbd(x, recency, T)
    check = clv.dropout_identification(fit, x, recency, T)
    assert not check.identified
    assert check.reason and "half the buyers were observed for" in check.reason
    assert check.history < check.purchase_gap
    low, high = check.p_alive_interval
    assert high - low > clv.P_ALIVE_TOLERANCE  # the likelihood is flat in the dropout direction too


@pytest.mark.parametrize("seed", [1, 2])
def test_a_long_history_identifies_dropout_and_the_interval_holds_the_truth(seed: int) -> None:
    x, recency, T = simulated(DROPOUT, 730, seed)
    fit = clv.fit_bgnbd(x, recency, T)
    check = clv.dropout_identification(fit, x, recency, T)
    assert check.identified and check.reason is None, check.reason
    truth = DROPOUT["a"] / (DROPOUT["a"] + DROPOUT["b"])
    # each end is found to within ~10 % by the bisection (from inside), hence the margin
    assert 0.9 * check.dropout_interval[0] <= truth <= 1.1 * check.dropout_interval[1]
    assert check.dropout_interval[1] - check.dropout_interval[0] < 0.1
    assert check.p_alive_interval[1] - check.p_alive_interval[0] <= clv.P_ALIVE_TOLERANCE
    assert abs(check.p_alive - true_mean_p_alive(DROPOUT, x, recency, T)) < 0.05


def test_a_world_without_dropout_is_identified_once_the_history_is_long_enough() -> None:
    """Like the demo world (nobody stops buying): 60 days are not enough to say so, two years are."""
    x, recency, T = simulated(NO_DROPOUT, 60, 3)
    short = clv.dropout_identification(clv.fit_bgnbd(x, recency, T), x, recency, T)
    x, recency, T = simulated(NO_DROPOUT, 730, 3)
    fit = clv.fit_bgnbd(x, recency, T)
    long = clv.dropout_identification(fit, x, recency, T)
    assert not short.identified and long.identified
    assert long.p_alive_interval[0] > 0.95 and clv.probability_alive(fit, x, recency, T).min() > 0.9


def test_a_parameter_on_the_search_bound_is_reported() -> None:
    x, recency, T = simulated(DROPOUT, 730, 4)
    fit = clv.fit_bgnbd(x, recency, T)
    bound = math.exp(clv.LOG_PARAMETER_BOUND)
    pinned = clv.BetaGeoFit(fit.r, fit.alpha, fit.a, bound, fit.log_likelihood, fit.n_customers, 0, False)
    check = clv.dropout_identification(pinned, x, recency, T)
    assert not check.identified and check.at_bound == ("b",)
    assert check.reason and "b ended on the search's bound" in check.reason


def test_a_large_input_is_checked_on_a_sample_weighted_up_to_the_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    x, recency, T = simulated(DROPOUT, 730, 5, n=6000)
    fit = clv.fit_bgnbd(x, recency, T)
    whole = clv.dropout_identification(fit, x, recency, T)
    monkeypatch.setattr(clv, "CHECK_SAMPLE", 2000)
    sampled = clv.dropout_identification(fit, x, recency, T)
    assert whole.identified and sampled.identified
    truth = DROPOUT["a"] / (DROPOUT["a"] + DROPOUT["b"])
    assert abs(sampled.dropout - truth) < 0.05 and sampled.history == whole.history
    width = whole.dropout_interval[1] - whole.dropout_interval[0]
    assert 0.5 * width < sampled.dropout_interval[1] - sampled.dropout_interval[0] < 2.0 * width
    with pytest.raises(Exception, match="weights"):
        clv.dropout_identification(fit, x, recency, T, weights=np.ones(3))


# ---------------------------------------------------------------- clv fit


def transactions_file(tmp_path: Path, truth: dict[str, float], days: int, seed: int) -> Path:
    """A transactions CSV drawn from BG/NBD: each customer's purchase days, from the first purchase on."""
    rng = np.random.default_rng(seed)
    start = np.datetime64("2025-01-01")
    lines = ["customer,date,amount"]
    for customer in range(2000):
        first = int(rng.integers(0, days + 1))
        rate = rng.gamma(truth["r"], 1.0 / truth["alpha"])
        dropout = rng.beta(truth["a"], truth["b"])
        day, alive = float(first), True
        lines.append(f"c{customer},{start + first},{rng.integers(5, 80)}")
        while alive:
            day += rng.exponential(1.0 / rate)
            if day > days:
                break
            lines.append(f"c{customer},{start + int(day)},{rng.integers(5, 80)}")
            alive = rng.random() >= dropout
    path = tmp_path / f"transactions_{days}.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def clv_fit(tmp_path: Path, path: Path, *extra: str):  # type: ignore[no-untyped-def]
    args = ["clv", "fit", "--transactions", str(path), "--customer-col", "customer", "--date-col", "date"]
    args += ["--observation-end", str(np.datetime64("2025-01-01") + int(path.stem.split("_")[1])), *extra]
    return CliRunner().invoke(app, ["--home", str(tmp_path / "home"), *args], env={"COLUMNS": "120"})


def test_clv_fit_says_a_short_history_does_not_identify_dropout(tmp_path: Path) -> None:
    done = clv_fit(tmp_path, transactions_file(tmp_path, DROPOUT, 60, 6), "--format", "json")
    assert done.exit_code == 0, done.output
    assert "warning: dropout is not identified" in done.stderr
    document = json.loads(done.stdout)
    assert document["dropout"]["identified"] is False
    assert "half the buyers were observed for" in document["dropout"]["reason"]
    table = clv_fit(tmp_path, transactions_file(tmp_path, DROPOUT, 60, 6))
    assert "repeat_buyers_p_alive_low" in table.stdout and "dropout is not identified" in table.stderr


def test_clv_fit_on_a_long_history_is_identified_and_its_parameters_are_the_plain_fit(tmp_path: Path) -> None:
    from omniweave.profiles.service.clv import read_transactions

    path = transactions_file(tmp_path, DROPOUT, 730, 7)
    done = clv_fit(tmp_path, path, "--value-col", "amount", "--format", "json")
    assert done.exit_code == 0, done.output
    assert "not identified" not in done.stderr
    document = json.loads(done.stdout)
    assert document["dropout"]["identified"] is True and document["dropout"]["reason"] is None
    summary = clv.summarize_table(
        read_transactions(path, ["customer", "date"]),
        customer_col="customer",
        date_col="date",
        observation_end="2027-01-01",
    )
    plain = clv.fit_bgnbd(summary.frequency, summary.recency, summary.T)
    for name in ("r", "alpha", "a", "b", "log_likelihood"):
        assert document["bgnbd"][name] == pytest.approx(getattr(plain, name), rel=1e-9), name
    low, high = document["dropout"]["dropout_interval"]
    assert 0.9 * low <= DROPOUT["a"] / (DROPOUT["a"] + DROPOUT["b"]) <= 1.1 * high


# ---------------------------------------------------------------- the profile columns


def buyers_table(x: np.ndarray, recency: np.ndarray, T: np.ndarray, now: datetime) -> pa.Table:
    """The profile columns `with_clv` reads, for customers with the given summary (all buyers)."""
    today = np.datetime64(now.replace(tzinfo=None), "D")
    first = today - T.astype("timedelta64[D]")
    last = first + recency.astype("timedelta64[D]")
    return pa.table(
        {
            "person_id": [f"P{i:05d}" for i in range(len(x))],
            "purchase_days": pa.array((x + 1).astype(np.int64)),
            "first_order_at": pa.array(first.astype("datetime64[us]")),
            "last_order_at": pa.array(last.astype("datetime64[us]")),
            "repeat_order_value": pa.array(np.where(x > 0, 30.0, np.nan), mask=x == 0),
        }
    )


def test_profiles_withhold_p_alive_with_a_note_on_a_short_history_and_give_it_on_a_long_one() -> None:
    now = datetime(2026, 6, 1, tzinfo=UTC)
    short = with_clv(buyers_table(*simulated(DROPOUT, 60, 8), now), now)
    assert short.column("p_alive").null_count == short.num_rows
    notes = set(short.column("p_alive_note").to_pylist())
    assert len(notes) == 1 and next(iter(notes)).startswith("dropout is not identified")
    assert short.column("clv_12m").null_count == 0  # kept, with the note saying what it assumes
    x, recency, T = simulated(DROPOUT, 730, 8)
    long = with_clv(buyers_table(x, recency, T, now), now)
    assert long.column("p_alive").null_count == 0 and long.column("p_alive_note").null_count == long.num_rows
    expected = clv.probability_alive(clv.fit_bgnbd(x, recency, T), x, recency, T)
    assert np.allclose(long.column("p_alive").to_numpy(), expected, atol=1e-6)
