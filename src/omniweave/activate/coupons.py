"""Coupon codes people can read aloud, type at a till and never guess.

The alphabet is the 25 characters left of `0-9A-Z` once every look-alike is gone:

    3 4 6 7 9 A C D E F G H J K M N P Q R T U V W X Y

(no 0/O, 1/I/L, 2/Z, 5/S, 8/B). A code is an optional pool prefix (itself written in the
alphabet), `length` random characters drawn with `secrets` (so 10 characters carry
10 x log2(25) = 46.4 bits: guessing one live code out of a million takes ~10^8 tries on average),
then one check character.

The check character is a Damm check over the field with 25 elements, GF(25) = GF(5)[t]/(t^2 - 2):
each character is a field element, the running value is `r <- a*r + c` with `a = t`, and the check
character makes the final value zero. As a sum, the value is sum(a^(n-i) * c_i); every weight is a
non-zero field element, so any single changed character changes the value (no zero divisors), and
swapping two neighbours x, y changes it by (a - 1)(x - y) != 0 because a != 1. So every
single-character error and every adjacent transposition is caught (tests/activate/test_coupons.py
checks both exhaustively with hypothesis).

Codes are shown grouped by four for reading (`ABCD-EFGH-JK7`) and accepted with any case, spaces,
dashes, dots or underscores (`normalize_code`).
"""

from __future__ import annotations

import math
import re
import secrets
from collections.abc import Iterator

import numpy as np

from omniweave.errors import InputError

ALPHABET = "34679ACDEFGHJKMNPQRTUVWXY"
"""The 25 code characters: 0-9A-Z without 0/O, 1/I/L, 2/Z, 5/S, 8/B."""
BASE = len(ALPHABET)
MIN_LENGTH = 6
"""Fewer random characters than this would be guessable (25^6 = 2.4e8)."""
MAX_LENGTH = 40
GROUP = 4
_INDEX = {char: index for index, char in enumerate(ALPHABET)}
_SEPARATORS = re.compile(r"[\s\-._]+")


def _times_a(value: int) -> int:
    """`a * value` in GF(25) with a = t: (u + v t) * t = 2v + u t, the element u + v t stored as u + 5 v."""
    u, v = value % 5, value // 5
    return (2 * v) % 5 + 5 * u


def _add(x: int, y: int) -> int:
    """Addition in GF(25): component-wise modulo 5."""
    return (x % 5 + y % 5) % 5 + 5 * ((x // 5 + y // 5) % 5)


def _negate(x: int) -> int:
    return (-(x % 5)) % 5 + 5 * ((-(x // 5)) % 5)


# The Damm operation table r * c = a r + c, precomputed (625 entries) so a check is one lookup per character.
_STEP = [[_add(_times_a(r), c) for c in range(BASE)] for r in range(BASE)]
_NEGATE = [_negate(x) for x in range(BASE)]
_STEP_TABLE = np.array(_STEP, dtype=np.int64)
_CHECK_TABLE = np.array([_NEGATE[_times_a(state)] for state in range(BASE)], dtype=np.int64)
"""The check character's value for each running state: -(a * state)."""
_ALPHABET_BYTES = np.frombuffer(ALPHABET.encode("ascii"), dtype=np.uint8)


def _running(values: Iterator[int] | list[int]) -> int:
    state = 0
    for value in values:
        state = _STEP[state][value]
    return state


def check_character(body: str) -> str:
    """The check character for `body` (alphabet characters only): appended, the whole code checks to zero.

    Raises InputError naming the first character that is not in the alphabet.
    """
    values = [_value(char, position) for position, char in enumerate(body)]
    # a * state + check = 0  =>  check = -(a * state)
    return ALPHABET[_NEGATE[_times_a(_running(values))]]


def _value(char: str, position: int) -> int:
    try:
        return _INDEX[char]
    except KeyError:
        raise InputError(
            f"character {char!r} at position {position + 1} is not a code character (expected one of {ALPHABET})",
            field="code",
        ) from None


def normalize_code(text: str) -> str:
    """The canonical form of a code as someone typed or scanned it: upper case, without spaces, dashes,
    dots or underscores. It does not validate (see `is_valid_code`)."""
    return _SEPARATORS.sub("", str(text)).upper()


def is_valid_code(text: str, *, prefix: str = "", length: int | None = None) -> bool:
    """True when `text` (any case and grouping) is a well-formed code: alphabet characters only, the check
    character right, and when given, the pool `prefix` and `length` random characters."""
    code = normalize_code(text)
    if not code or any(char not in _INDEX for char in code):
        return False
    if prefix and not code.startswith(normalize_code(prefix)):
        return False
    if length is not None and len(code) != len(normalize_code(prefix)) + length + 1:
        return False
    if len(code) < 2:
        return False
    return _running(_INDEX[char] for char in code) == 0


def check_prefix(prefix: str) -> str:
    """A pool prefix normalised, or InputError when it has a character outside the alphabet (a prefix is part
    of every code, so it must survive the same typing and checking as the rest)."""
    normal = normalize_code(prefix)
    for position, char in enumerate(normal):
        if char not in _INDEX:
            raise InputError(
                f"prefix {prefix!r}: character {char!r} at position {position + 1} is not a code character "
                f"(expected only {ALPHABET}; look-alikes 0/O, 1/I/L, 2/Z, 5/S, 8/B are left out)",
                field="prefix",
            )
    if len(normal) > 10:
        raise InputError(f"prefix {prefix!r} is {len(normal)} characters long (at most 10)", field="prefix")
    return normal


def check_length(length: int) -> int:
    """`length` (random characters per code) if it is between MIN_LENGTH and MAX_LENGTH, else InputError."""
    if not isinstance(length, int) or isinstance(length, bool) or not MIN_LENGTH <= length <= MAX_LENGTH:
        raise InputError(
            f"got {length!r} random characters; expected a whole number from {MIN_LENGTH} to {MAX_LENGTH} "
            f"(each adds log2(25) = 4.6 bits)",
            field="length",
        )
    return length


def new_code(length: int = 10, prefix: str = "") -> str:
    """One fresh code: `prefix`, `length` characters from `secrets`, a check character (normalised, ungrouped)."""
    check_length(length)
    head = check_prefix(prefix)
    return _finish(head, secrets.randbelow(BASE**length), length)


def new_codes(count: int, length: int = 10, prefix: str = "") -> list[str]:
    """`count` fresh codes (possibly with repeats: the caller removes collisions against the store).

    Vectorised: random bytes from `secrets.token_bytes`, those below 250 kept (250 = 10 x 25, so each
    character is uniform), the check characters by one table lookup per position across all codes."""
    check_length(length)
    head = check_prefix(prefix)
    if count <= 0:
        return []
    digits = _uniform_digits(count * length).reshape(count, length)
    state = np.zeros(count, dtype=np.int64)
    for char in head:
        state = _STEP_TABLE[state, _INDEX[char]]
    for position in range(length):
        state = _STEP_TABLE[state, digits[:, position]]
    check = _CHECK_TABLE[state]
    letters = _ALPHABET_BYTES[np.concatenate([digits, check[:, None]], axis=1)]
    width = length + 1
    blob = letters.tobytes().decode("ascii")
    return [head + blob[i : i + width] for i in range(0, count * width, width)]


def _uniform_digits(count: int) -> np.ndarray:
    """`count` values uniform in 0..24 from `secrets` (rejection sampling of bytes >= 250)."""
    out = np.empty(0, dtype=np.int64)
    while out.size < count:
        raw = np.frombuffer(secrets.token_bytes((count - out.size) * 21 // 20 + 64), dtype=np.uint8)
        out = np.concatenate([out, (raw[raw < 250] % BASE).astype(np.int64)])
    return out[:count]


def _finish(head: str, number: int, length: int) -> str:
    chars = []
    for _ in range(length):
        number, digit = divmod(number, BASE)
        chars.append(ALPHABET[digit])
    body = head + "".join(chars)
    state = _running(_INDEX[char] for char in body)
    return body + ALPHABET[_NEGATE[_times_a(state)]]


def format_code(code: str, group: int = GROUP) -> str:
    """A code grouped for reading: `ABCDEFGHJK7` -> `ABCD-EFGH-JK7`."""
    normal = normalize_code(code)
    return "-".join(normal[i : i + group] for i in range(0, len(normal), group))


def code_space_bits(length: int) -> float:
    """How many bits of randomness `length` characters carry (for the docs and the pool summary)."""
    return length * math.log2(BASE)
