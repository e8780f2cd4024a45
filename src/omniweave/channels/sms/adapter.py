"""SMS and WhatsApp through a Twilio-style Messages REST API.

    POST {api_base}/Accounts/{AccountSid}/Messages.json        (HTTP Basic AccountSid:AuthToken)
    To=+447700900123  From=+447700900000 | MessagingServiceSid=MG…  Body=…  StatusCallback=…

WhatsApp is the same call with `whatsapp:`-prefixed numbers. WhatsApp allows a free-form `Body`
only within 24 hours of the person's last inbound message; outside it only an approved template
(`content["template"]` → `ContentSid`, `content["parameters"]` → `ContentVariables`), so a
free-form message outside the window is refused here, without calling the provider.

Outcomes: the HTTP status through `port.http_outcome`, then the Twilio error `code` in the JSON
body refines it (`ERROR_CODES`: e.g. 21610 unsubscribed → terminal and suppressed, 20429 too many
requests → transient). A connection that fails before the request is sent is transient; a timeout
or broken connection after it was sent raises `AmbiguousSend`, which the dispatcher records as
`ambiguous` (never resent on its own): Twilio does not document de-duplication of message
creation, so a blind retry could text a person twice. The idempotency key still travels as the
`I-Twilio-Idempotency-Token` header (the shipped fake provider de-duplicates on it).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from omniweave.channels.http import Answer, PooledClient
from omniweave.channels.port import Delivered, Message, Outcome, Terminal, Transient, address_key, http_outcome
from omniweave.errors import ConfigError, InputError
from omniweave.events.masking import masked
from omniweave.settings import MessagingChannelSettings

WINDOW_SECONDS = 24 * 3600.0
"""WhatsApp's customer-service window: free-form messages within 24 h of the person's last message."""

OUTSIDE_WINDOW = "outside WhatsApp's 24-hour window: send an approved template"

E164 = re.compile(r"^\+[1-9]\d{6,14}$")


@dataclass(frozen=True)
class ErrorCode:
    """What a Twilio error code means for a send: retry it (`transient`) or not, and suppress the address."""

    kind: str  # transient | terminal
    suppress: bool
    meaning: str
    retry_after: float | None = None


ERROR_CODES: dict[int, ErrorCode] = {
    20003: ErrorCode("terminal", False, "authentication failed: check account_sid and the auth token variable"),
    20404: ErrorCode("terminal", False, "resource not found: check api_base and account_sid"),
    20429: ErrorCode("transient", False, "too many concurrent requests (never processed, safe to retry)"),
    20500: ErrorCode("transient", False, "provider internal error"),
    20503: ErrorCode("transient", False, "provider unavailable"),
    21211: ErrorCode("terminal", True, "invalid 'To' phone number"),
    21408: ErrorCode("terminal", False, "sending to this region is not enabled on the account"),
    21606: ErrorCode("terminal", False, "the 'From' number cannot send this message: check from_number"),
    21610: ErrorCode("terminal", True, "the recipient has unsubscribed (replied STOP)"),
    21611: ErrorCode("transient", False, "the 'From' number's queue is full", retry_after=600.0),
    21612: ErrorCode("terminal", True, "the 'To' number cannot be reached by SMS"),
    21614: ErrorCode("terminal", True, "the 'To' number is not a mobile number"),
    21617: ErrorCode("terminal", False, "the body is longer than 1,600 characters"),
    30001: ErrorCode("transient", False, "queue overflow"),
    30002: ErrorCode("terminal", False, "the account is suspended"),
    30003: ErrorCode("transient", False, "the handset is unreachable (switched off, out of coverage)"),
    30005: ErrorCode("terminal", True, "unknown destination handset (the number does not exist)"),
    30006: ErrorCode("terminal", True, "landline or unreachable carrier"),
    30007: ErrorCode("terminal", False, "filtered by the carrier as spam"),
    63003: ErrorCode("terminal", True, "the 'To' number is not on WhatsApp"),
    63016: ErrorCode("terminal", False, OUTSIDE_WINDOW),
    63018: ErrorCode("transient", False, "WhatsApp rate limit exceeded"),
}
"""Twilio error codes and how a send treats them; codes not listed keep the HTTP status's reading."""


class AmbiguousSend(Exception):  # noqa: N818 - the dispatcher's word for it
    """The request may have reached the provider (a timeout after sending): outcome unknown."""


def error_outcome(code: int | None, fallback: Outcome, detail: str = "") -> Outcome:
    """`fallback` (the HTTP status's outcome) refined by the Twilio error `code` when it is known."""
    known = ERROR_CODES.get(code) if code is not None else None
    if known is None:
        return fallback
    reason = f"Twilio error {code}: {known.meaning}" + (f" ({detail.strip()[:160]})" if detail.strip() else "")
    if known.kind == "transient":
        retry_after = fallback.retry_after if isinstance(fallback, Transient) else None
        return Transient(reason, retry_after if retry_after is not None else known.retry_after)
    return Terminal(reason, suppress=known.suppress)


def auth_token_from_env(settings: MessagingChannelSettings, channel: str) -> str:
    """The auth token from the environment variable the settings name; a ConfigError naming it when unset."""
    token = os.environ.get(settings.auth_token_env, "")
    if not token:
        raise ConfigError(
            f"[channels.{channel}]: the auth token is read from the environment variable "
            f"{settings.auth_token_env} (auth_token_env), which is not set"
        )
    return token


class MessagingChannel:
    """The SMS (`name="sms"`) or WhatsApp (`name="whatsapp"`) adapter over one reused HTTP client: by default a
    `channels.http.PooledClient` (lean HTTP/1.1, kept-alive connections); any `httpx.Client` works too (the fakes
    use one with a `MockTransport`).

    `last_inbound_at(address)` says when the person last wrote to us on this channel (WhatsApp's
    window); `clock` is the time it compares against. `auth_token` defaults to the environment
    variable the settings name.
    """

    def __init__(
        self,
        name: str,
        settings: MessagingChannelSettings,
        *,
        public_url: str,
        client: httpx.Client | PooledClient | None = None,
        auth_token: str | None = None,
        last_inbound_at: Callable[[str], float | None] | None = None,
        clock: Callable[[], float] = time.time,
    ):
        if name not in ("sms", "whatsapp"):
            raise InputError(f"a messaging channel is sms or whatsapp, got {name!r}", field="name")
        problems = []
        if not settings.account_sid:
            problems.append("account_sid is empty")
        if not settings.from_number and not settings.messaging_service_sid:
            problems.append("set from_number or messaging_service_sid")
        if problems:
            raise ConfigError(f"[channels.{name}]: " + "; ".join(problems))
        self.name = name
        self.settings = settings
        self.auth_token = auth_token if auth_token is not None else auth_token_from_env(settings, name)
        self.client = client or PooledClient(timeout=settings.timeout_seconds)
        self.url = f"{settings.api_base.rstrip('/')}/Accounts/{settings.account_sid}/Messages.json"
        self.status_callback = f"{public_url.rstrip('/')}/v1/channels/{name}/status"
        self.last_inbound_at = last_inbound_at
        self.clock = clock

    def _address(self, number: str) -> str:
        return f"whatsapp:{number}" if self.name == "whatsapp" else number

    def form(self, message: Message) -> dict[str, str]:
        """The form body of the Messages API call for `message` (InputError when it cannot be sent)."""
        number = address_key(self.name, message.to)
        if not E164.match(number):
            raise InputError(f"{masked(message.to)} is not an E.164 phone number (+ and 7 to 15 digits)", field="to")
        form = {"To": self._address(number), "StatusCallback": self.status_callback}
        if self.settings.messaging_service_sid:
            form["MessagingServiceSid"] = self.settings.messaging_service_sid
        else:
            sender = self.settings.from_number
            form["From"] = sender if sender.startswith("whatsapp:") or self.name == "sms" else self._address(sender)
        template = message.text("template")
        if self.name == "whatsapp" and template:
            form["ContentSid"] = template
            form["ContentVariables"] = json.dumps(_variables(message.content.get("parameters")))
            return form
        body = message.text("body")
        if not body.strip():
            raise InputError(
                f"a {self.name} message needs content.body (or, on WhatsApp, content.template)", field="body"
            )
        form["Body"] = body
        return form

    def outside_window(self, message: Message) -> bool:
        """True when `message` is free-form WhatsApp and the person has not written to us in 24 hours."""
        if self.name != "whatsapp" or message.text("template"):
            return False
        last = self.last_inbound_at(address_key(self.name, message.to)) if self.last_inbound_at else None
        return last is None or self.clock() - last > WINDOW_SECONDS

    def send(self, message: Message, idempotency_key: str) -> Outcome:
        """POST the message once; the provider's answer as an outcome (see the module docstring)."""
        form = self.form(message)
        if self.outside_window(message):
            return Terminal(OUTSIDE_WINDOW)
        try:
            response = self.client.post(
                self.url,
                data=form,
                auth=(self.settings.account_sid, self.auth_token),
                headers={"I-Twilio-Idempotency-Token": idempotency_key, "Accept": "application/json"},
            )
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            return Transient(f"could not reach {self.settings.api_base}: {type(exc).__name__}: {exc}")
        except httpx.TransportError as exc:
            raise AmbiguousSend(f"{type(exc).__name__} after the request was sent: {exc}") from exc
        return self.read(response)

    def read(self, response: httpx.Response | Answer) -> Outcome:
        """The outcome of the Messages API's answer: HTTP status, then the Twilio error code."""
        body = _json(response)
        sid = str(body.get("sid") or "")
        outcome = http_outcome(response.status_code, response.text, response.headers.get("Retry-After"), sid)
        if isinstance(outcome, Delivered):
            if str(body.get("status") or "") == "failed":  # accepted but failed at once
                code = _int(body.get("error_code"))
                return error_outcome(code, Terminal(f"failed at once: {body.get('error_message') or code}"))
            return outcome
        return error_outcome(_int(body.get("code")), outcome, str(body.get("message") or ""))

    def close(self) -> None:
        """Close the HTTP client (its keep-alive connections)."""
        self.client.close()


def _variables(parameters: Any) -> dict[str, str]:
    """WhatsApp template parameters as Twilio's ContentVariables: {"1": …, "2": …} from a list or a dict."""
    if parameters is None:
        return {}
    if isinstance(parameters, dict):
        return {str(k): str(v) for k, v in parameters.items()}
    if isinstance(parameters, list | tuple):
        return {str(i): str(v) for i, v in enumerate(parameters, start=1)}
    raise InputError(
        f"template parameters must be a list or a table, got {type(parameters).__name__}", field="parameters"
    )


def _json(response: httpx.Response | Answer) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
