"""Direct mail: letters are queued into a batch; a flush writes the batch's PDF and CSV for the mail house.

`send(message, key)` checks the letter (letter.py) and appends it to its batch's queue
(`<folder>/<batch>.letters.jsonl`, one JSON line per letter, flushed to disk before the answer);
the answer is `Delivered("<batch>:<n>")`: the letter is in the print run. The same key twice is
the same letter. A message may name its batch (`content.batch`); otherwise letters go to the
day's batch `letters-YYYY-MM-DD` (`-2`, `-3` … once that one is printed).

`flush(batch)` writes `<batch>.pdf`, `<batch>.csv` and the manifest `<batch>.json` (which marks the
batch printed and holds its drop date: the print day plus `drop_days`). A letter is "delivered" on
its drop date (service.py `print_deliveries` reports it). A letter for a batch that is already
printed is refused (terminal). One process writes a folder at a time (the lock is per process).
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import orjson

from omniweave.channels.port import Delivered, Message, Outcome, Terminal
from omniweave.channels.print.letter import Letter, letter_of
from omniweave.channels.print.render import write_csv, write_pdf
from omniweave.errors import InputError

_BATCH = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def check_batch(batch: str) -> str:
    """`batch` if it can name files (letters, digits, `_`, `-`; 1 to 64); else an InputError."""
    if not isinstance(batch, str) or not _BATCH.match(batch):
        raise InputError(f"a batch name is 1 to 64 letters, digits, '_' or '-', got {batch!r}", field="content.batch")
    return batch


@dataclass(frozen=True)
class PrintBatch:
    """A printed batch: its files, when it was printed and when the mail house drops it."""

    batch: str
    pdf: str
    csv: str
    printed_at: float
    drop_date: str
    letters: tuple[Letter, ...]

    def to_dict(self) -> dict[str, object]:
        return {
            "batch": self.batch,
            "pdf": self.pdf,
            "csv": self.csv,
            "printed_at": self.printed_at,
            "drop_date": self.drop_date,
            "letters": [letter.to_dict() for letter in self.letters],
        }

    @staticmethod
    def from_dict(raw: dict[str, object]) -> PrintBatch:
        letters = tuple(Letter.from_dict(item) for item in raw["letters"])  # type: ignore[attr-defined]
        return PrintBatch(
            str(raw["batch"]),
            str(raw["pdf"]),
            str(raw["csv"]),
            float(raw["printed_at"]),  # type: ignore[arg-type]
            str(raw["drop_date"]),
            letters,
        )


class PrintChannel:
    """Letters into print batches under `folder` (see the module docstring)."""

    name = "print"

    def __init__(self, folder: str | Path, *, drop_days: int = 3, clock: Callable[[], float] = time.time):
        if drop_days < 0:
            raise InputError(f"drop_days must be >= 0, got {drop_days}", field="drop_days")
        self.folder = Path(folder)
        self.drop_days = drop_days
        self.clock = clock
        self._lock = threading.Lock()
        self._index: dict[str, tuple[int, dict[str, int]]] = {}  # batch -> (queue file size, send key -> n)

    # --- files of a batch -----------------------------------------------------------------------
    def _queue(self, batch: str) -> Path:
        return self.folder / f"{batch}.letters.jsonl"

    def _manifest(self, batch: str) -> Path:
        return self.folder / f"{batch}.json"

    def is_printed(self, batch: str) -> bool:
        """Whether `batch` has been flushed (its manifest exists)."""
        return self._manifest(batch).exists()

    def queued(self, batch: str) -> list[Letter]:
        """The letters queued in `batch`, in order."""
        path = self._queue(check_batch(batch))
        if not path.exists():
            return []
        with path.open("rb") as handle:
            return [Letter.from_dict(orjson.loads(line)) for line in handle if line.strip()]

    def open_batches(self) -> list[str]:
        """Batches with queued letters that are not printed yet."""
        names = sorted(p.name.removesuffix(".letters.jsonl") for p in self.folder.glob("*.letters.jsonl"))
        return [name for name in names if not self.is_printed(name)]

    def printed(self) -> list[PrintBatch]:
        """Every printed batch (its manifest), oldest first."""
        found = [
            PrintBatch.from_dict(orjson.loads(path.read_bytes()))
            for path in self.folder.glob("*.json")
            if (self.folder / (path.stem + ".letters.jsonl")).exists()
        ]
        return sorted(found, key=lambda b: (b.printed_at, b.batch))

    # --- the port -------------------------------------------------------------------------------
    def _batch_for(self, message: Message, now: float) -> str:
        named = message.content.get("batch")
        if named:
            return check_batch(str(named))
        base = f"letters-{datetime.fromtimestamp(now, UTC).date().isoformat()}"
        candidate, n = base, 1
        while self.is_printed(candidate):
            n += 1
            candidate = f"{base}-{n}"
        return candidate

    def send(self, message: Message, idempotency_key: str) -> Outcome:
        """Queue the letter in its batch; `Delivered("<batch>:<n>")`, or terminal if the batch is printed."""
        with self._lock:
            now = self.clock()
            batch = self._batch_for(message, now)
            if self.is_printed(batch):
                return Terminal(f"print batch {batch} is already printed; name another content.batch")
            index = self._keys(batch)
            if idempotency_key in index:
                return Delivered(f"{batch}:{index[idempotency_key]}")
            letter = letter_of(message, idempotency_key, batch, len(index) + 1, now)
            self.folder.mkdir(parents=True, exist_ok=True)
            with self._queue(batch).open("ab") as handle:
                handle.write(orjson.dumps(letter.to_dict()) + b"\n")
                handle.flush()
                os.fsync(handle.fileno())
                size = handle.tell()
            index[idempotency_key] = letter.n
            self._index[batch] = (size, index)
            return Delivered(f"{batch}:{letter.n}")

    def _keys(self, batch: str) -> dict[str, int]:
        """Send key -> place of the letters queued in `batch`, re-read only when the queue file changed."""
        path = self._queue(batch)
        size = path.stat().st_size if path.exists() else 0
        cached = self._index.get(batch)
        if cached is not None and cached[0] == size:
            return cached[1]
        index = {letter.send_key: letter.n for letter in self.queued(batch)}
        self._index[batch] = (size, index)
        return index

    def flush(self, batch: str) -> PrintBatch:
        """Write the batch's PDF and CSV and mark it printed (a second flush returns the same batch)."""
        check_batch(batch)
        with self._lock:
            if self.is_printed(batch):
                return PrintBatch.from_dict(orjson.loads(self._manifest(batch).read_bytes()))
            letters = self.queued(batch)
            if not letters:
                raise InputError(f"no letters are queued in print batch {batch!r}", field="batch")
            printed_at = self.clock()
            drop = datetime.fromtimestamp(printed_at, UTC).date() + timedelta(days=self.drop_days)
            pdf, csv_path = self.folder / f"{batch}.pdf", self.folder / f"{batch}.csv"
            write_pdf(pdf.with_suffix(".pdf.tmp"), letters, f"omniweave print batch {batch}")
            write_csv(csv_path.with_suffix(".csv.tmp"), letters, drop)
            os.replace(pdf.with_suffix(".pdf.tmp"), pdf)
            os.replace(csv_path.with_suffix(".csv.tmp"), csv_path)
            done = PrintBatch(batch, str(pdf), str(csv_path), printed_at, drop.isoformat(), tuple(letters))
            tmp = self._manifest(batch).with_suffix(".json.tmp")
            tmp.write_bytes(orjson.dumps(done.to_dict(), option=orjson.OPT_INDENT_2))
            os.replace(tmp, self._manifest(batch))
            return done

    def due(self, today: date) -> list[PrintBatch]:
        """Printed batches whose drop date is `today` or earlier (their letters count as delivered)."""
        return [b for b in self.printed() if date.fromisoformat(b.drop_date) <= today]
