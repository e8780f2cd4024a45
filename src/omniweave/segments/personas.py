"""Personas suggested from the data: k-means over what profiles say about buying and engagement.

Pure functions over profile columns (a mapping of column name to a sequence of values, as
`pyarrow.Table.to_pydict()` gives them): `profile_features` turns them into a scaled matrix,
`kmeans` clusters it (k-means++ seeding, Lloyd iterations, restarts; deterministic for a seed),
`choose_k` picks k by the silhouette on a fixed sample, `describe_clusters` puts each cluster into
a marketer's words by comparing it with the whole population, and `learn_rule` finds a short
condition tree over profile columns (the `where` of a segment file, docs/segments.md) that selects
roughly the cluster. `suggest_personas` does all of it. docs/personas.md says why each choice.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from omniweave.errors import InputError

Columns = Mapping[str, Sequence[Any]]

K_RANGE = (3, 8)
"""k tried when none is given (both included)."""
MIN_PER_CLUSTER = 5
"""A clustering into k needs at least k × this many profiles."""
SILHOUETTE_SAMPLE = 2000
RULE_SAMPLE = 20_000
MAX_CHANNELS = 8
MAX_CATEGORIES = 10
MAX_RULE_CONDITIONS = 3
MIN_BUYERS_FOR_AVERAGES = 5
"""A persona with fewer buyers shows no average over buyers (order value, orders per buyer, recency, CLV):
one or two orders are not a figure about the persona."""
BUYER_KPIS = ("orders_per_buyer", "average_order_value", "recency_days", "store_order_share", "clv_12m")
"""The persona figures taken over the members who have bought; the others are over all members."""

RULE_NUMERIC_COLUMNS = (
    "recency_days",
    "orders",
    "online_orders",
    "store_orders",
    "total_revenue",
    "average_order_value",
)
COUNT_COLUMNS = frozenset({"recency_days", "orders", "online_orders", "store_orders"})

# weights of the feature blocks: an RFM or engagement column is a z-score (weight 1); a share
# (0..1) is multiplied by its weight, so that a pure-store buyer and a pure-online buyer are as far
# apart as two persons 2 standard deviations apart in revenue
STORE_SHARE_WEIGHT = 2.0
CHANNEL_MIX_WEIGHT = 2.0
CATEGORY_MIX_WEIGHT = 1.5
EMAIL_CONSENT_WEIGHT = 0.5
AGE_WEIGHT = 1.0
GENDER_WEIGHT = 1.0
MIN_KNOWN_DEMOGRAPHICS = 0.1
"""Age and gender join the features when at least this share of profiles states them; persons who
do not are placed at the mean of those who do, so that not saying separates nobody."""
FEMALE = frozenset({"f", "female", "woman", "w"})
MALE = frozenset({"m", "male", "man"})

CHANNEL_PHRASES = {
    "web": "engaged on the website",
    "app": "engaged on the app",
    "sms": "responsive to SMS",
    "whatsapp": "engaged on WhatsApp",
    "push": "responsive to push",
    "social": "engaged on social media",
    "store": "store visitors",
    "direct_mail": "responsive to direct mail",
    "phone": "engaged by phone",
}
"""How a channel reads when a cluster engages on it far more than the population (e-mail has its own)."""


# ---------------------------------------------------------------- features


@dataclass(frozen=True)
class ProfileFeatures:
    """What is clustered, and the raw per-person values descriptions and KPIs are read from.

    `matrix` is (persons × features), scaled and weighted; `raw` holds float arrays (NaN = not
    known): the RFM columns, `store_share` (store orders / orders, NaN for non-buyers),
    `engagement` (sum of engagement scores), `email_consent` (1 / 0), `clv_12m` when present, the
    stated `age` and `female` (1 / 0, NaN when not stated or neither), and one `channel:<name>` /
    `category:<name>` share per kept channel and category.
    """

    names: tuple[str, ...]
    matrix: np.ndarray
    raw: dict[str, np.ndarray]
    channels: tuple[str, ...]
    categories: tuple[str, ...]
    buyer: np.ndarray


def _floats(values: Sequence[Any] | None, n: int) -> np.ndarray:
    if values is None:
        return np.full(n, np.nan)
    return np.array([np.nan if v is None else float(v) for v in values], dtype=float)


def _zscore(x: np.ndarray) -> np.ndarray:
    std = float(x.std())
    return (x - x.mean()) / std if std > 1e-12 else np.zeros_like(x)


def _female(value: Any) -> float:
    text = str(value).strip().lower() if value is not None else ""
    return 1.0 if text in FEMALE else 0.0 if text in MALE else math.nan


def profile_columns_count(columns: Columns) -> int:
    """The number of persons in `columns` (the length of `person_id`, else of `orders`)."""
    for name in ("person_id", "orders", "total_revenue"):
        if name in columns:
            return len(columns[name])
    return 0


def profile_features(columns: Columns) -> ProfileFeatures:
    """The feature matrix of the profiles: RFM (log1p, standardised), store share of orders, total
    engagement, channel mix, category mix and e-mail consent."""
    missing = [c for c in ("orders", "total_revenue") if c not in columns]
    if missing:
        raise InputError(
            f"profiles lack the column(s) {', '.join(missing)}; got {', '.join(sorted(columns))}", field=missing[0]
        )
    n = profile_columns_count(columns)
    orders = np.nan_to_num(_floats(columns["orders"], n))
    revenue = np.nan_to_num(_floats(columns["total_revenue"], n))
    buyer = orders > 0
    aov = _floats(columns.get("average_order_value"), n)
    aov = np.where(np.isnan(aov) & buyer, revenue / np.maximum(orders, 1), aov)
    aov = np.where(buyer, aov, np.nan)
    recency = np.where(buyer, _floats(columns.get("recency_days"), n), np.nan)
    store_orders = _floats(columns.get("store_orders"), n)
    if np.isnan(store_orders).all() and "online_orders" in columns:
        store_orders = orders - np.nan_to_num(_floats(columns["online_orders"], n))
    store_share = np.where(buyer, np.nan_to_num(store_orders) / np.maximum(orders, 1), np.nan)
    consent = np.array([1.0 if v is True else 0.0 for v in columns.get("consent_email", [None] * n)])

    channel_scores: list[dict[str, float]] = []
    for entries in columns.get("engagement_by_channel", [None] * n):
        scores: dict[str, float] = {}
        for entry in entries or ():
            if entry and entry.get("channel") and entry.get("score"):
                scores[str(entry["channel"])] = scores.get(str(entry["channel"]), 0.0) + float(entry["score"])
        channel_scores.append(scores)
    engagement = np.array([sum(s.values()) for s in channel_scores], dtype=float)
    channel_totals: dict[str, float] = {}
    for scores in channel_scores:
        total = sum(scores.values())
        for channel, score in scores.items():
            channel_totals[channel] = channel_totals.get(channel, 0.0) + score / total
    channels = tuple(sorted(channel_totals, key=lambda c: (-channel_totals[c], c))[:MAX_CHANNELS])
    category_lists = [list(dict.fromkeys(v or ())) for v in columns.get("favourite_categories", [None] * n)]
    category_counts: dict[str, int] = {}
    for cats in category_lists:
        for cat in cats:
            category_counts[str(cat)] = category_counts.get(str(cat), 0) + 1
    categories = tuple(sorted(category_counts, key=lambda c: (-category_counts[c], c))[:MAX_CATEGORIES])

    raw: dict[str, np.ndarray] = {
        "recency_days": recency,
        "orders": orders,
        "total_revenue": revenue,
        "average_order_value": aov,
        "store_share": store_share,
        "engagement": engagement,
        "email_consent": consent,
    }
    if "clv_12m" in columns:
        raw["clv_12m"] = _floats(columns["clv_12m"], n)
    raw["age"] = _floats(columns.get("age"), n)
    raw["female"] = np.array([_female(v) for v in columns.get("gender", [None] * n)], dtype=float)
    for channel in channels:
        raw[f"channel:{channel}"] = np.array(
            [s.get(channel, 0.0) / sum(s.values()) if s else 0.0 for s in channel_scores]
        )
    for cat in categories:
        raw[f"category:{cat}"] = np.array([1.0 / len(cats) if cat in cats else 0.0 for cats in category_lists])

    # non-buyers: the oldest recency seen (they are the least recent) and no basket; store share
    # at the buyers' mean, so that it does not separate them from anyone
    known_recency = recency[~np.isnan(recency)]
    oldest = float(known_recency.max()) if len(known_recency) else 0.0
    filled_recency = np.nan_to_num(np.where(buyer, recency, oldest), nan=oldest)
    blocks: list[tuple[str, np.ndarray]] = [
        ("recency_days", _zscore(np.log1p(np.maximum(filled_recency, 0)))),
        ("orders", _zscore(np.log1p(np.maximum(orders, 0)))),
        ("total_revenue", _zscore(np.log1p(np.maximum(revenue, 0)))),
        ("average_order_value", _zscore(np.log1p(np.maximum(np.nan_to_num(aov), 0)))),
        (
            "store_share",
            STORE_SHARE_WEIGHT * np.where(buyer, store_share, float(store_share[buyer].mean()) if buyer.any() else 0.0),
        ),
        ("engagement", _zscore(np.log1p(engagement))),
        ("email_consent", EMAIL_CONSENT_WEIGHT * consent),
    ]
    for name, weight in (("age", AGE_WEIGHT), ("female", GENDER_WEIGHT)):
        values = raw[name]
        known = ~np.isnan(values)
        if n and known.mean() >= MIN_KNOWN_DEMOGRAPHICS:
            filled = np.where(known, values, float(values[known].mean()))
            blocks.append((name, weight * (_zscore(filled) if name == "age" else filled - filled.mean())))
    # a block of m shares gets weight w / sqrt(m) per column, so its spread does not grow with m
    for prefix, names, weight in (
        ("channel", channels, CHANNEL_MIX_WEIGHT),
        ("category", categories, CATEGORY_MIX_WEIGHT),
    ):
        for name in names:
            blocks.append((f"{prefix}:{name}", weight / math.sqrt(max(len(names), 1)) * raw[f"{prefix}:{name}"]))
    matrix = np.column_stack([b for _, b in blocks]) if n else np.zeros((0, len(blocks)))
    return ProfileFeatures(tuple(name for name, _ in blocks), np.nan_to_num(matrix), raw, channels, categories, buyer)


# ---------------------------------------------------------------- k-means


@dataclass(frozen=True)
class KMeansResult:
    """Labels 0..k-1 numbered by cluster size (largest first), centroids in that order, and the
    within-cluster sum of squares."""

    labels: np.ndarray
    centroids: np.ndarray
    inertia: float


def _squared_distances(x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    d = (x * x).sum(1)[:, None] - 2.0 * x @ centroids.T + (centroids * centroids).sum(1)[None, :]
    return np.maximum(d, 0.0)


def _kmeans_plus_plus(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    n = len(x)
    chosen = [int(rng.integers(n))]
    closest = _squared_distances(x, x[chosen])[:, 0]
    for _ in range(1, k):
        total = float(closest.sum())
        if total <= 0.0:  # every point sits on a centre already: any other point will do
            rest = np.setdiff1d(np.arange(n), chosen)
            chosen.append(int(rng.choice(rest)))
        else:
            chosen.append(int(rng.choice(n, p=closest / total)))
        closest = np.minimum(closest, _squared_distances(x, x[chosen[-1:]])[:, 0])
    return x[chosen].copy()


def _lloyd(x: np.ndarray, centroids: np.ndarray, max_iter: int) -> tuple[np.ndarray, np.ndarray, float]:
    k = len(centroids)
    labels = np.full(len(x), -1)
    for _ in range(max_iter):
        d = _squared_distances(x, centroids)
        new = d.argmin(1)
        if np.array_equal(new, labels):
            break
        labels = new
        counts = np.bincount(labels, minlength=k)
        sums = np.column_stack([np.bincount(labels, weights=x[:, f], minlength=k) for f in range(x.shape[1])])
        for j in range(k):
            if counts[j]:
                centroids[j] = sums[j] / counts[j]
            else:  # an empty cluster takes the point farthest from its centre
                far = int(d[np.arange(len(x)), labels].argmax())
                centroids[j] = x[far]
                labels[far] = j
    d = _squared_distances(x, centroids)
    labels = d.argmin(1)
    return labels, centroids, float(d[np.arange(len(x)), labels].sum())


def kmeans(x: np.ndarray, k: int, *, seed: int = 0, restarts: int = 8, max_iter: int = 100) -> KMeansResult:
    """k-means with k-means++ seeding and `restarts` runs, the best by inertia; the same input and
    seed always give the same result, clusters numbered largest first."""
    x = np.asarray(x, dtype=float)
    if k < 1 or k > len(x):
        raise InputError(f"k = {k}: expected 1 to {len(x)} (the number of points)", field="k")
    rng = np.random.default_rng(seed)
    best: tuple[np.ndarray, np.ndarray, float] | None = None
    for _ in range(max(restarts, 1)):
        result = _lloyd(x, _kmeans_plus_plus(x, k, rng), max_iter)
        if best is None or result[2] < best[2] - 1e-9:
            best = result
    assert best is not None
    labels, centroids, inertia = best
    sizes = np.bincount(labels, minlength=k)
    order = sorted(range(k), key=lambda j: (-sizes[j], tuple(np.round(centroids[j], 9))))
    relabel = np.empty(k, dtype=int)
    relabel[order] = np.arange(k)
    return KMeansResult(relabel[labels], centroids[order], inertia)


def silhouette(x: np.ndarray, labels: np.ndarray) -> float:
    """The mean silhouette of the points (Rousseeuw 1987), 0 for a point alone in its cluster."""
    x = np.asarray(x, dtype=float)
    d = np.sqrt(_squared_distances(x, x))
    clusters = np.unique(labels)
    if len(clusters) < 2:
        return 0.0
    means = np.column_stack([d[:, labels == c].sum(1) for c in clusters])
    sizes = np.array([(labels == c).sum() for c in clusters], dtype=float)
    own = np.searchsorted(clusters, labels)
    rows = np.arange(len(x))
    own_size = sizes[own]
    a = np.where(own_size > 1, means[rows, own] / np.maximum(own_size - 1, 1), 0.0)
    other = means / sizes[None, :]
    other[rows, own] = np.inf
    b = other.min(1)
    s = np.where(own_size > 1, (b - a) / np.maximum(np.maximum(a, b), 1e-12), 0.0)
    return float(s.mean())


def choose_k(
    x: np.ndarray, k_range: tuple[int, int] = K_RANGE, *, seed: int = 0
) -> tuple[int, dict[int, float], dict[int, KMeansResult]]:
    """The k of `k_range` (as far as the points allow) with the best silhouette on a fixed sample
    of at most SILHOUETTE_SAMPLE points; ties go to the smaller k. Also the scores and fits."""
    n = len(x)
    low, high = k_range[0], min(k_range[1], n // MIN_PER_CLUSTER)
    if high < low:
        raise InputError(
            f"got {n} profiles; choosing k in {k_range[0]}..{k_range[1]} needs at least "
            f"{low * MIN_PER_CLUSTER} ({MIN_PER_CLUSTER} per cluster)",
            field="profiles",
        )
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(n, SILHOUETTE_SAMPLE, replace=False)) if n > SILHOUETTE_SAMPLE else np.arange(n)
    scores: dict[int, float] = {}
    fits: dict[int, KMeansResult] = {}
    for k in range(low, high + 1):
        fits[k] = kmeans(x, k, seed=seed)
        scores[k] = round(silhouette(x[sample], fits[k].labels[sample]), 6)
    best = max(scores, key=lambda k: (scores[k], -k))
    return best, scores, fits


# ---------------------------------------------------------------- descriptions


@dataclass(frozen=True)
class ClusterSummary:
    """A cluster's (or the population's) figures: means over its persons, AOV as revenue / orders,
    recency as the median over buyers, shares per channel (of engagement) and category."""

    persons: int
    buyers_share: float
    revenue: float
    orders: float
    orders_per_buyer: float
    average_order_value: float | None
    recency_days: float | None
    log_recency: float | None
    clv_12m: float | None
    store_order_share: float | None
    both_channels_share: float
    engagement: float
    email_consent_rate: float
    channel_shares: dict[str, float]
    category_shares: dict[str, float]
    median_age: float | None = None  # over those who state a birthday
    age_known_share: float = 0.0
    female_share: float | None = None  # of those who state a gender (female or male)
    gender_known_share: float = 0.0


def summarize(features: ProfileFeatures, mask: np.ndarray) -> ClusterSummary:
    """The figures of the persons in `mask`."""
    raw = features.raw
    buyers = mask & features.buyer
    n, b = int(mask.sum()), int(buyers.sum())
    orders, revenue = raw["orders"], raw["total_revenue"]

    def mean(values: np.ndarray) -> float | None:
        picked = values[~np.isnan(values)]
        return float(picked.mean()) if len(picked) else None

    ages = raw["age"][mask][~np.isnan(raw["age"][mask])] if "age" in raw else np.array([])
    genders = raw["female"][mask][~np.isnan(raw["female"][mask])] if "female" in raw else np.array([])
    store_share = raw["store_share"][buyers]
    both = ((store_share > 0) & (store_share < 1)).mean() if b else 0.0
    clv = mean(raw["clv_12m"][buyers]) if "clv_12m" in raw else None  # over the buyers, who have one
    return ClusterSummary(
        persons=n,
        buyers_share=b / n if n else 0.0,
        revenue=float(revenue[mask].mean()) if n else 0.0,
        orders=float(orders[mask].mean()) if n else 0.0,
        orders_per_buyer=float(orders[buyers].mean()) if b else 0.0,
        average_order_value=float(revenue[buyers].sum() / orders[buyers].sum()) if b else None,
        recency_days=float(np.median(raw["recency_days"][buyers])) if b else None,
        log_recency=float(np.log1p(np.maximum(raw["recency_days"][buyers], 0)).mean()) if b else None,
        clv_12m=clv,
        store_order_share=float((store_share * orders[buyers]).sum() / orders[buyers].sum()) if b else None,
        both_channels_share=float(both),
        engagement=float(np.log1p(raw["engagement"][mask]).mean()) if n else 0.0,
        email_consent_rate=float(raw["email_consent"][mask].mean()) if n else 0.0,
        channel_shares={c: float(raw[f"channel:{c}"][mask].mean()) if n else 0.0 for c in features.channels},
        category_shares={c: float(raw[f"category:{c}"][mask].mean()) if n else 0.0 for c in features.categories},
        median_age=float(np.median(ages)) if len(ages) else None,
        age_known_share=len(ages) / n if n else 0.0,
        female_share=float(genders.mean()) if len(genders) else None,
        gender_known_share=len(genders) / n if n else 0.0,
    )


@dataclass(frozen=True)
class Trait:
    """One thing a marketer would say about a cluster, with the target KPIs it suggests."""

    phrase: str
    kpis: tuple[str, ...] = ()
    rank: int = 2
    """Names take the three traits of lowest rank: 1 buying status, 2 figures, 3 channels and
    categories, 4 overall engagement."""
    rule_trait: str | None = None
    """A phrase about who the members are (their age, their gender) rather than what they do enters the
    persona's name only when the persona's rule states it on this profile column (a name must not
    promise what the segment does not select)."""


def describe(cluster: ClusterSummary, population: ClusterSummary, features: ProfileFeatures) -> list[Trait]:
    """The cluster's traits, compared with the population, in a fixed reading order: buying status
    and where they buy, basket, frequency, value, recency, engagement, e-mail, channel, category."""
    traits: list[Trait] = []
    if cluster.buyers_share < 0.2:
        traits.append(Trait("not buying yet", ("conversion_rate", "new_customers"), 1))
    else:
        traits.extend(_buying(cluster, population, features))
    traits.extend(_demographics(cluster, population))
    engagement, barely = _engagement(cluster, population, features)
    traits.extend(engagement)
    traits.extend(_email(cluster, population, barely))
    traits.extend(_channel(cluster, population, store_first=any(t.phrase == "store-first" for t in traits)))
    traits.extend(_category(cluster, population))
    return traits


def _buying(cluster: ClusterSummary, population: ClusterSummary, features: ProfileFeatures) -> list[Trait]:
    """For a cluster that buys: where they buy, basket, frequency, value and recency."""
    return [
        trait
        for trait in (
            _where_they_buy(cluster),
            _basket(cluster, population),
            _frequency(cluster, population),
            _value(cluster, population),
            _recency(cluster, population, features),
        )
        if trait is not None
    ]


def _where_they_buy(cluster: ClusterSummary) -> Trait | None:
    share = cluster.store_order_share
    if share is not None and share >= 0.7:
        return Trait("store-first", ("revenue_in_store",), 1)
    if share is not None and share <= 0.3:
        return Trait("online-first", ("revenue_online",), 1)
    if cluster.both_channels_share >= 0.4:
        return Trait("omnichannel", ("revenue_total",), 1)
    return None


def _basket(cluster: ClusterSummary, population: ClusterSummary) -> Trait | None:
    aov, pop_aov = cluster.average_order_value, population.average_order_value
    if aov is not None and pop_aov:
        if aov >= 1.3 * pop_aov:
            return Trait("high basket", ("customer_lifetime_value",))
        if aov <= 0.75 * pop_aov:
            return Trait("small basket", ("average_order_value",))
    return None


def _frequency(cluster: ClusterSummary, population: ClusterSummary) -> Trait | None:
    pop_freq = population.orders_per_buyer
    if pop_freq and cluster.orders_per_buyer >= 1.5 * pop_freq and cluster.orders_per_buyer >= 2:
        return Trait("frequent buyers", ("retention_rate",))
    if pop_freq and cluster.orders_per_buyer <= 0.7 * pop_freq:
        phrase = "one-off buyers" if cluster.orders_per_buyer <= 1.3 else "occasional buyers"
        return Trait(phrase, ("repeat_purchase_rate",))
    return None


def _value(cluster: ClusterSummary, population: ClusterSummary) -> Trait | None:
    buyer_revenue = cluster.revenue / cluster.buyers_share
    pop_buyer_revenue = population.revenue / population.buyers_share if population.buyers_share else 0.0
    if pop_buyer_revenue and buyer_revenue >= 2 * pop_buyer_revenue:
        return Trait("high value", ("customer_lifetime_value", "retention_rate"))
    if pop_buyer_revenue and buyer_revenue <= 0.5 * pop_buyer_revenue:
        return Trait("low value", ("average_order_value",))
    return None


def _recency(cluster: ClusterSummary, population: ClusterSummary, features: ProfileFeatures) -> Trait | None:
    """Lapsed, lapsing or recently active: the cluster's mean log-recency against the population's,
    in standard deviations of the buyers' log-recency."""
    recency = features.raw["recency_days"][features.buyer]
    spread = float(np.log1p(np.maximum(recency, 0)).std()) if len(recency) else 0.0
    if cluster.log_recency is None or population.log_recency is None or spread <= 1e-9:
        return None
    z = (cluster.log_recency - population.log_recency) / spread
    if z >= 1.2:
        return Trait("lapsed", ("retention_rate", "repeat_purchase_rate"))
    if z >= 0.5:
        return Trait("lapsing", ("retention_rate",))
    if z <= -0.5:
        return Trait("recently active")
    return None


def _engagement(
    cluster: ClusterSummary, population: ClusterSummary, features: ProfileFeatures
) -> tuple[list[Trait], bool]:
    """Barely or highly engaged overall, and whether the cluster is barely engaged."""
    engagement = np.log1p(features.raw["engagement"])
    spread = float(engagement.std())
    if spread <= 1e-9:
        return [], False
    z = (cluster.engagement - population.engagement) / spread
    if z <= -0.7:
        return [Trait("barely engaged", ("coupon_redemption_rate",), 4)], True
    if z >= 0.7:
        return [Trait("highly engaged", (), 4)], False
    return [], False


def _email(cluster: ClusterSummary, population: ClusterSummary, barely: bool) -> list[Trait]:
    email, pop_email = cluster.channel_shares.get("email"), population.channel_shares.get("email")
    if email is None or not pop_email or pop_email < 0.02:
        return []
    if email <= 0.5 * pop_email:
        return [Trait("low e-mail engagement", ("email_signups",), 3)]
    if email >= 1.5 * pop_email and email >= 0.1 and not barely:  # a high share of little is not engagement
        return [Trait("high e-mail engagement", (), 3)]
    return []


def _channel(cluster: ClusterSummary, population: ClusterSummary, store_first: bool) -> list[Trait]:
    """The channel (other than e-mail) with the highest lift over the population, if it is high;
    the store is not repeated for a store-first cluster."""
    lifts = [
        (share / population.channel_shares[c], c)
        for c, share in cluster.channel_shares.items()
        if c != "email" and share >= 0.15 and population.channel_shares[c] > 0
    ]
    if not lifts:
        return []
    lift, channel = max(lifts, key=lambda t: (t[0], t[1]))
    if lift >= 1.6 and not (channel == "store" and store_first):
        return [Trait(CHANNEL_PHRASES.get(channel, f"engaged on {channel}"), (), 3)]
    return []


def _category(cluster: ClusterSummary, population: ClusterSummary) -> list[Trait]:
    """The product category with the highest lift over the population, if it is high."""
    cats = [
        (share / population.category_shares[c], c)
        for c, share in cluster.category_shares.items()
        if share >= 0.1 and population.category_shares[c] > 0
    ]
    if not cats:
        return []
    lift, cat = max(cats, key=lambda t: (t[0], t[1]))
    return [Trait(f"into {cat}", (), 3)] if lift >= 1.5 else []


def _demographics(cluster: ClusterSummary, population: ClusterSummary) -> list[Trait]:
    """Age and gender, where enough of the cluster states them and it differs from the population."""
    out = []
    if cluster.female_share is not None and population.female_share is not None and cluster.gender_known_share >= 0.3:
        if cluster.female_share >= 0.7 and cluster.female_share - population.female_share >= 0.15:
            out.append(Trait("mostly women", (), 2, "gender"))
        elif cluster.female_share <= 0.3 and population.female_share - cluster.female_share >= 0.15:
            out.append(Trait("mostly men", (), 2, "gender"))
    if cluster.median_age is not None and population.median_age is not None and cluster.age_known_share >= 0.3:
        age = int(cluster.median_age)
        if abs(cluster.median_age - population.median_age) >= 7:
            band = "under 30" if age < 30 else "over 60" if age >= 60 else f"in their {age // 10 * 10}s"
            out.append(Trait(band, (), 2, "age"))
    return out


def preferred_channels(cluster: ClusterSummary, limit: int = 3) -> list[str]:
    """The cluster's channels by mean share of engagement: those with at least 10%, at most
    `limit`; else the single top channel, if any."""
    ranked = sorted(cluster.channel_shares.items(), key=lambda t: (-t[1], t[0]))
    picked = [c for c, share in ranked if share >= 0.1][:limit]
    return picked or [c for c, share in ranked[:1] if share > 0]


# ---------------------------------------------------------------- rules


def _nice(value: float, integer: bool) -> float | int:
    value = float(value)
    if integer:
        return round(value)
    if abs(value) < 10:
        return round(value, 1)
    digits = 1 - math.floor(math.log10(abs(value)))  # two significant figures
    rounded = round(value, digits)
    return int(rounded) if rounded == int(rounded) else rounded


def _numeric(columns: Columns, name: str, n: int) -> np.ndarray:
    return _floats(columns.get(name), n)


def condition_mask(condition: Mapping[str, Any], columns: Columns) -> np.ndarray:
    """Which persons a condition tree selects, for the kinds `learn_rule` writes (`all`, `any`,
    `not`, and trait conditions with eq, ne, gt, gte, lt, lte, between, in, not_in, contains,
    is_null); NULL compares as false, as in SQL."""
    n = profile_columns_count(columns)
    if "all" in condition:
        mask = np.ones(n, dtype=bool)
        for sub in condition["all"]:
            mask &= condition_mask(sub, columns)
        return mask
    if "any" in condition:
        mask = np.zeros(n, dtype=bool)
        for sub in condition["any"]:
            mask |= condition_mask(sub, columns)
        return mask
    if "not" in condition:
        return ~condition_mask(condition["not"], columns)
    if "trait" not in condition:
        raise InputError(f"got condition {dict(condition)!r}; expected all, any, not or trait", field="where")
    name = condition["trait"]
    ops = [k for k in condition if k != "trait"]
    if len(ops) != 1:
        raise InputError(f"trait {name!r}: expected exactly one operator, got {ops}", field="where")
    op, value = ops[0], condition[ops[0]]
    values = list(columns.get(name, [None] * n))
    if op == "is_null":
        return np.array([(v is None) == bool(value) for v in values], dtype=bool)
    if op == "contains":
        return np.array([v is not None and value in v for v in values], dtype=bool)
    if op in ("in", "not_in"):
        hit = np.array([v is not None and v in value for v in values], dtype=bool)
        return hit if op == "in" else np.array([v is not None for v in values]) & ~hit
    if op in ("eq", "ne") and (isinstance(value, bool) or not isinstance(value, int | float)):
        known = np.array([v is not None for v in values], dtype=bool)
        same = np.array([v == value for v in values], dtype=bool)
        return same if op == "eq" else known & ~same
    x = _numeric(columns, name, n)
    known = ~np.isnan(x)
    x = np.nan_to_num(x)
    if op == "between":
        low, high = value
        return known & (x >= low) & (x <= high)
    compare = {
        "eq": np.equal,
        "ne": np.not_equal,
        "gt": np.greater,
        "gte": np.greater_equal,
        "lt": np.less,
        "lte": np.less_equal,
    }.get(op)
    if compare is None:
        raise InputError(f"trait {name!r}: unknown operator {op!r}", field="where")
    return known & compare(x, value)


def _candidates(columns: Columns, rows: np.ndarray) -> list[tuple[dict[str, Any], np.ndarray]]:
    """Trait conditions worth trying, each with its mask over `rows`."""
    n = profile_columns_count(columns)
    out: list[tuple[dict[str, Any], np.ndarray]] = []
    for name in RULE_NUMERIC_COLUMNS:
        if name not in columns:
            continue
        x = _numeric(columns, name, n)[rows]
        known = x[~np.isnan(x)]
        if not len(known):
            continue
        integer = name in COUNT_COLUMNS
        thresholds = {_nice(q, integer) for q in np.quantile(known, np.linspace(0.05, 0.95, 19))}
        if integer and name != "recency_days":
            thresholds |= {0, 1}
        for t in sorted(thresholds):
            if integer and t == 0 and name != "recency_days":
                out.append(({"trait": name, "eq": 0}, ~np.isnan(x) & (np.nan_to_num(x) == 0)))
            elif t > known.min():
                out.append(({"trait": name, "gte": t}, ~np.isnan(x) & (np.nan_to_num(x) >= t)))
            if known.min() <= t < known.max() and not (integer and t == 0 and name != "recency_days"):
                out.append(({"trait": name, "lte": t}, ~np.isnan(x) & (np.nan_to_num(x) <= t)))
    if "preferred_channel" in columns:
        values = np.array([v if isinstance(v, str) else "" for v in columns["preferred_channel"]], dtype=object)[rows]
        for value in sorted({v for v in values if v}):
            out.append(({"trait": "preferred_channel", "eq": value}, values == value))
    if "consent_email" in columns:
        values = np.array([v if isinstance(v, bool) else None for v in columns["consent_email"]], dtype=object)[rows]
        for flag in (True, False):
            out.append(({"trait": "consent_email", "eq": flag}, values == flag))
    if "favourite_categories" in columns:
        lists = [columns["favourite_categories"][i] or () for i in rows]
        cats = sorted({c for cs in lists for c in cs if isinstance(c, str)})
        for cat in cats:
            out.append(
                ({"trait": "favourite_categories", "contains": cat}, np.array([cat in cs for cs in lists], dtype=bool))
            )
    return out


def _f1(selected: np.ndarray, target: np.ndarray) -> float:
    hits = int((selected & target).sum())
    total = int(selected.sum()) + int(target.sum())
    return 2 * hits / total if total else 0.0


def _merge(conditions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`gte a` and `lte b` on the same trait become `between [a, b]`; the order is kept."""
    out: list[dict[str, Any]] = []
    for cond in conditions:
        partner = next(
            (c for c in out if c["trait"] == cond["trait"] and {"gte", "lte"} == {*c, *cond} - {"trait"}), None
        )
        if partner is None:
            out.append(dict(cond))
            continue
        low = partner.get("gte", cond.get("gte"))
        high = partner.get("lte", cond.get("lte"))
        partner.clear()
        partner.update({"trait": cond["trait"], "between": [low, high]})
    return out


@dataclass(frozen=True)
class LearnedRule:
    """A `where` tree and its F1 against the cluster on the rows it was learned on."""

    where: dict[str, Any]
    f1: float


def learn_rule(
    columns: Columns,
    target: np.ndarray,
    *,
    rows: np.ndarray | None = None,
    candidates: list[tuple[dict[str, Any], np.ndarray]] | None = None,
) -> LearnedRule:
    """A conjunction of at most MAX_RULE_CONDITIONS trait conditions over profile columns, grown
    greedily, each step adding the condition that most raises the F1 score of the selection against
    `target` (the cluster's members among `rows`); stops when no condition adds 0.005."""
    n = profile_columns_count(columns)
    rows = np.arange(n) if rows is None else rows
    target = target[rows] if len(target) == n and len(rows) != n else target
    candidates = _candidates(columns, rows) if candidates is None else candidates
    selected = np.ones(len(rows), dtype=bool)
    chosen: list[dict[str, Any]] = []
    score = _f1(selected, target)
    for _ in range(MAX_RULE_CONDITIONS):
        best: tuple[float, int] | None = None
        for i, (cond, mask) in enumerate(candidates):
            if cond in chosen:
                continue
            f1 = _f1(selected & mask, target)
            if best is None or f1 > best[0] + 1e-12:
                best = (f1, i)
        if best is None or best[0] < score + 0.005:
            break
        score = best[0]
        chosen.append(candidates[best[1]][0])
        selected &= candidates[best[1]][1]
    conditions = _merge(chosen)
    where: dict[str, Any] = {"all": conditions} if conditions else {"all": []}
    return LearnedRule(where, round(score, 4))


# ---------------------------------------------------------------- the whole suggestion


@dataclass(frozen=True)
class Persona:
    """One suggested persona: a cluster in words, with its figures and a rule that approximates it."""

    id: str
    name: str
    traits: tuple[str, ...]
    description: str
    size: int
    share: float
    kpis: dict[str, float | None]
    """Figures: `revenue`, `orders` (means over all members), `buyers_share`, `store_order_share` and
    `email_consent_rate`, `orders_per_buyer`, `average_order_value`, `recency_days` and `clv_12m`
    (over the buyers); `kpi_basis` says over whom each is taken. Buyer figures are None when fewer than
    MIN_BUYERS_FOR_AVERAGES members have bought."""
    target_kpis: tuple[str, ...]
    preferred_channels: tuple[str, ...]
    where: dict[str, Any]
    rule_f1: float
    members: int = 0
    buyers: int = 0
    kpi_basis: dict[str, str] = field(default_factory=dict)
    """Per figure of `kpis`: "members" (all `members`) or "buyers" (the `buyers` who have ordered)."""


@dataclass(frozen=True)
class PersonaSuggestion:
    """The clustering (labels in profile order) and the personas, one per cluster, largest first."""

    k: int
    labels: np.ndarray
    personas: tuple[Persona, ...]
    silhouettes: dict[int, float] = field(default_factory=dict)
    features: tuple[str, ...] = ()


def _slug(text: str) -> str:
    """An id for a segment file: lower-case letters, digits and `_`, at most 60 characters."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:60].rstrip("_") or "persona"


def _money(x: float | None) -> str:
    return "-" if x is None else f"{x:,.2f}"


def _rule_traits(where: Mapping[str, Any]) -> set[str]:
    """The profile columns a condition tree states a condition on."""
    if "trait" in where:
        return {str(where["trait"])}
    found: set[str] = set()
    for key in ("all", "any"):
        for sub in where.get(key, []):
            found |= _rule_traits(sub)
    if "not" in where:
        found |= _rule_traits(where["not"])
    return found


def _sentence(traits: list[Trait], s: ClusterSummary, share: float) -> str:
    words = ", ".join(t.phrase for t in traits) or "close to the average customer"
    buyers = round(s.buyers_share * s.persons)
    figures = [f"{s.persons:,} persons ({share:.0%})", f"{buyers:,} of them ({s.buyers_share:.0%}) have bought"]
    if s.buyers_share >= 0.2 and buyers >= MIN_BUYERS_FOR_AVERAGES:
        figures.append(f"{s.orders_per_buyer:.1f} orders and {_money(s.revenue / s.buyers_share)} per buyer")
        figures.append(f"AOV {_money(s.average_order_value)} (over the {buyers:,} buyers)")
        if s.recency_days is not None:
            figures.append(f"last order {s.recency_days:.0f} days ago (median of the buyers)")
    return f"{words[0].upper()}{words[1:]}: {'; '.join(figures)}."


def _rounded(x: float | None, digits: int = 2) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), digits)


def suggest_personas(
    columns: Columns, *, k: int | None = None, seed: int = 0, k_range: tuple[int, int] = K_RANGE
) -> PersonaSuggestion:
    """Cluster the profiles in `columns` into k personas (k chosen by silhouette when not given) and
    describe each one: traits, figures, target KPIs, preferred channels and a rule."""
    n = profile_columns_count(columns)
    if n == 0:
        raise InputError("no profiles: run `omniweave profiles build` first", field="profiles")
    if k is not None:
        if k < 2:
            raise InputError(f"got k = {k}; expected at least 2", field="k")
        if n < k * MIN_PER_CLUSTER:
            raise InputError(
                f"got {n} profiles; {k} personas need at least {k * MIN_PER_CLUSTER} ({MIN_PER_CLUSTER} per persona)",
                field="k",
            )
    features = profile_features(columns)
    x = features.matrix
    distinct = len(np.unique(np.round(x, 9), axis=0))
    needed = k if k is not None else k_range[0]
    if distinct < needed:
        raise InputError(
            f"the {n} profiles have only {distinct} distinct behaviours; {needed} personas need at least {needed}",
            field="profiles",
        )
    if k is None:
        k, scores, fits = choose_k(x, k_range, seed=seed)
        fit = fits[k]
    else:
        fit, scores = kmeans(x, k, seed=seed), {}
    labels = fit.labels
    population = summarize(features, np.ones(n, dtype=bool))
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(n, RULE_SAMPLE, replace=False)) if n > RULE_SAMPLE else np.arange(n)
    candidates = _candidates(columns, rows)
    personas: list[Persona] = []
    names: set[str] = set()
    ids: set[str] = set()
    for j in range(k):
        mask = labels == j
        summary = summarize(features, mask)
        share = summary.persons / n
        traits = describe(summary, population, features)
        phrases = [t.phrase for t in traits]
        rule = learn_rule(columns, mask[rows], rows=rows, candidates=candidates)
        stated = _rule_traits(rule.where)
        nameable = [t.phrase for t in traits if t.rule_trait is None or t.rule_trait in stated]
        ranks = [t.rank for t in traits if t.rule_trait is None or t.rule_trait in stated]
        by_rank = sorted(range(len(nameable)), key=lambda i: (ranks[i], i))
        name = ", ".join(nameable[i] for i in sorted(by_rank[:3])) or "average customers"
        if name[0].upper() + name[1:] in names:
            name = ", ".join(nameable) or name
        name = name[0].upper() + name[1:]
        base, i = name, 2
        while name in names:
            name, i = f"{base} ({i})", i + 1
        names.add(name)
        ident, base_id, i = _slug(name), _slug(name), 2
        while ident in ids:
            ident, i = f"{base_id}_{i}", i + 1
        ids.add(ident)
        target_kpis = tuple(dict.fromkeys(kpi for t in traits for kpi in t.kpis))[:3] or (
            "repeat_purchase_rate",
            "customer_lifetime_value",
        )
        buyers = int((mask & features.buyer).sum())
        kpis = {
            "revenue": _rounded(summary.revenue),
            "orders": _rounded(summary.orders),
            "orders_per_buyer": _rounded(summary.orders_per_buyer),
            "average_order_value": _rounded(summary.average_order_value),
            "recency_days": _rounded(summary.recency_days, 1),
            "buyers_share": _rounded(summary.buyers_share, 4),
            "store_order_share": _rounded(summary.store_order_share, 4),
            "email_consent_rate": _rounded(summary.email_consent_rate, 4),
        }
        if "clv_12m" in features.raw:
            kpis["clv_12m"] = _rounded(summary.clv_12m)
        if buyers < MIN_BUYERS_FOR_AVERAGES:
            kpis.update({key: None for key in BUYER_KPIS if key in kpis})
        basis = {key: "buyers" if key in BUYER_KPIS else "members" for key in kpis}
        personas.append(
            Persona(
                ident,
                name,
                tuple(phrases),
                _sentence(traits, summary, share),
                summary.persons,
                round(share, 4),
                kpis,
                target_kpis,
                tuple(preferred_channels(summary)),
                rule.where,
                rule.f1,
                summary.persons,
                buyers,
                basis,
            )
        )
    return PersonaSuggestion(k, labels, tuple(personas), scores, features.names)
