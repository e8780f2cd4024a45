"""The shared renderer: JSON and CSV that parse back, tables that fit the terminal without cutting a cell."""

from __future__ import annotations

import csv
import io
import json

import pytest
from rich.console import Console

from omniweave.shells.render import csv_text, emit, grid, json_text, print_grid, split_columns


def printed(table, width: int = 80) -> str:
    buffer = io.StringIO()
    print_grid(Console(file=buffer, width=width), table)
    return buffer.getvalue()


WIDE = grid(
    ["channel", *(f"model number {i} orders" for i in range(9))],
    [
        [name, *(f"{428123.45 * (i + 1):,.2f}" for i in range(9))]
        for name in ("social_impressions_meta", "social_impressions_tiktok", "email")
    ],
    title="credited conversions",
)


def test_a_wide_table_is_split_into_parts_that_fit_and_repeat_the_key_column() -> None:
    out = printed(WIDE)
    assert "…" not in out
    assert max(len(line) for line in out.splitlines()) <= 80
    for cell in ("428,123.45", "3,853,111.05", "social_impressions_meta", "social_impressions_tiktok"):
        assert cell in out
    parts = split_columns(WIDE, 80)
    assert len(parts) > 1 and all(part[0] == 0 for part in parts)
    assert sorted({i for part in parts for i in part}) == list(range(len(WIDE.columns)))
    assert out.count("social_impressions_tiktok") == len(parts)  # the key repeats in every part
    assert "(1/" in out


def test_a_table_that_fits_is_one_table() -> None:
    table = grid(["kpi", "value"], [["page_views", "649"], ["revenue_total", "7,958.15"]], title="t")
    assert split_columns(table, 80) == [[0, 1]]
    assert "(1/" not in printed(table)


@pytest.mark.parametrize("width", [40, 60, 80, 120])
def test_no_cell_is_cut_at_any_width(width: int) -> None:
    out = printed(WIDE, width)
    assert "…" not in out
    assert max(len(line) for line in out.splitlines()) <= width


def test_bracketed_text_is_shown_as_it_is_not_as_markup() -> None:
    table = grid(["segment", "name"], [["[bold]vip[/bold]", "[red]"]], title="[b]x[/b]")
    out = printed(table)
    assert "[bold]vip[/bold]" in out and "[red]" in out and "[b]x[/b]" in out


def test_json_and_csv_parse_back() -> None:
    document = {"models": {"a": {"value": 1.5}}, "n": [1, 2]}
    assert json.loads(json_text(document)) == document
    records = [{"model": "linear", "channel": "a, b", "value": 0.1 + 0.2, "spend": None}]
    rows = list(csv.DictReader(io.StringIO(csv_text(records))))
    assert rows == [{"model": "linear", "channel": "a, b", "value": repr(0.1 + 0.2), "spend": ""}]
    assert float(rows[0]["value"]) == 0.1 + 0.2


def test_emit_writes_the_format_asked_for() -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, width=80)
    emit(console, "csv", document={}, records=[{"a": 1}], columns=("a",), views=[])
    emit(console, "json", document={"a": 1}, views=[])
    assert buffer.getvalue() == 'a\n1\n{\n  "a": 1\n}\n'
    with pytest.raises(ValueError, match="expected one of table, json, csv"):
        emit(console, "xml", document={})


def test_a_row_of_the_wrong_length_is_refused() -> None:
    with pytest.raises(ValueError, match="row 1 of table 't' has 1 cells; expected 2"):
        grid(["a", "b"], [["x"]], title="t")
