"""`normalize` and `is_blocked` (identity.graph) over Arrow arrays: the array path of `resolve`.

`resolve` reads millions of raw identifiers; normalising them one Python call at a time costs more
than the rest of the stitching. `normalize_array` does the same work with Arrow compute kernels for
every ASCII value of the kinds whose rule is text handling (e-mail, device id, codes, user and
anonymous ids), and hands the rest to `normalize` itself, one distinct value at a time: phone
numbers (libphonenumber) and any value with a non-ASCII character (where Python's and Arrow's
ideas of whitespace, case and digits part). So the result is `normalize`'s, value for value; the
property test in tests/identity/test_arrays.py holds the two to that.

Each value gets a status: `OK` (the normalised value), `INVALID` (not an identifier of the kind),
`BLOCKED` (a placeholder that must never link: `is_blocked`), or `MISSING` (null or blank: not
counted anywhere, like the object path).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from omniweave.identity.graph import (
    _BLOCKED_EMAIL_LOCALS,
    DEFAULT_BLOCKED,
    IdentifierError,
    is_blocked,
    normalize,
)

OK, INVALID, BLOCKED, MISSING = 0, 1, 2, 3
"""Statuses of `normalize_array`."""

_WS = "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f "
"""The ASCII characters Python's `str.strip()` and regex `\\s` take for whitespace."""
_WS_CLASS = r"\t\n\x0b\x0c\r\x1c-\x1f "
_EMAIL = f"^[^@{_WS_CLASS}]+@[^@{_WS_CLASS}]+\\.[^@{_WS_CLASS}.]+$"
_CODE_KINDS = ("loyalty_card", "customer_number", "coupon_code")
_PYTHON_KINDS = frozenset({"phone"})
_DISTINCT_FROM = 64
"""From this many values, `normalize_array` works on the distinct ones when they are at most half of them."""


def normalize_array(
    kind: str,
    raw: pa.Array,
    default_region: str = "GB",
    customer_number_prefix: str = "",
    blocked: frozenset[str] = DEFAULT_BLOCKED,
    cache: dict[tuple[str, str], tuple[str | None, int]] | None = None,
) -> tuple[pa.Array, np.ndarray]:
    """Per raw value of `kind`: its normalised value (null unless OK) and its status (see the module).

    `cache` (optional) keeps the Python-normalised values between calls (phones recur in every batch)."""
    raw = raw.cast(pa.string()) if raw.type != pa.string() else raw
    if isinstance(raw, pa.ChunkedArray):
        raw = raw.combine_chunks()
    if len(raw) >= _DISTINCT_FROM:
        # an identifier recurs in every event of its person: normalise each distinct value once, then map back
        encoded = pc.dictionary_encode(raw)
        distinct = encoded.dictionary
        if len(distinct) * 2 <= len(raw):
            indices = encoded.indices
            valid = pc.is_valid(indices).to_numpy(zero_copy_only=False)
            if len(distinct) == 0:
                return pa.nulls(len(raw), pa.string()), np.full(len(raw), MISSING, np.int8)
            value, status = normalize_array(kind, distinct, default_region, customer_number_prefix, blocked, cache)
            at = pc.fill_null(indices, 0).to_numpy(zero_copy_only=False)
            return value.take(indices), np.where(valid, status[at], MISSING).astype(np.int8)
    text = pc.utf8_trim(raw, characters=_WS)
    missing = pc.fill_null(pc.equal(pc.utf8_length(text), 0), True)
    ascii_ = pc.fill_null(pc.string_is_ascii(raw), True)
    if kind in _PYTHON_KINDS:
        python = pc.invert(missing)
    else:
        python = pc.and_(pc.invert(missing), pc.invert(ascii_))
    value, invalid = _vectorised(kind, text, customer_number_prefix)
    bad = np.zeros(len(raw), bool) if invalid is None else pc.fill_null(invalid, False).to_numpy(zero_copy_only=False)
    status = np.where(bad, INVALID, OK)
    blocked_mask = _blocked_mask(kind, value, blocked)
    status = np.where((status == OK) & blocked_mask, BLOCKED, status)
    if pc.any(python).as_py():  # each distinct value once through `normalize`, then mapped back
        distinct = pc.unique(raw.filter(python))
        done = [
            _python_one(kind, r, default_region, customer_number_prefix, blocked, cache) for r in distinct.to_pylist()
        ]
        index = pc.fill_null(pc.index_in(raw, value_set=distinct), 0)
        chosen = python.to_numpy(zero_copy_only=False)
        found = np.asarray([d[1] for d in done], dtype=np.int64)[index.to_numpy(zero_copy_only=False)]
        status = np.where(chosen, found, status)
        value = pc.if_else(python, pa.array([d[0] for d in done], pa.string()).take(index), value)
    status = np.where(missing.to_numpy(zero_copy_only=False), MISSING, status)
    value = pc.if_else(pa.array(status == OK), value, pa.nulls(len(value), pa.string()))
    return value, status.astype(np.int8)


def _python_one(
    kind: str,
    raw: str,
    region: str,
    prefix: str,
    blocked: frozenset[str],
    cache: dict[tuple[str, str], tuple[str | None, int]] | None,
) -> tuple[str | None, int]:
    key = (kind, raw)
    if cache is not None and key in cache:
        return cache[key]
    try:
        norm: str | None = normalize(kind, raw, region, prefix)
    except IdentifierError:
        result: tuple[str | None, int] = (None, INVALID)
    else:
        assert norm is not None
        result = (norm, BLOCKED if is_blocked(kind, norm, blocked) else OK)
    if cache is not None:
        if len(cache) > 2_000_000:  # bounded: a huge log's phones need not all stay in memory
            cache.clear()
        cache[key] = result
    return result


def _vectorised(kind: str, text: pa.Array, prefix: str) -> tuple[pa.Array, pa.Array | None]:
    """The ASCII rule of `normalize` for `kind`: (values, invalid mask or None)."""
    if kind == "email":
        value = pc.ascii_lower(text)
        return value, pc.invert(pc.match_substring_regex(value, _EMAIL))
    if kind in _CODE_KINDS:
        value = pc.ascii_upper(pc.replace_substring_regex(text, f"[{_WS_CLASS}\\-]", ""))
        if kind == "customer_number" and prefix:
            digits = pc.fill_null(pc.match_substring_regex(value, "^[0-9]+$"), False)
            value = pc.if_else(digits, pc.binary_join_element_wise(pa.scalar(prefix), value, ""), value)
        return value, None
    if kind == "device_id":
        return pc.ascii_lower(text), None
    return text, None


def _blocked_mask(kind: str, value: pa.Array, blocked: frozenset[str]) -> np.ndarray:
    """`is_blocked` for ASCII values (non-ASCII ones are decided again in Python)."""
    low = pc.ascii_lower(pc.utf8_trim(value, characters=_WS))
    listed = pc.is_in(low, value_set=pa.array(sorted(blocked), pa.string()))
    zeros = pc.and_(pc.match_substring(low, "0"), pc.match_substring_regex(low, r"^[0 \-+()]*$"))
    mask = pc.or_(listed, zeros)
    at = pc.match_substring(low, "@")
    emailish = at if kind != "email" else pa.array(np.ones(len(value), bool))
    local = pc.replace_substring_regex(low, "(?s)@.*$", "", max_replacements=1)
    # `partition("@")[0]`: everything before the first @ ("@.*$" is greedy from the first @)
    locals_ = pc.is_in(local, value_set=pa.array(sorted(_BLOCKED_EMAIL_LOCALS), pa.string()))
    mask = pc.or_(mask, pc.and_(emailish, locals_))
    return pc.fill_null(mask, False).to_numpy(zero_copy_only=False)
