"""Connected components of a large link list, vectorised with numpy (the bulk path of identity stitching).

`Stitcher` (identity.graph) walks observations one by one in Python so that it can honour the rules
(limits, splits, demotion) and log why each link was made; that is the path to use when rules can
refuse a link. When none can (no limits, no splits: a first full build of identifier kinds that are
not limited), the persons are simply the connected components of the links, and this module finds
them tens of times faster, with numpy only:

- `connected_components(n, a, b)` labels every vertex with the smallest vertex of its component
  (hook-and-compress: each round every edge hooks the larger of its two roots under the smaller,
  then pointer jumping flattens the trees; edges inside one tree are dropped; O(E log V) at worst);
- `encode(pairs)` turns identifier pairs into integer codes for it;
- `same_partition(x, y)` checks that two labellings group the vertices alike (for tests and benches);
- `component_numbers(n, a, b)` does the same with scipy's compiled search (the faster of the two);
- `stitch_links(...)` is the array core of `Stitcher`'s bulk rebuild: the components, each one's
  founding vertex (the primary identifier of its earliest observation) and whether the per-kind limits
  could refuse a link inside it (only such components need the rule-by-rule walk).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from omniweave.errors import InputError

Labels = npt.NDArray[np.int64]


def connected_components(n: int, a: npt.ArrayLike, b: npt.ArrayLike) -> Labels:
    """For vertices 0..n-1 and edges (a[i], b[i]): each vertex's component, named by its smallest vertex."""
    u, v = _edges(n, a, b)
    parent = np.arange(n, dtype=np.int64)
    keep = u != v
    u, v = u[keep], v[keep]
    while u.size:
        lo = np.minimum(u, v)
        hi = np.maximum(u, v)
        # every hi is a root (the trees are flat); hooking it under any smaller root keeps a forest,
        # whichever duplicate write wins, and every round hooks at least one root per remaining edge
        parent[hi] = lo
        while True:
            grand = parent[parent]
            if np.array_equal(grand, parent):
                break
            parent = grand
        u, v = parent[u], parent[v]
        keep = u != v
        u, v = u[keep], v[keep]
    return parent


def _edges(n: int, a: npt.ArrayLike, b: npt.ArrayLike) -> tuple[Labels, Labels]:
    u = np.asarray(a, dtype=np.int64)
    v = np.asarray(b, dtype=np.int64)
    if u.shape != v.shape or u.ndim != 1:
        raise InputError(f"expected two 1-d arrays of equal length, got shapes {u.shape} and {v.shape}", field="edges")
    if u.size and (min(u.min(), v.min()) < 0 or max(u.max(), v.max()) >= n):
        raise InputError(
            f"edge endpoints must lie in 0..{n - 1}, got {min(u.min(), v.min())}..{max(u.max(), v.max())}",
            field="edges",
        )
    return u, v


def component_numbers(n: int, a: npt.ArrayLike, b: npt.ArrayLike) -> Labels:
    """Each vertex's component as a number 0..count-1: scipy's compiled breadth-first search over a
    sparse matrix (about 1.5 × faster than `connected_components` on 10 M links here)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components as scipy_components

    u, v = _edges(n, a, b)
    matrix = coo_matrix((np.ones(u.size, dtype=np.int8), (u, v)), shape=(n, n)).tocsr()
    return scipy_components(matrix, directed=False)[1].astype(np.int64)


def encode(pairs: Iterable[tuple[Hashable, Hashable]]) -> tuple[list[Hashable], Labels, Labels]:
    """Identifier pairs → (the distinct identifiers, codes of the first, codes of the second)."""
    codes: dict[Hashable, int] = {}
    left: list[int] = []
    right: list[int] = []
    for x, y in pairs:
        left.append(codes.setdefault(x, len(codes)))
        right.append(codes.setdefault(y, len(codes)))
    return list(codes), np.asarray(left, dtype=np.int64), np.asarray(right, dtype=np.int64)


def same_partition(x: npt.ArrayLike, y: npt.ArrayLike) -> bool:
    """True when two labellings of the same vertices group them identically (label names may differ)."""
    p = np.asarray(x, dtype=np.int64)
    q = np.asarray(y, dtype=np.int64)
    if p.shape != q.shape:
        return False
    if p.size == 0:
        return True
    _, p = np.unique(p, return_inverse=True)
    _, q = np.unique(q, return_inverse=True)
    pairs = np.unique(p.astype(np.int64) * (int(q.max()) + 1) + q)
    return bool(pairs.size == p.max() + 1 == q.max() + 1)


NEVER = np.iinfo(np.int64).max
"""`first` rank of a vertex that never founds anything."""


@dataclass(frozen=True)
class BulkStitch:
    """What `stitch_links` found: per vertex its component label (the component's smallest vertex), per
    label the founding vertex, and per label whether a limit could refuse a link inside it."""

    labels: Labels  # component numbers 0..count-1
    founder: Labels  # indexed by label; -1 where the index is not a label
    dirty: npt.NDArray[np.bool_]  # indexed by label


def stitch_links(
    n: int, kinds: npt.ArrayLike, first: npt.ArrayLike, a: npt.ArrayLike, b: npt.ArrayLike, limits: npt.ArrayLike
) -> BulkStitch:
    """The bulk rebuild of an identity graph, rules checked per component.

    Vertices 0..n-1 are identifiers; `kinds[v]` is the kind code of vertex v, `limits[k]` the most
    identifiers of kind k one person may have (negative: no limit). `first[v]` is the rank (canonical
    order) of the earliest observation in which v founds a person: it is that observation's primary
    identifier, or an identifier that joins nobody (demoted); `NEVER` otherwise. Edges link each
    observation's primary identifier to its others.

    A component in which no kind exceeds its limit never refuses a link, whatever the order, so it
    is one person founded by the primary of its earliest observation. A component that exceeds a
    limit is *dirty*: the caller walks its observations rule by rule.
    """
    kind = np.asarray(kinds, dtype=np.int64)
    rank = np.asarray(first, dtype=np.int64)
    limit = np.asarray(limits, dtype=np.int64)
    if kind.shape != (n,) or rank.shape != (n,):
        raise InputError(f"expected kinds and first of length {n}, got {kind.shape} and {rank.shape}", field="vertices")
    if n and (kind.min() < 0 or kind.max() >= limit.size):
        raise InputError(f"kind codes must lie in 0..{limit.size - 1}", field="kinds")
    labels = component_numbers(n, a, b)
    best = np.full(n, NEVER, dtype=np.int64)
    np.minimum.at(best, labels, rank)
    founder = np.full(n, -1, dtype=np.int64)
    is_founder = (rank == best[labels]) & (rank != NEVER)
    founder[labels[is_founder]] = np.flatnonzero(is_founder)
    dirty = np.zeros(n, dtype=bool)
    for k in np.flatnonzero(limit >= 0):
        counts = np.bincount(labels[kind == k], minlength=n)
        dirty |= counts > limit[k]
    return BulkStitch(labels, founder, dirty)
