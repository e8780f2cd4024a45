"""A message written once and a brand kit: what the files say, checked with every problem at once.

A message file (YAML or TOML, `messages/<name>.yaml` in the project, docs/content.md) holds

- `name` (default: the file name), `description`, `campaign` (default: the name), `class`
  (`promotional` or `transactional`: promotional messages need consent and an unsubscribe line);
- the content every channel starts from: `subject`, `preheader`, `headline`, `body` (paragraphs
  separated by blank lines; `**bold**` and `[text](https://…)` links), `cta` (`text`, `url`),
  `offer` (`text`, and a coupon `pool` whose code is `{{ offer.code }}`), `image` (an https URL);
- per-channel overrides: `email` (subject, preheader, headline, body, cta, image), `sms` (body),
  `whatsapp` (template, parameters, language, body), `push` (title, body, url), `print` (headline,
  body, qr_url; `letter` is accepted as its other name);
- `channels`: the channels the message is written for (default: all five);
- `fallbacks`: what stands in for a personal value when the person has not consented to personalisation
  (`first_name: there`, `recommendations: [SKU-1, SKU-2]`; content/personal.py has the defaults), and
  `without_personalisation`: `fallback` (render with them) or `skip` (send only personalised; default:
  `[privacy] without_personalisation`).

Every text is a Jinja2 template (personalisation: content/render.py); its syntax is checked here.
`parse_message` and `parse_brand` report every problem of a document at once, each with its path
(`cta.url`), what was received and what is valid, the way `segments.language.parse_segment` does.
Pure: no I/O (the service reads the files).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from omniweave.errors import InputError

CONTENT_CHANNELS = ("email", "sms", "whatsapp", "push", "print")
"""The channels a message is rendered for (`print` is the letter)."""
CHANNEL_ALIASES = {"letter": "print", "mail": "print", "direct_mail": "print"}
MESSAGE_CLASSES = ("promotional", "transactional")
OVERRIDE_KEYS: dict[str, tuple[str, ...]] = {
    "email": ("subject", "preheader", "headline", "body", "cta", "image"),
    "sms": ("body",),
    "whatsapp": ("template", "parameters", "language", "body"),
    "push": ("title", "body", "url"),
    "print": ("headline", "body", "qr_url"),
}
TOP_KEYS = (
    "name",
    "description",
    "campaign",
    "class",
    "channels",
    "subject",
    "preheader",
    "headline",
    "body",
    "cta",
    "offer",
    "image",
    "fallbacks",
    "without_personalisation",
)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$")
_COLOUR = re.compile(r"^#(?:[0-9A-Fa-f]{3}|[0-9A-Fa-f]{6})$")
_TEMPLATE_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,200}$")

Problems = list[tuple[str, str]]


def channel_name(name: str) -> str:
    """The content channel `name` stands for (`letter` is `print`); InputError naming `channel` if none."""
    chosen = CHANNEL_ALIASES.get(name, name)
    if chosen not in CONTENT_CHANNELS:
        raise InputError(
            f"got channel {name!r}; expected one of {', '.join(CONTENT_CHANNELS)} (or letter)", field="channel"
        )
    return chosen


def template_environment() -> SandboxedEnvironment:
    """The sandboxed Jinja2 environment every message text is compiled in (StrictUndefined: a missing
    variable is an error, never an empty hole in a customer's message)."""
    return SandboxedEnvironment(
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # texts are escaped when the e-mail HTML is built, not before
        keep_trailing_newline=False,
        finalize=lambda value: "" if value is None else value,
    )


_SYNTAX_ENV = template_environment()


class MessageError(InputError):
    """A message or brand document with problems: `problems` lists each as (path, message)."""

    def __init__(self, source: str, problems: Sequence[tuple[str, str]], what: str = "message"):
        self.problems = list(problems)
        self.source = source
        lines = "\n".join(f"  {path or '(top)'}: {message}" for path, message in self.problems)
        super().__init__(f"{what} {source}: {len(self.problems)} problem(s):\n{lines}")


@dataclass(frozen=True)
class CallToAction:
    """The one thing the message asks the reader to do: a button text and where it leads."""

    text: str
    url: str


@dataclass(frozen=True)
class Offer:
    """What is offered: a text, and a coupon pool whose code is issued per send (`{{ offer.code }}`)."""

    text: str
    pool: str | None = None


@dataclass(frozen=True)
class MessageDef:
    """One message as written once; every text is a Jinja2 template (rendered per person and channel)."""

    name: str
    source: str
    description: str = ""
    campaign: str = ""
    message_class: str = "promotional"
    channels: tuple[str, ...] = CONTENT_CHANNELS
    subject: str = ""
    preheader: str = ""
    headline: str = ""
    body: str = ""
    cta: CallToAction | None = None
    offer: Offer | None = None
    image: str = ""
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    fallbacks: dict[str, str | list[str]] = field(default_factory=dict)
    without_personalisation: str | None = None  # fallback | skip; None: the `[privacy]` setting

    def override(self, channel: str, key: str, default: Any = None) -> Any:
        """The channel's own value of `key`, else `default`."""
        return self.overrides.get(channel, {}).get(key, default)

    def to_dict(self) -> dict[str, Any]:
        """The definition as plain values (what the API and `messages list --format json` show)."""
        return {
            "name": self.name,
            "source": self.source,
            "description": self.description,
            "campaign": self.campaign,
            "class": self.message_class,
            "channels": list(self.channels),
            "subject": self.subject,
            "preheader": self.preheader,
            "headline": self.headline,
            "body": self.body,
            "cta": None if self.cta is None else {"text": self.cta.text, "url": self.cta.url},
            "offer": None if self.offer is None else {"text": self.offer.text, "pool": self.offer.pool},
            "image": self.image,
            **{ch: dict(values) for ch, values in self.overrides.items()},
            "fallbacks": {k: list(v) if isinstance(v, list) else v for k, v in self.fallbacks.items()},
            "without_personalisation": self.without_personalisation,
        }


def _template(value: Any, path: str, problems: Problems, *, required: bool = False, limit: int = 20_000) -> str:
    """A text field: a string (Jinja2 syntax checked); numbers are taken as text."""
    if value is None:
        if required:
            problems.append((path, "missing: expected a text"))
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        problems.append((path, f"expected a text; got {type(value).__name__} {value!r}"))
        return ""
    text = str(value)
    if len(text) > limit:
        problems.append((path, f"expected at most {limit} characters; got {len(text)}"))
        return ""
    try:
        _SYNTAX_ENV.parse(text)
    except jinja2.TemplateSyntaxError as exc:
        problems.append((path, f"template syntax error on line {exc.lineno}: {exc.message}; got {text[:80]!r}"))
    return text


def _url(value: Any, path: str, problems: Problems, *, required: bool = False) -> str:
    """A link: a template whose literal start must be http(s):// or a template expression."""
    text = _template(value, path, problems, required=required, limit=2000)
    if text and not (text.startswith(("https://", "http://", "{{")) or text == "[[unsubscribe_url]]"):
        problems.append((path, f"expected an https:// URL (or a {{{{ variable }}}}); got {text[:80]!r}"))
    return text


def _mapping(value: Any, path: str, problems: Problems, allowed: Sequence[str]) -> Mapping[str, Any] | None:
    if not isinstance(value, Mapping):
        problems.append((path, f"expected a table with {', '.join(allowed)}; got {value!r}"))
        return None
    for key in value:
        if key not in allowed:
            problems.append((f"{path}.{key}", f"unknown field; allowed: {', '.join(allowed)}"))
    return value


def _cta(value: Any, path: str, problems: Problems) -> CallToAction | None:
    if value is None:
        return None
    raw = _mapping(value, path, problems, ("text", "url"))
    if raw is None:
        return None
    return CallToAction(
        _template(raw.get("text"), f"{path}.text", problems, required=True, limit=200),
        _url(raw.get("url"), f"{path}.url", problems, required=True),
    )


def _offer(value: Any, problems: Problems) -> Offer | None:
    if value is None:
        return None
    raw = _mapping(value, "offer", problems, ("text", "pool"))
    if raw is None:
        return None
    pool = raw.get("pool")
    if pool is not None and (not isinstance(pool, str) or not _NAME.match(pool)):
        problems.append(("offer.pool", f"expected a coupon pool's name (letters, digits, _ or -); got {pool!r}"))
        pool = None
    return Offer(_template(raw.get("text"), "offer.text", problems, required=True, limit=500), pool)


def _overrides(document: Mapping[str, Any], problems: Problems) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for key in (*CONTENT_CHANNELS, *CHANNEL_ALIASES):
        if key not in document:
            continue
        channel = CHANNEL_ALIASES.get(key, key)
        if channel in out:
            problems.append((key, f"the {channel} overrides are given twice (as {channel} and as {key})"))
            continue
        raw = _mapping(document[key], key, problems, OVERRIDE_KEYS[channel])
        if raw is None:
            continue
        values: dict[str, Any] = {}
        for name, value in raw.items():
            if name not in OVERRIDE_KEYS[channel]:
                continue
            path = f"{key}.{name}"
            if name == "cta":
                values[name] = _cta(value, path, problems)
            elif name == "parameters":
                values[name] = _parameters(value, path, problems)
            elif name == "template":
                if not isinstance(value, str) or not _TEMPLATE_NAME.match(value):
                    problems.append((path, f"expected an approved template's name or id (e.g. HX0123…); got {value!r}"))
                else:
                    values[name] = value
            elif name in ("url", "qr_url", "image"):
                values[name] = _url(value, path, problems)
            else:
                values[name] = _template(value, path, problems)
        out[channel] = values
    return out


def _parameters(value: Any, path: str, problems: Problems) -> list[str] | dict[str, str]:
    if isinstance(value, list):
        return [_template(v, f"{path}[{i}]", problems, required=True, limit=1000) for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        return {str(k): _template(v, f"{path}.{k}", problems, required=True, limit=1000) for k, v in value.items()}
    problems.append((path, f"expected a list of texts (or a table of named texts); got {value!r}"))
    return []


_FALLBACK_KEY = re.compile(r"^(person\.)?[A-Za-z_][A-Za-z0-9_]{0,99}$")


def _fallbacks(value: Any, problems: Problems) -> dict[str, str | list[str]]:
    """`fallbacks`: a table of a personal value (`first_name`, `person.first_name`, `recommendations`) to a
    text or a list of texts (content/personal.py)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        problems.append(("fallbacks", f"expected a table of personal value = text or list of texts; got {value!r}"))
        return {}
    out: dict[str, str | list[str]] = {}
    for key, given in value.items():
        path = f"fallbacks.{key}"
        if not isinstance(key, str) or not _FALLBACK_KEY.match(key):
            problems.append((path, "expected a profile column (first_name, person.first_name) or recommendations"))
        elif isinstance(given, bool) or given is None:
            problems.append((path, f"expected a text or a list of texts; got {given!r}"))
        elif isinstance(given, str | int | float):
            out[key[len("person.") :] if key.startswith("person.") else key] = str(given)
        elif isinstance(given, list) and all(
            isinstance(v, str | int | float) and not isinstance(v, bool) for v in given
        ):
            out[key[len("person.") :] if key.startswith("person.") else key] = [str(v) for v in given]
        else:
            problems.append((path, f"expected a text or a list of texts; got {given!r}"))
    return out


def _without(value: Any, problems: Problems) -> str | None:
    if value is None or value in ("fallback", "skip"):
        return value
    problems.append(("without_personalisation", f"expected fallback or skip; got {value!r}"))
    return None


def _channels(value: Any, problems: Problems) -> tuple[str, ...]:
    if value is None:
        return CONTENT_CHANNELS
    if not isinstance(value, list) or not value:
        problems.append(("channels", f"expected a non-empty list of {', '.join(CONTENT_CHANNELS)}; got {value!r}"))
        return CONTENT_CHANNELS
    out: list[str] = []
    for i, name in enumerate(value):
        chosen = CHANNEL_ALIASES.get(name, name) if isinstance(name, str) else name
        if chosen not in CONTENT_CHANNELS:
            problems.append((f"channels[{i}]", f"expected one of {', '.join(CONTENT_CHANNELS)}; got {name!r}"))
        elif chosen not in out:
            out.append(chosen)
    return tuple(out) or CONTENT_CHANNELS


def parse_message(document: Any, source: str = "<message>", default_name: str | None = None) -> MessageDef:
    """A message definition from a parsed YAML/TOML document; MessageError lists every problem at once."""
    problems: Problems = []
    if not isinstance(document, Mapping):
        raise MessageError(source, [("", f"expected a table of message fields; got {type(document).__name__}")])
    known = (*TOP_KEYS, *CONTENT_CHANNELS, *CHANNEL_ALIASES)
    for key in document:
        if key not in known:
            problems.append((str(key), f"unknown field; allowed: {', '.join(known)}"))
    name = document.get("name", default_name)
    if not isinstance(name, str) or not _NAME.match(name):
        problems.append(
            ("name", f"expected 1-100 letters, digits, _ or - (starting with a letter or digit); got {name!r}")
        )
        name = str(name or "message")
    campaign = document.get("campaign", name)
    if not isinstance(campaign, str) or not campaign.strip():
        problems.append(("campaign", f"expected a non-empty text; got {campaign!r}"))
        campaign = name
    message_class = document.get("class", "promotional")
    if message_class not in MESSAGE_CLASSES:
        problems.append(("class", f"expected one of {', '.join(MESSAGE_CLASSES)}; got {message_class!r}"))
        message_class = "promotional"
    description = document.get("description", "")
    if not isinstance(description, str):
        problems.append(("description", f"expected a text; got {description!r}"))
        description = ""
    message = MessageDef(
        name=name,
        source=source,
        description=description,
        campaign=campaign.strip(),
        message_class=message_class,
        channels=_channels(document.get("channels"), problems),
        subject=_template(document.get("subject"), "subject", problems, limit=500),
        preheader=_template(document.get("preheader"), "preheader", problems, limit=500),
        headline=_template(document.get("headline"), "headline", problems, limit=500),
        body=_template(document.get("body"), "body", problems),
        cta=_cta(document.get("cta"), "cta", problems),
        offer=_offer(document.get("offer"), problems),
        image=_url(document.get("image"), "image", problems),
        overrides=_overrides(document, problems),
        fallbacks=_fallbacks(document.get("fallbacks"), problems),
        without_personalisation=_without(document.get("without_personalisation"), problems),
    )
    if not (message.headline or message.body or message.overrides):
        problems.append(("body", "missing: a message needs a headline or a body (or a channel's own text)"))
    if problems:
        raise MessageError(source, problems)
    return message


# --- the brand kit ------------------------------------------------------------------------------------

BRAND_KEYS = ("name", "website", "voice", "colours", "colors", "logo", "footer", "legal", "senders", "sms_prefix")
COLOUR_KEYS = ("primary", "accent", "text", "background")


@dataclass(frozen=True)
class BrandKit:
    """The brand every rendition wears: name, voice, colours, logo, footer, legal lines, senders.

    `voice_avoid` words are flagged wherever they appear (checker rule `brand-forbidden-word`);
    `voice_use` words are shown to writers (docs, `messages validate`), not enforced. `senders` maps a
    channel to its sender identity (an e-mail From, an SMS sender id, a WhatsApp number, a push name).
    """

    name: str = "omniweave shop"
    website: str = "https://shop.example"
    voice_use: tuple[str, ...] = ()
    voice_avoid: tuple[str, ...] = ()
    colours: dict[str, str] = field(
        default_factory=lambda: {"primary": "#1F6F5C", "accent": "#F2A541", "text": "#222222", "background": "#FFFFFF"}
    )
    logo: str = ""
    footer: str = ""
    legal: tuple[str, ...] = ()
    senders: dict[str, str] = field(default_factory=dict)
    sms_prefix: str = ""  # default: the brand's name

    def to_dict(self) -> dict[str, Any]:
        """The kit as the template variable `brand` sees it (and JSON)."""
        return {
            "name": self.name,
            "website": self.website,
            "voice": {"use": list(self.voice_use), "avoid": list(self.voice_avoid)},
            "colours": dict(self.colours),
            "logo": self.logo,
            "footer": self.footer,
            "legal": list(self.legal),
            "senders": dict(self.senders),
            "sms_prefix": self.sms_prefix or self.name,
        }


def _words(value: Any, path: str, problems: Problems) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        problems.append((path, f"expected a list of words or phrases; got {value!r}"))
        return ()
    return tuple(v.strip() for v in value)


def _text(raw: Mapping[str, Any], key: str, problems: Problems, default: str) -> str:
    value = raw.get(key, default)
    if not isinstance(value, str):
        problems.append((key, f"expected a text; got {value!r}"))
        return default
    return value


def parse_brand(document: Any, source: str = "<brand>") -> BrandKit:
    """A brand kit from a parsed YAML/TOML document (missing keys take the defaults); MessageError lists
    every problem at once."""
    problems: Problems = []
    if not isinstance(document, Mapping):
        raise MessageError(source, [("", f"expected a table of brand fields; got {type(document).__name__}")], "brand")
    for key in document:
        if key not in BRAND_KEYS:
            problems.append((str(key), f"unknown field; allowed: {', '.join(BRAND_KEYS)}"))
    default = BrandKit()
    voice = document.get("voice") or {}
    if not isinstance(voice, Mapping):
        problems.append(("voice", f"expected a table with use and avoid; got {voice!r}"))
        voice = {}
    for key in voice:
        if key not in ("use", "avoid"):
            problems.append((f"voice.{key}", "unknown field; allowed: use, avoid"))
    colours = dict(default.colours)
    raw_colours = document.get("colours", document.get("colors")) or {}
    if not isinstance(raw_colours, Mapping):
        problems.append(("colours", f"expected a table of {', '.join(COLOUR_KEYS)}; got {raw_colours!r}"))
        raw_colours = {}
    for key, value in raw_colours.items():
        if key not in COLOUR_KEYS:
            problems.append((f"colours.{key}", f"unknown colour; allowed: {', '.join(COLOUR_KEYS)}"))
        elif not isinstance(value, str) or not _COLOUR.match(value):
            problems.append((f"colours.{key}", f"expected a hex colour like #1F6F5C; got {value!r}"))
        else:
            colours[key] = value
    senders = document.get("senders") or {}
    if not isinstance(senders, Mapping) or not all(isinstance(v, str) for v in senders.values()):
        problems.append(("senders", f"expected a table of channel = sender identity; got {senders!r}"))
        senders = {}
    for key in senders:
        if CHANNEL_ALIASES.get(key, key) not in CONTENT_CHANNELS:
            problems.append((f"senders.{key}", f"unknown channel; expected one of {', '.join(CONTENT_CHANNELS)}"))
    legal = document.get("legal") or []
    if isinstance(legal, str):
        legal = [legal]
    name = _text(document, "name", problems, default.name)
    if not name.strip():
        problems.append(("name", "expected the brand's name; got an empty text"))
    logo = _text(document, "logo", problems, "")
    if logo and not logo.startswith("https://"):
        problems.append(("logo", f"expected an https:// image URL; got {logo[:80]!r}"))
    website = _text(document, "website", problems, default.website)
    if website and not website.startswith(("https://", "http://")):
        problems.append(("website", f"expected an http(s) URL; got {website[:80]!r}"))
    kit = BrandKit(
        name=name.strip(),
        website=website,
        voice_use=_words(voice.get("use"), "voice.use", problems),
        voice_avoid=_words(voice.get("avoid"), "voice.avoid", problems),
        colours=colours,
        logo=logo,
        footer=_text(document, "footer", problems, ""),
        legal=_words(legal, "legal", problems),
        senders={CHANNEL_ALIASES.get(str(k), str(k)): str(v) for k, v in senders.items()},
        sms_prefix=_text(document, "sms_prefix", problems, ""),
    )
    if problems:
        raise MessageError(source, problems, "brand")
    return kit
