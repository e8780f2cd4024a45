"""Finding one person: by person id or by any identifier, with their profile and cross-channel timeline.

`find_person(runtime, ref)` accepts a person id (`P…`, also one that was merged into another),
an identifier as `kind:value` (`email:Ann@Example.com`, `phone:07700 900123`,
`loyalty_card:6307068174`), or a bare value (an e-mail, a phone number, a user id, an anonymous
id, a card number). Identifiers are normalised the way `resolve` normalises them, so a
differently written e-mail or phone number finds the same person. `person_view` returns the
profile row (from the `profiles` table that `omniweave profiles build` writes) and the person's
latest events on every channel. The CLI (`omniweave profile show`) and the REST API
(`GET /v1/profiles/...`) both call these.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from omniweave.errors import InputError
from omniweave.identity.graph import KINDS, IdentifierError, normalize
from omniweave.runtime import Runtime

TIMELINE_LIMIT = 50


@dataclass(frozen=True)
class PersonView:
    """One person as `profile show` and the API show them: profile row, identifiers, latest events."""

    person_id: str
    found_by: str  # how the reference was matched, e.g. "email:ann@example.com"
    profile: dict[str, Any] | None  # None until `profiles build` has run since the person appeared
    identifiers: list[dict[str, str]]
    timeline: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        """The view as JSON values (timestamps as ISO 8601)."""
        return view_as_dict(self)


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


_READS = re.compile(r"\b(?:FROM|JOIN)\s+(\w+)", re.IGNORECASE)
_LITERAL = re.compile(r"'(?:[^']|'')*'")


def _rows(runtime: Runtime, sql: str) -> list[dict[str, Any]]:
    """The rows of `sql`, with only the datasets it reads opened (`Warehouse.sql` opens every dataset of the
    warehouse first, which took longer than a lookup's query: about 1 s against 0.1 s on the demo world)."""
    warehouse = runtime.warehouse()
    for name in dict.fromkeys(_READS.findall(_LITERAL.sub("''", sql))):  # not a word of a quoted value
        warehouse.table(name)
    rows: list[dict[str, Any]] = warehouse.con.sql(sql).to_pyarrow().to_pylist()
    return rows


def _has(runtime: Runtime, table: str) -> bool:
    return table in runtime.warehouse().names()


def find_person(runtime: Runtime, ref: str) -> tuple[str, str] | None:
    """(person id, how it was found) for a person id or an identifier; None if nobody matches.

    Raises InputError for an identifier that cannot be valid (an e-mail without @, say) and when
    identities have not been resolved yet.
    """
    candidates, maybe_person_id = _candidates(runtime, ref)
    for kind, normal in candidates:
        found = _rows(
            runtime,
            f"SELECT person_id FROM identities WHERE kind = {_quote(kind)} AND value = {_quote(normal)} LIMIT 1",
        )
        if found:
            return str(found[0]["person_id"]), f"{kind}:{normal}"
    if maybe_person_id:
        person = _current_person(runtime, ref.strip())
        if person is not None:
            return person, f"person:{ref.strip()}"
    return None


def find_people(runtime: Runtime, ref: str) -> list[tuple[str, str]]:
    """Everyone `ref` may mean, as (person id, how found), in the order `find_person` tries them: its answer
    is the first. A bare value can be an identifier of several kinds (a number that is one person's user id
    and another's loyalty card); the dashboard's search lists them all. [] when nobody matches; the same
    InputErrors as `find_person`."""
    candidates, maybe_person_id = _candidates(runtime, ref)
    found: list[tuple[str, str]] = []
    if candidates:
        wanted = " OR ".join(f"(kind = {_quote(k)} AND value = {_quote(v)})" for k, v in candidates)
        rows = _rows(runtime, f"SELECT DISTINCT kind, value, person_id FROM identities WHERE {wanted}")
        order = {candidate: n for n, candidate in enumerate(candidates)}
        for row in sorted(rows, key=lambda r: (order[(r["kind"], r["value"])], str(r["person_id"]))):
            person = str(row["person_id"])
            if all(person != p for p, _ in found):
                found.append((person, f"{row['kind']}:{row['value']}"))
    if not found and maybe_person_id:
        current = _current_person(runtime, ref.strip())
        if current is not None:
            found.append((current, f"person:{ref.strip()}"))
    return found


def _candidates(runtime: Runtime, ref: str) -> tuple[list[tuple[str, str]], bool]:
    """The normalised (kind, value) pairs `ref` may be, most likely first, and whether it may be a person id."""
    ref = ref.strip()
    if not ref:
        raise InputError("expected a person id or an identifier such as email:ann@example.com", field="identifier")
    if not _has(runtime, "identities"):
        raise InputError("no identities yet: run `omniweave resolve` first", field="identifier")
    kind, sep, value = ref.partition(":")
    if sep and (kind in KINDS or (kind.isidentifier() and _kind_known(runtime, kind))):
        raw = [(kind, value)]
    else:
        raw = [(k, ref) for k in _guess_kinds(ref)]
    candidates = []
    for one_kind, one_value in raw:
        try:
            candidates.append((one_kind, normalize(one_kind, one_value, runtime.settings.default_region)))
        except IdentifierError as exc:
            if len(raw) == 1:
                raise InputError(str(exc), field="identifier") from None
    # maybe a person id, perhaps one merged into another since (as before: not after an explicit built-in kind)
    return candidates, not sep or raw[-1][0] not in KINDS


def _kind_known(runtime: Runtime, kind: str) -> bool:
    return bool(_rows(runtime, f"SELECT 1 AS x FROM identities WHERE kind = {_quote(kind)} LIMIT 1"))


def _guess_kinds(value: str) -> list[str]:
    if "@" in value:
        return ["email"]
    digits = sum(ch.isdigit() for ch in value)
    kinds = ["user_id", "anonymous_id", "customer_number", "loyalty_card", "device_id"]
    if digits >= 7 and set(value) <= set("+0123456789 ()-."):
        kinds.insert(0, "phone")
    return kinds


def _current_person(runtime: Runtime, person_id: str) -> str | None:
    if _rows(runtime, f"SELECT 1 AS x FROM identities WHERE person_id = {_quote(person_id)} LIMIT 1"):
        return person_id
    from omniweave.identity.service.resolve import load_stitcher

    current = load_stitcher(runtime).lookup(person_id)  # follows merges; an unknown id comes back as it is
    if current != person_id and _rows(
        runtime, f"SELECT 1 AS x FROM identities WHERE person_id = {_quote(current)} LIMIT 1"
    ):
        return current
    return None


def person_view(runtime: Runtime, person_id: str, found_by: str = "", limit: int = TIMELINE_LIMIT) -> PersonView:
    """The person's profile row, identifiers and latest events (newest first)."""
    identifiers = _rows(
        runtime, f"SELECT kind, value FROM identities WHERE person_id = {_quote(person_id)} ORDER BY kind, value"
    )
    profile = None
    if _has(runtime, "profiles"):
        found = _rows(runtime, f"SELECT * FROM profiles WHERE person_id = {_quote(person_id)}")
        profile = found[0] if found else None
    users = [i["value"] for i in identifiers if i["kind"] == "user_id"]
    anonymous = [i["value"] for i in identifiers if i["kind"] == "anonymous_id"]
    conditions = []
    if users:
        conditions.append(f"user_id IN ({', '.join(map(_quote, users))})")
    if anonymous:
        conditions.append(f"(user_id IS NULL AND anonymous_id IN ({', '.join(map(_quote, anonymous))}))")
    timeline: list[dict[str, Any]] = []
    if conditions:
        timeline = _rows(
            runtime,
            "SELECT timestamp, channel, type, event, source, message_id FROM events "
            f"WHERE {' OR '.join(conditions)} ORDER BY timestamp DESC, message_id LIMIT {int(limit)}",
        )
    return PersonView(person_id, found_by, profile, identifiers, timeline)


def churn_risk(profile: Mapping[str, Any] | None) -> float | None:
    """The risk that the person has stopped buying: 1 - `p_alive` (BG/NBD's probability that they are still a
    customer, profiles build). None where P(alive) is not known: no profile, no purchase, or a dropout the
    history cannot identify yet (`p_alive_note` says why)."""
    alive = (profile or {}).get("p_alive")
    if not isinstance(alive, int | float) or isinstance(alive, bool) or not math.isfinite(alive):
        return None
    return 1.0 - float(alive)


def jsonable(value: Any) -> Any:
    """A profile value as JSON can carry it (timestamps as ISO 8601, nested lists and dicts too)."""
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def view_as_dict(view: PersonView) -> dict[str, Any]:
    return jsonable(
        {
            "person_id": view.person_id,
            "found_by": view.found_by,
            "profile": view.profile,
            "identifiers": view.identifiers,
            "timeline": view.timeline,
        }
    )
