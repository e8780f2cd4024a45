"""Content without personalisation consent: the person's personal values withheld, fallbacks in their place.

A person whose `personalisation` consent does not allow it (`personalised` below, by `[privacy]
personalisation`: a stated no, or anything but a stated yes) still gets the message, not personalised:
the templates see the same `person` table, but every profile column other than the ids and consent flags
(`IMPERSONAL_COLUMNS`) is a `Withheld` value, and `recommendations` is the fallback list. A withheld value

- is false in a test, so a template's own fallback applies: `{{ person.first_name or 'there' }}`,
  `{% if person.first_name %}…{% endif %}`, `{{ person.first_name | default('there') }}`;
- printed bare (`{{ person.first_name }}`), shows its fallback: the message's own (`fallbacks:` in the
  message file) or the documented default (`DEFAULT_TEXT_FALLBACKS`: `first_name` is "there");
- with neither, fails the rendering (`PersonalValueError`, checker rule `personal-without-consent`): the
  message cannot be rendered without personal data, and the send is skipped with that reason — never a
  hole, never the personal value.

Product lists (`recommendations`, `person.recommended_products`, `favourite_products`,
`viewed_not_bought`) fall back to the best sellers (the service computes them over everyone's orders), or
to the message's own list. A message with `without_personalisation: skip` is not sent to such a person
at all (`skip_reason`). Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jinja2

PERSONALISATION_COLUMN = "consent_purpose_personalisation"
"""The profile column of the personalisation purpose (profiles/service/build.py)."""
PERSONALISATION_MODES = ("denied", "not_granted")
"""`[privacy] personalisation`: fall back when the person said no (`denied`, the default), or whenever they
did not say yes (`not_granted`)."""
WITHOUT_PERSONALISATION = ("fallback", "skip")
"""What a message does for a person it may not personalise: render with fallbacks, or skip them."""
IMPERSONAL_COLUMNS = frozenset({"person_id"})
"""Profile columns templates still see as they are (besides every `consent_*` column)."""
DEFAULT_TEXT_FALLBACKS: Mapping[str, str] = {"first_name": "there"}
"""What a bare `{{ person.<column> }}` prints without personalisation consent, unless the message says."""
PRODUCT_COLUMNS = ("recommended_products", "favourite_products", "viewed_not_bought")
"""Profile columns that are lists of products: by default they fall back to the best sellers."""
RULE = "personal-without-consent"
"""The checker rule (and render problem) of a template that prints a personal value with no fallback."""


class PersonalValueError(jinja2.UndefinedError):
    """A template printed a personal value that has no fallback, for a person who may not get personal content."""


class Withheld(jinja2.Undefined):
    """A personal value withheld: false in tests, printed as its fallback text, an error without one."""

    __slots__ = ("_fallback",)

    def __init__(self, path: str, fallback: str | None = None):
        super().__init__(
            hint=(
                f"{path} is personal data and has no fallback: the person has not consented to personalisation "
                f"(give the template its own, e.g. {{{{ {path} or '…' }}}}, or the message a `fallbacks:` entry)"
            ),
            name=path,
            exc=PersonalValueError,
        )
        self._fallback = fallback

    def __str__(self) -> str:
        if self._fallback is None:
            self._fail_with_undefined_error()
        return str(self._fallback)

    def __iter__(self) -> Any:
        self._fail_with_undefined_error()

    def __len__(self) -> int:
        self._fail_with_undefined_error()

    def __repr__(self) -> str:
        return "Withheld"


def personalised(stated: object, mode: str = "denied") -> bool:
    """Whether personal values may be used for a person whose personalisation consent is `stated` (True, False,
    None = never stated): `denied` mode — unless they said no; `not_granted` — only if they said yes."""
    if mode == "not_granted":
        return stated is True
    return stated is not False


def _key(name: str) -> str:
    return name[len("person.") :] if name.startswith("person.") else name


def impersonal(
    profile: Mapping[str, Any], fallbacks: Mapping[str, Any], best_sellers: Sequence[str]
) -> tuple[dict[str, Any], list[Any] | Withheld]:
    """(the `person` table a template sees without personalisation consent, the `recommendations` value).

    Every column but the ids and consent flags is withheld; a message's `fallbacks` (by column, or
    `recommendations`) win over the defaults (`first_name`: "there"; product lists: `best_sellers`)."""
    chosen = {_key(k): v for k, v in fallbacks.items()}
    products = list(best_sellers)
    out: dict[str, Any] = {}
    for column in (*profile, *(k for k in chosen if k != "recommendations")):
        if column in IMPERSONAL_COLUMNS or column.startswith("consent_"):
            out[column] = profile.get(column)
            continue
        given = chosen.get(column, DEFAULT_TEXT_FALLBACKS.get(column))
        if isinstance(given, list | tuple):
            out[column] = list(given)
        elif given is None and column in PRODUCT_COLUMNS and products:
            out[column] = list(products)
        else:
            out[column] = Withheld(f"person.{column}", None if given is None else str(given))
    recs = chosen.get("recommendations")
    if isinstance(recs, list | tuple):
        recommendations: list[Any] | Withheld = list(recs)
    elif recs is None and products:
        recommendations = list(products)
    else:
        recommendations = Withheld("recommendations", None if recs is None else str(recs))
    return out, recommendations


def skip_reason(
    message_name: str, without: str, personal: bool, problems: Sequence[Any], stated: object = None
) -> str | None:
    """Why a rendition may not go to a person (None: it may): the message goes only personalised and the
    person may not be personalised, or a template printed a personal value with no fallback (`problems`:
    the rendition's, each with `rule` and `message`)."""
    if personal:
        return None
    said = "never stated" if stated is None else ("no" if stated is False else "yes")
    if without == "skip":
        return (
            f"no personalisation consent ({PERSONALISATION_COLUMN}: {said}) and {message_name} is sent only "
            "personalised (without_personalisation: skip)"
        )
    found = [p for p in problems if getattr(p, "rule", "") == RULE]
    if found:
        return f"no personalisation consent ({PERSONALISATION_COLUMN}: {said}) and {found[0].message}"
    return None


__all__ = [
    "DEFAULT_TEXT_FALLBACKS",
    "IMPERSONAL_COLUMNS",
    "PERSONALISATION_COLUMN",
    "PERSONALISATION_MODES",
    "PRODUCT_COLUMNS",
    "RULE",
    "WITHOUT_PERSONALISATION",
    "PersonalValueError",
    "Withheld",
    "impersonal",
    "personalised",
    "skip_reason",
]
