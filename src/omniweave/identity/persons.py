"""Events attributed to persons through the `identities` dataset (kind, value, person_id) that `resolve`
writes: the one join every later stage (profiles, segments, measure) makes, as an Ibis expression."""

from __future__ import annotations

import ibis
import ibis.expr.types as ir


def with_person(events: ir.Table, identities: ir.Table, *, keep_unknown: bool = False) -> ir.Table:
    """`events` with `person_id` from `identities` (by user_id if set, else anonymous_id): only the events that
    belong to a person, or every event (`person_id` NULL where nobody is known) with `keep_unknown`."""
    ids = identities.select("kind", "value", "person_id")
    by_user = ids.filter(ids.kind == "user_id").select(_uid=ids.value, _p_user=ids.person_id)
    by_anon = ids.filter(ids.kind == "anonymous_id").select(_aid=ids.value, _p_anon=ids.person_id)
    ev = events.left_join(by_user, events.user_id == by_user._uid).left_join(
        by_anon, events.anonymous_id == by_anon._aid
    )
    ev = ev.mutate(person_id=ibis.coalesce(ev._p_user, ev._p_anon)).drop("_uid", "_p_user", "_aid", "_p_anon")
    return ev if keep_unknown else ev.filter(ev.person_id.notnull())
