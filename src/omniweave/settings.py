"""Settings: built once at start-up from `omniweave.toml` and `OMNIWEAVE_*` variables, then passed down.

Precedence (highest first): environment variables, the TOML file, defaults. The TOML file is the one
given (`--config FILE`, `load_settings(config_file=…)`), else `$OMNIWEAVE_CONFIG` if set, else
`./omniweave.toml`, else `$OMNIWEAVE_HOME/omniweave.toml`. Its `[omniweave]` table (or its top level)
holds the flat settings and one table per typed section:

    [identity]              IdentitySettings   identifier kinds, limits, blocked values
    [[profiles.traits]]     ProfilesSettings   custom traits (`TraitSpec`)
    [segments]              SegmentsSettings   where the project's segment files are
    [channels]              ChannelsSettings   public link base, signing key variable, [channels.email] …
    [policy]                PolicySettings     caps, quiet hours, per-class TTL and actions (docs/policy.md)
    [privacy]               PrivacySettings    purposes, retention, blocklist refresh, collection rules (docs/privacy.md)

Every section is read from the same file as the flat settings, once, in `load_settings`; services read
`runtime.settings.<section>` and never open a config file themselves. Every problem in the file is
collected and reported at once, as one ConfigError, each naming its place (file, section, field, index),
what was received and what is valid.

Adding a section (`[channels.email]`, `[journeys]`, `[privacy]`, …) takes three steps:

1. a frozen dataclass with typed fields and defaults that need no configuration;
2. a pure `parse(raw, where, problems) -> the dataclass` that appends one message per problem to
   `problems` (never raises) and a `to_toml()` that gives the table back (child processes receive the
   settings as JSON in that shape);
3. a field on `Settings` named like its table and an entry in `SECTIONS` (field name → parser).

This module sits below every stage (storage imports it), so a section's parser may use only the
standard library, `errors` and `events`; a stage turns the typed section into its own objects
(`identity.service.resolve.rules_from_settings`).
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

from omniweave.errors import ConfigError, InputError
from omniweave.events.spec import COUPON_CODE_KIND, IDENTIFIER_KINDS

Problems = list[str]
"""Messages of a configuration's problems, each saying where, what was received and what is valid."""


# --- [identity] ----------------------------------------------------------------------------------

IDENTITY_KEYS = ("kinds", "limits", "share_limits", "blocked", "customer_number_prefix")


@dataclass(frozen=True)
class IdentitySettings:
    """The `[identity]` table: custom identifier `kinds` (ranked after the built-in durable ones and before
    device and anonymous ids), `limits` and `share_limits` (kind → count, over the defaults), more `blocked`
    values that never link, and the `customer_number_prefix` that marks a user id as a customer number."""

    kinds: tuple[str, ...] = ()
    limits: tuple[tuple[str, int], ...] = ()
    share_limits: tuple[tuple[str, int], ...] = ()
    blocked: tuple[str, ...] = ()
    customer_number_prefix: str = ""

    @staticmethod
    def parse(raw: Any, where: str, problems: Problems, base: Path | None = None) -> IdentitySettings:
        """Validate an `[identity]` table; every problem goes to `problems`, the valid parts are kept."""
        if not isinstance(raw, Mapping):
            problems.append(f"{where}: must be a table ([identity]), got {raw!r}")
            return IdentitySettings()
        for key in sorted(set(raw) - set(IDENTITY_KEYS)):
            problems.append(f"{where}: unknown key {key!r}; expected one of {', '.join(IDENTITY_KEYS)}")
        kinds: tuple[str, ...] = ()
        custom = raw.get("kinds", [])
        if not isinstance(custom, list) or not all(isinstance(k, str) and k.isidentifier() for k in custom):
            problems.append(f"{where}: kinds must be a list of names (letters, digits, _), got {custom!r}")
        else:
            for kind in custom:
                if kind in IDENTIFIER_KINDS or kind == COUPON_CODE_KIND:
                    problems.append(f"{where}: kinds: {kind!r} is a built-in kind")
            kinds = tuple(k for k in custom if k not in IDENTIFIER_KINDS and k != COUPON_CODE_KIND)
        known = (*IDENTIFIER_KINDS, *kinds, COUPON_CODE_KIND)
        counts: dict[str, tuple[tuple[str, int], ...]] = {}
        for key in ("limits", "share_limits"):
            table = raw.get(key, {})
            counts[key] = ()
            if not isinstance(table, Mapping):
                problems.append(f"{where}: {key} must be a table of kind = count, got {table!r}")
                continue
            good = []
            for kind, count in table.items():
                if kind not in known:
                    problems.append(
                        f"{where}: {key}.{kind}: unknown identifier kind; expected one of {', '.join(known)}"
                    )
                elif not isinstance(count, int) or isinstance(count, bool) or count < 1:
                    problems.append(f"{where}: {key}.{kind}: expected a whole number ≥ 1, got {count!r}")
                else:
                    good.append((kind, count))
            counts[key] = tuple(good)
        blocked = raw.get("blocked", [])
        if not isinstance(blocked, list) or not all(isinstance(v, str) for v in blocked):
            problems.append(f"{where}: blocked must be a list of strings, got {blocked!r}")
            blocked = []
        prefix = raw.get("customer_number_prefix", "")
        if not isinstance(prefix, str):
            problems.append(f"{where}: customer_number_prefix must be a string, got {prefix!r}")
            prefix = ""
        return IdentitySettings(kinds, counts["limits"], counts["share_limits"], tuple(blocked), prefix)

    def to_toml(self) -> dict[str, Any]:
        """The `[identity]` table these settings were parsed from (defaults left out)."""
        table: dict[str, Any] = {
            "kinds": list(self.kinds),
            "limits": dict(self.limits),
            "share_limits": dict(self.share_limits),
            "blocked": list(self.blocked),
            "customer_number_prefix": self.customer_number_prefix,
        }
        return {key: value for key, value in table.items() if value}


# --- [[profiles.traits]] -------------------------------------------------------------------------
# The declaration of a custom trait; `profiles/traits.py` documents it, `profiles/service/build.py`
# compiles it. It lives here because the settings parse it at start-up and sit below every stage.

AGGREGATES = ("count", "sum", "avg", "min", "max", "first", "last", "distinct")
"""`distinct` is the number of distinct values; `first`/`last` the value of the earliest/latest event."""

NUMERIC_AGGREGATES = frozenset({"sum", "avg"})

EVENT_COLUMNS = frozenset(
    {
        "message_id",
        "source",
        "type",
        "event",
        "user_id",
        "anonymous_id",
        "group_id",
        "previous_id",
        "channel",
        "timestamp",
        "original_timestamp",
        "sent_at",
        "received_at",
        "campaign_source",
        "campaign_medium",
        "campaign_name",
    }
)
"""Columns a trait may aggregate or filter on directly (the JSON columns go through `property`)."""

TRAIT_FIELDS = ("name", "agg", "property", "column", "event", "channel", "where", "window_days", "description")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_PROPERTY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


@dataclass(frozen=True)
class TraitSpec:
    """One custom trait: `agg` of `property` or `column` over the events that pass the filters."""

    name: str
    agg: str
    property: str | None = None
    column: str | None = None
    events: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()
    where: tuple[tuple[str, str], ...] = ()
    window_days: float | None = None
    description: str = ""

    def to_toml(self) -> dict[str, Any]:
        """The `[[profiles.traits]]` table that declares this trait."""
        table: dict[str, Any] = {"name": self.name, "agg": self.agg}
        optional = {
            "property": self.property,
            "column": self.column,
            "event": list(self.events),
            "channel": list(self.channels),
            "where": dict(self.where),
            "window_days": self.window_days,
            "description": self.description,
        }
        table.update({key: value for key, value in optional.items() if value})
        return table


def trait_problems(item: Any, index: int) -> tuple[TraitSpec | None, list[tuple[str, str]]]:
    """One trait declaration checked: the spec (None when it has problems) and every problem as
    (field, message naming the trait, what was received and what is valid)."""
    if isinstance(item, TraitSpec):
        return item, []
    if not isinstance(item, Mapping):
        return None, [("", f"a trait must be a table of fields, got {type(item).__name__}")]
    name = item.get("name")
    label = f"trait {name!r}" if isinstance(name, str) else f"trait #{index}"
    problems: list[tuple[str, str]] = []

    def fail(field: str, reason: str) -> None:
        problems.append((field, f"{label}: {reason}"))

    for key in sorted(set(item) - set(TRAIT_FIELDS)):
        fail(key, f"unknown field {key!r}; valid fields: {', '.join(TRAIT_FIELDS)}")
    if not isinstance(name, str) or not _NAME.match(name):
        fail("name", f"name must be lower_snake_case (letters, digits, _; starting with a letter), got {name!r}")
    agg = item.get("agg")
    if agg not in AGGREGATES:
        fail("agg", f"agg must be one of {', '.join(AGGREGATES)}, got {agg!r}")
    prop, column = item.get("property"), item.get("column")
    if prop is not None and column is not None:
        fail("property", "give either property or column, not both")
    if agg in AGGREGATES and agg != "count" and prop is None and column is None:
        fail("property", f"agg {agg!r} needs a property (a key of the event's properties) or a column")
    if prop is not None and (not isinstance(prop, str) or not _PROPERTY.match(prop)):
        fail("property", f"property must be a key like 'revenue' or 'page.path', got {prop!r}")
    if column is not None and column not in EVENT_COLUMNS:
        fail("column", f"unknown events column {column!r}; valid columns: {', '.join(sorted(EVENT_COLUMNS))}")
    elif agg in NUMERIC_AGGREGATES and column is not None and column != "timestamp":
        fail("column", f"agg {agg!r} needs a numeric value; use a property (cast to a number), not column {column!r}")
    window = item.get("window_days")
    if window is not None and (isinstance(window, bool) or not isinstance(window, int | float) or window <= 0):
        fail("window_days", f"window_days must be a positive number of days, got {window!r}")
    where = item.get("where") or {}
    if not isinstance(where, Mapping):
        fail("where", f"where must be a table of property = value, got {where!r}")
        where = {}
    for key, value in where.items():
        if not isinstance(key, str) or not _PROPERTY.match(key):
            fail("where", f"where key must be a property like 'currency', got {key!r}")
        elif not isinstance(value, str | int | float | bool):
            fail("where", f"where value for {key!r} must be a string, number or boolean, got {value!r}")
    description = item.get("description", "")
    if not isinstance(description, str):
        fail("description", "description must be a string")
    events = _names(item.get("event"), fail, "event")
    channels = _names(item.get("channel"), fail, "channel")
    if problems:
        return None, problems
    return (
        TraitSpec(
            name=str(name),
            agg=str(agg),
            property=prop,
            column=column,
            events=events,
            channels=channels,
            where=tuple((k, _as_text(v)) for k, v in sorted(where.items())),
            window_days=float(window) if window is not None else None,
            description=description,
        ),
        [],
    )


def parse_trait_specs(raw: Iterable[Mapping[str, Any] | TraitSpec], reserved: Iterable[str] = ()) -> list[TraitSpec]:
    """Validate trait declarations; `reserved` are column names a trait may not take (built-in columns).

    Raises an InputError naming the first bad trait (record = its index) and field, with every problem of
    that trait in its message."""
    taken = set(reserved)
    specs: list[TraitSpec] = []
    for index, item in enumerate(raw):
        spec, problems = trait_problems(item, index)
        if spec is None:
            field_name = problems[0][0] or None
            raise InputError("; ".join(message for _, message in problems), field=field_name, record=index)
        if spec.name in taken:
            raise InputError(
                f"trait {spec.name!r}: the name is already a profile column or another trait",
                field="name",
                record=index,
            )
        taken.add(spec.name)
        specs.append(spec)
    return specs


def _names(value: Any, fail: Callable[[str, str], None], field: str) -> tuple[str, ...]:
    if value is None:
        return ()
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list | tuple) or not values or not all(isinstance(v, str) and v for v in values):
        fail(field, f"{field} must be a name or a non-empty list of names, got {value!r}")
        return ()
    return tuple(values)


def _as_text(value: Any) -> str:
    """Properties are compared as the text a JSON extraction gives (`true`, `12`, `12.5`, `GBP`)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


PROFILES_KEYS = ("traits",)


@dataclass(frozen=True)
class ProfilesSettings:
    """The `[profiles]` table: `traits`, the custom traits every profile build adds (`[[profiles.traits]]`)."""

    traits: tuple[TraitSpec, ...] = ()

    @staticmethod
    def parse(raw: Any, where: str, problems: Problems, base: Path | None = None) -> ProfilesSettings:
        """Validate a `[profiles]` table and its `[[profiles.traits]]`; every problem goes to `problems`."""
        if not isinstance(raw, Mapping):
            problems.append(f"{where}: must be a table ([profiles]), got {raw!r}")
            return ProfilesSettings()
        for key in sorted(set(raw) - set(PROFILES_KEYS)):
            problems.append(f"{where}: unknown key {key!r}; expected one of {', '.join(PROFILES_KEYS)}")
        items = raw.get("traits", [])
        if not isinstance(items, list):
            problems.append(f"{where}: traits must be a list of tables ([[profiles.traits]]), got {items!r}")
            return ProfilesSettings()
        specs: list[TraitSpec] = []
        seen: set[str] = set()
        for index, item in enumerate(items):
            spec, trait_issues = trait_problems(item, index)
            for field_name, message in trait_issues:
                place = f"traits[{index}]" + (f".{field_name}" if field_name else "")
                problems.append(f"{where}: {place}: {message}")
            if spec is None:
                continue
            if spec.name in seen:
                problems.append(f"{where}: traits[{index}].name: trait {spec.name!r} is declared twice")
                continue
            seen.add(spec.name)
            specs.append(spec)
        return ProfilesSettings(tuple(specs))

    def to_toml(self) -> dict[str, Any]:
        """The `[profiles]` table these settings were parsed from."""
        return {"traits": [spec.to_toml() for spec in self.traits]} if self.traits else {}


# --- [channels] ----------------------------------------------------------------------------------

SECRET_WORDS = ("password", "token", "secret", "private_key", "api_key")
"""A key whose name holds one of these is a secret: the file names the variable that holds it (`…_env`)."""


@dataclass(frozen=True)
class EmailChannelSettings:
    """`[channels.email]`: the SMTP server (`security` = starttls | tls | plain) and the sender."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 25
    security: str = "starttls"
    username: str = ""
    password_env: str = "OMNIWEAVE_SMTP_PASSWORD"
    from_address: str = "shop@example.com"
    from_name: str = ""
    reply_to: str = ""
    unsubscribe_mailto: str = ""
    timeout_seconds: float = 30.0
    connections: int = 4  # SMTP connections used in parallel by a dispatcher with worker threads


@dataclass(frozen=True)
class MessagingChannelSettings:
    """`[channels.sms]` / `[channels.whatsapp]`: a Twilio-style Messages API (`api_base` … `/Messages.json`)."""

    enabled: bool = False
    api_base: str = "https://api.twilio.com/2010-04-01"
    account_sid: str = ""
    auth_token_env: str = "OMNIWEAVE_TWILIO_AUTH_TOKEN"
    from_number: str = ""
    messaging_service_sid: str = ""
    timeout_seconds: float = 15.0
    help_text: str = ""  # the answer to HELP/INFO; empty: a plain default naming STOP and START


@dataclass(frozen=True)
class PushChannelSettings:
    """`[channels.push]`: web push with VAPID; the private key comes from the environment."""

    enabled: bool = False
    vapid_private_key_env: str = "OMNIWEAVE_VAPID_PRIVATE_KEY"
    vapid_subject: str = "mailto:shop@example.com"
    timeout_seconds: float = 15.0


@dataclass(frozen=True)
class WebhookChannelSettings:
    """`[channels.webhook]`: where signed webhooks go and the variable holding the signing secret."""

    enabled: bool = False
    url: str = ""
    secret_env: str = "OMNIWEAVE_WEBHOOK_SECRET"
    replay_window_seconds: int = 300
    timeout_seconds: float = 15.0


@dataclass(frozen=True)
class PrintChannelSettings:
    """`[channels.print]`: where letters' print files go (relative to the home) and the drop delay."""

    enabled: bool = True
    folder: str = "print"
    drop_days: int = 3


@dataclass(frozen=True)
class AdsChannelSettings:
    """`[channels.ads]`: ad audiences as a channel: `mode` file (CSV files under `folder` in the home) or
    http (a Meta-style audience API at `api_base`; the access token from the variable `access_token_env`)."""

    enabled: bool = True
    mode: str = "file"
    folder: str = "audiences"
    api_base: str = ""
    access_token_env: str = "OMNIWEAVE_ADS_ACCESS_TOKEN"
    timeout_seconds: float = 30.0


CHANNEL_SECTIONS: dict[str, type] = {
    "email": EmailChannelSettings,
    "sms": MessagingChannelSettings,
    "whatsapp": MessagingChannelSettings,
    "push": PushChannelSettings,
    "webhook": WebhookChannelSettings,
    "print": PrintChannelSettings,
    "ads": AdsChannelSettings,
}
CHANNELS_KEYS = ("public_url", "signing_key_env", *CHANNEL_SECTIONS)


_ARTICLE = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string"}


def _typed_table(cls: type, raw: Any, where: str, problems: Problems) -> Any:
    """`raw` as an instance of the frozen dataclass `cls`, every wrong key or value reported."""
    if not isinstance(raw, Mapping):
        problems.append(f"{where}: must be a table, got {raw!r}")
        return cls()
    known = {f.name: f for f in fields(cls)}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in known:
            hint = ""
            if any(w in key for w in SECRET_WORDS):
                hint = f" (secrets come from the environment only: set the variable named by {key}_env)"
            problems.append(f"{where}: unknown key {key!r}{hint}; expected one of {', '.join(known)}")
            continue
        kind = str(known[key].type)
        ok = (
            (kind == "bool" and isinstance(value, bool))
            or (kind == "int" and isinstance(value, int) and not isinstance(value, bool))
            or (kind == "float" and isinstance(value, int | float) and not isinstance(value, bool))
            or (kind == "str" and isinstance(value, str))
        )
        if not ok:
            problems.append(f"{where}: {key} must be {_ARTICLE.get(kind, 'a ' + kind)}, got {value!r}")
            continue
        values[key] = float(value) if kind == "float" else value
    return cls(**values)


@dataclass(frozen=True)
class ChannelsSettings:
    """The `[channels]` table: `public_url` (the base of unsubscribe, click, QR and pixel links), the
    variable holding the key that signs them (`signing_key_env`; without it a key is generated once and
    kept in the home), and one table per channel (`[channels.email]`, `[channels.sms]`, …)."""

    public_url: str = "http://127.0.0.1:8787"
    signing_key_env: str = "OMNIWEAVE_SIGNING_KEY"
    email: EmailChannelSettings = field(default_factory=EmailChannelSettings)
    sms: MessagingChannelSettings = field(default_factory=MessagingChannelSettings)
    whatsapp: MessagingChannelSettings = field(default_factory=MessagingChannelSettings)
    push: PushChannelSettings = field(default_factory=PushChannelSettings)
    webhook: WebhookChannelSettings = field(default_factory=WebhookChannelSettings)
    print: PrintChannelSettings = field(default_factory=PrintChannelSettings)
    ads: AdsChannelSettings = field(default_factory=AdsChannelSettings)

    @staticmethod
    def parse(raw: Any, where: str, problems: Problems, base: Path | None = None) -> ChannelsSettings:
        """Validate a `[channels]` table and its channel tables; every problem goes to `problems`."""
        if not isinstance(raw, Mapping):
            problems.append(f"{where}: must be a table ([channels]), got {raw!r}")
            return ChannelsSettings()
        values: dict[str, Any] = {}
        for key in sorted(set(raw) - set(CHANNELS_KEYS)):
            problems.append(f"{where}: unknown key {key!r}; expected one of {', '.join(CHANNELS_KEYS)}")
        for key in ("public_url", "signing_key_env"):
            if key in raw:
                if isinstance(raw[key], str) and raw[key]:
                    values[key] = raw[key].rstrip("/") if key == "public_url" else raw[key]
                else:
                    problems.append(f"{where}: {key} must be a non-empty string, got {raw[key]!r}")
        url = values.get("public_url", "")
        if url and not re.match(r"^https?://[^/\s]+", url):
            problems.append(f"{where}: public_url must start with http:// or https://, got {url!r}")
        for name, cls in CHANNEL_SECTIONS.items():
            if name in raw:
                values[name] = _typed_table(cls, raw[name], f"{where}.{name}", problems)
        email = values.get("email")
        if email is not None and email.security not in ("starttls", "tls", "plain"):
            problems.append(f"{where}.email: security must be starttls, tls or plain, got {email.security!r}")
        ads = values.get("ads")
        if ads is not None and ads.mode not in ("file", "http"):
            problems.append(f"{where}.ads: mode must be file or http, got {ads.mode!r}")
        return ChannelsSettings(**values)

    def to_toml(self) -> dict[str, Any]:
        """The `[channels]` table these settings were parsed from."""
        out: dict[str, Any] = {"public_url": self.public_url, "signing_key_env": self.signing_key_env}
        for name in CHANNEL_SECTIONS:
            section = getattr(self, name)
            out[name] = {f.name: getattr(section, f.name) for f in fields(section)}
        return out


# --- [segments] ----------------------------------------------------------------------------------

SEGMENTS_KEYS = ("folder",)


@dataclass(frozen=True)
class SegmentsSettings:
    """The `[segments]` table: `folder`, where the project's segment files are (relative paths from the
    config file's folder). Default: `segments/` beside the config file, else in the home folder ("")."""

    folder: str = ""

    @staticmethod
    def parse(raw: Any, where: str, problems: Problems, base: Path | None = None) -> SegmentsSettings:
        """Validate a `[segments]` table; `base` is the config file's folder (None: no file)."""
        default = str(base / "segments") if base is not None else ""
        if not isinstance(raw, Mapping):
            problems.append(f"{where}: must be a table ([segments]), got {raw!r}")
            return SegmentsSettings(default)
        for key in sorted(set(raw) - set(SEGMENTS_KEYS)):
            problems.append(f"{where}: unknown key {key!r}; expected one of {', '.join(SEGMENTS_KEYS)}")
        folder = raw.get("folder")
        if folder is None:
            return SegmentsSettings(default)
        if not isinstance(folder, str) or not folder:
            problems.append(f"{where}: folder must be a path (a non-empty string), got {folder!r}")
            return SegmentsSettings(default)
        return SegmentsSettings(str(base / folder) if base is not None else folder)

    def to_toml(self) -> dict[str, Any]:
        """The `[segments]` table (its folder already resolved)."""
        return {"folder": self.folder} if self.folder else {}


# --- [policy] ------------------------------------------------------------------------------------

POLICY_KEYS = ("timezone", "quiet_hours", "caps", "classes")
CLASS_POLICY_KEYS = ("quiet_hours", "ttl", "capped")
POLICY_ACTIONS = ("reschedule", "drop", "ignore")
CAP_CHANNELS = ("all", "email", "sms", "whatsapp", "push", "webhook", "print")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_DURATION_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_CLOCK = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


def parse_duration(value: Any) -> float | None:
    """Seconds from `90s`, `15m`, `1h`, `2d`, `1w` or a number of seconds; None when it is none of these."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if value >= 0 else None
    if isinstance(value, str):
        found = _DURATION.match(value)
        if found:
            return float(found.group(1)) * _DURATION_UNITS[found.group(2)]
    return None


@dataclass(frozen=True)
class FrequencyCap:
    """At most `count` messages on `channel` ("all": every channel together) in any rolling `window` seconds."""

    channel: str
    count: int
    window: float

    def to_toml(self) -> dict[str, Any]:
        return {"channel": self.channel, "count": self.count, "window": self.window}


@dataclass(frozen=True)
class ClassPolicy:
    """What the policy does with one message class: inside quiet hours (`quiet_hours`) and over a cap
    (`capped`): reschedule, drop or ignore (the rule does not apply); `ttl`: seconds after the send was
    due after which it is dropped as expired (0: never)."""

    quiet_hours: str = "reschedule"
    ttl: float = 6 * 3600.0
    capped: str = "reschedule"

    def to_toml(self) -> dict[str, Any]:
        return {"quiet_hours": self.quiet_hours, "ttl": self.ttl, "capped": self.capped}


DEFAULT_CAPS = (FrequencyCap("all", 3, 7 * 86400.0), FrequencyCap("sms", 1, 86400.0))
DEFAULT_CLASS_POLICIES: tuple[tuple[str, ClassPolicy], ...] = (
    ("promotional", ClassPolicy("reschedule", 6 * 3600.0, "reschedule")),
    ("reminder", ClassPolicy("reschedule", 2 * 3600.0, "drop")),
    ("transactional", ClassPolicy("ignore", 86400.0, "ignore")),
    ("time_critical", ClassPolicy("ignore", 15 * 60.0, "ignore")),
)


@dataclass(frozen=True)
class PolicySettings:
    """The `[policy]` table: the rules every send passes (activate/policy.py, docs/policy.md).

    `timezone`: the IANA zone of a person whose profile has none; `quiet_hours`: the local
    [start, end) when no message goes out (`[]`: none); `caps`: frequency caps, each
    `{channel, count, window}`; `classes`: per message class, `{quiet_hours, ttl, capped}`. A class
    not listed is treated as `promotional`."""

    timezone: str = "UTC"
    quiet_hours: tuple[str, str] | None = ("21:00", "08:00")
    caps: tuple[FrequencyCap, ...] = DEFAULT_CAPS
    classes: tuple[tuple[str, ClassPolicy], ...] = DEFAULT_CLASS_POLICIES

    def rule(self, message_class: str) -> ClassPolicy:
        """The rules of `message_class` (a class not configured gets the promotional rules)."""
        rules = dict(self.classes)
        return rules.get(message_class) or rules.get("promotional") or ClassPolicy()

    @property
    def longest_window(self) -> float:
        """The longest cap window in seconds (how far back the ledger is read), 0 without caps."""
        return max((cap.window for cap in self.caps), default=0.0)

    @staticmethod
    def parse(raw: Any, where: str, problems: Problems, base: Path | None = None) -> PolicySettings:
        """Validate a `[policy]` table; every problem goes to `problems`."""
        if not isinstance(raw, Mapping):
            problems.append(f"{where}: must be a table ([policy]), got {raw!r}")
            return PolicySettings()
        for key in sorted(set(raw) - set(POLICY_KEYS)):
            problems.append(f"{where}: unknown key {key!r}; expected one of {', '.join(POLICY_KEYS)}")
        values: dict[str, Any] = {}
        if "timezone" in raw:
            zone = raw["timezone"]
            if _known_zone(zone):
                values["timezone"] = zone
            else:
                problems.append(f"{where}: timezone must be an IANA time zone such as 'Europe/Berlin', got {zone!r}")
        if "quiet_hours" in raw:
            quiet = raw["quiet_hours"]
            if quiet in ([], (), None, False):
                values["quiet_hours"] = None
            elif (
                isinstance(quiet, list | tuple)
                and len(quiet) == 2
                and all(isinstance(t, str) and _CLOCK.match(t) for t in quiet)
                and quiet[0] != quiet[1]
            ):
                values["quiet_hours"] = (quiet[0], quiet[1])
            else:
                problems.append(
                    f"{where}: quiet_hours must be [start, end] as two different HH:MM local times "
                    f'(e.g. ["21:00", "08:00"]) or [] for none, got {quiet!r}'
                )
        if "caps" in raw:
            values["caps"] = _parse_caps(raw["caps"], f"{where}: caps", problems)
        if "classes" in raw:
            values["classes"] = _parse_classes(raw["classes"], f"{where}: classes", problems)
        return PolicySettings(**values)

    def to_toml(self) -> dict[str, Any]:
        """The `[policy]` table these settings were parsed from."""
        return {
            "timezone": self.timezone,
            "quiet_hours": list(self.quiet_hours) if self.quiet_hours else [],
            "caps": [cap.to_toml() for cap in self.caps],
            "classes": {name: rule.to_toml() for name, rule in self.classes},
        }


def _known_zone(zone: Any) -> bool:
    import zoneinfo

    if not isinstance(zone, str) or not zone:
        return False
    try:
        zoneinfo.ZoneInfo(zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _parse_caps(raw: Any, where: str, problems: Problems) -> tuple[FrequencyCap, ...]:
    if not isinstance(raw, list | tuple):
        problems.append(f"{where}: must be a list of {{channel, count, window}} tables, got {raw!r}")
        return DEFAULT_CAPS
    caps = []
    for index, item in enumerate(raw):
        at = f"{where}[{index}]"
        if not isinstance(item, Mapping):
            problems.append(f"{at}: must be a table {{channel, count, window}}, got {item!r}")
            continue
        for key in sorted(set(item) - {"channel", "count", "window"}):
            problems.append(f"{at}: unknown key {key!r}; expected one of channel, count, window")
        channel, count, window = item.get("channel", "all"), item.get("count"), parse_duration(item.get("window"))
        ok = True
        if channel not in CAP_CHANNELS:
            problems.append(f"{at}: channel must be one of {', '.join(CAP_CHANNELS)}, got {channel!r}")
            ok = False
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            problems.append(f"{at}: count must be a whole number >= 0, got {count!r}")
            ok = False
        if window is None or window <= 0:
            problems.append(
                f"{at}: window must be a duration such as '7d', '12h' or seconds > 0, got {item.get('window')!r}"
            )
            ok = False
        if ok:
            caps.append(FrequencyCap(str(channel), int(count), float(window)))  # type: ignore[arg-type]
    return tuple(caps)


def _parse_classes(raw: Any, where: str, problems: Problems) -> tuple[tuple[str, ClassPolicy], ...]:
    out = dict(DEFAULT_CLASS_POLICIES)
    if not isinstance(raw, Mapping):
        problems.append(f"{where}: must be a table of message classes ([policy.classes.promotional] …), got {raw!r}")
        return DEFAULT_CLASS_POLICIES
    for name, table in raw.items():
        at = f"{where}.{name}"
        if not isinstance(table, Mapping):
            problems.append(f"{at}: must be a table {{quiet_hours, ttl, capped}}, got {table!r}")
            continue
        for key in sorted(set(table) - set(CLASS_POLICY_KEYS)):
            problems.append(f"{at}: unknown key {key!r}; expected one of {', '.join(CLASS_POLICY_KEYS)}")
        rule = out.get(name, dict(DEFAULT_CLASS_POLICIES)["promotional"])  # a new class: the default promotional rules
        changes: dict[str, Any] = {}
        for key in ("quiet_hours", "capped"):
            if key in table:
                if table[key] in POLICY_ACTIONS:
                    changes[key] = table[key]
                else:
                    problems.append(f"{at}: {key} must be one of {', '.join(POLICY_ACTIONS)}, got {table[key]!r}")
        if "ttl" in table:
            ttl = parse_duration(table["ttl"])
            if ttl is None:
                problems.append(
                    f"{at}: ttl must be a duration such as '6h', '1d' or seconds (0: none), got {table['ttl']!r}"
                )
            else:
                changes["ttl"] = ttl
        out[str(name)] = replace(rule, **changes)
    return tuple(out.items())


# --- memory ------------------------------------------------------------------------------------

DEFAULT_MEMORY_SHARE = 0.5
"""The share of the machine's RAM a stage may use when the `memory_limit` setting is empty."""
_MEMORY_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12, "KIB": 2**10, "MIB": 2**20}
_MEMORY_UNITS |= {"GIB": 2**30, "TIB": 2**40}


def machine_memory_bytes() -> int:
    """The machine's physical RAM."""
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def memory_limit_bytes(value: str) -> int:
    """The `memory_limit` setting in bytes: "8GB", "512MiB", "50%" (of the machine), "" (DEFAULT_MEMORY_SHARE)."""
    text = str(value).strip().upper().replace(" ", "")
    if not text:
        return int(machine_memory_bytes() * DEFAULT_MEMORY_SHARE)
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(%|[KMGT]I?B|B)?", text)
    if match is None or float(match.group(1)) <= 0 or (match.group(2) == "%" and float(match.group(1)) > 100):
        raise ConfigError(
            f"memory_limit = {value!r} is not a memory size; expected e.g. '8GB', '512MB', '4GiB' or '50%' "
            "(of the machine's RAM), or empty for the default share"
        )
    number, unit = float(match.group(1)), match.group(2) or ""
    if unit == "%":
        return int(machine_memory_bytes() * number / 100)
    return int(number * _MEMORY_UNITS[unit])


# --- [privacy] -----------------------------------------------------------------------------------

PRIVACY_KEYS = (
    "purposes",
    "retention_days",
    "blocklist_refresh_seconds",
    "collection",
    "personalisation",
    "without_personalisation",
)
COLLECTION_RULE_KEYS = ("field", "purpose", "action", "when")
DEFAULT_PURPOSES = ("analytics", "personalisation", "advertising", "email", "sms", "whatsapp", "push")


@dataclass(frozen=True)
class CollectionRule:
    """A field a source may not collect without consent to `purpose`: `drop` it or `hash` it (SHA-256) at
    ingest, when the event's `context.consent.categoryPreferences` says no (`when = "denied"`) or does not
    say yes (`when = "not_granted"`). `field` is a dotted path: `context.ip`, `traits.birthday`."""

    field: str
    purpose: str
    action: str = "drop"
    when: str = "denied"


@dataclass(frozen=True)
class PrivacySettings:
    """The `[privacy]` table (docs/privacy.md): the consent purposes, days each dataset is kept
    (`retention_days = {events = 730}`), how often a collector re-reads the suppressed identifiers
    (at most 60 s), and the collection rules (`[[privacy.collection]]`); when content falls back to
    non-personal values (`personalisation`: `denied` = a stated no, `not_granted` = anything but a stated
    yes) and what a message does then unless it says (`without_personalisation`: `fallback` | `skip`)."""

    purposes: tuple[str, ...] = DEFAULT_PURPOSES
    retention_days: tuple[tuple[str, int], ...] = ()
    blocklist_refresh_seconds: float = 15.0
    collection: tuple[CollectionRule, ...] = ()
    personalisation: str = "denied"
    without_personalisation: str = "fallback"

    @staticmethod
    def parse(raw: Any, where: str, problems: Problems, base: Path | None = None) -> PrivacySettings:
        """Validate a `[privacy]` table; every problem goes to `problems`."""
        if not isinstance(raw, Mapping):
            problems.append(f"{where}: must be a table ([privacy]), got {raw!r}")
            return PrivacySettings()
        for key in sorted(set(raw) - set(PRIVACY_KEYS)):
            problems.append(f"{where}: unknown key {key!r}; expected one of {', '.join(PRIVACY_KEYS)}")
        values: dict[str, Any] = {}
        purposes = raw.get("purposes")
        if purposes is not None:
            if (
                isinstance(purposes, list)
                and purposes
                and all(isinstance(p, str) and p.isidentifier() for p in purposes)
            ):
                values["purposes"] = tuple(purposes)
            else:
                problems.append(
                    f"{where}: purposes must be a non-empty list of names such as 'email', got {purposes!r}"
                )
        days = raw.get("retention_days")
        if days is not None:
            if isinstance(days, Mapping) and all(
                isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in days.values()
            ):
                values["retention_days"] = tuple(sorted((str(k), int(v)) for k, v in days.items()))
            else:
                problems.append(
                    f"{where}: retention_days must map datasets to whole days > 0 (events = 730), got {days!r}"
                )
        refresh = raw.get("blocklist_refresh_seconds")
        if refresh is not None:
            if isinstance(refresh, int | float) and not isinstance(refresh, bool) and 0 <= refresh <= 60:
                values["blocklist_refresh_seconds"] = float(refresh)
            else:
                problems.append(f"{where}: blocklist_refresh_seconds must be a number from 0 to 60, got {refresh!r}")
        rules = raw.get("collection")
        if rules is not None:
            values["collection"] = _parse_collection(rules, f"{where}: collection", problems)
        for key, allowed in (
            ("personalisation", ("denied", "not_granted")),
            ("without_personalisation", ("fallback", "skip")),
        ):
            given = raw.get(key)
            if given is None:
                continue
            if given in allowed:
                values[key] = given
            else:
                problems.append(f"{where}: {key} must be {' or '.join(allowed)}, got {given!r}")
        return PrivacySettings(**values)

    def to_toml(self) -> dict[str, Any]:
        """The `[privacy]` table these settings were parsed from."""
        return {
            "purposes": list(self.purposes),
            "retention_days": dict(self.retention_days),
            "blocklist_refresh_seconds": self.blocklist_refresh_seconds,
            "collection": [{f.name: getattr(rule, f.name) for f in fields(rule)} for rule in self.collection],
            "personalisation": self.personalisation,
            "without_personalisation": self.without_personalisation,
        }


def _parse_collection(raw: Any, where: str, problems: Problems) -> tuple[CollectionRule, ...]:
    if not isinstance(raw, list):
        problems.append(f"{where}: must be a list of {{field, purpose, action, when}} tables, got {raw!r}")
        return ()
    rules = []
    for index, item in enumerate(raw):
        at = f"{where}[{index}]"
        if not isinstance(item, Mapping):
            problems.append(f"{at}: must be a table {{field, purpose, action, when}}, got {item!r}")
            continue
        for key in sorted(set(item) - set(COLLECTION_RULE_KEYS)):
            problems.append(f"{at}: unknown key {key!r}; expected one of {', '.join(COLLECTION_RULE_KEYS)}")
        rule = CollectionRule(
            str(item.get("field", "")),
            str(item.get("purpose", "")),
            item.get("action", "drop"),
            item.get("when", "denied"),
        )
        if not re.fullmatch(r"(context|properties|traits)(\.[^.\s]+)+", rule.field):
            problems.append(
                f"{at}: field must be a dotted path under context, properties or traits, got {rule.field!r}"
            )
        elif not rule.purpose:
            problems.append(f"{at}: purpose is missing (e.g. 'analytics')")
        elif rule.action not in ("drop", "hash"):
            problems.append(f"{at}: action must be drop or hash, got {rule.action!r}")
        elif rule.when not in ("denied", "not_granted"):
            problems.append(f"{at}: when must be denied or not_granted, got {rule.when!r}")
        else:
            rules.append(rule)
    return tuple(rules)


# --- Settings ------------------------------------------------------------------------------------

ENGINE_NAMES = ("duckdb", "spark")
"""The warehouse engines (storage/engine.py holds what differs between them)."""


@dataclass(frozen=True)
class Settings:
    """Everything omniweave needs to know about where things live and how it behaves."""

    home: str = ".omniweave"
    warehouse_url: str = ""  # default: <home>/warehouse
    database_url: str = ""  # default: sqlite:///<home>/omniweave.db
    host: str = "127.0.0.1"
    port: int = 8787
    # collector
    max_event_bytes: int = 32 * 1024
    max_request_bytes: int = 4 * 1024 * 1024  # RudderStack's own batch limit (rudder-sdk-python sends up to it)
    rate_limit_per_second: float = 0.0  # requests per second per source; 0 = no limit
    rate_limit_burst: int = 0  # 0 = one second's worth
    # REST API: requests per second per secret key or signed-in user (token bucket); 0 = no limit
    api_rate_limit_per_second: float = 0.0
    api_rate_limit_burst: int = 0  # 0 = one second's worth
    # sign-in lockout (docs/security.md): this many failed sign-ins for one address, or from one client
    # address, within login_lockout_seconds refuse further sign-ins until the oldest leaves the window
    login_max_failures: int = 5
    login_max_failures_per_origin: int = 20
    login_lockout_seconds: float = 900.0
    dedupe_hours: float = 48.0
    # loader
    loader_batch_size: int = 50_000
    loader_interval_seconds: float = 0.5
    # While the collector takes more than loader_busy_events_per_second, the loader leaves the CPU
    # to it and loads only events older than loader_max_delay_seconds (0: never defer).
    loader_busy_events_per_second: float = 2_000.0
    loader_max_delay_seconds: float = 10.0
    # event-log compaction (docs/scale.md): a day's loader files merged into files of about compaction_target_bytes;
    # `serve` runs a pass every compaction_interval_seconds (0 = never; `omniweave log compact` by hand), taking
    # files older than compaction_min_age_seconds while the day is open and all of them once it is over; the
    # merged files stay on disk, unlisted, compaction_grace_seconds for readers that listed them before the swap
    compaction_target_bytes: int = 128 * 1024 * 1024
    compaction_interval_seconds: float = 300.0
    compaction_min_age_seconds: float = 300.0
    compaction_grace_seconds: float = 900.0
    # identity
    default_region: str = "GB"
    # warehouse engine: "duckdb" (in-process) or "spark" (pip install 'omniweave[spark]'); the shells' --engine
    engine: Literal["duckdb", "spark"] = "duckdb"
    # the Spark master the spark engine connects to (OMNIWEAVE_SPARK_MASTER): "spark://host:7077" for a standalone
    # cluster, "yarn", "k8s://..."; "" = local mode on this machine (local[2]). See docs/scale.md
    spark_master: str = ""
    # memory a stage may use in the engine ("8GB", "512MB", "50%" of the machine; "" = DEFAULT_MEMORY_SHARE):
    # DuckDB spills to <home>/spill beyond it; see memory_limit_bytes and docs/scale.md
    memory_limit: str = ""
    # typed sections, one per table of the config file (see SECTIONS)
    identity: IdentitySettings = field(default_factory=IdentitySettings)
    profiles: ProfilesSettings = field(default_factory=ProfilesSettings)
    segments: SegmentsSettings = field(default_factory=SegmentsSettings)
    channels: ChannelsSettings = field(default_factory=ChannelsSettings)
    policy: PolicySettings = field(default_factory=PolicySettings)
    privacy: PrivacySettings = field(default_factory=PrivacySettings)
    config_file: str = ""  # the file these settings came from ("" when none was found)

    def __post_init__(self) -> None:
        if self.engine not in ENGINE_NAMES:
            raise ConfigError(f"unknown warehouse engine {self.engine!r}; expected one of {', '.join(ENGINE_NAMES)}")
        memory_limit_bytes(self.memory_limit)  # a ConfigError now rather than in the middle of a stage

    @property
    def home_path(self) -> Path:
        return Path(self.home)

    @property
    def resolved_warehouse_url(self) -> str:
        return self.warehouse_url or str(self.home_path / "warehouse")

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home_path / 'omniweave.db'}"

    @property
    def segments_folder(self) -> Path:
        """The project's segment files: `[segments] folder`, else `segments/` beside the config file,
        else `<home>/segments`."""
        return Path(self.segments.folder) if self.segments.folder else self.home_path / "segments"

    def with_overrides(self, **changes: Any) -> Settings:
        """A copy with some values changed (tests and shells use this)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values (sections as their TOML tables): how child processes receive the settings."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in SECTIONS}
        for name in SECTIONS:
            out[name] = getattr(self, name).to_toml()
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Settings:
        """The settings `to_dict` gave (sections parsed again, so a bad table cannot slip through)."""
        problems: Problems = []
        values = dict(data)
        for name, parse in SECTIONS.items():
            values[name] = parse(values.get(name, {}), f"settings [{name}]", problems, None)
        if problems:
            raise ConfigError(_summary(problems))
        return cls(**values)


SectionParser = Callable[[Any, str, Problems, Path | None], Any]
"""parse(raw table, where, problems, the config file's folder or None) -> the typed section."""

SECTIONS: dict[str, SectionParser] = {
    "identity": IdentitySettings.parse,
    "profiles": ProfilesSettings.parse,
    "segments": SegmentsSettings.parse,
    "channels": ChannelsSettings.parse,
    "policy": PolicySettings.parse,
    "privacy": PrivacySettings.parse,
}
"""Each typed section of Settings: its field name (also its table in the config file) and its parser."""

_ENV_PREFIX = "OMNIWEAVE_"
_FLAT = tuple(f.name for f in fields(Settings) if f.name not in SECTIONS and f.name != "config_file")


def _coerce(name: str, raw: Any, typ: Any, where: str, problems: Problems) -> Any:
    kind = typ if isinstance(typ, type) else {"int": int, "float": float, "str": str}.get(str(typ))
    try:
        if kind is int:
            return int(raw)
        if kind is float:
            return float(raw)
        return str(raw)
    except (TypeError, ValueError):
        problems.append(f"{where}: {name} = {raw!r} is not a valid {getattr(kind, '__name__', kind)}")
        return None


def _summary(problems: Problems) -> str:
    if len(problems) == 1:
        return problems[0]
    return f"{len(problems)} problems in the configuration:\n" + "\n".join(f"  - {p}" for p in problems)


def find_config_file(
    env: Mapping[str, str], config_file: str | os.PathLike[str] | None = None, home: str | None = None
) -> Path | None:
    """The config file to read: `config_file` (which must exist), else $OMNIWEAVE_CONFIG, ./omniweave.toml,
    <home>/omniweave.toml (`home` overrides $OMNIWEAVE_HOME); None if there is none."""
    if config_file:
        path = Path(config_file)
        if not path.is_file():
            raise ConfigError(f"config file {config_file} does not exist")
        return path
    home = home or env.get(_ENV_PREFIX + "HOME", Settings.home)
    candidates = [Path(p) for p in filter(None, [env.get(_ENV_PREFIX + "CONFIG")])]
    candidates += [Path("omniweave.toml"), Path(home) / "omniweave.toml"]
    return next((path for path in candidates if path.is_file()), None)


def load_settings(
    env: Mapping[str, str] | None = None,
    config_file: str | os.PathLike[str] | None = None,
    home: str | None = None,
) -> Settings:
    """Build the settings, with their typed sections, from the config file and the environment (both optional).

    `home` (the shells' `--home`) overrides $OMNIWEAVE_HOME, also when looking for `<home>/omniweave.toml`.
    Every problem of the file and the environment is reported at once, in one ConfigError."""
    env = os.environ if env is None else env
    known = {f.name: f for f in fields(Settings) if f.name in _FLAT}
    values: dict[str, Any] = {}
    problems: Problems = []
    path = find_config_file(env, config_file, home)
    section: Mapping[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: not UTF-8 text ({exc})") from exc
        section = data.get("omniweave", data)
        values["config_file"] = str(path)
        for key, raw in section.items():
            if key in SECTIONS:
                continue
            if isinstance(raw, dict):
                valid = ", ".join(f"[{k}]" for k in SECTIONS)
                problems.append(f"{path}: unknown section [{key}]; valid sections: {valid}")
            elif key not in known:
                problems.append(f"{path}: unknown setting {key!r}; valid settings: {', '.join(sorted(known))}")
            else:
                values[key] = _coerce(key, raw, known[key].type, str(path), problems)
    base = path.resolve().parent if path is not None else None
    for name, parse in SECTIONS.items():
        values[name] = parse(section.get(name, {}), f"{path or 'settings'}: [{name}]", problems, base)
    for name, f in known.items():
        raw = env.get(_ENV_PREFIX + name.upper())
        if raw is not None:
            values[name] = _coerce(name, raw, f.type, f"environment {_ENV_PREFIX + name.upper()}", problems)
    if home is not None:
        values["home"] = home
    if values.get("engine", "duckdb") not in ENGINE_NAMES:
        problems.append(
            f"unknown warehouse engine {values['engine']!r} (setting engine, in the file or OMNIWEAVE_ENGINE); "
            f"expected one of {', '.join(ENGINE_NAMES)}"
        )
        del values["engine"]
    if problems:
        raise ConfigError(_summary(problems))
    return Settings(**values)
