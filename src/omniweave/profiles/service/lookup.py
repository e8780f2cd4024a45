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


def _rows(runtime: Runtime, sql: str) -> list[dict[str, Any]]:
    return runtime.warehouse().sql(sql).to_pylist()


def _has(runtime: Runtime, table: str) -> bool:
    return table in runtime.warehouse().names()


def find_person(runtime: Runtime, ref: str) -> tuple[str, str] | None:
    """(person id, how it was found) for a person id or an identifier; None if nobody matches.

    Raises InputError for an identifier that cannot be valid (an e-mail without @, say) and when
    identities have not been resolved yet.
    """
    ref = ref.strip()
    if not ref:
        raise InputError("expected a person id or an identifier such as email:ann@example.com", field="identifier")
    if not _has(runtime, "identities"):
        raise InputError("no identities yet: run `omniweave resolve` first", field="identifier")
    kind, sep, value = ref.partition(":")
    if sep and (kind in KINDS or (kind.isidentifier() and _kind_known(runtime, kind))):
        candidates = [(kind, value)]
    else:
        candidates = [(k, ref) for k in _guess_kinds(ref)]
    for kind, value in candidates:
        try:
            normal = normalize(kind, value, runtime.settings.default_region)
        except IdentifierError as exc:
            if len(candidates) == 1:
                raise InputError(str(exc), field="identifier") from None
            continue
        found = _rows(
            runtime,
            f"SELECT person_id FROM identities WHERE kind = {_quote(kind)} AND value = {_quote(normal)} LIMIT 1",
        )
        if found:
            return str(found[0]["person_id"]), f"{kind}:{normal}"
    if not sep or kind not in KINDS:  # maybe a person id, perhaps one merged into another since
        person = _current_person(runtime, ref)
        if person is not None:
            return person, f"person:{ref}"
    return None


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
