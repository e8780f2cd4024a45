"""Identity resolution: identifiers, their normalisation, the rules, and a deterministic stitcher.

An *observation* is one event's identifiers (already normalised). The `Stitcher` joins the
identifiers that occur together into persons with a union-find, honouring the rules:

- blocked values (`null`, `anonymous`, `test@…`, all zeros, a till's placeholder card) never link;
- per-kind limits with priorities: when a link would give a person more identifiers of a kind
  than allowed, the link of the lower-priority identifier is refused (and recorded), the persons
  are not merged;
- an identifier seen together with too many distinct user ids or e-mails is *demoted*: it joins
  nobody and is reported;
- `split` records that an identifier does not belong to a person; every later run honours it.

The result is a function of the *set* of observations: they are processed in the canonical order
(timestamp, message id). New observations that sort after everything seen so far are stitched
incrementally; anything else (an older event arriving late, a newly demoted identifier, a new
split) re-derives the graph from all observations in canonical order. A re-derivation of many
observations (a first full build) runs in bulk: vectorised connected components find the persons,
and only components in which a limit could refuse a link are walked rule by rule
(`identity.components.stitch_links`); the persons are the same, the link log records each pair's first
event instead of the order persons met (merges are logged by the rule-by-rule walk only). Person ids are the hash of
the identifier that founded the person; when two persons merge the earlier-founded id survives and
the other is recorded as merged into it, so lookups by old ids keep working. A split leaves the id with
the part that keeps the person's other identifiers, also when the split identifier had founded the
person: the split-off part gets a new id (`Stitcher.assign_split_ids`).
"""

from __future__ import annotations

import hashlib
import re
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import phonenumbers

from omniweave.errors import InputError
from omniweave.events.masking import masked, masked_identifier
from omniweave.events.spec import IDENTIFIER_KINDS
from omniweave.identity.components import NEVER, stitch_links

KINDS = IDENTIFIER_KINDS
"""The built-in identifier kinds, highest priority first."""

Identifier = tuple[str, str]
"""(kind, normalised value)."""

DEFAULT_LIMITS: dict[str, int] = {
    "user_id": 1,
    "email": 5,
    "phone": 5,
    "loyalty_card": 3,
    "customer_number": 2,
    "device_id": 10,
}
DEFAULT_BLOCKED = frozenset(
    {
        "",
        "null",
        "none",
        "nil",
        "undefined",
        "anonymous",
        "unknown",
        "n/a",
        "na",
        "-",
        "test",
        "noemail@noemail.com",
        "none@none.com",
        "no@email.com",
    }
)
_BLOCKED_EMAIL_LOCALS = frozenset(
    {"test", "none", "noemail", "no-email", "noreply", "no-reply", "unknown", "anonymous", "null"}
)
_ZERO_LIKE = frozenset("0 -+()")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")


class IdentifierError(InputError):
    """A raw identifier that cannot be normalised (says which kind, which value, what was expected)."""


@dataclass(frozen=True)
class Rules:
    """The rules of the identity graph; the defaults follow Segment's Unify."""

    priorities: tuple[str, ...] = KINDS  # highest first; custom kinds may be appended
    limits: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_LIMITS))  # absent: unlimited
    blocked: frozenset[str] = DEFAULT_BLOCKED  # normalised values that never link (any kind)
    share_limits: Mapping[str, int] = field(default_factory=lambda: {"user_id": 2, "email": 5})
    """An identifier seen in events with more distinct identifiers of one of these kinds is demoted."""
    personal_share_limits: Mapping[str, Mapping[str, int]] = field(
        default_factory=lambda: {"coupon_code": {"loyalty_card": 1, "customer_number": 1}}
    )
    """Further limits for the identifiers of one kind: a personal coupon is one person's, so a code seen at
    the tills with two loyalty cards or customer numbers is a campaign-wide code (a mailing's offer code)."""
    default_region: str = "GB"
    customer_number_prefix: str = ""  # prefixed to customer numbers written as digits only

    def priority(self, kind: str) -> int:
        try:
            return self.priorities.index(kind)
        except ValueError:
            return len(self.priorities)

    def check_kind(self, kind: str) -> None:
        if kind not in self.priorities:
            raise IdentifierError(
                f"unknown identifier kind {kind!r}; expected one of {', '.join(self.priorities)}", field="kind"
            )


def normalize(kind: str, raw: object, default_region: str = "GB", customer_number_prefix: str = "") -> str:
    """The canonical form of a raw identifier of `kind`; an IdentifierError if it is not one."""
    if raw is None:
        raise IdentifierError(f"{kind} is missing", field=kind)
    text = str(raw).strip()
    if not text:
        raise IdentifierError(f"{kind} is empty", field=kind)
    if kind == "email":
        value = text.lower()
        if not _EMAIL.match(value):
            raise IdentifierError(
                f"{masked(text)} is not an e-mail address (expected one @ and a dot in the domain)", field=kind
            )
        return value
    if kind == "phone":
        try:
            number = phonenumbers.parse(text, default_region)
        except phonenumbers.NumberParseException as exc:
            raise IdentifierError(f"{masked(text)} is not a phone number ({exc})", field=kind) from exc
        if not phonenumbers.is_possible_number(number):
            raise IdentifierError(
                f"{masked(text)} is not a possible phone number (default region {default_region})", field=kind
            )
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    if kind in ("loyalty_card", "customer_number", "coupon_code"):  # a code as typed at a till: any case, spaces
        value = re.sub(r"[\s\-]", "", text).upper()
        if kind == "customer_number" and value.isdigit():
            value = customer_number_prefix + value
        return value
    if kind == "device_id":
        return text.lower()
    return text


def hashed(value: str) -> str:
    """The SHA-256 hex digest of a normalised value (what ad platforms and exports want)."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def is_blocked(kind: str, value: str, blocked: frozenset[str] = DEFAULT_BLOCKED) -> bool:
    """True for placeholder values that must never link anybody (null, anonymous, test@…, all zeros)."""
    low = value.strip().lower()
    if low in blocked:
        return True
    if "0" in low and set(low) <= _ZERO_LIKE:
        return True
    if kind == "email" or "@" in low:
        local = low.partition("@")[0]
        if local in _BLOCKED_EMAIL_LOCALS:
            return True
    return False


def person_id_for(identifier: Identifier) -> str:
    """The id of a person founded by `identifier` (stable: the same identifier, the same id)."""
    return "P" + hashlib.sha256(f"{identifier[0]}:{identifier[1]}".encode()).hexdigest()[:15]


def split_person_id(split: Split) -> str:
    """The new id of the part a split takes off a person when that part would otherwise carry the
    person's id (the identifier that founded the person left with it): stable, one per split."""
    kind, value = split.identifier
    return person_id_for(("split", f"{split.person_id}:{kind}:{value}"))


@dataclass(frozen=True)
class Observation:
    """The identifiers one event carries, with the event's id and time (ISO string or datetime)."""

    message_id: str
    timestamp: Any
    identifiers: tuple[Identifier, ...]

    key: tuple[str, str] = field(init=False, repr=False, compare=False)
    """(timestamp as an ISO string, message id): the canonical order."""

    def __post_init__(self) -> None:
        ts = self.timestamp.isoformat() if hasattr(self.timestamp, "isoformat") else str(self.timestamp)
        object.__setattr__(self, "key", (ts, self.message_id))


@dataclass(frozen=True)
class Link:
    """Why two identifiers are one person: they were in the same event. `merged` is set when the
    link joined two existing persons (the absorbed person's id)."""

    a: Identifier
    b: Identifier
    message_id: str
    timestamp: str
    rule: str
    survivor: str | None = None
    merged: str | None = None


@dataclass(frozen=True)
class Refusal:
    """A link the rules did not allow, and which rule."""

    a: Identifier
    b: Identifier
    message_id: str
    rule: str


@dataclass(frozen=True)
class Split:
    """`identifier` does not belong with `anchor` (an identifier of the person it was split from)."""

    person_id: str
    identifier: Identifier
    anchor: Identifier


@dataclass
class _Encoding:
    """The identifiers of a bulk re-derivation as integers, when each was first seen, and the links."""

    codes: dict[Identifier, int] = field(default_factory=dict)
    idents: list[Identifier] = field(default_factory=list)
    first: list[int] = field(default_factory=list)
    edge_a: list[int] = field(default_factory=list)
    edge_b: list[int] = field(default_factory=list)
    edge_obs: list[int] = field(default_factory=list)

    def code(self, ident: Identifier) -> int:
        """`ident`'s number, given on first sight."""
        c = self.codes.get(ident)
        if c is None:
            c = self.codes[ident] = len(self.idents)
            self.idents.append(ident)
            self.first.append(NEVER)
        return c

    def seen_at(self, c: int, rank: int) -> None:
        """Record that identifier `c` occurs in observation `rank` (kept if it is the first)."""
        if self.first[c] == NEVER:
            self.first[c] = rank


class Stitcher:
    """The identity graph: union-find over identifiers, persons, merge log; see the module docstring."""

    BULK_THRESHOLD = 5_000
    """Re-derivations of at least this many observations run in bulk (see the module docstring)."""

    def __init__(self, rules: Rules | None = None, bulk_threshold: int | None = None):
        self.rules = rules or Rules()
        self.bulk_threshold = self.BULK_THRESHOLD if bulk_threshold is None else bulk_threshold
        self.observations: dict[str, Observation] = {}
        self.splits: list[Split] = []
        self.history: dict[str, Identifier] = {}  # every person id ever given → its founding identifier
        self.merged_into: dict[str, str] = {}
        self.recomputations = 0
        self._cooc: dict[Identifier, dict[str, set[str]]] = {}
        self._reset()

    def _reset(self) -> None:
        self.parent: dict[Identifier, Identifier] = {}
        self.members: dict[Identifier, dict[str, set[str]]] = {}  # root → kind → values
        self.founder: dict[Identifier, tuple[tuple[str, str], Identifier]] = {}  # root → (key, identifier)
        self.links: list[Link] = []
        self.refusals: list[Refusal] = []
        self.last_key: tuple[str, str] | None = None
        self.demoted: frozenset[Identifier] = frozenset()
        self._ids: dict[Identifier, str] = {}  # founder → person id, where a split moved an id (assign_split_ids)
        self._cannot: dict[Identifier, set[Identifier]] = {}
        for s in self.splits:
            self._cannot.setdefault(s.identifier, set()).add(s.anchor)
            self._cannot.setdefault(s.anchor, set()).add(s.identifier)
        self.merged_into = {}

    # --- input ---------------------------------------------------------------------------------

    def add(self, observations: Iterable[Observation]) -> None:
        """Stitch more observations; the result is the same whatever the order or the increments."""
        fresh: list[Observation] = []
        changed = False
        for obs in observations:
            obs = self._usable(obs)
            old = self.observations.get(obs.message_id)
            if old is not None:
                if old == obs:
                    continue
                # the same message id seen twice with other content: keep the union, earliest time
                obs = Observation(
                    obs.message_id,
                    min(old.key[0], obs.key[0]),
                    tuple(sorted(set(old.identifiers) | set(obs.identifiers))),
                )
                changed = True
            self.observations[obs.message_id] = obs
            self._count(obs)
            fresh.append(obs)
        fresh.sort(key=lambda o: o.key)
        demoted = self._demoted()
        if (
            changed
            or demoted != self.demoted
            or (fresh and self.last_key and fresh[0].key <= self.last_key)
            or (self.last_key is None and len(fresh) >= self.bulk_threshold)
        ):
            self._recompute()
        else:
            for obs in fresh:
                self._stitch(obs)

    def split(self, person_id: str, identifier: Identifier) -> Split:
        """Record that `identifier` does not belong to `person_id`, and re-derive the graph."""
        pid = self.lookup(person_id)
        root = self._root_of_person(pid)
        if root is None or identifier not in self.parent or self.find(identifier) != root:
            raise InputError(
                f"{masked_identifier(*identifier)} is not an identifier of person {person_id}", field="identifier"
            )
        others = sorted(
            ((k, v) for k, vs in self.members[root].items() for v in vs if (k, v) != identifier),
            key=lambda i: (self.rules.priority(i[0]), i[1]),
        )
        if not others:
            raise InputError(
                f"person {person_id} has no other identifier than {masked_identifier(*identifier)}", field="identifier"
            )
        split = Split(pid, identifier, others[0])
        self.splits.append(split)
        self._recompute()
        return split

    def _usable(self, obs: Observation) -> Observation:
        ids = set()
        priorities = self.rules.priorities
        for kind, value in obs.identifiers:
            if kind not in priorities:
                self.rules.check_kind(kind)
            if not is_blocked(kind, value, self.rules.blocked):
                ids.add((kind, value))
        usable = tuple(sorted(ids))
        if usable == obs.identifiers and isinstance(obs.timestamp, str):
            return obs
        return Observation(obs.message_id, obs.key[0], usable)

    def _count(self, obs: Observation) -> None:
        shared, personal = self.rules.share_limits, self.rules.personal_share_limits
        watched = [i for i in obs.identifiers if i[0] in shared]
        if not watched and not any(i[0] in personal for i in obs.identifiers):
            return
        for ident in obs.identifiers:
            if ident[0] == "user_id":
                continue  # a user id is the person: never demoted
            extra = personal.get(ident[0])
            kinds = watched if extra is None else [i for i in obs.identifiers if i[0] in shared or i[0] in extra]
            if not kinds:
                continue
            seen = self._cooc.setdefault(ident, {})
            for kind, value in kinds:
                if (kind, value) != ident:
                    seen.setdefault(kind, set()).add(value)

    def _demoted(self) -> frozenset[Identifier]:
        shared, personal = self.rules.share_limits, self.rules.personal_share_limits

        def over(ident: Identifier, seen: dict[str, set[str]]) -> bool:
            limits = {**shared, **personal.get(ident[0], {})}
            return any(kind in limits and len(values) > limits[kind] for kind, values in seen.items())

        return frozenset(i for i, seen in self._cooc.items() if over(i, seen))

    def _recompute(self) -> None:
        before = {pid: founder for pid, founder in self.history.items()}
        self._reset()
        self.recomputations += 1
        self.demoted = self._demoted()
        ordered = sorted(self.observations.values(), key=lambda o: o.key)
        if len(ordered) >= self.bulk_threshold:
            self._rebuild(ordered)
        else:
            for obs in ordered:
                self._stitch(obs)
        self.assign_split_ids()
        # ids given before that no longer lead anywhere point at the person holding their founder
        for pid, founder in before.items():
            if pid not in self.merged_into and self._root_of_person(pid) is None and founder in self.parent:
                target = self.person_of(founder)
                if target != pid:
                    self.merged_into[pid] = target

    def assign_split_ids(self) -> None:
        """After a derivation, give each split's person id to the part that holds the split's anchor (the
        person's highest-priority other identifier): the identifier the user split off leaves the person,
        the person keeps its id. Ids come from founders, so when the founder left with the split
        identifier the id would have gone with it; that part gets `split_person_id` instead, and the kept
        part carries the person's id and its founding time (so later merges pick the survivor as they
        would have before the split). If the kept part has since joined an older person, that person's
        id wins and the split one points at it."""
        if not self.splits:
            return
        by_id = {self._pid(root): root for root in self.members}
        for s in self.splits:
            if s.anchor not in self.parent:
                continue
            keep = self.find(s.anchor)
            holder = by_id.get(s.person_id)
            if holder is None or holder == keep:
                continue
            since, off_founder = self.founder[holder]
            new = split_person_id(s)
            self._ids[off_founder] = new
            self.history[new] = off_founder
            del by_id[s.person_id]
            by_id[new] = holder
            key, founder = self.founder[keep]
            if key < since:
                self.merged_into[s.person_id] = self._pid(keep)
                continue
            natural = self._pid(keep)
            self.founder[keep] = (since, founder)
            self._ids[founder] = s.person_id
            self.history[s.person_id] = founder
            self.merged_into.pop(s.person_id, None)
            if natural != s.person_id:
                self.merged_into[natural] = s.person_id
            by_id.pop(natural, None)
            by_id[s.person_id] = keep

    def _rebuild(self, ordered: list[Observation]) -> None:
        """Stitch `ordered` (all observations, canonical order) into the empty graph, in bulk."""
        enc = self._encode(ordered)
        labels, dirty, founders = self._bulk_components(enc)
        self._adopt_clean(ordered, enc, labels, dirty, founders)
        self._log_clean_links(ordered, enc, dirty)
        walk = sorted(
            {rank for x, rank in zip(enc.edge_a, enc.edge_obs, strict=True) if dirty[x]}
            | {enc.first[c] for c in range(len(enc.idents)) if dirty[c] and enc.first[c] != NEVER}
        )
        for rank in walk:
            self._stitch(ordered[rank])
        if ordered:
            self.last_key = ordered[-1].key

    def _encode(self, ordered: list[Observation]) -> _Encoding:
        """Number the identifiers and list each observation's links from its highest-priority
        usable identifier to the others; demoted identifiers only record when they were first seen."""
        enc = _Encoding()
        priority = {k: i for i, k in enumerate(self.rules.priorities)}
        for rank, obs in enumerate(ordered):
            usable = []
            for ident in obs.identifiers:
                if ident in self.demoted:
                    enc.seen_at(enc.code(ident), rank)
                else:
                    usable.append(ident)
            if not usable:
                continue
            usable.sort(key=lambda i: (priority.get(i[0], len(priority)), i[1]))
            p = enc.code(usable[0])
            enc.seen_at(p, rank)
            for ident in usable[1:]:
                enc.edge_a.append(p)
                enc.edge_b.append(enc.code(ident))
                enc.edge_obs.append(rank)
        return enc

    def _bulk_components(self, enc: _Encoding) -> tuple[list[int], list[bool], list[int]]:
        """Per identifier: its component label, whether its component must be walked rule by rule
        (a limit could refuse a link there, or a split lies inside it), and per label the founder."""
        idents = enc.idents
        kinds = list(self.rules.priorities) + sorted({k for k, _ in idents} - set(self.rules.priorities))
        kind_code = {k: i for i, k in enumerate(kinds)}
        limits = [self.rules.limits.get(k, -1) for k in kinds]
        n = len(idents)
        bulk = stitch_links(
            n,
            np.fromiter((kind_code[k] for k, _ in idents), np.int64, n),
            np.asarray(enc.first, dtype=np.int64),
            np.asarray(enc.edge_a, dtype=np.int64),
            np.asarray(enc.edge_b, dtype=np.int64),
            np.asarray(limits, dtype=np.int64),
        )
        codes = enc.codes
        if self._cannot:  # a split inside a component: the rules must be walked there too
            for ident, partners in self._cannot.items():
                if ident in codes:
                    label = bulk.labels[codes[ident]]
                    if any(p in codes and bulk.labels[codes[p]] == label for p in partners):
                        bulk.dirty[label] = True
        return bulk.labels.tolist(), bulk.dirty[bulk.labels].tolist(), bulk.founder.tolist()

    def _adopt_clean(
        self,
        ordered: list[Observation],
        enc: _Encoding,
        labels: list[int],
        dirty: list[bool],
        founders: list[int],
    ) -> None:
        """Write the components that need no walk into the union-find: parents, founders, members."""
        idents, first = enc.idents, enc.first
        for c, ident in enumerate(idents):
            if dirty[c]:
                continue
            root = idents[founders[labels[c]]]
            self.parent[ident] = root
            if ident == root:
                self.members[root] = {}
                self.founder[root] = (ordered[first[c]].key, root)
                self.history.setdefault(person_id_for(root), root)
        for c, ident in enumerate(idents):
            if not dirty[c]:
                self.members[self.parent[ident]].setdefault(ident[0], set()).add(ident[1])

    def _log_clean_links(self, ordered: list[Observation], enc: _Encoding, dirty: list[bool]) -> None:
        """Log each linked pair of a component that needs no walk once, with its first event."""
        idents = enc.idents
        seen: set[tuple[int, int]] = set()
        for x, y, rank in zip(enc.edge_a, enc.edge_b, enc.edge_obs, strict=True):
            if dirty[x] or (x, y) in seen:
                continue
            seen.add((x, y))
            obs = ordered[rank]
            self.links.append(
                Link(
                    idents[x],
                    idents[y],
                    obs.message_id,
                    obs.key[0],
                    "same event",
                    survivor=person_id_for(self.parent[idents[x]]),
                )
            )

    # --- the union-find ----------------------------------------------------------------------------

    def find(self, ident: Identifier) -> Identifier:
        """The root identifier of `ident`'s cluster."""
        root = ident
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[ident] != root:
            self.parent[ident], ident = root, self.parent[ident]
        return root

    def _new(self, ident: Identifier, obs: Observation) -> None:
        self.parent[ident] = ident
        self.members[ident] = {ident[0]: {ident[1]}}
        self.founder[ident] = (obs.key, ident)
        self.history.setdefault(person_id_for(ident), ident)

    def _stitch(self, obs: Observation) -> None:
        usable = sorted(
            (i for i in obs.identifiers if i not in self.demoted), key=lambda i: (self.rules.priority(i[0]), i[1])
        )
        for ident in obs.identifiers:
            if ident in self.demoted and ident not in self.parent:
                self._new(ident, obs)  # a demoted identifier is a person of its own
        if self.last_key is None or obs.key > self.last_key:
            self.last_key = obs.key
        if not usable:
            return
        primary = usable[0]
        if primary not in self.parent:
            self._new(primary, obs)
        for ident in usable[1:]:
            ra = self.find(primary)
            if ident not in self.parent:
                rule = self._refusal(ra, None, ident)
                if rule:
                    self.refusals.append(Refusal(primary, ident, obs.message_id, rule))
                    self._new(ident, obs)
                    continue
                self.parent[ident] = ra
                self.members[ra].setdefault(ident[0], set()).add(ident[1])
                self.links.append(
                    Link(primary, ident, obs.message_id, obs.key[0], "same event", survivor=self._pid(ra))
                )
                continue
            rb = self.find(ident)
            if ra == rb:
                continue
            rule = self._refusal(ra, rb, ident)
            if rule:
                self.refusals.append(Refusal(primary, ident, obs.message_id, rule))
                continue
            self._union(ra, rb, primary, ident, obs)

    def _refusal(self, ra: Identifier, rb: Identifier | None, ident: Identifier) -> str | None:
        a = self.members[ra]
        b = self.members[rb] if rb is not None else {ident[0]: {ident[1]}}
        for kind, values in b.items():
            limit = self.rules.limits.get(kind)
            if limit is not None and len(values) + len(a.get(kind, ())) > limit:
                return f"limit: at most {limit} {kind} per person"
        if self._cannot:
            side_a = [(k, v) for k, vs in a.items() for v in vs]
            side_b = [(k, v) for k, vs in b.items() for v in vs]
            check, other_root = (side_b, ra) if rb is None or len(side_b) <= len(side_a) else (side_a, rb)
            for member in check:
                for partner in self._cannot.get(member, ()):
                    if partner in self.parent and self.find(partner) == other_root:
                        return f"split: {partner[0]}:{partner[1]} and {member[0]}:{member[1]} were split apart"
        return None

    def _union(self, ra: Identifier, rb: Identifier, a: Identifier, b: Identifier, obs: Observation) -> None:
        survivor_root, absorbed_root = (ra, rb) if self.founder[ra] <= self.founder[rb] else (rb, ra)
        survivor, absorbed = self._pid(survivor_root), self._pid(absorbed_root)
        big, small = (
            (ra, rb)
            if sum(map(len, self.members[ra].values())) >= sum(map(len, self.members[rb].values()))
            else (rb, ra)
        )
        self.parent[small] = big
        for kind, values in self.members.pop(small).items():
            self.members[big].setdefault(kind, set()).update(values)
        founder = min(self.founder.pop(ra), self.founder.pop(rb))
        self.founder[big] = founder
        self.merged_into[absorbed] = survivor
        self.links.append(
            Link(a, b, obs.message_id, obs.key[0], "same event: persons merged", survivor=survivor, merged=absorbed)
        )

    # --- output -------------------------------------------------------------------------------

    def _pid(self, root: Identifier) -> str:
        founder = self.founder[root][1]
        return self._ids.get(founder) or person_id_for(founder)

    def _root_of_person(self, pid: str) -> Identifier | None:
        founder = self.history.get(pid)
        if founder is None or founder not in self.parent:
            return None
        root = self.find(founder)
        return root if self._pid(root) == pid else None

    def person_of(self, ident: Identifier) -> str:
        """The id of the person an identifier belongs to (KeyError if never seen)."""
        return self._pid(self.find(ident))

    def lookup(self, person_id: str) -> str:
        """The current id of a person, following merges (an absorbed id leads to its survivor)."""
        seen = set()
        while person_id in self.merged_into and person_id not in seen:
            seen.add(person_id)
            person_id = self.merged_into[person_id]
        return person_id

    def identifiers_of(self, person_id: str) -> dict[str, list[str]]:
        """A person's identifiers by kind (by current or any old id)."""
        root = self._root_of_person(self.lookup(person_id))
        if root is None:
            raise InputError(f"no person {person_id!r}", field="person_id")
        return {k: sorted(v) for k, v in sorted(self.members[root].items())}

    def persons(self) -> dict[str, dict[str, list[str]]]:
        """Every person and its identifiers."""
        return {self._pid(root): {k: sorted(v) for k, v in sorted(m.items())} for root, m in self.members.items()}

    def assignments(self) -> dict[Identifier, str]:
        """Every identifier → its person id."""
        return {ident: self.person_of(ident) for ident in self.parent}

    def merge_log(self) -> list[Link]:
        """The links that merged two persons, in the order they happened."""
        return [link for link in self.links if link.merged]

    def explain(self, a: Identifier, b: Identifier) -> list[Link]:
        """The chain of links (identifier → event → identifier …) from `a` to `b`; [] if a == b.

        Raises InputError when they are not the same person.
        """
        for ident in (a, b):
            if ident not in self.parent:
                raise InputError(f"{masked_identifier(*ident)} is not in the identity graph", field="identifier")
        if self.find(a) != self.find(b):
            raise InputError(
                f"{masked_identifier(*a)} and {masked_identifier(*b)} are different persons", field="identifier"
            )
        adjacency: dict[Identifier, list[Link]] = {}
        root = self.find(a)
        for link in self.links:
            if link.a in self.parent and self.find(link.a) == root:
                adjacency.setdefault(link.a, []).append(link)
                adjacency.setdefault(link.b, []).append(link)
        previous: dict[Identifier, tuple[Identifier, Link] | None] = {a: None}
        queue = deque([a])
        while queue:
            node = queue.popleft()
            if node == b:
                break
            for link in adjacency.get(node, ()):
                nxt = link.b if link.a == node else link.a
                if nxt not in previous:
                    previous[nxt] = (node, link)
                    queue.append(nxt)
        chain: list[Link] = []
        node = b
        while (step := previous.get(node)) is not None:
            node, link = step
            chain.append(link)
        return chain[::-1]

    def demoted_report(self) -> dict[Identifier, dict[str, int]]:
        """Demoted identifiers and how many distinct identifiers of each watched kind they were seen with."""
        return {i: {k: len(v) for k, v in sorted(self._cooc[i].items())} for i in sorted(self.demoted)}

    # --- state ----------------------------------------------------------------------------------

    def state(self) -> dict[str, list[dict[str, Any]]]:
        """The whole graph as plain rows (one list per table), for a store to persist."""

        def ident(prefix: str, i: Identifier) -> dict[str, str]:
            return {f"{prefix}kind": i[0], f"{prefix}value": i[1]}

        return {
            "observations": [
                {"message_id": o.message_id, "timestamp": o.key[0], **ident("", i)}
                for o in self.observations.values()
                for i in o.identifiers
            ]
            + [
                {"message_id": o.message_id, "timestamp": o.key[0], "kind": None, "value": None}
                for o in self.observations.values()
                if not o.identifiers
            ],
            "nodes": [{**ident("", i), **ident("root_", self.find(i))} for i in list(self.parent)],
            "founders": [
                {
                    **ident("root_", r),
                    "key_timestamp": k[0],
                    "key_message_id": k[1],
                    **ident("", f),
                    "person_id": self._pid(r),
                }
                for r, (k, f) in self.founder.items()
            ],
            "links": [
                {
                    **ident("a_", x.a),
                    **ident("b_", x.b),
                    "message_id": x.message_id,
                    "timestamp": x.timestamp,
                    "rule": x.rule,
                    "survivor": x.survivor,
                    "merged": x.merged,
                }
                for x in self.links
            ],
            "refusals": [
                {**ident("a_", r.a), **ident("b_", r.b), "message_id": r.message_id, "rule": r.rule}
                for r in self.refusals
            ],
            "splits": [
                {"person_id": s.person_id, **ident("", s.identifier), **ident("anchor_", s.anchor)} for s in self.splits
            ],
            "history": [
                {"person_id": p, **ident("", f), "merged_into": self.merged_into.get(p)}
                for p, f in self.history.items()
            ],
            "meta": [
                {
                    "last_timestamp": self.last_key[0] if self.last_key else None,
                    "last_message_id": self.last_key[1] if self.last_key else None,
                }
            ],
        }

    @classmethod
    def from_state(cls, rules: Rules, state: Mapping[str, list[dict[str, Any]]]) -> Stitcher:
        """The graph `state()` returned, ready to take more observations incrementally."""
        s = cls(rules)
        grouped: dict[str, tuple[str, list[Identifier]]] = {}
        for row in state.get("observations", []):
            entry = grouped.setdefault(row["message_id"], (row["timestamp"], []))
            if row["kind"] is not None:
                entry[1].append((row["kind"], row["value"]))
        for mid, (ts, ids) in grouped.items():
            obs = Observation(mid, ts, tuple(sorted(ids)))
            s.observations[mid] = obs
            s._count(obs)
        s.splits = [
            Split(r["person_id"], (r["kind"], r["value"]), (r["anchor_kind"], r["anchor_value"]))
            for r in state.get("splits", [])
        ]
        s._reset()
        s.demoted = s._demoted()
        for r in state.get("history", []):
            s.history[r["person_id"]] = (r["kind"], r["value"])
            if r["merged_into"]:
                s.merged_into[r["person_id"]] = r["merged_into"]
        for r in state.get("nodes", []):
            i, root = (r["kind"], r["value"]), (r["root_kind"], r["root_value"])
            s.parent[i] = root
            s.members.setdefault(root, {}).setdefault(i[0], set()).add(i[1])
        for r in state.get("founders", []):
            founder = (r["kind"], r["value"])
            s.founder[(r["root_kind"], r["root_value"])] = ((r["key_timestamp"], r["key_message_id"]), founder)
            if r.get("person_id") and r["person_id"] != person_id_for(founder):  # moved by a split
                s._ids[founder] = r["person_id"]
        s.links = [
            Link(
                (r["a_kind"], r["a_value"]),
                (r["b_kind"], r["b_value"]),
                r["message_id"],
                r["timestamp"],
                r["rule"],
                r["survivor"],
                r["merged"],
            )
            for r in state.get("links", [])
        ]
        s.refusals = [
            Refusal((r["a_kind"], r["a_value"]), (r["b_kind"], r["b_value"]), r["message_id"], r["rule"])
            for r in state.get("refusals", [])
        ]
        meta = (state.get("meta") or [{}])[0]
        if meta.get("last_timestamp") is not None:
            s.last_key = (meta["last_timestamp"], meta["last_message_id"])
        return s
