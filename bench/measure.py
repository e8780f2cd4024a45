"""Measurement benchmark (issue 5): attribution on N simulated journeys (default 1,000,000) against
ChannelAttribution, and CLV on M customers (default 1,000,000) against lifetimes, side by side in
one run.

Journeys: 9 channels; the first touch from a fixed mix, each next touch from a channel-to-channel
transition matrix (drawn once from the seed, a quarter of the mass on staying on the same channel),
geometric journey lengths (mean ≈ 2.4, at most 18 touches); a journey converts with a logistic
probability that grows with the channels it touched (some channels help more than others) and its
length; a conversion is worth a lognormal amount rounded to cents, larger or smaller by the last
channel touched (so that splitting value by the value-weighted chain and by the conversion chain
differ). The journeys are aggregated into a paths table (`path`, `total_conversions`, `total_conversion_value`, `total_null`), which both sides
get as the same rows.

Printed:

  (a) Markov attribution, first order: ours (exact removal effects) against ChannelAttribution's
      `markov_model` (simulated; its defaults, seed 0, one thread): seconds for each, the channel
      shares of the conversions side by side and their largest absolute difference in percentage
      points. Ours is timed on the parsed table (as `attribute` gets it) and, apart, the parsing of
      the same rows (ChannelAttribution's time includes its own parsing). Value credits are
      compared in (d) (both split value by the removal effects of the value-weighted chain).
  (b) heuristic models: ours, all five (first, last, linear, position-based, time decay), against
      ChannelAttribution's `heuristic_models` (first, last and linear only; position-based and time
      decay have no peer there): seconds and the largest absolute difference of credited
      conversions and value.
  (c) BG/NBD + Gamma-Gamma against lifetimes: bench/clv.py's `run`, as `python bench/clv.py` prints it.
  (d) whole processes on a paths file with one row per journey (issue 22 §5): the same journeys
      written as a CSV of N rows (`path` like "search > email > sms", 0/1 conversions, value, 0/1
      nulls, the common export), then `omniweave attribution --paths FILE --model markov --format
      json` as a process of its own against a Python process that imports pandas and
      ChannelAttribution, reads the file with `pandas.read_csv` and runs `markov_model` on it (value
      and nulls given, its defaults otherwise), each the median of --repeat runs (wall clock, start-up
      included; the two take turns, so that a change in the machine's load weighs on both), side by
      side, with the load average and the ratio of each round; and the shares of conversions and of
      value each credits per channel.
      Ours' value follows ChannelAttribution's convention (removal effects of the value-weighted
      chain); the shares under our other convention (`--value-effects conversion`) are printed too.

Targets: Markov attribution exact in at most 1/4 of ChannelAttribution's time (issue 5); the whole
`omniweave attribution --paths` process in at most 1/4 of ChannelAttribution's whole process on
the same one-row-per-journey file (issue 22); CLV in at most 1/10 of lifetimes' time with
parameters equal to 1e-3 (bench/clv.py).

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

    python bench/measure.py [--journeys 1000000] [--customers 1000000] [--seed 1] [--repeat 3]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
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
VALUE_LIFT = np.array([0.0, -0.6, 0.5, -0.3, 0.2, 0.8, -0.5, 0.1, 0.6])  # log value, by the last channel
STAY = 0.25  # probability mass on touching the same channel again
MAX_TOUCHES = 18  # a path is kept as a base-10 number of at most 18 digits
CA_MODELS = {"first_touch": "first_touch", "last_touch": "last_touch", "linear": "linear_touch"}


def simulate_journeys(journeys: int, seed: int) -> pd.DataFrame:
    """`journeys` simulated journeys, one row each: `path` ("a > b > c"), `converted`, `value`."""
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
    last = touches[np.arange(journeys), lengths - 1]
    value = np.where(converted, np.round(rng.lognormal(4.0 + VALUE_LIFT[last], 0.7, journeys), 2), 0.0)
    # a path as one integer: digit = channel + 1, 0 after the last touch
    key = ((touches + 1) * 10 ** np.arange(MAX_TOUCHES - 1, -1, -1, dtype=np.int64)).sum(axis=1)
    keys, inverse = np.unique(key, return_inverse=True)
    digits = (keys[:, None] // 10 ** np.arange(MAX_TOUCHES - 1, -1, -1, dtype=np.int64)) % 10
    names = np.array(("",) + CHANNELS)
    text = np.array([" > ".join(names[row[row > 0]]) for row in digits], dtype=object)
    return pd.DataFrame({"path": text[inverse], "converted": converted, "value": value})


def simulate_paths(journeys: int, seed: int) -> pd.DataFrame:
    """`journeys` simulated journeys aggregated into a paths table (one row per distinct path)."""
    frame = simulate_journeys(journeys, seed)
    frame["path"] = frame["path"].str.replace(" > ", ">", regex=False)
    grouped = frame.groupby("path", sort=True)
    return pd.DataFrame(
        {
            "total_conversions": grouped["converted"].sum().astype(np.int64),
            "total_conversion_value": grouped["value"].sum().round(2),
            "total_null": (~frame["converted"]).groupby(frame["path"]).sum().astype(np.int64),
        }
    ).reset_index()


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


PEER_PROCESS = """
import contextlib, io, json, sys
import pandas as pd
with contextlib.redirect_stdout(io.StringIO()):  # it prints an advertisement when imported
    import ChannelAttribution
frame = pd.read_csv(sys.argv[1])
result = ChannelAttribution.markov_model(
    frame, "path", "total_conversions", var_value="total_conversion_value", var_null="total_null",
    verbose=False, flg_pro=False,
)
print(json.dumps({str(name): [float(conv), float(value)] for name, conv, value in zip(
    result["channel_name"], result["total_conversions"], result["total_conversion_value"])}))
"""


def write_journeys_file(frame: pd.DataFrame, file: Path) -> None:
    """One row per journey, as exported by most tools."""
    converted = frame["converted"].to_numpy()
    pd.DataFrame(
        {
            "path": frame["path"],
            "total_conversions": converted.astype(np.int64),
            "total_conversion_value": frame["value"],
            "total_null": (~converted).astype(np.int64),
        }
    ).to_csv(file, index=False)


def load_average() -> str:
    """The machine's load average over 1 and 5 minutes: on a shared machine a time means little without it."""
    try:
        one, five = Path("/proc/loadavg").read_text().split()[:2]
    except OSError:
        return "load n/a"
    return f"load {one} {five}"


@dataclass
class Runs:
    """The runs of one whole-process command: wall-clock and CPU seconds (user + system, all its threads) of
    each, and the stdout of the last."""

    command: list[str]
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    out: str = ""

    def run(self, env: dict[str, str]) -> None:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        done = subprocess.run(self.command, capture_output=True, text=True, env=env, check=False)
        self.wall.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        if done.returncode != 0:
            raise SystemExit(f"{self.command[:3]} failed ({done.returncode}): {done.stderr[-2000:]}")
        self.out = done.stdout


def whole_processes(commands: list[list[str]], repeat: int, env: dict[str, str]) -> list[Runs]:
    """`repeat` rounds, each running every command once in turn (start-up included), so that a change in
    the machine's load during the runs weighs on every command alike."""
    runs = [Runs(command) for command in commands]
    for _ in range(repeat):
        for each in runs:
            each.run(env)
    return runs


def ours_command(file: Path, *extra: str) -> list[str]:
    script = Path(sys.executable).with_name("omniweave")
    head = [str(script)] if script.exists() else [sys.executable, "-m", "omniweave"]
    return [*head, "attribution", "--paths", str(file), "--model", "markov", "--format", "json", *extra]


def shares(credits: dict[str, float]) -> dict[str, float]:
    total = sum(credits.values())
    return {name: credit / total for name, credit in credits.items()}


def whole_processes_side_by_side(journeys: int, seed: int, repeat: int, ca: Any | None) -> dict[str, float | None]:
    print(f"\n(d) whole processes on a paths file with one row per journey ({journeys:,} rows)")
    frame = simulate_journeys(journeys, seed)
    with tempfile.TemporaryDirectory(prefix="omniweave-bench-") as folder:
        file = Path(folder) / "journeys.csv"
        write_journeys_file(frame, file)
        distinct = frame["path"].nunique()
        print(
            f"  {file.stat().st_size / 1e6:.1f} MB, {distinct:,} distinct paths; median of {repeat} runs each, taking turns"
        )
        env = {**os.environ, "OMNIWEAVE_HOME": str(Path(folder) / "home")}
        commands = [ours_command(file)]
        if ca is not None:
            commands.append([sys.executable, "-c", PEER_PROCESS, str(file)])
        runs = whole_processes(commands, repeat, env)
        ours_s, ours_cpu = statistics.median(runs[0].wall), statistics.median(runs[0].cpu)
        ours = json.loads(runs[0].out)["models"]["markov"]["channels"]
        print(
            f"  omniweave attribution --paths (markov)        {ours_s:7.2f} s wall {ours_cpu:7.2f} s CPU"
            f"  ({load_average()})"
        )
        by_conversion = json.loads(
            whole_processes([ours_command(file, "--value-effects", "conversion")], 1, env)[0].out
        )["models"]["markov"]["channels"]
        theirs = None
        ca_s = None
        if ca is not None:
            ca_s, ca_cpu = statistics.median(runs[1].wall), statistics.median(runs[1].cpu)
            theirs = json.loads(runs[1].out)
            print(
                f"  python: pandas.read_csv + ChannelAttribution  {ca_s:7.2f} s wall {ca_cpu:7.2f} s CPU"
                f"  ({load_average()})"
            )
            print(f"  ours / theirs: {ours_s / ca_s:.3f} wall, {ours_cpu / ca_cpu:.3f} CPU (target <= 0.25)")
            rounds = " ".join(f"{a / b:.3f}" for a, b in zip(runs[0].wall, runs[1].wall, strict=True))
            print(f"  ours / theirs, wall, round by round (each round runs ours, then theirs): {rounds}")
    conv = shares({ch: x["conversions"] for ch, x in ours.items()})
    value = shares({ch: x["value"] for ch, x in ours.items()})
    value_by_conv = shares({ch: x["value"] for ch, x in by_conversion.items()})
    header = f"\n  {'channel':<10}{'conv ours %':>12}{'value ours %':>13}{'value conv-RE %':>16}"
    if theirs is not None:
        their_conv = shares({ch: pair[0] for ch, pair in theirs.items()})
        their_value = shares({ch: pair[1] for ch, pair in theirs.items()})
        header += f"{'conv CA %':>11}{'value CA %':>12}"
    print(header)
    worst = {"conversions": 0.0, "value": 0.0, "value by conversion effects": 0.0}
    for channel in sorted(conv, key=conv.get, reverse=True):
        line = f"  {channel:<10}{100 * conv[channel]:>12.3f}{100 * value[channel]:>13.3f}"
        line += f"{100 * value_by_conv[channel]:>16.3f}"
        if theirs is not None:
            tc, tv = their_conv.get(channel, 0.0), their_value.get(channel, 0.0)
            line += f"{100 * tc:>11.3f}{100 * tv:>12.3f}"
            worst["conversions"] = max(worst["conversions"], 100 * abs(conv[channel] - tc))
            worst["value"] = max(worst["value"], 100 * abs(value[channel] - tv))
            worst["value by conversion effects"] = max(
                worst["value by conversion effects"], 100 * abs(value_by_conv[channel] - tv)
            )
        print(line)
    if theirs is not None:
        print(
            "  largest share difference against ChannelAttribution (pp): "
            + ", ".join(f"{name} {diff:.3f}" for name, diff in worst.items())
        )
    return {"ours": ours_s, "peer": ca_s, "difference": worst["value"] if theirs is not None else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--journeys", type=int, default=1_000_000)
    parser.add_argument("--customers", type=int, default=1_000_000, help="0 skips the CLV part")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each whole process in (d); the median")
    parser.add_argument("--parts", default="abcd", help="which parts to run, e.g. d (c also needs --customers)")
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
    ca = channel_attribution()
    figures = {}
    parse_s = 0.0
    if "a" in args.parts or "b" in args.parts:
        records = frame.to_dict("records")
        table, parse_s = seconds_of(paths_from_records, records, frame.columns)
        print(f"ours: the paths table parsed and validated in {parse_s:.2f} s (not in the model timings below)")
        if "a" in args.parts:
            figures["Markov, order 1"] = markov_side_by_side(frame, table, ca, parse_s)
        if "b" in args.parts:
            figures["heuristics"] = heuristics_side_by_side(frame, table, ca)
    if "d" in args.parts:
        figures["paths file, whole"] = whole_processes_side_by_side(args.journeys, args.seed, args.repeat, ca)

    if args.customers > 0 and "c" in args.parts:
        print(f"\n(c) BG/NBD + Gamma-Gamma (bench/clv.py), {args.customers:,} customers")
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import clv

        figures["CLV"] = clv.run(args.customers, args.seed)
        figures["CLV"]["peer"] = figures["CLV"].pop("lifetimes")

    print(f"\n{'summary':<18}{'ours s':>9}{'peer s':>9}{'ours/peer':>11}  largest difference")
    units = {
        "Markov, order 1": "pp of share",
        "heuristics": "conversions or value",
        "paths file, whole": "pp of value share",
        "CLV": "relative, parameters",
    }
    for name, figure in figures.items():
        peer = figure["peer"]
        ratio = f"{figure['ours'] / peer:>11.3f}" if peer else f"{'-':>11}"
        difference = f"{figure['difference']:.3g} ({units[name]})" if figure["difference"] is not None else "-"
        print(f"{name:<18}{figure['ours']:>9.2f}{(f'{peer:.2f}' if peer else '-'):>9}{ratio}  {difference}")
    print(f"(ours' model times exclude the {parse_s:.2f} s of parsing the paths table once)")


if __name__ == "__main__":
    main()
