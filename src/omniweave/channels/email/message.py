"""The MIME message of one e-mail send: HTML + text, a deterministic Message-ID, RFC 8058 headers.

`render_email(message, key, …)` turns a rendered `Message` (content `subject`, `html`, `text`) into
the bytes SMTP sends (`build_email` gives the same mail parsed as an `EmailMessage`):

- `multipart/alternative` with the text part first and the HTML part last (clients show the last
  part they can display); a message with only `text` is a plain `text/plain` mail, one with only
  `html` gets a text part made from the HTML;
- `Message-ID: <{key}@{sender domain}>`, derived from the ledger's idempotency key (characters
  not allowed in a Message-ID are written `=XX`), so a retry carries the same id and a receiver
  that deduplicates on it keeps one copy;
- `List-Unsubscribe: <{public_url}/u/{token}>` (and `<mailto:…?subject=unsubscribe>` when
  `unsubscribe_mailto` is set) with `List-Unsubscribe-Post: List-Unsubscribe=One-Click` (RFC 8058);
- click tracking: every `href="http(s)://…"` in the HTML becomes `{public_url}/c/{token}`, the
  token carrying the send key and the original URL (links that already point at `public_url` stay);
- an open pixel `<img src="{public_url}/o/{token}.gif">` before `</body>` (unreliable: clients that
  block images never load it, Apple Mail Privacy Protection loads every one; count clicks instead);
- `[[unsubscribe_url]]` anywhere in the HTML or text becomes the unsubscribe page's URL, for the
  footer's visible unsubscribe link.

The function is pure apart from the signer it is handed (`sign(purpose, payload) -> token`).
"""

from __future__ import annotations

import binascii
import hashlib
import html as htmlmod
import re
from collections.abc import Callable
from dataclasses import dataclass
from email import message_from_bytes
from email.header import Header
from email.message import EmailMessage
from email.policy import default
from email.utils import formataddr, formatdate

from omniweave.channels.port import Message, address_key
from omniweave.errors import InputError
from omniweave.events.masking import masked
from omniweave.settings import EmailChannelSettings

CRLF = "\r\n"

UNSUBSCRIBE_MARKER = "[[unsubscribe_url]]"
ONE_CLICK = "List-Unsubscribe=One-Click"

Signer = Callable[[str, dict[str, object]], str]

_HREF = re.compile(r"""(\bhref\s*=\s*)(["'])(https?://[^"'<>\s]+)\2""", re.IGNORECASE)
_ID_SAFE = re.compile(r"[^A-Za-z0-9!#$%&'*+\-/?^_`{|}~]")
_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)
_TAGS = re.compile(r"<[^>]+>")
_BLOCKS = re.compile(r"<(?:br|/p|/div|/h[1-6]|/li|/tr)\b[^>]*>", re.IGNORECASE)
_SCRIPTS = re.compile(r"<(style|script|head)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)


def message_id(key: str, from_address: str) -> str:
    """The Message-ID of the send with ledger key `key`: `<{key, =XX-escaped}@{sender domain}>`.

    Keys longer than 120 characters once escaped are shortened to 80 characters and a SHA-256 digest,
    so the id stays deterministic and within header limits.
    """
    local = _ID_SAFE.sub(lambda m: "".join(f"={b:02X}" for b in m.group(0).encode()), key)
    if len(local) > 120:
        local = local[:80] + "=" + hashlib.sha256(key.encode()).hexdigest()[:32]
    domain = from_address.rpartition("@")[2].strip() or "omniweave.invalid"
    return f"<{local}@{domain}>"


def unsubscribe_token(sign: Signer, key: str, to: str) -> str:
    """The token of the unsubscribe link of send `key` to `to` (purpose `u`)."""
    return sign("u", {"k": key, "ch": "email", "a": address_key("email", to)})


def html_to_text(html: str) -> str:
    """A readable text version of an HTML body (for a message written only in HTML)."""
    text = _SCRIPTS.sub("", html)
    text = _BLOCKS.sub("\n", text)
    text = htmlmod.unescape(_TAGS.sub("", text))
    lines = [" ".join(line.split()) for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"


def track_links(html: str, sign: Signer, key: str, public_url: str) -> str:
    """`html` with every http(s) href pointing at `{public_url}/c/{token}` (the token holds the target)."""

    def rewrite(match: re.Match[str]) -> str:
        target = htmlmod.unescape(match.group(3))
        if target.startswith(public_url + "/"):
            return match.group(0)
        token = sign("c", {"k": key, "t": target})
        return f"{match.group(1)}{match.group(2)}{public_url}/c/{token}{match.group(2)}"

    return _HREF.sub(rewrite, html)


def add_open_pixel(html: str, pixel_url: str) -> str:
    """`html` with a 1x1 image at `pixel_url` before `</body>` (at the end when there is none)."""
    img = f'<img src="{htmlmod.escape(pixel_url)}" width="1" height="1" alt="" style="display:block;border:0">'
    found = list(_BODY_END.finditer(html))
    if not found:
        return html + img
    at = found[-1].start()
    return html[:at] + img + html[at:]


def _content(message: Message) -> tuple[str, str, str]:
    subject = message.text("subject").strip()
    html, text = message.text("html"), message.text("text")
    problems = []
    if not subject:
        problems.append("content.subject is missing or empty")
    elif "\n" in subject or "\r" in subject:
        problems.append("content.subject must be one line")
    if not html.strip() and not text.strip():
        problems.append("content needs html or text (or both)")
    if problems:
        raise InputError(f"e-mail to {masked(message.to)}: " + "; ".join(problems), field="content")
    return subject, html, text


_ADDRESS = re.compile(r"""^[^\s@<>,;:"()\[\]\\]+@[^\s@<>,;:"()\[\]\\]+$""")


def _check_address(to: str) -> str:
    address = to.strip()
    if not _ADDRESS.match(address):
        raise InputError(f"e-mail recipient {masked(to)} is not an address like name@example.com", field="to")
    if not address.isascii():
        raise InputError(
            f"e-mail recipient {masked(to)} is not ASCII (internationalised addresses are not supported)", field="to"
        )
    return address


def _header(name: str, value: str) -> bytes:
    """One header line: ASCII as is, anything else as RFC 2047 encoded words (UTF-8)."""
    value = " ".join(value.split())  # no CR/LF can reach the header block
    if value.isascii():
        return f"{name}: {value}\r\n".encode()
    return f"{name}: {Header(value, 'utf-8', header_name=name).encode(linesep=CRLF)}\r\n".encode()


def _qp(text: str) -> bytes:
    """`text` as quoted-printable UTF-8 with CRLF line ends."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n")
    return binascii.b2a_qp(lines.encode("utf-8"), istext=True).replace(b"\n", b"\r\n")


def _part(subtype: str, body: str) -> bytes:
    return (
        f'Content-Type: text/{subtype}; charset="utf-8"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n'.encode()
        + _qp(body)
    )


@dataclass(frozen=True)
class RenderedEmail:
    """A mail ready for SMTP: the recipient, its Message-ID and the bytes (CRLF line ends)."""

    to: str
    message_id: str
    data: bytes


def render_email(
    message: Message,
    key: str,
    *,
    settings: EmailChannelSettings,
    public_url: str,
    sign: Signer,
    track: bool = True,
) -> RenderedEmail:
    """The mail for `message` sent under ledger key `key`, as bytes (see the module docstring).

    Written directly rather than through `email.message.EmailMessage`, whose header objects cost
    several milliseconds a mail; `build_email` parses the same bytes back for inspection. Raises
    InputError naming the field when the content or the recipient cannot make a mail.
    """
    subject, html, text = _content(message)
    to = _check_address(message.to)
    public_url = public_url.rstrip("/")
    unsubscribe_url = f"{public_url}/u/{unsubscribe_token(sign, key, to)}"
    html = html.replace(UNSUBSCRIBE_MARKER, unsubscribe_url)
    text = text.replace(UNSUBSCRIBE_MARKER, unsubscribe_url)
    if html.strip():
        if not text.strip():
            text = html_to_text(html)
        if track:
            html = track_links(html, sign, key, public_url)
            html = add_open_pixel(html, f"{public_url}/o/{sign('o', {'k': key})}.gif")
    mid = message_id(key, settings.from_address)
    sender = (
        formataddr((settings.from_name, settings.from_address), charset="utf-8")
        if settings.from_name
        else settings.from_address
    )
    unsubscribe = f"<{unsubscribe_url}>"
    if settings.unsubscribe_mailto:
        unsubscribe += f", <mailto:{settings.unsubscribe_mailto}?subject=unsubscribe>"
    head = [
        _header("From", sender),
        _header("To", to),
        _header("Reply-To", settings.reply_to) if settings.reply_to else b"",
        _header("Subject", subject),
        _header("Date", formatdate(localtime=False, usegmt=True)),
        _header("Message-ID", mid),
        _header("List-Unsubscribe", unsubscribe),
        _header("List-Unsubscribe-Post", ONE_CLICK),
        b"MIME-Version: 1.0\r\n",
    ]
    if html.strip():
        boundary = "=_ow_" + hashlib.sha256(key.encode()).hexdigest()[:24]  # "=_" never occurs in QP
        head.append(f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n'.encode())
        sep = f"\r\n--{boundary}\r\n".encode()
        body = b"\r\n" + sep[2:] + _part("plain", text) + sep + _part("html", html) + f"\r\n--{boundary}--\r\n".encode()
    else:
        head.append(b'Content-Type: text/plain; charset="utf-8"\r\nContent-Transfer-Encoding: quoted-printable\r\n')
        body = b"\r\n" + _qp(text)
        if not body.endswith(b"\r\n"):
            body += b"\r\n"
    return RenderedEmail(to, mid, b"".join(head) + body)


def build_email(
    message: Message,
    key: str,
    *,
    settings: EmailChannelSettings,
    public_url: str,
    sign: Signer,
    track: bool = True,
) -> EmailMessage:
    """`render_email`'s mail parsed as an `EmailMessage` (to inspect or preview what is sent)."""
    rendered = render_email(message, key, settings=settings, public_url=public_url, sign=sign, track=track)
    parsed = message_from_bytes(rendered.data.replace(b"\r\n", b"\n"), policy=default)  # lines as Python writes them
    assert isinstance(parsed, EmailMessage)
    return parsed
