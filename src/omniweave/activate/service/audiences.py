"""Audience exports: a segment's members, as the files ad platforms accept for customer-match retargeting.

`export_audience(runtime, segment_id, platform)` reads the warehouse datasets `segment_members`
(docs/segments.md), `profiles` and, for our own csv, `identities`; keeps only the members whose
`consent_purpose_advertising` is `true` (a stated yes: `false` and NULL are never exported) and who are
neither suppressed nor deleted by a data-subject request nor have said no to advertising since the
profiles were built (`privacy_blocked` and the consent history, in the operational store); turns
each one's identifiers into hashed keys (`activate.audiences`); writes the full list and the delta
(adds, removes) against the previous export of the same segment to the same platform; and
replaces that segment and platform's rows of the warehouse dataset `audience_exports`
(segment_id, platform, kind, hashed_key, person_id, exported_at: hashes only, never a plain value).

Nothing here logs or prints an identifier's value; an identifier that cannot be normalised is
counted, and the error that names it is dropped.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from omniweave.activate.audiences import (
    LAYOUTS,
    AudienceKey,
    check_platform,
    check_segment_id,
    person_keys,
)
from omniweave.errors import InputError
from omniweave.identity.graph import IdentifierError, hashed, normalize
from omniweave.runtime import Runtime
from omniweave.segments.service.evaluate import load_segments
from omniweave.storage.ops.consent import consent_column, latest_consent
from omniweave.storage.ops.tables.privacy import block_digest, blocked_among
from omniweave.storage.warehouse import write_dataset

EXPORTS_DATASET = "audience_exports"
EXPORTS_SCHEMA = pa.schema(
    [
        ("segment_id", pa.string()),
        ("platform", pa.string()),
        ("kind", pa.string()),
        ("hashed_key", pa.string()),
        ("person_id", pa.string()),
        ("exported_at", pa.timestamp("us", tz="UTC")),
    ]
)
"""The last exported set per (segment, platform): what the next export's delta is computed against."""


@dataclass(frozen=True)
class ExportSummary:
    """What one export did: counts of persons and keys, and the files written."""

    segment_id: str
    platform: str
    exported_at: datetime
    members: int  # persons in the segment now
    exported: int  # persons with at least one key in the file
    skipped_no_consent: int  # advertising consent false or never stated
    skipped_no_identifier: int  # consented, but no usable e-mail, phone, device (or cookie) id
    by_device: int  # exported by device (or cookie) ids only
    invalid_identifiers: int  # identifier values that could not be normalised (skipped)
    keys: int  # rows in the full file(s)
    adds: int
    removes: int
    removes_unresolved: int  # removed device ids no longer known (cannot be written for the platform)
    files: tuple[str, ...]
    skipped_privacy: int = 0  # suppressed or deleted through a data-subject request (privacy_blocked)

    def describe(self) -> str:
        persons = (
            f"segment {self.segment_id!r} to {self.platform}: {self.members:,} members, "
            f"{self.exported:,} exported ({self.by_device:,} by device or cookie ids only), "
            f"{self.skipped_no_consent:,} skipped for no advertising consent, "
            f"{self.skipped_no_identifier:,} skipped for no identifier"
        )
        if self.skipped_privacy:
            persons += f", {self.skipped_privacy:,} skipped as suppressed or deleted (privacy)"
        keys = f"{self.keys:,} keys; {self.adds:,} adds, {self.removes:,} removes since the last export"
        if self.removes_unresolved:
            keys += f" ({self.removes_unresolved:,} removed device ids no longer known, not written)"
        if self.invalid_identifiers:
            keys += f"; {self.invalid_identifiers:,} identifiers could not be normalised and were skipped"
        return "\n".join([persons, keys, "files:", *(f"  {path}" for path in self.files)])


def _require(runtime: Runtime, dataset: str, what_to_run: str) -> None:
    if not runtime.log.has_data(dataset):
        raise InputError(f"no {dataset} dataset yet: run `{what_to_run}` first", field=dataset)


def _members(runtime: Runtime, segment_id: str) -> list[dict[str, Any]]:
    """The segment's members with their identifiers and advertising consent (NULL when not in `profiles`)."""
    wh = runtime.warehouse()
    members = wh.table("segment_members")
    chosen = members.filter(members.segment_id == segment_id).select("person_id").distinct()
    rows = chosen.to_pyarrow().to_pylist()
    if not rows:
        known = {str(r["segment_id"]) for r in members.select("segment_id").distinct().to_pyarrow().to_pylist()}
        known |= set(load_segments(runtime.settings))  # the library and the project's files
        if segment_id not in known:
            raise InputError(
                f"unknown segment {segment_id!r}: no members and no segment file; expected one of "
                f"{', '.join(sorted(known)) or '(no segments yet: add a file to segments/)'}",
                field="segment",
            )
        return []
    profiles = wh.table("profiles")
    listed = [c for c in _BLOCKABLE_LISTS if c in profiles.columns]
    wanted = profiles.filter(profiles.person_id.isin(chosen.person_id)).select(
        "person_id", "emails", "phones", "device_ids", "consent_purpose_advertising", *listed
    )
    by_person = {r["person_id"]: r for r in wanted.to_pyarrow().to_pylist()}
    return [by_person.get(r["person_id"], {"person_id": r["person_id"]}) for r in rows]


_BLOCKABLE_LISTS = ("user_ids", "loyalty_cards", "customer_numbers")
_BLOCKABLE_KINDS = {
    "emails": "email",
    "phones": "phone",
    "device_ids": "device_id",
    "user_ids": "user_id",
    "loyalty_cards": "loyalty_card",
    "customer_numbers": "customer_number",
}


def _identifiers(member: Mapping[str, Any], cookies: Sequence[str]) -> list[tuple[str, str]]:
    """A member's identifiers as (kind, value), from the profile's lists and the cookie ids."""
    out = [(kind, str(v)) for column, kind in _BLOCKABLE_KINDS.items() for v in member.get(column) or ()]
    return out + [("anonymous_id", str(v)) for v in cookies]


def _withheld(runtime: Runtime, members: list[dict[str, Any]], cookies: Mapping[str, Sequence[str]]) -> set[str]:
    """The members (person ids) not to export whatever their profile says: any identifier of theirs blocked
    by a suppression or deletion (`privacy_blocked`), or a no to advertising in the consent history made
    since the profiles were built — both read from the operational store, one query per 500 identifiers."""
    people = [_identifiers(m, cookies.get(m["person_id"], ())) for m in members]
    digests = [{d for d in (block_digest(k, v) for k, v in ids) if d is not None} for ids in people]
    with runtime.store.engine.connect() as conn:
        blocked = blocked_among(conn, set().union(*digests))
        stated = latest_consent(conn, people)
    advertising = consent_column("advertising")
    return {
        m["person_id"]
        for m, found, said in zip(members, digests, stated, strict=True)
        if found & blocked or said.get(advertising) is False
    }


def _cookie_ids(runtime: Runtime, person_ids: list[str]) -> dict[str, list[str]]:
    """Anonymous ids per person, from `identities` (for our own csv)."""
    if not person_ids or not runtime.log.has_data("identities"):
        return {}
    ids = runtime.warehouse().table("identities")
    wanted = ids.filter((ids.kind == "anonymous_id") & ids.person_id.isin(person_ids)).select("person_id", "value")
    out: dict[str, list[str]] = {}
    for row in wanted.to_pyarrow().to_pylist():
        out.setdefault(row["person_id"], []).append(row["value"])
    return out


def _previous(runtime: Runtime) -> pa.Table:
    if not runtime.log.has_data(EXPORTS_DATASET):
        return EXPORTS_SCHEMA.empty_table()
    return runtime.warehouse().table(EXPORTS_DATASET).to_pyarrow().select(EXPORTS_SCHEMA.names).cast(EXPORTS_SCHEMA)


def _resolve_removed_devices(runtime: Runtime, removed: list[tuple[str, str]]) -> dict[str, str]:
    """hashed device id -> the id itself, from the current profiles of the persons it was exported for.

    Google and Meta match device ids unhashed, so a removal must name the id; only its hash is kept."""
    if not removed:
        return {}
    wanted_hashes = {h for _, h in removed}
    profiles = runtime.warehouse().table("profiles")
    rows = profiles.filter(profiles.person_id.isin(sorted({p for p, _ in removed}))).select("device_ids")
    found: dict[str, str] = {}
    for row in rows.to_pyarrow().to_pylist():
        for raw in row["device_ids"] or ():
            try:
                value = normalize("device_id", raw)
            except IdentifierError:
                continue
            if hashed(value) in wanted_hashes:
                found[hashed(value)] = value
    return found


def _unique_stem(folder: Path, stem: str) -> str:
    candidate, n = stem, 1
    while any(folder.glob(f"{candidate}*.csv")):
        n += 1
        candidate = f"{stem}-{n}"
    return candidate


def _write_csv(path: Path, header: tuple[str, ...], rows: list[list[str]]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    tmp.replace(path)


def export_audience(
    runtime: Runtime, segment_id: str, platform: str, output: Path | str | None = None, now: datetime | None = None
) -> ExportSummary:
    """Export the members of `segment_id` who consented to advertising, for `platform` (google, meta, csv).

    Writes `<platform>-<UTC timestamp>.csv` (and Google's `-mobile-ids.csv`) with every key, plus `-adds` and
    `-removes` files against the previous export of this segment to this platform, into `output` (default
    `<home>/exports/audiences/<segment>/`), and records the exported keys, hashed, in `audience_exports`."""
    check_platform(platform)
    check_segment_id(segment_id)
    _require(runtime, "segment_members", "omniweave segments evaluate")
    _require(runtime, "profiles", "omniweave profiles build")
    exported_at = (now or datetime.now(UTC)).astimezone(UTC)
    region = runtime.settings.default_region

    members = _members(runtime, segment_id)
    cookies = _cookie_ids(runtime, [m["person_id"] for m in members])
    withheld = _withheld(runtime, members, cookies)
    if platform != "csv":
        cookies = {}
    current: dict[tuple[str, str], tuple[str, AudienceKey]] = {}
    no_consent = no_identifier = by_device = invalid = exported = 0
    for member in members:
        if member["person_id"] in withheld:
            continue
        if member.get("consent_purpose_advertising") is not True:
            no_consent += 1
            continue
        pid = member["person_id"]
        found = person_keys(
            platform,
            {
                "email": member.get("emails") or (),
                "phone": member.get("phones") or (),
                "device_id": member.get("device_ids") or (),
                "anonymous_id": cookies.get(pid, ()),
            },
            region,
        )
        invalid += found.invalid
        if not found.keys:
            no_identifier += 1
            continue
        exported += 1
        by_device += found.by_device
        for key in found.keys:
            current.setdefault((key.kind, key.hashed), (pid, key))

    previous_all = _previous(runtime)
    prev_rows = [r for r in previous_all.to_pylist() if r["segment_id"] == segment_id and r["platform"] == platform]
    previous = {(r["kind"], r["hashed_key"]): r["person_id"] for r in prev_rows}
    adds = [current[k] for k in sorted(current.keys() - previous.keys())]
    gone = sorted(previous.keys() - current.keys())
    removed_devices = [(previous[k], k[1]) for k in gone if k[0] == "device_id" and platform != "csv"]
    resolved = _resolve_removed_devices(runtime, removed_devices)
    removes: list[tuple[str, AudienceKey]] = []
    for kind, digest in gone:
        if kind == "device_id" and platform != "csv":
            if digest not in resolved:
                continue
            removes.append((previous[(kind, digest)], AudienceKey(kind, digest, resolved[digest])))
        else:
            removes.append((previous[(kind, digest)], AudienceKey(kind, digest, digest)))

    folder = Path(output) if output is not None else runtime.settings.home_path / "exports" / "audiences" / segment_id
    folder.mkdir(parents=True, exist_ok=True)
    stem = _unique_stem(folder, f"{platform}-{exported_at.strftime('%Y%m%dT%H%M%SZ')}")
    files: list[str] = []
    everything = list(current.values())
    for layout in LAYOUTS[platform]:
        base = f"{stem}-{layout.suffix}" if layout.suffix else stem
        for name, keyed in ((base, everything), (f"{base}-adds", adds), (f"{base}-removes", removes)):
            path = folder / f"{name}.csv"
            _write_csv(path, layout.header, layout.rows(keyed))
            files.append(str(path))

    kept = [r for r in previous_all.to_pylist() if not (r["segment_id"] == segment_id and r["platform"] == platform)]
    fresh = [
        {
            "segment_id": segment_id,
            "platform": platform,
            "kind": key.kind,
            "hashed_key": key.hashed,
            "person_id": pid,
            "exported_at": exported_at,
        }
        for pid, key in current.values()
    ]
    write_dataset(runtime.log, EXPORTS_DATASET, pa.Table.from_pylist(kept + fresh, schema=EXPORTS_SCHEMA))

    return ExportSummary(
        segment_id=segment_id,
        platform=platform,
        exported_at=exported_at,
        members=len(members),
        exported=exported,
        skipped_no_consent=no_consent,
        skipped_no_identifier=no_identifier,
        by_device=by_device,
        invalid_identifiers=invalid,
        keys=len(everything),
        adds=len(adds),
        removes=len(removes),
        removes_unresolved=len(gone) - len(removes),
        files=tuple(files),
        skipped_privacy=len(withheld),
    )
