"""The words of forms per locale (forms/locales/*.yaml), and which locale a visitor gets.

A form's own texts (title, purposes' wording, thank-you) come from its definition; everything else a
page or a confirmation message says (labels, buttons, error messages) comes from the locale's wording
file, so a new language is one file. `pick_locale(form, asked, accept_language)`: `?lang=` when the
form has it, else the first of the browser's Accept-Language the form has, else the form's default.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import yaml

from omniweave.forms.definition import LOCALES, FormDef


@dataclass(frozen=True)
class Wording:
    """One locale's words; `t("errors.email")`, `t("summary", count=2)`."""

    locale: str
    words: dict[str, Any]

    def t(self, key: str, **params: Any) -> str:
        value: Any = self.words
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if not isinstance(value, str):
            return ""
        return value.format(**params) if params else value

    def label(self, field_name: str, field_type: str) -> str:
        """The default label of a field: by its name (first_name), else by its type (email)."""
        return self.t(f"labels.{field_name}") or self.t(f"labels.{field_type}") or field_name.replace("_", " ")


@cache
def wording(locale: str) -> Wording:
    """The wording of `locale` (one of LOCALES; anything else gets English)."""
    locale = locale if locale in LOCALES else "en"
    text = (resources.files("omniweave.forms") / "locales" / f"{locale}.yaml").read_text(encoding="utf-8")
    return Wording(locale, yaml.safe_load(text))


def pick_locale(form: FormDef, asked: str | None, accept_language: str | None) -> str:
    """The locale a visitor gets (see the module docstring)."""
    if asked and asked in form.locales:
        return asked
    for part in (accept_language or "").split(","):
        tag = part.split(";", 1)[0].strip().lower()
        for candidate in (tag, tag.split("-", 1)[0]):
            if candidate in form.locales:
                return candidate
    return form.default_locale
