"""Attribution as one service operation: a request in, a frozen report out.

The CLI, the REST API and the dashboard all call `attribution_report` and show its `to_dict()` (or its
`records()` as CSV), so they credit the same numbers. The paths come from a paths file or are built
from the event log (measure/service/paths.py), where spend, ROAS and ROI come with them.

A paths file is read by `read_paths_file`: DuckDB parses the CSV and adds up identical paths (a file
with one row per journey holds far fewer distinct paths than rows), so the models run on the
distinct paths. Nothing here imports the event-log machinery (Ibis, the runtime's stores) until the
event log is asked for: `omniweave attribution --paths` starts fast.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omniweave.errors import InputError
from omniweave.measure.attribution import (
    DEFAULT_DEDUP_MINUTES,
    DEFAULT_LOOKBACK_DAYS,
    MODELS,
    PATH_SEPARATOR,
    REQUIRED_COLUMNS,
    Attribution,
    PathRow,
    PathsTable,
    Touches,
    attribute,
    read_paths_csv,
)
from omniweave.storage.guard import guarded

if TYPE_CHECKING:
    from omniweave.measure.service.paths import Journeys, Return
    from omniweave.runtime import Runtime


ROUNDING = 1e-9
"""Credits, effects and returns closer to zero than this are shown as 0 (never as -0.00 or -1e-13)."""


def clean(number: float) -> float:
    """`number`, or 0.0 when it is rounding noise around zero; never -0.0."""
    return 0.0 if abs(number) < ROUNDING else number + 0.0


def model_names(model: str, field: str = "model") -> tuple[str, ...]:
    """The models `model` names: one of MODELS, or `all` for every one. Anything else is an InputError."""
    if model == "all":
        return MODELS
    if model not in MODELS:
        raise InputError(f"got {model!r}; expected one of {', '.join(MODELS)} or all", field=field)
    return (model,)


@dataclass(frozen=True)
class AttributionRequest:
    """What to attribute and how: a paths file (`paths`) or the event log, the models and their options."""

    models: tuple[str, ...] = MODELS
    paths: Path | None = None
    half_life: float = 1.0
    allocation: str = "global"
    order: int = 1
    value_effects: str = "value"
    lookback_days: float = DEFAULT_LOOKBACK_DAYS
    dedup_minutes: float = DEFAULT_DEDUP_MINUTES
    by: str = "channel"
    since: datetime | None = None
    until: datetime | None = None
    exposures: bool = False


@dataclass(frozen=True)
class AttributionReport:
    """Conversions and value credited by each model, with spend, ROAS and ROI when built from the log.

    `journeys` is None for a paths file; `labels` are the channels (or campaigns) in the order shown:
    those on the paths, then those that only have spend."""

    request: AttributionRequest
    table: PathsTable
    results: tuple[Attribution, ...]
    journeys: Journeys | None = None
    earned: Mapping[str, Mapping[str, Return]] = field(default_factory=dict)

    @property
    def from_log(self) -> bool:
        """True when the paths were built from the event log (so spend, ROAS and ROI are known)."""
        return self.journeys is not None

    @property
    def spend(self) -> dict[str, float]:
        """Spend per channel (or campaign) over the period; empty for a paths file."""
        return dict(self.journeys.spend) if self.journeys is not None else {}

    @property
    def labels(self) -> tuple[str, ...]:
        """Channels (or campaigns) in the order shown: every label on the paths (and, from the event log,
        with spend), sorted by name (case aside), a campaign's stand-in `(channel)` for touches without a
        campaign after the named ones."""
        channels = tuple(self.table.channels)
        return tuple(
            sorted({*channels, *self.spend}, key=lambda label: (label.startswith("("), label.casefold(), label))
        )

    @property
    def total_null(self) -> float:
        """Journeys that ended without an order."""
        return self.table.total_null

    def to_dict(self) -> dict[str, Any]:
        """The report as plain JSON values (the `--format json` document and the API response)."""
        r = self.request
        document: dict[str, Any] = {
            "total_conversions": self.table.total_conversions,
            "total_conversion_value": self.table.total_value,
            "half_life": r.half_life,
            "allocation": r.allocation,
            "order": r.order,
            "value_effects": r.value_effects,
        }
        j = self.journeys
        if j is not None:
            document |= {
                "source": "event log",
                "by": j.by,
                "lookback_days": j.lookback_days,
                "dedup_minutes": j.dedup_minutes,
                "exposures": j.exposures,
                "since": j.since.isoformat() if j.since else None,
                "until": j.until.isoformat() if j.until else None,
                "untouched_conversions": j.untouched_conversions,
                "untouched_value": j.untouched_value,
                "total_null": self.total_null,
                "spend": self.spend,
            }
        shown = self.labels
        models: dict[str, Any] = {}
        for result in self.results:
            entry: dict[str, Any] = {
                "channels": {
                    ch: {
                        "conversions": clean(result.conversions.get(ch, 0.0)),
                        "value": clean(result.value.get(ch, 0.0)),
                    }
                    for ch in shown
                }
            }
            if result.removal_effects is not None:
                entry["removal_effects"] = {ch: clean(x) for ch, x in result.removal_effects.items()}
            if result.value_removal_effects is not None:
                entry["value_removal_effects"] = {ch: clean(x) for ch, x in result.value_removal_effects.items()}
            if j is not None:
                entry["returns"] = {
                    label: {"spend": x.spend, "value": clean(x.value), "roas": clean(x.roas), "roi": clean(x.roi)}
                    for label, x in self.earned[result.model].items()
                }
            models[result.model] = entry
        document["models"] = models
        return document

    def columns(self) -> tuple[str, ...]:
        """The CSV header: model, channel, conversions, value (and spend, roas, roi from the log)."""
        base = ("model", "channel", "conversions", "value")
        return (*base, "spend", "roas", "roi") if self.from_log else base

    def records(self) -> list[dict[str, Any]]:
        """One record per model and channel (the `--format csv` rows)."""
        out: list[dict[str, Any]] = []
        for result in self.results:
            for ch in self.labels:
                record: dict[str, Any] = {
                    "model": result.model,
                    "channel": ch,
                    "conversions": clean(result.conversions.get(ch, 0.0)),
                    "value": clean(result.value.get(ch, 0.0)),
                }
                if self.from_log:
                    x = self.earned[result.model].get(ch)
                    record |= {"spend": x.spend, "roas": clean(x.roas), "roi": clean(x.roi)} if x else {}
                out.append(record)
        return out


@guarded("attribution")
def attribution_report(runtime: Runtime | None, request: AttributionRequest) -> AttributionReport:
    """Credit the conversions of a paths file, or of the journeys in the event log, with every model asked
    for; from the log, also each label's spend, ROAS and ROI per model. A paths file needs no runtime
    (None is accepted for it).

    Raises InputError for a bad option, a bad paths file, or a home without persons yet."""
    for name in request.models:
        model_names(name)
    journeys = None
    if request.paths is not None:
        table = read_paths_file(request.paths)
    else:
        from omniweave.measure.service.paths import journeys_from_log

        if runtime is None:
            raise InputError("the event log needs an opened home; pass --paths FILE.csv to attribute a file")
        journeys = journeys_from_log(
            runtime,
            lookback_days=request.lookback_days,
            dedup_minutes=request.dedup_minutes,
            by=request.by,
            since=request.since,
            until=request.until,
            exposures=request.exposures,
        )
        table = journeys.paths
    results = tuple(
        attribute(
            table,
            name,
            half_life=request.half_life,
            allocation=request.allocation,
            order=request.order,
            value_effects=request.value_effects,
        )
        for name in request.models
    )
    earned: dict[str, dict[str, Return]] = {}
    if journeys is not None:
        from omniweave.measure.service.paths import returns

        earned = {r.model: returns(r, journeys.spend) for r in results}
    return AttributionReport(request=request, table=table, results=results, journeys=journeys, earned=earned)


# ---------------------------------------------------------------- the paths file, aggregated in DuckDB


class _NotWhole(Exception):
    """The fast reader cannot take this file whole: the row-by-row reader decides (and words the error)."""


def read_paths_file(path: Path | str) -> PathsTable:
    """A paths CSV as a table of distinct paths: identical paths (after trimming the spaces around each
    channel) are added up, rows sorted by path. A file with one row per journey and one with one row per
    path give the same table.

    DuckDB parses and aggregates the file; every number must cast to a finite non-negative double and
    every path must be non-empty there, else (or on any CSV irregularity) the file is read row by row by
    `measure.attribution.read_paths_csv`, which raises the InputError naming the record, the field and
    what was expected, or, for a file DuckDB is merely stricter about, returns the same table."""
    file = Path(path)
    try:
        return _distinct_paths(file)
    except _NotWhole:
        return aggregate_rows(read_paths_csv(file).rows)


def aggregate_rows(rows: Iterable[PathRow]) -> PathsTable:
    """One row per distinct channel sequence (conversions, value and nulls added up), sorted by the
    path's text (`a>b`, code point order, as DuckDB sorts it)."""
    merged: dict[tuple[str, ...], list[float]] = {}
    for row in rows:
        sums = merged.get(row.channels)
        if sums is None:
            merged[row.channels] = [row.conversions, row.value, row.nulls]
        else:
            sums[0] += row.conversions
            sums[1] += row.value
            sums[2] += row.nulls
    ordered = sorted(merged, key=PATH_SEPARATOR.join)
    return PathsTable(tuple(PathRow(channels, *merged[channels]) for channels in ordered))


def _header(file: Path) -> list[str]:
    import csv

    try:
        with file.open(newline="", encoding="utf-8-sig") as handle:
            header = next(csv.reader(handle), None)
    except (OSError, UnicodeDecodeError, csv.Error):
        raise _NotWhole from None
    if header is None:
        raise _NotWhole
    names = [name.strip() for name in header]
    if any(name not in names for name in REQUIRED_COLUMNS):
        raise _NotWhole
    return names


# str.strip() whitespace other than the space: a path holding one is left to the row-by-row reader
_OTHER_WHITESPACE = (
    r"[\t\n\x0b\x0c\r\x1c-\x1f\x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}]"
)


def _distinct_paths(file: Path) -> PathsTable:
    """The file aggregated in DuckDB: raw paths first (one pass over every row), then the distinct ones
    trimmed around each `>` and added up again, rows in the order of their text; the touches come back
    encoded as the models want them (channel numbers in order of first appearance)."""
    import duckdb
    import numpy as np

    names = _header(file)
    where = {name: i for i, name in enumerate(names)}  # the last of a repeated name, as the row reader
    path, conversions, value, nulls = (f"c{where[name]}" for name in REQUIRED_COLUMNS)
    # the numbers are read as DOUBLE (a text that is not one fails the read: the row reader names it)
    numeric = {conversions, value, nulls}
    columns = {f"c{i}": "DOUBLE" if f"c{i}" in numeric else "VARCHAR" for i in range(len(names))}
    valid = " AND ".join(f"coalesce(isfinite({x}) AND {x} >= 0, false)" for x in ("c", "v", "n"))
    sep = PATH_SEPARATOR
    paths_sql = f"""
        CREATE TEMP TABLE paths AS
        WITH raw AS (
            SELECT path, fsum(c) AS c, fsum(v) AS v, fsum(n) AS n, bool_and({valid}) AS ok
            FROM (
                SELECT {path} AS path, {conversions} AS c, {value} AS v, {nulls} AS n
                FROM read_csv($file, header = true, auto_detect = false, columns = $columns, delim = ',',
                              quote = '"', escape = '"', strict_mode = true, null_padding = false)
            )
            GROUP BY path
        ), trimmed AS (
            SELECT trim(CASE WHEN contains(path, '  ') THEN regexp_replace(path, ' *{sep} *', '{sep}', 'g')
                             ELSE replace(replace(path, ' {sep}', '{sep}'), '{sep} ', '{sep}') END, ' ') AS k,
                   c, v, n, ok AND path IS NOT NULL AND NOT regexp_matches(path, $other_whitespace) AS ok
            FROM raw
        ), merged AS (
            SELECT k, fsum(c) AS c, fsum(v) AS v, fsum(n) AS n,
                   bool_and(ok AND k <> '' AND NOT contains(k, '{sep}{sep}') AND NOT starts_with(k, '{sep}')
                            AND NOT ends_with(k, '{sep}')) AS ok
            FROM trimmed
            GROUP BY k
        )
        SELECT k, c, v, n, ok FROM merged ORDER BY k
    """
    touches_sql = f"""
        CREATE TEMP TABLE touches AS
        SELECT row, unnest(parts) AS ch, (unnest(range(len(parts))))::BIGINT AS pos, len(parts)::BIGINT AS length
        FROM (SELECT rowid AS row, string_split(k, '{PATH_SEPARATOR}') AS parts FROM paths)
    """
    connection = duckdb.connect()
    try:
        connection.execute(paths_sql, {"file": str(file), "columns": columns, "other_whitespace": _OTHER_WHITESPACE})
        if connection.execute("SELECT count(*) FROM paths WHERE NOT ok").fetchall() != [(0,)]:
            raise _NotWhole  # an invalid number, an empty path or channel: the row reader names the record
        per_row = connection.execute("SELECT c, v, n FROM paths ORDER BY rowid").fetchnumpy()
        connection.execute(touches_sql)
        connection.execute(
            "CREATE TEMP TABLE vocabulary AS SELECT ch, "
            "(row_number() OVER (ORDER BY min(row * 4294967296 + pos)) - 1)::BIGINT AS i FROM touches GROUP BY ch"
        )
        channels = tuple(name for (name,) in connection.execute("SELECT ch FROM vocabulary ORDER BY i").fetchall())
        flat = connection.execute(
            "SELECT t.row, t.pos, t.length, v.i FROM touches t JOIN vocabulary v USING (ch) ORDER BY t.row, t.pos"
        ).fetchnumpy()
    except duckdb.Error:
        raise _NotWhole from None
    finally:
        connection.close()
    touches = Touches(
        channel=np.asarray(flat["i"], dtype=np.int64),
        row=np.asarray(flat["row"], dtype=np.int64),
        position=np.asarray(flat["pos"], dtype=np.int64),
        length=np.asarray(flat["length"], dtype=np.int64),
        conversions=np.asarray(per_row["c"], dtype=float),
        value=np.asarray(per_row["v"], dtype=float),
        nulls=np.asarray(per_row["n"], dtype=float),
    )
    return PathsTable.encoded(channels, touches)
