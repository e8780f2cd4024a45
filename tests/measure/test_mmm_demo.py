"""The media-mix model against the demo world's media (demo/media.py), 730 days: the issue's checks.

The full demo at 730 days takes minutes to generate and load, so this runs the same checks on the media
simulator's output over a baseline like the demo's store sales (level, weekly and yearly seasonality, a
catalogue mailing every 28 days, day-to-day noise like the demo's); bench/mmm.py runs them on the demo.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from omniweave.demo.media import simulate_media
from omniweave.measure.budget import advise_split, total_revenue
from omniweave.measure.mmm import MediaData, fit_mmm, geometric_adstock

CITIES = ("Belfast", "Birmingham", "Bristol", "Cardiff", "Edinburgh", "Glasgow", "Leeds", "Liverpool", "London")
STORES = np.array([1, 1, 1, 1, 1, 1, 1, 1, 3], float)


def demo_like(days: int, seed: int) -> tuple[MediaData, object]:
    media = simulate_media(days, seed, CITIES, STORES)
    rng = np.random.default_rng(seed)
    t = np.arange(days)
    mailing = np.zeros(days)
    mailing[6::28] = 1.0
    base = 3300 * (1 + 0.08 * np.sin(2 * np.pi * t / 7) + 0.1 * np.sin(2 * np.pi * (t + 40) / 365.25))
    base += 2500 * geometric_adstock(mailing, 0.8) + rng.normal(0, 1000, days)
    revenue = base + sum(e.sum(axis=0) for e in media.expected.values())
    spend = {c: x.sum(axis=0)[None, :] for c, x in media.spend.items()}
    spend["direct_mail"] = (mailing * 600.0)[None, :]
    return MediaData(tuple(map(str, t)), ("all",), revenue[None, :], spend), media


@pytest.mark.slow
def test_the_demo_media_are_recovered_and_the_split_is_near_the_oracle() -> None:
    data, media = demo_like(730, 7)
    fit = fit_mmm(data, bootstrap=60, seed=0)
    channels = list(media.spend)  # type: ignore[attr-defined]
    truth = {c: float(media.expected[c].sum()) for c in channels}  # type: ignore[attr-defined]
    inside = [
        fit.channels[c].contribution_interval[0] <= truth[c] <= fit.channels[c].contribution_interval[1]
        for c in channels
    ]
    assert sum(inside) >= 0.8 * len(channels), {c: (fit.channels[c].contribution_interval, truth[c]) for c in channels}
    true_roi = [truth[c] / fit.channels[c].spend for c in channels]
    assert spearmanr([fit.channels[c].roi for c in channels], true_roi).statistic >= 0.9 - 1e-9  # one swap: 0.9
    best, oracle, current = media.oracle()  # type: ignore[attr-defined]
    now = {c: float(x.sum(axis=0).mean()) for c, x in media.spend.items()}  # type: ignore[attr-defined]
    advice = advise_split({c: fit.channels[c].curve for c in channels}, now, max_change=None)
    earned = total_revenue(media.curves, advice.recommended)  # type: ignore[attr-defined]
    assert earned >= 0.95 * oracle and earned > current
