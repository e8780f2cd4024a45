"""`normalize_array` on long arrays with repeated values (the array path of `resolve` reads an identifier once per
event of its person): it normalises each distinct value once and maps the result back, and must still give
`normalize`'s value and `is_blocked`'s verdict, value for value, nulls and blanks included."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from omniweave.identity.arrays import _DISTINCT_FROM, MISSING, normalize_array
from tests.identity.test_arrays import KINDS, _expected, raw_values


@settings(max_examples=150, deadline=None)
@given(
    kind=st.sampled_from(KINDS),
    pool=st.lists(raw_values, min_size=1, max_size=12),
    picks=st.lists(st.integers(0, 11), min_size=_DISTINCT_FROM, max_size=3 * _DISTINCT_FROM),
    prefix=st.sampled_from(["", "C-"]),
)
def test_repeated_values_are_normalised_as_one_by_one(
    kind: str, pool: list[str | None], picks: list[int], prefix: str
) -> None:
    raws = [pool[i % len(pool)] for i in picks]
    values, status = normalize_array(kind, pa.array(raws, pa.string()), "GB", prefix)
    assert status.dtype == np.int8
    got = list(zip(values.to_pylist(), status.tolist(), strict=True))
    assert got == [_expected(kind, raw, prefix) for raw in raws]


def test_all_null_and_chunked_input() -> None:
    values, status = normalize_array("email", pa.array([None] * (2 * _DISTINCT_FROM), pa.string()))
    assert values.null_count == 2 * _DISTINCT_FROM and (status == MISSING).all()
    chunked = pa.chunked_array([[" Ann@X.com"] * _DISTINCT_FROM, ["test@x.com", None] * _DISTINCT_FROM])
    values, status = normalize_array("email", chunked)
    expected = [_expected("email", r, "") for r in chunked.to_pylist()]
    assert list(zip(values.to_pylist(), status.tolist(), strict=True)) == expected
