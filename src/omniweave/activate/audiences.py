"""Ad-audience keys: per-platform normalisation, SHA-256 hashing, and the files the platforms accept.

Pure: no storage, no engine. The service (`activate/service/audiences.py`) reads who is in a segment and
hands each person's identifiers here; this module says which keys the person is exported by and
what each file row looks like.

The rules (docs/audiences.md):

- e-mail: trimmed, lower case (`identity.graph.normalize("email", ...)`), then SHA-256 (hex, lower case);
- phone: parsed with `phonenumbers` (default region from the settings) to E.164; Google and our own
  csv keep the `+` (`+442071838750`), Meta wants digits only (`442071838750`); then SHA-256;
- device (mobile advertising) id: trimmed, lower case. The platforms match advertising ids as they
  are, so Google's mobile-id file and Meta's `madid` column hold the id itself; our own csv holds its
  SHA-256. Every key is *identified* across exports by the SHA-256 of its normalised value;
- anonymous (cookie) id: only in our own csv, as its SHA-256.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from omniweave.errors import InputError
from omniweave.identity.graph import IdentifierError, hashed, is_blocked, normalize

PLATFORMS = ("google", "meta", "csv")
"""Export targets: Google Ads Customer Match, Meta custom audiences, our own csv."""

KEY_KINDS = ("email", "phone", "device_id", "anonymous_id")
"""Kinds of key an audience member can be exported by; e-mail and phone first (contact keys)."""

CONTACT_KINDS = ("email", "phone")

OFFLINE_ANONYMOUS_PREFIX = "offline:"
"""Anonymous ids made up by importers (a till receipt is `offline:till:<receipt>`): not a cookie, never exported."""

_SEGMENT_ID = re.compile(r"^[A-Za-z0-9_-]+$")


def check_platform(platform: str) -> str:
    """`platform` if it is one we export to; else an InputError naming the valid ones."""
    if platform not in PLATFORMS:
        raise InputError(f"unknown audience platform {platform!r}; expected one of {', '.join(PLATFORMS)}", field="to")
    return platform


def check_segment_id(segment_id: str) -> str:
    """`segment_id` if it has the form of a segment id (letters, digits, `_`, `-`; docs/segments.md)."""
    if not _SEGMENT_ID.match(segment_id or ""):
        raise InputError(f"{segment_id!r} is not a segment id (expected letters, digits, '_' and '-')", field="segment")
    return segment_id


def normalize_email(raw: object) -> str:
    """The e-mail as every platform hashes it: trimmed, lower case. IdentifierError if it is not one,
    or is a placeholder (`test@…`, `noemail@…`)."""
    value = normalize("email", raw)
    if is_blocked("email", value):
        raise IdentifierError("a placeholder e-mail address, not a person's", field="email")
    return value


def normalize_phone(raw: object, platform: str, default_region: str = "GB") -> str:
    """The phone as `platform` hashes it: E.164 with `+` for Google and csv, digits only for Meta."""
    check_platform(platform)
    e164 = normalize("phone", raw, default_region)
    if is_blocked("phone", e164):
        raise IdentifierError("a placeholder phone number, not a person's", field="phone")
    return e164.lstrip("+") if platform == "meta" else e164


def normalize_device_id(raw: object) -> str:
    """A mobile advertising id (IDFA, AAID) as the platforms take it: trimmed, lower case, hyphens kept."""
    value = normalize("device_id", raw)
    if is_blocked("device_id", value):
        raise IdentifierError("a placeholder device id (all zeros or a null word)", field="device_id")
    return value


def hash_email(raw: object) -> str:
    """SHA-256 (hex) of the normalised e-mail: `" John.Doe@Example.COM "` hashes `john.doe@example.com`."""
    return hashed(normalize_email(raw))


def hash_phone(raw: object, platform: str, default_region: str = "GB") -> str:
    """SHA-256 (hex) of the phone normalised for `platform`."""
    return hashed(normalize_phone(raw, platform, default_region))


@dataclass(frozen=True)
class AudienceKey:
    """One key a person is exported by.

    `hashed` (SHA-256 of the normalised value) identifies the key from one export to the next; `cell` is
    what the file holds: the hash, except a device id for Google and Meta, which match the id itself."""

    kind: str
    hashed: str
    cell: str


def make_key(kind: str, raw: object, platform: str, default_region: str = "GB") -> AudienceKey:
    """The key of `kind` for `raw` on `platform`; an IdentifierError (an InputError) if `raw` is not one."""
    check_platform(platform)
    if kind == "email":
        digest = hashed(normalize_email(raw))
        return AudienceKey(kind, digest, digest)
    if kind == "phone":
        digest = hashed(normalize_phone(raw, platform, default_region))
        return AudienceKey(kind, digest, digest)
    if kind == "device_id":
        value = normalize_device_id(raw)
        digest = hashed(value)
        return AudienceKey(kind, digest, digest if platform == "csv" else value)
    if kind == "anonymous_id":
        if platform != "csv":
            raise InputError(f"anonymous (cookie) ids are exported to csv only, not to {platform}", field="kind")
        text = str(raw or "").strip()
        if not text or text.startswith(OFFLINE_ANONYMOUS_PREFIX) or is_blocked("anonymous_id", text):
            raise IdentifierError(
                "not a cookie id (empty, a placeholder, or an importer's offline id)", field="anonymous_id"
            )
        digest = hashed(text)
        return AudienceKey(kind, digest, digest)
    raise InputError(f"unknown audience key kind {kind!r}; expected one of {', '.join(KEY_KINDS)}", field="kind")


@dataclass(frozen=True)
class PersonKeys:
    """The keys one person is exported by, and how many of their identifiers could not be used."""

    keys: tuple[AudienceKey, ...]
    invalid: int = 0
    by_device: bool = False
    """True when the person has no usable e-mail or phone and is exported by device or cookie ids."""


def person_keys(platform: str, identifiers: Mapping[str, Iterable[object]], default_region: str = "GB") -> PersonKeys:
    """The keys of one person (who has consented to advertising) for `platform`.

    E-mails and phones first; a person without a usable one falls back to device ids, and for our own
    csv also to anonymous (cookie) ids. Values that cannot be normalised (a phone that does not parse)
    are skipped and counted in `invalid`, never raised: one bad value must not stop an export."""
    check_platform(platform)
    invalid = 0

    def keys_of(kinds: Sequence[str]) -> list[AudienceKey]:
        nonlocal invalid
        found: dict[tuple[str, str], AudienceKey] = {}
        for kind in kinds:
            for raw in identifiers.get(kind) or ():
                try:
                    key = make_key(kind, raw, platform, default_region)
                except IdentifierError:
                    invalid += 1
                    continue
                found.setdefault((key.kind, key.hashed), key)
        return list(found.values())

    contact = keys_of(CONTACT_KINDS)
    if contact:
        return PersonKeys(tuple(contact), invalid)
    fallback = keys_of(("device_id", "anonymous_id") if platform == "csv" else ("device_id",))
    return PersonKeys(tuple(fallback), invalid, by_device=bool(fallback))


# --- file layouts -------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileLayout:
    """One kind of file a platform takes: its header and which column each key kind goes in."""

    suffix: str  # "" for the main file, else added to the file name (`google-…-mobile-ids.csv`)
    header: tuple[str, ...]
    columns: Mapping[str, str]  # key kind -> header column
    person_column: str | None = None  # our own csv names the person
    kinds: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kinds", frozenset(self.columns))

    def rows(self, keyed: Iterable[tuple[str, AudienceKey]]) -> list[list[str]]:
        """One row per (person id, key) of a kind this file takes, the key's cell in its column, sorted."""
        out = []
        for person_id, key in keyed:
            if key.kind not in self.columns:
                continue
            row = [""] * len(self.header)
            row[self.header.index(self.columns[key.kind])] = key.cell
            if self.person_column is not None:
                row[self.header.index(self.person_column)] = person_id
            out.append(row)
        return sorted(out)


LAYOUTS: dict[str, tuple[FileLayout, ...]] = {
    # Google Ads Customer Match: contact info and mobile device ids are separate lists (separate uploads)
    "google": (
        FileLayout("", ("Email", "Phone"), {"email": "Email", "phone": "Phone"}),
        FileLayout("mobile-ids", ("Mobile Device ID",), {"device_id": "Mobile Device ID"}),
    ),
    # Meta custom audience customer list: one file, lower-case identifier headers
    "meta": (FileLayout("", ("email", "phone", "madid"), {"email": "email", "phone": "phone", "device_id": "madid"}),),
    "csv": (
        FileLayout(
            "",
            ("person_id", "email_sha256", "phone_sha256", "device_id_sha256", "anonymous_id_sha256"),
            {
                "email": "email_sha256",
                "phone": "phone_sha256",
                "device_id": "device_id_sha256",
                "anonymous_id": "anonymous_id_sha256",
            },
            person_column="person_id",
        ),
    ),
}
"""The files written per platform, in order."""
