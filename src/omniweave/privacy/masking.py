"""Masking identifiers for logs and error messages: enough to tell two apart, not enough to read them.

`mask("ann.smith@example.com")` → `a***@e***.com`; `mask("+447700900123")` → `+44********23`;
`mask_name("Ann Smith")` → `A** S****`. `mask_text` masks every e-mail address and phone-like number
inside a longer message.
"""

from __future__ import annotations

import re

_EMAIL = re.compile(r"[^@\s'\"<>(),;:]+@[^@\s'\"<>(),;:]+\.[A-Za-z]{2,}")
_PHONE = re.compile(r"\+?\d[\d \-().]{7,}\d")


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


def mask_name(value: str) -> str:
    """`Ann Smith` → `A** S****`: each word's first letter kept."""
    return " ".join(word[:1] + "*" * (len(word) - 1) for word in value.split())


def mask(value: object) -> str:
    """An identifier masked by its look: an e-mail, a phone number, else all but its first and last two
    characters hidden (user ids, card numbers)."""
    text = str(value)
    if "@" in text:
        return mask_email(text.strip())
    if _PHONE.fullmatch(text.strip()):
        return mask_phone(text)
    if len(text) <= 4:
        return "*" * len(text)
    return text[:1] + "*" * (len(text) - 3) + text[-2:]


def mask_text(text: str) -> str:
    """`text` with every e-mail address and phone-like number in it masked."""
    text = _EMAIL.sub(lambda m: mask_email(m.group(0)), text)
    return _PHONE.sub(lambda m: mask_phone(m.group(0)), text)
