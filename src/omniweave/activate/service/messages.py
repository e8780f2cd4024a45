"""Messages on a Runtime: the files, a person's preview, and a send to a segment.

- `load_messages(settings)`: the built-in library (`activate/content/library/*.yaml`) and the project's
  `messages/*.yaml|*.toml` (beside the `segments/` folder; the project wins on the same name);
  `load_brand(settings)`: the project's `brand.yaml` (or `.toml`), else the shipped default kit;
- `validate_message(message, brand)`: every channel's rendition for a sample person, checked;
- `preview(runtime, PreviewRequest(message, person, channel))`: exactly what that person gets on that
  channel (their profile, their address, a placeholder for a coupon code not issued yet), with the
  checker's findings;
- `send(runtime, SendRequest(message, segment, channel, dry_run))`: each member of the segment (as last
  evaluated) with an address on the channel whom the policy engine lets through now (consent,
  suppression, caps, quiet hours, TTL, the WhatsApp window: activate/policy.py) and whose rendition
  passes the checker is rendered (a coupon issued per send when the offer names a pool); the policy
  check and the pending ledger row under the key `msg:{message}:{segment}:{person}:{channel}` commit in
  one transaction under the person's lock, then the dispatcher attempts the row — so running it twice
  sends nothing new, and two sends cannot both pass a cap. The report counts every outcome with its
  reason; a verdict to try later is reported as skipped ("not now: …, next allowed …").

Personalisation consent (content/personal.py, activate/service/personal.py): a member who may not get
personal content is rendered with the personal values withheld and the fallbacks in their place; one
whose message cannot render without them (or says `without_personalisation: skip`) is skipped with that
reason, recorded as a policy decision. A preview shows what such a person gets and says why.
"""

from __future__ import annotations

import time
import tomllib
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
import yaml

from omniweave.activate.content.checker import Finding, Limits, check, errors
from omniweave.activate.content.model import (
    BrandKit,
    MessageDef,
    MessageError,
    channel_name,
    parse_brand,
    parse_message,
)
from omniweave.activate.content.personal import RULE as PERSONAL_RULE
from omniweave.activate.content.personal import skip_reason
from omniweave.activate.content.render import Rendition, render, template_variables
from omniweave.activate.policy import WHATSAPP_WINDOW_SECONDS, SendIntent, Verdict, consent_problem, decide
from omniweave.channels.port import Channel, Message, address_key
from omniweave.errors import InputError
from omniweave.runtime import Runtime
from omniweave.settings import Settings
from omniweave.storage.ops.ledger import Ledger
from omniweave.storage.ops.tables.reach import conversations, push_subscriptions

SAMPLE_PERSON: dict[str, Any] = {
    "person_id": "P-SAMPLE",
    "first_name": "Alex",
    "last_name": "Morgan",
    "primary_email": "alex@example.com",
    "primary_phone": "+447700900123",
    "emails": ["alex@example.com"],
    "phones": ["+447700900123"],
    "user_ids": ["u-sample"],
    "birthday": "1990-05-17",
    "age": 36,
    "postcode": "N1 1AA",
    "orders": 3,
    "total_revenue": 184.5,
    "average_order_value": 61.5,
    "preferred_channel": "email",
    "favourite_products": ["SKU-1", "SKU-2"],
    "favourite_categories": ["food"],
    "viewed_not_bought": ["SKU-9"],
    "recommended_products": ["SKU-3", "SKU-4"],
    "rfm_segment": "455",
    "responsive_promotion": "coupon",
    "timezone": "Europe/London",
}
"""The person `messages validate` renders for: the usual profile columns with plausible values."""
SAMPLE_ADDRESS = ("Alex Morgan", "1 High Street", "London", "N1 1AA")
SAMPLE_BEST_SELLERS = ("SKU-7", "SKU-8")
"""The best sellers `messages validate` renders the not-personalised rendition with."""


# --- files ----------------------------------------------------------------------------------------------


def project_folder(settings: Settings) -> Path:
    """Where the project's content lives: the folder that holds `segments/` (the config file's folder or the home)."""
    return settings.segments_folder.parent


def messages_folder(settings: Settings) -> Path:
    """The project's message files: `messages/` beside `segments/`."""
    return project_folder(settings) / "messages"


def _document(path: Path, what: str) -> Any:
    text = path.read_text(encoding="utf-8")
    try:
        return tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:  # the parser's message says where
        raise InputError(f"cannot parse {what} file {path}: {exc}", field=str(path)) from None


_PARSED: dict[tuple[str, int, int], MessageDef] = {}
"""Message files parsed before, by path, modification time and size: a journey's check and the dashboard read
every message file on each call, and parsing YAML in Python cost 50 ms a file."""


def read_message_file(path: Path) -> MessageDef:
    """One message file (YAML or TOML); its name defaults to the file name without extension."""
    stat = path.stat()
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    message = _PARSED.get(key)
    if message is None:
        message = parse_message(_document(path, "message"), source=str(path), default_name=path.stem)
        if len(_PARSED) >= 1024:
            _PARSED.clear()
        _PARSED[key] = message
    return message


def builtin_messages() -> dict[str, MessageDef]:
    """The ready-made messages shipped with omniweave (cart reminder, till welcome, event invitation, birthday)."""
    folder = resources.files("omniweave.activate.content") / "library"
    out = {}
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith((".yaml", ".yml", ".toml")) and not entry.name.startswith("brand."):
            message = read_message_file(Path(str(entry)))
            out[message.name] = message
    return out


def load_messages(settings: Settings, *, builtin: bool = True) -> dict[str, MessageDef]:
    """The built-in messages and the project's files (which win on the same name), by name."""
    out = builtin_messages() if builtin else {}
    folder = messages_folder(settings)
    if folder.is_dir():
        for path in sorted(folder.iterdir()):
            if path.suffix in (".yaml", ".yml", ".toml") and path.is_file():
                message = read_message_file(path)
                out[message.name] = message
    return out


def get_message(settings: Settings, name: str) -> MessageDef:
    """One message by name; InputError listing the known names when there is none."""
    messages = load_messages(settings)
    if name not in messages:
        raise InputError(
            f"no message {name!r}; known: {', '.join(sorted(messages))} (files in {messages_folder(settings)})",
            field="message",
        )
    return messages[name]


def load_brand(settings: Settings) -> BrandKit:
    """The project's `brand.yaml` (or `brand.toml`) beside `segments/`, else the shipped default kit."""
    for name in ("brand.yaml", "brand.yml", "brand.toml"):
        path = project_folder(settings) / name
        if path.is_file():
            return parse_brand(_document(path, "brand") or {}, source=str(path))
    default = resources.files("omniweave.activate.content") / "library" / "brand.yaml"
    return parse_brand(yaml.safe_load(default.read_text(encoding="utf-8")), source="omniweave (default brand)")


# --- list and validate ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class MessageSummary:
    """One message as listed."""

    name: str
    campaign: str
    message_class: str
    channels: tuple[str, ...]
    source: str
    description: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "campaign": self.campaign,
            "class": self.message_class,
            "channels": list(self.channels),
            "source": self.source,
            "description": self.description,
        }


def list_messages(settings: Settings) -> tuple[MessageSummary, ...]:
    """Every message (built-in and the project's), sorted by name."""
    return tuple(
        MessageSummary(m.name, m.campaign, m.message_class, m.channels, m.source, m.description)
        for _, m in sorted(load_messages(settings).items())
    )


@dataclass(frozen=True)
class Validation:
    """A message checked on each of its channels for the sample person."""

    name: str
    source: str
    findings: tuple[Finding, ...]

    @property
    def ok(self) -> bool:
        return not errors(list(self.findings))

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "ok": self.ok,
            "findings": [f.to_dict() for f in self.findings],
        }


def validate_message(message: MessageDef, brand: BrandKit, *, max_sms_segments: int = 2) -> Validation:
    """Render `message` for the sample person on every channel it is written for and check each rendition."""
    findings: list[Finding] = []
    code = "SAMPLE-CODE-1" if message.offer and message.offer.pool else None
    for channel in message.channels:
        variables = template_variables(SAMPLE_PERSON, brand, message, offer_code=code)
        rendition = render(message, brand, channel, variables, address=SAMPLE_ADDRESS)
        findings += check(rendition, brand, Limits(max_sms_segments=max_sms_segments))
        if message.without_personalisation == "skip":
            continue
        # the same person without personalisation consent: a personal value with no fallback skips them
        variables = template_variables(
            SAMPLE_PERSON, brand, message, offer_code=code, personalised=False, best_sellers=SAMPLE_BEST_SELLERS
        )
        impersonal = render(message, brand, channel, variables, address=SAMPLE_ADDRESS)
        findings += [
            Finding(
                channel,
                PERSONAL_RULE,
                f"without personalisation consent: {p.message}; such a person is skipped",
                severity="warning",
                field=p.field,
            )
            for p in impersonal.problems
            if p.rule == PERSONAL_RULE
        ]
    return Validation(message.name, message.source, tuple(findings))


# --- a person -------------------------------------------------------------------------------------------


def _profile(runtime: Runtime, person_id: str) -> dict[str, Any] | None:
    if not runtime.log.has_data("profiles"):
        raise InputError("no profiles yet: run `omniweave profiles build` first", field="person")
    table = runtime.warehouse().table("profiles")
    rows = table.filter(table.person_id == person_id).to_pyarrow().to_pylist()
    return rows[0] if rows else None


def postal_address(profile: Mapping[str, Any]) -> tuple[str, ...] | None:
    """A letter's address from the profile: a `postal_address` trait (lines or text), else the name with
    `address_line_1` (or `street`, or `address`), `address_line_2`, `city` and `postcode` traits; None without
    a street."""
    given = profile.get("postal_address")
    if isinstance(given, str) and given.strip():
        lines = [line.strip() for line in given.replace(",", "\n").splitlines() if line.strip()]
        return tuple(lines) if len(lines) >= 2 else None
    if isinstance(given, list | tuple) and len(given) >= 2:
        return tuple(str(line).strip() for line in given if str(line).strip())
    street = profile.get("address_line_1") or profile.get("street") or profile.get("address")
    if not street:
        return None
    name = " ".join(str(profile.get(k) or "").strip() for k in ("first_name", "last_name")).strip()
    parts = [name, street, profile.get("address_line_2"), profile.get("city"), profile.get("postcode")]
    return tuple(str(p).strip() for p in parts if p and str(p).strip())


def _push_endpoint(runtime: Runtime, profile: Mapping[str, Any]) -> str | None:
    users = [str(u) for u in (profile.get("user_ids") or [])]
    table = push_subscriptions
    where = table.c.person_id == str(profile.get("person_id"))
    if users:
        where = sa.or_(where, table.c.user_id.in_(users))
    with runtime.store.engine.connect() as conn:
        found = conn.execute(sa.select(table.c.endpoint).where(where).order_by(table.c.created_at.desc())).first()
    return str(found[0]) if found else None


def _phone(runtime: Runtime, raw: Any) -> str | None:
    """The profile's phone number in E.164 (as the identity graph writes it, in the settings' default
    region), None when there is none or it is not a phone number."""
    from omniweave.identity.graph import IdentifierError, normalize

    if raw is None or not str(raw).strip():
        return None
    try:
        return normalize("phone", raw, runtime.settings.default_region)
    except IdentifierError:
        return None


ADDRESS_TRAITS = ("postal_address", "address", "address_line_1", "street", "address_line_2", "city", "postcode")
"""Identify traits that state a postal address (`address` may be Segment's object: street, city, postalCode)."""


def _address_traits(traits: Mapping[str, Any]) -> dict[str, Any]:
    """The address fields of one identify call's traits, Segment's `address` object spread into them."""
    out = {k: traits[k] for k in ADDRESS_TRAITS if traits.get(k) not in (None, "", [], {})}
    given = out.get("address")
    if isinstance(given, Mapping):
        del out["address"]
        street = given.get("street") or given.get("line1") or given.get("address_line_1")
        extra = {
            "address_line_1": street,
            "address_line_2": given.get("line2") or given.get("address_line_2"),
            "city": given.get("city"),
            "postcode": given.get("postalCode") or given.get("postal_code") or given.get("postcode"),
        }
        out.update({k: v for k, v in extra.items() if v})
    return out


def with_postal_addresses(runtime: Runtime, profiles: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The profile rows, each without a postal address in its columns completed from the person's identify
    traits (the latest call stating each field wins), so a letter can go where a form or CRM import said."""
    missing = [p["person_id"] for p in profiles if postal_address(p) is None]
    if not missing or not (runtime.log.has_data("events") and runtime.log.has_data("identities")):
        return profiles
    import ibis
    import orjson

    from omniweave.identity.persons import with_person

    warehouse = runtime.warehouse()
    events = warehouse.table("events")
    stated = events.filter(
        (events.type == "identify")
        & events.traits.notnull()
        & (events.traits.contains('"address') | events.traits.contains('"street') | events.traits.contains('"postal'))
    ).select("user_id", "anonymous_id", "timestamp", "traits")
    owned = with_person(stated, warehouse.table("identities"))
    wanted = ibis.memtable({"_wanted": [str(p) for p in missing]})
    owned = owned.join(wanted, owned.person_id == wanted._wanted).order_by(["timestamp"])
    found: dict[str, dict[str, Any]] = {}
    for row in owned.select("person_id", "traits").to_pyarrow().to_pylist():
        try:
            traits = orjson.loads(row["traits"])
        except orjson.JSONDecodeError:
            continue
        if isinstance(traits, dict):
            found.setdefault(row["person_id"], {}).update(_address_traits(traits))
    return [{**p, **found[p["person_id"]]} if p["person_id"] in found else p for p in profiles]


def address_of(runtime: Runtime, channel: str, profile: Mapping[str, Any]) -> str | tuple[str, ...] | None:
    """Where `channel` reaches the person: e-mail, phone, push endpoint, postal address (None: nowhere)."""
    if channel == "email":
        return profile.get("primary_email") or None
    if channel in ("sms", "whatsapp"):
        return _phone(runtime, profile.get("primary_phone"))
    if channel == "push":
        return _push_endpoint(runtime, profile)
    return postal_address(profile)


def _window_open(runtime: Runtime, phone: str, now: float) -> bool:
    with runtime.store.engine.connect() as conn:
        last = conn.execute(
            sa.select(conversations.c.last_inbound_at).where(
                conversations.c.channel == "whatsapp", conversations.c.address == address_key("whatsapp", phone)
            )
        ).scalar()
    return last is not None and now - float(last) <= WHATSAPP_WINDOW_SECONDS


def _pool_problem(runtime: Runtime, message: MessageDef, channel: str) -> tuple[Finding | None, str | None, bool]:
    """(a finding when the offer's pool does not exist, the code to show before one is issued, whether each
    send gets its own code: a unique pool's placeholder, a static pool's code)."""
    if not message.offer or not message.offer.pool:
        return None, None, False
    from omniweave.activate.service.coupons import get_pool

    try:
        pool = get_pool(runtime, message.offer.pool)
    except InputError:
        finding = Finding(
            channel,
            "offer-pool-missing",
            f"the offer's coupon pool {message.offer.pool!r} does not exist; create it with "
            f"`omniweave coupons pool create {message.offer.pool}`",
            field="offer.pool",
        )
        return finding, "XXXX-XXXX-XX", False
    if pool.kind == "static" and pool.static_code:
        return None, pool.static_code, False
    return None, (pool.prefix or "") + "XXXX-XXXX-XX", True


def _qr_url(runtime: Runtime, message: MessageDef, rendition_cta: str, person_id: str, key: str | None) -> str | None:
    """The letter's QR link: a signed short link to the call to action, tied to the recipient."""
    if not rendition_cta.startswith(("https://", "http://")):
        return None
    from omniweave.activate.service.qr import qr_link

    return qr_link(runtime, rendition_cta, message.campaign, "letter", person_id=person_id, send_key=key).url


def _render_for(
    runtime: Runtime,
    message: MessageDef,
    brand: BrandKit,
    channel: str,
    profile: Mapping[str, Any],
    address: str | tuple[str, ...] | None,
    *,
    code: str | None,
    key: str | None,
    strict: bool = False,
    personalised: bool = True,
    best_sellers: Sequence[str] = (),
) -> Rendition:
    """`message` for one person on `channel` (a letter with its QR link); without `personalised`, their
    personal values are withheld and fallbacks (`best_sellers` for products) stand in."""
    variables = template_variables(
        profile, brand, message, offer_code=code, personalised=personalised, best_sellers=best_sellers
    )
    lines = address if isinstance(address, tuple) else ()
    qr = None
    if channel == "print":
        link = render(message, brand, "print", variables, address=lines).content.get("qr_url", "")
        qr = _qr_url(runtime, message, str(link), str(profile.get("person_id")), key)
    return render(message, brand, channel, variables, address=lines, qr_url=qr, strict=strict)


# --- preview --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PreviewRequest:
    """Which message, for whom (a person id or an identifier such as email:ann@example.com), on which channel."""

    message: str
    person: str
    channel: str
    max_sms_segments: int = 2
    not_personalised: bool = False  # as if the person had said no to personalisation (their values withheld)


@dataclass(frozen=True)
class Preview:
    """What one person gets on one channel, and what the checker says about it."""

    message: str
    person_id: str
    found_by: str
    channel: str
    to: str | None
    rendition: Rendition
    findings: tuple[Finding, ...]
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {
            "message": self.message,
            "person_id": self.person_id,
            "found_by": self.found_by,
            "channel": self.channel,
            "to": self.to,
            "rendition": self.rendition.to_dict(),
            "findings": [f.to_dict() for f in self.findings],
            "notes": list(self.notes),
        }


def _shown_address(address: str | tuple[str, ...] | None) -> str | None:
    if isinstance(address, tuple):
        return ", ".join(address)
    return address


def preview(runtime: Runtime, request: PreviewRequest, *, now: float | None = None) -> Preview:
    """Exactly what `request.person` gets from `request.message` on `request.channel`, with the findings.

    A coupon code is issued only when the message is sent: the preview shows a placeholder in its place."""
    from omniweave.profiles.service.lookup import find_person

    now = time.time() if now is None else now
    channel = channel_name(request.channel)
    message = get_message(runtime.settings, request.message)
    brand = load_brand(runtime.settings)
    found = find_person(runtime, request.person)
    if found is None:
        raise InputError(f"no person matches {request.person!r}", field="person")
    person_id, found_by = found
    profile = _profile(runtime, person_id)
    notes: list[str] = []
    if profile is None:
        notes.append("this person has no profile row yet (run `omniweave profiles build`): rendered without traits")
        profile = {"person_id": person_id}
    if channel == "print":
        profile = with_postal_addresses(runtime, [dict(profile)])[0]
    address = address_of(runtime, channel, profile)
    pool_finding, code, unique = _pool_problem(runtime, message, channel)
    if unique:
        notes.append(f"the coupon code is issued at send; {code!r} stands in for it here")
    ((personal, stated),) = _personalisation(runtime, [profile])
    if request.not_personalised and personal:
        personal, stated = False, False
        notes.append("shown as if the person had said no to personalisation (as asked)")
    best = _best_sellers_for(runtime, message, [personal])
    rendition = _render_for(
        runtime,
        message,
        brand,
        channel,
        profile,
        address,
        code=code,
        key=None,
        personalised=personal,
        best_sellers=best,
    )
    if not personal:
        notes.append(
            f"not personalised: no personalisation consent (consent_purpose_personalisation: "
            f"{'never stated' if stated is None else 'no' if stated is False else 'yes'}); "
            "personal values are withheld and the fallbacks shown"
        )
        reason = skip_reason(message.name, _without(runtime, message), personal, rendition.problems, stated)
        if reason:
            notes.append(f"a send would skip them: {reason}")
    window = _window_open(runtime, str(address), now) if channel == "whatsapp" and address else None
    findings = check(rendition, brand, Limits(request.max_sms_segments, window, runtime.settings.channels.public_url))
    if pool_finding:
        findings.insert(0, pool_finding)
    if channel not in message.channels:
        notes.append(f"{message.name} is not written for {channel} (channels: {', '.join(message.channels)})")
    if address is None:
        notes.append(f"the person has no {channel} address: a send would skip them")
    problem = consent_problem(channel, message.message_class, profile)
    if address is None and problem:
        notes.append(f"a send would skip them: {problem}")
    if address is not None:  # the policy engine's answer now (consent, suppression, caps, quiet hours, …)
        intent = SendIntent(
            person_id,
            channel,
            message.message_class,
            "preview",
            intended_at=now,
            free_form=channel == "whatsapp" and "template" not in rendition.content,
        )
        verdict = _foresee(runtime, intent, profile, _shown_address(address) or "", now)
        if verdict.outcome != "send":
            notes.append(f"a send now would skip them: {_skip_reason(verdict)}")
    return Preview(
        message.name, person_id, found_by, channel, _shown_address(address), rendition, tuple(findings), tuple(notes)
    )


# --- send -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SendRequest:
    """Send `message` to the members of `segment` on `channel` (`dry_run`: decide and render, send nothing)."""

    message: str
    segment: str
    channel: str
    dry_run: bool = False
    max_sms_segments: int = 2


@dataclass(frozen=True)
class OutcomeCount:
    """How many members ended one way, for one reason."""

    outcome: str  # sent outcomes: delivered, retrying, dead, suppressed, ambiguous; would_send; already_sent; skipped
    reason: str
    count: int

    def to_dict(self) -> dict[str, Any]:
        return {"outcome": self.outcome, "reason": self.reason, "count": self.count}


@dataclass(frozen=True)
class SendReport:
    """What a send did to each member of the segment, counted per outcome and reason."""

    message: str
    segment: str
    channel: str
    dry_run: bool
    members: int
    outcomes: tuple[OutcomeCount, ...]

    def counts(self) -> dict[str, int]:
        """Members per outcome."""
        out: Counter[str] = Counter()
        for row in self.outcomes:
            out[row.outcome] += row.count
        return dict(out)

    def to_dict(self) -> dict[str, Any]:
        return {
            "message": self.message,
            "segment": self.segment,
            "channel": self.channel,
            "dry_run": self.dry_run,
            "members": self.members,
            "counts": self.counts(),
            "outcomes": [row.to_dict() for row in self.outcomes],
        }


def send_key(message: str, segment: str, person_id: str, channel: str) -> str:
    """The ledger key of one message to one member of one segment on one channel (sent once, ever)."""
    return f"msg:{message}:{segment}:{person_id}:{channel}"


def segment_profiles(runtime: Runtime, segment: str) -> tuple[int, list[dict[str, Any]]]:
    """(members of `segment` as last evaluated, the profile rows of those who have one, by person id)."""
    from omniweave.segments.service.evaluate import load_segments

    known = load_segments(runtime.settings)
    if segment not in known:
        raise InputError(f"no segment {segment!r}; known: {', '.join(sorted(known))}", field="segment")
    if not runtime.log.has_data("segment_members"):
        raise InputError("no segment members yet: run `omniweave segments evaluate` first", field="segment")
    if not runtime.log.has_data("profiles"):
        raise InputError("no profiles yet: run `omniweave profiles build` first", field="segment")
    warehouse = runtime.warehouse()
    members = warehouse.table("segment_members")
    chosen = members.filter(members.segment_id == segment).select("person_id").distinct()
    total = int(chosen.count().to_pyarrow().as_py())
    profiles = warehouse.table("profiles")
    rows = profiles.join(chosen, "person_id").order_by("person_id").to_pyarrow().to_pylist()
    return total, rows


def _open_dispatcher(runtime: Runtime, channel: str, channels: Mapping[str, Channel] | None, fake: bool) -> Any:
    from omniweave.channels.service import dispatcher_for, open_channels

    opened = dict(channels) if channels is not None else open_channels(runtime, fake=fake)
    if channel not in opened:
        raise InputError(
            f"the {channel} channel is not configured: set enabled = true under [channels.{channel}] in omniweave.toml "
            f"(configured: {', '.join(sorted(opened)) or 'none'}), or use the shipped fakes",
            field="channel",
        )
    return dispatcher_for(runtime, opened)


def _issue(runtime: Runtime, message: MessageDef, person_id: str, key: str, channel: str) -> str:
    from omniweave.activate.service.coupons import issue

    assert message.offer is not None and message.offer.pool is not None
    coupon = issue(
        runtime,
        message.offer.pool,
        person_id=person_id,
        send_key=key,
        channel=channel,
        campaign=message.campaign,
        message_name=message.name,
    )
    return coupon.display


def send(
    runtime: Runtime,
    request: SendRequest,
    *,
    channels: Mapping[str, Channel] | None = None,
    fake: bool = False,
    progress: Callable[[int, int], None] | None = None,
    now: float | None = None,
) -> SendReport:
    """Send a message to a segment on one channel through consent, suppression and the checker.

    `channels`: the adapters to send through (default: `channels.service.open_channels`, the shipped fakes
    with `fake`); `progress(done, total)` is called after each member. Each member ends as one outcome:
    `skipped` (no address, a policy verdict — no consent, suppressed, capped, quiet hours, expired — or a
    checker error: the reason says which),
    `already_sent` (the key is in the ledger: a second run sends nothing new), `would_send` (dry run), or
    the dispatcher's status (`delivered`, `retrying`, `dead`, `suppressed`, `ambiguous`)."""
    now = time.time() if now is None else now
    channel = channel_name(request.channel)
    message = get_message(runtime.settings, request.message)
    if channel not in message.channels:
        raise InputError(
            f"message {message.name!r} is not written for {channel}; its channels: {', '.join(message.channels)}",
            field="channel",
        )
    brand = load_brand(runtime.settings)
    total, rows = segment_profiles(runtime, request.segment)
    if channel == "print":
        rows = with_postal_addresses(runtime, rows)
    pool_finding, placeholder, unique = _pool_problem(runtime, message, channel)
    if pool_finding is not None:
        raise InputError(pool_finding.message, field="offer.pool")
    dispatcher = None if request.dry_run else _open_dispatcher(runtime, channel, channels, fake)
    ledger = Ledger(runtime.store.engine)
    tally: Counter[tuple[str, str]] = Counter()
    if total > len(rows):
        tally[("skipped", "no profile row (run `omniweave profiles build`)")] += total - len(rows)
    flags = _personalisation(runtime, rows)  # one query for everyone: the profiles and the consent history
    best = _best_sellers_for(runtime, message, [personal for personal, _ in flags])
    for done, (profile, (personal, stated)) in enumerate(zip(rows, flags, strict=True), 1):
        outcome = _one(
            runtime,
            request,
            message,
            brand,
            channel,
            profile,
            (placeholder, unique),
            ledger,
            dispatcher,
            now,
            (personal, stated, best),
        )
        tally[outcome] += 1
        if progress is not None:
            progress(done, len(rows))
    outcomes = tuple(OutcomeCount(o, r, n) for (o, r), n in sorted(tally.items()))
    return SendReport(message.name, request.segment, channel, request.dry_run, total, outcomes)


def _one(
    runtime: Runtime,
    request: SendRequest,
    message: MessageDef,
    brand: BrandKit,
    channel: str,
    profile: Mapping[str, Any],
    code: tuple[str | None, bool],
    ledger: Ledger,
    dispatcher: Any,
    now: float,
    personal: tuple[bool, bool | None, Sequence[str]] = (True, None, ()),
) -> tuple[str, str]:
    """The outcome and reason of one member (`personal`: whether they may get personal content, their
    personalisation consent as stated, the best sellers)."""
    person_id = str(profile["person_id"])
    key = send_key(message.name, request.segment, person_id, channel)
    found = ledger.get(key)
    if found is not None:
        return "already_sent", f"in the ledger as {found.status}"
    address = address_of(runtime, channel, profile)
    if address is None:
        if channel in ("sms", "whatsapp") and profile.get("primary_phone"):
            return "skipped", f"no valid {channel} number (not a phone number in {runtime.settings.default_region})"
        return "skipped", f"no {channel} address"
    to = _shown_address(address) or ""
    placeholder, unique = code
    personalised, stated, best = personal
    rendition = _render_for(
        runtime,
        message,
        brand,
        channel,
        profile,
        address,
        code=placeholder,
        key=key,
        personalised=personalised,
        best_sellers=best,
    )
    window = _window_open(runtime, to, now) if channel == "whatsapp" else None
    limits = Limits(request.max_sms_segments, window, runtime.settings.channels.public_url)
    blocking = errors(check(rendition, brand, limits))
    intent = SendIntent(
        person_id,
        channel,
        message.message_class,
        key,
        intended_at=now,
        free_form=channel == "whatsapp" and "template" not in rendition.content,
    )
    foreseen = _foresee(runtime, intent, profile, to, now)  # the policy's answer first, read without the lock
    if foreseen.outcome != "send":
        if not request.dry_run:
            _record(runtime, intent, foreseen, now)
        return "skipped", _skip_reason(foreseen)
    unpersonal = skip_reason(message.name, _without(runtime, message), personalised, rendition.problems, stated)
    if unpersonal is not None:  # recorded like the policy's own verdicts
        if not request.dry_run:
            _record(runtime, intent, Verdict("drop", unpersonal), now)
        return "skipped", unpersonal
    if blocking:
        return "skipped", "blocked by the checker: " + ", ".join(sorted({f.rule for f in blocking}))
    if request.dry_run:
        return "would_send", ""
    if unique:  # the person's own code, issued for this send (the same one again if the send is retried)
        issued = _issue(runtime, message, person_id, key, channel)
        rendition = _render_for(
            runtime,
            message,
            brand,
            channel,
            profile,
            address,
            code=issued,
            key=key,
            strict=True,
            personalised=personalised,
            best_sellers=best,
        )
    outgoing = Message(
        channel=channel,
        to=to,
        content=rendition.content,
        person_id=person_id,
        campaign=message.campaign,
        message_name=message.name,
        message_class=message.message_class,
    )
    verdict, inserted = _check_and_enqueue(runtime, intent, profile, outgoing, now)
    if verdict.outcome != "send":
        return "skipped", _skip_reason(verdict)
    if not inserted:
        found = ledger.get(key)
        return "already_sent", f"in the ledger as {found.status if found else 'unknown'}"
    result = dispatcher.attempt(key)
    return result.status, result.reason or ""


def _personalisation(runtime: Runtime, profiles: Sequence[Mapping[str, Any]]) -> list[tuple[bool, bool | None]]:
    """Per profile: (whether they may get personal content, their personalisation consent as stated)."""
    from omniweave.activate.service.personal import personalisation_flags

    with runtime.store.engine.connect() as conn:
        return personalisation_flags(conn, runtime.settings, profiles)


def _best_sellers_for(runtime: Runtime, message: MessageDef, personal: Sequence[bool]) -> tuple[str, ...]:
    """The best sellers when someone is rendered without personalisation or the message names them; else ()."""
    from omniweave.activate.service.personal import best_sellers

    if all(personal) and "best_sellers" not in repr(message):
        return ()
    return best_sellers(runtime)


def _without(runtime: Runtime, message: MessageDef) -> str:
    from omniweave.activate.service.personal import without_personalisation

    return without_personalisation(runtime.settings, message)


def _skip_reason(verdict: Verdict) -> str:
    """A policy verdict as `messages send` reports it (a one-off command does not wait for a reschedule)."""
    return verdict.reason if verdict.outcome == "drop" else f"not now: {verdict.reason}"


def _foresee(runtime: Runtime, intent: SendIntent, profile: Mapping[str, Any], to: str, now: float) -> Verdict:
    """The policy's verdict on facts read without the lock and without recording it (dry runs, and before
    a coupon is issued: no code goes to someone the policy would not send to)."""
    from omniweave.activate.service.policy import gather

    with runtime.store.engine.connect() as conn:
        facts = gather(conn, runtime.settings.policy, intent, profile, to, now)
    return decide(intent, facts, runtime.settings.policy, now)


def _record(runtime: Runtime, intent: SendIntent, verdict: Verdict, now: float) -> None:
    from omniweave.activate.service.policy import record

    with runtime.store.engine.begin() as conn:
        record(conn, intent, verdict, now)


def _check_and_enqueue(
    runtime: Runtime, intent: SendIntent, profile: Mapping[str, Any], message: Message, now: float
) -> tuple[Verdict, bool]:
    """The policy check under the person's lock and, on `send`, the pending ledger row, in one transaction
    (the dispatcher attempts the row afterwards). (verdict, whether the row is new)."""
    from omniweave.activate.service.policy import check
    from omniweave.storage.ops.tables import sends

    with runtime.store.engine.begin() as conn:
        verdict = check(conn, runtime, intent, profile, message.to, now=now)
        if verdict.outcome != "send":
            return verdict, False
        if conn.execute(sa.select(sends.c.key).where(sends.c.key == intent.key)).first() is not None:
            return verdict, False
        conn.execute(
            sends.insert().values(
                key=intent.key,
                channel=message.channel,
                to_address=address_key(message.channel, message.to),
                person_id=message.person_id,
                campaign=message.campaign,
                message_name=message.message_name,
                message_class=message.message_class,
                content=orjson.dumps(message.content),
                status="pending",
                attempts=0,
                created_at=now,
                updated_at=now,
            )
        )
    return verdict, True


__all__ = [
    "MessageError",
    "Preview",
    "PreviewRequest",
    "SendReport",
    "SendRequest",
    "Validation",
    "list_messages",
    "load_brand",
    "load_messages",
    "preview",
    "send",
    "validate_message",
]
