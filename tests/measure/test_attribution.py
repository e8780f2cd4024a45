"""Attribution on a paths file: hand-computed heuristics, exact Markov removal effects checked
against an independent rational-arithmetic solution, Shapley against the brute-force formula,
credits that sum to the totals, reader errors, and the CLI end to end."""

from __future__ import annotations

import csv
import itertools
import json
import math
import os
import subprocess
from collections import defaultdict
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from omniweave.errors import InputError
from omniweave.measure.attribution import (
    MODELS,
    PathRow,
    PathsTable,
    attribute,
    conversion_probability,
    heuristic,
    markov,
    markov_chain,
    read_paths_csv,
    removal_effects,
    shapley,
)
from tests.conftest import omniweave_cmd

HEADER = ("path", "total_conversions", "total_conversion_value", "total_null")

# a > b > c   2 conv, 100 value, 1 null
# b           1 conv,  30 value
# a > c       1 conv,  10 value, 2 null
# c > a > b > a  1 conv, 40 value
# b > c       no conversions, 5 null
SMALL = [
    ("a > b > c", 2, 100, 1),
    ("b", 1, 30, 0),
    ("a > c", 1, 10, 2),
    ("c > a > b > a", 1, 40, 0),
    ("b > c", 0, 0, 5),
]


def write_paths(path: Path, rows: list[tuple[object, ...]], header: tuple[str, ...] = HEADER) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture
def small_table(tmp_path: Path) -> PathsTable:
    return read_paths_csv(write_paths(tmp_path / "paths.csv", SMALL))


# hand-computed: (conversions, value) per channel; derivations in the comments
EXPECTED_HEURISTICS = {
    # first channel of each converting path: a (rows 1, 3), b (row 2), c (row 4)
    "first_touch": {"a": (3, 110), "b": (1, 30), "c": (1, 40)},
    # last channel: c (rows 1, 3), b (row 2), a (row 4)
    "last_touch": {"a": (1, 40), "b": (1, 30), "c": (3, 110)},
    # row 1: 1/3 each; row 3: 1/2 each; row 4: a 2/4, b 1/4, c 1/4
    "linear": {
        "a": (2 / 3 + 1 / 2 + 1 / 2, 100 / 3 + 5 + 20),
        "b": (2 / 3 + 1 + 1 / 4, 100 / 3 + 30 + 10),
        "c": (2 / 3 + 1 / 2 + 1 / 4, 100 / 3 + 5 + 10),
    },
    # row 1: .4/.2/.4; row 3 (two touches): .5/.5; row 4: c .4, a .1 + .4, b .1
    "position_based": {
        "a": (0.8 + 0.5 + 0.5, 40 + 5 + 20),
        "b": (0.4 + 1 + 0.1, 20 + 30 + 4),
        "c": (0.8 + 0.5 + 0.4, 40 + 5 + 16),
    },
    # half-life 1 touch: weights 1/4, 1/2, 1 (row 1, normalised by 7/4); 1/2, 1 (row 3);
    # 1/8, 1/4, 1/2, 1 (row 4, normalised by 15/8: c 1/15, a 2/3, b 4/15)
    "time_decay": {
        "a": (2 / 7 + 1 / 3 + 2 / 3, 100 / 7 + 10 / 3 + 80 / 3),
        "b": (4 / 7 + 1 + 4 / 15, 200 / 7 + 30 + 32 / 3),
        "c": (8 / 7 + 2 / 3 + 1 / 15, 400 / 7 + 20 / 3 + 8 / 3),
    },
}


@pytest.mark.parametrize("model", sorted(EXPECTED_HEURISTICS))
def test_heuristics_equal_hand_computed_values(small_table: PathsTable, model: str):
    result = heuristic(small_table, model)
    for channel, (conversions, value) in EXPECTED_HEURISTICS[model].items():
        assert result.conversions[channel] == pytest.approx(conversions, abs=1e-12), channel
        assert result.value[channel] == pytest.approx(value, abs=1e-12), channel


def test_time_decay_half_life_is_counted_in_touches():
    table = PathsTable((PathRow(("a", "b", "c"), 1, 10, 0),))
    result = heuristic(table, "time_decay", half_life=2)
    raw = {"a": 0.5, "b": 0.5**0.5, "c": 1.0}  # 2, 1 and 0 touches before the conversion
    for channel, weight in raw.items():
        assert result.conversions[channel] == pytest.approx(weight / sum(raw.values()), abs=1e-12)
    with pytest.raises(InputError, match="half_life"):
        heuristic(table, "time_decay", half_life=0)


def test_one_and_two_touch_paths_in_position_based():
    table = PathsTable((PathRow(("a",), 1, 1, 0), PathRow(("b", "c"), 2, 4, 0)))
    result = heuristic(table, "position_based")
    assert result.conversions == {"a": 1.0, "b": 1.0, "c": 1.0}
    assert result.value == {"a": 1.0, "b": 2.0, "c": 2.0}


# ---------------------------------------------------------------- Markov


def test_markov_textbook_example():
    # C1 > C2 > C3 converts once, C1 ends null once, C2 > C3 ends null once.
    # Transitions: start→C1 2/3, start→C2 1/3; C1→C2 1/2, C1→null 1/2; C2→C3 1; C3→conv 1/2, C3→null 1/2.
    # P(conv) = 2/3·1/2·1·1/2 + 1/3·1·1/2 = 1/6 + 1/6 = 1/3.
    # Without C1: only start→C2→C3→conv survives: 1/3·1/2 = 1/6, removal effect 1 - (1/6)/(1/3) = 1/2.
    # Without C2 or C3 no path reaches conversion: removal effects 1 and 1.
    # Global allocation of the one conversion: 0.5 : 1 : 1 → 0.2, 0.4, 0.4.
    table = PathsTable(
        (
            PathRow(("C1", "C2", "C3"), 1, 50, 0),
            PathRow(("C1",), 0, 0, 1),
            PathRow(("C2", "C3"), 0, 0, 1),
        )
    )
    effects = removal_effects(table)
    assert effects == pytest.approx({"C1": 0.5, "C2": 1.0, "C3": 1.0}, abs=1e-12)
    result = markov(table, allocation="global")
    assert result.conversions == pytest.approx({"C1": 0.2, "C2": 0.4, "C3": 0.4}, abs=1e-12)
    assert result.value == pytest.approx({"C1": 10.0, "C2": 20.0, "C3": 20.0}, abs=1e-12)
    # per journey: the only converting path holds all three channels, so the same split
    assert markov(table, allocation="per_journey").conversions == pytest.approx(result.conversions, abs=1e-12)


def test_per_journey_allocation_differs_from_global_when_paths_differ():
    table = PathsTable(
        (
            PathRow(("a", "b"), 4, 40, 1),
            PathRow(("c",), 1, 10, 3),
            PathRow(("a",), 0, 0, 2),
        )
    )
    effects = removal_effects(table)
    per_journey = markov(table, allocation="per_journey")
    # c only ever appears alone, so per journey it gets exactly its own path's conversion
    assert per_journey.conversions["c"] == pytest.approx(1.0, abs=1e-12)
    share_a = effects["a"] / (effects["a"] + effects["b"])
    assert per_journey.conversions["a"] == pytest.approx(4 * share_a, abs=1e-12)
    global_ = markov(table, allocation="global")
    assert global_.conversions["c"] == pytest.approx(5 * effects["c"] / sum(effects.values()), abs=1e-12)
    assert global_.conversions["c"] != pytest.approx(per_journey.conversions["c"])


def exact_conversion_probability(
    rows: list[tuple[tuple[str, ...], int, int]], removed: str | None, order: int = 1
) -> Fraction:
    """Independent solution: integer transition counts, removal by redirecting to null,
    and Gauss-Jordan elimination in exact rational arithmetic."""
    counts: dict[object, dict[object, int]] = defaultdict(lambda: defaultdict(int))
    for channels, conversions, nulls in rows:
        journeys = conversions + nulls
        if journeys == 0:
            continue
        # a state is the last `order` channels seen (fewer at the start)
        states = ["(start)", *(channels[max(0, i + 1 - order) : i + 1] for i in range(len(channels)))]
        for here, there in itertools.pairwise(states):
            counts[here][there] += journeys
        counts[states[-1]]["(conversion)"] += conversions
        counts[states[-1]]["(null)"] += nulls
    if not counts:
        return Fraction(0)
    transient = [s for s in counts if s == "(start)" or removed not in s]
    position = {s: i for i, s in enumerate(transient)}
    size = len(transient)
    # rows of the augmented matrix [I - Q | r]
    matrix = [[Fraction(0)] * (size + 1) for _ in range(size)]
    for state in transient:
        i = position[state]
        total = sum(counts[state].values())
        matrix[i][i] += 1
        for there, n in counts[state].items():
            if there == "(conversion)":
                matrix[i][size] += Fraction(n, total)
            elif there in position:
                matrix[i][position[there]] -= Fraction(n, total)
            # the null state and a removed channel absorb without converting
    for col in range(size):
        pivot = next(r for r in range(col, size) if matrix[r][col] != 0)
        matrix[col], matrix[pivot] = matrix[pivot], matrix[col]
        lead = matrix[col][col]
        matrix[col] = [x / lead for x in matrix[col]]
        for r in range(size):
            if r != col and matrix[r][col] != 0:
                factor = matrix[r][col]
                matrix[r] = [x - factor * y for x, y in zip(matrix[r], matrix[col], strict=True)]
    return matrix[position["(start)"]][size]


path_rows = st.lists(
    st.tuples(
        st.lists(st.sampled_from("abcde"), min_size=1, max_size=6).map(tuple),
        st.integers(0, 6),
        st.integers(0, 6),
    ),
    min_size=1,
    max_size=8,
)


@settings(max_examples=150, deadline=None)
@given(path_rows)
def test_markov_removal_effects_equal_an_exact_rational_solution(rows):
    table = PathsTable(tuple(PathRow(channels, conv, 0.0, nulls) for channels, conv, nulls in rows))
    effects = removal_effects(table)
    base = exact_conversion_probability(rows, None)
    for channel in table.channels:
        expected = 0.0 if base == 0 else float(1 - exact_conversion_probability(rows, channel) / base)
        assert effects[channel] == pytest.approx(expected, abs=1e-9), channel


@settings(max_examples=100, deadline=None)
@given(path_rows)
def test_collapsing_repeated_channels_leaves_first_order_removal_effects_unchanged(rows):
    # documented in docs/attribution.md: the self-loop count cancels in the absorption probabilities
    def collapse(channels):
        return tuple(ch for i, ch in enumerate(channels) if i == 0 or channels[i - 1] != ch)

    kept = PathsTable(tuple(PathRow(ch, conv, 0.0, nulls) for ch, conv, nulls in rows))
    collapsed = PathsTable(tuple(PathRow(collapse(ch), conv, 0.0, nulls) for ch, conv, nulls in rows))
    assert removal_effects(kept) == pytest.approx(removal_effects(collapsed), abs=1e-9)


@settings(max_examples=100, deadline=None)
@given(path_rows, st.integers(2, 3))
def test_higher_order_removal_effects_equal_an_exact_rational_solution(rows, order):
    table = PathsTable(tuple(PathRow(channels, conv, 0.0, nulls) for channels, conv, nulls in rows))
    effects = removal_effects(table, order)
    base = exact_conversion_probability(rows, None, order)
    for channel in table.channels:
        expected = 0.0 if base == 0 else float(1 - exact_conversion_probability(rows, channel, order) / base)
        assert effects[channel] == pytest.approx(expected, abs=1e-9), channel


@settings(max_examples=40, deadline=None)
@given(path_rows, st.integers(1, 3))
def test_sparse_and_dense_solves_agree(rows, order):
    table = PathsTable(tuple(PathRow(channels, conv, 0.0, nulls) for channels, conv, nulls in rows))
    chain = markov_chain(table, order)
    for removed in (None, *table.channels):
        dense = conversion_probability(chain, removed, dense_limit=10**9)
        assert conversion_probability(chain, removed, dense_limit=0) == pytest.approx(dense, abs=1e-12)


def test_second_order_chain_sees_what_first_order_cannot():
    # b converts after a, never after c: first order pools b's history, second order does not,
    # so removing a costs more in the second-order chain.
    table = PathsTable((PathRow(("a", "b"), 4, 40, 0), PathRow(("c", "b"), 0, 0, 4), PathRow(("c",), 2, 20, 2)))
    first, second = removal_effects(table, 1), removal_effects(table, 2)
    # journeys: a>b 4 (all convert), c>b 4 (none), c 4 (2 convert); start → a 1/3, → c 2/3.
    # first order: c → b 1/2, conv 1/4, null 1/4; a → b 1; b → conv 1/2 (4 of 8).
    #   x_b = 1/2, x_a = 1/2, x_c = 1/2·1/2 + 1/4 = 1/2, P = 1/3·1/2 + 2/3·1/2 = 1/2;
    #   without a: 2/3·1/2 = 1/3, RE(a) = 1 - (1/3)/(1/2) = 1/3.
    assert first["a"] == pytest.approx(1 / 3, abs=1e-12)
    # second order: (a) → (a,b) → conv always; (c) → (c,b) 1/2, conv 1/4, null 1/4; (c,b) → null always.
    #   P = 1/3·1 + 2/3·1/4 = 1/2; without a: 2/3·1/4 = 1/6, RE(a) = 1 - (1/6)/(1/2) = 2/3.
    assert second["a"] == pytest.approx(2 / 3, abs=1e-12)
    with pytest.raises(InputError, match="order"):
        removal_effects(table, 0)


# ---------------------------------------------------------------- Shapley


def brute_force_shapley(table: PathsTable) -> dict[str, float]:
    """Shapley's formula over every coalition, with v(S) = conversions of paths whose set ⊆ S."""
    players = table.channels
    n = len(players)

    def v(coalition: frozenset[str]) -> float:
        return sum(row.conversions for row in table.rows if set(row.channels) <= coalition)

    values = {}
    for player in players:
        others = [p for p in players if p != player]
        total = 0.0
        for size in range(n):
            weight = math.factorial(size) * math.factorial(n - size - 1) / math.factorial(n)
            for coalition in itertools.combinations(others, size):
                s = frozenset(coalition)
                total += weight * (v(s | {player}) - v(s))
        values[player] = total
    return values


@settings(max_examples=80, deadline=None)
@given(path_rows)
def test_shapley_equals_the_brute_force_formula(rows):
    table = PathsTable(tuple(PathRow(channels, conv, 0.0, nulls) for channels, conv, nulls in rows))
    expected = brute_force_shapley(table)
    result = shapley(table)
    for channel in table.channels:
        assert result.conversions[channel] == pytest.approx(expected[channel], abs=1e-9), channel


# ---------------------------------------------------------------- every model


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.lists(st.sampled_from(["email", "search", "store", "social", "qr", "tv"]), min_size=1, max_size=7).map(
                tuple
            ),
            st.integers(0, 50),
            st.floats(0, 10_000, allow_nan=False),
            st.integers(0, 50),
        ),
        min_size=1,
        max_size=12,
    ),
    st.floats(0.1, 5),
)
def test_every_models_credits_sum_to_the_totals(rows, half_life):
    # value only where there are conversions, as in real paths files
    table = PathsTable(tuple(PathRow(ch, conv, value if conv else 0.0, nulls) for ch, conv, value, nulls in rows))
    runs = [(model, "global", 1) for model in MODELS]
    runs += [("markov", allocation, order) for allocation in ("global", "per_journey") for order in (1, 2, 3)]
    for model, allocation, order in runs:
        result = attribute(table, model, half_life=half_life, allocation=allocation, order=order)
        assert set(result.conversions) == set(table.channels)
        assert math.fsum(result.conversions.values()) == pytest.approx(table.total_conversions, rel=1e-9, abs=1e-9), (
            model
        )
        assert math.fsum(result.value.values()) == pytest.approx(table.total_value, rel=1e-9, abs=1e-7), model
        assert all(credit >= -1e-12 for credit in result.conversions.values()), model


# ---------------------------------------------------------------- reader


@pytest.mark.parametrize(
    ("rows", "header", "message"),
    [
        (
            [("a > b", 1, 10, 0)],
            ("path", "total_conversions", "total_null"),
            r"field 'total_conversion_value': missing column\(s\) total_conversion_value",
        ),
        (
            [("a", 1, 1, 0), ("a > b", "two", 10, 0)],
            HEADER,
            r"record 2, field 'total_conversions': got 'two'; expected a non-negative number",
        ),
        ([("a > b", 1, 10, -3)], HEADER, r"record 1, field 'total_null': got '-3'; expected a non-negative number"),
        ([("a > b", 1, "", 0)], HEADER, r"record 1, field 'total_conversion_value': got ''; expected"),
        ([("a", 1, 1, 0), ("", 1, 10, 0)], HEADER, r"record 2, field 'path': the path is empty"),
        ([("a >  > b", 1, 10, 0)], HEADER, r"record 1, field 'path': channel 2 of 'a >  > b' is empty"),
        ([("a > b > ", 1, 10, 0)], HEADER, r"record 1, field 'path': channel 3 of 'a > b > ' is empty"),
    ],
)
def test_malformed_paths_files_name_the_row_field_and_expectation(tmp_path, rows, header, message):
    with pytest.raises(InputError, match=message):
        read_paths_csv(write_paths(tmp_path / "bad.csv", rows, header))


def test_a_header_only_file_credits_nothing(tmp_path):
    table = read_paths_csv(write_paths(tmp_path / "p.csv", []))
    for model in MODELS:
        result = attribute(table, model)
        assert result.conversions == {} and result.value == {}, model


def test_rows_without_journeys_are_accepted_and_ignored(tmp_path):
    table = read_paths_csv(write_paths(tmp_path / "p.csv", [("a > b", 2, 20, 1), ("c", 0, 0, 0)]))
    assert table.total_conversions == 2
    for model in MODELS:
        result = attribute(table, model)
        assert result.conversions["c"] == 0.0, model


# ---------------------------------------------------------------- CLI


def run_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMNIWEAVE_HOME": str(tmp_path / "home"), "COLUMNS": "200"}
    return subprocess.run(
        omniweave_cmd("attribution", *args),
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_cli_prints_every_model_as_json_matching_the_library(tmp_path):
    file = write_paths(tmp_path / "paths.csv", SMALL)
    done = run_cli(
        tmp_path,
        "--paths",
        str(file),
        "--model",
        "all",
        "--format",
        "json",
        "--half-life",
        "2",
        "--allocation",
        "per_journey",
        "--order",
        "2",
    )
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["total_conversions"] == 5 and document["total_conversion_value"] == 180
    assert set(document["models"]) == set(MODELS)
    table = read_paths_csv(file)
    for model in MODELS:
        expected = attribute(table, model, half_life=2, allocation="per_journey", order=2)
        channels = document["models"][model]["channels"]
        for channel in ("a", "b", "c"):
            assert channels[channel]["conversions"] == pytest.approx(expected.conversions[channel], abs=1e-12)
            assert channels[channel]["value"] == pytest.approx(expected.value[channel], abs=1e-12)
    assert document["models"]["markov"]["removal_effects"] == pytest.approx(removal_effects(table, 2), abs=1e-12)
    assert document["models"]["first_touch"]["channels"]["a"] == {"conversions": 3.0, "value": 110.0}


def test_cli_csv_and_table_formats(tmp_path):
    file = write_paths(tmp_path / "paths.csv", SMALL)
    done = run_cli(tmp_path, "--paths", str(file), "--model", "last_touch", "--format", "csv")
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(done.stdout.splitlines()))
    assert [(r["model"], r["channel"], float(r["conversions"]), float(r["value"])) for r in rows] == [
        ("last_touch", "a", 1.0, 40.0),
        ("last_touch", "b", 1.0, 30.0),
        ("last_touch", "c", 3.0, 110.0),
    ]
    done = run_cli(tmp_path, "--paths", str(file))
    assert done.returncode == 0, done.stderr
    assert "credited conversions" in done.stdout and "credited value" in done.stdout
    assert "shapley" in done.stdout and "110.00" in done.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--model", "lastish"), "field '--model': got 'lastish'; expected one of first_touch"),
        (("--model", "time_decay", "--half-life", "0"), "field 'half_life': got 0.0; expected a positive number"),
        (("--model", "markov", "--allocation", "both"), "field 'allocation': got 'both'; expected one of global"),
        (("--model", "markov", "--order", "0"), "field 'order': got 0; expected a whole number"),
    ],
)
def test_cli_rejects_bad_options_with_exit_code_2(tmp_path, args, message):
    file = write_paths(tmp_path / "paths.csv", SMALL)
    done = run_cli(tmp_path, "--paths", str(file), *args)
    assert done.returncode == 2
    assert message in done.stderr


def test_cli_bad_file_exits_2_with_the_readers_message(tmp_path):
    file = write_paths(tmp_path / "bad.csv", [("a > b", 1, 10, 0), ("a >  > b", 1, 10, 0)])
    done = run_cli(tmp_path, "--paths", str(file))
    assert done.returncode == 2
    assert "record 2, field 'path': channel 2 of 'a >  > b' is empty" in done.stderr
    done = run_cli(tmp_path, "--paths", str(tmp_path / "missing.csv"))
    assert done.returncode == 2
    assert "cannot read the paths file" in done.stderr


def test_cli_without_paths_on_a_home_without_persons_says_what_to_run(tmp_path):
    done = run_cli(tmp_path)
    assert done.returncode == 2
    assert "omniweave resolve" in done.stderr and "--paths" in done.stderr
