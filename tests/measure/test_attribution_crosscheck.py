"""Markov attribution cross-checked against an independent implementation: the
`marketing-attribution-models` package (`mam`, Polars-based; a dev dependency), on random small
paths tables, to 1e-9.

Mapping of conventions (ours → mam):

- input: mam's `grouped_journey` format has one flag per row (converted or not) and an integer
  `occurrences`, so each paths row (path, C conversions, value V, N nulls) becomes two rows,
  (path, C, converted, value V) and (path, N, not converted, value 0); rows with no journeys are
  left out (mam divides the value by the occurrences). A channel that only appears on rows with no
  journeys is then unknown to mam; ours lists it with removal effect 0.
- removal effect: both are 1 − P(conversion without c) / P(conversion), the inflow of the removed
  channel sent to null, null journeys counted in the chain; first order only (mam has no other).
- self-loops: mam drops repeated consecutive channels by default (`transition_to_same_state=False`),
  ours keeps them; in a first-order chain the self-loop count cancels, so both settings of mam must
  give our numbers (docs/attribution.md).
- shares: mam's normalised weights RE(c) / Σ RE are our global allocation divided by the total
  conversions.
- per journey: mam splits each journey among its touches (a repeated channel counted each time) by
  the normalised weights, ours among its distinct channels; the two agree on paths without a
  repeated channel, so that comparison runs on such tables.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from omniweave.measure.attribution import PathRow, PathsTable, markov, removal_effects

mam = pytest.importorskip("mam", reason="marketing-attribution-models is in the dev extra: pip install -e '.[dev]'")

TOLERANCE = 1e-9
CHANNELS = ("email", "search", "social", "display", "affiliate", "direct")


def random_table(seed: int, *, repeats: bool = True, rows: int = 25) -> PathsTable:
    """Random paths over a few channels, some with no journeys, some never converting; the channel
    `print` is only on a row with no journeys."""
    rng = np.random.default_rng(seed)
    table = []
    for _ in range(rows):
        length = int(rng.integers(1, 7))
        if repeats:
            channels = tuple(rng.choice(CHANNELS, size=length))
        else:
            channels = tuple(rng.choice(CHANNELS, size=min(length, len(CHANNELS)), replace=False))
        conversions = int(rng.integers(0, 6)) * int(rng.random() < 0.7)
        nulls = int(rng.integers(0, 9))
        value = float(np.round(conversions * rng.uniform(5, 80), 2))
        table.append(PathRow(tuple(str(ch) for ch in channels), conversions, value, nulls))
    table.append(PathRow(("print", str(rng.choice(CHANNELS))), 0, 0.0, 0))
    return PathsTable(tuple(table))


def as_mam_frame(table: PathsTable) -> pd.DataFrame:
    """One row per (path, outcome) with journeys; see the module docstring."""
    records = []
    for row in table.rows:
        path = " > ".join(row.channels)
        if row.conversions > 0:
            records.append({"path": path, "occurrences": int(row.conversions), "converted": True, "value": row.value})
        if row.nulls > 0:
            records.append({"path": path, "occurrences": int(row.nulls), "converted": False, "value": 0.0})
    return pd.DataFrame.from_records(records, columns=["path", "occurrences", "converted", "value"])


def run_mam(table: PathsTable, *, with_value: bool, same_state: bool = False):
    model = mam.MAM(
        as_mam_frame(table),
        format_type="grouped_journey",
        channels_colname="path",
        journey_with_conv_colname="converted",
        occurrences_colname="occurrences",
        conversion_value_colname="value" if with_value else None,
    )
    return model.run_markov(transition_to_same_state=same_state)


def mam_removal_effects(table: PathsTable, *, same_state: bool) -> dict[str, float]:
    frame = run_mam(table, with_value=False, same_state=same_state).metadata["removal_effect"]
    return {str(channel): float(effect) for channel, effect in frame["removal_effect"].items()}


def mam_credits(table: PathsTable, *, with_value: bool) -> dict[str, float]:
    credited = run_mam(table, with_value=with_value).to_dict()
    return dict(zip(map(str, credited["channels"]), credited["attribution"], strict=True))


def with_zero_for_missing(theirs: dict[str, float], table: PathsTable) -> dict[str, float]:
    return {channel: theirs.get(channel, 0.0) for channel in table.channels}


SEEDS = range(8)


@pytest.mark.parametrize("same_state", [False, True], ids=["mam-drops-self-loops", "mam-keeps-self-loops"])
@pytest.mark.parametrize("seed", SEEDS)
def test_removal_effects_equal_mam(seed: int, same_state: bool):
    table = random_table(seed)
    ours = removal_effects(table)
    raw = mam_removal_effects(table, same_state=same_state)
    assert "print" not in raw and ours["print"] == 0.0  # only on a row with no journeys
    theirs = with_zero_for_missing(raw, table)
    assert any(effect > 0 for effect in ours.values())
    assert ours == pytest.approx(theirs, abs=TOLERANCE, rel=0)


@pytest.mark.parametrize("seed", SEEDS)
def test_global_shares_equal_mam_normalised_weights(seed: int):
    table = random_table(seed)
    result = markov(table, allocation="global")
    ours = {channel: credit / table.total_conversions for channel, credit in result.conversions.items()}
    effects = with_zero_for_missing(mam_removal_effects(table, same_state=False), table)
    theirs = {channel: effect / sum(effects.values()) for channel, effect in effects.items()}
    assert ours == pytest.approx(theirs, abs=TOLERANCE, rel=0)


@pytest.mark.parametrize("seed", SEEDS)
def test_per_journey_credits_equal_mam_on_paths_without_repeats(seed: int):
    table = random_table(100 + seed, repeats=False)
    # mam splits a journey's value by the conversion removal effects: our non-default convention
    result = markov(table, allocation="per_journey", value_effects="conversion")
    assert result.conversions == pytest.approx(
        with_zero_for_missing(mam_credits(table, with_value=False), table), abs=TOLERANCE, rel=0
    )
    assert result.value == pytest.approx(
        with_zero_for_missing(mam_credits(table, with_value=True), table), abs=TOLERANCE, rel=0
    )


def test_nothing_converts_gives_zero_removal_effects_in_both():
    table = PathsTable((PathRow(("email", "search"), 0, 0, 3), PathRow(("search",), 0, 0, 2)))
    assert removal_effects(table) == {"email": 0.0, "search": 0.0}
    assert mam_removal_effects(table, same_state=False) == {"email": 0.0, "search": 0.0}
