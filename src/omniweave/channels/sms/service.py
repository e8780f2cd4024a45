"""SMS and WhatsApp operations on a Runtime: the adapter, send feedback, status callbacks, inbound.

The API's messaging routes call these functions only:

- `record_status`: a provider status callback (queued … delivered, undelivered, failed + ErrorCode),
  checked by its `X-Twilio-Signature`, becomes a feedback event ("SMS Delivered", "WhatsApp Read"
  …) about the ledger row with that provider id; an error code that means the number is dead or
  unsubscribed (21610, 21211, 30005 …) suppresses it.
- `receive_inbound`: a message a person sent us, checked the same way. It records the
  conversation (WhatsApp's 24-hour window); STOP, STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT (the
  whole message, any case) suppress the number on that channel ("Unsubscribed"); START, YES,
  UNSTOP lift a keyword suppression ("Subscribed"); HELP and INFO get the help text as a reply;
  anything else is an "SMS Received" / "WhatsApp Received" event.

A bad or missing signature raises `SignatureRefused` before anything is read or written.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any
from xml.sax.saxutils import escape

import httpx

from omniweave.channels.feedback import SOURCE, event_for, event_name
from omniweave.channels.http import PooledClient
from omniweave.channels.port import Delivered, Outcome, Terminal, address_key
from omniweave.channels.sms.adapter import ERROR_CODES, MessagingChannel, auth_token_from_env
from omniweave.channels.sms.fake import FakeTwilio
from omniweave.channels.sms.signature import signature_ok
from omniweave.collect.emit import emit
from omniweave.errors import AuthError, ConfigError, InputError
from omniweave.runtime import Runtime
from omniweave.settings import MessagingChannelSettings
from omniweave.storage.ops.conversations import Conversations
from omniweave.storage.ops.ledger import Ledger, LedgerRow

MESSAGING = ("sms", "whatsapp")
STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})
START_WORDS = frozenset({"START", "YES", "UNSTOP"})
HELP_WORDS = frozenset({"HELP", "INFO"})
KEYWORD_SUPPRESSION = "stop"
"""The suppression reason of a STOP (and of Twilio's 21610): the only one START lifts."""

STATUS_EVENTS = {
    "sent": "Sent",
    "delivered": "Delivered",
    "undelivered": "Undelivered",
    "failed": "Failed",
    "read": "Read",
}
"""Provider statuses that become events; queued, accepted, scheduled, sending and canceled do not."""

DEFAULT_HELP = "Reply STOP to unsubscribe, START to subscribe again. Msg & data rates may apply."


class SignatureRefused(AuthError):
    """A callback whose X-Twilio-Signature is missing or wrong (or no auth token is configured)."""


@dataclass(frozen=True)
class StatusResult:
    """What a status callback did: the send it matched (its key), the event, whether it suppressed."""

    matched: bool
    send_key: str | None
    status: str
    event: str | None
    suppressed: bool

    def to_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class InboundResult:
    """What an inbound message did: `action` (stop, start, help, message), its event and the reply."""

    action: str
    keyword: str | None
    event: str
    reply: str | None

    def to_dict(self) -> dict[str, object]:
        return dict(self.__dict__)

    def twiml(self) -> str:
        """The TwiML answer: the reply as a <Message>, or an empty <Response/>."""
        if self.reply is None:
            return '<?xml version="1.0" encoding="UTF-8"?><Response/>'
        return f'<?xml version="1.0" encoding="UTF-8"?><Response><Message>{escape(self.reply)}</Message></Response>'


def channel_settings(runtime: Runtime, channel: str) -> MessagingChannelSettings:
    """`[channels.sms]` or `[channels.whatsapp]` of the runtime's settings."""
    if channel not in MESSAGING:
        raise InputError(f"expected sms or whatsapp, got {channel!r}", field="channel")
    settings: MessagingChannelSettings = getattr(runtime.settings.channels, channel)
    return settings


def messaging_channel(
    runtime: Runtime,
    channel: str,
    *,
    client: httpx.Client | PooledClient | None = None,
    auth_token: str | None = None,
    clock: Callable[[], float] = time.time,
    fake: bool = False,
) -> MessagingChannel:
    """The SMS or WhatsApp adapter configured by the runtime's settings, with its conversations store.

    `fake`: talk to the shipped fake provider in-process instead (offline runs, demos); a missing
    account or sender is filled in with placeholders, since nothing leaves the machine.
    """
    conversations = Conversations(runtime.store.engine)
    settings = channel_settings(runtime, channel)
    if fake:
        provider = FakeTwilio(account_sid=settings.account_sid or FakeTwilio.account_sid)
        settings = replace(
            settings,
            account_sid=provider.account_sid,
            from_number=settings.from_number or ("" if settings.messaging_service_sid else "+15005550006"),
        )
        client, auth_token = httpx.Client(transport=provider.transport()), provider.auth_token
    return MessagingChannel(
        channel,
        settings,
        public_url=runtime.settings.channels.public_url,
        client=client,
        auth_token=auth_token,
        last_inbound_at=lambda address: conversations.last_inbound_at(channel, address),
        clock=clock,
    )


def send_feedback(
    runtime: Runtime, clock: Callable[[], float] = time.time, *, only: str | None = None
) -> Callable[[LedgerRow, Outcome | None], None]:
    """A dispatcher `on_outcome` that emits "SMS Sent" when the provider took a message and "SMS
    Failed" when a send ended dead (WhatsApp alike; `only` one of the two); other rows are left alone."""
    wanted = (only,) if only else MESSAGING

    def on_outcome(row: LedgerRow, outcome: Outcome | None) -> None:
        if row.channel not in wanted:
            return
        extra: dict[str, object]
        if isinstance(outcome, Delivered):
            what, extra = "Sent", {"provider_id": outcome.provider_id}
        elif row.status == "dead" and isinstance(outcome, Terminal | None):
            what, extra = "Failed", {"reason": row.reason}
        else:
            return
        emit(runtime.store, SOURCE, [_row_event(row, event_name(row.channel, what), clock(), extra)])

    return on_outcome


def _row_event(row: LedgerRow, name: str, at: float, extra: dict[str, object]) -> dict[str, Any]:
    return event_for(
        name,
        channel=row.channel,
        address=row.to_address,
        at=at,
        send_key=row.key,
        person_id=row.person_id,
        campaign=row.campaign,
        message_name=row.message_name,
        properties=extra,
    )


def _check(
    runtime: Runtime, channel: str, urls: Sequence[str], params: Sequence[tuple[str, str]], signature: str | None
) -> None:
    settings = channel_settings(runtime, channel)
    try:
        token = auth_token_from_env(settings, channel)
    except ConfigError as exc:
        raise SignatureRefused(f"cannot check the signature: {exc}") from exc
    if not any(signature_ok(token, url, params, signature) for url in urls):
        raise SignatureRefused("X-Twilio-Signature is missing or does not match this request")


def record_status(
    runtime: Runtime,
    channel: str,
    urls: Sequence[str],
    params: Sequence[tuple[str, str]],
    signature: str | None,
    *,
    now: float | None = None,
) -> StatusResult:
    """Apply one provider status callback (see the module docstring); `urls` are the URLs it may have
    been signed for (the public URL, the URL as received)."""
    _check(runtime, channel, urls, params, signature)
    form = dict(params)
    sid = form.get("MessageSid") or form.get("SmsSid") or ""
    status = (form.get("MessageStatus") or form.get("SmsStatus") or "").strip().lower()
    code = _int(form.get("ErrorCode"))
    ledger = Ledger(runtime.store.engine)
    row = ledger.find_by_provider_id(channel, sid) if sid else None
    address = row.to_address if row is not None else address_key(channel, form.get("To", ""))
    suppressed = False
    known = ERROR_CODES.get(code) if code is not None else None
    if known is not None and known.suppress and address:
        reason = KEYWORD_SUPPRESSION if code == 21610 else "bounce"
        suppressed = ledger.suppress(channel, address, reason, f"Twilio error {code}: {known.meaning}")
    what = STATUS_EVENTS.get(status)
    if row is None or what is None:
        return StatusResult(row is not None, row.key if row else None, status, None, suppressed)
    name = event_name(channel, what)
    extra: dict[str, object] = {"provider_id": sid, "status": status}
    if code is not None:
        extra["error_code"] = code
        extra["reason"] = known.meaning if known else f"Twilio error {code}"
    emit(runtime.store, SOURCE, [_row_event(row, name, time.time() if now is None else now, extra)])
    return StatusResult(True, row.key, status, name, suppressed)


def keyword_of(body: str) -> str | None:
    """The opt-out/opt-in/help keyword a message is (the whole message, trimmed, any case), else None."""
    word = body.strip().upper()
    return word if word in STOP_WORDS | START_WORDS | HELP_WORDS else None


def receive_inbound(
    runtime: Runtime,
    channel: str,
    urls: Sequence[str],
    params: Sequence[tuple[str, str]],
    signature: str | None,
    *,
    now: float | None = None,
) -> InboundResult:
    """Apply one inbound message (see the module docstring) and say what to answer."""
    _check(runtime, channel, urls, params, signature)
    form = dict(params)
    address = address_key(channel, form.get("From", ""))
    if not address:
        raise InputError("an inbound message needs From", field="From")
    at = time.time() if now is None else now
    keyword = keyword_of(form.get("Body", ""))
    Conversations(runtime.store.engine).record_inbound(channel, address, at, keyword)
    ledger = Ledger(runtime.store.engine)
    reply = None
    props: dict[str, object] = {"provider_id": form.get("MessageSid", "")}
    if keyword in STOP_WORDS:
        action, name = "stop", "Unsubscribed"
        ledger.suppress(channel, address, KEYWORD_SUPPRESSION, f"replied {keyword}")
    elif keyword in START_WORDS:
        action, name = "start", "Subscribed"
        ledger.unsuppress(channel, address, [KEYWORD_SUPPRESSION])
    else:
        action, name = ("help" if keyword else "message"), event_name(channel, "Received")
        if keyword:
            reply = channel_settings(runtime, channel).help_text or DEFAULT_HELP
        else:
            props["body"] = form.get("Body", "")
    if keyword:
        props["keyword"] = keyword
    event = event_for(
        name,
        channel=channel,
        address=address,
        at=at,
        properties=props,
        id_parts=(form.get("MessageSid") or f"{address}:{at}",),
    )
    emit(runtime.store, SOURCE, [event])
    return InboundResult(action, keyword, name, reply)


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
