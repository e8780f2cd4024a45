"""Where the demo world is written: JSON-lines for online events, CSV for offline files.

The CSV columns are exactly those of docs/file-formats.md (required and optional, in that
order), so the built-in importers read them without a mapping.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson

OFFLINE_COLUMNS: dict[str, tuple[str, ...]] = {
    "till": (
        "transaction_id",
        "store_id",
        "timestamp",
        "sku",
        "product_name",
        "category",
        "quantity",
        "unit_price",
        "till_id",
        "line_discount",
        "coupon_code",
        "loyalty_card",
        "email",
        "phone",
        "customer_number",
        "currency",
        "payment_method",
    ),
    "store_visits": (
        "visit_id",
        "store_id",
        "timestamp",
        "visit_type",
        "loyalty_card",
        "device_id",
        "email",
        "phone",
        "event_id",
        "event_name",
        "dwell_minutes",
    ),
    "customers": (
        "customer_number",
        "updated_at",
        "first_name",
        "last_name",
        "email",
        "phone",
        "birth_date",
        "postcode",
        "gender",
        "email_opt_in",
        "sms_opt_in",
        "created_at",
        "account_id",
    ),
    "loyalty": (
        "card_number",
        "timestamp",
        "store_id",
        "first_name",
        "last_name",
        "email",
        "phone",
        "birth_date",
        "postcode",
        "gender",
        "email_opt_in",
        "sms_opt_in",
        "customer_number",
    ),
    "coupons": (
        "redemption_id",
        "coupon_code",
        "timestamp",
        "redeemed_channel",
        "campaign",
        "store_id",
        "loyalty_card",
        "email",
        "phone",
        "order_id",
        "discount",
        "issued_channel",
    ),
    "gift_cards": (
        "transaction_id",
        "gift_card_id",
        "action",
        "timestamp",
        "channel",
        "value",
        "currency",
        "store_id",
        "order_id",
        "loyalty_card",
        "email",
    ),
    "qr_scans": ("scan_id", "timestamp", "qr_code_id", "placement", "campaign", "anonymous_id", "device_id", "url"),
    "call_centre": (
        "contact_id",
        "timestamp",
        "customer_number",
        "phone",
        "email",
        "first_name",
        "last_name",
        "postcode",
        "reason",
        "outcome",
        "agent_id",
        "duration_seconds",
    ),
    "direct_mail": (
        "mailing_id",
        "timestamp",
        "campaign",
        "customer_number",
        "first_name",
        "last_name",
        "address",
        "postcode",
        "offer_code",
    ),
    "email_export": (
        "event_id",
        "timestamp",
        "event_type",
        "email",
        "campaign_id",
        "campaign_name",
        "subject",
        "link_url",
        "bounce_type",
    ),
    "ad_spend": ("date", "channel", "campaign", "spend", "platform", "impressions", "clicks", "currency"),
    "surveys": (
        "response_id",
        "timestamp",
        "score",
        "channel",
        "customer_number",
        "email",
        "loyalty_card",
        "survey_id",
        "question",
        "store_id",
        "order_id",
    ),
}
"""Offline file kinds and their columns, as documented in docs/file-formats.md."""

ONLINE_SOURCES: dict[str, str] = {
    "web": "demo-web",
    "app": "demo-app",
    "messaging": "demo-messaging",
    "ads": "demo-ads",
}
"""Online JSON-lines files (`online/<name>.jsonl`) and the source (write key) each is sent with."""

_FLUSH_ROWS = 20_000


def iso_utc(seconds: np.ndarray) -> list[str]:
    """Epoch seconds (float) as ISO 8601 UTC strings with milliseconds and a Z."""
    ms = np.round(np.asarray(seconds, np.float64) * 1000).astype("int64").astype("datetime64[ms]")
    return [s + "Z" for s in np.datetime_as_string(ms, unit="ms").tolist()]


_DAYS: dict[int, str] = {}


def iso_one(seconds: float) -> str:
    """One epoch time as ISO 8601 UTC with milliseconds and a Z (fast path of `iso_utc`)."""
    ms = round(seconds * 1000)
    day, ms_of_day = divmod(ms, 86_400_000)
    prefix = _DAYS.get(day)
    if prefix is None:
        prefix = _DAYS[day] = str(np.datetime64(day, "D")) + "T"
    s, ms = divmod(ms_of_day, 1000)
    m, s = divmod(s, 60)
    h, m = divmod(m, 60)
    return f"{prefix}{h:02d}:{m:02d}:{s:02d}.{ms:03d}Z"


def iso_local(seconds: np.ndarray, offsets: np.ndarray) -> list[str]:
    """Epoch seconds as local wall-clock time with its UTC offset (`2026-10-02T14:03:11+01:00`)."""
    local = (np.asarray(seconds, np.float64) + offsets).astype("int64").astype("datetime64[s]")
    text = np.datetime_as_string(local, unit="s").tolist()
    return [f"{t}{_offset(int(o))}" for t, o in zip(text, np.asarray(offsets).tolist(), strict=False)]


def _offset(seconds: int) -> str:
    sign = "+" if seconds >= 0 else "-"
    seconds = abs(seconds)
    return f"{sign}{seconds // 3600:02d}:{seconds % 3600 // 60:02d}"


class IdMaker:
    """Deterministic, unique, UUID-shaped ids: a prefix per (world, block, stream) and a counter."""

    def __init__(self, world_key: str, block: int, stream: str):
        h = hashlib.sha256(f"{world_key}|{block}|{stream}".encode()).hexdigest()
        self.prefix = f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) % 4]}{h[17:20]}-"
        self._next = itertools.count(1).__next__

    def __call__(self) -> str:
        return f"{self.prefix}{self._next():012x}"


class Sinks:
    """Open writers for every output file of the world, appended to block after block."""

    def __init__(self, folder: Path, header: bool = True, kinds: tuple[str, ...] = tuple(OFFLINE_COLUMNS)):
        self.folder = folder
        (folder / "online").mkdir(parents=True, exist_ok=True)
        (folder / "offline").mkdir(parents=True, exist_ok=True)
        self._online = {
            name: open(folder / "online" / f"{name}.jsonl", "wb")  # noqa: SIM115 - closed in close()
            for name in ONLINE_SOURCES
        }
        self._online_buffers: dict[str, list[bytes]] = {name: [] for name in ONLINE_SOURCES}
        self._offline_files = {
            kind: open(  # noqa: SIM115 - closed in close()
                folder / "offline" / f"{kind}.csv", "w", newline="", encoding="utf-8"
            )
            for kind in kinds
        }
        self._offline = {kind: csv.writer(fh, lineterminator="\n") for kind, fh in self._offline_files.items()}
        if header:
            for kind, writer in self._offline.items():
                writer.writerow(OFFLINE_COLUMNS[kind])
        self.counts: dict[str, int] = {f"online/{n}": 0 for n in ONLINE_SOURCES} | {f"offline/{k}": 0 for k in kinds}
        self.event_counts: dict[str, int] = {}

    def event(self, stream: str, event: dict[str, Any]) -> None:
        """Queue one Segment event for `online/<stream>.jsonl`."""
        buffer = self._online_buffers[stream]
        buffer.append(orjson.dumps(event, option=orjson.OPT_SERIALIZE_NUMPY))
        self.counts[f"online/{stream}"] += 1
        name = event.get("event") or event["type"]
        self.event_counts[name] = self.event_counts.get(name, 0) + 1
        if len(buffer) >= _FLUSH_ROWS:
            self._flush(stream)

    def rows(self, kind: str, rows: Iterable[Sequence[Any]]) -> None:
        """Append rows (in OFFLINE_COLUMNS order; None is written empty) to `offline/<kind>.csv`."""
        rows = list(rows)
        self._offline[kind].writerows(rows)
        self.counts[f"offline/{kind}"] += len(rows)

    def _flush(self, stream: str) -> None:
        buffer = self._online_buffers[stream]
        if buffer:
            self._online[stream].write(b"\n".join(buffer) + b"\n")
            buffer.clear()

    def close(self) -> None:
        for stream in self._online:
            self._flush(stream)
            self._online[stream].close()
        for fh in self._offline_files.values():
            fh.close()
