"""The latest consent statements of many people at once, read from the consent history (the table privacy
keeps: storage/ops/tables/privacy.py), for the policy at send time (activate/service/policy.py).

Profiles carry consent as it stood when they were built; a statement made since (a withdrawal through the
API or the CLI, a channel's feedback recorded by `privacy consent-sync`) is in the history at once. Here a
person is the identifiers the caller knows of them (their profile's lists, the address a message goes to),
looked up by digest in one query per 500 identifiers, whatever the number of people.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import sqlalchemy as sa

from omniweave.storage.ops.among import among
from omniweave.storage.ops.tables.privacy import consent_history, identifier_digest

CHANNEL_PURPOSES = frozenset({"email", "sms", "whatsapp", "push"})
_CHUNK = 500


def consent_column(purpose: str) -> str:
    """The profile column holding a purpose's consent: `consent_<channel>` for a channel purpose,
    `consent_purpose_<purpose>` for the others (profiles/service/build.py)."""
    return f"consent_{purpose}" if purpose in CHANNEL_PURPOSES else f"consent_purpose_{purpose}"


def latest_consent(conn: sa.Connection, people: Sequence[Iterable[tuple[str, str]]]) -> list[dict[str, bool]]:
    """Per person (their identifiers as (kind, normalised value)): the latest statement per purpose in the
    consent history, as {profile column: yes/no}; {} for a person with none. Ties on the time: the later
    recorded."""
    return [{column: said for column, (said, _) in found.items()} for found in latest_consent_at(conn, people)]


def latest_consent_at(
    conn: sa.Connection, people: Sequence[Iterable[tuple[str, str]]]
) -> list[dict[str, tuple[bool, float]]]:
    """`latest_consent` with each statement's time: {profile column: (yes/no, stated_at epoch seconds)}."""
    owners: dict[str, list[int]] = {}
    for index, identifiers in enumerate(people):
        for kind, value in identifiers:
            if value:
                owners.setdefault(identifier_digest(kind, value), []).append(index)
    best: list[dict[str, tuple[float, int, bool]]] = [{} for _ in people]
    digests = sorted(owners)
    table = consent_history
    for start in range(0, len(digests), _CHUNK):
        rows = conn.execute(
            sa.select(table.c.subject, table.c.purpose, table.c.granted, table.c.stated_at, table.c.id).where(
                among(conn, table.c.subject, digests[start : start + _CHUNK])
            )
        )
        for subject, purpose, granted, stated_at, row_id in rows:
            order = (float(stated_at), int(row_id))
            for index in owners[str(subject)]:
                seen = best[index].get(str(purpose))
                if seen is None or order > seen[:2]:
                    best[index][str(purpose)] = (*order, bool(granted))
    return [{consent_column(purpose): (said, at) for purpose, (at, _, said) in found.items()} for found in best]
