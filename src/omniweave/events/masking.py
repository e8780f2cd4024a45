"""Identifiers as error messages may show them: enough for a support engineer, not enough to read them.

`masked("ann.smith@example.com")` → `a***@e***.com (ref 5e8b1f0c)`; `masked("+447700900123")` →
`+44********23 (ref 0b7a…)`. The mask keeps the first letters and the top-level domain (or the country code
and the last two digits); the `ref` is the first 8 hex digits of the SHA-256 of the value as given, trimmed
and lower-cased, so support can match it against a customer's address without anyone reading one. Pure
and at the bottom of the layers: every stage (identity, channels) may use it; privacy/masking.py builds
the log masking on the same functions.
"""

from __future__ import annotations

import hashlib
import re

PHONE = re.compile(r"(?<![\w.:/-])(?:\+\d|0\d)[\d \-().]{6,}\d(?![\w:])")
"""A phone number as people write one: `+` and the country code, or a national 0, then 8 or more digits
(dates and times, which start otherwise or hold a colon, are left alone)."""


def mask_email(value: str) -> str:
    """`ann@example.com` → `a***@e***.com` (first letters and the top-level domain kept)."""
    local, _, domain = value.partition("@")
    host, dot, top = domain.rpartition(".")
    if not dot:
        host, top = domain, ""
    return f"{local[:1]}***@{host[:1]}***{dot}{top}"


def mask_phone(value: str) -> str:
    """`+447700900123` → `+44********23` (the country code and the last two digits kept)."""
    digits = [ch for ch in value if ch.isdigit()]
    if len(digits) < 5:
        return "*" * len(digits)
    head = "+" + "".join(digits[:2]) if value.strip().startswith("+") else "".join(digits[:1])
    hidden = len(digits) - len(head.lstrip("+")) - 2
    return head + "*" * hidden + "".join(digits[-2:])


def digit_count(text: str) -> int:
    return sum(ch.isdigit() for ch in text)


def mask(value: object) -> str:
    """An identifier masked by its look: an e-mail, a phone number, else all but its first and last two
    characters hidden (user ids, card numbers)."""
    text = str(value)
    if "@" in text:
        return mask_email(text.strip())
    if PHONE.fullmatch(text.strip()) and digit_count(text) >= 9:
        return mask_phone(text)
    if len(text) <= 4:
        return "*" * len(text)
    return text[:1] + "*" * (len(text) - 3) + text[-2:]


def reference(value: object) -> str:
    """The first 8 hex digits of the SHA-256 of `value`, trimmed and lower-cased."""
    return hashlib.sha256(str(value).strip().lower().encode()).hexdigest()[:8]


def masked(value: object) -> str:
    """`mask(value)` with its `ref`, for an error message that must say which identifier it is about."""
    return f"{mask(value)} (ref {reference(value)})"


def masked_identifier(kind: str, value: object) -> str:
    """`kind:value` for an error message: e-mail addresses and phone numbers masked with their ref, other
    kinds (user ids, device ids, cards: no personal data by themselves) as they are."""
    if kind in ("email", "phone"):
        return f"{kind}:{masked(value)}"
    return f"{kind}:{value}"
