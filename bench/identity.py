"""Identity stitching benchmark: our stitchers against scipy's connected components on the same links.

Generates a random identity graph of N links (default 10,000,000) with a realistic mix: most
persons are small components (2-10 identifiers: a cookie, an e-mail, a phone...), a few are large
(1,000-100,000 identifiers: shared devices, a busy loyalty card before demotion), every component
a random spanning tree plus extra links inside it; identifiers are shuffled and the links too. Then,
each in a fresh process (so peak memory is per method, from `resource.getrusage`), side by side:

  - scipy: `scipy.sparse.csgraph.connected_components` (COO → CSR build included), all links;
    best of 3 runs, like identity.components (the machine may be shared);
  - identity.components: the vectorised bulk path (numpy), all links, partition checked against scipy;
  - identity.components.stitch_links: the array core of the stitcher's bulk rebuild, all links: the
    components plus each one's founder (earliest observation's primary; the ranks are computed inside
    the timing) and the per-kind limit check. Once with no limits (partition checked against scipy),
    once with identifiers given kinds (user id 10 %, e-mail 15 %, phone 10 %, loyalty card 5 %,
    device 10 %, anonymous id 50 %) and the default limits: it reports the share of identifiers in
    components that break a limit, which the stitcher then walks rule by rule;
  - identity.graph.Stitcher: the whole stitcher on Python objects (one observation of two identifiers
    per link), on the first `--stitcher-links` links (default 1,000,000): with no limits (bulk rebuild,
    partition checked against scipy), and with the kinds and default limits, bulk rebuild against the
    rule-by-rule walk over everything (same persons checked).

Target (issue 3): the full build ≤ 1.5 × scipy's time.

Then, in the same run, the two other measurements of issue 3, each by its own script (so each can
also run alone) in a child process: probabilistic matching of `--matching-records` records against
splink with its defaults (bench/matching.py; target F1 ≥ 0.97 in no more time), and a full profile
build of `--profile-persons` persons / `--profile-events` events (bench/profiles.py; target ≤ 60 s),
with peak memory. `0` skips one.

    python bench/identity.py [--links 10000000] [--stitcher-links 1000000] [--seed 1]
                             [--matching-records 1000000] [--profile-persons 1000000 --profile-events 30000000]
"""

from __future__ import annotations

import argparse
import multiprocessing
import multiprocessing.forkserver
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

SMALL_MAX, LARGE_MIN, LARGE_MAX = 10, 1_000, 100_000
LARGE_SHARE = 0.05  # of identifiers in large components
REPEAT = 3  # the vectorised runs are short: best of 3 (the machine is shared); the Stitcher runs once
STITCHER_DEFAULT = 1_000_000


def make_graph(links: int, seed: int) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    """(identifiers, link ends a, link ends b, component sizes): many small components, some large ones."""
    rng = np.random.default_rng(seed)
    n = max(2, int(links * 0.75))  # ~ 3/4 of the links are tree links, the rest close cycles
    large_total = int(n * LARGE_SHARE)
    large: list[int] = []
    while sum(large) < large_total:
        size = int(min(LARGE_MAX, LARGE_MIN * rng.pareto(1.2) + LARGE_MIN))
        large.append(max(2, min(size, large_total - sum(large))))
    small_total = max(0, n - sum(large))
    small = np.minimum(1 + rng.geometric(0.45, size=small_total // 2 + 1), SMALL_MAX)
    small = small[: np.searchsorted(np.cumsum(small), small_total) + 1]
    sizes = np.concatenate([np.asarray(large, dtype=np.int64), small.astype(np.int64)])
    n = int(sizes.sum())
    start = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    comp = np.repeat(np.arange(sizes.size), sizes)
    pos = np.arange(n) - start[comp]
    child = np.flatnonzero(pos > 0)  # every non-first vertex links to a random earlier one of its component
    tree_a = child
    tree_b = start[comp[child]] + (rng.random(child.size) * pos[child]).astype(np.int64)
    extra = max(0, links - child.size)
    x = rng.integers(0, n, extra)
    extra_b = start[comp[x]] + (rng.random(extra) * sizes[comp[x]]).astype(np.int64)
    a = np.concatenate([tree_a, x])[:links]
    b = np.concatenate([tree_b, extra_b])[:links]
    relabel = rng.permutation(n)
    order = rng.permutation(a.size)
    return n, relabel[a[order]], relabel[b[order]], sizes


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _run_scipy(path: str, links: int) -> dict[str, Any]:
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    data = np.load(path)
    n, a, b = int(data["n"]), data["a"][:links], data["b"][:links]
    seconds = float("inf")
    for _ in range(REPEAT):
        started = time.perf_counter()
        matrix = coo_matrix((np.ones(a.size, dtype=np.int8), (a, b)), shape=(n, n)).tocsr()
        count, labels = connected_components(matrix, directed=False)
        seconds = min(seconds, time.perf_counter() - started)
        del matrix
    np.save(path + f".scipy{links}.npy", labels)
    return {"seconds": seconds, "components": int(count), "peak": _peak_mb()}


def _run_components(path: str, links: int) -> dict[str, Any]:
    from omniweave.identity.components import connected_components, same_partition

    data = np.load(path)
    n, a, b = int(data["n"]), data["a"][:links], data["b"][:links]
    seconds = float("inf")
    for _ in range(REPEAT):
        started = time.perf_counter()
        labels = connected_components(n, a, b)
        seconds = min(seconds, time.perf_counter() - started)
    peak = _peak_mb()
    same = same_partition(labels, np.load(path + f".scipy{links}.npy"))
    return {"seconds": seconds, "components": int(np.unique(labels).size), "peak": peak, "same": same}


KIND_SHARES = {
    "user_id": 0.10,
    "email": 0.15,
    "phone": 0.10,
    "loyalty_card": 0.05,
    "device_id": 0.10,
    "anonymous_id": 0.50,
}


def _kinds(n: int) -> np.ndarray:
    """A kind code per identifier (index into KIND_SHARES), fixed by a seed of its own."""
    shares = np.fromiter(KIND_SHARES.values(), float)
    return np.random.default_rng(99).choice(len(shares), size=n, p=shares / shares.sum())


def _run_stitch_links(path: str, links: int, limited: bool = False) -> dict[str, Any]:
    from omniweave.identity.components import NEVER, same_partition, stitch_links
    from omniweave.identity.graph import DEFAULT_LIMITS

    data = np.load(path)
    n, a, b = int(data["n"]), data["a"][:links], data["b"][:links]
    kinds = _kinds(n) if limited else np.zeros(n, dtype=np.int64)
    limits = np.array([DEFAULT_LIMITS.get(k, -1) for k in KIND_SHARES] if limited else [-1], dtype=np.int64)
    seconds = float("inf")
    for _ in range(REPEAT):
        started = time.perf_counter()
        first = np.full(n, NEVER, dtype=np.int64)
        first[a[::-1]] = np.arange(a.size - 1, -1, -1)  # each link is one observation, `a` its primary
        result = stitch_links(n, kinds, first, a, b, limits)
        seconds = min(seconds, time.perf_counter() - started)
    peak = _peak_mb()
    out = {"seconds": seconds, "components": int(np.unique(result.labels).size), "peak": peak}
    if limited:
        out["same"] = None
        out["note"] = f"{result.dirty[result.labels].mean():.1%} of identifiers in components over a limit"
    else:
        out["same"] = same_partition(result.labels, np.load(path + f".scipy{links}.npy"))
    return out


def _run_stitch_links_limited(path: str, links: int) -> dict[str, Any]:
    return _run_stitch_links(path, links, limited=True)


def _observations(path: str, links: int, limited: bool) -> list[Any]:
    from omniweave.identity.graph import Observation

    data = np.load(path)
    a, b = data["a"][:links], data["b"][:links]
    names = list(KIND_SHARES) if limited else ["anonymous_id"]
    kinds = _kinds(int(data["n"])) if limited else np.zeros(int(data["n"]), dtype=np.int64)
    return [
        Observation(f"m{i:010d}", "2026-01-01T00:00:00", ((names[kinds[x]], f"a{x}"), (names[kinds[y]], f"a{y}")))
        for i, (x, y) in enumerate(zip(a.tolist(), b.tolist(), strict=True))
    ]


def _run_stitcher_limited(path: str, links: int) -> dict[str, Any]:
    from omniweave.identity.graph import Rules, Stitcher

    observations = _observations(path, links, limited=True)
    bulk = Stitcher(Rules(share_limits={}))
    started = time.perf_counter()
    bulk.add(observations)
    seconds = time.perf_counter() - started
    peak = _peak_mb()
    walked = Stitcher(Rules(share_limits={}), bulk_threshold=10**12)
    started = time.perf_counter()
    walked.add(observations)
    walk_seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "components": len(bulk.members),
        "peak": peak,
        "same": bulk.persons() == walked.persons(),
        "note": f"rule-by-rule walk over everything: {walk_seconds:.1f} s; {len(bulk.refusals):,} links refused",
    }


def _run_stitcher(path: str, links: int) -> dict[str, Any]:
    from omniweave.identity.components import same_partition
    from omniweave.identity.graph import Rules, Stitcher

    observations = _observations(path, links, limited=False)
    stitcher = Stitcher(Rules(limits={}, share_limits={}))
    started = time.perf_counter()
    stitcher.add(observations)
    seconds = time.perf_counter() - started
    peak = _peak_mb()
    reference = np.load(path + f".scipy{links}.npy")
    roots: dict[tuple[str, str], int] = {}
    ids = np.fromiter((int(value[1:]) for _, value in stitcher.parent), dtype=np.int64, count=len(stitcher.parent))
    ours = np.fromiter(
        (roots.setdefault(stitcher.find(i), len(roots)) for i in stitcher.parent),
        dtype=np.int64,
        count=len(stitcher.parent),
    )
    # the stitcher sees only identifiers that occur in a link; scipy labels every vertex: compare those
    same = same_partition(ours, reference[ids])
    return {"seconds": seconds, "components": len(stitcher.members), "peak": peak, "same": same}


def _in_fresh_process(target: str, path: str, links: int) -> dict[str, Any]:
    ctx = multiprocessing.get_context("forkserver")
    with ctx.Pool(1) as pool:
        return pool.apply(globals()[target], (path, links))  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--links", type=int, default=10_000_000)
    parser.add_argument(
        "--stitcher-links",
        type=int,
        default=STITCHER_DEFAULT,
        help="links for the pure-Python rule-aware Stitcher (0 to skip)",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--matching-records", type=int, default=1_000_000, help="0 skips bench/matching.py")
    parser.add_argument("--profile-persons", type=int, default=1_000_000, help="0 skips bench/profiles.py")
    parser.add_argument("--profile-events", type=int, default=30_000_000)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    # the workers fork from a server started while this process is small: a child's ru_maxrss starts
    # at its parent's RSS (and survives exec), so forking from here after building the graph would not do
    multiprocessing.get_context("forkserver")
    multiprocessing.forkserver.ensure_running()

    started = time.perf_counter()
    n, a, b, sizes = make_graph(args.links, args.seed)
    print(
        f"python {platform.python_version()}, numpy {np.__version__}, {os.cpu_count()} cpus; "
        f"graph: {a.size:,} links over {n:,} identifiers (seed {args.seed}, built in "
        f"{time.perf_counter() - started:.1f} s); generated as {sizes.size:,} components, "
        f"{int((sizes >= LARGE_MIN).sum()):,} of ≥ {LARGE_MIN:,} identifiers, largest {int(sizes.max()):,}"
    )
    with tempfile.TemporaryDirectory(prefix="omniweave-bench-identity-") as tmp:
        path = str(Path(tmp) / "graph.npz")
        np.savez(path, n=n, a=a, b=b)
        del a, b
        rows = []
        full = _in_fresh_process("_run_scipy", path, args.links)
        rows.append(("scipy connected_components", args.links, full, None))
        fast = _in_fresh_process("_run_components", path, args.links)
        rows.append(("identity.components (numpy)", args.links, fast, full))
        rows.append(
            (
                "stitch_links (rules core, no limits)",
                args.links,
                _in_fresh_process("_run_stitch_links", path, args.links),
                full,
            )
        )
        rows.append(
            (
                "stitch_links (rules core, default limits)",
                args.links,
                _in_fresh_process("_run_stitch_links_limited", path, args.links),
                full,
            )
        )
        sample = min(args.links, args.stitcher_links)
        if sample:
            small = _in_fresh_process("_run_scipy", path, sample)
            rows.append(("scipy connected_components", sample, small, None))
            slow = _in_fresh_process("_run_stitcher", path, sample)
            rows.append(("Stitcher (Python objects, no limits)", sample, slow, small))
            rows.append(
                (
                    "Stitcher (kinds, default limits)",
                    sample,
                    _in_fresh_process("_run_stitcher_limited", path, sample),
                    small,
                )
            )
    baseline = _in_fresh_process("_baseline", "", 0)["peak"]
    print(
        f"{'method':<42} {'links':>12} {'seconds':>9} {'links/s':>12} {'× scipy':>8} {'persons':>11} "
        f"{'peak RSS MB':>12} {'same partition':>15}"
    )
    for name, links, result, ref in rows:
        ratio = f"{result['seconds'] / ref['seconds']:.2f}" if ref else "1.00"
        same = "" if ref is None or result["same"] is None else ("yes" if result["same"] else "NO")
        print(
            f"{name:<42} {links:>12,} {result['seconds']:>9.2f} {links / result['seconds']:>12,.0f} {ratio:>8} "
            f"{result['components']:>11,} {result['peak']:>12,.0f} {same:>15}  {result.get('note', '')}"
        )
    print(f"(peak RSS of a fresh process with numpy loaded: {baseline:,.0f} MB; target: full build ≤ 1.5 × scipy)")
    failed = any(ref is not None and result["same"] is False for _, _, result, ref in rows)
    here = Path(__file__).resolve().parent
    for script, flags in (
        ("matching.py", ["--records", str(args.matching_records)] if args.matching_records else None),
        (
            "profiles.py",
            ["--persons", str(args.profile_persons), "--events", str(args.profile_events)]
            if args.profile_persons
            else None,
        ),
    ):
        if flags is None:
            continue
        print(f"\n--- bench/{script} {' '.join(flags)}", flush=True)
        done = subprocess.run([sys.executable, str(here / script), *flags], check=False)
        failed |= done.returncode != 0
    if failed:
        sys.exit(1)


def _baseline(path: str, links: int) -> dict[str, Any]:
    return {"peak": _peak_mb()}


if __name__ == "__main__":
    main()
