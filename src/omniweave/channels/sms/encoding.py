"""How many SMS segments a text costs: GSM-7 when every character is in GSM 03.38, else UCS-2.

An SMS carries 140 bytes. In the GSM 7-bit alphabet (GSM 03.38) that is 160 septets; characters
of the extension table (`€ [ ] { } \\ ^ ~ |` and form feed) take two septets (an escape and the
character). Any character outside both tables switches the whole message to UCS-2: 70 UTF-16 code
units, where a character outside the Basic Multilingual Plane (most emoji) takes two.

A longer text is split into concatenated segments whose user-data header takes 7 septets / 3 code
units, leaving 153 septets (GSM-7) or 67 code units (UCS-2) per segment. Phones never split an
escape pair or a surrogate pair across two segments, so the split here is greedy per character,
which is what carriers bill.

Pure: no I/O. The content checker and the SMS adapter both count with `count_segments`.
"""

from __future__ import annotations

from dataclasses import dataclass

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
"""The GSM 03.38 default alphabet (127 characters; the escape code 0x1B is not text)."""

GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")
"""The GSM 03.38 extension table: each costs two septets (escape + character)."""

GSM7_SINGLE, GSM7_MULTI = 160, 153
UCS2_SINGLE, UCS2_MULTI = 70, 67


@dataclass(frozen=True)
class SegmentCount:
    """The encoding a text needs, its length in characters, its cost in units and in segments.

    `units` is septets for GSM-7 and UTF-16 code units for UCS-2.
    """

    encoding: str
    characters: int
    segments: int
    units: int = 0

    def to_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


def is_gsm7(text: str) -> bool:
    """True when every character of `text` is in the GSM 03.38 default alphabet or its extension."""
    return all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in text)


def _unit_costs(text: str, gsm: bool) -> list[int]:
    if gsm:
        return [2 if ch in GSM7_EXTENSION else 1 for ch in text]
    return [2 if ord(ch) > 0xFFFF else 1 for ch in text]


def _split(costs: list[int], per_segment: int) -> int:
    """Segments needed when characters (of these unit costs) are packed greedily, never split."""
    segments, used = 1, 0
    for cost in costs:
        if used + cost > per_segment:
            segments += 1
            used = 0
        used += cost
    return segments


def count_segments(text: str) -> SegmentCount:
    """The encoding (GSM-7 or UCS-2) and the number of SMS segments `text` is sent as.

    Why: an SMS is billed per segment, and a single character outside GSM-7 (an emoji, a curly
    quote) more than doubles the cost; the content checker shows and limits it. "" costs nothing.
    """
    gsm = is_gsm7(text)
    encoding = "GSM-7" if gsm else "UCS-2"
    costs = _unit_costs(text, gsm)
    units = sum(costs)
    single, multi = (GSM7_SINGLE, GSM7_MULTI) if gsm else (UCS2_SINGLE, UCS2_MULTI)
    if units == 0:
        segments = 0
    elif units <= single:
        segments = 1
    else:
        segments = _split(costs, multi)
    return SegmentCount(encoding=encoding, characters=len(text), segments=segments, units=units)


def non_gsm_characters(text: str) -> list[str]:
    """The distinct characters that force `text` into UCS-2, in order of appearance (for a hint)."""
    seen: dict[str, None] = {}
    for ch in text:
        if ch not in GSM7_BASIC and ch not in GSM7_EXTENSION:
            seen.setdefault(ch, None)
    return list(seen)
