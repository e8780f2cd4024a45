"""Multi-touch attribution on aggregated journeys (the ChannelAttribution paths format).

Pure functions over a `PathsTable`: heuristic models (first touch, last touch, linear,
position-based, time decay), a first-order Markov chain with exact removal effects (the
absorbing chain is solved, never simulated) and Shapley values. Every model returns an
`Attribution` whose credits sum to the table's total conversions and value.
Formulas and conventions: docs/attribution.md.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from omniweave.errors import InputError

PATH_SEPARATOR = ">"
REQUIRED_COLUMNS = ("path", "total_conversions", "total_conversion_value", "total_null")
HEURISTIC_MODELS = ("first_touch", "last_touch", "linear", "position_based", "time_decay")
MODELS = (*HEURISTIC_MODELS, "markov", "shapley")
ALLOCATIONS = ("global", "per_journey")


@dataclass(frozen=True)
class PathRow:
    """One aggregated journey: the ordered channels and how many journeys ended how."""

    channels: tuple[str, ...]
    conversions: float
    value: float
    nulls: float


@dataclass(frozen=True)
class PathsTable:
    """Aggregated journeys; `channels` lists every channel in order of first appearance."""

    rows: tuple[PathRow, ...]

    @property
    def channels(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(ch for row in self.rows for ch in row.channels))

    @property
    def total_conversions(self) -> float:
        return math.fsum(row.conversions for row in self.rows)

    @property
    def total_value(self) -> float:
        return math.fsum(row.value for row in self.rows)


@dataclass(frozen=True)
class Attribution:
    """Credited conversions and value per channel for one model (every channel of the table listed)."""

    model: str
    conversions: dict[str, float]
    value: dict[str, float]
    removal_effects: dict[str, float] | None = field(default=None)


def parse_path(text: str, *, record: int | str | None = None) -> tuple[str, ...]:
    """Split `a > b > c` into channel names, rejecting an empty path or an empty channel name."""
    if not text or not text.strip():
        raise InputError("the path is empty; expected channels joined by ' > '", field="path", record=record)
    parts = [part.strip() for part in text.split(PATH_SEPARATOR)]
    for position, part in enumerate(parts, 1):
        if not part:
            raise InputError(f"channel {position} of {text!r} is empty; expected a channel name between "
                             f"each ' > '", field="path", record=record)
    return tuple(parts)


def _number(raw: object, *, column: str, record: int) -> float:
    text = "" if raw is None else str(raw).strip()
    try:
        number = float(text)
    except ValueError:
        raise InputError(f"got {text!r}; expected a non-negative number", field=column, record=record) from None
    if not math.isfinite(number) or number < 0:
        raise InputError(f"got {text!r}; expected a non-negative number", field=column, record=record)
    return number


def paths_from_records(records: Iterable[Mapping[str, object]], columns: Iterable[str]) -> PathsTable:
    """Validate rows of the paths format (record numbers count data rows from 1, header excluded)."""
    present = set(columns)
    missing = [name for name in REQUIRED_COLUMNS if name not in present]
    if missing:
        raise InputError(f"missing column(s) {', '.join(missing)}; got columns {sorted(present)}, "
                         f"expected {', '.join(REQUIRED_COLUMNS)}", field=missing[0])
    rows = []
    for number, record in enumerate(records, 1):
        channels = parse_path(str(record.get("path") or ""), record=number)
        rows.append(PathRow(
            channels=channels,
            conversions=_number(record.get("total_conversions"), column="total_conversions", record=number),
            value=_number(record.get("total_conversion_value"), column="total_conversion_value", record=number),
            nulls=_number(record.get("total_null"), column="total_null", record=number),
        ))
    return PathsTable(tuple(rows))


def read_paths_csv(path: Path | str) -> PathsTable:
    """Read a ChannelAttribution-style paths CSV (`path`, `total_conversions`, `total_conversion_value`, `total_null`)."""
    file = Path(path)
    try:
        handle = file.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise InputError(f"cannot read the paths file {str(file)!r}: {exc.strerror}") from None
    with handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None:
            raise InputError(f"the paths file {str(file)!r} is empty; expected a header with "
                             f"{', '.join(REQUIRED_COLUMNS)}")
        return paths_from_records(reader, [name.strip() for name in reader.fieldnames])


# ---------------------------------------------------------------- heuristic models


def _first(n: int) -> np.ndarray:
    weights = np.zeros(n)
    weights[0] = 1.0
    return weights


def _last(n: int) -> np.ndarray:
    weights = np.zeros(n)
    weights[-1] = 1.0
    return weights


def _linear(n: int) -> np.ndarray:
    return np.full(n, 1.0 / n)


def _position_based(n: int) -> np.ndarray:
    if n <= 2:
        return np.full(n, 1.0 / n)
    weights = np.full(n, 0.2 / (n - 2))
    weights[0] = weights[-1] = 0.4
    return weights


def _time_decay(half_life: float) -> Callable[[int], np.ndarray]:
    def weights(n: int) -> np.ndarray:
        steps_before_conversion = np.arange(n - 1, -1, -1, dtype=float)
        raw = 0.5 ** (steps_before_conversion / half_life)
        return raw / raw.sum()

    return weights


def _credit_by_touch(table: PathsTable, model: str, weights_for: Callable[[int], np.ndarray]) -> Attribution:
    conversions = dict.fromkeys(table.channels, 0.0)
    value = dict.fromkeys(table.channels, 0.0)
    for row in table.rows:
        if row.conversions == 0 and row.value == 0:
            continue
        for channel, weight in zip(row.channels, weights_for(len(row.channels)), strict=True):
            conversions[channel] += float(weight) * row.conversions
            value[channel] += float(weight) * row.value
    return Attribution(model, conversions, value)


def heuristic(table: PathsTable, model: str, *, half_life: float = 1.0) -> Attribution:
    """A rule-based model; `half_life` (in touches) is used by time_decay only."""
    if model == "time_decay" and not (math.isfinite(half_life) and half_life > 0):
        raise InputError(f"got {half_life}; expected a positive number of touches", field="half_life")
    rules: dict[str, Callable[[int], np.ndarray]] = {
        "first_touch": _first, "last_touch": _last, "linear": _linear,
        "position_based": _position_based, "time_decay": _time_decay(half_life),
    }
    if model not in rules:
        raise InputError(f"got {model!r}; expected one of {', '.join(HEURISTIC_MODELS)}", field="model")
    return _credit_by_touch(table, model, rules[model])


# ---------------------------------------------------------------- Markov chain


@dataclass(frozen=True)
class MarkovChain:
    """First-order transition counts. Transient states: 0 = start, 1..m = channels."""

    channels: tuple[str, ...]
    between: np.ndarray  # (m+1, m+1) counts among transient states
    to_conversion: np.ndarray  # (m+1,) counts into the conversion state
    to_null: np.ndarray  # (m+1,) counts into the null state


def markov_chain(table: PathsTable) -> MarkovChain:
    """Count transitions start → c1 → … → ck → conversion/null, weighted by the journeys of each row.

    Repeated consecutive channels are kept as self-loops (ChannelAttribution's default).
    """
    active = [row for row in table.rows if row.conversions + row.nulls > 0]
    channels = tuple(dict.fromkeys(ch for row in active for ch in row.channels))
    index = {ch: i + 1 for i, ch in enumerate(channels)}
    size = len(channels) + 1
    between = np.zeros((size, size))
    to_conversion = np.zeros(size)
    to_null = np.zeros(size)
    for row in active:
        journeys = row.conversions + row.nulls
        states = [0, *(index[ch] for ch in row.channels)]
        np.add.at(between, (states[:-1], states[1:]), journeys)
        to_conversion[states[-1]] += row.conversions
        to_null[states[-1]] += row.nulls
    return MarkovChain(channels, between, to_conversion, to_null)


def conversion_probability(chain: MarkovChain, removed: str | None = None) -> float:
    """P(reaching conversion from start), solving (I - Q) x = r; a removed channel's inflow goes to null."""
    keep = np.ones(len(chain.channels) + 1, dtype=bool)
    if removed is not None:
        keep[chain.channels.index(removed) + 1] = False
    outflow = chain.between.sum(axis=1) + chain.to_conversion + chain.to_null
    if outflow[0] == 0:
        return 0.0
    q = chain.between[np.ix_(keep, keep)] / outflow[keep, None]
    r = chain.to_conversion[keep] / outflow[keep]
    x = np.linalg.solve(np.eye(int(keep.sum())) - q, r)
    return float(x[0])


def removal_effects(table: PathsTable) -> dict[str, float]:
    """Removal effect per channel: 1 - P(conversion without the channel) / P(conversion)."""
    chain = markov_chain(table)
    base = conversion_probability(chain)
    effects = dict.fromkeys(table.channels, 0.0)
    if base <= 0:
        return effects
    for channel in chain.channels:
        effects[channel] = 1.0 - conversion_probability(chain, removed=channel) / base
    return effects


def markov(table: PathsTable, *, allocation: str = "global") -> Attribution:
    """Markov attribution; `global` splits the totals by removal effect, `per_journey` splits each path."""
    if allocation not in ALLOCATIONS:
        raise InputError(f"got {allocation!r}; expected one of {', '.join(ALLOCATIONS)}", field="allocation")
    effects = removal_effects(table)
    conversions = dict.fromkeys(table.channels, 0.0)
    value = dict.fromkeys(table.channels, 0.0)
    if allocation == "global":
        total_effect = math.fsum(effects.values())
        if total_effect > 0:
            for channel, effect in effects.items():
                conversions[channel] = table.total_conversions * effect / total_effect
                value[channel] = table.total_value * effect / total_effect
    else:
        for row in table.rows:
            distinct = tuple(dict.fromkeys(row.channels))
            weights = np.array([effects[ch] for ch in distinct])
            if weights.sum() <= 0:  # a path with value but no journeys: fall back to an equal split
                weights = np.ones(len(distinct))
            weights = weights / weights.sum()
            for channel, weight in zip(distinct, weights, strict=True):
                conversions[channel] += float(weight) * row.conversions
                value[channel] += float(weight) * row.value
    return Attribution("markov", conversions, value, removal_effects=effects)


# ---------------------------------------------------------------- Shapley values


def shapley(table: PathsTable) -> Attribution:
    """Shapley values of the game v(S) = conversions (value) of paths whose channel set is a subset of S.

    v is a sum of unanimity games, one per channel set T that occurs, with Harsanyi dividend
    w_T (its conversions); the Shapley value of a unanimity game gives w_T / |T| to each member,
    so the exact values need no enumeration of the 2^n coalitions (docs/attribution.md).
    """
    conversions = dict.fromkeys(table.channels, 0.0)
    value = dict.fromkeys(table.channels, 0.0)
    for row in table.rows:
        members = frozenset(row.channels)
        for channel in members:
            conversions[channel] += row.conversions / len(members)
            value[channel] += row.value / len(members)
    return Attribution("shapley", conversions, value)


def attribute(table: PathsTable, model: str, *, half_life: float = 1.0, allocation: str = "global") -> Attribution:
    """Run one model by name (one of MODELS)."""
    if model == "markov":
        return markov(table, allocation=allocation)
    if model == "shapley":
        return shapley(table)
    if model in HEURISTIC_MODELS:
        return heuristic(table, model, half_life=half_life)
    raise InputError(f"got {model!r}; expected one of {', '.join(MODELS)}", field="model")
