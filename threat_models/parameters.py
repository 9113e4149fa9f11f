"""Protocol parameters derived from a threat model: graph degree ``k`` and Shamir threshold ``t``.

Notation: ``n`` clients; ``C = ceil(gamma n)`` colluders and ``D = ceil(delta n)``
dropouts (:class:`~threat_models.model.ThreatModel`); security parameter ``sigma``
(default 40), correctness parameter ``rho`` (default 20).

Every client shares its two secrets (self-mask seed ``b_u`` and masking key ``s_u``) among
its ``k`` neighbours, itself excluded; the server needs ``t`` shares to rebuild one.
SecAgg (Bonawitz et al. 2017) uses the complete graph, ``k = n - 1``. SecAgg+ (Bell et al.
2020) uses a Harary graph ``H(n, k)``: clients on a ring in a uniformly random order
(CSPRNG), each linked to its ``k/2`` predecessors and ``k/2`` successors. Because the order
is uniform, the neighbourhood of a client is a uniform ``k``-subset of the other
``n - 1`` clients, which gives the hypergeometric laws below.

For a candidate even ``k`` (the search of federated-compute's
``graph_parameter_finder.cc``, with exact integer arithmetic instead of floating point):

1. **Connectivity** (security). Removing the ``B = C + D`` colluding or dropped clients
   disconnects ``H(n, k)`` only if two disjoint runs of ``k/2`` consecutive ring
   positions are all removed; by a union bound over the ``n (n - k - 1) / 2`` pairs of
   runs::

       P[disconnected] <= n (n - k - 1) / 2 * B^(k) / n^(k)      (x^(k) the falling factorial)

   which must be below ``2^-(sigma + 1)``. (A disconnected graph of honest survivors would
   reveal the partial sum of each component.)
2. **Colluding neighbours** (security). ``X ~ Hypergeometric(N = n - 1, K = C, draws = k)``
   counts the colluders among an honest client's neighbours. ``t1`` is the smallest
   integer with ``P[X > t1] <= 2^-(sigma + 1) / n``; a union bound over the ``n`` clients and
   the connectivity event keeps the total failure probability below ``2^-sigma``.
3. **Surviving neighbours** (correctness). ``Y ~ Hypergeometric(N = n - 1, K = n - 1 - D,
   draws = k)`` counts a client's surviving neighbours. ``t2`` is the largest integer with
   ``P[Y < t2] <= 2^-rho / n``.

The threshold must satisfy ``t_min <= t <= t2`` with

* curious server: ``t_min = max(2, t1 + 1)`` (more shares than colluding neighbours);
* semi-malicious and malicious servers: ``t_min = max(2, floor((k + t1) / 2) + 1)``, i.e.
  ``2t > k + t1``. What stops a lying server is the consistency quorum (below) with the
  masking-set attestations and the seeded graph (:mod:`threat_models.model` gives the whole
  argument); this threshold is a second line: a server that could show two survivor sets
  would still need ``t`` self-mask and ``t`` masking-key shares of one victim from
  ``2(t - c) <= k - c`` honest neighbours, impossible when ``2t > k + c``.

Against a lying server a client also needs ``Q = max(min_aggregate_size, floor((n + C) / 2)
+ 1)`` valid survivor-set signatures before revealing anything (the *consistency quorum*:
two different sets would need ``2 (Q - C) > n - C`` honest signers), so the expected
survivors must reach it: ``n - D >= Q``, else the threat model is infeasible. The bounds
below hold *per execution*: the graph of each execution is a fresh uniform draw from the
clients' committed seeds that no party can bias; a server that aborts and restarts a round
gets one independent draw per execution (and each restart costs it a full exchange with every
client).

``k`` is the smallest even degree below ``n - 1`` for which all three hold; when none
exists the complete graph ``k = n - 1`` is used (there ``X = C`` and ``Y = n - 1 - D``
exactly, and connectivity is automatic). The chosen ``t`` is ``t_min`` (the most
dropout-tolerant admissible value). In addition the expected survivors must fill the
minimum aggregate: ``n - D >= min_aggregate_size``, which must itself be at least
``C + 2``. Anything else raises :class:`~secagg.errors.InfeasibleThreatModelError` naming
the failing bound.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

import numpy as np
import numpy.typing as npt
from scipy import special

from secagg.errors import InfeasibleThreatModelError, InvalidParameterError
from secagg.validation import is_int
from threat_models.model import ServerClass, ThreatModel

__all__ = [
    "GraphKind",
    "ProtocolParameters",
    "select_parameters",
    "secagg_parameters",
    "secagg_plus_parameters",
    "check_parameters",
    "hypergeometric_upper_tail",
    "hypergeometric_lower_tail",
    "colluding_neighbour_bound",
    "surviving_neighbour_bound",
    "disconnection_bound",
    "minimum_threshold",
    "consistency_quorum",
    "MIN_CLIENTS",
]

MIN_CLIENTS = 3
"""Smallest cohort: ``t >= 2`` shares among ``k = n - 1`` neighbours needs ``n >= 3``."""

MAX_CLIENTS = 1_000_000


class GraphKind(str, Enum):
    """Communication graph of a round."""

    COMPLETE = "complete"
    HARARY = "harary"


@dataclass(frozen=True, slots=True)
class ProtocolParameters:
    """Parameters of one SecAgg/SecAgg+ round and the bounds that justify them.

    Attributes:
        num_clients: ``n``, the cohort size the parameters were derived for.
        degree: ``k``, neighbours per client (``n - 1`` for the complete graph).
        threshold: ``t``, shares needed to rebuild a secret, ``2 <= t <= k``.
        graph: :class:`GraphKind` (complete iff ``k == n - 1``).
        server: the server class the threshold was derived for.
        min_aggregate_size: no client unmasks an aggregate of fewer survivors.
        colluding_neighbour_bound: ``t1`` (see module docstring).
        surviving_neighbour_bound: ``t2``.
        log2_disconnection_bound: ``log2`` of the connectivity union bound (``-inf`` when
            removing ``C + D`` clients can never disconnect the graph).
        max_colluders: ``C``, the colluding clients the parameters defend against.
        max_dropouts: ``D``, the dropouts they survive; against a server that may lie, a
            SecAgg+ client also refuses to unmask when more than ``D`` of the cohort are
            declared dropped (the connectivity bound assumes at most ``C + D`` removed).
        consistency_quorum: ``Q``, the valid survivor-set signatures a client needs before
            it reveals anything when the server may lie: ``max(min_aggregate_size,
            floor((n + C) / 2) + 1)``. Two different survivor sets would each need ``Q``
            signers, ``Q - C`` of them honest and signing once, and ``2 (Q - C) > n - C``:
            every client that reveals anything saw the same set (see
            :mod:`threat_models.model`).
    """

    num_clients: int
    degree: int
    threshold: int
    graph: GraphKind
    server: ServerClass
    min_aggregate_size: int
    colluding_neighbour_bound: int
    surviving_neighbour_bound: int
    log2_disconnection_bound: float
    max_colluders: int = 0
    max_dropouts: int = 0
    consistency_quorum: int = 2

    def __post_init__(self) -> None:
        n, k, t = self.num_clients, self.degree, self.threshold
        if not (is_int(n) and n >= MIN_CLIENTS):
            raise InvalidParameterError(f"num_clients must be an int >= {MIN_CLIENTS}, got {n!r}")
        if not (is_int(k) and 2 <= k <= n - 1):
            raise InvalidParameterError(f"degree must be an int in [2, n - 1], got {k!r}")
        if k < n - 1 and k % 2:
            raise InvalidParameterError(f"a Harary graph needs an even degree, got {k}")
        if not (is_int(t) and 2 <= t <= k):
            raise InvalidParameterError(f"threshold must be an int in [2, degree], got {t!r}")
        expected = GraphKind.COMPLETE if k == n - 1 else GraphKind.HARARY
        if GraphKind(self.graph) is not expected:
            raise InvalidParameterError(f"degree {k} with {n} clients is a {expected.value} graph")
        if not (is_int(self.min_aggregate_size) and 2 <= self.min_aggregate_size <= n):
            raise InvalidParameterError("min_aggregate_size must be an int in [2, n]")
        for name in ("max_colluders", "max_dropouts"):
            value = getattr(self, name)
            if not is_int(value) or not 0 <= value < n:
                raise InvalidParameterError(f"{name} must be an int in [0, n), got {value!r}")
        q = self.consistency_quorum
        if not is_int(q) or not 2 <= q <= n:
            raise InvalidParameterError(f"consistency_quorum must be an int in [2, n], got {q!r}")

    @property
    def complete(self) -> bool:
        """Whether every client is every other client's neighbour (SecAgg)."""
        return self.graph is GraphKind.COMPLETE

    @property
    def dropout_tolerance(self) -> int:
        """Dropped neighbours any one client can lose and still be unmasked: ``k - t``."""
        return self.degree - self.threshold


# ---------------------------------------------------------------------------------------
# exact hypergeometric tails (integers only: no floating-point rounding in a security bound)


def _check_hypergeometric(population: int, marked: int, draws: int) -> None:
    if not (0 <= marked <= population and 0 <= draws <= population):
        raise InvalidParameterError(
            "hypergeometric needs 0 <= marked, draws <= population, "
            f"got {population}, {marked}, {draws}"
        )


def _pmf_numerators(population: int, marked: int, draws: int) -> list[int]:
    """``C(marked, x) * C(population - marked, draws - x)`` for ``x = 0..draws`` (exact).

    Computed by the recurrences ``C(K, x + 1) = C(K, x) (K - x) / (x + 1)`` and
    ``C(U, j - 1) = C(U, j) j / (U - j + 1)``, each division exact, so the whole vector costs
    ``O(draws)`` big-integer-by-small-integer operations.
    """
    _check_hypergeometric(population, marked, draws)
    unmarked = population - marked
    out = [0] * (draws + 1)
    lo = max(0, draws - unmarked)
    hi = min(draws, marked)
    if lo > hi:
        return out
    comb_marked = math.comb(marked, lo)
    comb_unmarked = math.comb(unmarked, draws - lo)
    for x in range(lo, hi + 1):
        out[x] = comb_marked * comb_unmarked
        if x < hi:
            comb_marked = comb_marked * (marked - x) // (x + 1)
            j = draws - x  # C(U, j) -> C(U, j - 1)
            comb_unmarked = comb_unmarked * j // (unmarked - j + 1)
    return out


def hypergeometric_upper_tail(population: int, marked: int, draws: int, x: int) -> tuple[int, int]:
    """``P[X > x]`` as an exact fraction ``(numerator, denominator)``."""
    terms = _pmf_numerators(population, marked, draws)
    return sum(terms[max(x + 1, 0) :]), math.comb(population, draws)


def hypergeometric_lower_tail(population: int, marked: int, draws: int, y: int) -> tuple[int, int]:
    """``P[Y < y]`` as an exact fraction ``(numerator, denominator)``."""
    terms = _pmf_numerators(population, marked, draws)
    return sum(terms[: max(min(y, draws + 1), 0)]), math.comb(population, draws)


def colluding_neighbour_bound(n: int, colluders: int, degree: int, security_bits: int) -> int:
    """``t1``: smallest ``x`` with ``P[X > x] <= 2^-(sigma + 1) / n``, ``X ~ HG(n - 1, C, k)``."""
    terms = _pmf_numerators(n - 1, colluders, degree)
    total = math.comb(n - 1, degree)
    # P[X > x] * n * 2^(sigma+1) <= 1  <=>  tail * n << (sigma+1) <= total
    tail = 0
    for x in range(degree, -1, -1):
        # tail currently holds P[X > x] (numerator)
        if (tail * n) << (security_bits + 1) > total:
            return x + 1
        tail += terms[x]
    return 0


def surviving_neighbour_bound(n: int, dropouts: int, degree: int, correctness_bits: int) -> int:
    """``t2``: largest ``y`` with ``P[Y < y] <= 2^-rho / n``, ``Y ~ HG(n - 1, n - 1 - D, k)``."""
    survivors = max(n - 1 - dropouts, 0)
    terms = _pmf_numerators(n - 1, survivors, degree)
    total = math.comb(n - 1, degree)
    below = 0
    for y in range(degree + 1):
        # below holds P[Y < y]; P[Y < y + 1] adds terms[y]
        if ((below + terms[y]) * n) << correctness_bits > total:
            return y
        below += terms[y]
    return degree


def _falling(x: int, k: int) -> int:
    out = 1
    for i in range(k):
        out *= x - i
    return out


def disconnection_bound(n: int, degree: int, bad: int) -> tuple[int, int]:
    """Union bound on ``P[H(n, k) minus bad random nodes is disconnected]`` as a fraction.

    Zero for the complete graph or when ``k > bad`` (not enough removed nodes to cut two
    runs of ``k/2``).
    """
    if degree >= n - 1 or degree > bad:
        return 0, 1
    pairs_twice = n * (n - degree - 1)
    return pairs_twice * _falling(bad, degree), 2 * _falling(n, degree)


def consistency_quorum(n: int, colluders: int, min_aggregate_size: int) -> int:
    """``Q = max(min_aggregate_size, floor((n + C) / 2) + 1)`` (see :class:`ProtocolParameters`)."""
    return max(min_aggregate_size, (n + colluders) // 2 + 1, 2)


def minimum_threshold(server: ServerClass, degree: int, colluding_bound: int) -> int:
    """``t_min`` for a server class (see module docstring)."""
    if ServerClass(server).lies_about_dropouts:
        return max(2, (degree + colluding_bound) // 2 + 1)
    return max(2, colluding_bound + 1)


# ---------------------------------------------------------------------------------------


def _check_inputs(n: int, threat_model: ThreatModel) -> None:
    if not isinstance(threat_model, ThreatModel):
        raise InvalidParameterError("threat_model must be a ThreatModel")
    if not is_int(n):
        raise InvalidParameterError(f"the number of clients must be an int, got {n!r}")
    if n < MIN_CLIENTS:
        raise InfeasibleThreatModelError(
            f"secure aggregation needs at least {MIN_CLIENTS} clients (threshold >= 2 among "
            f"n - 1 neighbours), got {n}"
        )
    if n > MAX_CLIENTS:
        raise InvalidParameterError(f"at most {MAX_CLIENTS} clients are supported, got {n}")


def _aggregate_size(n: int, threat_model: ThreatModel) -> int:
    colluders = threat_model.max_colluders(n)
    dropouts = threat_model.max_dropouts(n)
    size = threat_model.effective_min_aggregate_size(n)
    if size < colluders + 2:
        raise InfeasibleThreatModelError(
            f"min_aggregate_size {size} must be at least colluders + 2 = {colluders + 2}: "
            "a smaller aggregate may hold a single honest client"
        )
    if n - dropouts < size:
        raise InfeasibleThreatModelError(
            f"with {dropouts} dropouts only {n - dropouts} of {n} clients survive, fewer than "
            f"min_aggregate_size {size}"
        )
    return size


def _evaluate(
    n: int, degree: int, threat_model: ThreatModel, min_size: int
) -> tuple[ProtocolParameters | None, str]:
    """Parameters for ``degree`` with ``t = t_min``, or ``None`` and the failing bound."""
    colluders = threat_model.max_colluders(n)
    dropouts = threat_model.max_dropouts(n)
    sigma, rho = threat_model.security_bits, threat_model.correctness_bits
    num, den = disconnection_bound(n, degree, colluders + dropouts)
    if num and num << (sigma + 1) >= den:
        return None, (
            f"connectivity: P[graph disconnected after removing {colluders + dropouts} clients] "
            f"= 2^{math.log2(num) - math.log2(den):.1f} is not below 2^-{sigma + 1}"
        )
    log2_disc = -math.inf if num == 0 else math.log2(num) - math.log2(den)
    t1 = colluding_neighbour_bound(n, colluders, degree, sigma)
    t2 = surviving_neighbour_bound(n, dropouts, degree, rho)
    t_min = minimum_threshold(threat_model.server, degree, t1)
    if t_min > t2:
        return None, (
            f"threshold: security needs t >= {t_min} ({t1} colluding neighbours bound, "
            f"{threat_model.server.value} server) but correctness allows at most t = {t2} "
            f"surviving neighbours of {degree} (with {dropouts} dropouts)"
        )
    quorum = consistency_quorum(n, colluders, min_size)
    if threat_model.server.lies_about_dropouts and n - dropouts < quorum:
        return None, (
            f"consistency quorum: {quorum} survivor-set signatures are needed (more than half of "
            f"n + {colluders} colluders), but only {n - dropouts} of {n} clients are expected "
            "to survive"
        )
    params = ProtocolParameters(
        num_clients=n,
        degree=degree,
        threshold=t_min,
        graph=GraphKind.COMPLETE if degree == n - 1 else GraphKind.HARARY,
        server=threat_model.server,
        min_aggregate_size=min_size,
        colluding_neighbour_bound=t1,
        surviving_neighbour_bound=t2,
        log2_disconnection_bound=log2_disc,
        max_colluders=colluders,
        max_dropouts=dropouts,
        consistency_quorum=quorum,
    )
    return params, ""


_SCREEN_SLACK = math.log(16.0)


def _log_pmf(population: int, marked: int, draws: int) -> npt.NDArray[np.float64]:
    """Natural log of the hypergeometric pmf at ``x = 0..draws`` (``-inf`` off the support)."""
    x = np.arange(draws + 1, dtype=np.float64)
    unmarked = population - marked
    support = (x <= marked) & (draws - x <= unmarked)
    xs = np.where(support, x, 0.0)
    log_pmf = (
        special.gammaln(marked + 1)
        - special.gammaln(xs + 1)
        - special.gammaln(marked - xs + 1)
        + special.gammaln(unmarked + 1)
        - special.gammaln(draws - xs + 1)
        - special.gammaln(unmarked - draws + xs + 1)
        - (
            special.gammaln(population + 1)
            - special.gammaln(draws + 1)
            - special.gammaln(population - draws + 1)
        )
    )
    return np.where(support, log_pmf, -np.inf)


def _plausible(n: int, degree: int, threat_model: ThreatModel) -> bool:
    """Floating-point pre-screen of :func:`_evaluate`, relaxed by a factor 16 on each bound.

    Only speeds up the search: a degree it rejects fails the exact bounds too unless
    scipy's tail is off by more than 16x; a degree it accepts is then checked exactly, so
    no security decision ever rests on floating point.
    """
    colluders = threat_model.max_colluders(n)
    dropouts = threat_model.max_dropouts(n)
    sigma, rho = threat_model.security_bits, threat_model.correctness_bits
    bad = colluders + dropouts
    if degree <= bad:
        log_disc = (
            math.log(n)
            + math.log(n - degree - 1)
            - math.log(2)
            + math.lgamma(bad + 1)
            - math.lgamma(bad - degree + 1)
            + math.lgamma(n - degree + 1)
            - math.lgamma(n + 1)
        )
        if log_disc >= -(sigma + 1) * math.log(2) + _SCREEN_SLACK:
            return False
    log_pmf_adv = _log_pmf(n - 1, colluders, degree)
    # log P[X > x] = logsumexp of pmf over (x, degree]
    log_sf = np.append(np.logaddexp.accumulate(log_pmf_adv[::-1])[::-1][1:], -np.inf)
    ok = np.nonzero(log_sf <= -(sigma + 1) * math.log(2) - math.log(n) + _SCREEN_SLACK)[0]
    t1 = int(ok[0]) if ok.size else degree
    log_cdf = np.logaddexp.accumulate(_log_pmf(n - 1, n - 1 - dropouts, degree))  # P[Y <= y]
    fine = np.nonzero(log_cdf <= -rho * math.log(2) - math.log(n) + _SCREEN_SLACK)[0]
    t2 = int(fine[-1]) + 1 if fine.size else 0  # P[Y < t2] small
    return minimum_threshold(threat_model.server, degree, t1) <= t2


def secagg_parameters(n: int, threat_model: ThreatModel) -> ProtocolParameters:
    """Complete-graph (SecAgg) parameters: ``k = n - 1`` and ``t = t_min``.

    Raises:
        InfeasibleThreatModelError: naming the failing bound.
    """
    _check_inputs(n, threat_model)
    min_size = _aggregate_size(n, threat_model)
    params, why = _evaluate(n, n - 1, threat_model, min_size)
    if params is None:
        raise InfeasibleThreatModelError(f"no SecAgg threshold for n = {n}: {why}")
    return params


def secagg_plus_parameters(n: int, threat_model: ThreatModel) -> ProtocolParameters:
    """SecAgg+ parameters: the smallest even ``k < n - 1`` meeting all bounds, else complete.

    Raises:
        InfeasibleThreatModelError: even the complete graph fails; the message names the bound.
    """
    complete = secagg_parameters(n, threat_model)  # fails fast when nothing can work
    min_size = complete.min_aggregate_size
    for degree in range(2, n - 1, 2):
        if not _plausible(n, degree, threat_model):
            continue
        params, _ = _evaluate(n, degree, threat_model, min_size)
        if params is not None:
            return params
    return complete


def select_parameters(n: int, threat_model: ThreatModel, *, graph: GraphKind) -> ProtocolParameters:
    """:func:`secagg_parameters` for ``COMPLETE``, :func:`secagg_plus_parameters` for ``HARARY``."""
    if GraphKind(graph) is GraphKind.COMPLETE:
        return secagg_parameters(n, threat_model)
    return secagg_plus_parameters(n, threat_model)


def check_parameters(
    n: int, degree: int, threshold: int, threat_model: ThreatModel
) -> ProtocolParameters:
    """Validate hand-chosen ``(k, t)`` against a threat model.

    Raises:
        InvalidParameterError: ``k`` or ``t`` outside their structural range.
        InfeasibleThreatModelError: a bound fails; the message names it.
    """
    _check_inputs(n, threat_model)
    if not is_int(degree) or not 2 <= degree <= n - 1:
        raise InvalidParameterError(f"degree must be an int in [2, {n - 1}], got {degree!r}")
    if degree < n - 1 and degree % 2:
        raise InvalidParameterError(f"a Harary graph needs an even degree, got {degree}")
    if not is_int(threshold) or not 2 <= threshold <= degree:
        raise InvalidParameterError(f"threshold must be an int in [2, {degree}], got {threshold!r}")
    min_size = _aggregate_size(n, threat_model)
    params, why = _evaluate(n, degree, threat_model, min_size)
    if params is None:
        raise InfeasibleThreatModelError(f"k = {degree}, t = {threshold} for n = {n}: {why}")
    if threshold < params.threshold:
        raise InfeasibleThreatModelError(
            f"threshold: t = {threshold} is below the security bound t >= {params.threshold} "
            f"({params.colluding_neighbour_bound} colluding neighbours bound, "
            f"{threat_model.server.value} server)"
        )
    if threshold > params.surviving_neighbour_bound:
        raise InfeasibleThreatModelError(
            f"threshold: t = {threshold} exceeds the surviving-neighbour bound "
            f"{params.surviving_neighbour_bound} (correctness 2^-{threat_model.correctness_bits})"
        )
    return ProtocolParameters(
        num_clients=n,
        degree=degree,
        threshold=threshold,
        graph=params.graph,
        server=params.server,
        min_aggregate_size=params.min_aggregate_size,
        colluding_neighbour_bound=params.colluding_neighbour_bound,
        surviving_neighbour_bound=params.surviving_neighbour_bound,
        log2_disconnection_bound=params.log2_disconnection_bound,
        max_colluders=params.max_colluders,
        max_dropouts=params.max_dropouts,
        consistency_quorum=params.consistency_quorum,
    )
