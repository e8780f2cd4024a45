"""Dashboard render time per page at a million customers, and the JavaScript each page loads (issue 25).

    python bench/dashboard.py                      # 1,000,000 persons / 30,000,000 events (bench/pipeline.py's log)
    python bench/dashboard.py --home PATH          # a home that has been through resolve and profiles build
    python bench/dashboard.py --persons 100000     # a smaller log

Without `--home` it takes bench/pipeline.py's generated log of that size (generating it once, ~2 min at 1 M), and
in a home of its own next to it runs what a deployment runs before anyone opens the dashboard: `resolve`,
`profiles build` and `segments evaluate` (each timed, printed, and skipped when the home has its output already).
Then it starts `omniweave serve` on that home, signs in as an owner (which starts the dashboard's warm-up: every
page the user may open is built once in the background, shells/web/app.py `warm`), and opens every page:

- **first view**: seconds from the request to the answer, the first time (it waits for the warm-up's report
  when that is still running: what the first person to open the page after a change of the data waits);
- **render**: the server's own time for the page (its `Server-Timing: render` header), the median of 5 views
  once the reports are ready — the figure the issue's target (≤ 300 ms) is about;
- **JavaScript**: the bytes of every script the page loads, as sent and gzipped (target ≤ 450 KB gzipped).

The machine and its load are printed first: compare runs on a quiet machine.
"""

from __future__ import annotations

import argparse
import gzip
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PASSWORD = "bench dashboard password"
EMAIL = "bench-owner@example.com"
TARGET_MS = 300.0
TARGET_JS_KB = 450.0


def _cmd(*args: str) -> list[str]:
    return [str(Path(sys.executable).parent / "omniweave"), *args]


def _timed(home: Path, env: dict[str, str], *args: str) -> None:
    started = time.perf_counter()
    done = subprocess.run(_cmd("--home", str(home), *args), env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"`omniweave {' '.join(args)}` failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    print(f"  {' '.join(args):<28} {time.perf_counter() - started:8.1f} s", flush=True)


def _prepare(args: argparse.Namespace, env: dict[str, str]) -> Path:
    if args.home:
        return Path(args.home)
    sys.path.insert(0, str(HERE))
    import pipeline

    events = 30 * args.persons
    cache = Path(args.data) / f"pipeline-v{pipeline.FORMAT}-{args.persons}p-{events}e-s{args.seed}"
    if not (cache / "generated.json").exists():
        shutil.rmtree(cache, ignore_errors=True)
        cache.mkdir(parents=True)
        pipeline._generate(cache, args.persons, events, args.seed)
    home = Path(args.data) / f"dashboard-home-{args.persons}p-s{args.seed}"
    if not (home / "warehouse" / "events").exists():
        pipeline._working_copy(cache, home)
    print(f"home {home} (the log of bench/pipeline.py: {args.persons:,} persons, {events:,} events)")
    warehouse = home / "warehouse"
    if not any((warehouse / "identities").glob("*.parquet")):
        _timed(home, env, "resolve")
    if not any((warehouse / "profiles").glob("*.parquet")):
        _timed(home, env, "profiles", "build")
    if not (warehouse / "segment_members").exists():
        _timed(home, env, "segments", "evaluate", "--format", "json")
    return home


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pages(client: httpx.Client, home: Path) -> list[tuple[str, str]]:
    """(name, address) of every page the owner's navigation offers, plus a customer search."""
    html = client.get("/app/pages").text  # no such page: a cheap answer that has the navigation
    names = re.findall(r'<li><a href="/app/([a-z]+)"', html)
    pages = [(n, f"/app/{n}") for n in names]
    identities = home / "warehouse" / "identities" / "identities.parquet"
    if "customers" in names and identities.exists():
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        table = pq.read_table(identities, columns=["kind", "value"])
        emails = table.filter(pc.equal(table.column("kind"), "email"))
        if emails.num_rows:
            pages.append(
                ("customers (search)", f"/app/customers?q=email:{emails.column('value')[emails.num_rows // 2]}")
            )
    return pages


def _script_bytes(client: httpx.Client, html: str, seen: dict[str, tuple[int, int]]) -> tuple[int, int]:
    raw = packed = 0
    for src in re.findall(r'<script[^>]+src="([^"]+)"', html):
        if src not in seen:
            body = client.get(src).content
            seen[src] = (len(body), len(gzip.compress(body, 6)))
        raw += seen[src][0]
        packed += seen[src][1]
    return raw, packed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--persons", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--home", default=None, help="a home that has been through resolve and profiles build")
    parser.add_argument(
        "--data",
        default=os.environ.get(
            "OMNIWEAVE_BENCH_CACHE", str(Path(os.environ.get("TMPDIR", "/tmp")) / "omniweave-bench")
        ),
    )
    parser.add_argument("--memory-limit", default="6GB")
    parser.add_argument("--views", type=int, default=5, help="warm views per page (the median is printed)")
    args = parser.parse_args()
    env = {**os.environ, "OMNIWEAVE_MEMORY_LIMIT": args.memory_limit, "PYTHONPATH": str(ROOT / "src")}
    print(f"{os.cpu_count()} cpus, load avg {os.getloadavg()[0]:.1f}; memory_limit {args.memory_limit}")
    home = _prepare(args, env)
    users = subprocess.run(_cmd("--home", str(home), "users", "list"), env=env, capture_output=True, text=True)
    if EMAIL not in users.stdout:
        subprocess.run(
            _cmd(
                "--home", str(home), "users", "add", EMAIL, "--name", "Bench", "--role", "owner", "--password", PASSWORD
            ),
            env=env,
            check=True,
            capture_output=True,
        )
    port = _free_port()
    server = subprocess.Popen(
        _cmd("--home", str(home), "serve", "--host", "127.0.0.1", "--port", str(port)),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(
                    f"serve did not start: {server.stderr.read().decode()[-2000:] if server.stderr else ''}"
                )
            time.sleep(0.2)
        with httpx.Client(base_url=base, timeout=3600) as client:
            signed = client.post("/app/login", data={"email": EMAIL, "password": PASSWORD})
            assert signed.status_code == 303, signed.text
            started = time.perf_counter()
            pages = _pages(client, home)
            print(
                f"\n{'page':<22} {'first view s':>13} {'render ms':>10} {'status':>7} {'JS KB':>7} {'JS KB gz':>9}  target"
            )
            seen: dict[str, tuple[int, int]] = {}
            worst = 0.0
            for name, address in pages:
                t = time.perf_counter()
                first = client.get(address)
                first_s = time.perf_counter() - t
                renders = []
                for _ in range(args.views):
                    answer = client.get(address)
                    timing = re.search(r"render;dur=([0-9.]+)", answer.headers.get("server-timing", ""))
                    renders.append(float(timing.group(1)) if timing else float("nan"))
                render = statistics.median(renders)
                worst = max(worst, render)
                raw, packed = _script_bytes(client, first.text, seen)
                ok = render <= TARGET_MS and packed / 1024 <= TARGET_JS_KB and first.status_code == 200
                print(
                    f"{name:<22} {first_s:>13.2f} {render:>10.1f} {first.status_code:>7} {raw / 1024:>7.0f} "
                    f"{packed / 1024:>9.0f}  ≤ {TARGET_MS:.0f} ms, ≤ {TARGET_JS_KB:.0f} KB gz: {'ok' if ok else 'over target'}",
                    flush=True,
                )
            print(
                f"\nevery page opened in {time.perf_counter() - started:.1f} s after sign-in; slowest warm render "
                f"{worst:.1f} ms; load avg {os.getloadavg()[0]:.1f}"
            )
    except httpx.TransportError as exc:
        server.terminate()
        tail = server.stderr.read().decode()[-3000:] if server.stderr else ""
        raise SystemExit(
            f"the server stopped answering ({exc}); exit status {server.wait()}; it said:\n{tail}"
        ) from exc
    finally:
        server.terminate()
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()


if __name__ == "__main__":
    main()
