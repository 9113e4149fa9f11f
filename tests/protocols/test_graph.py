"""Communication graphs: Harary structure and CSPRNG ring order."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats

from protocols import CommunicationGraph, complete_graph, harary_graph
from secagg.errors import InvalidParameterError


def test_harary_graph_structure_with_given_order() -> None:
    ids = [10, 20, 30, 40, 50, 60, 70]
    g = harary_graph(ids, 4, order=[30, 10, 70, 50, 20, 60, 40])
    assert g.degree == 4 and not g.is_complete()
    # ring 30 10 70 50 20 60 40: 50's neighbours are two on each side
    assert g[50] == (10, 20, 60, 70)
    assert g[30] == (10, 40, 60, 70)
    for u in ids:
        assert len(g[u]) == 4 and u not in g[u]
        assert all(u in g[v] for v in g[u])


def test_harary_degree_n_minus_1_is_complete() -> None:
    g = harary_graph([1, 2, 3, 4, 5, 6], 5)
    assert g.is_complete()
    assert g[3] == (1, 2, 4, 5, 6)
    assert complete_graph([3, 1, 2])[1] == (2, 3)


@pytest.mark.parametrize("degree", [0, 1, 3, 5, 7, 8])
def test_invalid_degrees(degree: int) -> None:
    with pytest.raises(InvalidParameterError):
        harary_graph(list(range(1, 8)), degree)  # n = 7: even degrees 2, 4 or the complete 6


def test_invalid_ids_and_order() -> None:
    with pytest.raises(InvalidParameterError):
        harary_graph([1, 1, 2, 3], 2)
    with pytest.raises(InvalidParameterError):
        harary_graph([0, 1, 2, 3], 2)
    with pytest.raises(InvalidParameterError):
        harary_graph([1, 2, 3, 4, 5], 2, order=[1, 2, 3, 4, 6])
    with pytest.raises(InvalidParameterError):
        complete_graph([1])
    with pytest.raises(InvalidParameterError):
        CommunicationGraph(neighbours={1: (2,), 2: (3,), 3: (1,)}, degree=1)  # not undirected


def test_neighbourhood_is_a_uniform_subset() -> None:
    """Over fresh CSPRNG orders, each other client is a neighbour of client 1 equally often."""
    n, k, trials = 9, 2, 1600
    counts = np.zeros(n + 1, dtype=np.int64)
    pairs: dict[tuple[int, ...], int] = {}
    for _ in range(trials):
        nb = harary_graph(list(range(1, n + 1)), k)[1]
        counts[list(nb)] += 1
        pairs[nb] = pairs.get(nb, 0) + 1
    assert counts[1] == 0
    observed = counts[2:]
    assert stats.chisquare(observed).pvalue > 1e-6
    # all C(8, 2) = 28 neighbour pairs occur, about equally often
    assert set(pairs) == set(itertools.combinations(range(2, n + 1), 2))
    assert stats.chisquare(list(pairs.values())).pvalue > 1e-6
