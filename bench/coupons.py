"""Coupon benchmark: issue N unique codes (default 100,000) into a fresh operational store, end to end
(`issue_bulk`: draw with `secrets`, check characters, batch inserts of 10,000, collision checks against the
store), then check that every code is distinct and valid. Also times drawing alone, single issues (one
transaction each, as a send does) and a redemption lookup.

Target (issue 20, item 4): 100,000 unique codes in at most 10 s, no collision.

    python bench/coupons.py [--count 100000] [--length 10] [--singles 1000]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

from omniweave.activate.coupons import is_valid_code, new_codes
from omniweave.activate.service.coupons import create_pool, find, issue, issue_bulk, pool_codes
from omniweave.runtime import Runtime
from omniweave.settings import Settings

TARGET_SECONDS = 10.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--length", type=int, default=10)
    parser.add_argument("--singles", type=int, default=1000)
    args = parser.parse_args()
    print(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs")

    started = time.perf_counter()
    drawn = new_codes(args.count, args.length)
    print(f"draw {args.count:,} codes (no store): {time.perf_counter() - started:.2f} s")

    with tempfile.TemporaryDirectory() as home:
        runtime = Runtime(Settings(home=home))
        create_pool(runtime, "bench", length=args.length)
        started = time.perf_counter()
        done = issue_bulk(runtime, "bench", args.count)
        seconds = time.perf_counter() - started
        codes = pool_codes(runtime, "bench")
        distinct = len(set(codes))
        valid = sum(is_valid_code(code, length=args.length) for code in codes)
        verdict = "met" if seconds <= TARGET_SECONDS and distinct == args.count else "MISSED"
        print(
            f"issue {done.issued:,} unique codes: {seconds:.2f} s ({done.issued / seconds:,.0f} codes/s; "
            f"target <= {TARGET_SECONDS:.0f} s: {verdict}); {distinct:,} distinct, {valid:,} valid, "
            f"{done.redrawn} drawn again"
        )

        started = time.perf_counter()
        for n in range(args.singles):
            issue(runtime, "bench", person_id=f"P{n}", send_key=f"send-{n}", channel="email")
        seconds = time.perf_counter() - started
        print(
            f"issue {args.singles:,} codes one by one (a send each): {seconds:.2f} s ({args.singles / seconds:,.0f}/s)"
        )

        started = time.perf_counter()
        for code in drawn[:1000]:
            find(runtime, code)
        print(f"look up 1,000 codes: {time.perf_counter() - started:.2f} s")
        runtime.close()


if __name__ == "__main__":
    main()
