"""Segment counting: GSM-7 (160/153 septets, extension characters cost 2) and UCS-2 (70/67)."""

from __future__ import annotations

import pytest

from omniweave.channels.sms.encoding import count_segments, non_gsm_characters


@pytest.mark.parametrize(
    ("text", "encoding", "characters", "segments"),
    [
        ("", "GSM-7", 0, 0),
        ("a", "GSM-7", 1, 1),
        ("a" * 160, "GSM-7", 160, 1),
        ("a" * 161, "GSM-7", 161, 2),
        ("a" * 306, "GSM-7", 306, 2),
        ("a" * 307, "GSM-7", 307, 3),
        ("a" * 459, "GSM-7", 459, 3),
        ("a" * 460, "GSM-7", 460, 4),
        ("€" * 80, "GSM-7", 80, 1),  # 160 septets
        ("€" + "a" * 159, "GSM-7", 160, 2),  # 161 septets
        ("a" * 152 + "€" + "a" * 7, "GSM-7", 160, 2),  # the escape pair is not split
        ("é è ù ì ò Ç Ø å Δ ß ¿ ¡ ä ö ñ ü à £ ¥ §", "GSM-7", 39, 1),
        ("Caf\u00e9 d\u00e9j\u00e0 vu", "GSM-7", 12, 1),
        ("\u041f\u0440\u0438\u0432\u0435\u0442" * 10, "UCS-2", 60, 1),
        ("\u0436" * 70, "UCS-2", 70, 1),
        ("\u0436" * 71, "UCS-2", 71, 2),
        ("\u0436" * 134, "UCS-2", 134, 2),
        ("\u0436" * 135, "UCS-2", 135, 3),
        ("\U0001f600" * 35, "UCS-2", 35, 1),  # 70 code units
        ("\U0001f600" * 36, "UCS-2", 36, 2),
        ("a" * 66 + "\U0001f600" + "a" * 4, "UCS-2", 71, 2),  # 72 units; the pair is not split
        ("a" * 159 + "\u2019", "UCS-2", 160, 3),  # one curly quote: UCS-2, 160 units
    ],
)
def test_segment_table(text: str, encoding: str, characters: int, segments: int) -> None:
    counted = count_segments(text)
    assert (counted.encoding, counted.characters, counted.segments) == (encoding, characters, segments)


def test_units_and_culprits() -> None:
    assert count_segments("a€").units == 3
    assert count_segments("\U0001f600").units == 2
    assert non_gsm_characters("Hi \u2019there\u2019 \U0001f600") == ["\u2019", "\U0001f600"]
