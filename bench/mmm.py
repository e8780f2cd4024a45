"""Media-mix model benchmark: ours (measure/mmm.py) against pymc-marketing's MMM on the same data.

    .venv/bin/python bench/mmm.py [--days 730] [--seed 7] [--pymc PYTHON] [--draws 500] [--demo HOME]
                                  [--pymc-result FILE [--pymc-only]] [--skip-simulated]

The data: the demo world's media (demo/media.py: TV, radio, print, outdoor, door drops, with known adstock,
saturation and effects) over a baseline like the demo's store sales (tests/measure/test_mmm_demo.py), daily.
Per channel it prints the true incremental revenue, each model's estimate and relative error, and each
model's time. pymc-marketing is not a dependency: it runs in another Python (`--pymc`, default
`.bench-venv/bin/python`, e.g. `python -m venv .bench-venv && .bench-venv/bin/pip install pymc-marketing`),
fed the same data through a CSV file; without it, only ours is printed, with the reason. pymc-marketing takes
about twenty minutes on a loaded laptop: `--pymc-result FILE` saves its result with the sha256 of the data
it was fed, and a later run reuses it only if its data hash the same (it says so, with the saved run's time);
`--pymc-only` runs just pymc-marketing into that file.

`--demo HOME` also checks a loaded demo world (`omniweave --home HOME demo --days 730`): it fits the model
on the log through the service, compares each medium with `HOME/demo/ground_truth/media.json`, and scores
the recommended split with the true curves against the oracle's.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "measure"))

PYMC_SCRIPT = r"""
import json, sys, time
import numpy as np, pandas as pd
from pymc_marketing.mmm import MMM, GeometricAdstock, LogisticSaturation
data = pd.read_csv(sys.argv[1], parse_dates=["date"])
channels = json.loads(sys.argv[2]); draws = int(sys.argv[3])
controls = [c for c in data.columns if c.startswith("control_")]
started = time.perf_counter()
mmm = MMM(date_column="date", channel_columns=channels, control_columns=controls or None,
          adstock=GeometricAdstock(l_max=14), saturation=LogisticSaturation(), yearly_seasonality=2)
X, y = data.drop(columns=["y"]), data["y"]
mmm.fit(X, y, chains=2, draws=draws, tune=draws, random_seed=1, progressbar=False, target_accept=0.9)
fitted = time.perf_counter() - started
contrib = mmm.compute_channel_contribution_original_scale()  # (chain, draw, date, channel)
total = contrib.sum("date")
out = {"seconds": fitted, "channels": {}}
for c in channels:
    v = total.sel(channel=c).values.ravel()
    out["channels"][c] = [float(np.mean(v)), float(np.percentile(v, 5)), float(np.percentile(v, 95))]
print(json.dumps(out))
"""


def ours(data, channels):
    from omniweave.measure.mmm import fit_mmm

    started = time.perf_counter()
    fit = fit_mmm(data, bootstrap=100, seed=0)
    seconds = time.perf_counter() - started
    return seconds, {c: (fit.channels[c].contribution, *fit.channels[c].contribution_interval) for c in channels}, fit


def data_digest(data, channels, draws: int) -> str:
    """What pymc-marketing is fed (revenue, spend, channels, draws), hashed: a saved result is reused only for the same."""
    digest = hashlib.sha256(json.dumps([channels, draws]).encode())
    digest.update(np.ascontiguousarray(data.revenue).tobytes())
    for c in sorted(data.spend):
        digest.update(c.encode() + np.ascontiguousarray(data.spend[c]).tobytes())
    return digest.hexdigest()


def pymc_saved(path: str | None, python: str, data, channels, draws: int) -> tuple[float, dict[str, list[float]]] | str:
    """pymc-marketing's result, run now, or read from `path` when it holds a run on the very same data."""
    digest = data_digest(data, channels, draws)
    if path and Path(path).exists():
        saved = json.loads(Path(path).read_text())
        if saved.get("digest") == digest:
            print(f"pymc-marketing: its run of {saved['when']} on the same data (sha256 {digest[:12]}), from {path}")
            return saved["seconds"], saved["channels"]
    result = pymc(python, data, channels, draws)
    if path and not isinstance(result, str):
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        Path(path).write_text(json.dumps({"digest": digest, "when": when, "seconds": result[0], "channels": result[1]}))
    return result


def pymc(python: str, data, channels, draws: int) -> tuple[float, dict[str, list[float]]] | str:
    if not Path(python).exists():
        return f"no Python with pymc-marketing at {python} (pass --pymc)"
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "data.csv"
        dates = np.datetime64("2024-11-01") + np.arange(data.revenue.shape[1])
        columns = {"date": dates.astype(str), "y": data.revenue[0]}
        for c, x in data.spend.items():
            columns[c] = x[0]
        control = [c for c in data.spend if c not in channels]
        header = ["date", "y", *channels, *(f"control_{c}" for c in control)]
        rows = zip(*(columns[c] for c in ["date", "y", *channels, *control]), strict=True)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(",".join(header) + "\n")
            for row in rows:
                fh.write(",".join(str(v) for v in row) + "\n")
        started = time.perf_counter()
        done = subprocess.run(
            [python, "-c", PYMC_SCRIPT, str(path), json.dumps(channels), str(draws)],
            capture_output=True,
            text=True,
            check=False,
        )
        wall = time.perf_counter() - started
    if done.returncode != 0:
        return "pymc-marketing failed: " + done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed"
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return wall, result["channels"]


def simulated(args: argparse.Namespace) -> None:
    from test_mmm_demo import demo_like

    data, media = demo_like(args.days, args.seed)
    channels = list(media.spend)
    truth = {c: float(media.expected[c].sum()) for c in channels}
    print(f"simulated: {args.days} days, the demo's five media over a demo-like baseline (seed {args.seed})")
    if args.pymc_only:
        result = pymc_saved(args.pymc_result, args.pymc, data, [*channels, "direct_mail"], args.draws)
        print(result if isinstance(result, str) else f"pymc-marketing: {result[0]:.1f} s, saved in {args.pymc_result}")
        return
    t_ours, est_ours, _ = ours(data, channels)
    other = pymc_saved(args.pymc_result, args.pymc, data, [*channels, "direct_mail"], args.draws)
    print(f"{'channel':<11} {'truth':>10} {'ours':>10} {'err':>6} {'pymc-mkt':>10} {'err':>6}")
    errors_ours, errors_pymc = [], []
    for c in channels:
        e1 = abs(est_ours[c][0] - truth[c]) / truth[c]
        errors_ours.append(e1)
        line = f"{c:<11} {truth[c]:>10,.0f} {est_ours[c][0]:>10,.0f} {e1:>6.1%}"
        if not isinstance(other, str):
            e2 = abs(other[1][c][0] - truth[c]) / truth[c]
            errors_pymc.append(e2)
            line += f" {other[1][c][0]:>10,.0f} {e2:>6.1%}"
        print(line)
    print(f"mean relative error: ours {np.mean(errors_ours):.1%}", end="")
    if isinstance(other, str):
        print(f"; pymc-marketing not run: {other}")
        print(f"time: ours {t_ours:.1f} s")
    else:
        print(f", pymc-marketing {np.mean(errors_pymc):.1%}")
        print(f"time: ours {t_ours:.1f} s, pymc-marketing {other[0]:.1f} s (ratio {t_ours / other[0]:.3f})")


def demo(home: str) -> None:
    from omniweave.measure.budget import advise_split, total_revenue
    from omniweave.measure.mmm import MediaCurve, MediaParams
    from omniweave.measure.service.mmm import MmmRequest, fit_from_log
    from omniweave.runtime import Runtime
    from omniweave.settings import Settings

    truth = json.loads((Path(home) / "demo" / "ground_truth" / "media.json").read_text())
    runtime = Runtime(Settings(home=home))
    try:
        started = time.perf_counter()
        report = fit_from_log(runtime, MmmRequest(revenue="store"))
        seconds = time.perf_counter() - started
    finally:
        runtime.close()
    fit = report.fit
    print(
        f"\ndemo world at {home}: {len(fit.periods)} days, store revenue, fit in {seconds:.1f} s, R² {fit.r_squared:.3f}"
    )
    print(f"{'channel':<11} {'truth':>10} {'estimate':>10} {'90% interval':>23} {'in':>3} {'ROI':>5} {'true':>5}")
    inside, est, real, missed = 0, [], [], []
    for c, t in truth["channels"].items():
        r = fit.channels.get(c)
        if r is None:
            print(f"{c:<11} not in the fit")
            continue
        hit = r.contribution_interval[0] <= t["incremental_revenue"] <= r.contribution_interval[1]
        inside += hit
        missed += [] if hit else [c]
        true_roi = t["incremental_revenue"] / r.spend
        est.append(r.roi)
        real.append(true_roi)
        low, high = r.contribution_interval
        print(
            f"{c:<11} {t['incremental_revenue']:>10,.0f} {r.contribution:>10,.0f} {low:>11,.0f}-{high:<11,.0f} "
            f"{'y' if hit else 'n':>3} {r.roi:>5.2f} {true_roi:>5.2f}"
        )
    named = "yes" if not {"tv", "print", "outdoor"} & set(missed) else "no"
    print(
        f"inside: {inside} of {len(truth['channels'])} (TV, print and outdoor inside: {named}); "
        f"ROI Spearman {spearmanr(est, real).statistic:.2f}"
    )
    curves = {}
    for c, t in truth["channels"].items():
        params = MediaParams(t["decay"], t["half_saturation"], t["shape"])
        curves[c] = MediaCurve(c, t["beta"], params, tuple(truth["units"].values()), tuple(t["mix"].values()))
    now = {c: t["mean_spend_per_day"] for c, t in truth["channels"].items()}
    current = total_revenue(curves, now)
    for limit in (None, 0.5):
        # the oracle under the same limit as the recommendation (like with like): the truth's best split
        oracle = advise_split(curves, now, max_change=limit, restarts=24)
        advice = advise_split({c: fit.channels[c].curve for c in now}, now, max_change=limit)
        earned = total_revenue(curves, advice.recommended)
        print(
            f"split (max change {limit}): true revenue per day {earned:,.0f} = "
            f"{earned / oracle.recommended_revenue:.1%} of the oracle's {oracle.recommended_revenue:,.0f} under the "
            f"same limit (current split {current:,.0f}); {'+'.join(f'{c} {v:,.0f}' for c, v in advice.recommended.items())}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=730)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--draws", type=int, default=500)
    parser.add_argument("--pymc", default=os.environ.get("PYMC_PYTHON", str(ROOT / ".bench-venv" / "bin" / "python")))
    parser.add_argument("--demo", default=None, help="a home with a loaded 730-day demo world")
    parser.add_argument("--skip-simulated", action="store_true")
    parser.add_argument(
        "--pymc-result", default=None, help="a JSON file: reuse pymc-marketing's run from it when the data are the same"
    )
    parser.add_argument("--pymc-only", action="store_true", help="run pymc-marketing only (saving to --pymc-result)")
    args = parser.parse_args()
    if not args.skip_simulated:
        simulated(args)
    if args.demo:
        demo(args.demo)


if __name__ == "__main__":
    main()
