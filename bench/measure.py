"""Measurement benchmark (issue 5): attribution on N simulated journeys (default 1,000,000) against
ChannelAttribution, and CLV on M customers (default 1,000,000) against lifetimes, side by side in
one run.

Journeys: 9 channels; the first touch from a fixed mix, each next touch from a channel-to-channel
transition matrix (drawn once from the seed, a quarter of the mass on staying on the same channel),
geometric journey lengths (mean ≈ 2.4, at most 18 touches); a journey converts with a logistic
probability that grows with the channels it touched (some channels help more than others) and its
length; a conversion is worth a lognormal amount rounded to cents. The journeys are aggregated into
a paths table (`path`, `total_conversions`, `total_conversion_value`, `total_null`), which both sides
get as the same rows.

Printed:

  (a) Markov attribution, first order: ours (exact removal effects) against ChannelAttribution's
      `markov_model` (simulated; its defaults, seed 0, one thread): seconds for each, the channel
      shares of the conversions side by side and their largest absolute difference in percentage
      points. Ours is timed on the parsed table (as `attribute` gets it) and, apart, the parsing of
      the same rows (ChannelAttribution's time includes its own parsing). Value credits are not
      compared: ChannelAttribution splits value by removal effects of a value-weighted chain, ours
      by the conversion removal effects (docs/attribution.md).
  (b) heuristic models: ours, all five (first, last, linear, position-based, time decay), against
      ChannelAttribution's `heuristic_models` (first, last and linear only; position-based and time
      decay have no peer there): seconds and the largest absolute difference of credited
      conversions and value.
  (c) BG/NBD + Gamma-Gamma against lifetimes: bench/clv.py's `run`, as `python bench/clv.py` prints it.

Target (issue 5): Markov attribution exact in at most 1/4 of ChannelAttribution's time; CLV in at
most 1/10 of lifetimes' time with parameters equal to 1e-3 (bench/clv.py).

The peers are not dependencies of omniweave. ChannelAttribution 2.2.5 is a source distribution
(C++ through Cython; it needs g++ and builds with pip) and imports matplotlib when loaded without
declaring it; lifetimes 0.11.3 needs autograd and dill (bench/clv.py). Either in a separate venv:

    python -m venv .venv-bench && .venv-bench/bin/pip install -e . channelattribution==2.2.5 \\
        matplotlib lifetimes==0.11.3

or, without touching .venv, into a folder put on the path for this run only:

    .venv/bin/pip install --target /tmp/bench-peers --no-deps channelattribution==2.2.5 matplotlib \\
        contourpy cycler fonttools kiwisolver pillow pyparsing lifetimes==0.11.3 autograd dill
    PYTHONPATH=/tmp/bench-peers .venv/bin/python bench/measure.py

A missing peer is reported and skipped; ours is timed alone.

    python bench/measure.py [--journeys 1000000] [--customers 1000000] [--seed 1]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from omniweave.measure.attribution import (
    HEURISTIC_MODELS,
    PathsTable,
    heuristic,
    markov,
    paths_from_records,
)

CHANNELS = ("search", "social", "email", "display", "affiliate", "direct", "video", "referral", "sms")
FIRST_TOUCH = np.array([0.24, 0.20, 0.08, 0.14, 0.07, 0.12, 0.07, 0.05, 0.03])
CONVERSION_LIFT = np.array([0.55, 0.10, 0.60, -0.15, 0.35, 0.80, 0.05, 0.30, 0.40])  # logit, per channel touched
STAY = 0.25  # probability mass on touching the same channel again
MAX_TOUCHES = 18  # a path is kept as a base-10 number of at most 18 digits
CA_MODELS = {"first_touch": "first_touch", "last_touch": "last_touch", "linear": "linear_touch"}


def simulate_paths(journeys: int, seed: int) -> pd.DataFrame:
    """`journeys` simulated journeys aggregated into a paths table (one row per distinct path)."""
    rng = np.random.default_rng(seed)
    k = len(CHANNELS)
    transition = rng.dirichlet(np.full(k, 2.0), size=k) * (1 - STAY) + np.eye(k) * STAY
    cumulative = np.cumsum(transition, axis=1)
    cumulative[:, -1] = 1.0
    lengths = np.minimum(rng.geometric(0.42, journeys), MAX_TOUCHES)
    touches = np.full((journeys, MAX_TOUCHES), -1, dtype=np.int64)
    touches[:, 0] = np.searchsorted(np.cumsum(FIRST_TOUCH), rng.random(journeys), side="right")
    for step in range(1, MAX_TOUCHES):
        going = np.flatnonzero(lengths > step)
        if going.size == 0:
            break
        draw = rng.random(going.size)[:, None]
        touches[going, step] = (draw >= cumulative[touches[going, step - 1]]).sum(axis=1)
    touched = touches >= 0
    seen = np.zeros((journeys, k), dtype=bool)
    seen[np.nonzero(touched)[0], touches[touched]] = True
    logit = -3.3 + seen @ CONVERSION_LIFT + 0.12 * np.minimum(lengths, 8)
    converted = rng.random(journeys) < 1 / (1 + np.exp(-logit))
    value = np.where(converted, np.round(rng.lognormal(4.0, 0.7, journeys), 2), 0.0)
    # a path as one integer: digit = channel + 1, 0 after the last touch
    key = ((touches + 1) * 10 ** np.arange(MAX_TOUCHES - 1, -1, -1, dtype=np.int64)).sum(axis=1)
    keys, inverse = np.unique(key, return_inverse=True)
    digits = (keys[:, None] // 10 ** np.arange(MAX_TOUCHES - 1, -1, -1, dtype=np.int64)) % 10
    names = np.array(("",) + CHANNELS)
    paths = [">".join(names[row[row > 0]]) for row in digits]
    return pd.DataFrame(
        {
            "path": paths,
            "total_conversions": np.bincount(inverse, weights=converted, minlength=len(keys)).astype(np.int64),
            "total_conversion_value": np.round(np.bincount(inverse, weights=value, minlength=len(keys)), 2),
            "total_null": np.bincount(inverse, weights=~converted, minlength=len(keys)).astype(np.int64),
        }
    )


def seconds_of(work, *args, **kwargs) -> tuple[Any, float]:
    start = time.perf_counter()
    result = work(*args, **kwargs)
    return result, time.perf_counter() - start


def channel_attribution() -> Any | None:
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # it prints an advertisement when imported
            import ChannelAttribution
    except ImportError as exc:
        print(
            f"ChannelAttribution: cannot be imported ({exc}), skipped; see this script's docstring "
            f"for how to install it beside"
        )
        return None
    return ChannelAttribution


def markov_side_by_side(
    frame: pd.DataFrame, table: PathsTable, ca: Any | None, parse_s: float
) -> dict[str, float | None]:
    print("\n(a) Markov attribution, first order")
    fresh = PathsTable(table.rows)  # nothing cached: the touch encoding is inside the timing
    ours, ours_s = seconds_of(markov, fresh, allocation="global")
    print(f"  ours (exact removal effects)               {ours_s:8.2f} s")
    theirs_share: dict[str, float] | None = None
    ca_s = None
    if ca is not None:
        result, ca_s = seconds_of(
            ca.markov_model,
            frame,
            "path",
            "total_conversions",
            var_value="total_conversion_value",
            var_null="total_null",
            verbose=False,
            flg_pro=False,
        )
        total = float(result["total_conversions"].sum())
        theirs_share = {
            str(name): float(conv) / total
            for name, conv in zip(result["channel_name"], result["total_conversions"], strict=True)
        }
        print(f"  ChannelAttribution markov_model (simulated) {ca_s:7.2f} s")
    print(
        f"\n  {'channel':<10}{'removal effect':>15}{'ours %':>10}"
        + (f"{'CA %':>10}{'diff pp':>10}" if theirs_share else "")
    )
    worst = 0.0
    for channel in sorted(ours.conversions, key=ours.conversions.get, reverse=True):
        share = ours.conversions[channel] / table.total_conversions
        line = f"  {channel:<10}{ours.removal_effects[channel]:>15.6f}{100 * share:>10.3f}"
        if theirs_share is not None:
            diff = 100 * abs(share - theirs_share.get(channel, 0.0))
            worst = max(worst, diff)
            line += f"{100 * theirs_share.get(channel, 0.0):>10.3f}{diff:>10.3f}"
        print(line)
    if theirs_share is not None:
        print(
            f"  largest share difference: {worst:.3f} pp; ours takes {ours_s / ca_s:.3f} of its time, "
            f"{(ours_s + parse_s) / ca_s:.3f} with the parsing of the paths table ({parse_s:.2f} s)"
        )
    return {"ours": ours_s, "peer": ca_s, "difference": worst if theirs_share is not None else None}


def heuristics_side_by_side(frame: pd.DataFrame, table: PathsTable, ca: Any | None) -> dict[str, float | None]:
    print("\n(b) heuristic models")
    fresh = PathsTable(table.rows)

    def all_five() -> dict[str, Any]:
        return {model: heuristic(fresh, model) for model in HEURISTIC_MODELS}

    ours, ours_s = seconds_of(all_five)
    print(f"  ours, all five models                      {ours_s:8.2f} s")
    if ca is None:
        return {"ours": ours_s, "peer": None, "difference": None}
    theirs, ca_s = seconds_of(
        ca.heuristic_models, frame, "path", "total_conversions", var_value="total_conversion_value", flg_pro=False
    )
    print(f"  ChannelAttribution heuristic_models        {ca_s:8.2f} s  (first, last, linear)")
    theirs = theirs.set_index("channel_name")
    print(f"\n  {'model':<16}{'max |diff| conversions':>24}{'max |diff| value':>20}")
    worst = 0.0
    for model in HEURISTIC_MODELS:
        if model not in CA_MODELS:
            print(f"  {model:<16}{'no peer':>24}{'no peer':>20}")
            continue
        column = CA_MODELS[model]
        conv = max(
            abs(ours[model].conversions[ch] - float(theirs.at[ch, f"{column}_conversions"]))
            for ch in ours[model].conversions
        )
        value = max(abs(ours[model].value[ch] - float(theirs.at[ch, f"{column}_value"])) for ch in ours[model].value)
        worst = max(worst, conv, value)
        print(f"  {model:<16}{conv:>24.3e}{value:>20.3e}")
    return {"ours": ours_s, "peer": ca_s, "difference": worst}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--journeys", type=int, default=1_000_000)
    parser.add_argument("--customers", type=int, default=1_000_000, help="0 skips the CLV part")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    print(
        f"{platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} cores, "
        f"numpy {np.__version__}"
    )

    frame, simulate_s = seconds_of(simulate_paths, args.journeys, args.seed)
    journeys = int(frame["total_conversions"].sum() + frame["total_null"].sum())
    print(
        f"{journeys:,} journeys over {len(CHANNELS)} channels simulated in {simulate_s:.1f} s: "
        f"{len(frame):,} distinct paths, {int(frame['total_conversions'].sum()):,} conversions, "
        f"value {frame['total_conversion_value'].sum():,.2f}"
    )
    records = frame.to_dict("records")
    table, parse_s = seconds_of(paths_from_records, records, frame.columns)
    print(f"ours: the paths table parsed and validated in {parse_s:.2f} s (not in the model timings below)")

    ca = channel_attribution()
    figures = {
        "Markov, order 1": markov_side_by_side(frame, table, ca, parse_s),
        "heuristics": heuristics_side_by_side(frame, table, ca),
    }

    if args.customers > 0:
        print(f"\n(c) BG/NBD + Gamma-Gamma (bench/clv.py), {args.customers:,} customers")
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import clv

        figures["CLV"] = clv.run(args.customers, args.seed)
        figures["CLV"]["peer"] = figures["CLV"].pop("lifetimes")

    print(f"\n{'summary':<18}{'ours s':>9}{'peer s':>9}{'ours/peer':>11}  largest difference")
    units = {"Markov, order 1": "pp of share", "heuristics": "conversions or value", "CLV": "relative, parameters"}
    for name, figure in figures.items():
        peer = figure["peer"]
        ratio = f"{figure['ours'] / peer:>11.3f}" if peer else f"{'-':>11}"
        difference = f"{figure['difference']:.3g} ({units[name]})" if figure["difference"] is not None else "-"
        print(f"{name:<18}{figure['ours']:>9.2f}{(f'{peer:.2f}' if peer else '-'):>9}{ratio}  {difference}")
    print(f"(ours' model times exclude the {parse_s:.2f} s of parsing the paths table once)")


if __name__ == "__main__":
    main()
