"""Customers: find a person by any identifier, and their 360° profile on one page.

    /app/customers?q=<identifier>      e-mail, phone, loyalty card, user id, customer number, device id,
                                       anonymous id or person id (`kind:value` works too); one match shows the
                                       profile, several a list, none a message
    /app/customers?person=<person id>  the profile: identifiers, traits and insights, CLV and churn risk,
                                       consent and its history, segments, recommendations, coupons, and one
                                       timeline of every touch (online and in store) with the messages that were
                                       not sent and why; `limit` = the newest events shown (1-1000)
    /app/customers/identity?person=…   the merge explanation (`omniweave identity explain`), loaded by htmx
                                       after the page (it reads the whole identity graph); `&explain=1` on the
                                       page puts it in without JavaScript

Every figure comes from the service functions the CLI and the API call: `find_person`/`find_people` and
`person_view` (profiles/service/lookup.py: `omniweave profile show`, `GET /v1/profiles`), `explain_identifier`
(`omniweave identity explain`), `consent_of` (`omniweave privacy consent`), `segments_of`, `coupons_of`, and
`journey_stats.explain` (`omniweave journeys explain`: the journeys' steps, skipped sends with their reason,
and the policy's verdicts). Analysts see what the API shows them: the whole page document goes through
`mask_personal_data`, so every e-mail, phone and name is masked, in the tables and their CSV alike.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar, cast

import orjson
from fastapi import Query as QueryParam
from fastapi import Request
from fastapi.responses import HTMLResponse, Response

from omniweave.activate.service.coupons import coupons_of
from omniweave.activate.service.journey_stats import PersonJourneys
from omniweave.activate.service.journey_stats import explain as journeys_explain
from omniweave.errors import InputError
from omniweave.identity.graph import KINDS
from omniweave.identity.service.operations import explain_identifier
from omniweave.privacy import roles
from omniweave.privacy.masking import mask
from omniweave.privacy.roles import mask_personal_data
from omniweave.privacy.service.consent import ConsentView, consent_of
from omniweave.profiles.service.lookup import churn_risk, find_people, find_person, person_view
from omniweave.segments.service.membership import segments_of
from omniweave.shells.api.deps import RuntimeDep
from omniweave.shells.web import view
from omniweave.shells.web.app import Context, data_version, page, render, router, viewer

T = TypeVar("T")

TEMPLATE = "dashboard/customers.html"
TIMELINE_DEFAULT = 100
TIMELINE_MAX = 1000
QUERY_MAX = 320
PERSON_ID = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")

CHANNEL_ICONS = {
    "web": "◎",
    "app": "▣",
    "email": "✉",
    "sms": "✆",
    "whatsapp": "☏",
    "push": "⚑",
    "social": "☺",
    "search": "⌕",
    "display": "▭",
    "store": "⌂",
    "loyalty": "★",
    "coupon": "✂",
    "qr": "▦",
    "print": "▤",
    "tv": "▢",
    "direct_mail": "✈",
    "call_centre": "☎",
    "crm": "☰",
    "ads": "◈",
    "webhook": "⚯",
    "journey": "↪",
    "omniweave": "⚙",
}
"""A symbol per channel, shown next to the channel's name (the name is the text a screen reader reads)."""
OTHER_ICON = "•"
OFFLINE = frozenset({"store", "loyalty", "coupon", "call_centre", "direct_mail", "print", "tv", "crm"})
"""Channels of touches away from the web and the apps: the till, the loyalty desk, paper, the phone."""
SYSTEM = frozenset({"omniweave", "journey"})

JOURNEY_STEPS = ("entered", "sent", "skipped", "rescheduled", "held_out", "error", "coupon", "converted", "exited")
"""The journey steps the timeline shows (waits, branches and timeouts are the journey page's detail)."""
NOT_SENT = {
    "skipped": "not sent",
    "held_out": "not sent (holdout)",
    "rescheduled": "not sent yet",
    "error": "not sent (error)",
    "drop": "not sent",
    "reschedule": "not sent yet",
}
"""Outcomes of a journey step or a policy verdict that mean the message did not go out (then or at all)."""
MESSAGE_CHANNELS = ("email", "sms", "whatsapp", "push", "print", "webhook", "ads", "web", "app")
_CHANNEL_IN_REASON = (
    re.compile(r"^(\w+): "),  # "email: no email consent (...)"
    re.compile(r"\bno (\w+) (?:address|consent|rendition)"),  # "no print address"
    re.compile(r"\bhas no (\w+) rendition"),  # "store_event_invitation has no app rendition"
    re.compile(r" on (\w+)\b"),  # "store_event_invitation on email"
)

PROFILE_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "Person",
        ("first_name", "last_name", "gender", "birthday", "age", "postcode", "timezone", "primary_email")
        + ("primary_phone", "primary_loyalty_card", "primary_user_id"),
    ),
    (
        "Activity",
        ("first_seen", "last_seen", "event_count", "channels", "last_touch", "orders", "online_orders")
        + ("store_orders", "online_revenue", "store_revenue", "total_revenue", "first_order_at", "last_order_at")
        + ("purchase_days", "average_order_value", "repeat_order_value", "recency_days"),
    ),
    (
        "Insights",
        ("rfm_segment", "rfm_recency", "rfm_frequency", "rfm_monetary", "preferred_channel", "engagement_by_channel")
        + ("preferred_messaging_channel", "messaging_response", "preferred_device", "best_weekday", "best_hour")
        + ("contact_every_days", "favourite_products", "favourite_categories", "viewed_not_bought")
        + ("responsive_promotion",),
    ),
)
"""Profile columns by section; columns shown elsewhere (identifiers, value, consent, recommendations) and any
column not listed here appear under "Other traits"."""
LIVE_TABLES = ("timeline", "consent_history", "coupons")
"""The tables read from the operational store (journeys, policy verdicts, consent statements, coupons) on every
view; the others come from the warehouse and are kept until it changes (`Context.cached`)."""
SHOWN_ELSEWHERE = frozenset(
    {"person_id", "emails", "phones", "loyalty_cards", "user_ids", "customer_numbers", "device_ids"}
    | {"anonymous_id_count", "identifier_count", "identifier_kinds", "recommended_products"}
    | {"p_alive", "p_alive_note", "expected_orders_12m", "clv_12m"}
)


# --- a cache of its own ----------------------------------------------------------------------------------------

CACHE_ENTRIES = 512
_CACHE: OrderedDict[tuple[str, Hashable], tuple[tuple[int, ...], Any]] = OrderedDict()
_CACHE_LOCK = threading.Lock()


def _cached(ctx: Context, key: Hashable, compute: Callable[[], T]) -> T:
    """`Context.cached` for one person's lookups, in a cache of this page's own: kept until the warehouse
    changes like the reports, but many persons viewed do not push the other pages' reports out of theirs."""
    home = ctx.runtime.settings.home
    version = data_version(ctx.runtime)
    with _CACHE_LOCK:
        hit = _CACHE.get((home, key))
        if hit is not None and hit[0] == version:
            _CACHE.move_to_end((home, key))
            return cast(T, hit[1])
    value = compute()
    with _CACHE_LOCK:
        _CACHE[(home, key)] = (version, value)
        while len(_CACHE) > CACHE_ENTRIES:
            _CACHE.popitem(last=False)
    return value


# --- parameters ----------------------------------------------------------------------------------------------


def _text(ctx: Context, name: str, limit: int) -> str | None:
    value = ctx.get(name)
    if value is None:
        return None
    if len(value) > limit or any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise InputError(f"{name} must be printable text of at most {limit} characters", field=name)
    return value.strip() or None


def _limit(ctx: Context) -> int:
    raw = ctx.get("limit")
    if raw is None:
        return TIMELINE_DEFAULT
    try:
        limit = int(raw)
    except ValueError:
        raise InputError(
            f"limit must be a whole number of events (1 to {TIMELINE_MAX}), got {raw!r}", field="limit"
        ) from None
    if not 1 <= limit <= TIMELINE_MAX:
        raise InputError(f"limit must be between 1 and {TIMELINE_MAX} events, got {limit}", field="limit")
    return limit


def _person_param(ctx: Context) -> str | None:
    person = _text(ctx, "person", 64)
    if person is not None and not PERSON_ID.match(person):
        raise InputError(
            f"person must be a person id such as P0123456789abcde (letters, digits, _ . -), got {person!r}",
            field="person",
        )
    return person


def _explain_param(ctx: Context) -> bool:
    raw = ctx.get("explain")
    if raw not in (None, "0", "1"):
        raise InputError(f"explain must be 1 (show the merge explanation) or 0, got {raw!r}", field="explain")
    return raw == "1"


def _renamed(exc: InputError, field: str) -> InputError:
    """A lookup's InputError (its field is `identifier`) as this page's parameter."""
    return InputError(str(exc), field=field)


# --- the page ------------------------------------------------------------------------------------------------


@page("customers", "Customers")
def customers(ctx: Context) -> view.Page:
    query = _text(ctx, "q", QUERY_MAX)
    person = _person_param(ctx)
    limit = _limit(ctx)
    explain = _explain_param(ctx)
    masks = ctx.principal.masks_pii
    out = view.Page(TEMPLATE, "Customers")
    out.context.update(
        q_value="" if masks else (query or ""),  # an analyst's search is not echoed: it may be a plain address
        limit=limit,
        state="search",
        message=None,
        person=None,
        matches=[],
    )
    if person is not None:
        try:
            found = _cached(ctx, ("customers-find", person), lambda: find_person(ctx.runtime, person))
        except InputError as exc:
            raise _renamed(exc, "person") from None
        if found is None:
            out.context.update(state="none", message=f"Nobody has the person id {person!r}.")
            return out
        _profile(ctx, out, found[0], found[1], limit, explain)
        return out
    if query is None:
        return out
    try:
        people = _cached(ctx, ("customers-find-all", query), lambda: find_people(ctx.runtime, query))
    except InputError as exc:
        raise _renamed(exc, "q") from None
    if not people:
        shown = _masked_ref(query) if masks else query
        out.context.update(
            state="none",
            message=f"Nobody has the identifier {shown!r}. Try another of their identifiers, or kind:value "
            "(email:…, phone:…, loyalty_card:…, user_id:…, customer_number:…, device_id:…, anonymous_id:…).",
        )
        return out
    if len(people) > 1:
        rows: list[dict[str, Any]] = [{"person_id": p, "found_by": _identifier(by)} for p, by in people]
        if masks:
            rows = mask_personal_data(rows)
        out.add(
            view.Table(
                "matches",
                f"{len(rows)} persons have this identifier",
                ("person_id", "found by"),
                tuple((r["person_id"], _ident_text(r["found_by"])) for r in rows),
            )
        )
        out.context.update(state="several", matches=rows)
        return out
    _profile(ctx, out, people[0][0], people[0][1], limit, explain)
    return out


def _masked_ref(text: str) -> str:
    """What an analyst typed, masked like an identifier's value (`phone:+44********23`, `a***@e***.com`)."""
    kind, sep, value = text.partition(":")
    return f"{kind}:{mask(value.strip())}" if sep and kind in KINDS else mask(text)


def _identifier(text: str) -> dict[str, str]:
    """`kind:value` as the identifier document the API masks (`{"kind": …, "value": …}`)."""
    kind, _, value = text.partition(":")
    return {"kind": kind, "value": value}


def _ident_text(ident: Mapping[str, Any]) -> str:
    return f"{ident['kind']}:{ident['value']}"


def _profile(ctx: Context, out: view.Page, person_id: str, found_by: str, limit: int, explain: bool) -> None:
    """The 360° profile of `person_id` into `out`: its tables and the template's document."""
    runtime = ctx.runtime
    person = _cached(ctx, ("customers-view", person_id, limit), lambda: _view_document(ctx, person_id, limit))
    segments = _cached(ctx, ("customers-segments", person_id), lambda: segments_of(runtime, person_id))
    if ctx.get("csv") in (None, *LIVE_TABLES):  # the operational store's parts: read on every view
        journeys = journeys_explain(runtime, person_id)
        consent = consent_of(runtime, person_id)
        coupons = coupons_of(runtime, [person_id])
    else:  # the CSV of a table of the warehouse's parts alone
        journeys, consent, coupons = PersonJourneys(person_id, person_id, (), []), ConsentView(person_id, (), {}), []
    profile: dict[str, Any] = person["profile"] or {}
    document: dict[str, Any] = {
        "person_id": person_id,
        "identifiers": person["identifiers"],
        "profile": profile,
        "value": {
            "clv_12m": profile.get("clv_12m"),
            "expected_orders_12m": profile.get("expected_orders_12m"),
            "p_alive": profile.get("p_alive"),
            "churn_risk": churn_risk(profile),
            "p_alive_note": profile.get("p_alive_note"),
        },
        "recommended_products": list(profile.get("recommended_products") or []),
        "segments": [m.to_dict() for m in segments],
        "consent_now": [
            {"purpose": column.removeprefix("consent_").removeprefix("purpose_"), "column": column, "state": value}
            for column, value in profile.items()
            if column.startswith("consent_")
        ],
        "consent_history": [
            {
                "stated_at": _iso(_from_epoch(s.stated_at)),
                "purpose": s.purpose,
                "granted": s.granted,
                "source": s.source,
                "by": f"{s.kind}:{s.value}",  # the service masks the value for everyone
                "reference": s.reference,
            }
            for s in reversed(consent.history)
        ],
        "coupons": [_coupon_row(c.to_dict()) for c in coupons],
        "timeline": _timeline(person["timeline"], journeys),
    }
    document["found_by"] = found_by
    if ctx.principal.masks_pii:
        document = mask_personal_data(document)
        if not found_by.startswith("person:"):  # a person id is no personal data
            document["found_by"] = _masked_ref(found_by)
    sections = _sections(document["profile"])
    _tables(out, document, sections)
    merge = _merge_section(ctx, person_id, found_by, person["identifiers"]) if explain else None
    if merge is not None and merge.get("links"):
        out.add(_merge_table(merge))
    out.title = f"Customer {person_id}"
    out.context.update(
        state="profile",
        person=document,
        sections=sections,
        limit=limit,
        events_shown=len(person["timeline"]),
        merge=merge,
        icons=CHANNEL_ICONS,
        other_icon=OTHER_ICON,
        has_profile=person["profile"] is not None,
    )


def _view_document(ctx: Context, person_id: str, limit: int) -> dict[str, Any]:
    """`person_view` as the API gives it (through orjson: NaN becomes null), with the raw event times kept."""
    found = person_view(ctx.runtime, person_id, "", limit)
    document: dict[str, Any] = orjson.loads(orjson.dumps(found.to_dict()))
    document["timeline"] = found.timeline  # datetimes: the timeline sorts them with the journeys' epochs
    return document


# --- the timeline ----------------------------------------------------------------------------------------------


def _from_epoch(at: float) -> datetime:
    return datetime.fromtimestamp(float(at), UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _where(channel: str) -> str:
    if channel in SYSTEM:
        return "omniweave"
    return "in store / offline" if channel in OFFLINE else "online"


def _message_channel(reason: str | None) -> str:
    """The channel a journey step's reason names (`email: no email consent`, `no print address`), else
    `journey`: only which symbol the timeline shows depends on it."""
    for pattern in _CHANNEL_IN_REASON:
        found = pattern.search(reason or "")
        if found and found.group(1) in MESSAGE_CHANNELS:
            return found.group(1)
    return "journey"


def _timeline(events: list[dict[str, Any]], journeys: PersonJourneys) -> list[dict[str, Any]]:
    """Every touch newest first: the person's latest events (`person_view`), their journeys' steps and the
    policy's verdicts on sends outside journeys (`journeys explain`), the messages not sent with their reason."""
    entries: list[tuple[datetime, int, dict[str, Any]]] = []
    for n, e in enumerate(events):
        moment = e["timestamp"]
        if not isinstance(moment, datetime):
            moment = datetime.fromisoformat(str(moment).replace("Z", "+00:00"))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        channel = str(e.get("channel") or "other")
        entries.append(
            (
                moment,
                n,
                {
                    "when": _iso(moment),
                    "channel": channel,
                    "where": _where(channel),
                    "what": e.get("event") or e.get("type") or "",
                    "outcome": "",
                    "reason": "",
                    "source": e.get("source") or "",
                },
            )
        )
    base = len(entries)
    for run in journeys.runs:
        for k, step in enumerate(run.steps):
            if step["outcome"] not in JOURNEY_STEPS:
                continue
            channel = _message_channel(step["reason"]) if step["outcome"] != "entered" else "journey"
            entries.append(
                (
                    _from_epoch(step["at"]),
                    base + k,
                    {
                        "when": _iso(_from_epoch(step["at"])),
                        "channel": channel,
                        "where": _where(channel) if channel != "journey" else "omniweave",
                        "what": f"journey {run.journey} v{run.version} · {step['node']}",
                        "outcome": NOT_SENT.get(step["outcome"], step["outcome"]),
                        "reason": step["reason"] or "",
                        "source": "journeys",
                    },
                )
            )
        base += len(run.steps)
    for k, d in enumerate(journeys.other_decisions):
        if d["outcome"] == "send":
            continue
        entries.append(
            (
                _from_epoch(d["at"]),
                base + k,
                {
                    "when": _iso(_from_epoch(d["at"])),
                    "channel": d["channel"],
                    "where": _where(d["channel"]),
                    "what": f"{d['message_class']} message {d['key']}",
                    "outcome": NOT_SENT.get(d["outcome"], d["outcome"]),
                    "reason": d["reason"] or "",
                    "source": "policy",
                },
            )
        )
    entries.sort(key=lambda item: (item[0], -item[1]), reverse=True)
    return [entry for _, _, entry in entries]


# --- sections and tables ---------------------------------------------------------------------------------------


def _cell(value: Any) -> str:
    """A profile value as `omniweave profile show` prints it: text as is, anything else as compact JSON."""
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def _shown(value: Any) -> str:
    """A profile value for reading: lists joined, numbers grouped, yes/no."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return view.number(value)
    if isinstance(value, list):
        return ("; " if any(isinstance(v, dict) for v in value) else ", ").join(_shown(v) for v in value)
    if isinstance(value, dict):  # {channel: app, last_at: …, events: 48} → "app: last at …, events 48"
        items = list(value.items())
        if not items:
            return ""
        rest = ", ".join(f"{k.replace('_', ' ')} {_shown(v)}" for k, v in items[1:])
        return f"{_shown(items[0][1])}: {rest}" if rest else _shown(items[0][1])
    if isinstance(value, str) and len(value) >= 20 and value[4:5] == "-" and value[10:11] == "T":
        return value[:19].replace("T", " ")  # a timestamp, to the second
    return str(value)


def _present(value: Any) -> bool:
    return value not in (None, [], {}, "")


def _sections(profile: Mapping[str, Any]) -> list[tuple[str, list[tuple[str, str]]]]:
    listed = {c for _, columns in PROFILE_GROUPS for c in columns}
    sections = []
    for title, columns in PROFILE_GROUPS:
        rows = [(c.replace("_", " "), _shown(profile[c])) for c in columns if _present(profile.get(c))]
        sections.append((title, rows))
    others = [
        (c.replace("_", " "), _shown(v))
        for c, v in profile.items()
        if c not in listed and c not in SHOWN_ELSEWHERE and not c.startswith("consent_") and _present(v)
    ]
    sections.append(("Other traits", others))
    return sections


def _coupon_row(coupon: Mapping[str, Any]) -> dict[str, Any]:
    def when(at: Any) -> str | None:
        return None if at is None else _iso(_from_epoch(at))

    return {
        "code": coupon["display"],
        "pool": coupon["pool"],
        "campaign": coupon["campaign"],
        "channel": coupon["channel"],
        "message": coupon["message_name"],
        "issued_to": coupon["person_id"],
        "issued": when(coupon["issued_at"]),
        "expires": when(coupon["expires_at"]),
        "redeemed": when(coupon["redeemed_at"]),
        "redeemed_via": coupon["redeemed_via"],
        "redeemed_by": coupon["redeemed_by"],
        "shared": coupon["shared"],
    }


def _tables(out: view.Page, person: Mapping[str, Any], sections: list[tuple[str, list[tuple[str, str]]]]) -> None:
    profile = person["profile"]
    traits = [("person_id", person["person_id"])] + [(k, _cell(v)) for k, v in profile.items() if _present(v)]
    out.add(view.Table("profile", "Every trait (as omniweave profile show)", ("trait", "value"), tuple(traits)))
    out.add(
        view.Table(
            "identifiers",
            "Identifiers",
            ("kind", "value"),
            tuple((i["kind"], i["value"]) for i in _ordered(person["identifiers"])),
        )
    )
    value = person["value"]
    out.add(
        view.Table(
            "value",
            "Value and churn risk",
            ("figure", "value"),
            tuple((k, value[k]) for k in ("clv_12m", "expected_orders_12m", "p_alive", "churn_risk", "p_alive_note")),
        )
    )
    out.add(
        view.Table(
            "timeline",
            "Timeline (newest first)",
            ("when", "channel", "where", "what", "outcome", "reason", "source"),
            tuple(
                tuple(e[c] for c in ("when", "channel", "where", "what", "outcome", "reason", "source"))
                for e in person["timeline"]
            ),
        )
    )
    out.add(
        view.Table(
            "segments",
            "Segments",
            ("segment", "name", "since"),
            tuple((s["segment_id"], s["name"], s["since"]) for s in person["segments"]),
        )
    )
    out.add(
        view.Table(
            "consent",
            "Consent now (profile)",
            ("purpose", "column", "state"),
            tuple((c["purpose"], c["column"], c["state"]) for c in person["consent_now"]),
        )
    )
    history_columns = ("stated_at", "purpose", "granted", "source", "by", "reference")
    out.add(
        view.Table(
            "consent_history",
            "Consent history (newest first)",
            history_columns,
            tuple(tuple(h[c] for c in history_columns) for h in person["consent_history"]),
        )
    )
    coupon_columns: tuple[str, ...] = ("code", "pool", "campaign", "channel", "message", "issued_to", "issued")
    coupon_columns += ("expires",)
    coupon_columns += ("redeemed", "redeemed_via", "redeemed_by", "shared")
    out.add(
        view.Table(
            "coupons",
            "Coupons issued and redeemed",
            coupon_columns,
            tuple(tuple(c[k] for k in coupon_columns) for c in person["coupons"]),
        )
    )
    out.add(
        view.Table(
            "recommendations",
            "Recommended products",
            ("rank", "product"),
            tuple((n, p) for n, p in enumerate(person["recommended_products"], 1)),
        )
    )


def _ordered(identifiers: list[dict[str, str]]) -> list[dict[str, str]]:
    """Identifiers by the identity graph's priority (user id, e-mail, phone, card, …), then value."""
    rank = {kind: n for n, kind in enumerate(KINDS)}
    return sorted(identifiers, key=lambda i: (rank.get(i["kind"], len(rank)), i["kind"], i["value"]))


# --- the merge explanation ---------------------------------------------------------------------------------------


EXPLAIN_KINDS = ("email", "phone", "loyalty_card", "customer_number", "user_id", "device_id", "anonymous_id")
"""The kinds tried for the merge explanation, after the identifier the person was found by: an identifier in
`identities` may have reached the person another way than the graph (an alias), then the next is tried."""
EXPLAIN_TRIES = 3
"""At most this many identifiers tried (each reads the whole identity graph)."""


def _explanation(
    ctx: Context, person_id: str, found_by: str, identifiers: list[dict[str, str]]
) -> dict[str, Any] | None:
    """`explain_identifier` (`omniweave identity explain`) for one of the person's identifiers (the one they
    were found by first), as plain values; None when the person has no identifier."""
    rank = {kind: n for n, kind in enumerate(EXPLAIN_KINDS)}
    ordered = sorted(identifiers, key=lambda i: (rank.get(i["kind"], len(rank)), i["kind"], i["value"]))
    texts = [found_by] if found_by.partition(":")[0] in {i["kind"] for i in identifiers} else []
    texts += [t for t in (_ident_text(i) for i in ordered) if t != found_by]
    if not texts:
        return None
    tries = texts[:EXPLAIN_TRIES]

    def compute() -> dict[str, Any] | None:
        problem = ""
        for text in tries:
            try:
                found = explain_identifier(ctx.runtime, text)
            except InputError as exc:
                problem = str(exc)
                continue
            return {
                "identifier": {"kind": found.identifier[0], "value": found.identifier[1]},
                "person_id": found.person_id,
                "problem": None,
                "links": [
                    {
                        "a": {"kind": link.a[0], "value": link.a[1]},
                        "b": {"kind": link.b[0], "value": link.b[1]},
                        "event": link.message_id,
                        "when": link.timestamp,
                        "rule": link.rule,
                        "merged": link.merged,
                        "survivor": link.survivor,
                    }
                    for link in found.links
                ],
            }
        return {"identifier": _identifier(tries[0]), "person_id": person_id, "links": [], "problem": problem}

    return _cached(ctx, ("customers-explain", person_id, tuple(tries)), compute)


def _merge_section(
    ctx: Context, person_id: str, found_by: str, identifiers: list[dict[str, str]]
) -> dict[str, Any] | None:
    merge = _explanation(ctx, person_id, found_by, identifiers)
    if merge is not None and ctx.principal.masks_pii:
        merge = mask_personal_data(merge)
    return merge


def _merge_table(merge: Mapping[str, Any]) -> view.Table:
    return view.Table(
        "merge_links",
        "Links that built the person (omniweave identity explain)",
        ("#", "identifier", "linked to", "event", "when", "rule", "merged"),
        tuple(
            (
                n,
                _ident_text(link["a"]),
                _ident_text(link["b"]),
                link["event"],
                link["when"],
                link["rule"],
                f"{link['merged']} → {link['survivor']}" if link["merged"] else "",
            )
            for n, link in enumerate(merge["links"], 1)
        ),
    )


@router.get("/app/customers/identity", response_class=HTMLResponse)
def merge_fragment(
    runtime: RuntimeDep,
    request: Request,
    person: Annotated[str, QueryParam(min_length=1, max_length=64)],
    limit: Annotated[int, QueryParam(ge=1, le=TIMELINE_MAX)] = TIMELINE_DEFAULT,
) -> Response:
    """The merge explanation of a person, as an HTML fragment for the profile page (htmx)."""
    principal = viewer(runtime, request)
    if principal is None or not principal.allows(roles.PROFILES_READ):
        status, text = (401, "Sign in again.") if principal is None else (403, "Not for your role.")
        return HTMLResponse(f'<p class="error" role="alert">{text}</p>', status_code=status)
    ctx = Context(runtime, principal, request.query_params)
    try:
        person_id = _person_param(ctx) or ""
        found = find_person(runtime, person_id)
    except InputError as exc:
        return render(TEMPLATE, request, principal, status=400, fragment=True, merge=None, problem=str(exc))
    if found is None:
        return render(TEMPLATE, request, principal, status=404, fragment=True, merge=None, problem="no such person")
    person_doc = _cached(ctx, ("customers-view", found[0], limit), lambda: _view_document(ctx, found[0], limit))
    merge = _merge_section(ctx, found[0], "", person_doc["identifiers"])
    return render(TEMPLATE, request, principal, fragment=True, merge=merge, problem=None)
