"""Attribution against the demo world's ground truth (issue 5), over several seeds.

For each seed the demo world (`omniweave demo`: 2,000 customers × 60 days unless told) is generated
and loaded into its own home under a temporary folder; the journeys are built from its event log
with each lookback asked for, and the Markov, Shapley and last-touch credits are printed next to
each channel's true incremental orders (ground_truth/channel_effects.json). A line per model says
whether the credits order the channels exactly as the truth does, and which neighbouring pairs are
swapped otherwise. Channels the world does not simulate (store visits) are left out of the order.

`--zero-effects` also runs each seed with every channel's effect set to zero (the same touches,
fewer purchases): what the models credit when nothing works, that is, the order reach alone gives.

    .venv/bin/python bench/groundtruth.py --seeds 7 8 9 --lookbacks 7 30

Accuracy, not speed: nothing here is timed except the world's generation and loading.
"""

from __future__ import annotations

import argparse
import itertools
import json
import tempfile
import time
from pathlib import Path

MODELS = ("markov", "shapley", "last_touch")


def run_seed(root: Path, seed: int, customers: int, days: int, lookbacks: list[float], zero: bool) -> None:
    from omniweave.demo.model import CHANNELS, DEFAULT_EFFECTS, effects_with, true_orders
    from omniweave.demo.runner import run_demo
    from omniweave.measure.attribution import attribute
    from omniweave.measure.service.paths import journeys_from_log
    from omniweave.runtime import Runtime
    from omniweave.settings import Settings

    effects = effects_with(**{c: (0.0, 0.0) for c in CHANNELS}) if zero else DEFAULT_EFFECTS
    settings = Settings(home=str(root / f"{'zero' if zero else 'world'}-{seed}"))
    started = time.perf_counter()
    result = run_demo(settings, customers=customers, days=days, seed=seed, console=None, effects=effects)
    loaded = time.perf_counter() - started
    caused = true_orders(json.loads((result.folder / "ground_truth" / "channel_effects.json").read_text()))
    runtime = Runtime(settings)
    try:
        for lookback in lookbacks:
            journeys = journeys_from_log(runtime, lookback_days=lookback)
            paths = journeys.paths
            channels = [c for c in caused if c in paths.channels]
            credits = {model: attribute(paths, model).conversions for model in MODELS}
            label = "no channel works" if zero else "the demo world"
            print(
                f"\nseed {seed}, {label}, {customers:,} customers × {days} days (generated and loaded in "
                f"{loaded:.0f} s), lookback {lookback:g} days: {paths.total_conversions:,.0f} orders with "
                f"touches, {journeys.untouched_conversions:,.0f} without"
            )
            print(f"  {'channel':<12} {'truth':>8}" + "".join(f" {m:>11}" for m in MODELS))
            true_order = sorted(channels, key=lambda c: -caused[c])
            for c in true_order:
                print(f"  {c:<12} {caused[c]:8.1f}" + "".join(f" {credits[m][c]:11.1f}" for m in MODELS))
            for model in MODELS:
                order = sorted(channels, key=lambda c: -credits[model][c])
                swapped = [
                    f"{a}/{b}" for a, b in itertools.pairwise(true_order) if credits[model][a] < credits[model][b]
                ]
                verdict = "yes" if order == true_order else "no; " + (", ".join(swapped) or "order differs")
                print(f"  {model}: the truth's exact order: {verdict}")
    finally:
        runtime.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[7, 8, 9])
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--lookbacks", type=float, nargs="+", default=[7.0, 30.0])
    parser.add_argument("--zero-effects", action="store_true", help="also run each seed with no channel working")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="omniweave-groundtruth-") as folder:
        for seed in args.seeds:
            run_seed(Path(folder), seed, args.customers, args.days, args.lookbacks, zero=False)
            if args.zero_effects:
                run_seed(Path(folder), seed, args.customers, args.days, args.lookbacks, zero=True)


if __name__ == "__main__":
    main()
