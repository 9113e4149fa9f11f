"""Empirical privacy audits: statistically valid lower bounds on epsilon.

Two methods, both giving an epsilon lower bound that holds with probability at least
``1 - significance`` if the audited mechanism is (epsilon, delta)-DP:

**One-run audit** (Steinke, Nasr, Jagielski, NeurIPS 2023, arXiv 2305.08846). ``m``
canaries are each included independently with probability 1/2; one training run; the
auditor makes ``r`` guesses (included / excluded, abstaining on the rest) of which ``v``
are correct. With ``q = e^eps / (1 + e^eps)``::

    beta  = P[Binom(r, q) >= v]
    alpha = max_{i=1..v} P[v > Binom(r, q) >= v - i] / i
    p(eps) = min(1, beta + 2 m delta alpha)

and the lower bound is the largest ``eps`` with ``p(eps) < significance`` (``0`` when
even ``eps = 0`` is not rejected). With ``delta = 0`` and ``v = r`` it equals
``logit(significance^(1/r))``. The guesses must be fixed before the membership is
revealed (here: the ``k+`` highest scores are guessed "included", the ``k-`` lowest
"excluded", and the auditor abstains on the middle).

*Abstention and the choice of k.* Guessing every canary counts the least confident
guesses too, and a few errors among them cost more than the extra guesses gain: with
perfectly separated scores for ``m = 1000`` canaries of which 484 are included, guessing
all of them (500 "in", 500 "out", 16 wrong) gives 3.70 at significance 0.05 and
``delta = 0``, while guessing only the 250 highest and 250 lowest gives 5.11 and the
Bonferroni-corrected search below gives 5.15 (950 guesses, all correct; 5.03 at
``delta = 1e-5``). The number of guesses may not be picked by looking at how many of them
turned out correct, though, unless that look is paid for.
:func:`one_run_audit` therefore either takes ``(k+, k-)`` fixed in advance
(``num_positive_guesses`` / ``num_negative_guesses``), or -- by default -- audits every
candidate of a grid fixed before the data are seen (:func:`abstention_grid`: ``r``
guesses for ``r / m`` in :data:`DEFAULT_GUESS_FRACTIONS`, half the highest scores and
half the lowest), each at ``significance / G`` for a grid of ``G`` candidates, and reports
the largest bound. By the union bound, the probability that *any* of the ``G`` bounds
exceeds the true epsilon is at most ``G * significance / G = significance``, so the
maximum is a valid lower bound at ``significance`` (Bonferroni). The price is that each
candidate is tested at the smaller level ``significance / G``.

**Clopper-Pearson** (Jagielski, Ullman, Oprea 2020, arXiv 2006.07709; Nasr et al. 2021,
arXiv 2101.04535). From the false positives and false negatives of a membership test
over many independent trials, with one-sided Clopper-Pearson upper bounds ``FPR_ub`` and
``FNR_ub`` at level ``significance / 2`` each (union bound)::

    eps_lb = max( ln((1 - delta - FNR_ub) / FPR_ub), ln((1 - delta - FPR_ub) / FNR_ub), 0 )
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

import numpy as np
import numpy.typing as npt
from scipy import stats

from secagg.errors import InvalidParameterError
from secagg.validation import is_real, require_int, require_real

__all__ = [
    "AuditMethod",
    "DEFAULT_GUESS_FRACTIONS",
    "OneRunAuditResult",
    "ClopperPearsonAuditResult",
    "abstention_grid",
    "one_run_p_value",
    "one_run_epsilon_lower_bound",
    "one_run_audit",
    "one_run_audit_sweep",
    "clopper_pearson_upper",
    "clopper_pearson_lower",
    "clopper_pearson_epsilon_lower_bound",
    "threshold_audit",
]


class AuditMethod(str, Enum):
    """How an audit turns its counts into an epsilon lower bound."""

    ONE_RUN = "one_run"
    CLOPPER_PEARSON = "clopper_pearson"


@dataclass(frozen=True)
class OneRunAuditResult:
    """Outcome of a one-run audit.

    Attributes:
        epsilon_lower_bound: eps such that the mechanism is not (eps', delta)-DP for any
            eps' below it, with confidence ``1 - significance``.
        num_canaries: m.
        num_guesses: r, of the reported candidate.
        num_correct: v, of the reported candidate.
        delta: delta assumed for the mechanism.
        significance: overall significance level of the bound.
        method: :attr:`AuditMethod.ONE_RUN`.
        num_positive_guesses: k+ of the reported candidate (``None``: not recorded).
        num_negative_guesses: k- of the reported candidate (``None``: not recorded).
        candidates: number ``G`` of ``(k+, k-)`` choices audited; each was tested at
            ``significance / G`` (Bonferroni), ``1`` when the choice was fixed in advance.
    """

    epsilon_lower_bound: float
    num_canaries: int
    num_guesses: int
    num_correct: int
    delta: float
    significance: float
    method: AuditMethod = AuditMethod.ONE_RUN
    num_positive_guesses: int | None = None
    num_negative_guesses: int | None = None
    candidates: int = 1

    @property
    def candidate_significance(self) -> float:
        """Level at which the reported candidate was tested: ``significance / candidates``."""
        return self.significance / self.candidates


@dataclass(frozen=True)
class ClopperPearsonAuditResult:
    """Outcome of a Clopper-Pearson audit (rates are one-sided upper bounds)."""

    epsilon_lower_bound: float
    false_positive_rate_upper: float
    false_negative_rate_upper: float
    false_positives: int
    negatives: int
    false_negatives: int
    positives: int
    delta: float
    significance: float
    method: AuditMethod = AuditMethod.CLOPPER_PEARSON


def _check_counts(num_canaries: int, num_guesses: int, num_correct: int) -> tuple[int, int, int]:
    m = require_int("num_canaries", num_canaries, lo=1)
    r = require_int("num_guesses", num_guesses, lo=0)
    v = require_int("num_correct", num_correct, lo=0)
    if not v <= r <= m:
        raise InvalidParameterError(
            f"need num_correct <= num_guesses <= num_canaries, got {v}, {r}, {m}"
        )
    return m, r, v


def one_run_p_value(
    epsilon: float,
    *,
    num_canaries: int,
    num_guesses: int,
    num_correct: int,
    delta: float = 0.0,
) -> float:
    """p-value of observing ``num_correct`` or more correct guesses under (epsilon, delta)-DP.

    Steinke, Nasr, Jagielski (2023): ``min(1, beta + 2 m delta alpha)`` (module docstring).
    """
    m, r, v = _check_counts(num_canaries, num_guesses, num_correct)
    if not is_real(epsilon) or math.isnan(epsilon) or epsilon < 0:
        raise InvalidParameterError(f"epsilon must be >= 0, got {epsilon!r}")
    d = require_real("delta", delta, lo=0.0, hi=1.0, lo_open=False, hi_open=False)
    q = 1.0 / (1.0 + math.exp(-float(epsilon))) if math.isfinite(epsilon) else 1.0
    beta = float(stats.binom.sf(v - 1, r, q))
    alpha = 0.0
    if v > 0 and d > 0:
        # P[v > Binom >= v - i] = sum_{j=v-i}^{v-1} pmf(j) for i = 1..v
        pmf = stats.binom.pmf(np.arange(v - 1, -1, -1), r, q)
        alpha = float(np.max(np.cumsum(pmf) / np.arange(1, v + 1)))
    return min(1.0, beta + 2.0 * m * d * alpha)


def one_run_epsilon_lower_bound(
    *,
    num_canaries: int,
    num_guesses: int,
    num_correct: int,
    delta: float = 0.0,
    significance: float = 0.05,
    tolerance: float = 1e-6,
) -> float:
    """Largest epsilon whose p-value is below ``significance`` (bisection), 0 if none."""
    m, r, v = _check_counts(num_canaries, num_guesses, num_correct)
    sig = require_real("significance", significance, lo=0.0, hi=1.0, lo_open=True, hi_open=True)

    def p(eps: float) -> float:
        return one_run_p_value(eps, num_canaries=m, num_guesses=r, num_correct=v, delta=delta)

    if p(0.0) >= sig:
        return 0.0
    lo, hi = 0.0, 1.0
    while p(hi) < sig:
        lo, hi = hi, 2.0 * hi
        if hi > 1e4:  # p stays below significance: the data rule out every finite epsilon checked
            return lo
    while hi - lo > tolerance:
        mid = 0.5 * (lo + hi)
        if p(mid) < sig:
            lo = mid
        else:
            hi = mid
    return lo


def _scores_and_membership(
    scores: npt.ArrayLike, included: npt.ArrayLike
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    s = np.asarray(scores, dtype=np.float64)
    inc = np.asarray(included)
    if s.ndim != 1 or inc.shape != s.shape or s.size == 0:
        raise InvalidParameterError(
            "scores and included must be 1-D arrays of the same non-zero length"
        )
    if not np.all(np.isfinite(s)):
        raise InvalidParameterError("scores must be finite")
    if inc.dtype != np.bool_:
        if not np.all((inc == 0) | (inc == 1)):
            raise InvalidParameterError("included must be boolean")
        inc = inc.astype(bool)
    return s, inc


DEFAULT_GUESS_FRACTIONS: tuple[float, ...] = (
    1.0,
    0.95,
    0.9,
    0.8,
    0.65,
    0.5,
    0.35,
    0.25,
    0.15,
    0.1,
    0.05,
    0.02,
)
"""Fractions ``r / m`` of the canaries guessed by the default abstention grid.

Dense near ``1`` (perfectly separated scores lose only the membership's deviation from an
even split, a few percent of ``m``), coarser below (weak scores want few guesses)."""


def abstention_grid(
    num_canaries: int, fractions: Sequence[float] = DEFAULT_GUESS_FRACTIONS
) -> tuple[tuple[int, int], ...]:
    """``(k+, k-)`` candidates: ``r = round(f * m)`` guesses per fraction ``f``, split evenly.

    ``k+ = ceil(r / 2)`` highest scores are guessed "included", ``k- = floor(r / 2)`` lowest
    "excluded". ``f = 1`` gives ``((m + 1) // 2, m // 2)``, i.e. guessing every canary as
    :func:`one_run_audit` does with ``num_positive_guesses=(m + 1) // 2``. Duplicates
    (small ``m``) and empty candidates are dropped; the grid depends on ``m`` only, never on
    the scores or the membership.
    """
    m = require_int("num_canaries", num_canaries, lo=1)
    if not fractions:
        raise InvalidParameterError("fractions must not be empty")
    grid: list[tuple[int, int]] = []
    for f in fractions:
        frac = require_real("fraction", f, lo=0.0, hi=1.0, lo_open=True, hi_open=False)
        r = min(m, max(1, int(round(frac * m))))
        pair = ((r + 1) // 2, r // 2)
        if pair not in grid:
            grid.append(pair)
    return tuple(grid)


def _guesses(s: npt.NDArray[np.float64], inc: npt.NDArray[np.bool_], k_pos: int, k_neg: int) -> int:
    """Correct guesses among the ``k_pos`` highest ("in") and ``k_neg`` lowest ("out")."""
    m = s.size
    if k_pos + k_neg > m:
        raise InvalidParameterError(f"more guesses than canaries: {k_pos} + {k_neg} > {m}")
    order = np.argsort(-s, kind="stable")  # descending score, ties by index
    pos = order[:k_pos]
    neg = order[m - k_neg :] if k_neg > 0 else order[:0]
    return int(np.sum(inc[pos]) + np.sum(~inc[neg]))


def one_run_audit(
    scores: npt.ArrayLike,
    included: npt.ArrayLike,
    *,
    num_positive_guesses: int | None = None,
    num_negative_guesses: int | None = None,
    guess_counts: Sequence[tuple[int, int]] | None = None,
    delta: float = 0.0,
    significance: float = 0.05,
) -> OneRunAuditResult:
    """One-run audit from canary scores (higher score = more likely included).

    The ``k+`` highest-scoring canaries are guessed "included", the ``k-`` lowest-scoring
    ones "excluded"; the auditor abstains on the rest. Ties are broken by canary index,
    which is independent of the membership. How ``(k+, k-)`` is chosen:

    * fixed in advance: give ``num_positive_guesses`` and/or ``num_negative_guesses``
      (a missing one defaults to the rest of the canaries, ``m - k+``, or to ``m - k-``);
      the bound is tested at ``significance``;
    * otherwise the best candidate of ``guess_counts`` (default
      :func:`abstention_grid`), each tested at ``significance / len(grid)`` so that the
      maximum is valid at ``significance`` (Bonferroni; module docstring).

    Args:
        scores: one score per canary.
        included: the secret membership (True = the canary was included).
        num_positive_guesses: k+, fixed in advance.
        num_negative_guesses: k-, fixed in advance.
        guess_counts: the grid of ``(k+, k-)`` candidates, fixed before seeing the data.
        delta: delta of the (epsilon, delta)-DP hypothesis.
        significance: significance level of the lower bound.

    Returns:
        :class:`OneRunAuditResult`; ``candidates`` says how many choices were audited.
    """
    s, inc = _scores_and_membership(scores, included)
    m = s.size
    fixed = num_positive_guesses is not None or num_negative_guesses is not None
    if fixed and guess_counts is not None:
        raise InvalidParameterError("give either fixed guess counts or a grid, not both")
    if not fixed:
        grid = abstention_grid(m) if guess_counts is None else guess_counts
        return one_run_audit_sweep(s, inc, grid, delta=delta, significance=significance)
    if num_positive_guesses is not None:
        k_pos = require_int("num_positive_guesses", num_positive_guesses, lo=0)
    if num_negative_guesses is not None:
        k_neg = require_int("num_negative_guesses", num_negative_guesses, lo=0)
    if num_positive_guesses is None:
        k_pos = max(0, m - k_neg)
    if num_negative_guesses is None:
        k_neg = max(0, m - k_pos)
    correct = _guesses(s, inc, k_pos, k_neg)
    r = k_pos + k_neg
    eps = one_run_epsilon_lower_bound(
        num_canaries=m, num_guesses=r, num_correct=correct, delta=delta, significance=significance
    )
    return OneRunAuditResult(
        eps, m, r, correct, float(delta), float(significance), AuditMethod.ONE_RUN, k_pos, k_neg, 1
    )


def one_run_audit_sweep(
    scores: npt.ArrayLike,
    included: npt.ArrayLike,
    guess_counts: Sequence[tuple[int, int]],
    *,
    delta: float = 0.0,
    significance: float = 0.05,
) -> OneRunAuditResult:
    """Best one-run audit over several ``(k+, k-)`` choices, Bonferroni-corrected.

    Each of the ``G = len(guess_counts)`` candidates is audited at ``significance / G``, so
    the maximum is a valid lower bound at ``significance`` overall: the event "some
    candidate's bound exceeds the true epsilon" has probability at most ``G`` times
    ``significance / G``. The grid must be fixed without looking at the membership (it
    may depend on ``m``); repeated candidates still count towards ``G``.
    """
    s, inc = _scores_and_membership(scores, included)
    if isinstance(guess_counts, (str, bytes)) or not guess_counts:
        raise InvalidParameterError("guess_counts must be a non-empty sequence of (k+, k-)")
    sig = require_real("significance", significance, lo=0.0, hi=1.0, lo_open=True, hi_open=True)
    pairs: list[tuple[int, int]] = []
    for pair in guess_counts:
        if not isinstance(pair, tuple) or len(pair) != 2:
            raise InvalidParameterError(f"guess counts must be pairs (k+, k-), got {pair!r}")
        pairs.append(
            (
                require_int("num_positive_guesses", pair[0], lo=0),
                require_int("num_negative_guesses", pair[1], lo=0),
            )
        )
    per = sig / len(pairs)
    m = s.size
    best: OneRunAuditResult | None = None
    for k_pos, k_neg in pairs:
        correct = _guesses(s, inc, k_pos, k_neg)
        r = k_pos + k_neg
        eps = one_run_epsilon_lower_bound(
            num_canaries=m, num_guesses=r, num_correct=correct, delta=delta, significance=per
        )
        if best is None or eps > best.epsilon_lower_bound:
            best = OneRunAuditResult(
                eps, m, r, correct, float(delta), sig, AuditMethod.ONE_RUN, k_pos, k_neg, len(pairs)
            )
    if best is None:  # pragma: no cover - pairs is non-empty
        raise InvalidParameterError("guess_counts must not be empty")
    return best


def clopper_pearson_upper(successes: int, trials: int, significance: float) -> float:
    """One-sided Clopper-Pearson upper bound on a binomial proportion at level ``significance``."""
    k = require_int("successes", successes, lo=0)
    n = require_int("trials", trials, lo=1)
    if k > n:
        raise InvalidParameterError("successes cannot exceed trials")
    sig = require_real("significance", significance, lo=0.0, hi=1.0, lo_open=True, hi_open=True)
    if k == n:
        return 1.0
    return float(stats.beta.ppf(1.0 - sig, k + 1, n - k))


def clopper_pearson_lower(successes: int, trials: int, significance: float) -> float:
    """One-sided Clopper-Pearson lower bound on a binomial proportion at level ``significance``."""
    k = require_int("successes", successes, lo=0)
    n = require_int("trials", trials, lo=1)
    if k > n:
        raise InvalidParameterError("successes cannot exceed trials")
    sig = require_real("significance", significance, lo=0.0, hi=1.0, lo_open=True, hi_open=True)
    if k == 0:
        return 0.0
    return float(stats.beta.ppf(sig, k, n - k + 1))


def clopper_pearson_epsilon_lower_bound(
    *,
    false_positives: int,
    negatives: int,
    false_negatives: int,
    positives: int,
    delta: float = 0.0,
    significance: float = 0.05,
) -> ClopperPearsonAuditResult:
    """Epsilon lower bound from a membership test's error counts (module docstring).

    Args:
        false_positives: trials without the target in which the test said "in".
        negatives: trials without the target.
        false_negatives: trials with the target in which the test said "out".
        positives: trials with the target.
        delta: delta of the (epsilon, delta)-DP hypothesis.
        significance: overall significance (split evenly between the two rates).
    """
    fp, n_neg = (
        require_int("false_positives", false_positives, lo=0),
        require_int("negatives", negatives, lo=1),
    )
    fn, n_pos = (
        require_int("false_negatives", false_negatives, lo=0),
        require_int("positives", positives, lo=1),
    )
    if fp > n_neg or fn > n_pos:
        raise InvalidParameterError("error counts cannot exceed the number of trials")
    d = require_real("delta", delta, lo=0.0, hi=1.0, lo_open=False, hi_open=True)
    sig = require_real("significance", significance, lo=0.0, hi=1.0, lo_open=True, hi_open=True)
    fpr = clopper_pearson_upper(fp, n_neg, sig / 2.0)
    fnr = clopper_pearson_upper(fn, n_pos, sig / 2.0)

    def term(num: float, den: float) -> float:
        return math.log(num / den) if num > 0 and den > 0 else 0.0

    eps = max(term(1.0 - d - fnr, fpr), term(1.0 - d - fpr, fnr), 0.0)
    return ClopperPearsonAuditResult(eps, fpr, fnr, fp, n_neg, fn, n_pos, d, sig)


def threshold_audit(
    scores: npt.ArrayLike,
    included: npt.ArrayLike,
    threshold: float,
    *,
    delta: float = 0.0,
    significance: float = 0.05,
) -> ClopperPearsonAuditResult:
    """Clopper-Pearson audit of the test "score >= threshold" over independent trials.

    ``scores[i]`` is the attack's score in trial ``i`` and ``included[i]`` whether the
    target was in that trial's input. The threshold must be chosen without looking at
    these trials (e.g. on a separate calibration set), or the bound is not valid.
    """
    s, inc = _scores_and_membership(scores, included)
    if not is_real(threshold) or math.isnan(threshold):
        raise InvalidParameterError("threshold must be a number")
    said_in = s >= threshold
    return clopper_pearson_epsilon_lower_bound(
        false_positives=int(np.sum(said_in & ~inc)),
        negatives=int(np.sum(~inc)),
        false_negatives=int(np.sum(~said_in & inc)),
        positives=int(np.sum(inc)),
        delta=delta,
        significance=significance,
    )
