"""Mappings: declarative descriptions of how the rows of a file become events (or spend rows, or a reference
dataset such as the list of stores or products).

A mapping is a TOML file (the format is documented in docs/importers.md); every built-in source
kind is one (`collect/files/mappings/<kind>.toml`), so the engine knows nothing about tills or
coupons. `load_mapping` reads and validates one, naming the key at fault and what is allowed.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from functools import partial
from importlib import resources
from pathlib import Path
from typing import Any

from omniweave.collect.files.totals import numeric_columns, parse_total
from omniweave.errors import InputError

COLUMN_TYPES = ("string", "int", "float", "bool", "date", "timestamp")
EVENT_TYPES = ("track", "identify", "page", "screen")
TARGETS = ("events", "spend", "reference")
RESERVED_DATASETS = frozenset({"events", "spend", "identities", "profiles", "recommendations", "segments"})
"""Warehouse datasets a reference mapping's kind may not name (a reference dataset is named after its kind)."""
CAMPAIGN_FIELDS = ("source", "medium", "name", "term", "content")
SPEND_FIELDS = {
    "date": ("date", "timestamp"),
    "channel": ("string",),
    "platform": ("string",),
    "campaign": ("string",),
    "impressions": ("int",),
    "clicks": ("int",),
    "spend": ("float", "int"),
    "currency": ("string",),
}
SPEND_REQUIRED = ("date", "channel", "campaign", "spend")
TIMESTAMP_FORMATS = ("iso", "epoch_s", "epoch_ms")
_IDENTIFIER = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_KIND = re.compile(r"^[a-z][a-z0-9_]*$")
_TOP_KEYS = {
    "kind",
    "description",
    "target",
    "type",
    "event",
    "channel",
    "key",
    "timestamp",
    "user_id",
    "anonymous_id",
    "columns",
    "identifiers",
    "traits",
    "properties",
    "campaign",
    "group",
    "spend",
    "state_traits",
    "announce",
    "fields",
}
_COLUMN_KEYS = {"type", "required", "default", "format", "values"}


class MappingError(InputError):
    """A mapping file is not valid: names the file, the key and what is allowed."""


# --- the model ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    """One input column: its type, whether a value is required, a default and allowed values."""

    name: str
    type: str = "string"
    required: bool = False
    default: Any = None
    format: str | None = None
    values: tuple[str, ...] = ()


@dataclass(frozen=True)
class Value:
    """Where an output field comes from: an input column, or a fixed value."""

    column: str | None = None
    constant: Any = None


@dataclass(frozen=True)
class EventName:
    """The event name: fixed, or looked up from a column's value in a value map."""

    fixed: str | None = None
    column: str | None = None
    values: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Total:
    """An aggregate over the rows of a group, parsed from e.g. `round(sum(qty * price), 2)`."""

    text: str
    tree: tuple[Any, ...]


@dataclass(frozen=True)
class Group:
    """Rows that share the key are one event; `items` lists one object per row, `totals` aggregate."""

    items: str | None = None
    item: tuple[tuple[str, Value], ...] = ()
    totals: tuple[tuple[str, Total], ...] = ()


@dataclass(frozen=True)
class Mapping:
    """A validated mapping. Field order in the TOML file is kept (it is the order in the JSON)."""

    kind: str
    target: str = "events"
    description: str = ""
    type: str = "track"
    event: EventName | None = None
    channel: Value | None = None
    key: tuple[str, ...] = ()
    timestamp: str | None = None
    user_id: str | None = None
    anonymous_id: str | None = None
    identifiers: tuple[tuple[str, str], ...] = ()
    traits: tuple[tuple[str, Value], ...] = ()
    properties: tuple[tuple[str, Value], ...] = ()
    campaign: tuple[tuple[str, Value], ...] = ()
    group: Group | None = None
    spend: tuple[tuple[str, Value], ...] = ()
    fields: tuple[tuple[str, Value], ...] = ()  # target "reference": the dataset's columns besides the key
    columns: tuple[Column, ...] = field(default=())
    state_traits: bool = False  # a track whose traits also state the person's traits (top-level `traits`)
    announce: bool = False  # its events also go to the inbox's real-time consumers (journeys), logged once
    origin: str = ""

    def column(self, name: str) -> Column:
        """The declaration of input column `name` (every referenced column has one)."""
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(name)

    @property
    def required_columns(self) -> tuple[str, ...]:
        """Columns that must exist in the file (a value is required, and there is no default)."""
        return tuple(c.name for c in self.columns if c.required and c.default is None)


# --- loading --------------------------------------------------------------------------------


def builtin_kinds() -> list[str]:
    """The source kinds that ship with omniweave (one TOML mapping each)."""
    folder = resources.files("omniweave.collect.files") / "mappings"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def builtin_mapping(kind: str) -> Mapping:
    """The built-in mapping of a source kind, e.g. `till`."""
    if kind not in builtin_kinds():
        raise InputError(
            f"unknown source kind {kind!r}; built-in kinds: {', '.join(builtin_kinds() + ['segment'])}"
            " (or give --mapping FILE.toml for columns of your own)"
        )
    text = (resources.files("omniweave.collect.files") / "mappings" / f"{kind}.toml").read_text()
    return parse_mapping(text, origin=f"built-in mapping {kind}.toml", default_kind=kind)


def load_mapping(path: str | Path, kind: str | None = None) -> Mapping:
    """Read and validate a mapping file; `kind` (from the command line) overrides its `kind`."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise MappingError(f"mapping {path}: cannot be read ({exc.strerror})") from exc
    default = kind if kind and kind != "custom" else re.sub(r"[^a-z0-9_]", "_", path.stem.lower())
    mapping = parse_mapping(text, origin=f"mapping {path}", default_kind=default)
    if kind and kind != "custom" and mapping.kind != kind:
        if not _KIND.match(kind):
            raise MappingError(f"source kind {kind!r}: expected a lower-case name like 'pos_sales'")
        mapping = replace(mapping, kind=kind)
    return mapping


def parse_mapping(text: str, origin: str = "mapping", default_kind: str = "custom") -> Mapping:
    """Parse and validate the TOML text of a mapping."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise MappingError(f"{origin}: not valid TOML: {exc}") from exc
    return _Builder(origin, data, default_kind).build()


class _Builder:
    """Validates the parsed TOML and collects every column the mapping refers to."""

    def __init__(self, origin: str, data: dict[str, Any], default_kind: str):
        self.origin = origin
        self.data = data
        self.default_kind = default_kind
        self.declared: dict[str, Column] = {}
        self.used: dict[str, None] = {}  # insertion-ordered set of referenced columns

    def fail(self, key: str, reason: str) -> MappingError:
        return MappingError(f"{self.origin}: {key}: {reason}")

    def build(self) -> Mapping:
        d = self.data
        unknown = sorted(set(d) - _TOP_KEYS)
        if unknown:
            raise self.fail(unknown[0], f"unknown key; allowed keys: {', '.join(sorted(_TOP_KEYS))}")
        kind = d.get("kind", self.default_kind)
        if not isinstance(kind, str) or not _KIND.match(kind):
            raise self.fail("kind", f"expected a lower-case name like 'pos_sales', got {kind!r}")
        target = d.get("target", "events")
        if target not in TARGETS:
            raise self.fail("target", f"expected one of {', '.join(TARGETS)}, got {target!r}")
        self._columns(d.get("columns", {}))
        key = self._key(d.get("key"))
        if target == "spend":
            return self._spend_mapping(kind, key)
        if target == "reference":
            return self._reference_mapping(kind, key)
        return self._event_mapping(kind, key)

    # -- pieces ------------------------------------------------------------------------
    def _columns(self, raw: Any) -> None:
        if not isinstance(raw, dict):
            raise self.fail("columns", "expected a table of column declarations: [columns.NAME]")
        for name, spec in raw.items():
            where = f"columns.{name}"
            if not isinstance(spec, dict):
                raise self.fail(where, 'expected a table, e.g. { type = "int", required = true }')
            unknown = sorted(set(spec) - _COLUMN_KEYS)
            if unknown:
                raise self.fail(f"{where}.{unknown[0]}", f"unknown key; allowed: {', '.join(sorted(_COLUMN_KEYS))}")
            typ = spec.get("type", "string")
            if typ not in COLUMN_TYPES:
                raise self.fail(f"{where}.type", f"expected one of {', '.join(COLUMN_TYPES)}, got {typ!r}")
            required = spec.get("required", False)
            if not isinstance(required, bool):
                raise self.fail(f"{where}.required", f"expected true or false, got {required!r}")
            fmt = spec.get("format")
            if fmt is not None:
                if typ not in ("date", "timestamp") or not isinstance(fmt, str) or not fmt:
                    raise self.fail(
                        f"{where}.format",
                        "only date and timestamp columns take a format: "
                        "a strptime pattern like '%d/%m/%Y %H:%M', or for timestamps "
                        f"{', '.join(TIMESTAMP_FORMATS)}",
                    )
                if typ == "date" and fmt in TIMESTAMP_FORMATS[1:]:
                    raise self.fail(f"{where}.format", f"{fmt!r} is only for timestamp columns")
            values = spec.get("values", [])
            if values and (
                typ != "string" or not isinstance(values, list) or not all(isinstance(v, str) and v for v in values)
            ):
                raise self.fail(f"{where}.values", "only string columns take values: a list of allowed strings")
            default = spec.get("default")
            if default is not None:
                default = self._check_default(where, typ, default, values)
            self.declared[name] = Column(name, typ, required, default, fmt, tuple(values))

    def _check_default(self, where: str, typ: str, default: Any, values: list[str]) -> Any:
        ok = {
            "string": isinstance(default, str),
            "int": isinstance(default, int) and not isinstance(default, bool),
            "float": isinstance(default, (int, float)) and not isinstance(default, bool),
            "bool": isinstance(default, bool),
            "date": isinstance(default, date) and not isinstance(default, datetime),
            "timestamp": isinstance(default, datetime),
        }[typ]
        if not ok:
            raise self.fail(f"{where}.default", f"expected a TOML {typ} value, got {default!r}")
        if values and default not in values:
            raise self.fail(f"{where}.default", f"{default!r} is not one of the allowed values {values}")
        return default

    def _use(self, name: Any, where: str) -> str:
        if not isinstance(name, str) or not name:
            raise self.fail(where, f"expected a column name (a non-empty string), got {name!r}")
        self.used[name] = None
        return name

    def _value(self, raw: Any, where: str) -> Value:
        if isinstance(raw, str):
            return Value(column=self._use(raw, where))
        if isinstance(raw, dict):
            if set(raw) == {"column"}:
                return Value(column=self._use(raw["column"], where))
            if set(raw) == {"value"}:
                return Value(constant=self._constant(raw["value"], where))
        elif isinstance(raw, (bool, int, float)):
            return Value(constant=raw)
        raise self.fail(where, f'expected a column name, {{ column = "NAME" }} or {{ value = CONSTANT }}, got {raw!r}')

    def _constant(self, value: Any, where: str) -> Any:
        if isinstance(value, (str, bool, int, float)):
            return value
        if isinstance(value, list) and all(isinstance(v, (str, bool, int, float)) for v in value):
            return value
        raise self.fail(where, f"a fixed value must be a string, number, boolean or list of them, got {value!r}")

    def _values(self, raw: Any, where: str, allowed: tuple[str, ...] | None = None) -> tuple[tuple[str, Value], ...]:
        if raw is None:
            return ()
        if not isinstance(raw, dict):
            raise self.fail(where, f"expected a table of NAME = column, got {raw!r}")
        out = []
        for name, spec in raw.items():
            if allowed is not None and name not in allowed:
                raise self.fail(f"{where}.{name}", f"unknown field; allowed: {', '.join(allowed)}")
            out.append((name, self._value(spec, f"{where}.{name}")))
        return tuple(out)

    def _key(self, raw: Any) -> tuple[str, ...]:
        if isinstance(raw, str):
            raw = [raw]
        if not isinstance(raw, list) or not raw:
            raise self.fail("key", 'expected the column(s) that identify one record, e.g. key = ["order_id"]')
        return tuple(self._use(k, "key") for k in raw)

    def _optional_column(self, key: str) -> str | None:
        raw = self.data.get(key)
        return None if raw is None else self._use(raw, key)

    def _event_name(self, typ: str) -> EventName | None:
        raw = self.data.get("event")
        if raw is None:
            if typ == "track":
                raise self.fail(
                    "event",
                    'a track mapping needs an event name: event = "Order Completed" '
                    'or event = { column = "type", values = { a = "Event A" } }',
                )
            return None
        if typ == "identify":
            raise self.fail("event", "an identify mapping has no event name; remove the key")
        if isinstance(raw, str) and raw.strip():
            return EventName(fixed=raw.strip())
        if isinstance(raw, dict) and set(raw) == {"column", "values"}:
            column = self._use(raw["column"], "event.column")
            values = raw["values"]
            if not isinstance(values, dict) or not values or not all(isinstance(v, str) and v for v in values.values()):
                raise self.fail(
                    "event.values",
                    'expected a table mapping column values to event names, e.g. { opened = "Email Opened" }',
                )
            return EventName(column=column, values=tuple(values.items()))
        raise self.fail(
            "event", f'expected an event name, or {{ column = "NAME", values = {{ value = "Event" }} }}, got {raw!r}'
        )

    def _channel(self, raw: Any) -> Value | None:
        if raw is None:
            return None
        if isinstance(raw, str) and raw.strip():
            return Value(constant=raw.strip().lower())
        if isinstance(raw, dict) and set(raw) == {"column"}:
            return Value(column=self._use(raw["column"], "channel.column"))
        raise self.fail("channel", f'expected a channel name like "store" or {{ column = "NAME" }}, got {raw!r}')

    def _identifiers(self) -> tuple[tuple[str, str], ...]:
        raw = self.data.get("identifiers", {})
        if not isinstance(raw, dict):
            raise self.fail("identifiers", "expected a table of IDENTIFIER_TYPE = column")
        out = []
        for name, column in raw.items():
            if not _IDENTIFIER.match(name):
                raise self.fail(f"identifiers.{name}", "an identifier type is a name like loyalty_card, email, phone")
            out.append((name, self._use(column, f"identifiers.{name}")))
        return tuple(out)

    def _group(self) -> Group | None:
        raw = self.data.get("group")
        if raw is None:
            return None
        if not isinstance(raw, dict) or set(raw) - {"items", "item", "totals"}:
            raise self.fail("group", "expected a table with items, [group.item] and [group.totals]")
        items = raw.get("items")
        if items is not None and (not isinstance(items, str) or not items):
            raise self.fail("group.items", 'expected the property name of the line-item list, e.g. "products"')
        item = self._values(raw.get("item"), "group.item")
        if item and not items:
            raise self.fail("group.items", '[group.item] needs items = "PROPERTY" to name the list')
        totals_raw = raw.get("totals", {})
        if not isinstance(totals_raw, dict):
            raise self.fail("group.totals", 'expected a table of NAME = "sum(column)"')
        totals = []
        for name, text in totals_raw.items():
            where = f"group.totals.{name}"
            if not isinstance(text, str):
                raise self.fail(where, f'expected an aggregate like "sum(quantity * price)", got {text!r}')
            tree = parse_total(text, partial(self._use, where=where), partial(self.fail, where))
            totals.append((name, Total(text, tree)))
        return Group(items, item, tuple(totals))

    def _finish_columns(self) -> tuple[Column, ...]:
        cols = []
        for name in self.used:
            cols.append(self.declared.get(name, Column(name)))
        for name in self.declared:
            if name not in self.used:
                raise self.fail(f"columns.{name}", "declared but not used anywhere in the mapping")
        return tuple(cols)

    def _force(self, cols: tuple[Column, ...], names: set[str], typ: str | None = None) -> tuple[Column, ...]:
        out = []
        for c in cols:
            if c.name in names:
                c = replace(c, required=True)
                if typ and c.name not in self.declared:
                    c = replace(c, type=typ)
            out.append(c)
        return tuple(out)

    def _check_types(self, cols: tuple[Column, ...], group: Group | None) -> None:
        by_name = {c.name: c for c in cols}
        ts = self.data.get("timestamp")
        if ts is not None and by_name[ts].type not in ("timestamp", "date"):
            raise self.fail(
                f"columns.{ts}.type", f"the timestamp column must be a timestamp or date, not {by_name[ts].type}"
            )
        for name, total in group.totals if group else ():
            for col in numeric_columns(total.tree):
                if by_name[col].type not in ("int", "float"):
                    raise self.fail(
                        f"group.totals.{name}",
                        f"column {col!r} is used in arithmetic; declare it "
                        f'with type = "int" or "float" under [columns.{col}]',
                    )

    def _event_mapping(self, kind: str, key: tuple[str, ...]) -> Mapping:
        d = self.data
        if "spend" in d:
            raise self.fail("spend", 'only a mapping with target = "spend" has a [spend] table')
        typ = d.get("type", "track")
        if typ not in EVENT_TYPES:
            raise self.fail("type", f"expected one of {', '.join(EVENT_TYPES)}, got {typ!r}")
        event = self._event_name(typ)
        channel = self._channel(d.get("channel"))
        if d.get("timestamp") is None:
            raise self.fail("timestamp", "expected the column holding the time of each record")
        timestamp = self._use(d["timestamp"], "timestamp")
        user_id = self._optional_column("user_id")
        anonymous_id = self._optional_column("anonymous_id")
        identifiers = self._identifiers()
        traits = self._values(d.get("traits"), "traits")
        state_traits = d.get("state_traits", False)
        if not isinstance(state_traits, bool):
            raise self.fail("state_traits", f"expected true or false, got {state_traits!r}")
        announce = d.get("announce", False)
        if not isinstance(announce, bool):
            raise self.fail("announce", f"expected true or false, got {announce!r}")
        properties = self._values(d.get("properties"), "properties")
        campaign = self._values(d.get("campaign"), "campaign", CAMPAIGN_FIELDS)
        group = self._group()
        cols = self._finish_columns()
        cols = self._force(cols, set(key))
        cols = self._force(cols, {timestamp}, "timestamp")
        if event and event.column:
            allowed = tuple(v for v, _ in event.values)
            cols = tuple(
                replace(c, required=True, values=c.values or allowed) if c.name == event.column else c for c in cols
            )
            col = next(c for c in cols if c.name == event.column)
            missing = [v for v in col.values if v not in allowed]
            if col.type != "string" or missing:
                raise self.fail(
                    "event.values",
                    f"every allowed value of column {event.column!r} needs an event name; missing: {missing}",
                )
        self._check_types(cols, group)
        return Mapping(
            kind=kind,
            target="events",
            description=str(d.get("description", "")),
            type=typ,
            event=event,
            channel=channel,
            key=key,
            timestamp=timestamp,
            user_id=user_id,
            anonymous_id=anonymous_id,
            identifiers=identifiers,
            traits=traits,
            properties=properties,
            campaign=campaign,
            group=group,
            columns=cols,
            origin=self.origin,
            state_traits=state_traits,
            announce=announce,
        )

    def _reference_mapping(self, kind: str, key: tuple[str, ...]) -> Mapping:
        """A reference dataset named `kind`: one row per key with the key columns and [fields]; an import
        replaces the whole dataset (the file is the current list)."""
        d = self.data
        extra = sorted(set(d) - {"kind", "description", "target", "key", "columns", "fields"})
        if extra:
            raise self.fail(extra[0], 'not used when target = "reference"; map the dataset\'s columns under [fields]')
        if kind in RESERVED_DATASETS:
            raise self.fail("kind", f"a reference dataset is named after its kind; {kind!r} is a dataset of omniweave")
        fields = self._values(d.get("fields"), "fields")
        if not fields:
            raise self.fail("fields", "expected at least one field: NAME = column")
        if any(value.column is None for _, value in fields):
            raise self.fail("fields", "a reference field is a column of the file, not a fixed value")
        clash = sorted(set(dict(fields)) & set(key))
        if clash:
            raise self.fail(f"fields.{clash[0]}", "is a key column: the key columns are in the dataset already")
        cols = self._force(self._finish_columns(), set(key))
        return Mapping(
            kind=kind,
            target="reference",
            description=str(d.get("description", "")),
            key=key,
            fields=fields,
            columns=cols,
            origin=self.origin,
        )

    def _spend_mapping(self, kind: str, key: tuple[str, ...]) -> Mapping:
        d = self.data
        extra = sorted(
            set(d)
            & {
                "type",
                "event",
                "channel",
                "timestamp",
                "user_id",
                "anonymous_id",
                "identifiers",
                "traits",
                "properties",
                "campaign",
                "group",
            }
        )
        if extra:
            raise self.fail(extra[0], 'not used when target = "spend"; map the spend columns under [spend]')
        spend = self._values(d.get("spend"), "spend", tuple(SPEND_FIELDS))
        missing = [f for f in SPEND_REQUIRED if f not in dict(spend)]
        if missing:
            raise self.fail("spend", f"missing {', '.join(missing)}; [spend] maps {', '.join(SPEND_FIELDS)}")
        cols = self._finish_columns()
        cols = self._force(cols, set(key))
        by_name = {c.name: c for c in cols}
        for name, value in spend:
            if value.column is not None and by_name[value.column].type not in SPEND_FIELDS[name]:
                raise self.fail(
                    f"columns.{value.column}.type",
                    f"spend.{name} needs a column of type {' or '.join(SPEND_FIELDS[name])}",
                )
        return Mapping(
            kind=kind,
            target="spend",
            description=str(d.get("description", "")),
            key=key,
            spend=spend,
            columns=cols,
            origin=self.origin,
        )
