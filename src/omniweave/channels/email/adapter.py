"""The e-mail channel: the MIME message (message.py) handed to a transport, the SMTP reply read as an outcome.

`EmailChannel(settings, public_url=…, key=…, transport=…)` is the `Channel` for e-mail. The transport
is `SmtpTransport` (a real SMTP server: STARTTLS, implicit TLS or plain, AUTH with the password
from the environment) or the shipped `OutboxTransport` (fake.py: an in-memory outbox for offline
runs and tests), so both exercise the same message building.

SMTP replies become outcomes:

| reply                                   | outcome                                                |
|-----------------------------------------|--------------------------------------------------------|
| 250 after DATA                          | `Delivered(Message-ID)`                                |
| 5xx to RCPT, 5xx to DATA                | `Terminal(suppress=True)`: a hard bounce               |
| 5xx to DATA with 5.6.x / 5.7.x status   | `Terminal` (content or policy refused; not the address)|
| 5xx to MAIL FROM                        | `Terminal` (our sender is refused; nothing suppressed) |
| 4xx to MAIL, RCPT or DATA               | `Transient` (retried; see below)                       |
| connection refused, timeout, lost before DATA | `Transient`                                      |
| authentication refused, TLS unavailable or untrusted | `Terminal` (configuration; nothing suppressed) |

A recipient's 4xx still failing when the retries run out suppresses the address (service.py).

A connection lost *during* DATA leaves the send ambiguous (the server may have the message): the
transport raises `AmbiguousDelivery`, which the dispatcher records as `ambiguous`, never resent on
its own.

`SmtpTransport` keeps one connection open across sends (opening one per message costs several
round trips and a TLS handshake) and reconnects when the server has closed it.
"""

from __future__ import annotations

import contextlib
import queue
import re
import smtplib
import ssl
import threading
from collections.abc import Callable
from typing import Protocol

from omniweave.channels.email.message import render_email
from omniweave.channels.port import Delivered, Message, Outcome, Terminal, Transient
from omniweave.settings import EmailChannelSettings

SOFT_BOUNCE = re.compile(r"\bSMTP 4\d\d at (RCPT|DATA)\b")
"""How a Transient reason of a recipient's 4xx reads (feedback: retries exhausted -> suppressed)."""

_POLICY_STATUS = re.compile(r"^\s*5\.[67]\.\d+")


class AmbiguousDelivery(Exception):
    """The connection broke after the message was handed over: the server may or may not have it."""


class EmailTransport(Protocol):
    """Where a built e-mail goes: one envelope sender, one recipient, the bytes; one outcome back."""

    def deliver(self, sender: str, recipient: str, data: bytes, message_id: str) -> Outcome:
        """Hand the message over; `message_id` is the provider id of a delivery."""
        ...

    def close(self) -> None:
        """Release any connection."""
        ...


def _text(reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    return " ".join(text.split())[:300]


def reply_outcome(stage: str, code: int, reply: bytes | str, message_id: str) -> Outcome:
    """The outcome of SMTP reply `code` to the command `stage` (MAIL, RCPT or DATA); see the table."""
    detail = _text(reply)
    reason = f"SMTP {code} at {stage}: {detail}" if detail else f"SMTP {code} at {stage}"
    if 200 <= code < 300:
        return Delivered(message_id)
    if 400 <= code < 500:
        return Transient(reason)
    if stage == "MAIL":
        return Terminal(f"the server refused our sender: {reason}")
    if stage == "DATA" and _POLICY_STATUS.match(detail):
        return Terminal(f"the server refused the content: {reason}")
    if 500 <= code < 600:
        return Terminal(f"hard bounce: {reason}", suppress=True)
    return Transient(f"unexpected reply: {reason}")


class SmtpTransport:
    """A connection to one SMTP server, kept open across sends and reopened when it drops."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        security: str = "starttls",
        username: str = "",
        password: str | None = None,
        timeout: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
        local_hostname: str | None = None,
    ):
        if security not in ("starttls", "tls", "plain"):
            raise ValueError(f"security must be starttls, tls or plain, got {security!r}")
        self.host, self.port, self.security = host, port, security
        self.username, self.password, self.timeout = username, password, timeout
        self.ssl_context = ssl_context or ssl.create_default_context()
        self.local_hostname = local_hostname
        self._smtp: smtplib.SMTP | None = None
        self._lock = threading.Lock()
        self.connections = 0  # how many connections were opened (a reused one counts once)

    @classmethod
    def from_settings(cls, settings: EmailChannelSettings, password: str | None) -> SmtpTransport:
        """The transport `[channels.email]` describes (the password read from its variable by the caller)."""
        return cls(
            settings.host,
            settings.port,
            security=settings.security,
            username=settings.username,
            password=password,
            timeout=settings.timeout_seconds,
        )

    def _open(self) -> smtplib.SMTP:
        smtp: smtplib.SMTP
        if self.security == "tls":
            smtp = smtplib.SMTP_SSL(
                self.host, self.port, timeout=self.timeout, context=self.ssl_context, local_hostname=self.local_hostname
            )
        else:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout, local_hostname=self.local_hostname)
        try:
            smtp.ehlo()
            if self.security == "starttls":
                smtp.starttls(context=self.ssl_context)
                smtp.ehlo()
            if self.username:
                self._login(smtp)
        except BaseException:
            _quietly_close(smtp)
            raise
        self.connections += 1
        return smtp

    def _login(self, smtp: smtplib.SMTP) -> None:
        """AUTH PLAIN when offered (one attempt: a refused password is not retried with another
        mechanism), else whatever smtplib picks among the offered ones."""
        offered = smtp.esmtp_features.get("auth", "").upper().split()
        if "PLAIN" in offered:
            smtp.user, smtp.password = self.username, self.password or ""
            smtp.auth("PLAIN", smtp.auth_plain)
        else:
            smtp.login(self.username, self.password or "")

    def deliver(self, sender: str, recipient: str, data: bytes, message_id: str) -> Outcome:
        """MAIL, RCPT, DATA on the open connection (opened or reopened as needed); see the module table."""
        with self._lock:
            try:
                return self._deliver(sender, recipient, data, message_id)
            except smtplib.SMTPAuthenticationError as exc:
                self._drop()
                return Terminal(
                    f"SMTP authentication refused for {self.username!r}: {exc.smtp_code} {_text(exc.smtp_error)}"
                )
            except smtplib.SMTPNotSupportedError as exc:
                self._drop()
                return Terminal(f"the SMTP server at {self.host}:{self.port} does not offer {self.security}: {exc}")
            except ssl.SSLCertVerificationError as exc:
                self._drop()
                return Terminal(f"the SMTP server's certificate is not trusted ({self.host}:{self.port}): {exc}")
            except (smtplib.SMTPException, OSError) as exc:  # refused, timeout, lost before DATA
                self._drop()
                return Transient(f"SMTP connection to {self.host}:{self.port} failed: {type(exc).__name__}: {exc}")

    def _deliver(self, sender: str, recipient: str, data: bytes, message_id: str) -> Outcome:
        reused = self._smtp is not None
        smtp = self._smtp or self._open()
        self._smtp = smtp
        try:
            code, reply = smtp.mail(sender)
        except (TimeoutError, smtplib.SMTPServerDisconnected, ConnectionError):
            if not reused:
                raise
            self._drop()  # the server closed the idle connection: open a fresh one, once
            smtp = self._smtp = self._open()
            code, reply = smtp.mail(sender)
        if code != 250:
            return self._refused(smtp, "MAIL", code, reply, message_id)
        code, reply = smtp.rcpt(recipient)
        if code not in (250, 251):
            return self._refused(smtp, "RCPT", code, reply, message_id)
        try:
            code, reply = smtp.data(data)
        except smtplib.SMTPDataError as exc:  # the server refused DATA itself (before the content)
            return self._refused(smtp, "DATA", exc.smtp_code, exc.smtp_error, message_id)
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            self._drop()
            raise AmbiguousDelivery(
                f"the connection to {self.host}:{self.port} broke while sending {message_id}: {exc}"
            ) from exc
        if code != 250:
            return self._refused(smtp, "DATA", code, reply, message_id)
        return Delivered(message_id)

    def _refused(self, smtp: smtplib.SMTP, stage: str, code: int, reply: bytes | str, message_id: str) -> Outcome:
        try:
            smtp.rset()
        except (smtplib.SMTPException, OSError):
            self._drop()
        return reply_outcome(stage, code, reply, message_id)

    def _drop(self) -> None:
        if self._smtp is not None:
            _quietly_close(self._smtp)
            self._smtp = None

    def close(self) -> None:
        """Say QUIT and close the connection (a later send opens a new one)."""
        with self._lock:
            if self._smtp is not None:
                with contextlib.suppress(smtplib.SMTPException, OSError):
                    self._smtp.quit()
                self._drop()


class SmtpPool:
    """Several SMTP connections to one server, each used by one send at a time, so that a dispatcher
    with worker threads sends in parallel (one connection carries one message at a time)."""

    def __init__(self, make: Callable[[], SmtpTransport], size: int):
        if size < 1:
            raise ValueError(f"an SMTP pool needs at least one connection, got {size}")
        self._free: queue.LifoQueue[SmtpTransport] = queue.LifoQueue()
        self.transports = [make() for _ in range(size)]
        for transport in self.transports:
            self._free.put(transport)

    @property
    def connections(self) -> int:
        """How many connections were opened over the pool's life."""
        return sum(t.connections for t in self.transports)

    def deliver(self, sender: str, recipient: str, data: bytes, message_id: str) -> Outcome:
        """Deliver on the first free connection (waits for one when all are busy)."""
        transport = self._free.get()
        try:
            return transport.deliver(sender, recipient, data, message_id)
        finally:
            self._free.put(transport)

    def close(self) -> None:
        """Close every connection."""
        for transport in self.transports:
            transport.close()


def _quietly_close(smtp: smtplib.SMTP) -> None:
    with contextlib.suppress(OSError):
        smtp.close()


class EmailChannel:
    """The e-mail `Channel`: builds the MIME message and hands it to its transport."""

    name = "email"

    def __init__(
        self,
        settings: EmailChannelSettings,
        *,
        public_url: str,
        key: bytes,
        transport: EmailTransport,
        track: bool = True,
    ):
        from omniweave.channels import links

        self.settings = settings
        self.public_url = public_url.rstrip("/")
        self.transport = transport
        self.track = track
        self._key = key
        self._sign = lambda purpose, payload: links.sign(key, purpose, payload)

    def send(self, message: Message, idempotency_key: str) -> Outcome:
        """Build the mail for `message` (Message-ID from `idempotency_key`) and deliver it; InputError
        when the content or address cannot make a mail (the dispatcher records it as dead)."""
        mail = render_email(
            message,
            idempotency_key,
            settings=self.settings,
            public_url=self.public_url,
            sign=self._sign,
            track=self.track,
        )
        return self.transport.deliver(self.settings.from_address, mail.to, mail.data, mail.message_id)

    def close(self) -> None:
        """Close the transport's connection."""
        self.transport.close()
