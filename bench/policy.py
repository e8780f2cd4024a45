"""Policy decisions per second: the pure rules, and the locked check with its ledger row on a real store.

1. `decide` alone (no I/O): N intents for people in the four test zones, half of them at night
   (quiet hours: a reschedule with `next_window_open`), a third with ledger rows near a cap.
2. `check` + the pending ledger row in one transaction per send (what a journey's send step and
   `messages send` do; `--batch N`: N sends per transaction, persons locked in order), on SQLite (a file in a temporary folder) and, when
   `--postgres URL` is given, on PostgreSQL (a fresh database that is dropped afterwards).

    python bench/policy.py [--decisions 20000] [--checks 2000] [--batch 1] [--postgres postgresql://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from omniweave.activate.policy import Facts, SendIntent, decide
from omniweave.activate.service.policy import check_with
from omniweave.settings import PolicySettings
from omniweave.storage.ops.store import OpStore
from omniweave.storage.ops.tables import sends

ZONES = ("Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kathmandu")
NOW = datetime(2026, 10, 25, 1, tzinfo=UTC).timestamp()  # the night Berlin falls back
CONSENT = {"consent_email": True, "consent_sms": True}


def bench_decide(n: int) -> None:
    rules = PolicySettings()
    outcomes: dict[str, int] = {}
    start = time.perf_counter()
    for i in range(n):
        now = NOW + (i % 48) * 1800.0
        recent = [(now - 3600.0 * k, "email") for k in range(i % 4)]
        intent = SendIntent(f"P{i}", "email", "promotional", f"k{i}", intended_at=now)
        verdict = decide(intent, Facts(CONSENT, None, ZONES[i % 4], recent), rules, now)
        outcomes[verdict.outcome] = outcomes.get(verdict.outcome, 0) + 1
    took = time.perf_counter() - start
    print(f"decide: {n:,} decisions in {took:.2f} s = {n / took:,.0f}/s  {outcomes}")


def bench_check(url: str, label: str, n: int, batch: int) -> None:
    store = OpStore(url)
    rules = PolicySettings(quiet_hours=None)
    try:
        start = time.perf_counter()
        sent = 0
        for first in range(0, n, batch):
            with store.engine.begin() as conn:
                sent += _checks(conn, rules, range(first, min(first + batch, n)), n)
        took = time.perf_counter() - start
        print(
            f"check + ledger row ({label}, {batch} per transaction): {n:,} sends in {took:.2f} s = "
            f"{n / took:,.0f}/s, {sent:,} sent"
        )
    finally:
        store.close()


def _checks(conn: Any, rules: PolicySettings, numbers: range, n: int) -> int:
    """One transaction's sends, persons in order (several senders locking several persons never deadlock)."""
    sent = 0
    for i in sorted(numbers, key=lambda i: f"P{i % (n // 2 or 1)}"):
        person = f"P{i % (n // 2 or 1)}"  # two sends per person: both pass the 3-per-7d cap
        intent = SendIntent(person, "email", "promotional", f"bench:{i}")
        verdict = check_with(conn, rules, intent, CONSENT, f"{person}@example.com", now=NOW)
        if verdict.outcome == "send":
            row = {"key": intent.key, "channel": "email", "to_address": f"{person}@example.com", "person_id": person}
            conn.execute(
                sends.insert().values(
                    **row,
                    message_class="promotional",
                    content=b"{}",
                    status="pending",
                    attempts=0,
                    created_at=NOW,
                    updated_at=NOW,
                )
            )
            sent += 1
    return sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=20_000)
    parser.add_argument("--checks", type=int, default=2_000)
    parser.add_argument("--batch", type=int, default=1, help="sends per transaction (1: one each)")
    parser.add_argument("--postgres", default="")
    args = parser.parse_args()
    bench_decide(args.decisions)
    with tempfile.TemporaryDirectory() as folder:
        bench_check(f"sqlite:///{folder}/ops.db", "SQLite", args.checks, args.batch)
    if args.postgres:
        import psycopg

        name = f"ow_bench_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(args.postgres, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        try:
            bench_check(f"{args.postgres.rsplit('/', 1)[0]}/{name}", "PostgreSQL", args.checks, args.batch)
        finally:
            with psycopg.connect(args.postgres, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
