"""One renderer for every shell that prints: `--format table|json|csv`.

A command builds its result (a frozen dataclass with `to_dict()`), then hands the renderer three views
of it: the JSON document, the CSV records and the tables a person reads. The renderer owns the rest:

- JSON is the document, indented, with numpy numbers and dates turned into plain values;
- CSV is one header and one line per record, read back by the `csv` module;
- tables fit the terminal. A cell is never cut to `…`: a table wider than the terminal is split into
  parts that repeat its key columns (the channel, the KPI...), and headers wrap at spaces. Every cell
  and title is shown as plain text, so `[bracketed]` names are not taken for rich markup.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table
from rich.text import Text


class Format(StrEnum):
    """The output formats a command can offer."""

    table = "table"
    csv = "csv"
    json = "json"


@dataclass(frozen=True)
class Grid:
    """A table to show: its columns, its rows of already formatted cells, and how to split it.

    `keys` leading columns name a row (a channel, a period and a KPI...); they are repeated in every part
    when the table is too wide for the terminal. `legend` lines explain abbreviations used in the headers.
    """

    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    title: str = ""
    keys: int = 1
    legend: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        for n, row in enumerate(self.rows, 1):
            if len(row) != len(self.columns):
                raise ValueError(f"row {n} of table {self.title!r} has {len(row)} cells; expected {len(self.columns)}")


def grid(
    columns: Sequence[str],
    rows: Iterable[Sequence[object]],
    *,
    title: str = "",
    keys: int = 1,
    legend: Sequence[str] = (),
) -> Grid:
    """A Grid from any cells (None shows as empty, other values as `str(value)`)."""
    return Grid(
        tuple(columns),
        tuple(tuple("" if cell is None else str(cell) for cell in row) for row in rows),
        title=title,
        keys=keys,
        legend=tuple(legend),
    )


# --- JSON and CSV -------------------------------------------------------------------------------------


def json_text(document: Any) -> str:
    """The document as indented JSON (numpy numbers, dates and other objects made plain)."""
    return orjson.dumps(
        document, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS, default=str
    ).decode()


def csv_text(records: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """Records as CSV: a header (`columns`, or the first record's keys) and one line per record.

    Floats are written with `repr`, so they read back exactly; None is an empty cell."""
    header = list(columns) if columns is not None else (list(records[0]) if records else [])
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for record in records:
        writer.writerow([_csv_cell(record.get(name)) for name in header])
    return buffer.getvalue()


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    if hasattr(value, "isoformat"):
        return str(value.isoformat())
    return str(value)


# --- tables -------------------------------------------------------------------------------------------

_BORDER = 3  # a column costs its width plus one padding space each side and one rule
_EDGE = 1  # the table's right-hand rule


def _min_width(column: str, cells: Iterable[str]) -> int:
    """The narrowest a column can be without cutting a cell (headers may wrap at spaces)."""
    longest_word = max((len(word) for word in column.split()), default=0)
    return max([longest_word, *(len(cell) for cell in cells)])


def _numeric(cells: Sequence[str]) -> bool:
    shown = [c for c in cells if c not in ("", "-")]
    return bool(shown) and all(c.lstrip("+-").replace(",", "").replace(".", "", 1).rstrip("%").isdigit() for c in shown)


def split_columns(table: Grid, width: int) -> list[list[int]]:
    """The columns of each part a table is printed in, so that every part fits `width` characters.

    Key columns come first in every part; the others are packed in their order. A single column wider
    than the terminal gets a part of its own (its cells then fold onto several lines, never cut)."""
    widths = [_min_width(col, [row[i] for row in table.rows]) for i, col in enumerate(table.columns)]
    keys = list(range(min(table.keys, len(table.columns))))
    key_width = sum(widths[i] + _BORDER for i in keys) + _EDGE
    parts: list[list[int]] = []
    current: list[int] = []
    used = key_width
    for i in range(len(keys), len(table.columns)):
        if current and used + widths[i] + _BORDER > width:
            parts.append(keys + current)
            current, used = [], key_width
        current.append(i)
        used += widths[i] + _BORDER
    if current or not parts:
        parts.append(keys + current)
    return parts


def print_grid(console: Console, table: Grid) -> None:
    """Print a table that fits the console's width: split into parts if it must, no cell cut to `…`."""
    parts = split_columns(table, console.width)
    widths = [_min_width(col, [row[i] for row in table.rows]) for i, col in enumerate(table.columns)]
    for n, part in enumerate(parts, 1):
        title = table.title
        if len(parts) > 1:
            title = f"{title} ({n}/{len(parts)})" if title else f"({n}/{len(parts)})"
        out = Table(title=Text(title) if title else None, title_justify="left")
        for i in part:
            cells = [row[i] for row in table.rows]
            # a fixed width: rich neither cuts a cell nor widens the table past the terminal
            out.add_column(
                Text(table.columns[i]),
                justify="right" if _numeric(cells) else "left",
                width=max(widths[i], 1),
                overflow="fold",
            )
        for row in table.rows:
            out.add_row(*(Text(row[i]) for i in part))
        console.print(out)
    for line in table.legend:
        console.print(line, markup=False, highlight=False)


def print_text(console: Console, text: str) -> None:
    """Print a line as it is (no markup, no highlighting), wrapped at the console's width."""
    console.print(text, markup=False, highlight=False)


def emit(
    console: Console,
    fmt: str,
    *,
    document: Any,
    records: Sequence[Mapping[str, Any]] | None = None,
    columns: Sequence[str] | None = None,
    views: Sequence[Grid | str] = (),
) -> None:
    """Print a result in the format asked for: `document` as JSON, `records` as CSV, `views` (tables and
    lines of text) as tables. A command without `records` of its own writes the document's top level."""
    if fmt == Format.json:
        console.out(json_text(document), highlight=False)
    elif fmt == Format.csv:
        rows = records if records is not None else _flat_records(document)
        console.out(csv_text(rows, columns), end="", highlight=False)
    elif fmt == Format.table:
        for view in views:
            if isinstance(view, Grid):
                print_grid(console, view)
            else:
                print_text(console, view)
    else:
        raise ValueError(f"got format {fmt!r}; expected one of table, json, csv")


def _flat_records(document: Any) -> list[dict[str, Any]]:
    """A document as CSV records: a list of flat dicts as is, a dict as one record of its scalar fields."""
    if isinstance(document, list):
        return [{k: _scalar(v) for k, v in row.items()} for row in document]
    if isinstance(document, Mapping):
        return [{k: _scalar(v) for k, v in document.items()}]
    return [{"value": _scalar(document)}]


def _scalar(value: Any) -> Any:
    if isinstance(value, (Mapping, list, tuple)):
        return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS, default=str).decode()
    return value
