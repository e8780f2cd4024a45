"""A letter: the address block, the text and an optional QR link, checked to fit one A4 page.

A print message's content is `address` (the postal address: a list of lines, or one text with
line breaks; 2 to 6 lines of at most 50 characters), `text` (the letter; blank lines separate
paragraphs) and `qr_url` (optional: the http(s) link the letter's QR code opens, usually a short
link with UTM parameters and a recipient token). `letter_of` checks all of it when the message is
sent, so a batch never fails at print time: a text that does not fit the page is refused then.
"""

from __future__ import annotations

from dataclasses import dataclass

from reportlab.lib.pagesizes import A4
from reportlab.lib.units import mm
from reportlab.lib.utils import simpleSplit

from omniweave.channels.port import Message
from omniweave.errors import InputError

PAGE_WIDTH, PAGE_HEIGHT = A4
MARGIN = 25 * mm
ADDRESS_TOP = 50 * mm  # below the top edge: where a C5/DL envelope's window is
TEXT_TOP = 105 * mm
QR_SIZE = 35 * mm
FONT, FONT_SIZE, LEADING = "Helvetica", 10.5, 14.0
TEXT_WIDTH = PAGE_WIDTH - 2 * MARGIN
TEXT_BOTTOM = MARGIN + QR_SIZE + 8 * mm  # the QR code and its caption sit below the text
MAX_TEXT_LINES = int((PAGE_HEIGHT - TEXT_TOP - TEXT_BOTTOM) // LEADING)
MAX_ADDRESS_LINES, MAX_ADDRESS_CHARS = 6, 50


@dataclass(frozen=True)
class Letter:
    """One letter of a batch: its place `n` (1-based), the send key and what is printed."""

    batch: str
    n: int
    send_key: str
    to: str
    person_id: str | None
    campaign: str | None
    message_name: str | None
    address: tuple[str, ...]
    text: str
    qr_url: str | None
    queued_at: float

    def to_dict(self) -> dict[str, object]:
        out = dict(self.__dict__)
        out["address"] = list(self.address)
        return out

    @staticmethod
    def from_dict(raw: dict[str, object]) -> Letter:
        values = dict(raw)
        values["address"] = tuple(str(line) for line in raw["address"])  # type: ignore[attr-defined]
        return Letter(**values)  # type: ignore[arg-type]


def address_lines(raw: object) -> tuple[str, ...]:
    """The address as 2..6 trimmed non-empty lines; InputError naming content.address otherwise."""
    if isinstance(raw, str):
        lines = [line.strip() for line in raw.splitlines()]
    elif isinstance(raw, list | tuple) and all(isinstance(line, str) for line in raw):
        lines = [line.strip() for line in raw]
    else:
        raise InputError(
            "expected the postal address as a list of lines (or one text with line breaks)", field="content.address"
        )
    lines = [line for line in lines if line]
    if not 2 <= len(lines) <= MAX_ADDRESS_LINES:
        raise InputError(f"an address has 2 to {MAX_ADDRESS_LINES} lines, got {len(lines)}", field="content.address")
    for index, line in enumerate(lines):
        if len(line) > MAX_ADDRESS_CHARS:
            raise InputError(
                f"line {index + 1} has {len(line)} characters; at most {MAX_ADDRESS_CHARS} fit the envelope window",
                field="content.address",
            )
    return tuple(lines)


def text_lines(text: str) -> list[str]:
    """The letter's text broken into printed lines at the page's width (paragraphs kept)."""
    out: list[str] = []
    for paragraph in text.replace("\r\n", "\n").split("\n"):
        out.extend(simpleSplit(paragraph, FONT, FONT_SIZE, TEXT_WIDTH) or [""])
    return out


def letter_of(message: Message, key: str, batch: str, n: int, at: float) -> Letter:
    """The letter `message` asks for, checked (address, text that fits one page, an http(s) QR link)."""
    address = address_lines(message.content.get("address", message.to))
    text = message.text("text").strip()
    if not text:
        raise InputError("a letter needs content.text", field="content.text")
    lines = len(text_lines(text))
    if lines > MAX_TEXT_LINES:
        raise InputError(
            f"the text takes {lines} lines; one page holds {MAX_TEXT_LINES} (a letter is one page)",
            field="content.text",
        )
    qr_url = message.text("qr_url").strip() or None
    if qr_url is not None and (not qr_url.startswith(("http://", "https://")) or len(qr_url) > 1000):
        raise InputError(
            f"qr_url must be an http(s) URL of at most 1000 characters, got {qr_url[:60]!r}", field="content.qr_url"
        )
    return Letter(
        batch, n, key, message.to, message.person_id, message.campaign, message.message_name, address, text, qr_url, at
    )
