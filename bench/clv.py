"""CLV benchmark: BG/NBD + Gamma-Gamma on N simulated customers (default 1,000,000), ours against
`lifetimes` (BetaGeoFitter, GammaGammaFitter) side by side, in one process.

The customers are drawn from known parameters (`simulate_bgnbd`, `simulate_gamma_gamma`) with T a
whole number of days in [30, 365] and recency cut to whole days, as a summary built from dated
transactions is; mean spend is rounded to cents. Both fitters get the same per-customer arrays.
Printed: seconds per fit, the parameters, each side's total log-likelihood, and the largest
relative difference between the two sides' parameters. Ours is timed twice: as shipped (equal
rows fitted once with their count) and with `compress=False` (every customer a row).

Target (issue 5, part 4): ours in at most 1/10 of lifetimes' time, parameters equal to 1e-3.

lifetimes is not a dependency of omniweave. lifetimes 0.11.3 (the last release) works with the
project's numpy 2.4 / scipy 1.17 / pandas 2.3; it needs `autograd` and `dill` besides. Either
install it beside the project in a separate venv:

    python -m venv .venv-bench && .venv-bench/bin/pip install lifetimes==0.11.3 -e .

or, without touching .venv, into a folder put on the path for this run only:

    .venv/bin/pip install --target /tmp/lifetimes-pkgs --no-deps lifetimes==0.11.3 autograd dill
    PYTHONPATH=/tmp/lifetimes-pkgs .venv/bin/python bench/clv.py

Without lifetimes the script says so and times ours alone.

    python bench/clv.py [--customers 1000000] [--seed 1]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings

import numpy as np

from omniweave.profiles.clv import fit_bgnbd, fit_gamma_gamma, simulate_bgnbd, simulate_gamma_gamma

TRUTH_BGNBD = {"r": 0.25, "alpha": 30.0, "a": 0.8, "b": 2.5}  # alpha in days
TRUTH_GAMMA_GAMMA = {"p": 6.0, "q": 4.0, "v": 15.0}


def simulate(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    T = rng.integers(30, 366, n).astype(float)
    frequency, recency = simulate_bgnbd(n, T=T, rng=rng, **TRUTH_BGNBD)
    monetary = np.round(simulate_gamma_gamma(frequency, rng=rng, **TRUTH_GAMMA_GAMMA), 2)
    # a cent rounded to zero would be no spend at all; keep the smallest positive amount instead
    monetary[(frequency > 0) & (monetary <= 0)] = 0.01
    return {"frequency": frequency, "recency": np.floor(recency), "T": T, "monetary": monetary}


def timed(label: str, fit, *args, **kwargs):
    start = time.perf_counter()
    result = fit(*args, **kwargs)
    seconds = time.perf_counter() - start
    print(f"  {label:<34} {seconds:9.2f} s")
    return result, seconds


def ours(data: dict[str, np.ndarray]) -> dict[str, object]:
    print("ours (omniweave.profiles.clv)")
    bg, bg_s = timed("BG/NBD", fit_bgnbd, data["frequency"], data["recency"], data["T"])
    gg, gg_s = timed("Gamma-Gamma", fit_gamma_gamma, data["frequency"], data["monetary"])
    bg_plain, bg_plain_s = timed(
        "BG/NBD, compress=False", fit_bgnbd, data["frequency"], data["recency"], data["T"], compress=False
    )
    gg_plain, gg_plain_s = timed(
        "Gamma-Gamma, compress=False", fit_gamma_gamma, data["frequency"], data["monetary"], compress=False
    )
    assert bg.converged and gg.converged and bg_plain.converged and gg_plain.converged
    return {
        "params": {"r": bg.r, "alpha": bg.alpha, "a": bg.a, "b": bg.b, "p": gg.p, "q": gg.q, "v": gg.v},
        "ll": (bg.log_likelihood, gg.log_likelihood),
        "seconds": bg_s + gg_s,
        "seconds_uncompressed": bg_plain_s + gg_plain_s,
    }


def theirs(data: dict[str, np.ndarray]) -> dict[str, object] | None:
    try:
        import lifetimes
        from lifetimes import BetaGeoFitter, GammaGammaFitter
    except ImportError:
        print("lifetimes: not installed, skipped (see this script's docstring for how to install it beside)")
        return None
    import pandas as pd

    print(f"lifetimes {lifetimes.__version__} (BetaGeoFitter, GammaGammaFitter, defaults)")
    frequency, recency, T = (pd.Series(data[k]) for k in ("frequency", "recency", "T"))
    repeat = frequency > 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bg, bg_s = timed("BG/NBD", BetaGeoFitter().fit, frequency, recency, T)
        gg, gg_s = timed("Gamma-Gamma", GammaGammaFitter().fit, frequency[repeat], pd.Series(data["monetary"])[repeat])
    params = {**bg.params_.to_dict(), **gg.params_.to_dict()}
    return {"params": {k: float(v) for k, v in params.items()}, "seconds": bg_s + gg_s}


def run(customers: int, seed: int) -> dict[str, float | None]:
    """Simulate, fit both sides and print the comparison; returns ours' and lifetimes' seconds and the
    largest relative parameter difference (None without lifetimes), for bench/measure.py."""
    start = time.perf_counter()
    data = simulate(customers, seed)
    distinct = len(np.unique(np.stack([data["frequency"], data["recency"], data["T"]]), axis=1).T)
    print(
        f"{customers:,} customers simulated in {time.perf_counter() - start:.1f} s: "
        f"{int((data['frequency'] > 0).sum()):,} with repeat purchases, {distinct:,} distinct "
        f"(frequency, recency, T) rows"
    )
    mine = ours(data)
    peer = theirs(data)
    names = ("r", "alpha", "a", "b", "p", "q", "v")
    truth = {**TRUTH_BGNBD, **TRUTH_GAMMA_GAMMA}
    print(f"\n{'parameter':<10}{'truth':>12}{'ours':>14}" + (f"{'lifetimes':>14}{'rel. diff':>12}" if peer else ""))
    worst = 0.0
    for name in names:
        line = f"{name:<10}{truth[name]:>12.4f}{mine['params'][name]:>14.6f}"
        if peer:
            diff = abs(mine["params"][name] / peer["params"][name] - 1)
            worst = max(worst, diff)
            line += f"{peer['params'][name]:>14.6f}{diff:>12.2e}"
        print(line)
    print(f"\nours: log-likelihood BG/NBD {mine['ll'][0]:,.2f}, Gamma-Gamma {mine['ll'][1]:,.2f}")
    print(f"ours: {mine['seconds']:.2f} s (every customer a row: {mine['seconds_uncompressed']:.2f} s)")
    if peer:
        print(
            f"lifetimes: {peer['seconds']:.2f} s; ours takes {mine['seconds'] / peer['seconds']:.4f} of it "
            f"({mine['seconds_uncompressed'] / peer['seconds']:.4f} uncompressed)"
        )
        print(f"largest relative parameter difference: {worst:.2e}")
    return {
        "ours": mine["seconds"],
        "lifetimes": peer["seconds"] if peer else None,
        "difference": worst if peer else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    print(
        f"{platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} cores, "
        f"numpy {np.__version__}"
    )
    run(args.customers, args.seed)


if __name__ == "__main__":
    main()
