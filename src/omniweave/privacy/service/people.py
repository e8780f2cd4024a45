"""Who a request is about: the resolved person behind one identifier, with every identifier of theirs.

`find_subject(runtime, "email:Ann@Example.com")` finds the person in `identities` (any identifier, any
spelling, a person id) and returns all their identifiers; an identifier no resolved person has yet (its
events still in the inbox, say) is a subject of its own. Errors name the identifier masked.
"""

from __future__ import annotations

from omniweave.errors import InputError
from omniweave.identity.graph import KINDS, IdentifierError, normalize
from omniweave.privacy.masking import mask
from omniweave.privacy.subjects import Subject, needles
from omniweave.profiles.service.lookup import find_person
from omniweave.runtime import Runtime
from omniweave.storage.ops.forms_privacy import anonymous_ids_of


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _parse(text: str, region: str) -> tuple[str, str]:
    kind, sep, value = text.partition(":")
    if not sep or kind not in KINDS:
        value = text
        digits = sum(ch.isdigit() for ch in text)
        if "@" in text:
            kind = "email"
        elif digits >= 7 and set(text) <= set("+0123456789 ()-."):
            kind = "phone"
        else:
            kind = "user_id"
    try:
        return kind, normalize(kind, value, region)
    except IdentifierError:
        raise InputError(
            f"identifier {mask(value)!r} is not a valid {kind}; expected kind:value such as email:ann@example.com",
            field="identifier",
        ) from None


def find_subject(runtime: Runtime, text: str) -> Subject:
    """The person `text` names (an identifier as `kind:value` or bare, or a person id) and all their
    identifiers; just that identifier when no resolved person has it."""
    text = text.strip()
    if not text:
        raise InputError("expected an identifier such as email:ann@example.com, or a person id", field="identifier")
    warehouse = runtime.warehouse()
    found = None
    if "identities" in warehouse.names():
        try:
            found = find_person(runtime, text)
        except InputError:
            found = None
    if found is None:
        if text.startswith("P") and len(text) == 16 and ":" not in text:
            raise InputError(f"no person has the id {text!r}", field="identifier")
        return Subject((), (_parse(text, runtime.settings.default_region),))
    person_id = found[0]
    rows = warehouse.sql(
        f"SELECT DISTINCT kind, value FROM identities WHERE person_id = {_quote(person_id)} ORDER BY kind, value"
    ).to_pylist()
    identifiers = tuple((str(r["kind"]), str(r["value"])) for r in rows)
    if not identifiers:
        identifiers = (_parse(text, runtime.settings.default_region),)
    return Subject((person_id,), identifiers)


def with_signup_visitors(runtime: Runtime, subject: Subject) -> Subject:
    """`subject` with the visitor ids of their form sign-ups (`form_signups` rows with one of their e-mails or
    phones) added as `anonymous_id` identifiers — except one that `identities` gives to another person."""
    with runtime.store.engine.connect() as conn:
        found = anonymous_ids_of(conn, needles(subject, runtime.settings.default_region))
    have = {value for kind, value in subject.identifiers if kind == "anonymous_id"}
    new = sorted(found - have)
    if new and "identities" in runtime.warehouse().names():
        listed = ", ".join(_quote(v) for v in new)
        rows = (
            runtime.warehouse()
            .sql(
                f"SELECT DISTINCT value, person_id FROM identities WHERE kind = 'anonymous_id' AND value IN ({listed})"
            )
            .to_pylist()
        )
        others = {str(r["value"]) for r in rows if str(r["person_id"]) not in subject.person_ids}
        new = [v for v in new if v not in others]
    if not new:
        return subject
    return Subject(subject.person_ids, (*subject.identifiers, *(("anonymous_id", v) for v in new)))
