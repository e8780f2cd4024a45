"""`simulate`: replay the last N days of events through a draft journey, sending nothing.

The draft is published into a throw-away operational store (SQLite in a temporary folder, never the real
store); the warehouse's track events of the window are put into its inbox in time order and the real engine
(`activate/service/journeys.JourneyEngine`) consumes them one at a time on a clock set to each event's
time, stepping every run that comes due in between (waits, quiet hours, timeouts) at its wake time. Sends
go through the real policy rules (the project's `[policy]` settings; the real store's suppressions are
copied in, and its coupon pools, so a message's offer gets a throw-away code) and end as ledger rows that are
never dispatched: no channel is opened, nothing is sent.
The counts come from the throw-away store: entries, sends by channel, skipped by reason, reschedules
(quiet hours, caps), held out, goal conversions.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa

from omniweave.activate.journeys.model import Journey
from omniweave.activate.service.journeys import JourneyEngine, publish
from omniweave.errors import InputError
from omniweave.runtime import Runtime
from omniweave.storage.ops import journeys as Q
from omniweave.storage.ops.tables import sends
from omniweave.storage.ops.tables.journeys import journey_runs, journey_steps
from omniweave.storage.ops.tables.messages import suppressions
from omniweave.storage.ops.tables.policy import policy_decisions
from omniweave.storage.ops.tables.reach import coupon_pools

DAY = 86400.0


@dataclass(frozen=True)
class Simulation:
    """What replaying the window through the draft did (nothing was sent)."""

    journey: str
    since: float
    until: float
    events: int
    entries: int
    held_out: int
    sends: dict[str, int]  # by channel (ledger rows written, never dispatched)
    skipped: dict[str, int]  # by reason
    rescheduled: dict[str, int]  # by reason (quiet hours, caps)
    cap_hits: int
    quiet_hour_hits: int
    conversions: int
    runs: dict[str, int] = field(default_factory=dict)  # by status at the end of the window

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class _Clock:
    def __init__(self, at: float):
        self.at = at

    def __call__(self) -> float:
        return self.at


def window_events(runtime: Runtime, since: float, until: float) -> list[dict[str, Any]]:
    """The warehouse's track events of [since, until) as inbox payloads, oldest first."""
    if not runtime.log.has_data("events"):
        return []
    ev = runtime.warehouse().table("events")
    start, end = datetime.fromtimestamp(since, UTC), datetime.fromtimestamp(until, UTC)
    expr = ev.filter((ev.type == "track") & (ev.timestamp >= start) & (ev.timestamp < end)).select(
        "message_id", "event", "user_id", "anonymous_id", "properties", "timestamp"
    )
    rows = expr.order_by(["timestamp", "message_id"]).to_pyarrow().to_pylist()
    out = []
    for r in rows:
        ts = r["timestamp"]
        moment = ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts
        out.append(
            {
                "type": "track",
                "messageId": r["message_id"],
                "event": r["event"],
                "userId": r["user_id"],
                "anonymousId": r["anonymous_id"],
                "properties": orjson.loads(r["properties"] or "{}"),
                "timestamp": moment.isoformat(),
                "_at": moment.timestamp(),
            }
        )
    return out


def _drain_due(engine: JourneyEngine, clock: _Clock, upto: float) -> None:
    """Step every run due up to `upto`, each at its own wake time."""
    store = engine.runtime.store
    for _ in range(100_000):
        with store.engine.connect() as conn:
            due = Q.next_wake(conn)
        if due is None or due > upto:
            return
        clock.at = max(clock.at, due)
        if not _step_all(engine):  # due but nothing to claim (a lease): it is picked up at the next event
            return


def _step_all(engine: JourneyEngine, rounds: int = 10_000) -> int:
    """Step until nothing is due at the clock's time (bounded: a run that never leaves `now` cannot hang
    the replay); how many runs were stepped."""
    stepped = 0
    for _ in range(rounds):
        claimed = engine.step()
        if not claimed:
            break
        stepped += claimed
    return stepped


def _count(conn: sa.Connection, column: Any, where: Any) -> dict[str, int]:
    query = sa.select(column, sa.func.count()).where(where).group_by(column)
    return {str(k or "?"): int(n) for k, n in conn.execute(query)}


def simulate(
    runtime: Runtime, journey: Journey, *, days: float = 7.0, until: float | None = None, keep: str | None = None
) -> Simulation:
    """Replay the track events of the `days` before `until` (default now) through `journey` as a draft.

    Nothing is written to `runtime`'s operational store and nothing is sent. `keep`: a folder to keep the
    throw-away store in (for a look afterwards); default a temporary folder removed at the end."""
    if not isinstance(days, int | float) or not 0 < days <= 3660:
        raise InputError(f"expected a number of days from 1 to 3660; got {days!r}", field="days")
    until = time.time() if until is None else until
    since = until - days * DAY
    events = window_events(runtime, since, until)
    with tempfile.TemporaryDirectory(prefix="omniweave-simulate-") as tmp:
        folder = Path(keep) if keep else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{folder / 'simulation.db'}"
        sim = Runtime(runtime.settings.with_overrides(database_url=url))
        try:
            return _replay(runtime, sim, journey, events, since, until)
        finally:
            sim.close()


def _replay(
    real: Runtime, sim: Runtime, journey: Journey, events: list[dict[str, Any]], since: float, until: float
) -> Simulation:
    with real.store.engine.connect() as conn:  # the policy must see who may not be written to
        blocked = [dict(m) for m in conn.execute(sa.select(suppressions)).mappings()]
    if blocked:
        with sim.store.engine.begin() as conn:
            conn.execute(suppressions.insert(), blocked)
    with real.store.engine.connect() as conn:  # a message's offer draws its codes from a copy of the pools
        pools = [dict(m) for m in conn.execute(sa.select(coupon_pools)).mappings()]
    if pools:
        with sim.store.engine.begin() as conn:
            conn.execute(coupon_pools.insert(), pools)
    publish(sim, journey, note="simulation draft", now=since)
    clock = _Clock(since)
    engine = JourneyEngine(sim, channels={}, clock=clock)
    source = sim.store.ensure_source("simulate")
    sim.store.append(
        [(source, e["messageId"], e["_at"], orjson.dumps({k: v for k, v in e.items() if k != "_at"})) for e in events]
    )
    for e in events:
        _drain_due(engine, clock, e["_at"])
        clock.at = max(clock.at, e["_at"])
        engine.consume(1)
        _step_all(engine)
    _drain_due(engine, clock, until)
    with sim.store.engine.connect() as conn:
        name = journey.name
        steps = journey_steps.c
        runs = Q.run_counts(conn, name)
        skipped = _count(conn, steps.reason, (steps.journey == name) & (steps.outcome == "skipped"))
        rescheduled = _count(conn, steps.reason, (steps.journey == name) & (steps.outcome == "rescheduled"))
        held = conn.execute(
            sa.select(sa.func.count(sa.distinct(steps.run_id))).where(
                (steps.journey == name)
                & ((steps.outcome == "held_out") | ((steps.outcome == "entered") & steps.reason.like("%holdout%")))
            )
        ).scalar_one()
        converted = conn.execute(
            sa.select(sa.func.count()).where((steps.journey == name) & (steps.outcome == "converted"))
        ).scalar_one()
        by_channel = _count(conn, sends.c.channel, sends.c.key.like(f"j:{name}:%"))
        verdicts = _count(conn, policy_decisions.c.reason, policy_decisions.c.outcome != "send")
        entries = conn.execute(
            sa.select(sa.func.count()).select_from(journey_runs).where(journey_runs.c.journey == name)
        ).scalar_one()
    caps = sum(n for reason, n in verdicts.items() if "frequency cap" in reason)
    quiet = sum(n for reason, n in verdicts.items() if "quiet hours" in reason)
    return Simulation(
        journey=journey.name,
        since=since,
        until=until,
        events=len(events),
        entries=int(entries),
        held_out=int(held),
        sends=by_channel,
        skipped=skipped,
        rescheduled=rescheduled,
        cap_hits=caps,
        quiet_hour_hits=quiet,
        conversions=int(converted),
        runs=runs,
    )


def summary_lines(result: Simulation | Mapping[str, Any]) -> list[str]:
    """The simulation in words, for the CLI."""
    r = result.to_dict() if isinstance(result, Simulation) else dict(result)
    start = datetime.fromtimestamp(r["since"], UTC).strftime("%Y-%m-%d %H:%M")
    end = datetime.fromtimestamp(r["until"], UTC).strftime("%Y-%m-%d %H:%M")
    lines = [
        f"journey {r['journey']}: {r['events']} events replayed from {start} to {end} UTC (nothing sent)",
        f"  entries: {r['entries']} (held out: {r['held_out']})",
        f"  sends: {sum(r['sends'].values())}" + "".join(f", {c} {n}" for c, n in sorted(r["sends"].items())),
        f"  cap hits: {r['cap_hits']}, quiet-hour hits: {r['quiet_hour_hits']}",
        f"  goal conversions: {r['conversions']}",
    ]
    lines += [f"  skipped ({reason}): {n}" for reason, n in sorted(r["skipped"].items())]
    lines += [f"  rescheduled ({reason}): {n}" for reason, n in sorted(r["rescheduled"].items())]
    lines.append("  runs at the end: " + (", ".join(f"{s} {n}" for s, n in sorted(r["runs"].items())) or "none"))
    return lines


__all__ = ["Simulation", "simulate", "summary_lines", "window_events"]
