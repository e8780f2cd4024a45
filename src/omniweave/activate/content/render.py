"""One message, every channel: a person's rendition of a message on e-mail, SMS, WhatsApp, push or a letter.

`render(message, brand, channel, variables, ...)` personalises every text of the message (Jinja2 in a
sandbox, StrictUndefined) from `variables` (`template_variables` builds them: the person's profile row
as `person.*` — traits and insights —, `recommendations`, `brand.*`, `offer.text/code/pool`,
`cta.text/url`, `message.name/campaign`, `personalised` and `best_sellers`; for a person who may not
get personal content the personal values are withheld and fallbacks stand in: content/personal.py)
and lays it out for the channel:

- e-mail: `subject`, `preheader`, `html` (a responsive table layout in the brand's colours with logo,
  headline, image, body, offer, button, footer, legal lines and a visible unsubscribe link
  `[[unsubscribe_url]]` that the e-mail channel fills; CSS inlined with css-inline) and `text`;
- SMS: `body` = the brand's prefix, the text, and "Reply STOP to opt out" for promotional messages,
  with its segment count (channels.sms.encoding);
- WhatsApp: an approved `template` with rendered `parameters`, or a free-form `body`;
- push: `title`, `body`, `url` (and the brand logo as `icon`);
- print (a letter): `address` lines, `text`, `qr_url`.

A template that fails does not stop the rendering: the field is left empty and the failure is kept
in `Rendition.problems` (field, rule, message — an undefined variable is named), so the checker
reports every one. `strict=True` raises the first instead (a send never goes out with a hole).
Pure: no I/O.
"""

from __future__ import annotations

import functools
import html as htmlmod
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import css_inline
import jinja2
import jinja2.meta
import orjson
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup

from omniweave.activate.content.model import BrandKit, MessageDef, channel_name
from omniweave.activate.content.personal import RULE as PERSONAL_RULE
from omniweave.activate.content.personal import PersonalValueError, impersonal
from omniweave.channels.sms.encoding import SegmentCount, count_segments
from omniweave.errors import InputError

UNSUBSCRIBE_MARKER = "[[unsubscribe_url]]"
"""Where the e-mail channel writes the send's own unsubscribe link (channels/email/message.py)."""
SMS_OPT_OUT = "Reply STOP to opt out"


class Namespace(dict[str, Any]):
    """A table the templates read by attribute (`person.first_name`); a missing key is an undefined
    variable named by its full path (`person.frist_name is undefined`)."""

    def __init__(self, path: str, values: Mapping[str, Any]):
        super().__init__({str(k): namespaced(f"{path}.{k}", v) for k, v in values.items()})
        self.path = path


def namespaced(path: str, value: Any) -> Any:
    """`value` with every nested table made a Namespace (lists kept as lists), for templates."""
    if isinstance(value, Namespace):
        return value
    if isinstance(value, Mapping):
        return Namespace(path, value)
    if isinstance(value, list | tuple):
        return [namespaced(f"{path}[{i}]", v) for i, v in enumerate(value)]
    return value


class _Environment(SandboxedEnvironment):
    """The sandbox, reading Namespaces by key so an undefined variable carries its path."""

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, Namespace):
            if attribute in obj:
                return obj[attribute]
            if not hasattr(dict, attribute):
                return self.undefined(hint=f"{obj.path}.{attribute} is undefined", obj=obj, name=attribute)
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        if isinstance(obj, Namespace) and isinstance(argument, str) and argument not in obj:
            return self.undefined(hint=f"{obj.path}[{argument!r}] is undefined", obj=obj, name=argument)
        return super().getitem(obj, argument)


ENV = _Environment(
    undefined=jinja2.StrictUndefined,
    autoescape=False,
    finalize=lambda value: "" if value is None else value,
)


@functools.lru_cache(maxsize=2048)
def _compiled(text: str) -> jinja2.Template:
    return ENV.from_string(text)


_CONSTANT_ROOTS = frozenset({"brand", "message", "channel", "unsubscribe_url"})
"""Variables that are the same for every person a message goes to: a template reading only these renders
the same text for all of them (`person`, `recommendations` and `offer` — which holds a personal code —
are read per person)."""


@functools.lru_cache(maxsize=2048)
def _constant_roots(text: str) -> frozenset[str] | None:
    """The variables `text` reads when they are all in `_CONSTANT_ROOTS` and the template draws nothing at
    random (`random`, `lipsum`); else None (rendered every time). A template that does not compile: None."""
    if "random" in text or "lipsum" in text:
        return None
    try:
        roots = frozenset(jinja2.meta.find_undeclared_variables(ENV.parse(text)))
    except jinja2.TemplateError:
        return None
    return roots if roots <= _CONSTANT_ROOTS else None


def _fingerprint(value: Any) -> str:
    """A value the memo can key on: every JSON type kept apart, anything else by its type and repr."""
    return f"{type(value).__qualname__}:{value!r}"


_MEMO: dict[bytes, str] = {}
"""Rendered texts of templates that read only constant variables, by (template, those variables' values)."""
_MEMO_LIMIT = 4096


class RenderError(InputError):
    """A template of a message could not be rendered for a person (an undefined variable, a sandbox refusal)."""


@dataclass(frozen=True)
class RenderProblem:
    """One field whose template failed: where, which checker rule, what happened."""

    field: str
    rule: str  # undefined-variable | personal-without-consent | template-error
    message: str


@dataclass(frozen=True)
class Rendition:
    """What one person gets on one channel: the channel's `Message.content`, the sender, the SMS segments."""

    channel: str
    content: dict[str, Any]
    sender: str = ""
    message_class: str = "promotional"
    segments: SegmentCount | None = None
    problems: tuple[RenderProblem, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {
            "channel": self.channel,
            "content": dict(self.content),
            "sender": self.sender,
            "class": self.message_class,
            "segments": None if self.segments is None else self.segments.to_dict(),
            "problems": [p.__dict__ for p in self.problems],
        }


class _Missing:
    """A variable the renderer was not given (keyed apart from every value)."""

    def __repr__(self) -> str:
        return "<missing>"


_MISSING = _Missing()


class _Renderer:
    """Renders the fields of one message for one person, keeping every failure."""

    def __init__(self, variables: Mapping[str, Any], strict: bool, fast: bool = True):
        self.variables = dict(variables)
        self.strict = strict
        self.fast = fast
        self.problems: list[RenderProblem] = []

    def __call__(self, where: str, text: str | None) -> str:
        if not text:
            return ""
        roots = _constant_roots(text) if self.fast else None
        key = None
        if roots is not None:  # the same for everyone: rendered once per (template, values it reads)
            values = [(r, self.variables.get(r, _MISSING)) for r in sorted(roots)]
            try:
                key = orjson.dumps(
                    [text, [[r, type(v).__qualname__, v] for r, v in values]],
                    default=_fingerprint,
                    option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS,
                )
            except (TypeError, orjson.JSONEncodeError):  # a value the memo cannot key on: rendered every time
                key = None
            found = _MEMO.get(key) if key is not None else None
            if found is not None:
                return found
        try:
            out = _compiled(text).render(self.variables).strip()
            if key is not None:
                if len(_MEMO) >= _MEMO_LIMIT:
                    _MEMO.clear()
                _MEMO[key] = out
            return out
        except PersonalValueError as exc:
            problem = RenderProblem(where, PERSONAL_RULE, f"{where}: {exc.message}")
        except jinja2.UndefinedError as exc:
            problem = RenderProblem(where, "undefined-variable", f"{where}: undefined variable: {exc.message}")
        except (jinja2.TemplateError, TypeError, ValueError, ArithmeticError) as exc:
            problem = RenderProblem(where, "template-error", f"{where}: {type(exc).__name__}: {exc}")
        if self.strict:
            raise RenderError(problem.message, field=where)
        self.problems.append(problem)
        return ""


def person_variables(
    person: Mapping[str, Any] | None,
    message: MessageDef,
    *,
    personalised: bool = True,
    best_sellers: Sequence[str] = (),
    recommendations: Sequence[Any] | None = None,
) -> dict[str, Any]:
    """The person's part of the variables: `person`, `recommendations`, `personalised`, `best_sellers`.
    Not `personalised`: the personal values withheld, the message's fallbacks or the defaults in their place
    (content/personal.py) — whatever `recommendations` says."""
    profile = dict(person or {})
    recs: Any
    if personalised:
        recs = list(recommendations if recommendations is not None else (profile.get("recommended_products") or []))
    else:
        profile, recs = impersonal(profile, message.fallbacks, best_sellers)
    return {
        "person": Namespace("person", profile),
        "recommendations": namespaced("recommendations", recs) if isinstance(recs, list) else recs,
        "personalised": personalised,
        "best_sellers": list(best_sellers),
    }


def template_variables(
    person: Mapping[str, Any] | None,
    brand: BrandKit,
    message: MessageDef,
    *,
    offer_code: str | None = None,
    recommendations: Sequence[Any] | None = None,
    personalised: bool = True,
    best_sellers: Sequence[str] = (),
) -> dict[str, Any]:
    """The variables a message's templates see for one person (`person` is the profile row; without
    `personalised`, its personal values are withheld: `person_variables`)."""
    return {
        **person_variables(
            person, message, personalised=personalised, best_sellers=best_sellers, recommendations=recommendations
        ),
        "brand": Namespace("brand", brand.to_dict()),
        "offer": Namespace(
            "offer",
            {
                "text": message.offer.text if message.offer else "",  # rendered first by `render`
                "code": offer_code or "",
                "pool": message.offer.pool if message.offer else None,
            },
        ),
        "message": Namespace("message", {"name": message.name, "campaign": message.campaign}),
        "unsubscribe_url": UNSUBSCRIBE_MARKER,
    }


# --- body markup --------------------------------------------------------------------------------------

_LINK = re.compile(r"\[([^\]\n]+)\]\((https?://[^)\s]+|\[\[unsubscribe_url\]\])\)")
_BOLD = re.compile(r"\*\*([^*\n]+)\*\*")


def paragraphs(text: str) -> list[str]:
    """The paragraphs of a body (blank lines separate them), each trimmed."""
    return [p.strip() for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]


def plain(text: str) -> str:
    """Body markup as plain text: `[text](url)` becomes `text (url)`, `**bold**` plain."""
    return _BOLD.sub(r"\1", _LINK.sub(r"\1 (\2)", text))


def body_html(text: str, colour: str) -> Markup:
    """Body markup as HTML paragraphs (escaped; links and bold kept, line breaks as <br>)."""
    out = []
    for para in paragraphs(text):
        escaped = htmlmod.escape(para, quote=True)
        escaped = _BOLD.sub(r"<strong>\1</strong>", escaped)
        escaped = _LINK.sub(rf'<a href="\2" style="color: {colour};">\1</a>', escaped)
        out.append('<p class="text">' + escaped.replace("\n", "<br>\n") + "</p>")
    return Markup("\n".join(out))


# --- e-mail ---------------------------------------------------------------------------------------------

_LAYOUT = jinja2.Environment(autoescape=True).from_string(
    """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ subject }}</title>
<style>
body { margin: 0; padding: 0; background: {{ c.background }}; }
.wrap { width: 100%; background: {{ c.background }}; }
.card { width: 600px; max-width: 600px; background: #ffffff; border-collapse: collapse; }
.pad { padding: 24px 32px; font-family: Helvetica, Arial, sans-serif; color: {{ c.text }}; }
.brandbar { background: {{ c.primary }}; padding: 16px 32px; color: #ffffff; font-family: Helvetica, Arial,
  sans-serif; font-size: 18px; font-weight: bold; }
h1 { margin: 0 0 16px 0; font-size: 24px; line-height: 30px; color: {{ c.text }}; }
.text { margin: 0 0 14px 0; font-size: 16px; line-height: 24px; }
.offer { border: 2px dashed {{ c.accent }}; padding: 12px 16px; font-size: 16px; margin: 0 0 16px 0; }
.code { font-family: Courier, monospace; font-size: 20px; font-weight: bold; letter-spacing: 2px; }
.button { background: {{ c.primary }}; color: #ffffff; text-decoration: none; padding: 12px 24px;
  border-radius: 4px; display: inline-block; font-weight: bold; font-family: Helvetica, Arial, sans-serif; }
.footer { padding: 16px 32px; font-family: Helvetica, Arial, sans-serif; font-size: 12px; line-height: 18px;
  color: #666666; }
.preheader { display: none; max-height: 0; overflow: hidden; }
img.hero { width: 100%; max-width: 536px; height: auto; display: block; margin: 0 0 16px 0; }
</style>
<style data-css-inline="keep">
@media only screen and (max-width: 620px) {
  .card { width: 100% !important; }
  .pad, .footer, .brandbar { padding-left: 16px !important; padding-right: 16px !important; }
}
</style></head>
<body>
{% if preheader %}<span class="preheader">{{ preheader }}</span>{% endif %}
<table role="presentation" class="wrap" cellpadding="0" cellspacing="0"><tr><td align="center">
<table role="presentation" class="card" cellpadding="0" cellspacing="0">
<tr><td class="brandbar">{% if logo %}<img src="{{ logo }}" alt="{{ brand }}" height="32">{% else %}{{ brand }}{% endif %}</td></tr>
<tr><td class="pad">
{% if headline %}<h1>{{ headline }}</h1>{% endif %}
{% if image %}<img class="hero" src="{{ image }}" alt="">{% endif %}
{{ body }}
{% if offer %}<div class="offer">{{ offer }}{% if code %}<br><span class="code">{{ code }}</span>{% endif %}</div>{% endif %}
{% if cta_url %}<p class="text"><a class="button" href="{{ cta_url }}">{{ cta_text }}</a></p>{% endif %}
</td></tr>
<tr><td class="footer">
{% if footer %}{{ footer }}<br>{% endif %}
{% for line in legal %}{{ line }}<br>{% endfor %}
{% if promotional %}<a href="[[unsubscribe_url]]" style="color: #666666;">Unsubscribe</a>{% endif %}
</td></tr>
</table></td></tr></table>
</body></html>
"""
)


_MARKUP = re.compile(r"(<style\b[^>]*>.*?</style\s*>|<!--.*?-->|<[^>]*>)", re.S | re.I)
_OPEN, _CLOSE = "\ue000", "\ue001"  # private-use characters: they mark where each text stood
_PLACE = re.compile(_OPEN + r"(\d+)" + _CLOSE)
_HTML_SPACE = " \t\n\f\r"
_INLINED: dict[str, tuple[str, ...] | None] = {}
"""The inlined e-mail layouts by their markup with every text replaced by its mark (None: the marks did
not come out in order, once each — that markup is inlined whole every time)."""
_INLINED_LIMIT = 256


def _serialized(text: str) -> str:
    """A text node as css-inline writes it back (html5ever's serializer): `&`, no-break space, `<`, `>`."""
    return (
        htmlmod.unescape(text)
        .replace("&", "&amp;")
        .replace("\u00a0", "&nbsp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
    )


def inline_css(html: str) -> str:
    """`css_inline.inline(html)`, byte for byte, with the inlining done once per markup: the texts between
    the tags (a greeting with a first name, a personal offer) are replaced by marks, the marked document
    is inlined (and kept), and each person's texts go back where their marks came out. The styles depend
    only on the tags, classes and attributes, which stay; the texts are written back the way css-inline
    writes them. Whitespace-only texts stay in the markup (inside a table they are not moved out; other
    text is, and the marks with it). Anything unusual (a mark character or a CR or NUL in the input)
    is inlined whole."""
    if _OPEN in html or _CLOSE in html or "\r" in html or "\x00" in html:
        return css_inline.inline(html)
    markup = _MARKUP.split(html)  # text, tag, text, tag, …, text
    texts: list[str] = []
    for index in range(0, len(markup), 2):
        text = markup[index]
        if text and text.strip(_HTML_SPACE):
            markup[index] = f"{_OPEN}{len(texts)}{_CLOSE}"
            texts.append(text)
    skeleton = "".join(markup)
    if skeleton in _INLINED:
        pieces = _INLINED[skeleton]
    else:
        inlined = css_inline.inline(skeleton)
        split = _PLACE.split(inlined)
        pieces = tuple(split[0::2])
        if split[1::2] != [str(i) for i in range(len(texts))]:
            pieces = None
        if len(_INLINED) >= _INLINED_LIMIT:
            _INLINED.clear()
        _INLINED[skeleton] = pieces
    if pieces is None:
        return css_inline.inline(html)
    out = [pieces[0]]
    for text, after in zip(texts, pieces[1:], strict=True):
        out.append(_serialized(text))
        out.append(after)
    return "".join(out)


def _email(message: MessageDef, brand: BrandKit, r: _Renderer) -> dict[str, Any]:
    subject = r(
        "email.subject" if message.override("email", "subject") else "subject", _pick(message, "email", "subject")
    )
    preheader = r("preheader", _pick(message, "email", "preheader"))
    headline = r("headline", _pick(message, "email", "headline"))
    body = r("body", _pick(message, "email", "body"))
    cta = message.override("email", "cta") or message.cta
    cta_text = r("cta.text", cta.text) if cta else ""
    cta_url = r("cta.url", cta.url) if cta else ""
    image = r("image", _pick(message, "email", "image"))
    offer = _offer_text(message, r)
    code = str(r.variables["offer"].get("code") or "")
    promotional = message.message_class == "promotional"
    html = _LAYOUT.render(
        subject=subject,
        preheader=preheader,
        headline=headline,
        image=image,
        body=body_html(body, brand.colours["primary"]),
        offer=offer,
        code=code if code and code not in offer else "",
        cta_url=cta_url,
        cta_text=cta_text or "Open",
        footer=brand.footer,
        legal=brand.legal,
        brand=brand.name,
        logo=brand.logo,
        c=brand.colours,
        promotional=promotional,
    )
    html = inline_css(html) if r.fast else css_inline.inline(html)
    lines = [headline, *(plain(p) for p in paragraphs(body))]
    if offer:
        lines.append(offer + (f" Your code: {code}" if code and code not in offer else ""))
    if cta_url:
        lines.append(f"{cta_text or 'Open'}: {cta_url}")
    footer = [brand.footer, *brand.legal]
    if promotional:
        footer.append(f"Unsubscribe: {UNSUBSCRIBE_MARKER}")
    text = "\n\n".join(x for x in lines if x) + "\n\n--\n" + "\n".join(x for x in footer if x) + "\n"
    return {"subject": subject, "preheader": preheader, "html": html, "text": text}


def _offer_text(message: MessageDef, r: _Renderer) -> str:
    """The offer's text as rendered once by `render` (empty without an offer)."""
    if message.offer is None:
        return ""
    return str(r.variables["offer"].get("text") or "")


def _pick(message: MessageDef, channel: str, key: str) -> str:
    value = message.override(channel, key)
    return str(value) if value is not None else str(getattr(message, key, "") or "")


# --- short channels -----------------------------------------------------------------------------------


def _short_text(message: MessageDef, r: _Renderer, channel: str) -> str:
    """The text of an SMS or a free-form WhatsApp message: the channel's own body, else headline, offer, link."""
    own = message.override(channel, "body")
    if own:
        return r(f"{channel}.body", own)
    parts = [r("headline", message.headline)]
    if message.offer:
        parts.append(_offer_text(message, r))
    if message.cta:
        parts.append(r("cta.url", message.cta.url))
    if not any(parts[:1]) and message.body:
        first = paragraphs(r("body", message.body))  # none when the body's template failed (a problem kept)
        parts.insert(0, plain(first[0]) if first else "")
    return " ".join(p for p in parts if p)


def _sms(message: MessageDef, brand: BrandKit, r: _Renderer) -> dict[str, Any]:
    text = _short_text(message, r, "sms")
    prefix = brand.sms_prefix or brand.name
    if prefix and not text.startswith(prefix):
        text = f"{prefix}: {text}"
    if message.message_class == "promotional" and "STOP" not in text.upper():
        text = f"{text}\n{SMS_OPT_OUT}"
    return {"body": text}


def _whatsapp(message: MessageDef, r: _Renderer) -> dict[str, Any]:
    template = message.override("whatsapp", "template")
    if template:
        raw = message.override("whatsapp", "parameters") or []
        parameters: list[str] | dict[str, str]
        if isinstance(raw, dict):
            parameters = {k: r(f"whatsapp.parameters.{k}", v) for k, v in raw.items()}
        else:
            parameters = [r(f"whatsapp.parameters[{i}]", v) for i, v in enumerate(raw)]
        out: dict[str, Any] = {"template": template, "parameters": parameters}
        language = message.override("whatsapp", "language")
        if language:
            out["language"] = r("whatsapp.language", language)
        return out
    return {"body": _short_text(message, r, "whatsapp")}


def _push(message: MessageDef, brand: BrandKit, r: _Renderer) -> dict[str, Any]:
    title = r("push.title", message.override("push", "title")) or r("headline", message.headline or message.subject)
    own_body = message.override("push", "body")
    if own_body:
        body = r("push.body", own_body)
    else:
        first = paragraphs(r("body", message.body))
        body = plain(first[0]) if first else _offer_text(message, r)
    url = r("push.url", message.override("push", "url")) or (r("cta.url", message.cta.url) if message.cta else "")
    out = {"title": title, "body": body, "url": url}
    if brand.logo:
        out["icon"] = brand.logo
    return out


def _letter(message: MessageDef, brand: BrandKit, r: _Renderer, address: Sequence[str], qr_url: str | None) -> dict:
    headline = r(
        "print.headline" if message.override("print", "headline") else "headline", _pick(message, "print", "headline")
    )
    body = r("print.body" if message.override("print", "body") else "body", _pick(message, "print", "body"))
    lines = [headline, *(plain(p) for p in paragraphs(body))]
    if message.offer:
        offer = _offer_text(message, r)
        code = str(r.variables["offer"].get("code") or "")
        lines.append(offer + (f" Your code: {code}" if code and code not in offer else ""))
    link = (
        qr_url
        or r("print.qr_url", message.override("print", "qr_url"))
        or (r("cta.url", message.cta.url) if message.cta else "")
    )
    if message.cta and link:
        lines.append(f"{r('cta.text', message.cta.text)}: scan the code below.")
    lines.extend(x for x in (brand.footer, *brand.legal) if x)
    out: dict[str, Any] = {"address": list(address), "text": "\n\n".join(x for x in lines if x)}
    if link:
        out["qr_url"] = link
    return out


def render(
    message: MessageDef,
    brand: BrandKit,
    channel: str,
    variables: Mapping[str, Any],
    *,
    address: Sequence[str] = (),
    qr_url: str | None = None,
    strict: bool = False,
    fast: bool = True,
) -> Rendition:
    """`message` for one person (`variables`, see `template_variables`) on `channel` under `brand`.

    `address` is the letter's postal address (print), `qr_url` the letter's QR link (a signed short
    link made by the service). With `strict`, the first failing template raises RenderError. `fast`
    (the default) renders a template that reads only what is the same for everyone (brand, message,
    channel) once per message and inlines the e-mail's CSS once per markup (`inline_css`); `fast=False`
    does all of it every time — the same bytes, slower (the tests compare the two)."""
    chosen = channel_name(channel)
    r = _Renderer(variables, strict, fast)
    r.variables["channel"] = chosen
    offer = r.variables.get("offer")
    if message.offer and isinstance(offer, Namespace):  # `{{ offer.text }}` in a body reads the rendered offer
        r.variables["offer"] = Namespace("offer", {**offer, "text": r("offer.text", message.offer.text)})
    segments = None
    if chosen == "email":
        content = _email(message, brand, r)
    elif chosen == "sms":
        content = _sms(message, brand, r)
        segments = count_segments(content["body"])
    elif chosen == "whatsapp":
        content = _whatsapp(message, r)
    elif chosen == "push":
        content = _push(message, brand, r)
    else:
        content = _letter(message, brand, r, address, qr_url)
    return Rendition(
        channel=chosen,
        content=content,
        sender=brand.senders.get(chosen, brand.name),
        message_class=message.message_class,
        segments=segments,
        problems=tuple(r.problems),
    )


def visible_texts(rendition: Rendition) -> dict[str, str]:
    """Every text a reader sees in a rendition, by content key (the checker reads these)."""
    out: dict[str, str] = {}
    for key, value in rendition.content.items():
        if key == "html":
            out[key] = htmlmod.unescape(
                re.sub(r"<[^>]+>", " ", re.sub(r"<(style|head)\b.*?</\1>", "", value, flags=re.S))
            )
        elif isinstance(value, str):
            out[key] = value
        elif isinstance(value, list):
            out[key] = "\n".join(str(v) for v in value)
        elif isinstance(value, dict):
            out[key] = "\n".join(str(v) for v in value.values())
    return out
