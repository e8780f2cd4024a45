"""The demo world's media without clicks: TV, radio, print, outdoor (bought per store city) and direct mail.

Each channel has a spend plan that varies as real plans do (TV in bursts with dark weeks between, radio
always on with dark weeks, print in weekly inserts, outdoor in four-week postings per city with a
regional test — half the cities dark for twelve weeks — and direct-mail drops on single days), and a
true effect on store sales, store visits and online sessions with carry-over and saturation:

    expected incremental store revenue of channel c in city u on day t
        = β_c · share_u · hill(adstock_c(spend_c[u] / share_u)_t; K_c, s_c)

(geometric adstock normalised so that a steady spend x has adstock x; share_u: the city's share of the
stores; spend per head of the city, so a city responds like the country scaled to its size). Each day
and city the channel brings Poisson(expected / mean basket) extra till transactions of one product each
(anonymous: the media reached people whether or not they have a card), each with a store visit, and
`sessions_per_revenue` anonymous web sessions per unit of revenue.

The ground truth (`ground_truth/media.json`) holds each channel's parameters, its true incremental
revenue (expected and as generated), its steady-state response curve, and the oracle-optimal split of
the media budget under the true curves. `simulate_media` is pure (no files), for tests and benchmarks;
`write_media` appends the world's rows to its files. The model that should recover all this:
measure/mmm.py (docs/mmm.md).
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from omniweave.measure.budget import advise_split, total_revenue
from omniweave.measure.mmm import MediaCurve, MediaParams, geometric_adstock, hill

if TYPE_CHECKING:
    from omniweave.demo.generator import World


@dataclass(frozen=True)
class MediaChannel:
    """A medium's truth at 2,000 customers (spend and revenue scale with the size of the world)."""

    channel: str
    decay: float  # adstock carry-over per day
    half_saturation: float  # steady spend per day (per head of the country) earning half of β
    shape: float  # Hill exponent
    beta: float  # incremental store revenue per day at saturation
    level: float  # typical daily spend when on
    pattern: str  # bursts | always_on | inserts | postings | drops
    platform: str
    cpm: float  # cost per thousand impressions (for the spend file's impressions)
    sessions_per_revenue: float  # extra anonymous web sessions per unit of incremental revenue


MEDIA: tuple[MediaChannel, ...] = (
    MediaChannel("tv", 0.7, 900.0, 1.6, 9000.0, 1100.0, "bursts", "itv", 12.0, 0.04),
    MediaChannel("radio", 0.4, 250.0, 1.1, 2000.0, 260.0, "always_on", "global_radio", 5.0, 0.02),
    MediaChannel("print", 0.2, 200.0, 1.0, 700.0, 170.0, "inserts", "newsquest", 9.0, 0.01),
    MediaChannel("outdoor", 0.5, 400.0, 1.3, 1000.0, 320.0, "postings", "jcdecaux", 3.0, 0.01),
    MediaChannel("door_drops", 0.5, 250.0, 1.0, 3000.0, 230.0, "drops", "royal_mail", 600.0, 0.03),
)
ORACLE_MAX_CHANGE = 0.5  # the oracle is also given under the budget command's default maximum change
REGIONAL_TEST = (0.33, 12)  # outdoor: from a third of the way in, half the cities dark for 12 weeks


def _weeks(days: int) -> int:
    return days // 7 + 2


def spend_plan(rng: np.random.Generator, medium: MediaChannel, days: int, shares: np.ndarray) -> np.ndarray:
    """Daily spend [unit, day] of one medium (national media split over the units by their share)."""
    weeks = _weeks(days)
    week_of = np.arange(days) // 7
    wobble = rng.uniform(0.85, 1.15, days)
    if medium.pattern == "bursts":  # flights of 2-3 weeks, then 2-6 dark weeks
        on = np.zeros(weeks, bool)
        w = int(rng.integers(0, 4))
        while w < weeks:
            length = int(rng.integers(2, 4))
            on[w : w + length] = True
            w += length + int(rng.integers(2, 7))
        weekly = on * rng.uniform(0.5, 1.6, weeks)
    elif medium.pattern == "always_on":  # a level per week, a quarter of the weeks dark
        weekly = rng.uniform(0.3, 1.7, weeks) * (rng.random(weeks) > 0.25)
    elif medium.pattern == "inserts":  # weekly inserts, two thirds of the weeks
        weekly = rng.uniform(0.4, 1.6, weeks) * (rng.random(weeks) < 0.67)
    elif medium.pattern == "drops":  # one drop day every 2-5 weeks, a fortnight's budget at once
        daily = np.zeros(days)
        d = int(rng.integers(0, 14))
        while d < days:
            daily[d] = medium.level * 14 * rng.uniform(0.5, 1.5)
            d += 7 * int(rng.integers(2, 6)) + int(rng.integers(-2, 3))
        return np.outer(shares, daily)
    elif medium.pattern == "postings":  # 4-week postings on or off, a level per city, and the regional test
        periods = days // 28 + 2
        national = rng.uniform(0.4, 1.6, periods) * (rng.random(periods) < 0.7)
        per_unit = rng.uniform(0.6, 1.4, (len(shares), periods)) * national
        start = int(days * REGIONAL_TEST[0])
        test = np.arange(start, min(days, start + 7 * REGIONAL_TEST[1]))
        per_unit[:, test // 28] = np.maximum(per_unit[:, test // 28], rng.uniform(0.8, 1.2, (len(shares), 1)))
        daily = per_unit[:, np.arange(days) // 28] * wobble
        dark = rng.permutation(len(shares))[: len(shares) // 2]
        daily[np.ix_(dark, test)] = 0.0
        return medium.level * daily * shares[:, None]
    else:
        raise ValueError(f"unknown spend pattern {medium.pattern!r}")
    return np.outer(shares, medium.level * weekly[week_of] * wobble)


@dataclass(frozen=True)
class MediaWorld:
    """Spend, the expected incremental revenue [unit, day] per channel, and the true curves."""

    units: tuple[str, ...]
    shares: np.ndarray
    spend: dict[str, np.ndarray]
    expected: dict[str, np.ndarray]
    curves: dict[str, MediaCurve]
    scale: float

    def current(self) -> dict[str, float]:
        """Each channel's mean spend per day so far (the current split)."""
        return {c: float(x.sum(axis=0).mean()) for c, x in self.spend.items()}

    def oracle(
        self, total: float | None = None, max_change: float | None = None
    ) -> tuple[dict[str, float], float, float]:
        """The split of `total` media spend per day (default: the mean so far) that maximises the true
        steady-state revenue, each channel within ±`max_change` of its current spend (None: no limit) — the
        same constraint a recommendation honours, so that the two compare like with like; returns (split,
        its revenue per day, the current split's revenue per day)."""
        current = self.current()
        advice = advise_split(self.curves, current, total=total, max_change=max_change, restarts=24)
        return advice.recommended, total_revenue(self.curves, advice.recommended), total_revenue(self.curves, current)


def simulate_media(
    days: int, seed: int, units: tuple[str, ...] = ("all",), shares: np.ndarray | None = None, scale: float = 1.0
) -> MediaWorld:
    """The media plans and their true effects (pure; the same arguments give the same world)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x3ED1A]))
    share = np.full(len(units), 1 / len(units)) if shares is None else np.asarray(shares, float) / np.sum(shares)
    spend: dict[str, np.ndarray] = {}
    expected: dict[str, np.ndarray] = {}
    curves: dict[str, MediaCurve] = {}
    for medium in MEDIA:
        x = spend_plan(rng, medium, days, share) * scale
        params = MediaParams(medium.decay, medium.half_saturation * scale, medium.shape)
        level = hill(geometric_adstock(x / share[:, None], medium.decay), params.half_saturation, medium.shape)
        spend[medium.channel] = x
        expected[medium.channel] = medium.beta * scale * share[:, None] * level
        mix = x.sum(axis=1) / x.sum() if x.sum() > 0 else share
        curves[medium.channel] = MediaCurve(
            medium.channel, medium.beta * scale, params, tuple(map(float, share)), tuple(map(float, mix))
        )
    return MediaWorld(tuple(units), share, spend, expected, curves, scale)


def truth_document(media: MediaWorld, realised: dict[str, float], start: date) -> dict[str, Any]:
    """What ground_truth/media.json says: per channel parameters, spend, incremental revenue (expected and
    generated), ROI, the true curve at a few spends, and the oracle split of the media budget."""
    best, best_revenue, current_revenue = media.oracle()
    limited, limited_revenue, _ = media.oracle(max_change=ORACLE_MAX_CHANGE)
    channels = {}
    for medium in MEDIA:
        c = medium.channel
        x, curve = media.spend[c], media.curves[c]
        mean = float(x.sum(axis=0).mean())
        points = [round(mean * f, 2) for f in (0, 0.25, 0.5, 1, 1.5, 2, 3)]
        channels[c] = {
            "decay": medium.decay,
            "half_life_days": math.log(0.5) / math.log(medium.decay),
            "half_saturation": curve.params.half_saturation,
            "shape": medium.shape,
            "beta": curve.beta,
            "pattern": medium.pattern,
            "spend": round(float(x.sum()), 2),
            "mean_spend_per_day": round(mean, 2),
            "expected_incremental_revenue": round(float(media.expected[c].sum()), 2),
            "incremental_revenue": round(realised.get(c, 0.0), 2),
            "roi": float(media.expected[c].sum() / x.sum()) if x.sum() > 0 else 0.0,
            "marginal_roi_now": float(curve.marginal(mean)),
            "response_curve": {
                "spend_per_day": points,
                "revenue_per_day": [round(curve.revenue(p), 2) for p in points],
            },
            "mix": dict(zip(media.units, curve.mix, strict=True)),
        }
    return {
        "model": __doc__,
        "start_date": start.isoformat(),
        "units": dict(zip(media.units, map(float, media.shares), strict=True)),
        "channels": channels,
        "oracle": {
            "total_per_day": round(sum(best.values()), 2),
            "split": {c: round(v, 2) for c, v in best.items()},
            "revenue_per_day": round(best_revenue, 2),
            "current_revenue_per_day": round(current_revenue, 2),
            # the same, each channel within ±50% of its current spend (`omniweave budget`'s default limit)
            "max_change": ORACLE_MAX_CHANGE,
            "split_within_max_change": {c: round(v, 2) for c, v in limited.items()},
            "revenue_per_day_within_max_change": round(limited_revenue, 2),
        },
    }


@dataclass(frozen=True)
class MediaRows:
    """What the media added to the world's files: rows per file (the manifest's keys), store orders and
    their revenue, events per name."""

    counts: dict[str, int]
    orders: int
    revenue: float
    events: dict[str, int]
    spend: dict[str, float]


def write_media(folder: Path, world: World) -> MediaRows:
    """Append the media's spend rows, extra till transactions, store visits and web sessions to the world's
    files, and write ground_truth/media.json."""
    from omniweave.demo.sinks import IdMaker, iso_local, iso_utc
    from omniweave.demo.world import CATEGORY_NAMES

    cities = sorted({s.city for s in world.stores})
    stores_of = {c: [i for i, s in enumerate(world.stores) if s.city == c] for c in cities}
    shares = np.array([len(stores_of[c]) for c in cities], float)
    media = simulate_media(world.days, world.seed, tuple(cities), shares, world.customers / 2000.0)
    rng = np.random.default_rng(np.random.SeedSequence([world.seed, 0x3ED1B]))
    cat = world.catalogue
    basket = float(np.mean(cat.price))
    ids = {k: IdMaker(world.key, 99_999, f"media-{k}") for k in ("till", "visit", "web", "anon")}
    till, visits, sessions, spend_rows = [], [], [], []
    realised: dict[str, float] = {}
    for medium in MEDIA:
        c = medium.channel
        x, exp = media.spend[c], media.expected[c]
        for d in range(world.days):
            day = world.date_of(d).isoformat()
            if medium.channel == "outdoor":
                for u, city in enumerate(cities):
                    if x[u, d] > 0:
                        spend_rows.append((day, c, f"outdoor_posters@{city}", x[u, d], medium))
            elif x[:, d].sum() > 0:
                spend_rows.append((day, c, f"{c}_{medium.pattern}", x[:, d].sum(), medium))
        drawn = rng.poisson(exp / basket)
        for u, d in zip(*(a.tolist() for a in np.nonzero(drawn)), strict=True):
            n = int(drawn[u, d])
            store = world.stores[stores_of[cities[u]][int(rng.integers(len(stores_of[cities[u]])))]]
            tz = world.store_tz[stores_of[cities[u]][0]]
            seconds = world.day0[d] + rng.uniform(10 * 3600, 19 * 3600, n) - world.offset(tz, d)
            stamps = iso_local(seconds, np.full(n, world.offset(tz, d)))
            products = rng.integers(0, len(cat.sku), n)
            for stamp, p in zip(stamps, products, strict=True):
                price = float(cat.price[p])
                realised[c] = realised.get(c, 0.0) + price
                date_tag = world.date_of(d).strftime("%Y%m%d")
                till.append(
                    (
                        f"{store.store_id}-{date_tag}-M-{ids['till']()[-8:]}",
                        store.store_id,
                        stamp,
                        cat.sku[p],
                        cat.name[p],
                        CATEGORY_NAMES[int(cat.category[p])],
                        1,
                        f"{price:.2f}",
                        f"{store.store_id}-T01",
                        "",
                        "",
                        "",
                        "",
                        "",
                        "",
                        "GBP",
                        "contactless",
                    )
                )
                visits.append((ids["visit"](), store.store_id, stamp, "footfall", "", "", "", "", "", "", 20))
        web = rng.poisson(exp.sum(axis=0) * medium.sessions_per_revenue)
        for w in np.nonzero(web)[0].tolist():
            for t in iso_utc(world.day0[w] + rng.uniform(7 * 3600, 23 * 3600, int(web[w]))):
                url = "https://www.hollinsvale.example/"
                page = {"path": "/", "url": url, "title": "Hollins & Vale", "referrer": "", "search": ""}
                sessions.append(
                    {
                        "type": "page",
                        "name": "Hollins & Vale",
                        "properties": page,
                        "messageId": ids["web"](),
                        "anonymousId": ids["anon"](),
                        "context": {"page": page, "locale": "en-GB"},
                        "timestamp": t,
                    }
                )
    with open(folder / "offline" / "till.csv", "a", newline="", encoding="utf-8") as fh:
        csv.writer(fh, lineterminator="\n").writerows(till)
    with open(folder / "offline" / "store_visits.csv", "a", newline="", encoding="utf-8") as fh:
        csv.writer(fh, lineterminator="\n").writerows(visits)
    with open(folder / "offline" / "ad_spend.csv", "a", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh, lineterminator="\n")
        for day, channel, campaign, amount, medium in spend_rows:
            impressions = int(amount / medium.cpm * 1000)
            out.writerow((day, channel, campaign, f"{amount:.2f}", medium.platform, impressions, "", "GBP"))
    with open(folder / "online" / "web.jsonl", "ab") as fb:
        fb.write(b"".join(orjson.dumps(s) + b"\n" for s in sessions))
    with open(folder / "ground_truth" / "identities.csv", "a", newline="", encoding="utf-8") as fh:
        # the sessions' visitors are people the media reached who are not (yet) customers: no person
        csv.writer(fh, lineterminator="\n").writerows(
            ("anonymous_id", s["anonymousId"], s["anonymousId"], "") for s in sessions
        )
    document = truth_document(media, realised, world.start)
    document["store_cities"] = {c: [world.stores[i].store_id for i in stores_of[c]] for c in cities}
    (folder / "ground_truth" / "media.json").write_text(json.dumps(document, indent=2))
    counts = {
        "offline/till": len(till),
        "offline/store_visits": len(visits),
        "offline/ad_spend": len(spend_rows),
        "online/web": len(sessions),
    }
    totals: dict[str, float] = {}
    for _, channel, _, amount, _ in spend_rows:
        totals[channel] = totals.get(channel, 0.0) + round(float(amount), 2)
    return MediaRows(counts, len(till), round(sum(realised.values()), 2), {"page": len(sessions)}, totals)
