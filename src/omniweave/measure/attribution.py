"""Multi-touch attribution on aggregated journeys (the ChannelAttribution paths format).

Pure functions over a `PathsTable`: heuristic models (first touch, last touch, linear,
position-based, time decay), a first-order Markov chain with exact removal effects (the
absorbing chain is solved, never simulated) and Shapley values. Every model returns an
`Attribution` whose credits sum to the table's total conversions and value.
Markov value credits follow ChannelAttribution's convention by default: the removal effects of
the value-weighted chain (`value_effects="value"`); `value_effects="conversion"` splits value by
the conversion removal effects instead.
Formulas and conventions: docs/attribution.md.

scipy is imported only where a sparse solve is needed (higher-order chains), so that reading a
paths file and attributing it starts fast.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from omniweave.errors import InputError

PATH_SEPARATOR = ">"
REQUIRED_COLUMNS = ("path", "total_conversions", "total_conversion_value", "total_null")
HEURISTIC_MODELS = ("first_touch", "last_touch", "linear", "position_based", "time_decay")
MODELS = (*HEURISTIC_MODELS, "markov", "shapley")
ALLOCATIONS = ("global", "per_journey")
VALUE_EFFECTS = ("value", "conversion")
"""How Markov splits value: by the removal effects of the value-weighted chain (ChannelAttribution's
convention, the default) or by the conversion removal effects."""
DEFAULT_LOOKBACK_DAYS = 30.0
"""Journeys built from the event log: days before an order in which touches count."""
DEFAULT_DEDUP_MINUTES = 30.0
"""Journeys built from the event log: a repeat touch of one label this soon after the last counts once."""
DENSE_SOLVE_STATES = 1000  # above this many states (higher-order chains) the sparse LU is faster


@dataclass(frozen=True)
class PathRow:
    """One aggregated journey: the ordered channels and how many journeys ended how."""

    channels: tuple[str, ...]
    conversions: float
    value: float
    nulls: float


@dataclass(frozen=True)
class Touches:
    """Flat encoding of a PathsTable: per touch its channel index, row, position and path length;
    per row its conversions, value and nulls."""

    channel: np.ndarray
    row: np.ndarray
    position: np.ndarray
    length: np.ndarray
    conversions: np.ndarray
    value: np.ndarray
    nulls: np.ndarray


class PathsTable:
    """Aggregated journeys; `channels` lists every channel in order of first appearance.

    Built from rows (`PathsTable(rows)`), or from the flat encoding the models use
    (`PathsTable.encoded`, as the fast paths-file reader does), in which case the rows are only
    made if someone asks for them. Treat it as immutable."""

    def __init__(self, rows: Iterable[PathRow] = ()) -> None:
        self.__dict__["rows"] = tuple(rows)

    @classmethod
    def encoded(cls, channels: tuple[str, ...], touches: Touches) -> PathsTable:
        """A table from its flat encoding: touches in row order, positions from 0 within each row."""
        table = cls.__new__(cls)
        table.__dict__.update(channels=channels, touches=touches)
        return table

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PathsTable) and self.rows == other.rows

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"PathsTable({len(self.touches.conversions)} paths, {len(self.channels)} channels)"

    @cached_property
    def rows(self) -> tuple[PathRow, ...]:
        t = self.touches
        names = np.array(self.channels + ("",), dtype=object)[t.channel]
        cuts = np.flatnonzero(np.diff(t.row)) + 1
        paths = [tuple(part.tolist()) for part in np.split(names, cuts)] if len(names) else []
        return tuple(
            PathRow(path, c, v, n)
            for path, c, v, n in zip(paths, t.conversions.tolist(), t.value.tolist(), t.nulls.tolist(), strict=True)
        )

    @cached_property
    def channels(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(ch for row in self.rows for ch in row.channels))

    @cached_property
    def touches(self) -> Touches:
        """The table as flat arrays, one entry per touch, for the vectorised models."""
        index = {ch: i for i, ch in enumerate(self.channels)}
        lengths = np.fromiter((len(row.channels) for row in self.rows), dtype=np.int64, count=len(self.rows))
        channel = np.fromiter(
            (index[ch] for row in self.rows for ch in row.channels), dtype=np.int64, count=int(lengths.sum())
        )
        row = np.repeat(np.arange(len(self.rows)), lengths)
        starts = np.cumsum(lengths) - lengths
        position = np.arange(len(channel)) - starts[row]
        return Touches(
            channel=channel,
            row=row,
            position=position,
            length=lengths[row],
            conversions=np.array([r.conversions for r in self.rows], dtype=float),
            value=np.array([r.value for r in self.rows], dtype=float),
            nulls=np.array([r.nulls for r in self.rows], dtype=float),
        )

    @property
    def size(self) -> int:
        """How many rows (distinct paths, once aggregated)."""
        return len(self.touches.conversions)

    @cached_property
    def total_conversions(self) -> float:
        return math.fsum(self.touches.conversions.tolist())

    @cached_property
    def total_value(self) -> float:
        return math.fsum(self.touches.value.tolist())

    @cached_property
    def total_null(self) -> float:
        return math.fsum(self.touches.nulls.tolist())


@dataclass(frozen=True)
class Attribution:
    """Credited conversions and value per channel for one model (every channel of the table listed)."""

    model: str
    conversions: dict[str, float]
    value: dict[str, float]
    removal_effects: dict[str, float] | None = field(default=None)
    value_removal_effects: dict[str, float] | None = field(default=None)


def parse_path(text: str, *, record: int | str | None = None) -> tuple[str, ...]:
    """Split `a > b > c` into channel names, rejecting an empty path or an empty channel name."""
    if not text or not text.strip():
        raise InputError("the path is empty; expected channels joined by ' > '", field="path", record=record)
    parts = [part.strip() for part in text.split(PATH_SEPARATOR)]
    for position, part in enumerate(parts, 1):
        if not part:
            raise InputError(
                f"channel {position} of {text!r} is empty; expected a channel name between each ' > '",
                field="path",
                record=record,
            )
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


def _check_columns(columns: Iterable[str]) -> None:
    present = set(columns)
    missing = [name for name in REQUIRED_COLUMNS if name not in present]
    if missing:
        raise InputError(
            f"missing column(s) {', '.join(missing)}; got columns {sorted(present)}, "
            f"expected {', '.join(REQUIRED_COLUMNS)}",
            field=missing[0],
        )


def path_row(number: int, path: object, conversions: object, value: object, nulls: object) -> PathRow:
    """One validated row of the paths format; `number` counts data rows from 1 (for the errors)."""
    return PathRow(
        channels=parse_path("" if path is None else str(path), record=number),
        conversions=_number(conversions, column="total_conversions", record=number),
        value=_number(value, column="total_conversion_value", record=number),
        nulls=_number(nulls, column="total_null", record=number),
    )


def paths_from_records(records: Iterable[Mapping[str, object]], columns: Iterable[str]) -> PathsTable:
    """Validate rows of the paths format (record numbers count data rows from 1, header excluded)."""
    _check_columns(columns)
    return PathsTable(
        tuple(
            path_row(
                number,
                record.get("path"),
                record.get("total_conversions"),
                record.get("total_conversion_value"),
                record.get("total_null"),
            )
            for number, record in enumerate(records, 1)
        )
    )


def read_paths_csv(path: Path | str) -> PathsTable:
    """Read a ChannelAttribution-style paths CSV (`path`, `total_conversions`, `total_conversion_value`,
    `total_null`; other columns ignored), one row per journey or per distinct path, row by row.

    Every problem is an InputError naming the record (data rows from 1, blank lines skipped), the
    field and what was expected. This is the reference reader: the service's fast reader
    (measure/service/attribution.py) aggregates in DuckDB and falls back to it for any file it
    cannot take whole, so both accept the same files and this one words the errors."""
    file = Path(path)
    try:
        handle = file.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise InputError(f"cannot read the paths file {str(file)!r}: {exc.strerror}") from None
    with handle:
        try:
            return _read_rows(csv.reader(handle), file)
        except UnicodeDecodeError:
            line = _first_undecodable_line(file)
            raise InputError(
                f"line {line} of {str(file)!r} is not UTF-8 text; expected a CSV file encoded in UTF-8"
            ) from None
        except csv.Error as exc:
            raise InputError(f"{str(file)!r} is not a readable CSV file: {exc}") from None


def _read_rows(reader: Iterator[list[str]], file: Path) -> PathsTable:
    header = next(reader, None)
    if header is None:
        raise InputError(f"the paths file {str(file)!r} is empty; expected a header with {', '.join(REQUIRED_COLUMNS)}")
    names = [name.strip() for name in header]
    _check_columns(names)
    where = {name: i for i, name in enumerate(names)}  # the last of a repeated name, as csv.DictReader
    at = [where[name] for name in REQUIRED_COLUMNS]
    rows = []
    number = 0
    for fields in reader:
        if not fields:
            continue  # a blank line
        number += 1
        if len(fields) != len(names):
            _wrong_width(number, fields, names)
        rows.append(path_row(number, *(fields[i] for i in at)))
    return PathsTable(tuple(rows))


def _wrong_width(number: int, fields: list[str], names: list[str]) -> None:
    if len(fields) < len(names):
        missing = names[len(fields) :]
        raise InputError(
            f"the row has {len(fields)} field(s), the header {len(names)}; no value for {', '.join(missing)}",
            field=missing[0],
            record=number,
        )
    raise InputError(
        f"the row has {len(fields)} fields, the header {len(names)} ({', '.join(names)}); "
        f"a path or number containing a comma must be in double quotes",
        field="path",
        record=number,
    )


def _first_undecodable_line(file: Path) -> int:
    with file.open("rb") as raw:
        for line, data in enumerate(raw, 1):
            try:
                data.decode("utf-8")
            except UnicodeDecodeError:
                return line
    return 0


# ---------------------------------------------------------------- heuristic models


def _touch_weights(t: Touches, model: str, half_life: float) -> np.ndarray:
    """Each touch's share of its path (shares of one path sum to 1)."""
    n, i = t.length, t.position
    if model == "first_touch":
        return (i == 0).astype(float)
    if model == "last_touch":
        return (i == n - 1).astype(float)
    if model == "linear":
        return 1.0 / n
    if model == "position_based":
        middle = np.where(n > 2, 0.2 / np.maximum(n - 2, 1), 0.0)
        ends = np.where(n > 2, 0.4, 1.0 / n)
        return np.where((i == 0) | (i == n - 1), ends, middle)
    raw = 0.5 ** ((n - 1 - i) / half_life)  # time_decay: touches before the conversion
    return raw / np.bincount(t.row, weights=raw, minlength=len(t.conversions))[t.row]


def _credits(
    table: PathsTable,
    model: str,
    per_touch_conversions: np.ndarray,
    per_touch_value: np.ndarray,
    channel: np.ndarray,
    removal: dict[str, float] | None = None,
) -> Attribution:
    size = len(table.channels)
    conversions = np.bincount(channel, weights=per_touch_conversions, minlength=size)
    value = np.bincount(channel, weights=per_touch_value, minlength=size)
    return Attribution(
        model,
        dict(zip(table.channels, conversions.tolist(), strict=True)),
        dict(zip(table.channels, value.tolist(), strict=True)),
        removal_effects=removal,
    )


def heuristic(table: PathsTable, model: str, *, half_life: float = 1.0) -> Attribution:
    """A rule-based model; `half_life` (in touches) is used by time_decay only."""
    if model == "time_decay" and not (math.isfinite(half_life) and half_life > 0):
        raise InputError(f"got {half_life}; expected a positive number of touches", field="half_life")
    if model not in HEURISTIC_MODELS:
        raise InputError(f"got {model!r}; expected one of {', '.join(HEURISTIC_MODELS)}", field="model")
    t = table.touches
    weights = _touch_weights(t, model, half_life)
    return _credits(table, model, weights * t.conversions[t.row], weights * t.value[t.row], t.channel)


# ---------------------------------------------------------------- Markov chain


@dataclass(frozen=True)
class MarkovChain:
    """Transition counts. Transient states: 0 = start, 1..m = `states[0..m-1]`, each the tuple of the
    last `order` channels (fewer at the start of a path); first order: one channel per state.

    `between` is a dense numpy array for a first-order chain and a scipy CSR matrix above that.
    `conversion_value` is the value of the converting journeys that end in each state (the rows with
    conversions; ChannelAttribution draws a conversion's value from the same per-state amounts)."""

    states: tuple[tuple[str, ...], ...]
    between: Any  # (m+1, m+1) counts among transient states: np.ndarray or scipy.sparse.csr_matrix
    to_conversion: np.ndarray  # (m+1,) counts into the conversion state
    to_null: np.ndarray  # (m+1,) counts into the null state
    conversion_value: np.ndarray  # (m+1,) value of the conversions from each state


def markov_chain(table: PathsTable, order: int = 1) -> MarkovChain:
    """Count transitions start → c1 → … → ck → conversion/null, weighted by the journeys of each row.

    Repeated consecutive channels are kept as self-loops (ChannelAttribution's default). Order k > 1:
    the state after a touch is the tuple of the last k channels (fewer in a path's first k - 1 touches).
    """
    if order != 1:
        return _higher_order_chain(table, order)
    t = table.touches
    journeys = t.conversions + t.nulls
    active_touch = journeys[t.row] > 0
    in_chain = np.zeros(len(table.channels), dtype=bool)
    in_chain[t.channel[active_touch]] = True
    state_of = np.cumsum(in_chain)  # channel index → state (1..m) for channels in the chain
    channels = tuple(ch for ch, kept in zip(table.channels, in_chain, strict=True) if kept)
    size = len(channels) + 1
    here = np.where(t.position == 0, 0, np.roll(state_of[t.channel], 1))
    there = state_of[t.channel]
    between = np.bincount(
        (here * size + there)[active_touch], weights=journeys[t.row][active_touch], minlength=size * size
    ).reshape(size, size)
    last = active_touch & (t.position == t.length - 1)
    to_conversion = np.bincount(there[last], weights=t.conversions[t.row][last], minlength=size)
    to_null = np.bincount(there[last], weights=t.nulls[t.row][last], minlength=size)
    converting = last & (t.conversions[t.row] > 0)
    conversion_value = np.bincount(there[converting], weights=t.value[t.row][converting], minlength=size)
    return MarkovChain(tuple((ch,) for ch in channels), between, to_conversion, to_null, conversion_value)


def _higher_order_chain(table: PathsTable, order: int) -> MarkovChain:
    from scipy import sparse

    index: dict[tuple[str, ...], int] = {}
    edges: dict[tuple[int, int], float] = {}
    ends: list[tuple[int, float, float, float]] = []
    for row in table.rows:
        journeys = row.conversions + row.nulls
        if journeys <= 0:
            continue
        here = 0
        for i in range(len(row.channels)):
            there = index.setdefault(row.channels[max(0, i + 1 - order) : i + 1], len(index) + 1)
            edges[here, there] = edges.get((here, there), 0.0) + journeys
            here = there
        ends.append((here, row.conversions, row.nulls, row.value if row.conversions > 0 else 0.0))
    size = len(index) + 1
    pairs = np.array(list(edges), dtype=np.int64).reshape(-1, 2)
    between = sparse.csr_matrix(
        (np.array(list(edges.values()), dtype=float), (pairs[:, 0], pairs[:, 1])), shape=(size, size)
    )
    to_conversion = np.zeros(size)
    to_null = np.zeros(size)
    conversion_value = np.zeros(size)
    for state, conversions, nulls, value in ends:
        to_conversion[state] += conversions
        to_null[state] += nulls
        conversion_value[state] += value
    return MarkovChain(tuple(index), between, to_conversion, to_null, conversion_value)


def conversion_probability(
    chain: MarkovChain, removed: str | None = None, *, dense_limit: int = DENSE_SOLVE_STATES
) -> float:
    """P(reaching conversion from start), solving (I - Q) x = r; the inflow of every state holding
    the removed channel goes to null."""
    return _absorbed(chain, chain.to_conversion, removed, dense_limit)


def expected_value(chain: MarkovChain, removed: str | None = None, *, dense_limit: int = DENSE_SOLVE_STATES) -> float:
    """Expected conversion value of a journey from start in the value-weighted chain: (I - Q) y = r_v,
    where r_v of a state is the value of the conversions from it over its outflow (P(conversion from
    the state) × its mean value per conversion); removal as in `conversion_probability`."""
    return _absorbed(chain, chain.conversion_value, removed, dense_limit)


def _absorbed(chain: MarkovChain, reward: np.ndarray, removed: str | None, dense_limit: int) -> float:
    keep = np.ones(len(chain.states) + 1, dtype=bool)
    if removed is not None:
        keep[1:] = [removed not in state for state in chain.states]
    outflow = np.asarray(chain.between.sum(axis=1)).ravel() + chain.to_conversion + chain.to_null
    if outflow[0] == 0:
        return 0.0
    kept = np.flatnonzero(keep)
    r = reward[kept] / outflow[kept]
    if isinstance(chain.between, np.ndarray):
        q = chain.between[np.ix_(kept, kept)] / outflow[kept][:, None]
        return float(np.linalg.solve(np.eye(len(kept)) - q, r)[0])
    from scipy import sparse
    from scipy.sparse.linalg import spsolve

    q = sparse.diags(1.0 / outflow[kept]) @ chain.between[kept][:, kept]
    if len(kept) <= dense_limit:
        return float(np.linalg.solve(np.eye(len(kept)) - q.toarray(), r)[0])
    x = spsolve((sparse.identity(len(kept), format="csc") - q).tocsc(), r)
    return float(np.atleast_1d(x)[0])


def _check_order(order: int) -> None:
    if isinstance(order, bool) or not isinstance(order, int) or order < 1:
        raise InputError(f"got {order!r}; expected a whole number of channels, 1 or more", field="order")


def _effects(table: PathsTable, chain: MarkovChain, solve: Any) -> dict[str, float]:
    """1 - solve(without c) / solve(all) per channel (0 for every channel when the base is 0)."""
    base = solve(chain)
    effects = dict.fromkeys(table.channels, 0.0)
    if base <= 0:
        return effects
    for channel in dict.fromkeys(ch for state in chain.states for ch in state):
        effects[channel] = 1.0 - solve(chain, removed=channel) / base
    return effects


def removal_effects(table: PathsTable, order: int = 1) -> dict[str, float]:
    """Removal effect per channel: 1 - P(conversion without the channel) / P(conversion)."""
    _check_order(order)
    return _effects(table, markov_chain(table, order), conversion_probability)


def value_removal_effects(table: PathsTable, order: int = 1) -> dict[str, float]:
    """Removal effect per channel in the value-weighted chain: 1 - E[value without it] / E[value]
    (ChannelAttribution's `removal_effects_conversion_value`, solved exactly)."""
    _check_order(order)
    return _effects(table, markov_chain(table, order), expected_value)


def _global_split(total: float, effects: dict[str, float]) -> dict[str, float]:
    total_effect = math.fsum(effects.values())
    return {ch: total * effect / total_effect if total_effect > 0 else 0.0 for ch, effect in effects.items()}


def _per_journey_split(table: PathsTable, effects: dict[str, float], amounts: np.ndarray) -> np.ndarray:
    """Each row's amount split among its distinct channels by their effects (equally when none is above 0)."""
    row, channel = _distinct_touches(table)
    weights = np.array(list(effects.values()))[channel]
    per_row = np.bincount(row, weights=weights, minlength=table.size)
    weights = np.where(per_row[row] > 0, weights, 1.0)
    weights = weights / np.bincount(row, weights=weights, minlength=table.size)[row]
    credited = np.bincount(channel, weights=weights * amounts[row], minlength=len(table.channels))
    return credited


def markov(
    table: PathsTable, *, allocation: str = "global", order: int = 1, value_effects: str = "value"
) -> Attribution:
    """Markov attribution; `global` splits the totals by removal effect, `per_journey` splits each path.

    Conversions follow the conversion removal effects; value follows the removal effects of the
    value-weighted chain (`value_effects="value"`, ChannelAttribution's convention) or the conversion
    removal effects (`value_effects="conversion"`)."""
    if allocation not in ALLOCATIONS:
        raise InputError(f"got {allocation!r}; expected one of {', '.join(ALLOCATIONS)}", field="allocation")
    if value_effects not in VALUE_EFFECTS:
        raise InputError(f"got {value_effects!r}; expected one of {', '.join(VALUE_EFFECTS)}", field="value_effects")
    _check_order(order)
    chain = markov_chain(table, order)
    effects = _effects(table, chain, conversion_probability)
    by_value = _effects(table, chain, expected_value) if value_effects == "value" else effects
    if allocation == "global":
        return Attribution(
            "markov",
            _global_split(table.total_conversions, effects),
            _global_split(table.total_value, by_value),
            removal_effects=effects,
            value_removal_effects=by_value,
        )
    t = table.touches
    conversions = _per_journey_split(table, effects, t.conversions)
    value = _per_journey_split(table, by_value, t.value)
    return Attribution(
        "markov",
        dict(zip(table.channels, conversions.tolist(), strict=True)),
        dict(zip(table.channels, value.tolist(), strict=True)),
        removal_effects=effects,
        value_removal_effects=by_value,
    )


def _distinct_touches(table: PathsTable) -> tuple[np.ndarray, np.ndarray]:
    """(row, channel) pairs with each channel once per path."""
    t = table.touches
    size = max(len(table.channels), 1)
    pairs = np.sort(t.row * size + t.channel)
    pairs = pairs[np.concatenate(([True], pairs[1:] != pairs[:-1]))] if len(pairs) else pairs
    return pairs // size, pairs % size


# ---------------------------------------------------------------- Shapley values


def shapley(table: PathsTable) -> Attribution:
    """Shapley values of the game v(S) = conversions (value) of paths whose channel set is a subset of S.

    v is a sum of unanimity games, one per channel set T that occurs, with Harsanyi dividend
    w_T (its conversions); the Shapley value of a unanimity game gives w_T / |T| to each member,
    so the exact values need no enumeration of the 2^n coalitions (docs/attribution.md).
    """
    row, channel = _distinct_touches(table)
    share = 1.0 / np.bincount(row, minlength=table.size)[row]
    t = table.touches
    return _credits(table, "shapley", share * t.conversions[row], share * t.value[row], channel)


def attribute(
    table: PathsTable,
    model: str,
    *,
    half_life: float = 1.0,
    allocation: str = "global",
    order: int = 1,
    value_effects: str = "value",
) -> Attribution:
    """Run one model by name (one of MODELS); `order` and `value_effects` are the Markov chain's."""
    if model == "markov":
        return markov(table, allocation=allocation, order=order, value_effects=value_effects)
    if model == "shapley":
        return shapley(table)
    if model in HEURISTIC_MODELS:
        return heuristic(table, model, half_life=half_life)
    raise InputError(f"got {model!r}; expected one of {', '.join(MODELS)}", field="model")
