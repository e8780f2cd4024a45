"""The content checker: what in a rendition breaks its channel's limits or a brand rule.

`check(rendition, brand, limits)` returns findings, each with the channel, a rule id, a message that
says what was found and what is expected, a severity (`error` blocks a send, `warning` is shown) and
the field. The rules (docs/content.md has the table):

| rule | severity | when |
|---|---|---|
| `undefined-variable` | error | a template used a variable the person does not have (named) |
| `template-error` | error | a template failed otherwise (a sandbox refusal, a bad filter) |
| `subject-empty` | error | an e-mail without a subject |
| `email-text-missing` | error | an e-mail without a plain-text part |
| `unsubscribe-missing` | error | a promotional e-mail without the unsubscribe link, an SMS without the STOP line |
| `sms-segments` | error | an SMS longer than `max_sms_segments` segments (default 2) |
| `sms-ucs2` | warning | an SMS forced into UCS-2 by a character (a curly quote, an emoji): named |
| `push-title-length` / `push-body-length` | error | a push title over 50 / a body over 150 characters |
| `push-title-missing` | error | a push without a title |
| `whatsapp-template-required` | error (warning when the window is unknown) | free-form WhatsApp outside the 24-hour window |
| `brand-forbidden-word` | error | a word of the brand's `voice.avoid` list, anywhere |
| `insecure-link` | error (warning: our own short links under an http:// public_url) | an http:// link, not https:// |
| `letter-address-missing` | error | a letter without a postal address |
| `empty-message` | error | nothing to say (an SMS, WhatsApp or letter without text) |

Pure: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from omniweave.activate.content.model import BrandKit
from omniweave.activate.content.render import UNSUBSCRIBE_MARKER, Rendition, visible_texts
from omniweave.channels.sms.encoding import non_gsm_characters

PUSH_TITLE_MAX = 50
PUSH_BODY_MAX = 150
SEVERITIES = ("error", "warning")


@dataclass(frozen=True)
class Limits:
    """What the checker holds renditions to (`max_sms_segments`: the most SMS segments one message may cost;
    `whatsapp_window_open`: whether the person wrote to us in the last 24 hours, None when not known)."""

    max_sms_segments: int = 2
    whatsapp_window_open: bool | None = None
    own_url: str = ""  # `[channels] public_url`: our own short links are only as secure as it is (a warning)


@dataclass(frozen=True)
class Finding:
    """One broken rule in one rendition."""

    channel: str
    rule: str
    message: str
    severity: str = "error"
    field: str = ""

    def to_dict(self) -> dict[str, str]:
        return {
            "channel": self.channel,
            "rule": self.rule,
            "severity": self.severity,
            "field": self.field,
            "message": self.message,
        }


def _word_pattern(word: str) -> re.Pattern[str]:
    return re.compile(r"(?<!\w)" + r"\s+".join(map(re.escape, word.split())) + r"(?!\w)", re.IGNORECASE)


def _links(rendition: Rendition) -> list[tuple[str, str]]:
    content = rendition.content
    out = [(key, str(content[key])) for key in ("url", "qr_url") if content.get(key)]
    if rendition.channel == "email":
        out += [("html", m) for m in re.findall(r'href="(http[^"]*)"', str(content.get("html", "")))]
    if rendition.channel in ("sms", "whatsapp"):
        out += [("body", m) for m in re.findall(r"https?://\S+", str(content.get("body", "")))]
    return out


def _email(rendition: Rendition) -> list[Finding]:
    content, out = rendition.content, []
    if not str(content.get("subject") or "").strip():
        out.append(
            Finding(
                "email", "subject-empty", "the e-mail has no subject; expected a non-empty subject", field="subject"
            )
        )
    if not str(content.get("text") or "").strip():
        out.append(
            Finding(
                "email", "email-text-missing", "the e-mail has no plain-text part; expected html and text", field="text"
            )
        )
    if rendition.message_class == "promotional":
        for part in ("html", "text"):
            if UNSUBSCRIBE_MARKER not in str(content.get(part) or ""):
                out.append(
                    Finding(
                        "email",
                        "unsubscribe-missing",
                        f"the promotional e-mail's {part} part has no unsubscribe link; expected {UNSUBSCRIBE_MARKER}",
                        field=part,
                    )
                )
    return out


def _sms(rendition: Rendition, limits: Limits) -> list[Finding]:
    body, out = str(rendition.content.get("body") or ""), []
    count = rendition.segments
    if count is not None and count.segments > limits.max_sms_segments:
        out.append(
            Finding(
                "sms",
                "sms-segments",
                f"the SMS costs {count.segments} segments ({count.characters} characters, {count.encoding}); "
                f"expected at most {limits.max_sms_segments}",
                field="body",
            )
        )
    odd = non_gsm_characters(body)
    if odd:
        shown = ", ".join(f"{ch!r} (U+{ord(ch):04X})" for ch in odd[:5])
        out.append(
            Finding(
                "sms",
                "sms-ucs2",
                f"{shown} force the SMS into UCS-2 (70 characters a segment instead of 160); "
                "expected GSM-7 text (straight quotes, no emoji)",
                severity="warning",
                field="body",
            )
        )
    if rendition.message_class == "promotional" and "STOP" not in body.upper():
        out.append(
            Finding(
                "sms",
                "unsubscribe-missing",
                "the promotional SMS has no opt-out line; expected 'Reply STOP to opt out'",
                field="body",
            )
        )
    return out


def _push(rendition: Rendition) -> list[Finding]:
    content, out = rendition.content, []
    title, body = str(content.get("title") or ""), str(content.get("body") or "")
    if not title.strip():
        out.append(
            Finding(
                "push", "push-title-missing", "the push has no title; expected one of 1 to 50 characters", field="title"
            )
        )
    if len(title) > PUSH_TITLE_MAX:
        out.append(
            Finding(
                "push",
                "push-title-length",
                f"the push title has {len(title)} characters; expected at most {PUSH_TITLE_MAX}",
                field="title",
            )
        )
    if len(body) > PUSH_BODY_MAX:
        out.append(
            Finding(
                "push",
                "push-body-length",
                f"the push body has {len(body)} characters; expected at most {PUSH_BODY_MAX}",
                field="body",
            )
        )
    return out


def _whatsapp(rendition: Rendition, limits: Limits) -> list[Finding]:
    if "template" in rendition.content or limits.whatsapp_window_open:
        return []
    known = limits.whatsapp_window_open is not None
    return [
        Finding(
            "whatsapp",
            "whatsapp-template-required",
            "a free-form WhatsApp message may only go within 24 hours of the person's last message"
            + (" and this person's window is closed" if known else "; outside it")
            + ": expected an approved template (whatsapp.template and parameters)",
            severity="error" if known else "warning",
            field="template",
        )
    ]


def check(rendition: Rendition, brand: BrandKit, limits: Limits | None = None) -> list[Finding]:
    """Every rule `rendition` breaks under `brand` and `limits` (errors first, then warnings)."""
    limits = limits or Limits()
    channel = rendition.channel
    out = [Finding(channel, p.rule, p.message, field=p.field) for p in rendition.problems]
    if channel == "email":
        out += _email(rendition)
    elif channel == "sms":
        out += _sms(rendition, limits)
    elif channel == "push":
        out += _push(rendition)
    elif channel == "whatsapp":
        out += _whatsapp(rendition, limits)
    elif channel == "print" and not rendition.content.get("address"):
        out.append(
            Finding(
                "print",
                "letter-address-missing",
                "the letter has no postal address; expected 2 to 6 lines",
                field="address",
            )
        )
    for key in ("body", "text"):
        if key in rendition.content and not str(rendition.content[key]).strip() and channel != "email":
            out.append(
                Finding(
                    channel, "empty-message", f"the {channel} message's {key} is empty; expected some text", field=key
                )
            )
    for where, url in _links(rendition):
        if not url.lower().startswith("http://"):
            continue
        if limits.own_url and url.startswith(limits.own_url.rstrip("/") + "/"):
            message = (
                f"the short link {url[:60]!r} is http:// because [channels] public_url is {limits.own_url!r}; "
                "expected https:// in production"
            )
            out.append(Finding(channel, "insecure-link", message, severity="warning", field=where))
        else:
            message = f"the link {url[:80]!r} is http://; expected an https:// link"
            out.append(Finding(channel, "insecure-link", message, field=where))
    texts = visible_texts(rendition)
    for word in brand.voice_avoid:
        pattern = _word_pattern(word)
        for key, text in texts.items():
            found = pattern.search(text)
            if found:
                out.append(
                    Finding(
                        channel,
                        "brand-forbidden-word",
                        f"{found.group(0)!r} is on the brand's list of words to avoid (voice.avoid)",
                        field=key,
                    )
                )
                break
    return sorted(out, key=lambda f: SEVERITIES.index(f.severity))


def errors(findings: list[Finding]) -> list[Finding]:
    """The findings that block a send."""
    return [f for f in findings if f.severity == "error"]
