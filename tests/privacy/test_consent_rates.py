"""Consent rates (privacy/service/consent_rates.py) against counts made by hand over a small profiles table."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from omniweave.privacy.service.consent_rates import consent_rates
from omniweave.runtime import Runtime
from omniweave.settings import Settings
from omniweave.storage.warehouse import write_dataset


def test_yes_no_and_never_stated_per_purpose_and_channel(tmp_path: Path) -> None:
    runtime = Runtime(Settings(home=str(tmp_path)))
    try:
        assert consent_rates(runtime) == ()  # no profiles yet
        profiles = pa.table(
            {
                "person_id": ["a", "b", "c", "d", "e"],
                "consent_email": pa.array([True, False, None, True, None], pa.bool_()),
                "consent_sms": pa.array([None] * 5, pa.bool_()),
                "consent_purpose_analytics": pa.array([True, True, False, None, None], pa.bool_()),
                "consent_purpose_advertising": pa.array([False, False, False, False, True], pa.bool_()),
                "consent_note": ["x", "y", None, None, None],  # not a yes/no: left out
            }
        )
        write_dataset(runtime.log, "profiles", profiles)
        got = {(r.kind, r.name): (r.granted, r.refused, r.never, r.profiles) for r in consent_rates(runtime)}
        assert got == {
            ("purpose", "analytics"): (2, 1, 2, 5),
            ("purpose", "advertising"): (1, 4, 0, 5),
            ("channel", "email"): (2, 1, 2, 5),
            ("channel", "sms"): (0, 0, 5, 5),
        }
        kinds = [r.kind for r in consent_rates(runtime)]
        assert kinds == sorted(kinds, key=("purpose", "channel").index)  # purposes first
        email = next(r for r in consent_rates(runtime) if r.name == "email")
        assert email.to_dict()["granted_share"] == 0.4 and email.column == "consent_email"
    finally:
        runtime.close()
