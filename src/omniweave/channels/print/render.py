"""The print files of a batch: a PDF (one A4 page per letter, the QR code embedded as an image) and a CSV.

The QR code of each letter is drawn by segno as a PNG (error correction M, 4-module quiet zone)
and embedded in the page at 35 mm, so a phone reads it from a printed page and a test can take the
very image out of the PDF and decode it. The CSV is what a mail house needs to post the batch and
report back: the letter's place in the PDF, the recipient, the address lines, the send key and
the drop date.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from datetime import date
from pathlib import Path

import segno
from reportlab.lib.utils import ImageReader
from reportlab.pdfgen import canvas

from omniweave.channels.print.letter import (
    ADDRESS_TOP,
    FONT,
    FONT_SIZE,
    LEADING,
    MARGIN,
    MAX_ADDRESS_LINES,
    PAGE_HEIGHT,
    PAGE_WIDTH,
    QR_SIZE,
    TEXT_TOP,
    Letter,
    text_lines,
)

CSV_COLUMNS = (
    "batch",
    "n",
    "page",
    "recipient",
    *(f"address_{i}" for i in range(1, MAX_ADDRESS_LINES + 1)),
    "send_key",
    "campaign",
    "qr_url",
    "drop_date",
)


def qr_png(url: str, scale: int = 8) -> bytes:
    """The QR code of `url` as a PNG (error correction M, quiet zone of 4 modules)."""
    out = io.BytesIO()
    segno.make_qr(url, error="m").save(out, kind="png", scale=scale, border=4)
    return out.getvalue()


def write_pdf(path: Path, letters: Sequence[Letter], title: str) -> None:
    """One page per letter: the address in the envelope window, the text, the QR code bottom right."""
    pdf = canvas.Canvas(str(path), pagesize=(PAGE_WIDTH, PAGE_HEIGHT), invariant=True)
    pdf.setTitle(title)
    pdf.setCreator("omniweave")
    for letter in letters:
        pdf.setFont(FONT, FONT_SIZE)
        y = PAGE_HEIGHT - ADDRESS_TOP
        for line in letter.address:
            pdf.drawString(MARGIN, y, line)
            y -= LEADING
        y = PAGE_HEIGHT - TEXT_TOP
        for line in text_lines(letter.text):
            pdf.drawString(MARGIN, y, line)
            y -= LEADING
        if letter.qr_url:
            x = PAGE_WIDTH - MARGIN - QR_SIZE
            pdf.drawImage(ImageReader(io.BytesIO(qr_png(letter.qr_url))), x, MARGIN, QR_SIZE, QR_SIZE)
            pdf.setFont(FONT, 7)
            pdf.drawRightString(PAGE_WIDTH - MARGIN, MARGIN - 4 * 2.834, "Scan with your phone camera")
        pdf.setFont(FONT, 6)
        pdf.drawString(MARGIN, MARGIN / 2, f"{letter.batch} · {letter.n}")
        pdf.showPage()
    pdf.save()


def write_csv(path: Path, letters: Sequence[Letter], drop_date: date) -> None:
    """The mail house's list: one row per letter, in PDF page order (CSV_COLUMNS)."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        for page, letter in enumerate(letters, start=1):
            lines = list(letter.address) + [""] * (MAX_ADDRESS_LINES - len(letter.address))
            writer.writerow(
                [
                    letter.batch,
                    letter.n,
                    page,
                    letter.person_id or "",
                    *lines,
                    letter.send_key,
                    letter.campaign or "",
                    letter.qr_url or "",
                    drop_date.isoformat(),
                ]
            )
