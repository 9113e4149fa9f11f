"""Parameter selection: exact bounds checked against scipy, brute force and hand computation."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import pytest
from scipy import stats

from secagg.errors import InfeasibleThreatModelError, InvalidParameterError
from threat_models import (
    GraphKind,
    ServerClass,
    ThreatModel,
    check_parameters,
    secagg_parameters,
    secagg_plus_parameters,
    select_parameters,
)
from threat_models.parameters import (
    colluding_neighbour_bound,
    disconnection_bound,
    hypergeometric_lower_tail,
    hypergeometric_upper_tail,
    minimum_threshold,
    surviving_neighbour_bound,
)

CURIOUS = ServerClass.CURIOUS
SEMI = ServerClass.SEMI_MALICIOUS
MALICIOUS = ServerClass.MALICIOUS


@pytest.mark.parametrize(
    ("population", "marked", "draws"), [(50, 7, 12), (999, 100, 40), (30, 29, 10), (10, 0, 4)]
)
def test_exact_tails_agree_with_scipy(population: int, marked: int, draws: int) -> None:
    for x in range(-1, draws + 1):
        num, den = hypergeometric_upper_tail(population, marked, draws, x)
        assert float(Fraction(num, den)) == pytest.approx(
            stats.hypergeom.sf(x, population, marked, draws), rel=1e-9, abs=1e-300
        )
        num, den = hypergeometric_lower_tail(population, marked, draws, x + 1)
        assert float(Fraction(num, den)) == pytest.approx(
            stats.hypergeom.cdf(x, population, marked, draws), rel=1e-9, abs=1e-300
        )


@pytest.mark.parametrize(
    ("n", "colluders", "degree"), [(100, 10, 20), (1000, 50, 60), (200, 0, 10), (60, 59, 8)]
)
def test_colluding_bound_is_the_smallest_admissible(n: int, colluders: int, degree: int) -> None:
    sigma = 40
    t1 = colluding_neighbour_bound(n, colluders, degree, sigma)
    limit = Fraction(1, n * 2 ** (sigma + 1))
    assert Fraction(*hypergeometric_upper_tail(n - 1, colluders, degree, t1)) <= limit
    if t1 > 0:
        assert Fraction(*hypergeometric_upper_tail(n - 1, colluders, degree, t1 - 1)) > limit


@pytest.mark.parametrize(
    ("n", "dropouts", "degree"), [(100, 10, 20), (1000, 100, 60), (50, 0, 10), (40, 30, 8)]
)
def test_surviving_bound_is_the_largest_admissible(n: int, dropouts: int, degree: int) -> None:
    rho = 20
    t2 = surviving_neighbour_bound(n, dropouts, degree, rho)
    limit = Fraction(1, n * 2**rho)
    survivors = n - 1 - dropouts
    assert Fraction(*hypergeometric_lower_tail(n - 1, survivors, degree, t2)) <= limit
    if t2 < degree:
        assert Fraction(*hypergeometric_lower_tail(n - 1, survivors, degree, t2 + 1)) > limit


def _disconnected(n: int, degree: int, removed: set[int]) -> bool:
    alive = [i for i in range(n) if i not in removed]
    if not alive:
        return False
    half = degree // 2
    seen = {alive[0]}
    stack = [alive[0]]
    while stack:
        u = stack.pop()
        for off in range(-half, half + 1):
            v = (u + off) % n
            if off and v not in removed and v not in seen:
                seen.add(v)
                stack.append(v)
    return len(seen) != len(alive)


@pytest.mark.parametrize(("n", "degree", "bad"), [(10, 2, 4), (11, 4, 5), (12, 2, 3), (9, 4, 6)])
def test_disconnection_bound_dominates_brute_force(n: int, degree: int, bad: int) -> None:
    subsets = list(itertools.combinations(range(n), bad))
    exact = Fraction(sum(_disconnected(n, degree, set(s)) for s in subsets), len(subsets))
    num, den = disconnection_bound(n, degree, bad)
    assert exact <= Fraction(num, den)
    assert exact > 0  # the cases are chosen so that the bound is not vacuous


def test_disconnection_bound_is_zero_when_impossible() -> None:
    assert disconnection_bound(20, 6, 5) == (0, 1)
    assert disconnection_bound(20, 19, 15) == (0, 1)


def test_minimum_threshold_by_server_class() -> None:
    assert minimum_threshold(CURIOUS, 10, 3) == 4
    assert minimum_threshold(CURIOUS, 10, 0) == 2
    # 2t > k + t1
    assert minimum_threshold(SEMI, 10, 3) == 7  # 2*7 = 14 > 13, 2*6 = 12 is not
    assert minimum_threshold(MALICIOUS, 10, 4) == 8  # 2*8 = 16 > 14, 2*7 = 14 is not
    for k in range(2, 30, 2):
        for t1 in range(0, k):
            t = minimum_threshold(SEMI, k, t1)
            assert 2 * t > k + t1 and (t == 2 or 2 * (t - 1) <= k + t1)


def test_complete_graph_hand_computed() -> None:
    # n = 10: C = ceil(0.2 * 10) = 2 colluders, D = ceil(0.1 * 10) = 1 dropout, k = 9
    tm = ThreatModel(server=CURIOUS, colluding_fraction=0.2, dropout_fraction=0.1)
    p = secagg_parameters(10, tm)
    assert (p.degree, p.graph, p.colluding_neighbour_bound, p.surviving_neighbour_bound) == (
        9,
        GraphKind.COMPLETE,
        2,
        8,
    )
    assert p.threshold == 3  # t > C
    assert p.min_aggregate_size == 4  # C + 2
    assert p.dropout_tolerance == 6
    semi = secagg_parameters(
        10, ThreatModel(server=SEMI, colluding_fraction=0.2, dropout_fraction=0.1)
    )
    assert semi.threshold == 6  # 2t > 9 + 2


def test_secagg_plus_picks_the_smallest_feasible_even_degree() -> None:
    for server in ServerClass:
        tm = ThreatModel(server=server, colluding_fraction=0.1, dropout_fraction=0.1)
        n = 200
        p = secagg_plus_parameters(n, tm)
        assert p.graph is GraphKind.HARARY and p.degree % 2 == 0 and p.degree < n - 1
        assert check_parameters(n, p.degree, p.threshold, tm) == p
        for smaller in range(2, p.degree, 2):
            for t in range(2, smaller + 1):
                with pytest.raises(InfeasibleThreatModelError):
                    check_parameters(n, smaller, t, tm)
        # and the bounds the docstring promises hold for the chosen pair
        assert p.colluding_neighbour_bound < p.threshold <= p.surviving_neighbour_bound
        if server is not CURIOUS:
            assert 2 * p.threshold > p.degree + p.colluding_neighbour_bound


def test_per_client_cost_grows_slowly_with_n() -> None:
    tm = ThreatModel()
    degrees = [secagg_plus_parameters(n, tm).degree for n in (100, 1000, 10000)]
    assert degrees == sorted(degrees)
    assert degrees[-1] < 0.02 * 10000


def test_small_cohorts_fall_back_to_the_complete_graph() -> None:
    p = secagg_plus_parameters(5, ThreatModel())
    assert p.graph is GraphKind.COMPLETE and p.degree == 4
    assert select_parameters(5, ThreatModel(), graph=GraphKind.COMPLETE) == p


def test_infeasible_models_name_the_failing_bound() -> None:
    with pytest.raises(InfeasibleThreatModelError, match="at least 3 clients"):
        secagg_parameters(2, ThreatModel())
    with pytest.raises(InfeasibleThreatModelError, match="threshold"):
        secagg_parameters(
            10, ThreatModel(server=SEMI, colluding_fraction=0.3, dropout_fraction=0.3)
        )
    with pytest.raises(InfeasibleThreatModelError, match="min_aggregate_size"):
        secagg_parameters(10, ThreatModel(colluding_fraction=0.3, min_aggregate_size=3))
    with pytest.raises(InfeasibleThreatModelError, match="survive"):
        secagg_parameters(
            10, ThreatModel(dropout_fraction=0.5, min_aggregate_size=6, colluding_fraction=0.0)
        )
    tm = ThreatModel(server=CURIOUS, colluding_fraction=0.1, dropout_fraction=0.1)
    with pytest.raises(InfeasibleThreatModelError, match="security bound"):
        check_parameters(100, 98, 2, tm)
    with pytest.raises(InfeasibleThreatModelError, match="surviving-neighbour"):
        check_parameters(100, 98, 97, tm)
    with pytest.raises(InfeasibleThreatModelError, match="connectivity"):
        check_parameters(
            1000, 4, 2, ThreatModel(server=CURIOUS, colluding_fraction=0.2, dropout_fraction=0.2)
        )


def test_structural_errors() -> None:
    tm = ThreatModel()
    with pytest.raises(InvalidParameterError):
        check_parameters(10, 3, 2, tm)  # odd Harary degree
    with pytest.raises(InvalidParameterError):
        check_parameters(10, 10, 2, tm)
    with pytest.raises(InvalidParameterError):
        check_parameters(10, 4, 1, tm)
    with pytest.raises(InvalidParameterError):
        secagg_parameters(10, "curious")  # type: ignore[arg-type]
    with pytest.raises(InvalidParameterError):
        secagg_parameters(2_000_000, tm)


def test_search_is_fast_for_large_cohorts() -> None:
    p = secagg_plus_parameters(100_000, ThreatModel())
    assert p.degree < 200
    assert math.isinf(p.log2_disconnection_bound) or p.log2_disconnection_bound < -41
