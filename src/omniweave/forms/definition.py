"""Sign-up forms as definitions: what a form asks, what consent it asks for and in which words. Pure.

A form is a YAML document (`<home>/forms/NAME.yaml`, or the body of `PUT /v1/forms/NAME`):

    name: newsletter                       # [a-z0-9_-], 1-60 characters (also the URL: /f/newsletter)
    locales: [en, de]                      # the first is the default; every text gives each of them
    title: {en: "Join us", de: "Mach mit"} # a text: a string (every locale) or {locale: string}
    intro: "…"                             # optional text under the title
    fields:
      - {name: email, type: email, required: true}
      - {name: phone, type: phone}
      - {name: first_name, type: name}
      - {name: birthday, type: birthday}
      - {name: postcode, type: postcode}
      - {name: preferred_store, type: preferred_store, options: [S01, S02]}
      - {name: interests, type: interests, options: [food, garden]}
      - {name: shoe_size, type: custom, label: "Shoe size", pattern: "^[0-9]{2}$", max_length: 2}
    purposes:                              # consent asked, each as its own unticked box
      - {name: email, wording: "E-mail me news and offers", confirm: email}
      - {name: sms, wording: "Text me offers", confirm: sms}
      - {name: personalisation, wording: "Tailor what I see", confirm: none}
    thank_you: "Thanks! Check your inbox to confirm."
    confirmed: "You're in."                # optional: the page a confirmation link opens
    coupon_pool: WELCOME10                 # optional: a coupon issued when the sign-up is confirmed
    brand: brand.yaml                      # optional: a brand kit file of the project (default: the project's)
    min_seconds: 3                         # a submit sooner after the page was rendered is refused
    confirm_hours: 48                      # an unconfirmed sign-up expires after this
    allowed_origins: ["https://shop.example"]  # sites that may embed the form (CORS for the snippet)

`parse_form(document, source, purposes=…)` checks all of it and raises `FormInvalid` listing every
problem at once, each with its path (`fields[2].options`) and what was expected; it returns a frozen
`FormDef`. Field types carry the trait they write: `email` -> `email`, `phone` -> `phone` (E.164),
the others -> their field name.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from omniweave.errors import InputError

FIELD_TYPES = ("email", "phone", "name", "birthday", "postcode", "preferred_store", "interests", "custom")
"""What a field may ask for."""
CONFIRM_MODES = ("email", "sms", "none")
"""How a purpose's consent is confirmed: a link e-mailed, a keyword texted back, or not at all (single opt-in)."""
PLACEMENTS = ("web", "embed", "kiosk", "poster", "receipt", "shelf", "tv")
"""Where a form is shown or its QR code printed; `web` and `embed` are online, the others in store."""
IN_STORE_PLACEMENTS = frozenset({"kiosk", "poster", "receipt", "shelf", "tv"})
"""Placements in a store (or in its print and on its screens): their sign-ups count as in store."""
LOCALES = ("en", "de")
"""The locales whose wording files ship (forms/locales/*.yaml)."""
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,59}$")
FIELD_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_KEYS = (
    "name",
    "locales",
    "title",
    "intro",
    "fields",
    "purposes",
    "thank_you",
    "confirmed",
    "coupon_pool",
    "brand",
    "min_seconds",
    "confirm_hours",
    "allowed_origins",
    "description",
)
_FIELD_KEYS = ("name", "type", "required", "label", "help", "options", "pattern", "max_length")
_PURPOSE_KEYS = ("name", "wording", "confirm", "required")
_RESERVED_FIELDS = frozenset({"website", "anonymous_id", "placement", "lang", "started", "kiosk", "consent"})

Problems = list[tuple[str, str]]


class FormInvalid(InputError):
    """A form definition with problems: `problems` lists each as (path, message)."""

    def __init__(self, source: str, problems: Sequence[tuple[str, str]]):
        self.problems = list(problems)
        self.source = source
        lines = "\n".join(f"  {path or '(top)'}: {message}" for path, message in self.problems)
        super().__init__(f"form {source}: {len(self.problems)} problem(s):\n{lines}", field=self.problems[0][0] or None)


@dataclass(frozen=True)
class Text:
    """Words in every locale of the form."""

    by_locale: dict[str, str]

    def get(self, locale: str, default_locale: str) -> str:
        return self.by_locale.get(locale) or self.by_locale.get(default_locale, "")

    def to_json(self) -> dict[str, str]:
        return dict(self.by_locale)


@dataclass(frozen=True)
class Field:
    """One question of the form."""

    name: str
    type: str
    required: bool = False
    label: Text | None = None
    help: Text | None = None
    options: tuple[str, ...] = ()
    pattern: str | None = None
    max_length: int = 200

    @property
    def trait(self) -> str:
        """The trait the answer is written to."""
        return self.name

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.type, "required": self.required}
        if self.label is not None:
            out["label"] = self.label.to_json()
        if self.help is not None:
            out["help"] = self.help.to_json()
        if self.options:
            out["options"] = list(self.options)
        if self.pattern is not None:
            out["pattern"] = self.pattern
        if self.max_length != 200:
            out["max_length"] = self.max_length
        return out


@dataclass(frozen=True)
class Purpose:
    """A consent asked for: the purpose, the exact words shown beside its box, how it is confirmed."""

    name: str
    wording: Text
    confirm: str = "email"
    required: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "wording": self.wording.to_json(),
            "confirm": self.confirm,
            "required": self.required,
        }


@dataclass(frozen=True)
class FormDef:
    """A checked form definition."""

    name: str
    locales: tuple[str, ...]
    title: Text
    fields: tuple[Field, ...]
    purposes: tuple[Purpose, ...]
    thank_you: Text
    intro: Text | None = None
    confirmed: Text | None = None
    coupon_pool: str | None = None
    brand: str | None = None
    min_seconds: float = 3.0
    confirm_hours: float = 48.0
    allowed_origins: tuple[str, ...] = ()
    description: str = ""
    source: str = field(default="", compare=False)

    @property
    def default_locale(self) -> str:
        return self.locales[0]

    def field_named(self, name: str) -> Field | None:
        return next((f for f in self.fields if f.name == name), None)

    def text(self, value: Text | None, locale: str) -> str:
        """`value` in `locale` (else the default locale), '' when absent."""
        return value.get(locale, self.default_locale) if value is not None else ""

    def to_json(self) -> dict[str, Any]:
        """The definition as a document `parse_form` reads back to an equal FormDef."""
        out: dict[str, Any] = {
            "name": self.name,
            "locales": list(self.locales),
            "title": self.title.to_json(),
            "fields": [f.to_json() for f in self.fields],
            "purposes": [p.to_json() for p in self.purposes],
            "thank_you": self.thank_you.to_json(),
            "min_seconds": self.min_seconds,
            "confirm_hours": self.confirm_hours,
        }
        for key, text in (("intro", self.intro), ("confirmed", self.confirmed)):
            if text is not None:
                out[key] = text.to_json()
        if self.coupon_pool:
            out["coupon_pool"] = self.coupon_pool
        if self.brand:
            out["brand"] = self.brand
        if self.allowed_origins:
            out["allowed_origins"] = list(self.allowed_origins)
        if self.description:
            out["description"] = self.description
        return out


# --- parsing ---------------------------------------------------------------------------------------------


def _unknown(spec: Mapping[str, Any], allowed: Sequence[str], path: str, problems: Problems) -> None:
    for key in spec:
        if key not in allowed:
            where = f"{path}.{key}" if path else str(key)
            problems.append((where, f"unknown key; expected one of {', '.join(allowed)}"))


def _text(raw: Any, path: str, locales: Sequence[str], problems: Problems, *, max_chars: int = 2000) -> Text | None:
    if isinstance(raw, str):
        if not raw.strip():
            problems.append((path, "expected words, got an empty string"))
            return None
        if len(raw) > max_chars:
            problems.append((path, f"expected at most {max_chars} characters, got {len(raw)}"))
            return None
        return Text({locale: raw for locale in locales})
    if isinstance(raw, Mapping):
        out: dict[str, str] = {}
        for locale in locales:
            value = raw.get(locale)
            if not isinstance(value, str) or not value.strip():
                problems.append((f"{path}.{locale}", f"missing: the words in {locale!r} (a non-empty string)"))
            elif len(value) > max_chars:
                problems.append((f"{path}.{locale}", f"expected at most {max_chars} characters, got {len(value)}"))
            else:
                out[locale] = value
        for locale in raw:
            if locale not in locales:
                problems.append((f"{path}.{locale}", f"locale not in the form's locales ({', '.join(locales)})"))
        return Text(out) if len(out) == len(locales) else None
    problems.append((path, f"expected a string or {{locale: string}}, got {type(raw).__name__}"))
    return None


def _number(raw: Any, path: str, problems: Problems, *, low: float, high: float, default: float) -> float:
    if raw is None:
        return default
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not low <= raw <= high:
        problems.append((path, f"expected a number from {low:g} to {high:g}, got {raw!r}"))
        return default
    return float(raw)


def _options(raw: Any, path: str, problems: Problems) -> tuple[str, ...]:
    if not isinstance(raw, list) or not raw or not all(isinstance(o, str) and o.strip() for o in raw):
        problems.append((path, f"expected a non-empty list of strings, got {raw!r}"))
        return ()
    if len(set(raw)) != len(raw):
        problems.append((path, "an option is listed twice"))
    return tuple(raw)


def _field(raw: Any, path: str, locales: Sequence[str], problems: Problems) -> Field | None:
    if not isinstance(raw, Mapping):
        problems.append((path, f"expected a mapping with name and type, got {type(raw).__name__}"))
        return None
    _unknown(raw, _FIELD_KEYS, path, problems)
    count = len(problems)
    name, kind = raw.get("name"), raw.get("type")
    if kind not in FIELD_TYPES:
        problems.append((f"{path}.type", f"expected one of {', '.join(FIELD_TYPES)}, got {kind!r}"))
    if not isinstance(name, str) or not FIELD_NAME.match(name):
        problems.append((f"{path}.name", f"expected a lower-case name ([a-z][a-z0-9_]*, ≤ 40), got {name!r}"))
    elif name in _RESERVED_FIELDS:
        problems.append((f"{path}.name", f"{name!r} is reserved by the form itself; choose another name"))
    elif kind in ("email", "phone") and name != kind:
        problems.append((f"{path}.name", f"a field of type {kind} must be named {kind!r} (its trait), got {name!r}"))
    required = raw.get("required", False)
    if not isinstance(required, bool):
        problems.append((f"{path}.required", f"expected true or false, got {required!r}"))
    label = _text(raw["label"], f"{path}.label", locales, problems, max_chars=200) if "label" in raw else None
    help_ = _text(raw["help"], f"{path}.help", locales, problems, max_chars=500) if "help" in raw else None
    options: tuple[str, ...] = ()
    if kind in ("preferred_store", "interests"):
        if "options" not in raw:
            problems.append((f"{path}.options", f"missing: a field of type {kind} lists its choices"))
        else:
            options = _options(raw["options"], f"{path}.options", problems)
    elif "options" in raw:
        if kind == "custom":
            options = _options(raw["options"], f"{path}.options", problems)
        else:
            problems.append((f"{path}.options", "only preferred_store, interests and custom fields take options"))
    pattern = raw.get("pattern")
    if pattern is not None:
        if kind != "custom":
            problems.append((f"{path}.pattern", "only a custom field takes a pattern"))
        elif not isinstance(pattern, str):
            problems.append((f"{path}.pattern", f"expected a regular expression string, got {pattern!r}"))
        else:
            try:
                re.compile(pattern)
            except re.error as exc:
                problems.append((f"{path}.pattern", f"not a regular expression: {exc}"))
    max_length = raw.get("max_length", 200)
    if isinstance(max_length, bool) or not isinstance(max_length, int) or not 1 <= max_length <= 2000:
        problems.append((f"{path}.max_length", f"expected a whole number from 1 to 2000, got {max_length!r}"))
        max_length = 200
    if kind == "custom" and label is None and "label" not in raw:
        problems.append((f"{path}.label", "missing: a custom field needs a label (its question)"))
    if len(problems) > count:
        return None
    return Field(str(name), str(kind), bool(required), label, help_, options, pattern, int(max_length))


def _purpose(
    raw: Any, path: str, locales: Sequence[str], known: Sequence[str] | None, problems: Problems
) -> Purpose | None:
    if not isinstance(raw, Mapping):
        problems.append((path, f"expected a mapping with name, wording and confirm, got {type(raw).__name__}"))
        return None
    _unknown(raw, _PURPOSE_KEYS, path, problems)
    count = len(problems)
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        problems.append((f"{path}.name", f"expected a purpose name, got {name!r}"))
    elif known is not None and name not in known:
        problems.append(
            (f"{path}.name", f"unknown purpose {name!r}; expected one of {', '.join(known)} ([privacy] purposes)")
        )
    if "wording" not in raw:
        problems.append((f"{path}.wording", "missing: the exact words shown beside the box (kept with the consent)"))
        wording = None
    else:
        wording = _text(raw["wording"], f"{path}.wording", locales, problems, max_chars=1000)
    confirm = raw.get("confirm", "email")
    if confirm not in CONFIRM_MODES:
        problems.append((f"{path}.confirm", f"expected one of {', '.join(CONFIRM_MODES)}, got {confirm!r}"))
    required = raw.get("required", False)
    if not isinstance(required, bool):
        problems.append((f"{path}.required", f"expected true or false, got {required!r}"))
    if len(problems) > count or wording is None:
        return None
    return Purpose(str(name), wording, str(confirm), bool(required))


def _origins(raw: Any, problems: Problems) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        problems.append(("allowed_origins", f"expected a list of origins such as https://shop.example, got {raw!r}"))
        return ()
    out = []
    for index, origin in enumerate(raw):
        if not isinstance(origin, str) or not re.match(r"^https?://[^/\s]+$", origin):
            problems.append(
                (f"allowed_origins[{index}]", f"expected scheme://host[:port] with no path, got {origin!r}")
            )
        else:
            out.append(origin.lower())
    return tuple(out)


def _locales(raw: Any, problems: Problems) -> tuple[str, ...]:
    if raw is None:
        return ("en",)
    if not isinstance(raw, list) or not raw:
        problems.append(("locales", f"expected a non-empty list of {', '.join(LOCALES)}, got {raw!r}"))
        return ("en",)
    good = []
    for index, locale in enumerate(raw):
        if locale not in LOCALES:
            problems.append(
                (f"locales[{index}]", f"expected one of {', '.join(LOCALES)} (wording files), got {locale!r}")
            )
        elif locale in good:
            problems.append((f"locales[{index}]", f"{locale!r} is listed twice"))
        else:
            good.append(locale)
    return tuple(good) or ("en",)


def _cross_checks(fields: Sequence[Field], purposes: Sequence[Purpose], problems: Problems) -> None:
    names = [f.name for f in fields]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(("fields", f"field {name!r} is defined twice"))
    kinds = {f.type for f in fields}
    if not kinds & {"email", "phone"}:
        problems.append(("fields", "a sign-up form needs an email or a phone field (how we reach the person)"))
    seen: set[str] = set()
    for index, purpose in enumerate(purposes):
        if purpose.name in seen:
            problems.append((f"purposes[{index}].name", f"purpose {purpose.name!r} is asked twice"))
        seen.add(purpose.name)
        if purpose.confirm == "email" and "email" not in kinds:
            problems.append((f"purposes[{index}].confirm", "confirm: email needs an email field on the form"))
        if purpose.confirm == "sms" and "phone" not in kinds:
            problems.append((f"purposes[{index}].confirm", "confirm: sms needs a phone field on the form"))


def parse_form(document: Any, source: str = "<form>", *, purposes: Sequence[str] | None = None) -> FormDef:
    """The checked form of `document`; FormInvalid listing every problem otherwise.

    `purposes` are the consent purposes of the settings (`[privacy] purposes`); None skips that check.
    """
    if not isinstance(document, Mapping):
        raise FormInvalid(
            source,
            [("", f"expected a mapping with name, title, fields, purposes, thank_you; got {type(document).__name__}")],
        )
    problems: Problems = []
    _unknown(document, _KEYS, "", problems)
    name = document.get("name")
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        problems.append(
            ("name", f"expected 1-60 characters of a-z, 0-9, _ and - (it is the URL /f/NAME), got {name!r}")
        )
    locales = _locales(document.get("locales"), problems)
    title = _text(document.get("title"), "title", locales, problems, max_chars=200) if "title" in document else None
    if "title" not in document:
        problems.append(("title", "missing: the form's heading"))
    intro = _text(document["intro"], "intro", locales, problems) if "intro" in document else None
    thank_you = None
    if "thank_you" not in document:
        problems.append(("thank_you", "missing: the words shown after a submit"))
    else:
        thank_you = _text(document["thank_you"], "thank_you", locales, problems)
    confirmed = _text(document["confirmed"], "confirmed", locales, problems) if "confirmed" in document else None
    fields: list[Field] = []
    raw_fields = document.get("fields")
    if not isinstance(raw_fields, list) or not raw_fields:
        problems.append(("fields", f"expected a non-empty list of fields, got {raw_fields!r}"))
    else:
        for index, raw in enumerate(raw_fields):
            parsed = _field(raw, f"fields[{index}]", locales, problems)
            if parsed is not None:
                fields.append(parsed)
    found: list[Purpose] = []
    raw_purposes = document.get("purposes", [])
    if not isinstance(raw_purposes, list):
        problems.append(("purposes", f"expected a list of purposes, got {raw_purposes!r}"))
    else:
        for index, raw in enumerate(raw_purposes):
            parsed_purpose = _purpose(raw, f"purposes[{index}]", locales, purposes, problems)
            if parsed_purpose is not None:
                found.append(parsed_purpose)
    if fields:
        _cross_checks(fields, found, problems)
    pool = document.get("coupon_pool")
    if pool is not None and (not isinstance(pool, str) or not pool.strip()):
        problems.append(("coupon_pool", f"expected a coupon pool name, got {pool!r}"))
    brand = document.get("brand")
    if brand is not None and (not isinstance(brand, str) or "/" in brand or "\\" in brand or not brand.strip()):
        problems.append(
            ("brand", f"expected a brand kit file name in the project folder (e.g. brand.yaml), got {brand!r}")
        )
    min_seconds = _number(document.get("min_seconds"), "min_seconds", problems, low=0, high=3600, default=3.0)
    confirm_hours = _number(
        document.get("confirm_hours"), "confirm_hours", problems, low=0.1, high=24 * 30, default=48.0
    )
    origins = _origins(document.get("allowed_origins"), problems)
    description = document.get("description", "")
    if not isinstance(description, str):
        problems.append(("description", f"expected a string, got {description!r}"))
        description = ""
    if problems or title is None or thank_you is None:
        raise FormInvalid(source, problems or [("", "incomplete")])
    assert isinstance(name, str)
    return FormDef(
        name=name,
        locales=locales,
        title=title,
        fields=tuple(fields),
        purposes=tuple(found),
        thank_you=thank_you,
        intro=intro,
        confirmed=confirmed,
        coupon_pool=pool,
        brand=brand,
        min_seconds=min_seconds,
        confirm_hours=confirm_hours,
        allowed_origins=origins,
        description=description,
        source=source,
    )


def is_in_store(placement: str) -> bool:
    """Whether a sign-up at `placement` happened in a store (or through its print and screens)."""
    return placement in IN_STORE_PLACEMENTS


def check_placement(placement: Any) -> str:
    """`placement` when it is one of PLACEMENTS; InputError naming the valid ones otherwise."""
    if placement not in PLACEMENTS:
        raise InputError(f"unknown placement {placement!r}; expected one of {', '.join(PLACEMENTS)}", field="placement")
    return str(placement)
