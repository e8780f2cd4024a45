"""`read_profile_columns(runtime, sample=N)`: at most N profiles, the same ones on every call, a subset of all."""

from __future__ import annotations

import pyarrow as pa

from omniweave.runtime import Runtime
from omniweave.segments.service.personas import read_profile_columns
from omniweave.storage.warehouse import write_dataset


def test_a_sample_of_the_profiles_is_a_fixed_subset(runtime: Runtime) -> None:
    persons = [f"P{i:05d}" for i in range(500)]
    write_dataset(
        runtime.log,
        "profiles",
        pa.table({"person_id": persons, "orders": list(range(500)), "total_revenue": [float(i) for i in range(500)]}),
    )
    everyone = read_profile_columns(runtime)
    assert everyone["person_id"] == persons  # no sample: every profile, in person order
    some = read_profile_columns(runtime, sample=120)
    again = read_profile_columns(runtime, sample=120)
    assert len(some["person_id"]) == 120 and some == again
    assert some["person_id"] == sorted(some["person_id"]) and set(some["person_id"]) < set(persons)
    rows = {
        p: (o, r) for p, o, r in zip(everyone["person_id"], everyone["orders"], everyone["total_revenue"], strict=True)
    }
    assert all(
        rows[p] == (o, r) for p, o, r in zip(some["person_id"], some["orders"], some["total_revenue"], strict=True)
    )
    assert read_profile_columns(runtime, sample=1000) == everyone  # fewer profiles than the sample: all of them
