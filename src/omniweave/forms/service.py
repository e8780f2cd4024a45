"""Sign-up forms on a Runtime: the definition files, a submit, its double opt-in, expiry, QR codes.

- `load_forms(settings)` / `load_form(settings, name)`: `forms/*.yaml` beside `segments/` (the home by
  default); `check_files(settings)` lists every problem of every file; `save_form` / `delete_form` write
  and remove one (the API's CRUD), a definition with problems is never written.
- `render_stamp(runtime, form)`: the signed time a page was rendered (forms/abuse.py).
- `submit(runtime, SubmitRequest)`: the honeypot, the render stamp, every field checked; an accepted
  sign-up goes into the inbox as `identify` (the traits given, on the page's anonymous id) and
  `track("Form Submitted", {form, placement, …})` through `collect.emit` (the collector's validation), and
  each confirmation mode of the purposes ticked gets a `form_signups` row: `email` sends a confirmation
  link through the e-mail channel, `sms` a text asking for the keyword YES, `none` is confirmed at once.
  The answer never says whether the address was known (no account enumeration).
- `confirm(runtime, token, ip)` / `confirm_by_keyword(runtime, phone, text, ip)`: the consent is recorded
  only now, in the consent history (privacy), with its evidence in `form_signups` (the words, both times
  and IPs, how it was confirmed), and a `Sign-up Confirmed` event with the opt-in traits and the
  placement goes into the inbox (journeys start on it; the e-mail sign-up KPI counts it by placement).
- `expire(runtime)`: unconfirmed sign-ups past their time become `expired` and keep no personal data;
  `confirm` also refuses (and expires) a late link on read.
- `form_url`, `form_qr`: the link and the QR code (segno) of a form at a placement (poster, receipt, …).
- `sign_up(runtime, form, answers, …)`: the whole path without a browser (the demo's customers).
"""

from __future__ import annotations

import functools
import html
import logging
import os
import tempfile
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson
import sqlalchemy as sa
import yaml
from sqlalchemy.dialects import postgresql, sqlite

from omniweave.activate.codes import image_format, qr_image
from omniweave.activate.content.model import BrandKit, parse_brand
from omniweave.activate.service import coupons
from omniweave.activate.service.messages import load_brand, project_folder
from omniweave.channels import links
from omniweave.channels.dispatch import SendResult
from omniweave.channels.port import Channel, Message
from omniweave.channels.service import dispatcher_for, email_channel
from omniweave.channels.sms.service import messaging_channel
from omniweave.collect.emit import emit
from omniweave.errors import ConfigError, InputError
from omniweave.forms.abuse import HONEYPOT, stamp_problem
from omniweave.forms.definition import FormDef, FormInvalid, Purpose, check_placement, is_in_store, parse_form
from omniweave.forms.submission import FieldError, check_submission
from omniweave.forms.wording import wording
from omniweave.privacy.consent import CHANNEL_PURPOSES, CHANNEL_TRAITS
from omniweave.runtime import Runtime
from omniweave.settings import Settings
from omniweave.storage.ops.tables.forms import form_signups
from omniweave.storage.ops.tables.privacy import IngestGuard, consent_history, identifier_digest

log = logging.getLogger("omniweave.forms")

SOURCE = "forms"
"""The inbox source of the events forms write."""
FORM_SUBMITTED = "Form Submitted"
SIGNUP_CONFIRMED = "Sign-up Confirmed"
STAMP_PURPOSE = "fs"
CONFIRM_PURPOSE = "fc"
CONFIRM_KEYWORDS = frozenset({"yes", "y", "ja", "j", "ok", "confirm"})
"""Replies to the confirmation text that confirm an SMS sign-up (any case, surrounding spaces ignored)."""


# --- the files -------------------------------------------------------------------------------------------


def forms_folder(settings: Settings) -> Path:
    """The project's form files: `forms/` beside `segments/` (the home, or the config file's folder)."""
    return project_folder(settings) / "forms"


@functools.lru_cache(maxsize=256)
def _parsed(text: str, source: str, purposes: tuple[str, ...]) -> FormDef:
    """A form from its YAML text, parsed once per text (a page view or a submit re-reads the file, cheaply)."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise FormInvalid(source, [("", f"cannot parse the YAML: {exc}")]) from None
    return parse_form(document, source, purposes=purposes)


def _files(settings: Settings) -> list[Path]:
    folder = forms_folder(settings)
    return sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]) if folder.is_dir() else []


def library_forms() -> dict[str, str]:
    """The shipped example forms (forms/library/*.yaml) by name: their YAML text."""
    folder = resources.files("omniweave.forms") / "library"
    return {
        entry.name.rsplit(".", 1)[0]: entry.read_text(encoding="utf-8")
        for entry in folder.iterdir()
        if entry.name.endswith(".yaml")
    }


def load_form(settings: Settings, name: str) -> FormDef:
    """The form `name` of the project, else of the shipped library; InputError when there is none,
    FormInvalid when it has problems."""
    for path in _files(settings):
        if path.stem == name:
            form = _parsed(path.read_text(encoding="utf-8"), str(path), tuple(settings.privacy.purposes))
            if form.name != name:
                raise FormInvalid(str(path), [("name", f"the file is {path.name} but the form is named {form.name!r}")])
            return form
    shipped = library_forms()
    if name in shipped:
        return _parsed(shipped[name], f"omniweave (library) {name}", tuple(settings.privacy.purposes))
    known = ", ".join(sorted({p.stem for p in _files(settings)} | set(shipped)))
    raise InputError(
        f"no form named {name!r} in {forms_folder(settings)} or the library (forms: {known})", field="form"
    )


def load_forms(settings: Settings) -> dict[str, FormDef]:
    """Every valid form by name: the library's and the project's (the project wins on the same name; files
    with problems are left out: see `check_files`)."""
    out = {}
    for name in sorted({*library_forms(), *(p.stem for p in _files(settings))}):
        try:
            out[name] = load_form(settings, name)
        except FormInvalid:
            continue
    return out


@dataclass(frozen=True)
class FileCheck:
    """One form file checked: its problems (path, message), none when valid."""

    file: str
    name: str
    problems: tuple[tuple[str, str], ...]

    @property
    def valid(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "name": self.name,
            "valid": self.valid,
            "problems": [{"path": p, "message": m} for p, m in self.problems],
        }


def _setup_problems(runtime: Runtime, form: FormDef) -> list[tuple[str, str]]:
    """What the project lacks for this form to work: its coupon pool, its brand file, a channel to confirm on."""
    problems = []
    if form.coupon_pool:
        try:
            coupons.get_pool(runtime, form.coupon_pool)
        except InputError:
            problems.append(("coupon_pool", f"no coupon pool {form.coupon_pool!r} (omniweave coupons pool create)"))
    if form.brand and not (project_folder(runtime.settings) / form.brand).is_file():
        problems.append(("brand", f"no brand kit file {form.brand!r} in {project_folder(runtime.settings)}"))
    channels = runtime.settings.channels
    for index, purpose in enumerate(form.purposes):
        if purpose.confirm == "email" and not channels.email.enabled:
            problems.append((f"purposes[{index}].confirm", "confirm: email needs [channels.email] enabled"))
        if purpose.confirm == "sms" and not channels.sms.enabled:
            problems.append((f"purposes[{index}].confirm", "confirm: sms needs [channels.sms] enabled"))
    return problems


def check_files(runtime: Runtime) -> list[FileCheck]:
    """Every form file with every problem: of the definition, then of the project it needs."""
    out = []
    for path in _files(runtime.settings):
        try:
            form = load_form(runtime.settings, path.stem)
        except FormInvalid as exc:
            out.append(FileCheck(str(path), path.stem, tuple(exc.problems)))
            continue
        out.append(FileCheck(str(path), form.name, tuple(_setup_problems(runtime, form))))
    return out


def save_form(runtime: Runtime, document: Any, *, name: str | None = None) -> FormDef:
    """Check `document` and write it as `forms/NAME.yaml` (replacing it); FormInvalid with every problem,
    nothing written, when it has any (or when its name is not `name`)."""
    form = parse_form(document, name or "<body>", purposes=runtime.settings.privacy.purposes)
    if name is not None and form.name != name:
        raise FormInvalid(name, [("name", f"the body names form {form.name!r}, the URL {name!r}")])
    folder = forms_folder(runtime.settings)
    folder.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(form.to_json(), sort_keys=False, allow_unicode=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{form.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    for old in (folder / f"{form.name}.yml",):
        old.unlink(missing_ok=True)
    os.replace(tmp, folder / f"{form.name}.yaml")
    return form


def delete_form(settings: Settings, name: str) -> bool:
    """Remove the form's file; False when there was none. Its sign-ups and their evidence stay."""
    removed = False
    for path in _files(settings):
        if path.stem == name:
            path.unlink()
            removed = True
    return removed


def brand_of(runtime: Runtime, form: FormDef) -> BrandKit:
    """The form's brand kit: its `brand` file, else the project's (activate/service/messages.py); read again
    only when a brand file changed."""
    folder = project_folder(runtime.settings)
    names = (
        (form.brand,) if form.brand and (folder / form.brand).is_file() else ("brand.yaml", "brand.yml", "brand.toml")
    )
    stamps = tuple((n, p.stat().st_mtime_ns, p.stat().st_size) for n in names if (p := folder / n).is_file())
    return _brand(runtime.settings, str(folder), form.brand if form.brand in names else None, stamps)


@functools.lru_cache(maxsize=64)
def _brand(settings: Settings, folder: str, own: str | None, stamps: tuple[tuple[str, int, int], ...]) -> BrandKit:
    if own is not None:
        path = Path(folder) / own
        return parse_brand(yaml.safe_load(path.read_text(encoding="utf-8")) or {}, source=str(path))
    return load_brand(settings)


# --- links and codes ----------------------------------------------------------------------------------


def form_url(runtime: Runtime, name: str, placement: str = "web", **extra: str) -> str:
    """The form's public address at `placement` (`<public_url>/f/NAME?placement=…`)."""
    check_placement(placement)
    query = {"placement": placement, **extra} if placement != "web" or extra else {}
    base = f"{runtime.settings.channels.public_url.rstrip('/')}/f/{name}"
    return f"{base}?{urlencode(query)}" if query else base


@dataclass(frozen=True)
class FormQr:
    """A QR code that opens a form at a placement."""

    form: str
    placement: str
    url: str
    format: str
    image: bytes

    def to_dict(self) -> dict[str, Any]:
        return {"form": self.form, "placement": self.placement, "url": self.url, "format": self.format}


def form_qr(runtime: Runtime, name: str, placement: str, kind: str = "png") -> FormQr:
    """The QR code of form `name` for `placement` (poster, receipt, shelf, tv, …) as PNG or SVG."""
    load_form(runtime.settings, name)
    kind = image_format(kind)
    url = form_url(runtime, name, placement)
    return FormQr(name, placement, url, kind, qr_image(url, kind, scale=10 if placement == "poster" else 6))


def render_stamp(runtime: Runtime, form: str, now: float | None = None) -> str:
    """The signed render time of a page of `form` (its hidden `started` field)."""
    return links.sign(runtime, STAMP_PURPOSE, {"f": form, "t": round(time.time() if now is None else now, 3)})


# --- a submit -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SubmitRequest:
    """One submit of a form: the answers as posted, where it was shown, who sent it (for the evidence)."""

    form: str
    answers: Mapping[str, Any]
    placement: str = "web"
    locale: str = "en"
    ip: str | None = None
    user_agent: str | None = None
    anonymous_id: str | None = None
    page_url: str | None = None
    check_stamp: bool = True


@dataclass(frozen=True)
class SubmitResult:
    """What became of a submit: `accepted`, `ignored` (the honeypot: answered as accepted), `invalid`
    (per-field errors), `too_fast` or `expired` (the render stamp); `ignored` also for an identifier the
    privacy blocklist refuses, as the collector does. Only `accepted` stored anything."""

    status: str
    form: str
    errors: tuple[FieldError, ...] = ()
    signups: tuple[str, ...] = ()
    anonymous_id: str | None = None
    pending: tuple[str, ...] = ()  # the confirmation modes waiting for the person: email, sms

    @property
    def looks_accepted(self) -> bool:
        """Whether the visitor is told it worked (the honeypot is told so too)."""
        return self.status in ("accepted", "ignored")

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "form": self.form, "errors": [e.to_dict() for e in self.errors]}


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _channel_of(placement: str) -> str:
    return "store" if is_in_store(placement) else "web"


def _anonymous(given: str | None) -> str:
    text = (given or "").strip().strip('"')
    if 0 < len(text) <= 200 and text.isprintable():
        return text
    return f"form-{uuid.uuid4().hex}"


def _context(request: SubmitRequest, placement: str) -> dict[str, Any]:
    context: dict[str, Any] = {"channel": "server", "locale": request.locale}
    if request.ip:
        context["ip"] = request.ip
    if request.user_agent:
        context["userAgent"] = request.user_agent[:300]
    if request.page_url:
        context["page"] = {"url": request.page_url[:1000]}
    context["library"] = {"name": "omniweave-forms", "version": "1"}
    context["campaign"] = {"medium": "form", "content": placement}
    return context


def _wording_of(form: FormDef, purpose: Purpose, locale: str) -> str:
    return form.text(purpose.wording, locale)


def submit(
    runtime: Runtime,
    request: SubmitRequest,
    *,
    channels: Mapping[str, Channel] | None = None,
    now: float | None = None,
) -> SubmitResult:
    """Take one submit (see the module docstring). `channels` replaces the configured e-mail and SMS
    channels (the demo passes the shipped fakes). Nothing is stored unless the result is `accepted`."""
    now = time.time() if now is None else now
    form = load_form(runtime.settings, request.form)
    placement = check_placement(request.placement)
    locale = request.locale if request.locale in form.locales else form.default_locale
    if str(request.answers.get(HONEYPOT) or "").strip():
        log.info("form %s: honeypot filled, submit ignored", form.name)
        return SubmitResult("ignored", form.name)
    if request.check_stamp:
        stamp = links.verify(runtime, STAMP_PURPOSE, str(request.answers.get("started") or ""))
        problem = stamp_problem(stamp, form.name, form.min_seconds, now)
        if problem is not None:
            return SubmitResult(problem, form.name, (FieldError("form", problem),))
    today = datetime.fromtimestamp(now, UTC).date()  # the day of the submit (a simulated one's too)
    checked = check_submission(form, request.answers, region=runtime.settings.default_region, today=today)
    if not checked.ok:
        return SubmitResult("invalid", form.name, checked.errors)
    chosen = [p for p in form.purposes if p.name in checked.purposes]
    modes = sorted({p.confirm for p in chosen})
    senders = _senders(runtime, modes, channels)  # a missing channel refuses before anything is written
    anonymous_id = _anonymous(request.anonymous_id)
    signup_ids = {mode: uuid.uuid4().hex for mode in modes}
    submitted = f"form-{uuid.uuid4().hex}"
    context = _context(request, placement)
    traits = dict(checked.traits)
    events = [
        {
            "type": "identify",
            "messageId": f"{submitted}-identify",
            "anonymousId": anonymous_id,
            "traits": traits,
            "context": context,
            "timestamp": _iso(now),
        },
        {
            "type": "track",
            "event": FORM_SUBMITTED,
            "messageId": submitted,
            "anonymousId": anonymous_id,
            "properties": {
                "form": form.name,
                "placement": placement,
                "channel": _channel_of(placement),
                "locale": locale,
                "fields": sorted(traits),
                "purposes_asked": [p.name for p in chosen],
                "confirmation": modes,
            },
            "context": context,
            "timestamp": _iso(now),
        },
    ]
    guard = IngestGuard(runtime.store.engine, runtime.settings.privacy)  # what the collector asks of each event
    refused = [r for r in (guard(e) for e in events) if r is not None]
    if refused:  # a person who asked not to be tracked: answered like anyone (no enumeration), nothing kept
        log.info("form %s: a submit refused by the privacy blocklist (%s)", form.name, refused[0][0])
        return SubmitResult("ignored", form.name)
    emit(runtime.store, SOURCE, events)
    rows = []
    for mode in modes:
        purposes = [
            {"name": p.name, "confirm": p.confirm, "wording": _wording_of(form, p, locale)}
            for p in chosen
            if p.confirm == mode
        ]
        rows.append(
            {
                "id": signup_ids[mode],
                "form": form.name,
                "placement": placement,
                "locale": locale,
                "status": "pending",
                "email": traits.get("email"),
                "phone": traits.get("phone"),
                "anonymous_id": anonymous_id,
                "purposes": orjson.dumps(purposes).decode(),
                "submitted_at": now,
                "submitted_ip": (request.ip or "")[:64] or None,
                "user_agent": (request.user_agent or "")[:300] or None,
                "expires_at": now + form.confirm_hours * 3600.0,
            }
        )
    if rows:
        with runtime.store.engine.begin() as conn:
            conn.execute(sa.insert(form_signups), rows)
    pending = []
    for mode in modes:
        if mode == "none":
            _confirm_row(runtime, signup_ids[mode], via="none", ip=request.ip, now=now, channels=channels)
        else:
            asked = [p for p in chosen if p.confirm == mode]
            _send_confirmation(runtime, form, signup_ids[mode], mode, asked, traits, locale, senders, now)
            pending.append(mode)
    return SubmitResult("accepted", form.name, (), tuple(signup_ids.values()), anonymous_id, tuple(pending))


# --- confirmation messages ----------------------------------------------------------------------------


def _senders(runtime: Runtime, modes: Iterable[str], given: Mapping[str, Channel] | None) -> dict[str, Channel]:
    """The channels the confirmations go on (`given`, else the configured ones); ConfigError when one is off."""
    out: dict[str, Channel] = {}
    for mode in modes:
        if mode == "none":
            continue
        if given is not None and mode in given:
            out[mode] = given[mode]
            continue
        if mode == "email":
            if not runtime.settings.channels.email.enabled:
                raise ConfigError("a sign-up needs an e-mail confirmation but [channels.email] is not enabled")
            channel = email_channel(runtime)
            channel.track = False  # the confirmation link is sent as it is: no click redirect, no open pixel
            out[mode] = channel
        elif mode == "sms":
            if not runtime.settings.channels.sms.enabled:
                raise ConfigError("a sign-up needs an SMS confirmation but [channels.sms] is not enabled")
            out[mode] = messaging_channel(runtime, "sms")
    return out


def confirm_token(runtime: Runtime, signup_id: str) -> str:
    """The signed token of a sign-up's confirmation link."""
    return links.sign(runtime, CONFIRM_PURPOSE, {"s": signup_id})


def confirm_url(runtime: Runtime, signup_id: str, locale: str | None = None) -> str:
    """The confirmation link of a sign-up; `locale`: the language its page speaks (the sign-up's)."""
    url = f"{runtime.settings.channels.public_url.rstrip('/')}/f/confirm/{confirm_token(runtime, signup_id)}"
    return f"{url}?{urlencode({'lang': locale})}" if locale else url


def _email_content(
    runtime: Runtime, form: FormDef, signup_id: str, asked: Iterable[Purpose], locale: str, expires_at: float
) -> dict[str, str]:
    """The confirmation mail: the words of the purposes the person ticked (`asked`, none other), the link."""
    words = wording(locale)
    brand = brand_of(runtime, form)
    url = confirm_url(runtime, signup_id, locale)
    agreed = [form.text(p.wording, locale) for p in asked]
    until = datetime.fromtimestamp(expires_at, UTC).strftime("%Y-%m-%d %H:%M UTC")
    colour = html.escape(brand.colours.get("primary", "#1F6F5C"))
    items = "".join(f"<li>{html.escape(text)}</li>" for text in agreed)
    body = html.escape(words.t("confirm_body", brand=brand.name))
    page = (
        f'<div style="font-family:sans-serif;max-width:560px;margin:auto;color:#222">'
        f"<p>{body}</p><ul>{items}</ul>"
        f'<p><a href="{html.escape(url)}" style="background:{colour};color:#fff;padding:12px 20px;'
        f'text-decoration:none;border-radius:4px;display:inline-block">{html.escape(words.t("confirm_button"))}</a></p>'
        f"<p>{html.escape(words.t('confirm_ignore', until=until))}</p>"
        f'<p style="font-size:12px;color:#666">{html.escape(brand.footer)}</p></div>'
    )
    text = "\n".join(
        [
            words.t("confirm_body", brand=brand.name),
            *(f"- {a}" for a in agreed),
            "",
            f"{words.t('confirm_button')}: {url}",
            "",
            words.t("confirm_ignore", until=until),
        ]
    )
    return {"subject": words.t("confirm_subject", brand=brand.name), "html": page, "text": text}


def _send_confirmation(
    runtime: Runtime,
    form: FormDef,
    signup_id: str,
    mode: str,
    asked: Iterable[Purpose],
    traits: Mapping[str, Any],
    locale: str,
    senders: Mapping[str, Channel],
    now: float,
) -> SendResult:
    expires_at = now + form.confirm_hours * 3600.0
    if mode == "email":
        message = Message(
            channel="email",
            to=str(traits["email"]),
            content=_email_content(runtime, form, signup_id, asked, locale, expires_at),
            campaign=f"form:{form.name}",
            message_name="form_confirmation",
            message_class="transactional",
        )
    else:
        body = wording(locale).t("confirm_sms", brand=brand_of(runtime, form).name)
        message = Message(
            channel="sms",
            to=str(traits["phone"]),
            content={"body": body},
            campaign=f"form:{form.name}",
            message_name="form_confirmation",
            message_class="transactional",
        )
    dispatcher = dispatcher_for(runtime, {mode: senders[mode]})
    result = dispatcher.send(message, f"form-confirm:{signup_id}")
    if result.status not in ("delivered", "retrying", "pending"):
        log.warning(
            "form %s: the %s confirmation of sign-up %s is %s: %s",
            form.name,
            mode,
            signup_id,
            result.status,
            result.reason,
        )
    return result


# --- confirming -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConfirmResult:
    """What following a confirmation did: `confirmed`, `already` (confirmed before), `expired`, `invalid`."""

    status: str
    form: str | None = None
    locale: str = "en"
    signup_id: str | None = None
    coupon: str | None = None
    purposes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "form": self.form,
            "signup_id": self.signup_id,
            "coupon": self.coupon,
            "purposes": list(self.purposes),
        }


def _expire_row(runtime: Runtime, signup_id: str) -> None:
    with runtime.store.engine.begin() as conn:
        conn.execute(
            sa.update(form_signups)
            .where(form_signups.c.id == signup_id, form_signups.c.status == "pending")
            .values(status="expired", email=None, phone=None, submitted_ip=None, user_agent=None, anonymous_id=None)
        )


def confirm(runtime: Runtime, token: str, *, ip: str | None = None, now: float | None = None) -> ConfirmResult:
    """Confirm the sign-up a link's `token` names (see the module docstring); following it twice is `already`."""
    payload = links.verify(runtime, CONFIRM_PURPOSE, token)
    if payload is None or not isinstance(payload.get("s"), str):
        return ConfirmResult("invalid")
    return _confirm_row(runtime, payload["s"], via="email", ip=ip, now=time.time() if now is None else now)


def confirm_by_keyword(
    runtime: Runtime, phone: str, text: str, *, ip: str | None = None, now: float | None = None
) -> ConfirmResult:
    """An SMS reply: the keyword (YES, JA, …) confirms the newest pending SMS sign-up of `phone`."""
    if text.strip().lower() not in CONFIRM_KEYWORDS:
        return ConfirmResult("invalid")
    with runtime.store.engine.connect() as conn:
        row = conn.execute(
            sa.select(form_signups.c.id)
            .where(form_signups.c.phone == phone.strip(), form_signups.c.status == "pending")
            .where(form_signups.c.purposes.like('%"confirm":"sms"%'))
            .order_by(form_signups.c.submitted_at.desc())
            .limit(1)
        ).first()
    if row is None:
        return ConfirmResult("invalid")
    return _confirm_row(runtime, str(row.id), via="sms", ip=ip, now=time.time() if now is None else now)


def _confirm_row(
    runtime: Runtime,
    signup_id: str,
    *,
    via: str,
    ip: str | None,
    now: float,
    channels: Mapping[str, Channel] | None = None,
) -> ConfirmResult:
    with runtime.store.engine.connect() as conn:
        row = conn.execute(sa.select(form_signups).where(form_signups.c.id == signup_id)).first()
    if row is None:
        return ConfirmResult("invalid")
    names = tuple(p["name"] for p in orjson.loads(row.purposes))
    if row.status == "confirmed":
        return ConfirmResult("already", row.form, row.locale, row.id, row.coupon, names)
    if row.status == "expired" or row.expires_at < now:
        _expire_row(runtime, row.id)
        return ConfirmResult("expired", row.form, row.locale, row.id)
    with runtime.store.engine.begin() as conn:
        changed = conn.execute(
            sa.update(form_signups)
            .where(form_signups.c.id == row.id, form_signups.c.status == "pending")
            .values(status="confirmed", confirmed_at=now, confirmed_ip=(ip or "")[:64] or None, confirmed_via=via)
        ).rowcount
    if not changed:  # a second click raced this one
        return ConfirmResult("already", row.form, row.locale, row.id, None, names)
    coupon = _issue_coupon(runtime, row)
    _record(runtime, row, names, now, coupon, via)
    return ConfirmResult("confirmed", row.form, row.locale, row.id, coupon, names)


def _issue_coupon(runtime: Runtime, row: Any) -> str | None:
    try:
        form = load_form(runtime.settings, row.form)
    except InputError:
        return None
    if not form.coupon_pool:
        return None
    try:
        issued = coupons.issue(
            runtime,
            form.coupon_pool,
            send_key=f"form:{row.id}",
            channel=_channel_of(row.placement),
            campaign=f"form:{form.name}",
            message_name="form_incentive",
        )
    except InputError as exc:  # the pool is gone or spent: the sign-up stands without its coupon
        log.warning("form %s: no coupon for sign-up %s: %s", form.name, row.id, exc)
        return None
    with runtime.store.engine.begin() as conn:
        conn.execute(sa.update(form_signups).where(form_signups.c.id == row.id).values(coupon=issued.code))
    return issued.code


def reference_of(signup_id: str) -> str:
    """The consent history's reference of a sign-up's statements (and its Sign-up Confirmed messageId)."""
    return f"form:{signup_id}"


def _record(runtime: Runtime, row: Any, names: tuple[str, ...], now: float, coupon: str | None, via: str) -> None:
    """The consent statements (privacy's history) and the Sign-up Confirmed event of a confirmed sign-up."""
    reference = reference_of(row.id)
    subjects: dict[str, tuple[str, str]] = {}
    if row.email:
        subjects["email"] = ("email", row.email)
    if row.phone:
        subjects["phone"] = ("phone", row.phone)
    statements = []
    traits: dict[str, Any] = {}
    preferences: dict[str, bool] = {}
    for name in names:
        if name in CHANNEL_PURPOSES:
            traits[CHANNEL_TRAITS[name]] = True
            kind_value = subjects.get("phone" if name in ("sms", "whatsapp") else "email") or next(
                iter(subjects.values())
            )
        else:
            preferences[name] = True
            kind_value = subjects.get("email") or next(iter(subjects.values()))
        statements.append(
            {
                "subject": identifier_digest(*kind_value),
                "kind": kind_value[0],
                "purpose": name,
                "granted": True,
                "source": "event",
                "reference": reference,
                "stated_at": now,
                "recorded_at": now,
            }
        )
    if runtime.store.dialect == "postgresql":
        insert: Any = postgresql.insert(consent_history).on_conflict_do_nothing(constraint="consent_history_statement")
    else:
        insert = sqlite.insert(consent_history).on_conflict_do_nothing()
    with runtime.store.engine.begin() as conn:
        conn.execute(insert, statements)
    for key, (_kind, value) in subjects.items():
        traits[key] = value
    properties: dict[str, Any] = {
        "form": row.form,
        "placement": row.placement,
        "channel": _channel_of(row.placement),
        "purposes": list(names),
        "confirmed_via": via,
        "signup_id": row.id,
        **{k: v for k, v in traits.items() if k.endswith("_opt_in")},
    }
    if coupon:
        properties["coupon"] = coupon
    event: dict[str, Any] = {
        "type": "track",
        "event": SIGNUP_CONFIRMED,
        "messageId": reference,
        "anonymousId": row.anonymous_id or f"form-{row.id}",
        "traits": traits,
        "properties": {k: v for k, v in properties.items() if v is not None},
        "context": {"channel": "server", "library": {"name": "omniweave-forms", "version": "1"}},
        "timestamp": _iso(now),
    }
    if preferences:
        event["context"]["consent"] = {"categoryPreferences": preferences}
    emit(runtime.store, SOURCE, [event])


# --- expiry and evidence -------------------------------------------------------------------------------


def expire(runtime: Runtime, *, now: float | None = None) -> int:
    """Expire every pending sign-up past its time (its personal data cleared); returns how many."""
    now = time.time() if now is None else now
    with runtime.store.engine.begin() as conn:
        result = conn.execute(
            sa.update(form_signups)
            .where(form_signups.c.status == "pending", form_signups.c.expires_at < now)
            .values(status="expired", email=None, phone=None, submitted_ip=None, user_agent=None, anonymous_id=None)
        )
    return int(result.rowcount or 0)


@dataclass(frozen=True)
class Evidence:
    """What a consent given through a form rests on."""

    reference: str
    form: str
    placement: str
    locale: str
    status: str
    purposes: tuple[dict[str, str], ...]
    submitted_at: float
    submitted_ip: str | None
    confirmed_at: float | None
    confirmed_ip: str | None
    confirmed_via: str | None
    coupon: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "form": self.form,
            "placement": self.placement,
            "locale": self.locale,
            "status": self.status,
            "purposes": [dict(p) for p in self.purposes],
            "submitted_at": self.submitted_at,
            "submitted_ip": self.submitted_ip,
            "confirmed_at": self.confirmed_at,
            "confirmed_ip": self.confirmed_ip,
            "confirmed_via": self.confirmed_via,
            "coupon": self.coupon,
        }


def evidence(runtime: Runtime, reference: str) -> Evidence:
    """The evidence behind a consent statement whose reference is `form:<sign-up id>`."""
    if not reference.startswith("form:"):
        raise InputError(f"expected a form reference such as form:<id>, got {reference!r}", field="reference")
    with runtime.store.engine.connect() as conn:
        row = conn.execute(sa.select(form_signups).where(form_signups.c.id == reference[5:])).first()
    if row is None:
        raise InputError(f"no sign-up {reference!r}", field="reference")
    return Evidence(
        reference,
        row.form,
        row.placement,
        row.locale,
        row.status,
        tuple(orjson.loads(row.purposes)),
        row.submitted_at,
        row.submitted_ip,
        row.confirmed_at,
        row.confirmed_ip,
        row.confirmed_via,
        row.coupon,
    )


@dataclass(frozen=True)
class FormSummary:
    """A form as listed, with its sign-ups by status."""

    name: str
    title: str
    fields: tuple[str, ...]
    purposes: tuple[str, ...]
    pending: int
    confirmed: int
    expired: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "fields": list(self.fields),
            "purposes": list(self.purposes),
            "signups": {"pending": self.pending, "confirmed": self.confirmed, "expired": self.expired},
        }


def list_forms(runtime: Runtime) -> list[FormSummary]:
    """The project's valid forms with their sign-up counts (rows of `form_signups` by status)."""
    with runtime.store.engine.connect() as conn:
        counts = conn.execute(
            sa.select(form_signups.c.form, form_signups.c.status, sa.func.count()).group_by(
                form_signups.c.form, form_signups.c.status
            )
        ).all()
    by = {(f, s): int(n) for f, s, n in counts}
    return [
        FormSummary(
            form.name,
            form.text(form.title, form.default_locale),
            tuple(f.name for f in form.fields),
            tuple(p.name for p in form.purposes),
            by.get((form.name, "pending"), 0),
            by.get((form.name, "confirmed"), 0),
            by.get((form.name, "expired"), 0),
        )
        for form in load_forms(runtime.settings).values()
    ]


# --- without a browser -------------------------------------------------------------------------------


def fake_channels(runtime: Runtime) -> dict[str, Channel]:
    """The shipped fake e-mail and SMS channels (nothing leaves the machine): for `sign_up` in a demo."""
    channel = email_channel(runtime, fake=True)
    channel.track = False
    return {"email": channel, "sms": messaging_channel(runtime, "sms", fake=True)}


def sign_up(
    runtime: Runtime,
    form: str,
    answers: Mapping[str, Any],
    *,
    placement: str = "web",
    anonymous_id: str | None = None,
    confirm_now: bool = True,
    channels: Mapping[str, Channel] | None = None,
    now: float | None = None,
) -> tuple[SubmitResult, list[ConfirmResult]]:
    """A sign-up through `form` as a visitor would make it, without the render stamp (a simulated or
    imported sign-up), confirmed at once when `confirm_now` (as if the person clicked the link or replied
    YES). `channels`: the confirmation channels to use (e.g. the shipped fakes). For the demo world."""
    now = time.time() if now is None else now
    request = SubmitRequest(form, answers, placement=placement, anonymous_id=anonymous_id, check_stamp=False)
    result = submit(runtime, request, channels=channels, now=now)
    confirmed = []
    if confirm_now and result.status == "accepted":
        for signup_id in result.signups:
            with runtime.store.engine.connect() as conn:
                via = conn.execute(
                    sa.select(form_signups.c.purposes).where(form_signups.c.id == signup_id)
                ).scalar_one()
            mode = orjson.loads(via)[0]["confirm"] if via else "none"
            if mode != "none":
                confirmed.append(_confirm_row(runtime, signup_id, via=mode, ip=None, now=now))
    return result, confirmed
