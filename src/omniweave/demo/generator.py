"""Generate the demo world: simulate the retailer day by day and write every file.

`generate_world(folder, customers, days, seed)` is pure and deterministic for its arguments: the
same call writes the same bytes. Customers are simulated in blocks (100,000 by default) with
numpy, each block from its own random streams, so memory stays flat for a million customers.

Layout of `folder`:

    online/{web,app,messaging,ads}.jsonl   Segment-spec events (what SDKs/servers send)
    offline/<kind>.csv                     the built-in import formats (docs/file-formats.md)
    ground_truth/identities.csv            every identifier emitted → true person
    ground_truth/customers.csv             true attributes and totals of every person
    ground_truth/channel_effects.json      the causal model and each channel's true effect
    ground_truth/{stores,products,campaigns}.csv
    manifest.json                          parameters and counts (written last: a world is
                                           complete when its manifest exists)
"""

from __future__ import annotations

import csv
import json
import multiprocessing
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

from omniweave.demo import groundtruth
from omniweave.demo import world as w
from omniweave.demo.identity import write_header
from omniweave.demo.media import write_media
from omniweave.demo.model import DEFAULT_EFFECTS, ChannelEffect, effects_report
from omniweave.demo.people import write_identities
from omniweave.demo.simulation import BlockSim
from omniweave.demo.sinks import OFFLINE_COLUMNS, Sinks
from omniweave.demo.surveys import write_surveys

DEFAULT_END_DATE = date(2026, 10, 31)
"""The last simulated day (fixed, so that a seed always gives the same world)."""
BLOCK_SIZE = 100_000
SITE = "https://www.hollinsvale.example"
MANIFEST = "manifest.json"
WRITTEN_AFTER = ("ad_spend", "surveys")
"""Offline files written once the blocks are merged (from the whole world), not by each block."""


@dataclass
class World:
    """What every block shares: size, calendar, stores, catalogue, time zones, ad counters."""

    customers: int
    days: int
    seed: int
    end_date: date
    effects: tuple[ChannelEffect, ...]
    start: date
    key: str
    stores: list[w.Store]
    catalogue: w.Catalogue
    calendar: w.Calendar
    tz_names: list[str]
    offsets: np.ndarray  # [time zone, day] UTC offset in seconds
    day0: np.ndarray  # [day] epoch seconds of the day's UTC midnight
    city_tz: np.ndarray
    store_tz: np.ndarray
    ad_counts: np.ndarray = field(init=False)  # [day, ad campaign, (impressions, clicks)]
    send_counts: dict[str, int] = field(default_factory=dict)  # messages sent per owned campaign

    _offset_cache: dict[tuple[int, int], int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.ad_counts = np.zeros((self.days, len(self.calendar.ads), 2), np.int64)

    def date_of(self, day: int) -> date:
        return self.start + timedelta(days=day)

    def offset(self, tz: int, day: int) -> int:
        """UTC offset (seconds) of time zone `tz` at noon of `day`, also outside the period."""
        if 0 <= day < self.days:
            return int(self.offsets[tz, day])
        key = (tz, day)
        if key not in self._offset_cache:
            noon = datetime.combine(self.date_of(day), datetime.min.time()).replace(
                hour=12, tzinfo=ZoneInfo(self.tz_names[tz])
            )
            self._offset_cache[key] = int(noon.utcoffset().total_seconds())  # type: ignore[union-attr]
        return self._offset_cache[key]


def build_world(
    customers: int,
    days: int,
    seed: int,
    end_date: date = DEFAULT_END_DATE,
    effects: tuple[ChannelEffect, ...] = DEFAULT_EFFECTS,
) -> World:
    """The shared part of the world (stores, catalogue, calendar) for these parameters."""
    if customers < 1 or days < 1:
        raise ValueError(f"customers and days must be at least 1 (got {customers}, {days})")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5EED]))
    start = end_date - timedelta(days=days - 1)
    stores = w.build_stores(rng, customers)
    catalogue = w.build_catalogue(rng)
    calendar = w.build_calendar(rng, days, start, stores)
    tz_names = sorted({c.time_zone for c in w.CITIES} | {s.time_zone for s in stores})
    offsets = np.zeros((len(tz_names), days), np.int64)
    for ti, name in enumerate(tz_names):
        zone = ZoneInfo(name)
        for d in range(days):
            noon = datetime.combine(start + timedelta(days=d), datetime.min.time()).replace(hour=12, tzinfo=zone)
            offsets[ti, d] = int(noon.utcoffset().total_seconds())  # type: ignore[union-attr]
    epoch = datetime(1970, 1, 1, tzinfo=UTC).date()
    day0 = np.array([((start - epoch).days + d) * 86400 for d in range(days)], np.int64)
    city_tz = np.array([tz_names.index(c.time_zone) for c in w.CITIES])
    store_tz = np.array([tz_names.index(s.time_zone) for s in stores])
    key = f"{seed}-{customers}-{days}-{end_date.isoformat()}"
    return World(
        customers,
        days,
        seed,
        end_date,
        effects,
        start,
        key,
        stores,
        catalogue,
        calendar,
        tz_names,
        offsets,
        day0,
        city_tz,
        store_tz,
    )


@dataclass
class BlockResult:
    """What one simulated block adds to the world's totals."""

    counts: dict[str, int]
    event_counts: dict[str, int]
    orders: tuple[int, int]
    revenue: tuple[float, float]
    incremental: tuple[np.ndarray, np.ndarray]
    expected: tuple[float, float]
    ad_counts: np.ndarray
    send_counts: dict[str, int]
    placeholders: set[tuple[str, str]]
    identities: int
    coupon_folded: np.ndarray | None = None


_progress_counter: multiprocessing.sharedctypes.Synchronized[int] | None = None


def _init_worker(counter: multiprocessing.sharedctypes.Synchronized[int]) -> None:
    global _progress_counter
    _progress_counter = counter


def simulate_block(
    folder: Path,
    params: tuple[int, int, int, date, tuple[ChannelEffect, ...]],
    block: int,
    start_pid: int,
    size: int,
    progress: Callable[[int], None] | None = None,
) -> BlockResult:
    """Simulate one block into `folder/.parts/<block>/` (the first block's files carry the headers)."""
    world = build_world(*params)
    part = folder / ".parts" / f"{block:05d}"
    sinks = Sinks(part, header=block == 0, kinds=tuple(k for k in OFFLINE_COLUMNS if k not in WRITTEN_AFTER))
    sim = BlockSim(world, block, start_pid, size, sinks)

    def tick(n: int) -> None:
        if progress:
            progress(n)
        if _progress_counter is not None:
            with _progress_counter.get_lock():
                _progress_counter.value += n

    sim.run(tick)
    (part / "ground_truth").mkdir(exist_ok=True)
    with (
        open(part / "ground_truth" / "identities.csv", "w", newline="", encoding="utf-8") as id_fh,
        open(part / "ground_truth" / "customers.csv", "w", newline="", encoding="utf-8") as cust_fh,
    ):
        id_writer = write_header(id_fh, header=block == 0)
        identities = write_identities(id_writer, sim.p, sim.ledger)
        cust_writer = csv.writer(cust_fh, lineterminator="\n")
        if block == 0:
            cust_writer.writerow(groundtruth.CUSTOMER_COLUMNS)
        groundtruth.write_customers(cust_writer, sim)
    sinks.close()
    return BlockResult(
        dict(sinks.counts),
        dict(sinks.event_counts),
        (int(sim.orders[:, 0].sum()), int(sim.orders[:, 1].sum())),
        (float(sim.revenue[:, 0].sum()), float(sim.revenue[:, 1].sum())),
        (sim.touch.incremental_online, sim.touch.incremental_store),
        (sim.touch.expected_online, sim.touch.expected_store),
        world.ad_counts,
        world.send_counts,
        sim.ledger.placeholders,
        identities,
        sim.touch.coupon_folded,
    )


def _run_blocks(
    folder: Path,
    params: tuple[int, int, int, date, tuple[ChannelEffect, ...]],
    specs: list[tuple[int, int, int]],
    workers: int,
    progress: Callable[[int, int], None] | None,
) -> list[BlockResult]:
    customers, days = params[0], params[1]
    total = customers * days
    if workers <= 1 or len(specs) == 1:
        done = 0

        def tick(n: int) -> None:
            nonlocal done
            done += n
            if progress:
                progress(done, total)

        return [simulate_block(folder, params, *spec, progress=tick) for spec in specs]
    context = multiprocessing.get_context("spawn")  # no fork: the caller may be running threads
    counter = context.Value("q", 0)
    with context.Pool(workers, initializer=_init_worker, initargs=(counter,)) as pool:
        pending = [pool.apply_async(simulate_block, (folder, params, *spec)) for spec in specs]
        while not all(job.ready() for job in pending):
            if progress:
                progress(counter.value, total)
            time.sleep(0.2)
        results = [job.get() for job in pending]
    if progress:
        progress(total, total)
    return results


def _merge_parts(folder: Path, blocks: int) -> None:
    """Concatenate every block's part files, in block order, into the world's files."""
    parts = folder / ".parts"
    first = parts / f"{0:05d}"
    for path in sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file()):
        target = folder / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if blocks == 1:
            (first / path).replace(target)
            continue
        with open(target, "wb") as out:
            for block in range(blocks):
                with open(parts / f"{block:05d}" / path, "rb") as fh:
                    shutil.copyfileobj(fh, out, 16 * 1024 * 1024)
    shutil.rmtree(parts)


def generate_world(
    folder: Path,
    customers: int,
    days: int,
    seed: int,
    *,
    end_date: date = DEFAULT_END_DATE,
    effects: tuple[ChannelEffect, ...] = DEFAULT_EFFECTS,
    block_size: int = BLOCK_SIZE,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, object]:
    """Write the world into `folder` (replacing what is there) and return its manifest.

    Blocks of `block_size` customers are simulated in `workers` processes (default: one per
    CPU); the files are the same whatever the number of workers. `progress(done, total)` is
    called as person-days are simulated (total = customers × days).
    """
    folder = Path(folder)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    world = build_world(customers, days, seed, end_date, effects)
    params = (customers, days, seed, end_date, effects)
    specs = [
        (block, start + 1, min(block_size, customers - start))
        for block, start in enumerate(range(0, customers, block_size))
    ]
    workers = min(workers or os.cpu_count() or 1, len(specs))
    results = _run_blocks(folder, params, specs, workers, progress)
    _merge_parts(folder, len(specs))

    for r in results:
        world.ad_counts += r.ad_counts
        for key, value in r.send_counts.items():
            world.send_counts[key] = world.send_counts.get(key, 0) + value
    placeholders = sorted(set().union(*(r.placeholders for r in results)))
    with open(folder / "ground_truth" / "identities.csv", "a", newline="", encoding="utf-8") as fh:
        writer = write_header(fh, header=False)
        writer.writerows(
            (kind, raw.strip().lower() if kind == "email" else raw.strip(), raw, "") for kind, raw in placeholders
        )
    spend_rows, spend = groundtruth.ad_spend_rows(world)
    with open(folder / "offline" / "ad_spend.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(OFFLINE_COLUMNS["ad_spend"])
        writer.writerows(spend_rows)

    counts: dict[str, int] = {}
    event_counts: dict[str, int] = {}
    for r in results:
        for key, value in r.counts.items():
            counts[key] = counts.get(key, 0) + value
        for key, value in r.event_counts.items():
            event_counts[key] = event_counts.get(key, 0) + value
    counts["offline/ad_spend"] = len(spend_rows)
    counts["offline/surveys"] = write_surveys(folder, seed, end_date)
    orders = [sum(r.orders[i] for r in results) for i in (0, 1)]
    revenue = [sum(r.revenue[i] for r in results) for i in (0, 1)]
    average = {"online": revenue[0] / max(1, orders[0]), "store": revenue[1] / max(1, orders[1])}
    media = write_media(folder, world)  # demo/media.py: TV, radio, print, outdoor, door drops
    for key, value in media.counts.items():
        counts[key] = counts.get(key, 0) + value
    event_counts["page"] = event_counts.get("page", 0) + media.events["page"]
    orders[1] += media.orders
    revenue[1] += media.revenue
    for key, amount in media.spend.items():
        spend[key] = spend.get(key, 0.0) + amount
    report = effects_report(
        effects,
        sum((r.incremental[0] for r in results), np.zeros(len(effects))),
        sum((r.incremental[1] for r in results), np.zeros(len(effects))),
        sum(r.expected[0] for r in results),
        sum(r.expected[1] for r in results),
        average,
        sum((r.coupon_folded for r in results if r.coupon_folded is not None), np.zeros(len(effects))),
    )
    (folder / "ground_truth" / "channel_effects.json").write_text(json.dumps(report, indent=2))
    groundtruth.write_reference(folder / "ground_truth", world)
    manifest: dict[str, object] = {
        "world": world.key,
        "customers": customers,
        "days": days,
        "seed": seed,
        "start_date": world.start.isoformat(),
        "end_date": end_date.isoformat(),
        "default_effects": effects == DEFAULT_EFFECTS,
        "files": dict(sorted(counts.items())),
        "events": dict(sorted(event_counts.items())),
        "identities": sum(r.identities for r in results) + len(placeholders),
        "stores": len(world.stores),
        "products": len(world.catalogue.sku),
        "orders_online": orders[0],
        "orders_store": orders[1],
        "revenue_online": round(revenue[0], 2),
        "revenue_store": round(revenue[1], 2),
        "spend": {k: round(v, 2) for k, v in spend.items()},
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return manifest
