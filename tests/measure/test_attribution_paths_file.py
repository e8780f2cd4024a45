"""Paths files as analysts export them (issue 22 §5): one row per journey read by Arrow and aggregated into
the same table the row-by-row reader builds, malformed files rejected naming the record, the field and
what was expected, Markov value credits by the value-weighted chain (ChannelAttribution's
convention) checked against an absorbing chain solved here with numpy, and a CLI that starts
without the event-log machinery."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from omniweave.errors import InputError
from omniweave.measure.attribution import MODELS, PathRow, PathsTable, attribute, markov, read_paths_csv
from omniweave.measure.service import paths_file
from omniweave.measure.service.attribution import (
    AttributionRequest,
    aggregate_rows,
    attribution_report,
    read_paths_file,
)

HEADER = ("path", "total_conversions", "total_conversion_value", "total_null")


def write(path: Path, rows: list[tuple[object, ...]], header: tuple[str, ...] = HEADER) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def random_journeys(seed: int, journeys: int = 600) -> list[tuple[str, int, float, int]]:
    """One row per journey; the value of a conversion depends on its last channel."""
    rng = np.random.default_rng(seed)
    channels = ["search", "email", "store", "sms", "social"]
    out = []
    for _ in range(journeys):
        path = [channels[i] for i in rng.integers(0, len(channels), rng.integers(1, 5))]
        converted = bool(rng.random() < 0.15 + 0.1 * ("email" in path) + 0.1 * (path[-1] == "store"))
        value = round(float(rng.lognormal(3 + channels.index(path[-1]) * 0.4, 0.5)), 2) if converted else 0.0
        spaces = " > " if rng.random() < 0.7 else ">"  # exports differ in spacing; the paths are the same
        out.append((spaces.join(path), int(converted), value, int(not converted)))
    return out


# ---------------------------------------------------------------- the fast reader is the row reader, faster


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_one_row_per_journey_aggregates_to_the_row_readers_table(tmp_path: Path, seed: int):
    file = write(tmp_path / "journeys.csv", random_journeys(seed))
    fast = read_paths_file(file)
    slow = aggregate_rows(read_paths_csv(file).rows)
    assert fast.channels == slow.channels
    assert [row.channels for row in fast.rows] == [row.channels for row in slow.rows]
    assert len(fast.rows) < 600  # identical paths were added up
    for a, b in zip(fast.rows, slow.rows, strict=True):
        assert (a.conversions, a.nulls) == (b.conversions, b.nulls)
        assert a.value == pytest.approx(b.value, abs=1e-9)
    for model in MODELS:
        ours, theirs = attribute(fast, model), attribute(slow, model)
        assert ours.conversions == pytest.approx(theirs.conversions, abs=1e-9), model
        assert ours.value == pytest.approx(theirs.value, abs=1e-7), model


def test_a_journey_file_and_its_aggregate_credit_the_same(tmp_path: Path):
    journeys = random_journeys(4)
    sums: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    for path, conversions, value, nulls in journeys:
        key = " > ".join(part.strip() for part in path.split(">"))
        sums[key][0] += conversions
        sums[key][1] += value
        sums[key][2] += nulls
    per_path = write(tmp_path / "paths.csv", [(path, c, round(v, 2), n) for path, (c, v, n) in sums.items()])
    per_journey = write(tmp_path / "journeys.csv", journeys)
    a, b = read_paths_file(per_journey), read_paths_file(per_path)
    assert [row.channels for row in a.rows] == [row.channels for row in b.rows]
    assert markov(a).value == pytest.approx(markov(b).value, abs=1e-6)
    assert markov(a).conversions == pytest.approx(markov(b).conversions, abs=1e-9)


def test_spacing_around_the_separator_and_quoting_do_not_make_paths_differ(tmp_path: Path):
    rows = [("a > b", 1, 10, 0), ("a>b", 0, 0, 2), ("  a >b ", 1, 5, 1), ("a  >   b", 0, 0, 1), ("b", 1, 1, 0)]
    table = read_paths_file(write(tmp_path / "p.csv", rows))
    assert table.rows == (PathRow(("a", "b"), 2.0, 15.0, 4.0), PathRow(("b",), 1.0, 1.0, 0.0))
    assert table.channels == ("a", "b")


@pytest.mark.parametrize(
    "rows",
    [
        [("a\u00a0> b", 1, 10, 0), ("a > b", 1, 5, 0)],  # a no-break space: str.strip() trims it, DuckDB leaves it
        [("a > b", " 1", "10 ", 0)],  # padded numbers
        [("a > b", "1_0", 10, 0)],  # Python's float reads 1_0 as 10
        [("email, sms > store", 1, 3, 0)],  # a quoted comma in a path
    ],
)
def test_files_the_fast_reader_leaves_to_the_row_reader_give_its_table(tmp_path: Path, rows):
    file = write(tmp_path / "p.csv", rows)
    assert read_paths_file(file) == aggregate_rows(read_paths_csv(file).rows)


def same_table(a: PathsTable, b: PathsTable) -> None:
    assert a.channels == b.channels
    assert [row.channels for row in a.rows] == [row.channels for row in b.rows]
    for x, y in zip(a.rows, b.rows, strict=True):
        assert (x.conversions, x.nulls) == (y.conversions, y.nulls)
        assert x.value == pytest.approx(y.value, rel=1e-12, abs=1e-9)


@pytest.mark.parametrize(
    "rows",
    [
        [('"a > b"', 1, 10, 0), ("b", 0, 0, 1)],  # every path quoted, as R's write.csv does
        [("email, sms > store", 1, 3, 0), ("store", 0, 0, 2)],  # a quoted comma in a path
        [("a\t>\tb", 1, 10, 0), ("a > b", 0, 0, 1), (" a>b", 2, 1.5, 0)],  # tabs: trimmed by the pattern
        [("a > b", " 1", "1e1", "0 "), ("b", "2.50", ".5", "+3")],  # numbers as Python's float reads them
        [('say "hi" > b', 1, 2, 0)],  # a quote inside an unquoted field is text
    ],
)
def test_files_the_fast_reader_takes_whole_give_the_row_readers_table(tmp_path: Path, rows):
    file = write(tmp_path / "p.csv", rows)
    fast = paths_file._distinct_paths(file)  # raises _NotWhole if the file were left to the row reader
    same_table(fast, aggregate_rows(read_paths_csv(file).rows))


def test_a_file_of_many_arrow_blocks_gives_the_row_readers_table(tmp_path: Path, monkeypatch):
    # Arrow numbers each block's paths on its own; the blocks' numberings are unified afterwards
    monkeypatch.setattr(paths_file, "BLOCK_BYTES", 512)
    journeys = random_journeys(7, 3000)
    file = write(tmp_path / "journeys.csv", journeys)
    fast = read_paths_file(file)
    same_table(fast, aggregate_rows(read_paths_csv(file).rows))
    assert fast.total_conversions == sum(row[1] for row in journeys)


def test_a_bad_row_in_a_late_block_is_named(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(paths_file, "BLOCK_BYTES", 512)
    rows: list[tuple[object, ...]] = list(random_journeys(8, 2000))
    rows[1733] = ("search > email", 1, "12,50", 0)  # a decimal comma, quoted by the writer
    file = write(tmp_path / "journeys.csv", rows)
    with pytest.raises(
        InputError, match="record 1734, field 'total_conversion_value': got '12,50'; expected a non-negative"
    ):
        read_paths_file(file)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a > b,1,1e400,0\n", "record 1, field 'total_conversion_value': got '1e400'; expected a non-negative number"),
        ("a > b,1,1,0\n\x1e > b,1,1,0\n", "record 2, field 'path': channel 1 of '\\x1e > b' is empty"),
        ("a > b,1,1,0\n\n\nb,1,1\n", "record 2, field 'total_null': the row has 3 field(s), the header 4"),
        ('a > b,1,1,0\n"b\n>c",1,1,-1\n', "record 2, field 'total_null': got '-1'; expected a non-negative number"),
    ],
)
def test_rows_the_fast_reader_cannot_take_are_named_by_the_row_reader(tmp_path: Path, text: str, message: str):
    file = tmp_path / "bad.csv"
    file.write_text("path,total_conversions,total_conversion_value,total_null\n" + text, encoding="utf-8")
    with pytest.raises(InputError) as caught:
        read_paths_file(file)
    assert message in str(caught.value)


def test_a_header_on_two_lines_is_left_to_the_row_reader(tmp_path: Path):
    file = tmp_path / "p.csv"
    file.write_text('"path\n",total_conversions,total_conversion_value,total_null\na,1,1,0\n', encoding="utf-8")
    with pytest.raises(paths_file._NotWhole):
        paths_file._distinct_paths(file)
    assert read_paths_file(file).rows == (PathRow(("a",), 1.0, 1.0, 0.0),)


def test_a_file_with_blank_lines_and_extra_columns(tmp_path: Path):
    file = tmp_path / "p.csv"
    file.write_text("campaign,path,total_conversions,total_conversion_value,total_null\nx,a > b,1,10,0\n\ny,b,0,0,3\n")
    table = read_paths_file(file)
    assert table.rows == (PathRow(("a", "b"), 1.0, 10.0, 0.0), PathRow(("b",), 0.0, 0.0, 3.0))


# ---------------------------------------------------------------- malformed files: record, field, expectation

MALFORMED = [
    (
        [("a", 1, 1, 0), ("a > b", "two", 10, 0)],
        "record 2, field 'total_conversions': got 'two'; expected a non-negative",
    ),
    ([("a > b", 1, 10, -3)], "record 1, field 'total_null': got '-3'; expected a non-negative number"),
    ([("a > b", 1, "NaN", 0)], "record 1, field 'total_conversion_value': got 'NaN'; expected a non-negative number"),
    ([("a > b", 1, "inf", 0)], "record 1, field 'total_conversion_value': got 'inf'; expected a non-negative number"),
    ([("a > b", 1, "", 0)], "record 1, field 'total_conversion_value': got ''; expected a non-negative number"),
    ([("a", 1, 1, 0), ("", 1, 10, 0)], "record 2, field 'path': the path is empty; expected channels joined by"),
    ([("a", 1, 1, 0), ("   ", 1, 10, 0)], "record 2, field 'path': the path is empty"),
    ([("a >  > b", 1, 10, 0)], "record 1, field 'path': channel 2 of 'a >  > b' is empty; expected a channel name"),
    ([("a > b > ", 1, 10, 0)], "record 1, field 'path': channel 3 of 'a > b > ' is empty"),
    ([("> a", 1, 10, 0)], "record 1, field 'path': channel 1 of '> a' is empty"),
]


@pytest.mark.parametrize(("rows", "message"), MALFORMED)
def test_malformed_rows_name_the_record_the_field_and_what_was_expected(tmp_path: Path, rows, message):
    many = [("x > y", 0, 0, 1)] * 50  # valid rows after the bad one: the error still names the first bad row
    file = write(tmp_path / "bad.csv", [*rows, *many])
    with pytest.raises(InputError) as caught:
        read_paths_file(file)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is empty; expected a header with path, total_conversions, total_conversion_value, total_null"),
        (
            "path,total_conversions,total_null\na,1,0\n",
            "field 'total_conversion_value': missing column(s) total_conversion_value; got columns",
        ),
        (
            "path,total_conversions,total_conversion_value,total_null\na > b,1,10,0\nc,1,2\n",
            "record 2, field 'total_null': the row has 3 field(s), the header 4; no value for total_null",
        ),
        (
            "path,total_conversions,total_conversion_value,total_null\nemail, sms > store,1,10,0\n",
            "record 1, field 'path': the row has 5 fields, the header 4 (path, total_conversions, "
            "total_conversion_value, total_null); a path or number containing a comma must be in double quotes",
        ),
        (
            'path,total_conversions,total_conversion_value,total_null\n"a > b,1,10,0\n',
            "record 1, field 'total_conversions': the row has 1 field(s), the header 4",
        ),
    ],
)
def test_malformed_files_say_what_is_wrong(tmp_path: Path, text: str, message: str):
    file = tmp_path / "bad.csv"
    file.write_text(text, encoding="utf-8")
    with pytest.raises(InputError) as caught:
        read_paths_file(file)
    assert message in str(caught.value)


def test_a_file_that_is_not_utf8_names_the_line(tmp_path: Path):
    file = tmp_path / "latin1.csv"
    file.write_bytes(
        "path,total_conversions,total_conversion_value,total_null\na,1,1,0\ncaf\u00e9 > b,1,2,0\n".encode("latin-1")
    )
    with pytest.raises(InputError, match=r"line 3 of .*latin1.csv' is not UTF-8 text; expected a CSV file encoded"):
        read_paths_file(file)


def test_a_missing_file_is_an_input_error(tmp_path: Path):
    with pytest.raises(InputError, match="cannot read the paths file"):
        read_paths_file(tmp_path / "nowhere.csv")


def test_a_header_only_file_is_an_empty_table(tmp_path: Path):
    table = read_paths_file(write(tmp_path / "p.csv", []))
    assert table.rows == () and table.channels == () and table.total_conversions == 0.0


# ---------------------------------------------------------------- Markov value credits: the value-weighted chain


def absorbing_chain_credits(rows: list[PathRow], order: int, total_value: float) -> dict[str, float]:
    """Value credits by the removal effects of the value-weighted chain, solved independently: the full
    transition matrix with the absorbing states, its fundamental matrix N = (I - Q)^-1, and the expected
    value N @ (P(conversion from s) * mean value of a conversion from s)."""
    counts: dict[tuple[str, ...], dict[object, float]] = defaultdict(lambda: defaultdict(float))
    value_from: dict[tuple[str, ...], float] = defaultdict(float)
    start: tuple[str, ...] = ("(start)",)
    for row in rows:
        journeys = row.conversions + row.nulls
        if journeys == 0:
            continue
        here = start
        for i in range(len(row.channels)):
            there = row.channels[max(0, i + 1 - order) : i + 1]
            counts[here][there] += journeys
            here = there
        counts[here]["(conversion)"] += row.conversions
        counts[here]["(null)"] += row.nulls
        if row.conversions > 0:
            value_from[here] += row.value
    states = [
        start,
        *sorted({s for s in counts if s != start} | {t for c in counts.values() for t in c if isinstance(t, tuple)}),
    ]
    index = {s: i for i, s in enumerate(states)}

    def expected(removed: str | None) -> float:
        size = len(states)
        q = np.zeros((size, size))
        reward = np.zeros(size)
        for s, outs in counts.items():
            total = sum(outs.values())
            for t, n in outs.items():
                if isinstance(t, tuple) and not (removed is not None and removed in t):
                    q[index[s], index[t]] = n / total
            conversions = outs.get("(conversion)", 0.0)
            if conversions > 0:
                reward[index[s]] = conversions / total * (value_from[s] / conversions)
        fundamental = np.linalg.inv(np.eye(size) - q)
        return float((fundamental @ reward)[0])

    base = expected(None)
    channels = sorted({ch for row in rows for ch in row.channels})
    effects = {ch: 1 - expected(ch) / base for ch in channels}
    total_effect = sum(effects.values())
    return {ch: total_value * effect / total_effect for ch, effect in effects.items()}


@pytest.mark.parametrize("order", [1, 2])
@pytest.mark.parametrize("seed", [11, 12, 13, 14])
def test_markov_value_credits_equal_the_value_weighted_chain_solved_with_numpy(tmp_path: Path, seed: int, order: int):
    table = read_paths_file(write(tmp_path / "j.csv", random_journeys(seed, 300)))
    ours = markov(table, order=order)
    theirs = absorbing_chain_credits(list(table.rows), order, table.total_value)
    assert ours.value == pytest.approx(theirs, abs=1e-9, rel=1e-9)
    assert math.fsum(ours.value.values()) == pytest.approx(table.total_value, rel=1e-12)
    # the other convention splits value like the conversions, which differs here
    by_conversion = markov(table, order=order, value_effects="conversion")
    share = {ch: c / table.total_conversions for ch, c in by_conversion.conversions.items()}
    assert by_conversion.value == pytest.approx({ch: table.total_value * s for ch, s in share.items()}, abs=1e-9)
    assert max(abs(ours.value[ch] - by_conversion.value[ch]) for ch in ours.value) > 1.0


def test_with_one_value_per_conversion_both_conventions_agree():
    rows = (PathRow(("a", "b"), 2, 20, 1), PathRow(("b",), 1, 10, 3), PathRow(("a", "c"), 3, 30, 0))
    table = PathsTable(rows)
    by_value, by_conversion = markov(table), markov(table, value_effects="conversion")
    assert by_value.value_removal_effects == pytest.approx(by_value.removal_effects, abs=1e-12)
    assert by_value.value == pytest.approx(by_conversion.value, abs=1e-9)


def test_an_unknown_value_convention_is_rejected():
    table = PathsTable((PathRow(("a",), 1, 1, 0),))
    with pytest.raises(InputError, match="field 'value_effects': got 'revenue'; expected one of value, conversion"):
        markov(table, value_effects="revenue")


def test_the_report_carries_the_convention_and_both_effects(tmp_path: Path):
    file = write(tmp_path / "j.csv", random_journeys(5, 200))
    report = attribution_report(None, AttributionRequest(paths=file, models=("markov",)))
    document = report.to_dict()
    assert document["value_effects"] == "value"
    assert set(document["models"]["markov"]["value_removal_effects"]) == set(report.table.channels)
    other = attribution_report(None, AttributionRequest(paths=file, models=("markov",), value_effects="conversion"))
    assert (
        other.to_dict()["models"]["markov"]["value_removal_effects"] == document["models"]["markov"]["removal_effects"]
    )


# ---------------------------------------------------------------- the command starts without what it does not need

HEAVY = ("ibis", "pyspark", "fastapi", "scipy", "sqlalchemy", "pandas", "polars", "uvicorn", "starlette", "duckdb")


def test_attribution_on_a_paths_file_imports_no_event_log_machinery(tmp_path: Path):
    file = write(tmp_path / "j.csv", random_journeys(6, 50))
    program = (
        "import sys\n"
        "from omniweave.shells.cli.main import main\n"
        f"sys.argv = ['omniweave', 'attribution', '--paths', {str(file)!r}, '--format', 'json']\n"
        "try:\n    main()\nexcept SystemExit as exit:\n    assert not exit.code, exit.code\n"
        f"print(sorted({{name.split('.')[0] for name in sys.modules}} & set({HEAVY!r})), file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True,
        text=True,
        env={"OMNIWEAVE_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin", "COLUMNS": "200"},
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["models"]["markov"]["channels"]
    assert done.stderr.strip().splitlines()[-1] == "[]"
    assert not (tmp_path / "home").exists()  # no home opened for a file
