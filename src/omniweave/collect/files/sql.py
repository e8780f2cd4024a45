"""The SQL the importers run, generated from a mapping: the one place it lives (DuckDB dialect).

A file becomes rows of the event log in one streaming query:

    src      the file's rows (numbered, __row = 1-based data row, only when describing errors)
    checked  every mapped column as read (empty = missing) as v<i>, and cast as x<i>
    typed    defaults applied (c<i>) and __bad = some value is missing, not a number, unknown ...
    grouped  one row per record key: line items collected, totals aggregated, values taken once
    final    message id, JSON for context / properties / traits, and __bad

The message id is `events.normalize.deterministic_message_id(kind, *key)` computed in SQL
(`sha256` of the parts joined by U+001F); a test keeps the two in step. A second query,
`errors_query`, runs only when something was bad and says which row, field and why.

The SQL that opens files (`csv_relation`, `parquet_relation`, `json_lines_relation`) and that
keeps the books (ids already logged, rows the CSV reader rejected, Segment batches) is at the end.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import orjson

from omniweave import __version__
from omniweave.collect.files.mapping import Column, Mapping, Value
from omniweave.storage.eventlog import property_columns_sql

LIBRARY = {"name": "omniweave-importer", "version": __version__}
_TRUE = ("true", "t", "yes", "y", "1")
_FALSE = ("false", "f", "no", "n", "0")
_ISO_MS = "%Y-%m-%dT%H:%M:%S.%gZ"


def sql_string(value: str) -> str:
    """A SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def sql_ident(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def sql_literal(value: Any) -> str:
    """A SQL literal for a TOML value (string, number, boolean, date, datetime)."""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, datetime):
        return f"CAST({sql_string(value.isoformat())} AS TIMESTAMPTZ)"
    if isinstance(value, date):
        return f"DATE {sql_string(value.isoformat())}"
    return sql_string(str(value))


def _json_literal(value: Any) -> str:
    return sql_string(orjson.dumps(value).decode())


@dataclass(frozen=True)
class Member:
    """One member of a JSON object: its name, SQL pieces whose concatenation is the value's JSON
    text, and whether the value is never NULL (a NULL value leaves the member out)."""

    name: str
    pieces: tuple[str, ...]
    always: bool = False


def member(name: str, value_sql: str, always: bool = False) -> Member:
    return Member(name, (value_sql,), always)


def _key(name: str) -> str:
    return orjson.dumps(name).decode() + ":"


def json_object(members: list[Member]) -> str:
    """A JSON object as SQL. With a member that is never NULL, that member goes first and the
    object is one `concat` (every value copied once, which matters for big line-item lists);
    otherwise `concat_ws` leaves missing members out."""
    if not members:
        return "'{}'"
    first = next((m for m in members if m.always), None)
    if first is None:
        parts = [f"{sql_string(_key(m.name))} || {' || '.join(m.pieces)}" for m in members]
        return "('{' || concat_ws(',', " + ", ".join(parts) + ") || '}')"
    pieces = [sql_string("{" + _key(first.name)), *first.pieces]
    for m in members:
        if m is first:
            continue
        prefix = sql_string("," + _key(m.name))
        if m.always:
            pieces += [prefix, *m.pieces]
        else:
            value = " || ".join(m.pieces)
            pieces += [f"CASE WHEN ({value}) IS NOT NULL THEN {prefix} END", value]
    return "concat(" + ", ".join(pieces + ["'}'"]) + ")"


def json_value(expr: str, typ: str) -> str:
    """JSON text for a SQL value of a column type (NULL stays NULL)."""
    if typ == "timestamp":
        return f"('\"' || strftime({expr}, '{_ISO_MS}') || '\"')"
    return f"to_json({expr})"


def _external_id(expr: str, kind: str) -> str:
    """One `context.externalIds` entry (NULL when the identifier is missing)."""
    tail = ',"type":' + orjson.dumps(kind).decode() + ',"collection":"users","encoding":"none"}'
    return f"""'{{"id":' || to_json({expr}) || {sql_string(tail)}"""


@dataclass(frozen=True)
class SourceShape:
    """What the SQL needs to know about the file being read (see `collect.files.readers`)."""

    relation: str  # FROM-able SQL with the file's columns
    column_sql: dict[str, str | None]  # mapping column -> SQL reading it from a src row (None: absent)
    column_types: dict[str, str]  # mapping column -> DuckDB type of that SQL ("VARCHAR" for text)
    invalid: str | None = None  # SQL: true when a row could not be parsed at all
    raw: str | None = None  # SQL: the raw text of a row
    numbered_relation: str = ""  # like `relation`, with __row (may be slower: only for errors)
    empty_is_null: bool = False  # the reader already turns empty values into NULL


class MappingSQL:
    """Generates the queries for one mapping over one file."""

    def __init__(self, mapping: Mapping, shape: SourceShape, source_id: str, received_at: datetime):
        self.m = mapping
        self.shape = shape
        self.source_id = source_id
        self.received_at = received_at
        self.cols = list(mapping.columns)
        self.alias = {c.name: f"c{i}" for i, c in enumerate(self.cols)}
        self.keys = list(mapping.key)
        self.grouping = mapping.group is not None

    # -- row level ---------------------------------------------------------------------
    def _clean(self, col: Column) -> str:
        expr = self.shape.column_sql.get(col.name)
        if expr is None:
            return "CAST(NULL AS VARCHAR)"
        if self.shape.column_types.get(col.name, "VARCHAR") in ("VARCHAR", "JSON"):
            # values are taken as written (DuckDB's casts allow spaces around numbers and times);
            # an empty value is a missing one (the CSV reader already reads it as NULL)
            return expr if self.shape.empty_is_null else f"NULLIF({expr}, '')"
        return expr

    def _is_text(self, col: Column) -> bool:
        return self.shape.column_types.get(col.name, "VARCHAR") in ("VARCHAR", "JSON")

    def _cast(self, col: Column, v: str) -> tuple[str, str | None, str]:
        """(SQL casting value `v` to the column's type, SQL true when a present value is bad — with
        `{x}` standing for the cast value —, and the reason a bad value is given)."""
        text = f"CAST({v} AS VARCHAR)"
        if col.type == "string":
            if col.values:
                cases = " ".join(f"WHEN {sql_string(a.lower())} THEN {sql_string(a)}" for a in col.values)
                expected = ", ".join(col.values)
                return (
                    f"(CASE lower(trim({text})) {cases} END)",
                    "{x} IS NULL",
                    f"unknown value; expected one of {expected}",
                )
            return (v if self._is_text(col) else text), None, ""
        if col.type == "int":
            return (
                f"TRY_CAST({v} AS BIGINT)",
                f"({{x}} IS NULL OR TRY_CAST({v} AS DOUBLE) <> {{x}})",
                "not a whole number",
            )
        if col.type == "float":
            return f"TRY_CAST({v} AS DOUBLE)", "NOT coalesce(isfinite({x}), FALSE)", "not a number"
        if col.type == "bool":
            lowered = f"lower(trim({text}))"
            truthy, falsy = ", ".join(map(sql_string, _TRUE)), ", ".join(map(sql_string, _FALSE))
            expr = f"(CASE WHEN {lowered} IN ({truthy}) THEN TRUE WHEN {lowered} IN ({falsy}) THEN FALSE END)"
            return expr, "{x} IS NULL", "not a boolean (expected true/false, yes/no or 1/0)"
        fmt = col.format if self._is_text(col) else None
        if col.type == "date":
            if fmt:
                return (
                    f"CAST(try_strptime({v}, {sql_string(fmt)}) AS DATE)",
                    "{x} IS NULL",
                    f"not a date in the format {fmt}",
                )
            return f"TRY_CAST({v} AS DATE)", "{x} IS NULL", "not a date (expected YYYY-MM-DD)"
        if fmt in ("epoch_s", "epoch_ms"):  # timestamps from here on
            number = f"TRY_CAST({v} AS DOUBLE)" + (" / 1000.0" if fmt == "epoch_ms" else "")
            unit = "seconds" if fmt == "epoch_s" else "milliseconds"
            return (
                f"(CASE WHEN abs({number}) < 1e11 THEN to_timestamp({number}) END)",
                "{x} IS NULL",
                f"not a timestamp in {unit} since 1970",
            )
        if fmt and fmt != "iso":
            return (
                f"CAST(try_strptime({v}, {sql_string(fmt)}) AS TIMESTAMPTZ)",
                "{x} IS NULL",
                f"not a timestamp in the format {fmt}",
            )
        return f"TRY_CAST({v} AS TIMESTAMPTZ)", "{x} IS NULL", "not an ISO 8601 timestamp (e.g. 2024-05-01T12:00:00Z)"

    def _checks(self) -> list[tuple[str, str, str]]:
        """Per column: (SQL true when a required value is missing, SQL true when a value is bad, reason)."""
        checks = []
        for i, col in enumerate(self.cols):
            _, bad, reason = self._cast(col, f"v{i}")
            missing = f"v{i} IS NULL" if col.required and col.default is None else "FALSE"
            present_bad = f"(v{i} IS NOT NULL AND {bad.replace('{x}', f'x{i}')})" if bad else "FALSE"
            checks.append((missing, present_bad, reason))
        return checks

    def _typed(self, numbered: bool) -> str:
        """The `checked` and `typed` relations (see the module docstring)."""
        flags = ["__row"] if numbered else []
        if self.shape.invalid:
            flags.append(f"({self.shape.invalid}) AS __invalid")
        if self.shape.raw and numbered:
            flags.append(f"CAST({self.shape.raw} AS VARCHAR) AS __raw")
        cleaned = flags + [f"{self._clean(c)} AS v{i}" for i, c in enumerate(self.cols)]
        casts = [f"{self._cast(c, f'v{i}')[0]} AS x{i}" for i, c in enumerate(self.cols)]
        checked = f"SELECT *, {', '.join(casts)} FROM (SELECT {', '.join(cleaned)} FROM src)"
        outs = []
        for i, col in enumerate(self.cols):
            default = col.default
            outs.append(f"COALESCE(x{i}, {sql_literal(default)}) AS c{i}" if default is not None else f"x{i} AS c{i}")
        bad = [f"{m} OR {b}" for m, b, _ in self._checks() if (m, b) != ("FALSE", "FALSE")]
        if self.shape.invalid:
            bad.insert(0, "__invalid")
        outs.append(f"({' OR '.join(bad) if bad else 'FALSE'}) AS __bad")
        relation = self.shape.numbered_relation if numbered else self.shape.relation
        return f"src AS (SELECT * FROM {relation}),\nchecked AS ({checked}),\ntyped AS (SELECT *, {', '.join(outs)} FROM checked)"

    # -- helpers on typed columns ------------------------------------------------------
    def _col(self, name: str) -> str:
        return self.alias[name]

    def _type(self, name: str) -> str:
        return self.m.column(name).type

    def _member(self, name: str, value: Value) -> Member:
        """A JSON member for a mapped value; never NULL for fixed values and for columns that are
        required or have a default (rows missing them are rejected or filled)."""
        if value.column is None:
            return member(name, _json_literal(value.constant), True)
        col = self.m.column(value.column)
        return member(name, self._value_json(value, self._col), col.required or col.default is not None)

    def _value_json(self, value: Value, ref: Any) -> str:
        if value.column is None:
            return _json_literal(value.constant)
        return json_value(ref(value.column), self._type(value.column))

    def _item_value(self, value: Value) -> str:
        """A line-item field inside a struct that is turned into JSON as a whole."""
        if value.column is None:
            return (
                sql_literal(value.constant)
                if not isinstance(value.constant, list)
                else f"CAST({_json_literal(value.constant)} AS JSON)"
            )
        col = self._col(value.column)
        return f"strftime({col}, '{_ISO_MS}')" if self._type(value.column) == "timestamp" else col

    def _key_text(self, ref: Any) -> list[str]:
        return [f"CAST({ref(k)} AS VARCHAR)" for k in self.keys]

    def _joined(self, separator: str) -> str:
        """The record key as one string, its parts joined by `separator`."""
        parts = self._key_text(self._col)
        sep = "chr(31)" if separator == "\x1f" else sql_string(separator)
        return parts[0] if len(parts) == 1 else f"concat_ws({sep}, {', '.join(parts)})"

    def _total(self, tree: tuple[Any, ...]) -> tuple[str, str]:
        """(SQL aggregate over typed rows, JSON type) for a parsed total."""
        kind = tree[0]
        if kind == "count":
            return "count(*)", "int"
        if kind == "round":
            inner, _ = self._total(tree[1])
            return f"round({inner}, {tree[2]})", "float"
        if kind == "sum":
            return f"sum({self._arith(tree[1])})", "float"
        col = self._col(tree[1])
        if kind == "distinct":
            # missing values are left out before collecting: list_distinct drops them anyway, and most
            # line items have none (a till's coupon column), so the lists stay short
            values = f"list({col}) FILTER (WHERE {col} IS NOT NULL)"
            return f"(CASE WHEN len(list_distinct({values})) > 0 THEN list_sort(list_distinct({values})) END)", "list"
        return f"{kind}({col})", self._type(tree[1])

    def _arith(self, expr: tuple[Any, ...]) -> str:
        kind = expr[0]
        if kind == "col":
            return self._col(expr[1])
        if kind == "num":
            return expr[1]
        if kind == "neg":
            return f"(-{self._arith(expr[1])})"
        return f"({self._arith(expr[2])} {expr[1]} {self._arith(expr[3])})"

    # -- the main query ------------------------------------------------------------------
    def _event_columns(self) -> list[str]:
        """Columns read once per event: if a record's rows disagree, the smallest value is taken."""
        m = self.m
        names: list[str] = []
        values: list[Value] = [v for _, v in m.traits + m.properties + m.campaign + m.spend + m.fields]
        if m.channel:
            values.append(m.channel)
        names += [v.column for v in values if v.column]
        names += [c for _, c in m.identifiers]
        names += [c for c in (m.timestamp, m.user_id, m.anonymous_id) if c]
        if m.event and m.event.column:
            names.append(m.event.column)
        return [n for n in dict.fromkeys(names) if n not in self.keys]

    def _grouped(self) -> str:
        key_cols = [self._col(k) for k in self.keys]
        outs = list(key_cols) + ["count(*) AS __rows"]
        outs.append("bool_or(__bad) AS __bad" if self.grouping else "__bad")
        for name in self._event_columns():
            outs.append(f"min({self._col(name)}) AS {self._col(name)}")
        group = self.m.group
        if group:
            for i, (_, total) in enumerate(group.totals):
                outs.append(f"{self._total(total.tree)[0]} AS t{i}")
            if group.items:
                fields = ", ".join(f"{sql_string(n)}: {self._item_value(v)}" for n, v in group.item)
                # string_agg keeps file order except, rarely, for a record split between two
                # parallel readers; an ordered aggregate would cost a third of the import
                outs.append(f"string_agg(CAST(to_json({{{fields}}}) AS VARCHAR), ',') AS __items")
        by = key_cols + ([] if self.grouping else ["__bad"])
        return f"grouped AS (SELECT {', '.join(outs)} FROM typed GROUP BY {', '.join(by)})"

    def _message_id(self) -> str:
        kind = sql_string(self.m.kind)
        parts = ", ".join([kind] + self._key_text(self._col))
        return f"({sql_string(self.m.kind + '-')} || substr(sha256(concat_ws(chr(31), {parts})), 1, 32))"

    def _plain(self, value: Value | None, default: str = "CAST(NULL AS VARCHAR)") -> str:
        if value is None:
            return default
        if value.column is None:
            return (
                sql_literal(value.constant) if not isinstance(value.constant, list) else _json_literal(value.constant)
            )
        return f"CAST({self._col(value.column)} AS VARCHAR)"

    def _event_select(self) -> list[str]:
        m = self.m
        ref = self._col
        channel = self._plain(m.channel, "'other'")
        if m.channel and m.channel.column:
            channel = f"COALESCE(lower({channel}), 'other')"
        user = f"CAST({ref(m.user_id)} AS VARCHAR)" if m.user_id else "CAST(NULL AS VARCHAR)"
        fallback = f"{sql_string(f'offline:{m.kind}:')} || {self._joined(':')}"
        anonymous = f"CASE WHEN {user} IS NULL THEN {fallback} END" if m.user_id else fallback
        if m.anonymous_id:
            anonymous = f"COALESCE(CAST({ref(m.anonymous_id)} AS VARCHAR), {anonymous})"
        if m.event is None:
            event = "CAST(NULL AS VARCHAR)"
        elif m.event.fixed:
            event = sql_string(m.event.fixed)
        else:
            cases = " ".join(f"WHEN {sql_string(v)} THEN {sql_string(e)}" for v, e in m.event.values)
            event = f"(CASE {ref(m.event.column)} {cases} END)"  # type: ignore[arg-type]
        ts = f"CAST({ref(m.timestamp)} AS TIMESTAMPTZ)"  # type: ignore[arg-type]
        campaign = dict(m.campaign)

        external = [_external_id(f"CAST({ref(col)} AS VARCHAR)", kind) for kind, col in m.identifiers]
        traits = json_object([self._member(n, v) for n, v in m.traits])
        context = [member("library", _json_literal(LIBRARY), True), member("source_kind", _json_literal(m.kind), True)]
        if external:
            context.append(member("externalIds", f"('[' || NULLIF(concat_ws(',', {', '.join(external)}), '') || ']')"))
        if m.traits and m.type != "identify":
            context.append(member("traits", f"NULLIF({traits}, '{{}}')"))
        if m.campaign:
            camp = json_object([self._member(n, v) for n, v in m.campaign])
            context.append(member("campaign", f"NULLIF({camp}, '{{}}')"))

        props = [self._member(n, v) for n, v in m.properties]
        if m.group:
            for i, (name, total) in enumerate(m.group.totals):
                kind = total.tree[0]
                props.append(member(name, json_value(f"t{i}", self._total(total.tree)[1]), kind == "count"))
            if m.group.items:  # every record has at least one row, so the list is never empty
                props.append(Member(m.group.items, ("'['", "__items", "']'"), True))
        props.append(member("channel", f"to_json({channel})", True))

        received = f"CAST({sql_string(self.received_at.isoformat())} AS TIMESTAMPTZ)"
        return [
            f"{self._message_id()} AS message_id",
            f"{sql_string(self.source_id)} AS source",
            f"{sql_string(m.type)} AS type",
            f"{event} AS event",
            f"{user} AS user_id",
            f"{anonymous} AS anonymous_id",
            "CAST(NULL AS VARCHAR) AS group_id",
            "CAST(NULL AS VARCHAR) AS previous_id",
            f"{channel} AS channel",
            f"{ts} AS timestamp",
            f"{ts} AS original_timestamp",
            "CAST(NULL AS TIMESTAMPTZ) AS sent_at",
            f"{received} AS received_at",
            f"{self._plain(campaign.get('source'))} AS campaign_source",
            f"{self._plain(campaign.get('medium'))} AS campaign_medium",
            f"{self._plain(campaign.get('name'))} AS campaign_name",
            f"{json_object(context)} AS context",
            f"{json_object(props)} AS properties",
            f"{traits if m.type == 'identify' or m.state_traits else chr(39) + '{}' + chr(39)} AS traits",
            "'{}' AS integrations",
        ]

    def _spend_select(self) -> list[str]:
        spend = dict(self.m.spend)
        casts = {"date": "DATE", "impressions": "BIGINT", "clicks": "BIGINT", "spend": "DOUBLE"}
        outs = [f"{self._message_id()} AS spend_id", f"{sql_string(self.source_id)} AS source"]
        for name in ("date", "channel", "platform", "campaign", "impressions", "clicks", "spend", "currency"):
            value = spend.get(name)
            expr = (
                "NULL" if value is None else (self._col(value.column) if value.column else sql_literal(value.constant))
            )
            outs.append(f"CAST({expr} AS {casts.get(name, 'VARCHAR')}) AS {name}")
        return outs

    def _reference_select(self) -> list[str]:
        outs = [f"{self._col(k)} AS {sql_ident(k)}" for k in self.keys]
        outs += [f"{self._col(str(value.column))} AS {sql_ident(name)}" for name, value in self.m.fields]
        return outs

    def main_query(self) -> str:
        """Rows for the log (EVENT_SCHEMA or SPEND_SCHEMA columns) plus, per row:
        __rows (file rows in it), __bad (some row is bad) and __key (the record key)."""
        body = {"events": self._event_select, "spend": self._spend_select, "reference": self._reference_select}[
            self.m.target
        ]()
        key = f"{self._joined(chr(31))} AS __key"
        query = (
            f"WITH {self._typed(numbered=False)},\n{self._grouped()}\n"
            f"SELECT {', '.join(body)}, __rows, __bad, {key} FROM grouped"
        )
        if self.m.target == "events":  # the log's flat copies of properties, read here, vectorised
            query = f"SELECT *, {property_columns_sql('properties')} FROM ({query})"
        return query

    def errors_query(self, with_keys: bool) -> tuple[str, list[tuple[int, str]]]:
        """Bad rows (and, with `with_keys`, every row whose key is in the list parameter $1), with
        per column the reason (e<i>) and the value read (g<i>). Returns (SQL, [(i, column name)])."""
        outs = ["__row", "__bad"]
        if self.shape.invalid:
            outs.append("__invalid")
        if self.shape.raw:
            outs.append("__raw")
        names = []
        for i, (missing, bad, reason) in enumerate(self._checks()):
            if (missing, bad) == ("FALSE", "FALSE"):
                continue
            outs.append(
                f"CASE WHEN {missing} THEN 'missing required value' WHEN {bad} THEN {sql_string(reason)} END AS e{i}"
            )
            outs.append(f"CAST(v{i} AS VARCHAR) AS g{i}")
            names.append((i, self.cols[i].name))
        key = self._joined(chr(31))
        outs.append(f"{key} AS __key")
        where = "__bad" + (f" OR {key} IN (SELECT unnest($1::VARCHAR[]))" if with_keys else "")
        sql = f"WITH {self._typed(numbered=True)}\nSELECT {', '.join(outs)} FROM typed WHERE {where} ORDER BY __row"
        return sql, names


# --- reading files and bookkeeping -------------------------------------------------------------


def _path(path: object) -> str:
    return sql_string(str(path))


def csv_relation(path: object, names: list[str], delimiter: str) -> tuple[str, str]:
    """(relation, numbered relation) reading a CSV file with the given header, every value as text.
    Rows that do not split into the header's columns go to DuckDB's `reject_errors` table. A
    streaming row_number() keeps file order but makes DuckDB read on one thread, so only the
    query describing bad rows numbers them."""
    columns = "{" + ", ".join(f"{sql_string(n)}: 'VARCHAR'" for n in names) + "}"
    relation = (
        f"read_csv({_path(path)}, header = true, auto_detect = false, columns = {columns}, "
        f"delim = {sql_string(delimiter)}, quote = '\"', escape = '\"', store_rejects = true)"
    )
    return relation, f"(SELECT row_number() OVER () AS __row, * FROM {relation})"


CSV_REJECTS = (
    "SELECT line, any_value(column_name), any_value(error_type), any_value(csv_line), "
    "any_value(error_message) FROM reject_errors GROUP BY line ORDER BY line"
)
"""Rows the CSV reader rejected: (line, column, error type, the line's text, message)."""


def parquet_columns(path: object) -> str:
    """DESCRIBE a Parquet file's columns."""
    return f"DESCRIBE SELECT * FROM read_parquet({_path(path)})"


def parquet_relation(path: object) -> str:
    """A Parquet file's rows, numbered in file order."""
    return (
        f"(SELECT file_row_number + 1 AS __row, * EXCLUDE (file_row_number) "
        f"FROM read_parquet({_path(path)}, file_row_number = true))"
    )


def json_lines_relation(table: str) -> str:
    """Rows of a registered Arrow table (__row, __line): __obj is the line as JSON when it is an
    object, else NULL."""
    return (
        f"(SELECT __row, __line, CASE WHEN json_valid(__line) AND json_type(__line) = 'OBJECT' "
        f"THEN CAST(__line AS JSON) END AS __obj FROM {table})"
    )


def json_field(name: str) -> str:
    """The value of key `name` of __obj, as text (JSON text for objects and arrays)."""
    path = '$."' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"json_extract_string(__obj, {sql_string(path)})"


def column(name: str) -> str:
    """A column of a CSV or Parquet relation."""
    return sql_ident(name)


def logged_ids(dataset_url: str, id_column: str, candidates: str) -> str:
    """The ids of table `candidates` (column id) that a dataset already holds for the source in
    parameter $1. Only the candidates are hashed; the log's ids stream past them."""
    pattern = sql_string(dataset_url + "/**/*.parquet")
    return (
        f"SELECT DISTINCT {sql_ident(id_column)} AS id FROM read_parquet({pattern}, hive_partitioning = true, "
        f"union_by_name = true) WHERE source = $1 AND {sql_ident(id_column)} IN (SELECT id FROM {candidates})"
    )


def seen_ids(table: str = "__seen") -> str:
    """An empty table of ids seen so far in one file."""
    return f"CREATE OR REPLACE TEMP TABLE {table} (id VARCHAR)"


def new_segment_events(batch: str, seen: str = "__seen") -> str:
    """A batch's events (EVENT_SCHEMA columns and __row) whose id was not seen earlier in the
    file, each id once (the first), in file order."""
    return (
        f"SELECT * EXCLUDE (__row) FROM {batch} WHERE message_id NOT IN (SELECT id FROM {seen}) "
        f"QUALIFY row_number() OVER (PARTITION BY message_id ORDER BY __row) = 1 ORDER BY __row"
    )


def remember_ids(table: str, seen: str = "__seen") -> str:
    """Add the message ids of `table` to the ids seen."""
    return f"INSERT INTO {seen} SELECT message_id FROM {table}"
