"""The privacy side of the recipe: what its epsilons mean, the sampler, the calibration.

* :class:`PrivacyStatement` -- every epsilon of a run with the adversary it holds
  against (:data:`PER_CLIENT_ASSUMPTION`, :data:`AMPLIFICATION_ASSUMPTION`);
* :func:`poisson_sample` -- exact Poisson sampling of a cohort from the OS CSPRNG, the
  law the accountant assumes;
* :func:`calibrate_noise_multiplier` -- the smallest noise multiplier meeting a target
  epsilon after a number of rounds;
* :func:`accountant_option` -- the accountant a recipe run may use.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import dp_accounting
import numpy as np

from dp.accountants.base import AccountantKind
from dp.accountants.distributed_pld import (
    contains_distributed_discrete_gaussian,
    distributed_epsilon,
)
from dp.accountants.factory import compute_epsilon
from secagg.errors import InvalidParameterError
from secagg.primitives.simulation import SIMULATION_WARNING
from secagg.recipe.options import DPMode
from secagg.validation import is_int

__all__ = [
    "AMPLIFICATION_ASSUMPTION",
    "PER_CLIENT_ASSUMPTION",
    "PrivacyStatement",
    "accountant_option",
    "calibrate_noise_multiplier",
    "poisson_sample",
]

_T = TypeVar("_T")

#: What the amplified (population-level) epsilon assumes.
AMPLIFICATION_ASSUMPTION = (
    "holds only against an adversary who neither chooses nor learns which clients were "
    "sampled (sampling by the library's CSPRNG, hidden from the server); counts "
    "amplification only for rounds whose cohort the library's sampler drew"
)

#: Against whom the per-client epsilon holds.
PER_CLIENT_ASSUMPTION = (
    "worst client, composed over the rounds it actually took part in, without amplification "
    "by sampling: holds against the server, which learns (and may choose) every cohort"
)


@dataclass(frozen=True)
class PrivacyStatement:
    """Every epsilon of a run, each with the adversary it holds against.

    Attributes:
        level: ``"user"`` (a client's whole data set: ``central``/``distributed``),
            ``"sample"`` (one record of a client's local data: ``local``) or ``None``.
        epsilon_per_client: the headline figure, at ``delta``. User level: the worst
            client's composition over the rounds it took part in, without amplification
            (:data:`PER_CLIENT_ASSUMPTION`). Sample level: the worst client's DP-SGD
            composition.
        epsilon_amplified: user-level epsilon for any member of the population with
            amplification by the library's sampling, valid only under
            ``amplification_assumption`` (``inf`` for ``local``; ``None`` without DP).
        delta: the delta of both figures.
        accountant: the accountant that computed them (for distributed DP, ``"pld"`` and
            ``"rdp"`` alike report the smaller of the RDP bound and the Gaussian-PLD bound
            with the closeness correction, see :func:`dp.accounting.distributed_epsilon`).
        per_client_assumption: against whom ``epsilon_per_client`` holds.
        amplification_assumption: what ``epsilon_amplified`` needs.
        rounds: rounds charged so far.
        sampled_rounds: of those, rounds whose cohort the library's sampler drew.
        simulation_seed: ``None`` for a private run; otherwise the seed of a reproducible
            simulation (``SecureAggregator(simulation_seed=...)``), whose cohorts and noise
            anyone knowing the seed can predict: the epsilons then hold for nobody
            (:data:`secagg.primitives.simulation.SIMULATION_WARNING`).
    """

    level: str | None
    epsilon_per_client: float | None
    epsilon_amplified: float | None
    delta: float | None
    accountant: str
    per_client_assumption: str
    amplification_assumption: str
    rounds: int
    sampled_rounds: int
    simulation_seed: int | None = None

    @property
    def private(self) -> bool:
        """Whether the figures can hold against anyone: false for a seeded simulation."""
        return self.simulation_seed is None

    def to_dict(self) -> dict[str, str | float | None]:
        """JSON-compatible (non-finite epsilons as ``None``, with ``*_finite`` flags)."""

        def number(value: float | None) -> float | None:
            return None if value is None or not math.isfinite(value) else float(value)

        return {
            "epsilon_level": self.level,
            "epsilon_per_client": number(self.epsilon_per_client),
            "epsilon_amplified": number(self.epsilon_amplified),
            "delta": self.delta,
            "accountant": self.accountant,
            "per_client_assumption": self.per_client_assumption,
            "amplification_assumption": self.amplification_assumption,
            "rounds": self.rounds,
            "sampled_rounds": self.sampled_rounds,
            "simulation_seed": self.simulation_seed,
            "private": self.private,
            "simulation_warning": None if self.private else SIMULATION_WARNING,
        }


def poisson_sample(
    clients: Sequence[_T],
    numerator: int,
    denominator: int,
    *,
    random_bytes: Callable[[int], bytes] | None = None,
) -> list[_T]:
    """Poisson sampling: each client independently with probability ``numerator / denominator``.

    Exact: each client's coin is a uniform integer in ``[0, denominator)`` (64-bit words
    from the OS CSPRNG, rejection-sampled to remove the modulo bias) compared with
    ``numerator``. Nothing is redrawn: an empty or one-client cohort is returned as drawn,
    which is the law the accountant assumes.

    Args:
        clients: the pool.
        numerator: see above.
        denominator: see above.
        random_bytes: the source of the coins' bytes, ``secrets.token_bytes`` by default.
            Anything else (e.g. a seeded
            :class:`secagg.primitives.simulation.SimulationStream`'s ``read``) makes the
            cohort predictable to whoever knows the source: simulations only, never a
            private run.

    Raises:
        InvalidParameterError: not ``0 <= numerator <= denominator``, ``denominator >= 1``.
    """
    if (
        not is_int(numerator)
        or not is_int(denominator)
        or denominator < 1
        or not 0 <= numerator <= denominator
    ):
        raise InvalidParameterError(f"sampling rate {numerator}/{denominator} is not in [0, 1]")
    pool = list(clients)
    if numerator == denominator:
        return pool
    span = 1 << 64
    limit = span - span % denominator  # accept words below the largest multiple of it
    read = random_bytes or secrets.token_bytes
    coins = np.empty(0, dtype=np.uint64)
    while coins.size < len(pool):
        need = len(pool) - coins.size
        words = np.frombuffer(read(8 * need), dtype=np.uint64)
        if limit < span:
            words = words[words < np.uint64(limit)]
        coins = np.concatenate([coins, words])
    chosen = (coins % np.uint64(denominator)) < np.uint64(numerator)
    return [c for c, keep in zip(pool, chosen) if keep]


def calibrate_noise_multiplier(
    target_epsilon: float,
    *,
    delta: float,
    rounds: int,
    round_event: Callable[[float], dp_accounting.DpEvent],
    accountant: str = "pld",
    tolerance: float = 0.01,
) -> float:
    """Smallest noise multiplier whose ``rounds``-fold composition meets ``target_epsilon``.

    Bisection on ``log z`` over ``epsilon(z)``, which decreases in ``z``.

    Args:
        target_epsilon: the epsilon to reach after ``rounds`` rounds at ``delta``.
        delta: target delta.
        rounds: number of rounds.
        round_event: ``z -> DpEvent`` of one round at the population level (mechanism
            under client sampling).
        accountant: accountant kind (``pld``, ``rdp``, ``prv``). With ``pld`` or ``rdp``,
            rounds with distributed discrete Gaussian noise are accounted as the ledger
            accounts them: the smaller of the RDP bound and the Gaussian-PLD bound with
            the closeness correction (:func:`dp.accounting.distributed_epsilon`).
        tolerance: relative precision on ``z``.

    Raises:
        InvalidParameterError: non-positive target, or no ``z <= 1e4`` reaches it.
    """
    if not (math.isfinite(target_epsilon) and target_epsilon > 0):
        raise InvalidParameterError(f"target_epsilon must be positive, got {target_epsilon!r}")
    if not isinstance(rounds, int) or rounds < 1:
        raise InvalidParameterError(f"rounds must be a positive int, got {rounds!r}")
    prv = AccountantKind.parse(accountant) is AccountantKind.PRV

    def epsilon(z: float) -> float:
        event = dp_accounting.SelfComposedDpEvent(round_event(z), rounds)
        if not prv and contains_distributed_discrete_gaussian(event):
            return distributed_epsilon(event, delta)
        return compute_epsilon(event, delta, accountant=accountant)

    lo, hi = 0.05, 1.0
    while epsilon(hi) > target_epsilon:
        lo, hi = hi, hi * 4.0
        if hi > 1e4:
            raise InvalidParameterError(f"no noise multiplier reaches epsilon {target_epsilon}")
    if epsilon(lo) <= target_epsilon:
        return lo
    while hi / lo > 1.0 + tolerance:
        mid = math.sqrt(lo * hi)
        if epsilon(mid) > target_epsilon:
            lo = mid
        else:
            hi = mid
    return hi


def accountant_option(accountant: str, dp: DPMode) -> str:
    """The accountant named by ``accountant``, checked against the run's DP mode.

    Raises:
        InvalidParameterError: an unknown accountant, or PRV with distributed DP (it cannot
            account the discrete Gaussian).
    """
    kind = AccountantKind.parse(accountant)
    if kind is AccountantKind.PRV and dp is DPMode.DISTRIBUTED:
        raise InvalidParameterError(
            "the prv accountant cannot account distributed discrete Gaussian noise; "
            "use 'pld' or 'rdp'"
        )
    return kind.value
