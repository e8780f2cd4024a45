"""Identifiers as they really appear, and the ledger that records every one emitted.

Real data carries the same person's e-mail with capitals, spaces and typos, the same phone as
`+44 7700 900123`, `07700900123` and `0044 7700 900123`, and the customer number as `c10004821`
or `10004821`. The functions here produce those raw forms; `IdentityLedger` remembers which raw
form of which person was written anywhere, so `ground_truth/identities.csv` lists exactly the
identifiers in the data with their normalised value and true person.

Normalised values (the ground truth's `normalized` column): e-mail stripped and lower-cased
(a typo stays a typo), phone in E.164, customer number `C` + digits, device id lower-case,
loyalty card digits only, anonymous/user ids as they are, `name_postcode` as
`first last|POSTCODE` lower-cased names and upper-cased postcode without spaces.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, TextIO

import numpy as np

if TYPE_CHECKING:
    from _csv import Writer as CsvWriter  # what csv.writer returns

# --- raw forms ------------------------------------------------------------------------------

_DOMAIN_TYPOS = {
    "gmail.com": "gmial.com",
    "hotmail.co.uk": "hotmial.co.uk",
    "yahoo.co.uk": "yaho.co.uk",
    "outlook.com": "outlok.com",
    "icloud.com": "icoud.com",
    "btinternet.com": "btinternet.co",
    "live.co.uk": "live.co.k",
    "hotmail.com": "hotmail.con",
    "eircom.net": "eircom.ne",
    "ziggo.nl": "zigo.nl",
    "kpnmail.nl": "kpnmail.n",
}


def _typo(email: str, pid: int) -> str:
    local, _, domain = email.partition("@")
    if pid % 2 == 0 and domain in _DOMAIN_TYPOS:
        return f"{local}@{_DOMAIN_TYPOS[domain]}"
    i = 1 + pid % max(1, len(local) - 2)
    local = local[: i - 1] + local[i] + local[i - 1] + local[i + 1 :] if len(local) > 2 else local + local[-1]
    return f"{local}@{domain}"


def _capitalised(email: str) -> str:
    local, _, domain = email.partition("@")
    return ".".join(p[:1].upper() + p[1:] for p in local.split(".")) + "@" + domain.capitalize()


EMAIL_VARIANTS: tuple[Callable[[str, int], str], ...] = (
    lambda e, pid: e,  # 0 as registered
    lambda e, pid: _capitalised(e),  # 1 Jane.Smith12@Gmail.com
    lambda e, pid: e.upper(),  # 2 shouted
    lambda e, pid: f" {e} " if pid % 2 else f"{e} ",  # 3 stray whitespace
    _typo,  # 4 a typo: a different normalised value for the same person
)
"""Raw forms of an e-mail address, by variant index (a bit in the ledger's mask)."""


def phone_variant(country_code: str, nsn: str, split: int, k: int) -> str:
    """Raw form `k` of a phone: 0 E.164, 1 +CC spaced, 2 national spaced, 3 national compact,
    4 00CC spaced, 5 +CC (0) spaced."""
    head, tail = nsn[:split], nsn[split:]
    if len(tail) >= 7:
        tail = f"{tail[: len(tail) - 4]} {tail[-4:]}" if country_code != "31" else tail
    if k == 0:
        return f"+{country_code}{nsn}"
    if k == 1:
        return f"+{country_code} {head} {tail}"
    if k == 2:
        return f"0{head}-{tail.replace(' ', '')}" if country_code == "31" else f"0{head} {tail}"
    if k == 3:
        return f"0{nsn}"
    if k == 4:
        return f"00{country_code} {head} {tail}"
    return f"+{country_code} (0){head} {tail}"


CUSTOMER_NUMBER_VARIANTS: tuple[Callable[[str], str], ...] = (
    lambda c: c,
    lambda c: c.lower(),
    lambda c: c[1:],
    lambda c: f"{c[0]}-{c[1:]}",
)
"""Raw forms of a customer number as agents type them."""


def uuid_strings(rng: np.random.Generator, count: int, upper: bool = False) -> list[str]:
    """`count` random UUID4 strings from `rng` (deterministic for the seed)."""
    raw = rng.integers(0, 2**63, size=(count, 2), dtype=np.int64)
    out = []
    for hi, lo in raw.tolist():
        h = f"{hi:016x}{lo:016x}"
        s = f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) % 4]}{h[17:20]}-{h[20:32]}"
        out.append(s.upper() if upper else s)
    return out


def hex_strings(rng: np.random.Generator, count: int, digits: int = 16) -> list[str]:
    """`count` random lower-case hex strings of `digits` digits (≤ 16)."""
    return [f"{x:016x}"[:digits] for x in rng.integers(0, 2**63, size=count, dtype=np.int64).tolist()]


# --- the ledger ---------------------------------------------------------------------------------

KINDS = (
    "anonymous_id",
    "user_id",
    "email",
    "phone",
    "loyalty_card",
    "device_id",
    "customer_number",
    "coupon_code",
    "name_postcode",
)

PLACEHOLDER_CARD = "0000000000"
PLACEHOLDER_EMAILS = ("noemail@noemail.com", "none@none.com")


class IdentityLedger:
    """Which raw form of which identifier of which person of one block was emitted.

    Per kind a bit mask per person (bit k = raw variant / slot k was written somewhere);
    `write` turns the set bits into ground-truth rows.
    """

    def __init__(self, size: int):
        self.masks = {
            kind: np.zeros(size, np.uint16)
            for kind in (
                "email",
                "phone",
                "customer_number",
                "user_id",
                "loyalty_card",
                "web_anon",
                "app_anon",
                "device_id",
                "msg_anon",
                "name_postcode",
            )
        }
        self.extra: list[tuple[str, str, str, str]] = []  # (kind, normalised, raw, person) rows
        self.placeholders: set[tuple[str, str]] = set()

    def mark(self, kind: str, idx: np.ndarray, bits: np.ndarray | int) -> None:
        """Record that persons `idx` (block positions) had raw form(s) `bits` of `kind` written."""
        if np.size(idx):
            np.bitwise_or.at(self.masks[kind], idx, (np.left_shift(1, bits)).astype(np.uint16))

    def mark_one(self, kind: str, k: int, bit: int) -> None:
        """`mark` for one person."""
        self.masks[kind][k] |= 1 << bit

    def add(self, kind: str, normalised: str, raw: str, person_id: str) -> None:
        """Record one identifier directly (coupon codes)."""
        self.extra.append((kind, normalised, raw, person_id))

    def placeholder(self, kind: str, raw: str) -> None:
        """Record a shared placeholder value (a till's dummy card): it belongs to nobody."""
        self.placeholders.add((kind, raw))

    def set_positions(self, kind: str) -> Iterable[tuple[int, int]]:
        """(person position, bit) for every set bit of `kind`."""
        mask = self.masks[kind]
        for bit in range(16):
            for i in np.nonzero(mask & (1 << bit))[0].tolist():
                yield i, bit


def write_header(fh: TextIO, header: bool = True) -> CsvWriter:
    """Start `identities.csv` (with its header row unless `header` is false); returns its writer."""
    writer = csv.writer(fh, lineterminator="\n")
    if header:
        writer.writerow(["kind", "normalized", "raw", "person_id"])
    return writer
