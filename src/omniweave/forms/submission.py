"""A submitted form checked field by field: what the person gave, cleaned, or what is wrong with each. Pure.

`check_submission(form, answers, region=…)` reads the raw answers (strings, or lists of strings for
interests) and returns a `Checked`: the traits to write (e-mail lower-cased, phone in E.164, birthday as
YYYY-MM-DD, interests as a list), the purposes ticked, and every problem as a `FieldError` (field, a
message key of the wording files, its parameters). Nothing is written by this module; a submission
with any problem changes nothing (forms/service.py).

E-mail addresses are checked offline: syntax only (RFC 5321 lengths, a dot-atom local part, a domain of
letter-digit-hyphen labels with a top-level label that is not all digits; internationalised domains
through IDNA). No DNS or MX look-up is made, so a check costs no network and reveals nothing.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

import phonenumbers

from omniweave.forms.definition import Field, FormDef

_ATEXT = r"A-Za-z0-9!#$%&'*+/=?^_`{|}~\u0080-\U0010ffff-"
_LOCAL = re.compile(rf"^[{_ATEXT}]+(\.[{_ATEXT}]+)*$")
_LABEL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_POSTCODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 -]{1,10}[A-Za-z0-9]$")
_NAME = re.compile(r"^[^\x00-\x1f<>{}\[\]\\@#$%^*=+|~`\"]{1,100}$")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass(frozen=True)
class FieldError:
    """One problem with one answer: `code` names the message in the wording files (forms/locales)."""

    field: str
    code: str
    params: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"field": self.field, "code": self.code, **({"params": self.params} if self.params else {})}


@dataclass(frozen=True)
class Checked:
    """The cleaned answers (`traits`), the purposes ticked, and the problems (empty when it may be stored)."""

    traits: dict[str, Any]
    purposes: tuple[str, ...]
    errors: tuple[FieldError, ...]

    @property
    def ok(self) -> bool:
        return not self.errors


def check_email(text: str) -> str | None:
    """The address lower-cased when its syntax is valid (offline: no DNS), else None."""
    address = text.strip()
    if not address or len(address) > 254 or address.count("@") != 1:
        return None
    local, domain = address.rsplit("@", 1)
    if not local or len(local) > 64 or not _LOCAL.match(local):
        return None
    try:
        ascii_domain = domain.encode("idna").decode("ascii") if not domain.isascii() else domain
    except UnicodeError:
        return None
    labels = ascii_domain.rstrip(".").split(".")
    if len(labels) < 2 or any(not _LABEL.match(label) for label in labels) or labels[-1].isdigit():
        return None
    return f"{local}@{domain}".lower()


def check_phone(text: str, region: str) -> str | None:
    """The number in E.164 when it is a valid number (national numbers read in `region`), else None."""
    try:
        number = phonenumbers.parse(text.strip(), region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


def check_birthday(text: str, today: date) -> str | None:
    """YYYY-MM-DD when it is a real date between 120 years ago and today, else None."""
    try:
        day = date.fromisoformat(text.strip())
    except ValueError:
        return None
    if not (today.year - 120 <= day.year and day <= today):
        return None
    return day.isoformat()


def _single(raw: Any) -> str:
    if isinstance(raw, (list, tuple)):
        raw = raw[-1] if raw else ""
    return "" if raw is None else str(raw)


def _many(raw: Any) -> list[str]:
    if raw is None or raw == "":
        return []
    if isinstance(raw, (list, tuple)):
        return [str(v) for v in raw if str(v) != ""]
    return [str(raw)]


def _check_field(spec: Field, raw: Any, region: str, today: date) -> tuple[Any, FieldError | None]:
    """(cleaned value or None when empty, problem or None)."""
    if spec.type == "interests":
        chosen = _many(raw)
        bad = [c for c in chosen if c not in spec.options]
        if bad:
            return None, FieldError(spec.name, "choice", {"value": bad[0][:50]})
        if not chosen:
            return None, FieldError(spec.name, "required") if spec.required else None
        return sorted(set(chosen), key=spec.options.index), None
    text = _single(raw).strip()
    if not text:
        return None, FieldError(spec.name, "required") if spec.required else None
    if len(text) > spec.max_length or _CONTROL.search(text):
        return None, FieldError(
            spec.name, "too_long" if len(text) > spec.max_length else "invalid", {"max": spec.max_length}
        )
    if spec.type == "email":
        value = check_email(text)
        return value, None if value else FieldError(spec.name, "email")
    if spec.type == "phone":
        value = check_phone(text, region)
        return value, None if value else FieldError(spec.name, "phone")
    if spec.type == "birthday":
        value = check_birthday(text, today)
        return value, None if value else FieldError(spec.name, "birthday")
    if spec.type == "postcode":
        return (text.upper(), None) if _POSTCODE.match(text) else (None, FieldError(spec.name, "postcode"))
    if spec.type == "name":
        return (text, None) if _NAME.match(text) else (None, FieldError(spec.name, "name"))
    if spec.options and text not in spec.options:
        return None, FieldError(spec.name, "choice", {"value": text[:50]})
    if spec.pattern and not re.search(spec.pattern, text):
        return None, FieldError(spec.name, "pattern")
    return text, None


def check_submission(form: FormDef, answers: Mapping[str, Any], *, region: str, today: date) -> Checked:
    """Every answer of `answers` checked against `form` (see the module docstring); `region` reads national
    phone numbers, `today` bounds birthdays."""
    traits: dict[str, Any] = {}
    errors: list[FieldError] = []
    for spec in form.fields:
        value, error = _check_field(spec, answers.get(spec.name), region, today)
        if error is not None:
            errors.append(error)
        elif value is not None:
            traits[spec.trait] = value
    ticked = set(_many(answers.get("consent")))
    chosen = []
    for purpose in form.purposes:
        if purpose.name in ticked:
            chosen.append(purpose.name)
        elif purpose.required:
            errors.append(FieldError(f"consent_{purpose.name}", "consent_required"))
    for name in chosen:
        confirm = next(p.confirm for p in form.purposes if p.name == name)
        if confirm == "email" and "email" not in traits and not any(e.field == "email" for e in errors):
            errors.append(FieldError("email", "needed_for", {"purpose": name}))
        if confirm == "sms" and "phone" not in traits and not any(e.field == "phone" for e in errors):
            errors.append(FieldError("phone", "needed_for", {"purpose": name}))
    if not errors and not ({"email", "phone"} & set(traits)):
        errors.append(FieldError("email" if form.field_named("email") else "phone", "contact"))
    return Checked(traits, tuple(chosen), tuple(errors))
