"""A person's identifiers as a deletion searches for them, and as the collector's blocklist names them.

A deletion must find every trace of a person, written as it was sent: an e-mail in any case, a phone
number as `+447700900123`, `07700 900123` or `+44 7700 900123`. `needles` gives every such spelling
(lower-cased, as searches compare lower-cased text), with the SHA-256 digests that audience files and
exports hold instead of plain e-mails and phones. `blocked_digests` gives the digests the collector's
`IngestGuard` compares an incoming event's identifiers with (`storage.ops.tables.privacy.event_identifiers`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

import phonenumbers

from omniweave.storage.ops.tables.privacy import block_digest, identifier_digest

Identifier = tuple[str, str]
SHORT = 8
"""Needles shorter than this match a whole value only (a short user id must not match inside others)."""


@dataclass(frozen=True)
class Subject:
    """The person a request acts on: their person ids (also merged ones) and every identifier."""

    person_ids: tuple[str, ...]
    identifiers: tuple[Identifier, ...]

    @property
    def person_id(self) -> str | None:
        return self.person_ids[0] if self.person_ids else None


def phone_spellings(value: str, region: str = "GB") -> set[str]:
    """E.164, national and international spellings of a phone number (and the national digits alone)."""
    out = {value}
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        return out
    for form in (
        phonenumbers.PhoneNumberFormat.E164,
        phonenumbers.PhoneNumberFormat.NATIONAL,
        phonenumbers.PhoneNumberFormat.INTERNATIONAL,
    ):
        text = phonenumbers.format_number(number, form)
        out.add(text)
        out.add(text.replace(" ", ""))
    return out


def needles(subject: Subject, region: str = "GB") -> tuple[str, ...]:
    """Every lower-cased text that marks a record as the subject's: identifiers in each spelling, their
    SHA-256 digests (e-mail, phone), the person ids. Longest first."""
    found: set[str] = set(p.lower() for p in subject.person_ids)
    for kind, value in subject.identifiers:
        spellings = phone_spellings(value, region) if kind == "phone" else {value}
        for text in spellings:
            found.add(text.lower())
        if kind in ("email", "phone"):  # as audience files hash them (Meta: a phone's digits without +)
            found.add(hashlib.sha256(value.encode()).hexdigest())
            found.add(hashlib.sha256(value.lstrip("+").encode()).hexdigest())
    found.discard("")
    return tuple(sorted(found, key=lambda n: (-len(n), n)))


def blocked_digests(subject: Subject) -> tuple[str, ...]:
    """The digests under which the collector refuses the subject's events (see `event_identifiers`)."""
    found = (block_digest(kind, value) for kind, value in subject.identifiers)
    return tuple(sorted({digest for digest in found if digest is not None}))


def subject_digests(identifiers: Iterable[Identifier]) -> tuple[str, ...]:
    """The consent history's subject digests of these identifiers."""
    return tuple(sorted({identifier_digest(kind, value) for kind, value in identifiers}))


def text_matches(text: str, found: tuple[str, ...]) -> bool:
    """Whether lower-cased `text` holds one of `found` (short needles: as a whole value only)."""
    return any((n in text) if len(n) >= SHORT else (text == n) for n in found)
