"""The profile insights checked against the demo world's truth, next to chance and an oracle.

For each insight (preferred messaging channel, best hour, most responsive promotion, favourite
category) and each profile whose person is known in `ground_truth/` and whose insight is known:

- **agreement**: the insight equals the truth (best hour: the hour's middle within ±2 h of the
  person's true active hour);
- **chance**: the agreement of a guess drawn from the truth's own distribution (Σ p²; for the hour,
  the chance that two people's hours are within ±2 h);
- **oracle**: the agreement of the Bayes-optimal guess of someone who knows the world's model and
  the person's other parameters (persona, responsiveness, price sensitivity; not the one insight
  sought) but sees only the same events (the same counts the insight reads). It is the best
  agreement the data allows, or close to it: its likelihoods are the simulator's formulas, but a few
  events they do not model (a coupon redeemed, an event attended, a page viewed after a click) are
  seen as they are.

`omniweave demo` prints the table (`describe`); docs/demo.md quotes it.
"""

from __future__ import annotations

import csv
import textwrap
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from omniweave.demo.people import CHANNEL_PREFS, PERSONAS, PROMO_RESPONSE_COLUMNS
from omniweave.demo.touches import _ENGAGEMENT
from omniweave.demo.world import CATEGORY_NAMES, PROMO_TYPES
from omniweave.errors import InputError
from omniweave.runtime import Runtime

HOUR_TOLERANCE = 2.0
"""A best hour agrees when its middle is within this many hours of the true active hour."""
ORACLE_SAMPLES = 3000
"""Draws of a responsiveness vector per person when the oracle weighs the promotion types."""
_PRIOR_CHANNEL = np.array([0.45, 0.2, 0.12, 0.13, 0.10])  # people.build_people's draw of pref_channel
_ACTIVITY_SD = 2.5  # simulation.BlockSim.hours and stores.trips: own activity around the active hour


@dataclass(frozen=True)
class InsightAgreement:
    """One insight against the truth: over `people` profiles (of `profiles` with a known truth) whose
    insight is known; agreement, chance and oracle are shares of those people."""

    insight: str
    profiles: int
    people: int
    agreement: float
    chance: float
    oracle: float
    note: str = ""

    @property
    def coverage(self) -> float:
        """Share of the profiles with a truth whose insight is known (not `unknown`)."""
        return self.people / self.profiles if self.profiles else 0.0

    @property
    def of_oracle(self) -> float:
        """Agreement as a share of the oracle's."""
        return self.agreement / self.oracle if self.oracle else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "coverage": round(self.coverage, 4), "of_oracle": round(self.of_oracle, 4)}


@dataclass(frozen=True)
class InsightCheck:
    """Every insight's agreement; `describe` is what `omniweave demo` prints."""

    rows: tuple[InsightAgreement, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"insights": [r.to_dict() for r in self.rows]}

    def describe(self) -> str:
        lines = [
            "profile insights against the truth (share of people whose insight is known):",
            f"  {'insight':<28}{'known':>7}{'agree':>7}{'chance':>8}{'oracle':>8}{'of oracle':>11}",
        ]
        for r in self.rows:
            lines.append(
                f"  {r.insight:<28}{r.coverage:>7.0%}{r.agreement:>7.0%}{r.chance:>8.0%}{r.oracle:>8.0%}"
                f"{r.of_oracle:>11.0%}"
            )
            if r.note:
                lines.extend(textwrap.wrap(r.note, 78, initial_indent="    ", subsequent_indent="    "))
        return "\n".join(lines)


# ---------------------------------------------------------------- reading


def _truth(folder: Path) -> dict[str, dict[str, str]]:
    path = folder / "ground_truth" / "customers.csv"
    if not path.is_file():
        raise InputError(f"no ground truth at {path}", field="folder")
    with open(path, newline="", encoding="utf-8") as fh:
        return {row["person_id"]: row for row in csv.DictReader(fh)}


def _truth_of_profiles(runtime: Runtime, folder: Path) -> dict[str, str]:
    """Profile person → true person: the true person of most of the profile's identifiers."""
    votes: dict[str, dict[str, int]] = {}
    truth_ids: dict[tuple[str, str], str] = {}
    with open(folder / "ground_truth" / "identities.csv", newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if row["person_id"] and row["kind"] in ("email", "customer_number", "user_id", "loyalty_card"):
                truth_ids[(row["kind"], row["normalized"])] = row["person_id"]
    ids = runtime.warehouse().table("identities")
    ids = ids.filter(ids.kind.isin(("email", "customer_number", "user_id", "loyalty_card"))).to_pyarrow()
    for kind, value, person in zip(
        ids["kind"].to_pylist(), ids["value"].to_pylist(), ids["person_id"].to_pylist(), strict=True
    ):
        true = truth_ids.get((kind, value))
        if true is not None:
            count = votes.setdefault(person, {})
            count[true] = count.get(true, 0) + 1
    return {p: max(c, key=lambda t: (c[t], t)) for p, c in votes.items()}


def _person_events(runtime: Runtime, now: datetime) -> Any:
    """The per-event table the profile build reads (profiles.service.build.person_events)."""
    from omniweave.profiles.service.build import person_events
    from omniweave.storage.engine import dialect_of

    warehouse = runtime.warehouse()
    events, identities = warehouse.table("events"), warehouse.table("identities")
    return person_events(events, identities, now, dialect_of(events))


# ---------------------------------------------------------------- the check


def check_insights(runtime: Runtime, folder: str | Path, seed: int = 0) -> InsightCheck:
    """Agreement of the profile insights with `<folder>/ground_truth/`, with chance and the oracle."""
    folder = Path(folder)
    truth = _truth(folder)
    mapping = _truth_of_profiles(runtime, folder)
    profiles = runtime.warehouse().table("profiles")
    columns = [
        "person_id",
        "timezone",
        "preferred_messaging_channel",
        "messaging_response",
        "best_hour",
        "responsive_promotion",
        "favourite_categories",
    ]
    rows = [r for r in profiles.select(columns).to_pyarrow().to_pylist() if r["person_id"] in mapping]
    now = profiles_now(runtime)
    ev = _person_events(runtime, now)
    rng = np.random.default_rng(seed)
    return InsightCheck(
        (
            _channel(rows, mapping, truth),
            _hour(rows, mapping, truth, ev),
            _promotion(rows, mapping, truth, ev, rng),
            _category(rows, mapping, truth, ev),
        )
    )


def profiles_now(runtime: Runtime) -> datetime:
    """The `now` the profiles were built as of: the latest event."""
    latest = runtime.log.latest_event_time() or runtime.warehouse().table("events").timestamp.max().execute()
    now: datetime = latest.to_pydatetime() if hasattr(latest, "to_pydatetime") else latest
    return now


def _chance(values: list[str]) -> float:
    if not values:
        return 0.0
    _, counts = np.unique(np.array(values), return_counts=True)
    shares = counts / counts.sum()
    return float((shares**2).sum())


def _agreement(
    name: str, total: int, guesses: list[str], oracle: list[str], truths: list[str], note: str = ""
) -> InsightAgreement:
    n = len(truths)
    agree = sum(g == t for g, t in zip(guesses, truths, strict=True)) / n if n else 0.0
    best = sum(g == t for g, t in zip(oracle, truths, strict=True)) / n if n else 0.0
    return InsightAgreement(name, total, n, round(agree, 4), round(_chance(truths), 4), round(best, 4), note)


# the simulator's response model per message received (touches.py), by channel: (p if preferred, p if not)
def _message_rates(persona: int, s: float) -> dict[str, tuple[float, float]]:
    """Expected responses (opens and clicks) per message received, preferred and not, and the most a message
    can get (2: an open and a click; 1: a click or a tap)."""
    e = float(_ENGAGEMENT[persona])

    def email(f: float) -> float:
        opened = 0.985 * 0.24 * f * e
        return opened * (1 + 0.14 * s)

    def whatsapp(f: float) -> float:
        opened = 0.98 * min(1.0, 0.72 * f)
        return opened * (1 + 0.11 * f * s)

    return {
        "email": (email(1.5), email(0.85)),
        "sms": (0.97 * 0.05 * 1.4 * s, 0.97 * 0.05 * 0.9 * s),
        "whatsapp": (whatsapp(1.4), whatsapp(0.9)),
        "push": (0.09 * 1.4 * s, 0.09 * 0.9 * s),
    }


_MAX_RESPONSES = {"email": 2, "sms": 1, "whatsapp": 2, "push": 1}


def _channel(rows: list[dict[str, Any]], mapping: dict[str, str], truth: dict[str, dict[str, str]]) -> InsightAgreement:
    guesses, oracle, free, truths = [], [], [], []
    for r in rows:
        if r["preferred_messaging_channel"] in (None, "unknown"):
            continue
        t = truth[mapping[r["person_id"]]]
        persona = PERSONAS.index(t["persona"])
        s = float(np.mean([np.sqrt(float(t[c])) for c in PROMO_RESPONSE_COLUMNS]))
        rates = _message_rates(persona, s)
        log_post = np.log(_PRIOR_CHANNEL).copy()
        for cell in r["messaging_response"] or []:
            ch, n, k = cell["channel"], int(cell["received"]), int(cell["responses"])
            if ch not in rates:
                continue
            top = _MAX_RESPONSES[ch]
            for j, pref in enumerate(CHANNEL_PREFS):
                p = min(rates[ch][0 if pref == ch else 1] / top, 0.999)
                k_ = min(k, n * top)
                log_post[j] += k_ * np.log(p) + (n * top - k_) * np.log1p(-p)
        reached = {cell["channel"] for cell in r["messaging_response"] or []}
        allowed = np.array([pref in reached for pref in CHANNEL_PREFS])
        guesses.append(r["preferred_messaging_channel"])
        oracle.append(CHANNEL_PREFS[int(np.argmax(np.where(allowed, log_post, -np.inf)))])
        free.append(CHANNEL_PREFS[int(np.argmax(log_post))])
        truths.append(t["preferred_channel"])
    n = len(truths)
    unconstrained = sum(g == t for g, t in zip(free, truths, strict=True)) / n if n else 0.0
    note = (
        "the oracle, like the insight, picks one of the channels the person was messaged on; free to name any, "
        f"it agrees for {unconstrained:.0%} (the prior favours e-mail for people messaged only by SMS or "
        "WhatsApp); the truth is direct mail for 10% of people, whom no response can reveal"
    )
    return _agreement("preferred messaging channel", len(rows), guesses, oracle, truths, note)


def _local_hours(ev: Any, zones: dict[str, str]) -> dict[str, list[float]]:
    """Per profile person, the local hours of the person's own activity (visits, views, orders)."""
    from omniweave.profiles.service.build import PURCHASE, VISIT

    own = ev.filter(ev.code.isin((VISIT, PURCHASE))).select("person_id", "timestamp").to_pyarrow()
    hours: dict[str, list[float]] = {}
    cache: dict[str, ZoneInfo] = {}
    for person, at in zip(own["person_id"].to_pylist(), own["timestamp"].to_pylist(), strict=True):
        name = zones.get(person)
        if name is None:
            continue
        tz = cache.setdefault(name, ZoneInfo(name))
        local = at.astimezone(tz)
        hours.setdefault(person, []).append(local.hour + local.minute / 60.0)
    return hours


def _hour(
    rows: list[dict[str, Any]], mapping: dict[str, str], truth: dict[str, dict[str, str]], ev: Any
) -> InsightAgreement:
    known = [r for r in rows if r["best_hour"] is not None]
    hours = _local_hours(ev, {r["person_id"]: r["timezone"] or "UTC" for r in known})
    grid = np.arange(8.0, 22.5001, 0.05)
    agree = oracle = 0
    actual = []
    for r in known:
        t = truth[mapping[r["person_id"]]]
        h = float(t["active_hour"])
        actual.append(h)
        agree += abs(r["best_hour"] + 0.5 - h) <= HOUR_TOLERANCE
        centre = 20.0 if t["persona"] == "digital" else 14.0
        log_post = -0.5 * ((grid - centre) / 3.0) ** 2
        x = np.array(hours.get(r["person_id"], []))
        if len(x):
            log_post = log_post - 0.5 * (((x[None, :] - grid[:, None]) / _ACTIVITY_SD) ** 2).sum(axis=1)
        post = np.exp(log_post - log_post.max())
        post /= post.sum()
        # the hour g whose middle is within the tolerance of most of the posterior
        mass = [post[np.abs(grid - (g + 0.5)) <= HOUR_TOLERANCE].sum() for g in range(24)]
        oracle += abs(int(np.argmax(mass)) + 0.5 - h) <= HOUR_TOLERANCE
    n = len(known)
    a = np.array(actual)
    chance = float((np.abs(a[:, None] - a[None, :]) <= HOUR_TOLERANCE).mean()) if n else 0.0
    return InsightAgreement(
        "best hour (±2 h)",
        len(rows),
        n,
        round(agree / n, 4) if n else 0.0,
        round(chance, 4),
        round(oracle / n, 4) if n else 0.0,
    )


def _promotion(
    rows: list[dict[str, Any]],
    mapping: dict[str, str],
    truth: dict[str, dict[str, str]],
    ev: Any,
    rng: np.random.Generator,
) -> InsightAgreement:
    from omniweave.profiles import insights
    from omniweave.profiles.service.build import EXPOSURE, PROMOTION_TYPES, RESPONSE_CODES, _engaged_channel

    known = [r for r in rows if r["responsive_promotion"] not in (None, "unknown")]
    promo = ev.filter(ev.promotion.isin(PROMOTION_TYPES))
    promo = promo.select(
        "person_id",
        "promotion",
        "campaign_id",
        channel=_engaged_channel(promo),
        exposure=(promo.code == EXPOSURE).cast("int64"),
        response=promo.code.isin(RESPONSE_CODES).cast("int64"),
    )
    cells: dict[str, list[tuple[str, int, float, float]]] = {}
    table = insights.promotion_cells(promo, PROMOTION_TYPES).to_pyarrow().to_pylist()
    for c in table:
        cells.setdefault(c["person_id"], []).append(
            (c["channel"], PROMO_TYPES.index(c["promotion"]), c["exposures"], c["responses"])
        )
    population = np.array([[float(t[c]) for c in PROMO_RESPONSE_COLUMNS] for t in truth.values()])
    guesses, oracle, truths = [], [], []
    for r in known:
        t = truth[mapping[r["person_id"]]]
        persona = PERSONAS.index(t["persona"])
        pref = t["preferred_channel"]
        draws = population[rng.integers(0, len(population), ORACLE_SAMPLES)]
        root = np.sqrt(draws)
        e = float(_ENGAGEMENT[persona])
        base = {
            "email": 0.985 * 0.24 * (1.5 if pref == "email" else 0.85) * e * 0.14,
            "sms": 0.97 * 0.05 * (1.4 if pref == "sms" else 0.9),
            "whatsapp": 0.98
            * min(1.0, 0.72 * (1.4 if pref == "whatsapp" else 0.9))
            * 0.11
            * (1.4 if pref == "whatsapp" else 0.9),
            "push": 0.09 * (1.4 if pref == "push" else 0.9),
        }
        loglik = np.zeros(ORACLE_SAMPLES)
        for channel, j, n, k in cells.get(r["person_id"], []):
            if channel not in base or n <= 0:
                continue
            p = np.clip(base[channel] * root[:, j], 1e-6, 0.999)
            k = min(k, n)
            loglik += k * np.log(p) + (n - k) * np.log1p(-p)
        weights = np.exp(loglik - loglik.max())
        best = np.bincount(np.argmax(draws, axis=1), weights=weights, minlength=len(PROMO_TYPES))
        guesses.append(r["responsive_promotion"])
        oracle.append(PROMO_TYPES[int(np.argmax(best))])
        truths.append(PROMO_TYPES[int(np.argmax([float(t[c]) for c in PROMO_RESPONSE_COLUMNS]))])
    note = (
        f"{len(known):,} of {len(rows):,} people answered promotions at least "
        f"{insights.MIN_PROMOTION_RESPONSES} times (the rest are unknown); "
        "a liking changes a click's chance by its square root, so few answers say little even to the oracle"
    )
    return _agreement("most responsive promotion", len(rows), guesses, oracle, truths, note)


def _category(
    rows: list[dict[str, Any]], mapping: dict[str, str], truth: dict[str, dict[str, str]], ev: Any
) -> InsightAgreement:
    views = ev.filter(ev.category.notnull())
    counts = views.group_by(["person_id", "category"]).aggregate(n=views.count()).to_pyarrow().to_pylist()
    seen: dict[str, dict[str, int]] = {}
    for c in counts:
        seen.setdefault(c["person_id"], {})[c["category"]] = int(c["n"])
    guesses, oracle, truths = [], [], []
    for r in rows:
        if not r["favourite_categories"]:
            continue
        t = truth[mapping[r["person_id"]]]
        mine = seen.get(r["person_id"], {})
        # Dirichlet(0.6) affinities, categories of views drawn from them: the posterior mean's largest
        oracle.append(max(CATEGORY_NAMES, key=lambda c: (mine.get(c, 0), c)))
        guesses.append(r["favourite_categories"][0])
        truths.append(t["favourite_category"])
    return _agreement("favourite category", len(rows), guesses, oracle, truths)
