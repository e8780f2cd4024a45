"""The channel port: one message and an idempotency key in, one of three outcomes out.

Every adapter answers a send with exactly one of

- `Delivered(provider_id)`: the provider accepted the message (an SMTP 250, an HTTP 2xx with
  the provider's message id); later delivery reports come back as events;
- `Transient(retry_after, reason)`: try again later (a 4xx SMTP reply, HTTP 429/5xx, a timeout);
  `retry_after` is the provider's `Retry-After` in seconds when it gave one;
- `Terminal(reason, suppress)`: never retry (an SMTP 5xx, HTTP 400/401/403/404/410, a provider
  error code that means "this will not work"); `suppress` says the address must not be used
  again (a hard bounce, an unsubscribed number, a gone push subscription).

The idempotency key comes from the send ledger row written before the call. Adapters pass it on
where the protocol has a place for it (the e-mail `Message-ID`, an `Idempotency-Key` header), so a
retry after a crash is recognised by the provider instead of sent twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from omniweave.errors import InputError

CHANNELS = ("email", "sms", "whatsapp", "push", "webhook", "print", "ads")
"""The channels omniweave sends on."""


@dataclass(frozen=True)
class Delivered:
    """The provider took the message; `provider_id` is its id for it (for status callbacks)."""

    provider_id: str
    status: str = field(default="delivered", init=False)


@dataclass(frozen=True)
class Transient:
    """Try again later: after `retry_after` seconds when the provider said so, else by back-off."""

    reason: str
    retry_after: float | None = None
    status: str = field(default="transient", init=False)


@dataclass(frozen=True)
class Terminal:
    """Never retry; `suppress` when the address itself is dead (hard bounce, STOP, gone)."""

    reason: str
    suppress: bool = False
    status: str = field(default="terminal", init=False)


Outcome = Delivered | Transient | Terminal


@dataclass(frozen=True)
class Message:
    """One message to one recipient on one channel, already rendered for that channel.

    `to` is the channel's address: an e-mail address, an E.164 phone number, a push
    subscription's endpoint, a webhook URL, a postal address line. `content` holds the channel's
    rendition (see `content` keys per channel in docs/channels.md): for e-mail `subject`, `html`,
    `text`; for SMS `body`; for WhatsApp `body` or `template` + `parameters`; for push `title`,
    `body`, `url`; for a webhook the JSON `payload`; for a letter the address and the text.
    `person_id`, `campaign`, `message_name` and `message_class` travel with it into the ledger
    and into the events that come back.
    """

    channel: str
    to: str
    content: dict[str, Any]
    person_id: str | None = None
    campaign: str | None = None
    message_name: str | None = None
    message_class: str = "promotional"

    def __post_init__(self) -> None:
        if self.channel not in CHANNELS:
            raise InputError(
                f"unknown channel {self.channel!r}; expected one of {', '.join(CHANNELS)}", field="channel"
            )
        if not str(self.to or "").strip():
            raise InputError(f"a {self.channel} message needs a recipient address", field="to")

    def text(self, key: str, default: str = "") -> str:
        """`content[key]` as a string ('' or `default` when absent)."""
        value = self.content.get(key)
        return default if value is None else str(value)


@runtime_checkable
class Channel(Protocol):
    """What every adapter is: a name and a send that never raises for a provider's answer.

    A send raises only for a bug or bad input of ours (`InputError`); whatever the provider or
    the network does is one of the three outcomes.
    """

    name: str

    def send(self, message: Message, idempotency_key: str) -> Outcome:
        """Send `message` once; `idempotency_key` identifies this send across retries."""
        ...


def http_outcome(status: int, body: str = "", retry_after: str | None = None, provider_id: str = "") -> Outcome:
    """The outcome of an HTTP provider's answer, the way every HTTP adapter reads one.

    2xx delivered; 408, 425, 429 and 5xx transient (honouring `Retry-After` in seconds); 404 and
    410 terminal with suppression (the address is gone: a push subscription, a webhook); other
    4xx terminal.
    """
    if 200 <= status < 300:
        return Delivered(provider_id)
    reason = f"HTTP {status}" + (f": {body.strip()[:200]}" if body.strip() else "")
    if status in (408, 425, 429) or status >= 500:
        return Transient(reason, parse_retry_after(retry_after))
    return Terminal(reason, suppress=status in (404, 410))


def parse_retry_after(value: str | None) -> float | None:
    """`Retry-After` in seconds (delta-seconds or an HTTP date), None when absent or unreadable."""
    if value is None or not str(value).strip():
        return None
    text = str(value).strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    from datetime import UTC, datetime
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def address_key(channel: str, to: str) -> str:
    """How an address is written in the ledger and the suppression list: e-mail trimmed and lower
    case, phone numbers without spaces (`whatsapp:` prefix dropped: SMS and WhatsApp share a
    number, but each channel keeps its own list), anything else trimmed."""
    text = str(to).strip()
    if channel == "email":
        return text.lower()
    if channel in ("sms", "whatsapp"):
        if text.lower().startswith("whatsapp:"):
            text = text[len("whatsapp:") :]
        return "".join(text.split())
    return text
