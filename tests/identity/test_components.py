"""identity.components: the vectorised connected components agree with a plain union-find and with scipy."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from omniweave.errors import InputError
from omniweave.identity.components import (
    component_numbers,
    connected_components,
    encode,
    same_partition,
)


def reference(n: int, a: list[int], b: list[int]) -> list[int]:
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for x, y in zip(a, b, strict=True):
        rx, ry = find(x), find(y)
        if rx != ry:
            parent[max(rx, ry)] = min(rx, ry)
    return [find(x) for x in range(n)]


@st.composite
def graphs(draw: st.DrawFn) -> tuple[int, list[int], list[int]]:
    n = draw(st.integers(1, 60))
    edges = draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), max_size=120))
    return n, [e[0] for e in edges], [e[1] for e in edges]


@settings(max_examples=300, deadline=None)
@given(graphs())
def test_same_components_as_a_plain_union_find(graph: tuple[int, list[int], list[int]]) -> None:
    n, a, b = graph
    labels = connected_components(n, a, b)
    # the label is the smallest vertex of the component, like the reference's root
    assert labels.tolist() == reference(n, a, b)
    numbers = component_numbers(n, a, b)  # scipy's search: other names, the same grouping
    assert same_partition(numbers, labels) and (numbers.size == 0 or numbers.max() < n)


@settings(max_examples=50, deadline=None)
@given(graphs(), st.randoms(use_true_random=False))
def test_edge_order_and_direction_do_not_matter(graph: tuple[int, list[int], list[int]], rnd) -> None:  # type: ignore[no-untyped-def]
    n, a, b = graph
    edges = list(zip(a, b, strict=True))
    rnd.shuffle(edges)
    edges = [(y, x) if rnd.random() < 0.5 else (x, y) for x, y in edges]
    shuffled = connected_components(n, [e[0] for e in edges], [e[1] for e in edges])
    assert shuffled.tolist() == connected_components(n, a, b).tolist()


def test_matches_scipy_on_a_random_graph_with_small_and_large_components() -> None:
    csgraph = pytest.importorskip("scipy.sparse.csgraph")
    sparse = pytest.importorskip("scipy.sparse")
    rng = np.random.default_rng(3)
    n = 200_000
    a = rng.integers(0, n, 150_000)
    b = np.where(
        rng.random(150_000) < 0.9, np.minimum(a + rng.integers(1, 4, 150_000), n - 1), rng.integers(0, n, 150_000)
    )
    ours = connected_components(n, a, b)
    matrix = sparse.coo_matrix((np.ones(a.size, dtype=np.int8), (a, b)), shape=(n, n)).tocsr()
    _, theirs = csgraph.connected_components(matrix, directed=False)
    assert same_partition(ours, theirs)
    assert not same_partition(ours, np.arange(n))


def test_encode_names_identifiers_by_first_appearance() -> None:
    names, a, b = encode([(("email", "x@y.z"), ("user_id", "1")), (("user_id", "1"), ("phone", "+44"))])
    assert names == [("email", "x@y.z"), ("user_id", "1"), ("phone", "+44")]
    assert a.tolist() == [0, 1] and b.tolist() == [1, 2]
    assert connected_components(len(names), a, b).tolist() == [0, 0, 0]


def test_same_partition() -> None:
    assert same_partition([5, 5, 7], [0, 0, 1])
    assert not same_partition([5, 5, 7], [0, 1, 1])
    assert not same_partition([1, 1], [1, 1, 1])
    assert same_partition([], [])


def test_bad_edges_are_input_errors() -> None:
    with pytest.raises(InputError, match="0..2"):
        connected_components(3, [0, 3], [1, 1])
    with pytest.raises(InputError, match="equal length"):
        connected_components(3, [0, 1], [1])
    with pytest.raises(InputError, match="0..2"):
        component_numbers(3, [0, 3], [1, 1])
    assert connected_components(0, [], []).tolist() == []
