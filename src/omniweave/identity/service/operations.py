"""Looking into and correcting the identity graph: `identity explain` and `identity split`.

Both work on the graph `resolve` saved (`identity.service.resolve.load_stitcher`). `split` records the split
in the saved graph (so every later `resolve` honours it) and then re-resolves, so the `identities`
table shows the two persons at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from omniweave.errors import InputError
from omniweave.events.masking import masked, masked_identifier
from omniweave.identity.graph import Identifier, IdentifierError, Link, Split, Stitcher, normalize
from omniweave.identity.service.resolve import load_stitcher, resolve, save_stitcher
from omniweave.runtime import Runtime


@dataclass(frozen=True)
class PersonExplanation:
    """One identifier's person: its identifiers and the links (identifier, event, rule) that built it."""

    identifier: Identifier
    person_id: str
    identifiers: dict[str, list[str]]
    links: list[Link]


@dataclass(frozen=True)
class SplitOutcome:
    """The split recorded and the two persons that result, with their identifiers."""

    split: Split
    kept: tuple[str, dict[str, list[str]]]  # the person holding the anchor
    split_off: tuple[str, dict[str, list[str]]]  # the person now holding the identifier


def parse_identifier(text: str, stitcher: Stitcher) -> Identifier:
    """`kind:value` → a normalised identifier, as `resolve` would store it (InputError if malformed)."""
    kind, sep, value = text.strip().partition(":")
    kinds = ", ".join(stitcher.rules.priorities)
    if not sep or not kind or not value.strip():
        raise InputError(
            f"{masked(text)} is not an identifier: expected kind:value (e.g. email:ann@example.com) with kind one of {kinds}",
            field="identifier",
        )
    if kind not in stitcher.rules.priorities:
        raise InputError(f"{masked(text)} has an unknown kind {kind!r}: expected one of {kinds}", field="identifier")
    try:
        normal = normalize(kind, value, stitcher.rules.default_region, stitcher.rules.customer_number_prefix)
    except IdentifierError as exc:
        raise InputError(f"{masked_identifier(kind, value)}: {exc.reason}", field="identifier") from None
    return (kind, normal)


def _known(stitcher: Stitcher, text: str) -> Identifier:
    ident = parse_identifier(text, stitcher)
    if ident not in stitcher.parent:
        raise InputError(
            f"{masked_identifier(*ident)} is not in the identity graph (expected an identifier seen in "
            "the events; run `omniweave resolve` after new events arrive)",
            field="identifier",
        )
    return ident


def _graph(runtime: Runtime) -> Stitcher:
    stitcher = load_stitcher(runtime)
    if not stitcher.parent:
        raise InputError("the identity graph is empty: run `omniweave resolve` first", field="identifier")
    return stitcher


def explain_link(runtime: Runtime, a: str, b: str) -> tuple[Identifier, list[Link]]:
    """The normalised first identifier and the chain of links from it to the second (InputError if they
    are not one person)."""
    stitcher = _graph(runtime)
    start = _known(stitcher, a)
    return start, stitcher.explain(start, _known(stitcher, b))


def explain_identifier(runtime: Runtime, text: str) -> PersonExplanation:
    """The person of one identifier, its identifiers and every link that built it, in order."""
    stitcher = _graph(runtime)
    ident = _known(stitcher, text)
    root = stitcher.find(ident)
    links = [link for link in stitcher.links if link.a in stitcher.parent and stitcher.find(link.a) == root]
    person = stitcher.person_of(ident)
    return PersonExplanation(ident, person, stitcher.identifiers_of(person), links)


def split_identifier(runtime: Runtime, person_id: str, text: str) -> SplitOutcome:
    """Record that the identifier does not belong to the person, save it, re-resolve; the two persons."""
    stitcher = _graph(runtime)
    person = stitcher.lookup(person_id.strip())
    try:
        stitcher.identifiers_of(person)
    except InputError:
        raise InputError(
            f"no person {person_id!r} in the identity graph (expected a person id such as "
            "P0123456789abcde, see the `identities` table)",
            field="person",
        ) from None
    ident = _known(stitcher, text)
    if stitcher.person_of(ident) != person:
        raise InputError(
            f"{ident[0]}:{ident[1]} belongs to person {stitcher.person_of(ident)}, not to {person_id}",
            field="identifier",
        )
    split = stitcher.split(person, ident)
    save_stitcher(runtime, stitcher)
    resolve(runtime)
    stitcher = load_stitcher(runtime)
    kept, off = stitcher.person_of(split.anchor), stitcher.person_of(ident)
    return SplitOutcome(split, (kept, stitcher.identifiers_of(kept)), (off, stitcher.identifiers_of(off)))
