"""Consent per purpose: statements from events, imports, channels and the API, and the latest per purpose.

A purpose is one of `[privacy] purposes` (analytics, personalisation, advertising, email, sms, whatsapp,
push by default). A statement says yes or no to one purpose, for one identifier, at one time, from
one source. Statements are read the way `profiles build` reads them, so the profile's consent columns
and the history agree (the latest statement per purpose):

- channel purposes (email, sms, whatsapp, push): the trait `<channel>_opt_in`, else an `Unsubscribed`
  event on that channel (a no); a channel's STOP or unsubscribe also reaches the suppression list;
- the other purposes: `context.consent.categoryPreferences` (Segment's consent object, any case,
  `Personalization` too), else the trait `<purpose>_consent`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

CHANNEL_PURPOSES = ("email", "sms", "whatsapp", "push")
CHANNEL_TRAITS = {"email": "email_opt_in", "sms": "sms_opt_in", "whatsapp": "whatsapp_opt_in", "push": "push_opt_in"}
SOURCES = ("event", "import", "channel", "api")
UNSUBSCRIBED = "Unsubscribed"
_SPELLINGS = {"personalization": "personalisation"}


@dataclass(frozen=True)
class Statement:
    """One yes or no to one purpose by one identifier."""

    kind: str  # the identifier's kind (user_id, anonymous_id, email, phone)
    value: str
    purpose: str
    granted: bool
    source: str
    reference: str  # the event's message id, the suppression, the API request
    stated_at: float  # epoch seconds

    def to_dict(self) -> dict[str, Any]:
        return {
            "purpose": self.purpose,
            "granted": self.granted,
            "source": self.source,
            "reference": self.reference,
            "stated_at": self.stated_at,
        }


def profile_column(purpose: str) -> str:
    """The profile column holding the latest statement of `purpose` (profiles/service/build.py)."""
    return f"consent_{purpose}" if purpose in CHANNEL_PURPOSES else f"consent_purpose_{purpose}"


def yes_no(value: Any) -> bool | None:
    """A stated yes/no (true/false, 1/0, yes/no in any case) as a boolean; anything else None."""
    if isinstance(value, bool):
        return value
    said = str(value).strip().lower() if value is not None else ""
    return True if said in ("true", "1", "yes") else False if said in ("false", "0", "no") else None


def _object(text: Any) -> Mapping[str, Any]:
    if isinstance(text, Mapping):
        return text
    if not text:
        return {}
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, Mapping) else {}


def statements_of_event(row: Mapping[str, Any], purposes: Iterable[str], source: str = "event") -> list[Statement]:
    """The statements one event makes (`row`: a row of the log's `events`, with `timestamp` as epoch
    seconds), for its user id, else its anonymous id."""
    subject = ("user_id", row.get("user_id")) if row.get("user_id") else ("anonymous_id", row.get("anonymous_id"))
    if not subject[1]:
        return []
    traits = _object(row.get("traits"))
    chosen = {_SPELLINGS.get(str(k).lower(), str(k).lower()): v for k, v in _object(row.get("context_consent")).items()}
    out = []
    for purpose in purposes:
        said: bool | None
        if purpose in CHANNEL_PURPOSES:
            said = yes_no(traits.get(CHANNEL_TRAITS[purpose]))
            if said is None and row.get("event") == UNSUBSCRIBED and row.get("channel") == purpose:
                said = False
        else:
            said = yes_no(chosen.get(purpose))
            if said is None:
                said = yes_no(traits.get(f"{purpose}_consent"))
        if said is not None:
            reference = str(row.get("message_id") or "")
            stamp = float(row["timestamp"])
            out.append(Statement(subject[0], str(subject[1]), purpose, said, source, reference, stamp))
    return out


def latest(statements: Iterable[Statement]) -> dict[str, Statement]:
    """The latest statement per purpose (ties: the later recorded, as given)."""
    out: dict[str, Statement] = {}
    for s in statements:
        if s.purpose not in out or s.stated_at >= out[s.purpose].stated_at:
            out[s.purpose] = s
    return out
