"""The demo world's customers sign up through the forms (issue 26), during the journeys' stretch.

Who: the customers the world gives an e-mail address but no e-mail consent (`customers.csv`: `email` set,
`email_opt_in` false) are the ones a newsletter form can still win; a share (`SHARE`, at most `MAX_SIGNUPS`, the
order fixed by a hash of the person id) signs up once, at a daytime moment of the stretch drawn from the same
hash. Where: online-first customers (`base_online >= base_store`) on the web; store customers through the
store's print and screens (`STORE_PLACEMENTS`: a poster, a receipt, a shelf, a TV, the till's kiosk), drawn
from the hash. The browser of a web or QR sign-up is the customer's own: its anonymous id is that of their first
web browser (`ground_truth/identities.csv`); the till's kiosk is the shop's tablet, so a kiosk sign-up has no id
of theirs (the form makes one).

How: through the public door, `forms.service.sign_up` with the shipped `newsletter` form, the shipped fake
e-mail transport for the confirmation mail and `now` = the sign-up's moment; it is confirmed at once, so the
inbox gets `identify`, `Form Submitted` and `Sign-up Confirmed` at that moment. `demo/journeys.activate` makes
the sign-ups of each tick before the engine runs at the tick's end, so `welcome_signup` enters them then.

The truth (`ground_truth/signups.json`): every sign-up (person, placement, moment, anonymous id) and the count per
placement; `omniweave kpis --by placement` counts `email_signups` (a person's first `email_opt_in = true`) and
must give the same numbers (`check`).
"""

from __future__ import annotations

import csv
import hashlib
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from omniweave.runtime import Runtime

FORM = "newsletter"
SHARE = 0.25
"""The share of the customers with an address but no consent who sign up during the stretch."""
MAX_SIGNUPS = 150
"""At most this many sign-ups (each is a form submit and a confirmation: ~0.1 s)."""
STORE_PLACEMENTS = ("poster", "receipt", "shelf", "tv", "kiosk")
DAY_HOURS = (9.0, 20.0)
"""Sign-ups happen between these UTC hours."""
TRUTH_FILE = "signups.json"


@dataclass(frozen=True)
class SignUp:
    """One customer's sign-up in the world."""

    person: str
    email: str
    first_name: str
    placement: str
    at: float
    anonymous_id: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "person": self.person,
            "placement": self.placement,
            "at": _iso(self.at),
            "anonymous_id": self.anonymous_id,
        }


@dataclass
class SignUps:
    """The stretch's sign-ups: the plan, what the forms answered, and the KPI beside the truth."""

    planned: list[SignUp]
    done: list[SignUp] = field(default_factory=list)
    confirmed: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    kpi: dict[str, int] | None = None

    @property
    def by_placement(self) -> dict[str, int]:
        """The true number of confirmed sign-ups per placement."""
        out: dict[str, int] = {}
        for s in self.done:
            out[s.placement] = out.get(s.placement, 0) + 1
        return dict(sorted(out.items()))

    def due(self, runtime: Runtime, before: float) -> int:
        """Make the planned sign-ups whose moment is before `before` (oldest first); how many were made."""
        from omniweave.forms import service as forms

        channels = forms.fake_channels(runtime)
        todo = [s for s in self.planned if s.at < before]
        self.planned = [s for s in self.planned if s.at >= before]
        for s in todo:
            answers = {"email": s.email, "first_name": s.first_name, "consent": ["email"]}
            result, confirmed = forms.sign_up(
                runtime,
                FORM,
                answers,
                placement=s.placement,
                anonymous_id=s.anonymous_id,
                channels=channels,
                now=s.at,
            )
            ok = [c for c in confirmed if c.status == "confirmed"]
            if result.status != "accepted" or not ok:
                why = result.status if result.status != "accepted" else "not confirmed"
                self.refused[why] = self.refused.get(why, 0) + 1
                continue
            self.done.append(s)
            self.confirmed += len(ok)
        return len(todo)


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _unit(*parts: str) -> float:
    digest = hashlib.sha256("|".join(("demo-signup", *parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _first_browsers(folder: Path, persons: set[str]) -> dict[str, str]:
    """Each person's first web browser id: the first uuid-shaped anonymous id the ground truth lists for them
    (a block writes its web browsers before its app installs; messaging ids carry a prefix)."""
    out: dict[str, str] = {}
    with open(folder / "ground_truth" / "identities.csv", newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            person = row["person_id"]
            if row["kind"] != "anonymous_id" or person not in persons or person in out:
                continue
            value = row["normalized"]
            try:
                if str(uuid.UUID(value)) == value:
                    out[person] = value
            except ValueError:
                continue
    return out


def plan(folder: Path, since: float, until: float) -> SignUps:
    """The world's sign-ups over [since, until) (module docstring), oldest first."""
    days = int((until - since) // 86400)
    if days < 1:
        return SignUps([])
    candidates = []
    with open(folder / "ground_truth" / "customers.csv", newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if row["email"] and row["email_opt_in"] == "False":
                candidates.append(row)
    candidates.sort(key=lambda r: _unit("who", r["person_id"]))
    chosen = candidates[: min(MAX_SIGNUPS, int(len(candidates) * SHARE))]
    web = {r["person_id"] for r in chosen if int(r["web_browsers"] or 0) > 0}
    browsers = _first_browsers(folder, web)
    out = []
    for row in chosen:
        person = row["person_id"]
        online_first = float(row["base_online"]) >= float(row["base_store"])
        if online_first:
            placement = "web"
        else:
            placement = STORE_PLACEMENTS[int(_unit("where", person) * len(STORE_PLACEMENTS))]
        day = int(_unit("day", person) * days)
        hour = DAY_HOURS[0] + _unit("hour", person) * (DAY_HOURS[1] - DAY_HOURS[0])
        at = round(since + day * 86400.0 + hour * 3600.0, 3)
        anonymous = None if placement == "kiosk" else browsers.get(person)
        if placement == "web" and anonymous is None:
            placement = "kiosk"  # an online-first customer without a browser of their own signs up at the till
        out.append(SignUp(person, row["email"], row["first_name"], placement, at, anonymous))
    out.sort(key=lambda s: (s.at, s.person))
    return SignUps(out)


def kpi_by_placement(runtime: Runtime) -> dict[str, int]:
    """`email_signups` by placement over the whole log (every period summed), as `omniweave kpis` computes it."""
    from omniweave.measure.service.kpis import kpi_table

    rows = kpi_table(runtime, period="month", by="placement", kpis=["email_signups"]).to_pylist()
    out: dict[str, int] = {}
    for r in rows:
        if r["value"] is not None and r["dimension_value"]:
            out[r["dimension_value"]] = out.get(r["dimension_value"], 0) + int(r["value"])
    return dict(sorted(out.items()))


def write_truth(folder: Path, signups: SignUps, since: float, until: float, *, welcome_entries: int) -> None:
    """`ground_truth/signups.json`: the sign-ups and their count per placement; `welcome_entries`: how many
    persons `welcome_signup` can enter (those whose browser the journey engine knows: not the kiosk's)."""
    doc = {
        "stretch": {"since": _iso(since), "until": _iso(until)},
        "form": FORM,
        "who": f"{SHARE:g} of the customers with an e-mail address and no e-mail consent, at most {MAX_SIGNUPS}",
        "by_placement": signups.by_placement,
        "refused": signups.refused,
        "welcome_signup_entries_expected": welcome_entries,
        "signups": [s.to_dict() for s in signups.done],
    }
    (folder / "ground_truth" / TRUTH_FILE).write_text(json.dumps(doc, indent=2))


def load_truth(folder: Path) -> dict[str, Any] | None:
    """The truth of an earlier run (None without it)."""
    try:
        return dict(json.loads((folder / "ground_truth" / TRUTH_FILE).read_text()))
    except FileNotFoundError:
        return None


def describe(truth: dict[str, int], kpi: dict[str, int] | None) -> str:
    """The line the demo prints: the true sign-ups per placement and whether the KPI counts the same."""
    total = sum(truth.values())
    parts = ", ".join(f"{k} {v:,}" for k, v in truth.items()) or "none"
    line = f"sign-up forms: {total:,} sign-ups in the stretch (ground_truth/{TRUTH_FILE})\n  {parts}"
    if kpi is None:
        return line
    verdict = "equal to the truth" if kpi == truth else "DIFFERS: " + ", ".join(f"{k} {v:,}" for k, v in kpi.items())
    return f"{line}\n  kpis email_signups by placement: {verdict}"
