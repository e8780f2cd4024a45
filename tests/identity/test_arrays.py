"""`normalize_array` gives `normalize`'s value and `is_blocked`'s verdict, value for value."""

from __future__ import annotations

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from omniweave.identity.arrays import BLOCKED, INVALID, MISSING, OK, normalize_array
from omniweave.identity.graph import DEFAULT_BLOCKED, IdentifierError, is_blocked, normalize

KINDS = ("email", "phone", "loyalty_card", "customer_number", "coupon_code", "device_id", "user_id", "anonymous_id")
ALPHABET = "aAbZ09@.-_ +()\t\n\x0b\x1cßéİ０²"
PIECES = ["test", "none", "noemail", "@", ".com", "0", "000", "+44 7700 900123", "07700900", "null", "Ann"]


def _expected(kind: str, raw: str | None, prefix: str) -> tuple[str | None, int]:
    if raw is None or not raw.strip():
        return None, MISSING
    try:
        value = normalize(kind, raw, "GB", prefix)
    except IdentifierError:
        return None, INVALID
    return (None, BLOCKED) if is_blocked(kind, value, DEFAULT_BLOCKED) else (value, OK)


raw_values = st.one_of(
    st.none(),
    st.text(alphabet=ALPHABET, max_size=12),
    st.lists(st.sampled_from(PIECES + list(ALPHABET)), max_size=5).map("".join),
)


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(KINDS), raws=st.lists(raw_values, max_size=20), prefix=st.sampled_from(["", "C-"]))
def test_normalize_array_is_normalize(kind: str, raws: list[str | None], prefix: str) -> None:
    values, status = normalize_array(kind, pa.array(raws, pa.string()), "GB", prefix)
    got = list(zip(values.to_pylist(), status.tolist(), strict=True))
    assert got == [_expected(kind, raw, prefix) for raw in raws]


def test_known_cases() -> None:
    raws = pa.array([" Ann@Example.COM ", "test@x.com", "not-an-email", None, "  ", "no-reply@shop.co"])
    values, status = normalize_array("email", raws)
    assert values.to_pylist() == ["ann@example.com", None, None, None, None, None]
    assert status.tolist() == [OK, BLOCKED, INVALID, MISSING, MISSING, BLOCKED]
    values, status = normalize_array("customer_number", pa.array(["12 34", "ab-12", "0-00"]))
    assert values.to_pylist() == ["1234", "AB12", None]
    assert status.tolist() == [OK, OK, BLOCKED]
    values, _ = normalize_array("customer_number", pa.array(["12 34", "ab-12"]), customer_number_prefix="C")
    assert values.to_pylist() == ["C1234", "AB12"]
    values, status = normalize_array("phone", pa.array(["07700 900123", "12"]))
    assert values.to_pylist() == ["+447700900123", None]
    assert status.tolist() == [OK, INVALID]
