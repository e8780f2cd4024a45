"""The demo world's tills capture e-mail addresses during the journeys' stretch (seed 004: "e-mail captured at the
till"), and the retailer imports them with the built-in `email_capture` importer, as it would its own file.

Who: store customers (`base_store > base_online`) the world gives an e-mail address but no e-mail consent
(`customers.csv`) and who do not sign up through a form in the stretch (demo/signups.py); a share (`SHARE`, at
most `MAX_CAPTURES`, the order fixed by a hash of the person id) gives the address at the till of their home store
once, with the e-mail opt-in, at a moment of the stretch's opening hours drawn from the same hash. The row names the
customer number the till looked up and the loyalty card they showed (the CRM's and the card's ids, which identity
resolved before the stretch), so the journey engine knows who it is.

How: the till's export of a day is a file `<folder>/journeys/email_capture-<day>.csv` in the importer's columns,
imported (`collect.service.import_file(runtime, "email_capture", …)`) at the first engine round after 06:00 UTC
(and at the stretch's end). The mapping announces its events to the inbox, so `welcome_till_capture` enters the
customer then and welcomes them in its daytime window, at the captured address (the profile was built before).

The truth (`ground_truth/captures.json`): every capture (person, store, moment) and their number.
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from omniweave.runtime import Runtime

SHARE = 0.3
"""The share of the eligible store customers who give their address at the till during the stretch."""
MAX_CAPTURES = 120
OPEN_HOURS = (9.0, 18.0)
"""Captures happen at the till between these UTC hours."""
COLUMNS = ("capture_id", "store_id", "timestamp", "email", "email_opt_in", "customer_number", "loyalty_card")
TRUTH_FILE = "captures.json"


@dataclass(frozen=True)
class Capture:
    """One customer's address captured at a till."""

    person: str
    email: str
    store: str
    at: float
    customer_number: str
    loyalty_card: str

    def row(self) -> dict[str, str]:
        return {
            "capture_id": "CAP-" + hashlib.sha256(f"capture|{self.person}".encode()).hexdigest()[:12].upper(),
            "store_id": self.store,
            "timestamp": _iso(self.at),
            "email": self.email,
            "email_opt_in": "true",
            "customer_number": self.customer_number,
            "loyalty_card": self.loyalty_card,
        }


@dataclass
class Captures:
    """The stretch's captures: the plan, and those imported so far."""

    planned: list[Capture]
    done: list[Capture] = field(default_factory=list)
    imported: int = 0

    def due(self, runtime: Runtime, folder: Path, before: float) -> int:
        """Import the captures made before `before` (one file of the till's export); how many."""
        from omniweave.collect.service import import_file

        todo = [c for c in self.planned if c.at < before]
        if not todo:
            return 0
        self.planned = [c for c in self.planned if c.at >= before]
        out = folder / "journeys"
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"email_capture-{datetime.fromtimestamp(before, UTC):%Y%m%dT%H%M}.csv"
        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(c.row() for c in todo)
        summary = import_file(runtime, "email_capture", path)
        self.imported += summary.rows_imported
        self.done.extend(todo)
        return len(todo)


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _unit(*parts: str) -> float:
    digest = hashlib.sha256("|".join(("demo-capture", *parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def plan(folder: Path, since: float, until: float, *, exclude: set[str]) -> Captures:
    """The world's till captures over [since, until) (module docstring), oldest first; `exclude`: the persons who
    sign up through a form in the stretch."""
    days = int((until - since) // 86400)
    if days < 1:
        return Captures([])
    candidates = []
    with open(folder / "ground_truth" / "customers.csv", newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if (
                row["email"]
                and row["email_opt_in"] == "False"
                and row["person_id"] not in exclude
                and row["home_store"]
                and row["customer_number"]
                and float(row["base_store"]) > float(row["base_online"])
            ):
                candidates.append(row)
    candidates.sort(key=lambda r: _unit("who", r["person_id"]))
    chosen = candidates[: min(MAX_CAPTURES, int(len(candidates) * SHARE))]
    out = []
    for row in chosen:
        person = row["person_id"]
        day = int(_unit("day", person) * days)
        hour = OPEN_HOURS[0] + _unit("hour", person) * (OPEN_HOURS[1] - OPEN_HOURS[0])
        at = round(since + day * 86400.0 + hour * 3600.0, 3)
        out.append(Capture(person, row["email"], row["home_store"], at, row["customer_number"], row["loyalty_card"]))
    out.sort(key=lambda c: (c.at, c.person))
    return Captures(out)


def write_truth(folder: Path, captures: Captures, *, welcome_entries: int) -> None:
    """`ground_truth/captures.json`: every capture, and how many `welcome_till_capture` entered."""
    doc: dict[str, Any] = {
        "who": f"{SHARE:g} of the store customers with an e-mail address, no e-mail consent and no form sign-up, "
        f"at most {MAX_CAPTURES}",
        "captured": len(captures.done),
        "imported": captures.imported,
        "welcome_till_capture_entries": welcome_entries,
        "captures": [
            {
                "person": c.person,
                "email": c.email,
                "customer_number": c.customer_number,
                "store": c.store,
                "at": _iso(c.at),
            }
            for c in captures.done
        ],
    }
    (folder / "ground_truth" / TRUTH_FILE).write_text(json.dumps(doc, indent=2))
