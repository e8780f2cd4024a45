"""A fake mail house shipped in the package: it takes a printed batch the way a mail house would.

`FakeMailHouse().receive(batch)` reads the batch's CSV and PDF as handed over, checks they agree
(one PDF page per CSV row, every row with a send key and an address) and keeps the letters it would
post; `posted` lists (batch, n, send_key) in order. Offline runs use it in place of an upload to a
real mail house; it needs no library beyond the standard one (pages are counted in the PDF's
uncompressed page tree, which is how reportlab writes it).
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from omniweave.channels.print.adapter import PrintBatch
from omniweave.errors import InputError

_PAGE = re.compile(rb"/Type\s*/Page(?![s\w])")


class FakeMailHouse:
    """Receives printed batches and keeps what it would post."""

    def __init__(self) -> None:
        self.posted: list[tuple[str, int, str]] = []

    def receive(self, batch: PrintBatch) -> int:
        """Check the batch's files agree and take its letters; returns how many. InputError if they disagree."""
        pdf = Path(batch.pdf).read_bytes()
        if not pdf.startswith(b"%PDF-"):
            raise InputError(f"{batch.pdf} is not a PDF", field="pdf")
        with Path(batch.csv).open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        pages = len(_PAGE.findall(pdf))
        if pages != len(rows):
            raise InputError(f"the PDF has {pages} pages but the CSV {len(rows)} rows", field="csv")
        for index, row in enumerate(rows, start=1):
            if not row.get("send_key") or not row.get("address_1"):
                raise InputError("a row without send key or address", field="csv", record=index)
            self.posted.append((row["batch"], int(row["n"]), row["send_key"]))
        return len(rows)
