"""A fake Twilio Messages API shipped in the package, for offline runs and tests.

`FakeTwilio` behaves like `POST /2010-04-01/Accounts/{AccountSid}/Messages.json`: it checks HTTP
Basic auth and the form (`To`, `From` or `MessagingServiceSid`, `Body` or `ContentSid`), answers
201 with a Twilio-shaped JSON message (`sid` SM…, `status` queued) or Twilio's error shape
(`{"code", "message", "status"}`), and de-duplicates on `I-Twilio-Idempotency-Token` (the same
token gets the same sid and no second message). It can be told to fail: `fail_next(3, 503)`,
`fail_next(1, 429, retry_after=7)`, `reject("+44…", 400, 21211)` until `accept("+44…")`.

Use it in-process as an `httpx.MockTransport` (`httpx.Client(transport=fake.transport())`) or
over a real socket (`fake.serve()`, a small keep-alive HTTP/1.1 server; or `fake.asgi` under any
ASGI server). `status_callback(sid,
"delivered")` builds the signed callback Twilio would POST to the message's `StatusCallback`.
"""

from __future__ import annotations

import base64
import itertools
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import httpx
import orjson

from omniweave.channels.sms import fake_server
from omniweave.channels.sms.signature import twilio_signature

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


@dataclass
class _Failure:
    status: int
    code: int | None
    retry_after: float | None
    message: str


@dataclass
class FakeTwilio:
    """An in-memory Twilio Messages API: `messages` holds every accepted message (form + sid), in order."""

    account_sid: str = "ACfake0000000000000000000000000000"
    auth_token: str = "fake-auth-token"
    messages: list[dict[str, str]] = field(default_factory=list)
    requests: int = 0
    request_times: list[float] = field(default_factory=list)
    clock: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._failures: list[_Failure] = []
        self._rejected: dict[str, _Failure] = {}
        self._by_token: dict[str, str] = {}

    # --- scripting ------------------------------------------------------------------------------
    def fail_next(
        self, count: int, status: int = 503, code: int | None = None, *, retry_after: float | None = None
    ) -> None:
        """Answer the next `count` requests with `status` (and Twilio error `code`, `Retry-After`)."""
        message = f"scripted failure {status}"
        self._failures.extend(_Failure(status, code, retry_after, message) for _ in range(count))

    def reject(
        self, to: str, status: int = 400, code: int | None = 21211, message: str = "Invalid 'To' Phone Number"
    ) -> None:
        """Refuse every message to `to` (with or without `whatsapp:`) until `accept(to)`."""
        self._rejected[to.removeprefix("whatsapp:")] = _Failure(status, code, None, message)

    def accept(self, to: str) -> None:
        """Stop refusing messages to `to`."""
        self._rejected.pop(to.removeprefix("whatsapp:"), None)

    # --- the API ----------------------------------------------------------------------------------
    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        """One request (lower-case header names): the status, headers and body Twilio would answer."""
        with self._lock:
            self.requests += 1
            self.request_times.append(self.clock())
            expected = f"/Accounts/{self.account_sid}/Messages.json"
            if method != "POST" or not path.endswith(expected):
                return _error(404, 20404, f"The requested resource {path} was not found")
            if not self._authorised(headers.get("authorization", "")):
                return _error(401, 20003, "Authenticate")
            if self._failures:
                failure = self._failures.pop(0)
                return _error(failure.status, failure.code, failure.message, failure.retry_after)
            form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
            problem = _form_problem(form)
            if problem is not None:
                return _error(400, problem[0], problem[1])
            rejected = self._rejected.get(form["To"].removeprefix("whatsapp:"))
            if rejected is not None:
                return _error(rejected.status, rejected.code, rejected.message)
            token = headers.get("i-twilio-idempotency-token", "")
            if token and token in self._by_token:
                sid = self._by_token[token]
            else:
                sid = f"SM{next(self._ids):032x}"
                self.messages.append({**form, "sid": sid, "idempotency_token": token})
                if token:
                    self._by_token[token] = sid
            reply = {
                "sid": sid,
                "account_sid": self.account_sid,
                "to": form["To"],
                "from": form.get("From", ""),
                "messaging_service_sid": form.get("MessagingServiceSid"),
                "body": form.get("Body", ""),
                "status": "queued",
                "error_code": None,
                "error_message": None,
            }
            return 201, {"content-type": "application/json"}, orjson.dumps(reply)

    def _authorised(self, header: str) -> bool:
        if not header.lower().startswith("basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return False
        return user == self.account_sid and password == self.auth_token

    def transport(self) -> httpx.MockTransport:
        """This fake as an httpx transport (offline: no socket)."""

        def handler(request: httpx.Request) -> httpx.Response:
            headers = {k.lower(): v for k, v in request.headers.items()}
            status, out, body = self.handle(request.method, request.url.path, headers, request.read())
            return httpx.Response(status, headers=out, content=body)

        return httpx.MockTransport(handler)

    async def asgi(self, scope: Scope, receive: Receive, send: Send) -> None:
        """This fake as an ASGI app (serve it with uvicorn to test over a real socket)."""
        if scope["type"] == "lifespan":
            while True:
                event = await receive()
                if event["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif event["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        chunks = []
        more = True
        while more:
            event = await receive()
            chunks.append(event.get("body", b""))
            more = event.get("more_body", False)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        status, out, body = self.handle(scope["method"], scope["path"], headers, b"".join(chunks))
        raw = [(k.encode(), v.encode()) for k, v in out.items()] + [(b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": body})

    @contextmanager
    def serve(self, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
        """Serve this fake over HTTP/1.1 (`fake_server`: asyncio, keep-alive, in a thread) while the block
        runs; yields its `api_base` (`http://host:port/2010-04-01`), the value for `[channels.sms] api_base`.
        (`asgi` serves the same fake under any ASGI server, e.g. uvicorn.)"""
        with fake_server.serve(self.handle, host, port) as bound:
            yield f"http://{host}:{bound}/2010-04-01"

    # --- callbacks Twilio would make ---------------------------------------------------------------
    def status_callback(self, sid: str, status: str, error_code: int | None = None) -> tuple[str, dict[str, str], str]:
        """The signed status callback for message `sid`: (URL, form, X-Twilio-Signature)."""
        message = next(m for m in self.messages if m["sid"] == sid)
        url = message["StatusCallback"]
        form = {
            "MessageSid": sid,
            "SmsSid": sid,
            "AccountSid": self.account_sid,
            "From": message.get("From", ""),
            "To": message["To"],
            "MessageStatus": status,
            "SmsStatus": status,
            "ApiVersion": "2010-04-01",
        }
        if error_code is not None:
            form["ErrorCode"] = str(error_code)
        return url, form, twilio_signature(self.auth_token, url, form.items())

    def inbound(self, url: str, from_number: str, to_number: str, body: str) -> tuple[dict[str, str], str]:
        """The signed webhook Twilio would POST to `url` for a message `from_number` sent us: (form, signature)."""
        sid = f"SM{next(self._ids):032x}"
        form = {
            "MessageSid": sid,
            "SmsMessageSid": sid,
            "AccountSid": self.account_sid,
            "From": from_number,
            "To": to_number,
            "Body": body,
            "NumMedia": "0",
            "ApiVersion": "2010-04-01",
        }
        return form, twilio_signature(self.auth_token, url, form.items())


def _form_problem(form: dict[str, str]) -> tuple[int, str] | None:
    if not form.get("To"):
        return 21604, "A 'To' phone number is required."
    if not form.get("From") and not form.get("MessagingServiceSid"):
        return 21603, "A 'From' phone number is required."
    if not form.get("Body") and not form.get("ContentSid"):
        return 21602, "Message body is required."
    if len(form.get("Body", "")) > 1600:
        return 21617, "The concatenated message body exceeds the 1600 character limit."
    return None


def _error(
    status: int, code: int | None, message: str, retry_after: float | None = None
) -> tuple[int, dict[str, str], bytes]:
    headers = {"content-type": "application/json"}
    if retry_after is not None:
        headers["retry-after"] = f"{retry_after:g}"
    body = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return status, headers, orjson.dumps(body)
