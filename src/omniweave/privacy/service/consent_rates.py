"""Consent rates: per purpose and per channel, the share of profiles that said yes, said no, or never said.

The profiles hold each person's latest statement per purpose (profiles/service/build.py): `consent_purpose_<p>`
for the purposes (advertising, analytics, marketing, personalisation) and `consent_<channel>` for the channels
(email, sms, whatsapp, push, direct_mail, phone); true, false or NULL (never stated). `consent_rates` counts
the three over the `profiles` dataset in one aggregate on the warehouse engine, for every such column the
dataset has, so a purpose added to the build shows up without a change here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omniweave.runtime import Runtime

PURPOSE_PREFIX = "consent_purpose_"
CHANNEL_PREFIX = "consent_"


@dataclass(frozen=True)
class ConsentRate:
    """One purpose (or channel): how many profiles said yes, no, or never stated it, of `profiles`."""

    kind: str  # "purpose" | "channel"
    name: str  # advertising, email, ...
    column: str
    granted: int
    refused: int
    never: int
    profiles: int

    def share(self, count: int) -> float | None:
        return count / self.profiles if self.profiles else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "column": self.column,
            "granted": self.granted,
            "refused": self.refused,
            "never": self.never,
            "profiles": self.profiles,
            "granted_share": self.share(self.granted),
            "refused_share": self.share(self.refused),
            "never_share": self.share(self.never),
        }


def consent_columns(columns: list[str]) -> list[tuple[str, str, str]]:
    """(kind, name, column) of the profile columns holding consent: purposes first, then channels."""
    purposes = [("purpose", c[len(PURPOSE_PREFIX) :], c) for c in columns if c.startswith(PURPOSE_PREFIX)]
    channels = [
        ("channel", c[len(CHANNEL_PREFIX) :], c)
        for c in columns
        if c.startswith(CHANNEL_PREFIX) and not c.startswith(PURPOSE_PREFIX)
    ]
    return purposes + channels


def consent_rates(runtime: Runtime) -> tuple[ConsentRate, ...]:
    """Per consent column of the profiles: yes, no and never stated, over every profile (none without profiles)."""
    if not runtime.log.has_data("profiles"):
        return ()
    profiles = runtime.warehouse().table("profiles")
    found = [
        (kind, name, column)
        for kind, name, column in consent_columns(list(profiles.columns))
        if profiles[column].type().is_boolean()
    ]
    metrics: dict[str, Any] = {"profiles": profiles.count()}
    for _, _, column in found:
        metrics[f"{column}__stated"] = profiles[column].count()
        metrics[f"{column}__granted"] = profiles[column].cast("int64").sum()
    row = profiles.aggregate(**metrics).to_pyarrow().to_pylist()[0]
    total = int(row["profiles"] or 0)
    out = []
    for kind, name, column in found:
        stated = int(row[f"{column}__stated"] or 0)
        granted = int(row[f"{column}__granted"] or 0)
        out.append(ConsentRate(kind, name, column, granted, stated - granted, total - stated, total))
    return tuple(out)
