"""Audience keys for the ads channel: identifiers normalised per platform and hashed before they travel.

The rules are those of the audience exports (docs/audiences.md; `activate/audiences.py` owns the
export files): e-mail trimmed and lower case; phone in E.164 (`+` kept for Google, digits only
for Meta); then SHA-256 (hex). A mobile advertising id is matched as it is (lower case). They live
here again, smaller, because channels sit below activate and cannot import it.

`audience_message` builds the message a journey sends to add or remove a person: the keys are
hashed *before* the message is written to the send ledger, so no plaintext e-mail or phone reaches
the ledger, the files or an upload.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from omniweave.channels.port import Message
from omniweave.errors import InputError
from omniweave.identity.graph import IdentifierError, hashed, is_blocked, normalize

PLATFORMS = ("google", "meta")
OPS = ("add", "remove")
KINDS = ("email", "phone", "device_id")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_AUDIENCE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$")


def check_audience(name: str) -> str:
    """`name` if it can name an audience file (letters, digits, `_`, `-`; 1 to 100)."""
    if not isinstance(name, str) or not _AUDIENCE.match(name):
        raise InputError(f"an audience name is 1 to 100 letters, digits, '_' or '-', got {name!r}", field="to")
    return name


def key_for(kind: str, raw: object, platform: str, default_region: str = "GB") -> str:
    """The cell `platform` matches for one identifier: SHA-256 of the normalised e-mail or phone, or the
    device id itself. IdentifierError (an InputError) when `raw` is not usable (or a placeholder)."""
    if platform not in PLATFORMS:
        raise InputError(f"unknown ad platform {platform!r}; expected one of {', '.join(PLATFORMS)}", field="platform")
    if kind not in KINDS:
        raise InputError(f"unknown key kind {kind!r}; expected one of {', '.join(KINDS)}", field="kind")
    value = normalize(kind, raw, default_region)
    if is_blocked(kind, value):
        raise IdentifierError(f"a placeholder {kind}, not a person's", field=kind)
    if kind == "device_id":
        return value
    if kind == "phone" and platform == "meta":
        value = value.lstrip("+")
    return hashed(value)


def audience_message(
    platform: str,
    audience: str,
    op: str,
    identifiers: Mapping[str, Iterable[object]],
    *,
    person_id: str | None = None,
    campaign: str | None = None,
    default_region: str = "GB",
) -> Message:
    """The ads message that adds (or removes) one person to `audience` on `platform`, keys already hashed.

    Identifiers that do not normalise are skipped; a person left with no key is an InputError (there
    is nothing the platform could match). Consent for advertising is checked before (the policy)."""
    if op not in OPS:
        raise InputError(f"op must be add or remove, got {op!r}", field="op")
    keys: list[dict[str, str]] = []
    for kind in KINDS:
        for raw in identifiers.get(kind) or ():
            try:
                cell = key_for(kind, raw, platform, default_region)
            except IdentifierError:
                continue
            entry = {"kind": kind, "value": cell}
            if entry not in keys:
                keys.append(entry)
    if not keys:
        raise InputError("no usable e-mail, phone or device id to match this person by", field="identifiers")
    content: dict[str, Any] = {"platform": platform, "op": op, "keys": keys}
    return Message("ads", check_audience(audience), content, person_id=person_id, campaign=campaign)


def checked_keys(content: Mapping[str, Any]) -> tuple[str, str, list[tuple[str, str]]]:
    """(platform, op, [(kind, value)]) of an ads message; InputError when a key is missing or not hashed."""
    platform, op, raw_keys = content.get("platform"), content.get("op"), content.get("keys")
    if platform not in PLATFORMS:
        raise InputError(f"content.platform must be google or meta, got {platform!r}", field="content.platform")
    if op not in OPS:
        raise InputError(f"content.op must be add or remove, got {op!r}", field="content.op")
    if not isinstance(raw_keys, list) or not raw_keys:
        raise InputError("content.keys must list {kind, value} (build it with audience_message)", field="content.keys")
    keys: list[tuple[str, str]] = []
    for index, item in enumerate(raw_keys):
        kind = item.get("kind") if isinstance(item, dict) else None
        value = item.get("value") if isinstance(item, dict) else None
        if kind not in KINDS or not isinstance(value, str) or not value:
            raise InputError("expected {kind: email|phone|device_id, value}", field=f"content.keys[{index}]")
        if kind != "device_id" and not _SHA256.match(value):
            raise InputError(
                f"a {kind} must be its SHA-256 (64 lower-case hex), never plaintext", field=f"content.keys[{index}]"
            )
        keys.append((kind, value))
    return str(platform), str(op), keys
