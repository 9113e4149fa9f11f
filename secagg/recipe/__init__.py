"""The recipe: secure aggregation with differential privacy around an existing FL loop.

One :class:`SecureAggregator` per training run, one call per round. It takes each
client's update -- a torch state-dict delta, a dict or list of numpy arrays, or a single
array -- and returns the mean (or sum) in the same structure, having

1. clipped every update to L2 norm ``C`` (the DP sensitivity),
2. applied the configured differential privacy,
3. run the chosen secure aggregation protocol (``secagg+`` by default, ``secagg``,
   ``paillier``) through the in-process driver :func:`protocols.simulate`, so the server
   side only ever handles masked vectors or ciphertexts, and
4. recorded the round in a :class:`dp.ledger.PrivacyLedger` (refusing, before anything
   leaves a client, a round that would exceed the privacy budget).

The user picks a threat model and a privacy target; every cryptographic parameter (ring
size, neighbourhood size ``k``, Shamir threshold ``t``, Paillier key size, noise shares)
is derived from them.

Differential privacy (:class:`DPMode`), user-level as in DP-FedAvg (McMahan et al.,
ICLR 2018), with noise multiplier ``z`` and clip norm ``C``:

``distributed`` (default)
    Every client adds its share of discrete Gaussian noise to its quantised update before
    masking (Kairouz, Liu, Steinke, ICML 2021), so no one -- not even the server -- ever
    sees an un-noised sum. Shares are sized so that the survivors' noise still reaches
    ``z C`` when up to the threat model's dropout fraction is missing and when its
    colluding fraction of clients removes its own noise.
``central``
    The (trusted) aggregator adds ``N(0, (z C)^2)`` to the unmasked sum; it sees the exact
    sum of clipped updates.
``local``
    The clients already privatised their training (e.g. Opacus DP-SGD,
    :mod:`dp.opacus_client`); the recipe aggregates securely and records their sample-level
    accounting. Every client of a round must come with its DP-SGD record (a round with a
    client without one is refused: nothing is aggregated). User-level epsilon is then
    infinite and reported as such.
``none``
    Secure aggregation only. Updates are still range-checked before quantisation.

Which epsilon, against whom. In every protocol here the server learns the cohort (it
receives the cohort's messages), and under any :class:`~threat_models.model.ServerClass`
it may also choose it. Amplification by sampling does not hold against such an adversary,
so the headline :attr:`SecureAggregator.epsilon` is the *per-client* figure: for each
client, the composition of the mechanisms of the rounds it actually took part in, without
amplification; the worst client is reported. The amplified, population-level figure
(:attr:`SecureAggregator.amplified_epsilon`) counts amplification only for rounds whose
cohort the library's own sampler drew (:meth:`SecureAggregator.sample_cohort`, exact
Poisson sampling from the OS CSPRNG) and holds only against an adversary who neither
chooses nor learns which clients were sampled (:data:`AMPLIFICATION_ASSUMPTION`). A
cohort the recipe did not sample is accounted as full participation of its clients.

Means: with DP the noised sum is divided by the *expected* cohort size (a public
constant, as DP-FedAvg prescribes; dividing by the actual count would leak it through
the sensitivity). Without DP the denominator is the number of survivors, or the sum of
their weights for a weighted mean -- the weights are folded into the masked vector, so the
server learns only their sum.

Example::

    aggregator = SecureAggregator(population=100, clients_per_round=50,
                                  rounds=30, target_epsilon=8.0)
    for rnd in range(30):
        cohort = aggregator.sample_cohort(range(100))
        deltas = {c: local_train(c, model) for c in cohort}
        apply(model, aggregator.mean(deltas))
    print(aggregator.epsilon)            # worst client, holds against the server
    print(aggregator.amplified_epsilon)  # only if the server neither chose nor saw cohorts
"""

from __future__ import annotations

import math
import secrets
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any, TypeVar, overload

import numpy as np
import numpy.typing as npt

from protocols.paillier.keygen import KeyGeneration
from secagg.errors import InvalidParameterError, SecAggError, ThresholdNotMetError
from secagg.primitives.encoding import FixedPointEncoder, VectorEncoder
from secagg.primitives.simulation import (
    SIMULATION_WARNING,
    SimulationRandomness,
    SimulationStream,
    UnsafeSimulationWarning,
)

if TYPE_CHECKING:
    from threat_models.model import ThreatModel

__all__ = [
    "AMPLIFICATION_ASSUMPTION",
    "AggregationProtocol",
    "ClientNotInPopulationError",
    "CohortTooSmallError",
    "DPMode",
    "MissingLocalDpError",
    "NoisyAggregateWarning",
    "PrivacyStatement",
    "RoundReport",
    "SecureAggregator",
    "UnsafeSimulationWarning",
    "VerifyMode",
    "calibrate_noise_multiplier",
    "poisson_sample",
]

F64 = npt.NDArray[np.float64]
U64 = npt.NDArray[np.uint64]
ClientId = str | int
_T = TypeVar("_T")


class AggregationProtocol(str, Enum):
    """Secure aggregation protocols the recipe can run.

    ``secagg``: complete-graph masking (Bonawitz et al., CCS 2017). ``secagg+``: masking
    over a sparse random graph derived from the threat model (Bell et al., CCS 2020);
    cost per client grows like ``log n``. ``paillier``: packed threshold Paillier with a
    decryption committee (no single party can decrypt).
    """

    SECAGG = "secagg"
    SECAGG_PLUS = "secagg+"
    PAILLIER = "paillier"


class DPMode(str, Enum):
    """Where differential privacy noise comes from (see the module docstring)."""

    NONE = "none"
    CENTRAL = "central"
    DISTRIBUTED = "distributed"
    LOCAL = "local"

    @property
    def user_level(self) -> bool:
        """Whether the aggregate itself carries user-level noise."""
        return self in (DPMode.CENTRAL, DPMode.DISTRIBUTED)


class VerifyMode(str, Enum):
    """What ``verify`` computes on the side (in the simulation, from the clients' inputs).

    ``off``: nothing. ``protocol``: the largest difference between the secure aggregate and
    the plaintext sum of the very encodings that entered the protocol (noised as they
    were) -- zero up to float rounding when the protocol is correct, so it says nothing
    about the data. ``unsafe-plaintext``: also the distance between the released aggregate
    and the *un-noised* sum of the clipped updates. That number is computed from the exact
    sum, is itself a release about the clients' data, and is **not** covered by the privacy
    ledger: keep it on the trusted side, never publish it.
    """

    OFF = "off"
    PROTOCOL = "protocol"
    UNSAFE_PLAINTEXT = "unsafe-plaintext"


class ClientNotInPopulationError(InvalidParameterError):
    """An update names a client that is not a member of the population."""


class CohortTooSmallError(ThresholdNotMetError):
    """The sampled cohort of this round is too small to aggregate; the round was skipped.

    Raised after the round was charged to the ledger (the sampler's law includes small
    cohorts, so the accounting includes their rounds); no aggregate is released.
    """


class MissingLocalDpError(InvalidParameterError):
    """With ``dp="local"``, a client of the round comes without its DP-SGD record."""


class NoisyAggregateWarning(UserWarning):
    """The noise the privacy target needs swamps the signal of the mean."""


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

    def to_dict(self) -> dict[str, Any]:
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


@dataclass(frozen=True)
class RoundReport:
    """What one call to :meth:`SecureAggregator.mean` / :meth:`~SecureAggregator.sum` did.

    Attributes:
        round: 1-based round number.
        cohort: the client ids that were given.
        survivors: the ids whose updates are in the aggregate.
        clipped: how many updates the L2 clip shrank.
        epsilon: cumulative epsilon after this round, as :attr:`SecureAggregator.epsilon`:
            the worst client's per-client user-level epsilon (no amplification; holds
            against the server) for ``central`` and ``distributed``, the largest client's
            sample-level for ``local``, ``None`` for ``none``.
        delta: the delta of ``epsilon``.
        noise_stddev: per-coordinate standard deviation of the DP noise in the sum
            (0 without user-level DP).
        seconds: wall time of the round.
        max_abs_difference: with ``verify``: the largest coordinate difference between the
            secure aggregate and the same aggregate computed in plaintext from the same
            client inputs (clipped, quantised and noised exactly as they entered the
            protocol) -- zero up to float rounding when the protocol is correct.
        max_abs_dp_error: only with ``verify="unsafe-plaintext"``: the largest coordinate
            difference between the released sum and the plaintext sum of the clipped
            updates (DP noise plus quantisation). Computed from the un-noised sum, so it is
            a release about the data that the ledger does not cover: keep it private.
        epsilon_amplified: cumulative population-level epsilon with amplification, as
            :attr:`SecureAggregator.amplified_epsilon` (see :data:`AMPLIFICATION_ASSUMPTION`).
        sampled: whether the cohort came from :meth:`SecureAggregator.sample_cohort` for
            this round (only then is amplification by sampling counted).
    """

    round: int
    cohort: tuple[ClientId, ...]
    survivors: tuple[ClientId, ...]
    clipped: int
    epsilon: float | None
    delta: float | None
    noise_stddev: float
    seconds: float
    max_abs_difference: float | None = None
    max_abs_dp_error: float | None = None
    epsilon_amplified: float | None = None
    sampled: bool = False

    @property
    def dropped(self) -> tuple[ClientId, ...]:
        """Clients of the cohort whose update is not in the aggregate."""
        alive = set(self.survivors)
        return tuple(c for c in self.cohort if c not in alive)


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
            Anything else (e.g. a seeded :class:`secagg.primitives.simulation.SimulationStream`'s
            ``read``) makes the cohort predictable to whoever knows the source: simulations
            only, never a private run.

    Raises:
        InvalidParameterError: not ``0 <= numerator <= denominator``, ``denominator >= 1``.
    """
    if (
        isinstance(numerator, bool)
        or isinstance(denominator, bool)
        or not isinstance(numerator, int)
        or not isinstance(denominator, int)
        or denominator < 1
        or not 0 <= numerator <= denominator
    ):
        raise InvalidParameterError(f"sampling rate {numerator}/{denominator} is not in [0, 1]")
    pool = list(clients)
    if numerator == denominator:
        return pool
    span = 1 << 64
    limit = span - span % denominator  # accept words below the largest multiple of denominator
    coins = np.empty(0, dtype=np.uint64)
    while coins.size < len(pool):
        need = len(pool) - coins.size
        words = np.frombuffer((random_bytes or secrets.token_bytes)(8 * need), dtype=np.uint64)
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
    round_event: Callable[[float], Any],
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
    import dp_accounting

    from dp.accounting import (
        AccountantKind,
        compute_epsilon,
        contains_distributed_discrete_gaussian,
        distributed_epsilon,
    )

    if not (math.isfinite(target_epsilon) and target_epsilon > 0):
        raise InvalidParameterError(f"target_epsilon must be positive, got {target_epsilon!r}")
    if not isinstance(rounds, int) or rounds < 1:
        raise InvalidParameterError(f"rounds must be a positive int, got {rounds!r}")

    def epsilon(z: float) -> float:
        event = dp_accounting.SelfComposedDpEvent(round_event(z), rounds)
        if AccountantKind.parse(accountant) is not AccountantKind.PRV and contains_distributed_discrete_gaussian(
            event
        ):
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


class _RecordingEncoder:
    """Wraps a :class:`VectorEncoder` and keeps every encoding it produces (for ``verify``).

    Encodings are keyed by a digest of the float input, which is how they are matched back
    to clients after the protocol ran (the in-process driver encodes inside each client).
    """

    def __init__(self, inner: VectorEncoder) -> None:
        self.inner = inner
        self.encodings: dict[bytes, list[U64]] = {}

    @property
    def bits(self) -> int:
        return self.inner.bits

    @property
    def max_clients(self) -> int:
        return self.inner.max_clients

    def encoded_length(self, d: int) -> int:
        return self.inner.encoded_length(d)

    def encode(self, values: npt.ArrayLike) -> U64:
        encoded = self.inner.encode(values)
        self.encodings.setdefault(_digest(values), []).append(np.array(encoded, dtype=np.uint64))
        return encoded

    def decode_sum(self, summed: npt.ArrayLike, n: int) -> F64:
        return self.inner.decode_sum(summed, n)

    def __getattr__(self, name: str) -> Any:
        # anything else a protocol may read from its encoder (e.g. quantisation details)
        return getattr(self.inner, name)


class _SeededNoiseEncoder:
    """A distributed-DP encoder whose noise and rounding come from seeded streams (simulation only).

    The clipping, rotation, scaling and rounding are the wrapped encoder's, run by a twin
    configured without noise; each client's discrete Gaussian (or Skellam) share is then
    drawn by the same sampler as in a private run, keyed from the simulation's noise
    stream, and added in the ring. Decoding and the DP event are the wrapped encoder's.
    """

    def __init__(self, inner: Any, *, noise: SimulationStream, rounding: np.random.Generator) -> None:
        import dataclasses

        from dp.distributed import DistributedDPEncoder

        self.inner = inner
        params = inner.parameters
        self._noiseless = DistributedDPEncoder(
            dataclasses.replace(params, noise_multiplier=0.0),
            rotation_seed=inner.rotation_seed,
            rounding_rng=rounding,
        )
        self._noise = noise
        self._mask = np.uint64((1 << params.bits) - 1)

    @property
    def bits(self) -> int:
        return int(self.inner.bits)

    @property
    def max_clients(self) -> int:
        return int(self.inner.max_clients)

    def encoded_length(self, d: int) -> int:
        return int(self.inner.encoded_length(d))

    def encode(self, values: npt.ArrayLike) -> U64:
        from dp.distributed import DistributedMechanism
        from dp.samplers import sample_discrete_gaussian, sample_skellam

        params = self.inner.parameters
        encoded = np.asarray(self._noiseless.encode(values), dtype=np.uint64)
        if params.noise_multiplier == 0:
            return encoded
        if params.mechanism is DistributedMechanism.DISCRETE_GAUSSIAN:
            noise = sample_discrete_gaussian(params.local_sigma, params.padded_dimension, seed=self._noise.key())
        else:
            noise = sample_skellam(params.local_mu, params.padded_dimension, seed=self._noise.key())
        # two's complement: adding the int64 noise as uint64 wraps mod 2^64, a multiple of 2^b
        noised: U64 = (encoded + noise.astype(np.int64).view(np.uint64)) & self._mask
        return noised

    def decode_sum(self, summed: npt.ArrayLike, n: int) -> F64:
        return np.asarray(self.inner.decode_sum(summed, n), dtype=np.float64)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _digest(values: npt.ArrayLike) -> bytes:
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(np.asarray(values, dtype=np.float64)).tobytes()).digest()


def _coerce(enum: type[Any], value: Any, what: str) -> Any:
    try:
        return enum(value)
    except ValueError:
        choices = ", ".join(repr(m.value) for m in enum)
        raise InvalidParameterError(f"unknown {what} {value!r}; choose one of {choices}") from None


def _positive(name: str, value: Any, *, allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise InvalidParameterError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def fixed_point_ring_bits(cohort: int, *, clipped: bool, max_weight: float | None = None) -> int:
    """Ring exponent of the fixed-point encoding: ``2^L`` levels per client over ``log2 n``.

    With clipping ``L = 24`` (a quantum of ``2C / 2^24``, far below any useful update
    resolution), so small cohorts fit 32-bit words, which halves the masked vectors;
    without clipping the range is the wide ``value_bound``, so ``L = 40``. A weighted
    mean widens the range by ``max_weight`` and adds its bits, keeping the resolution of
    a unit weight.
    """
    level_bits = _CLIPPED_LEVEL_BITS if clipped else _UNCLIPPED_LEVEL_BITS
    if max_weight is not None:
        level_bits += max(0, math.ceil(math.log2(max_weight)))
    return min(_MAX_RING_BITS, max(32, (cohort - 1).bit_length() + level_bits))


def fixed_point_encoder(
    bound: float, *, cohort: int, clipped: bool, max_weight: float | None = None
) -> FixedPointEncoder:
    """The encoder of a round without distributed noise: ``[-B, B]`` for ``cohort`` summands.

    ``B`` is the clip norm (every coordinate of a clipped update lies within it) or the
    value bound, times ``max_weight`` for a weighted mean, plus a relative ``1e-9`` so
    that float rounding of a clipped update never leaves the range.
    """
    scale = max_weight if max_weight is not None else 1.0
    return FixedPointEncoder.symmetric(
        bound * scale * (1.0 + 1e-9),
        bits=fixed_point_ring_bits(cohort, clipped=clipped, max_weight=max_weight),
        max_clients=cohort,
    )


def distributed_ring_bits(protocol: AggregationProtocol) -> int:
    """Ring of distributed DP: 32-bit words for masking (half the bytes of 64-bit words);
    24 bits for Paillier, whose packing then fits more slots per ciphertext."""
    return 24 if protocol is AggregationProtocol.PAILLIER else 32


def distributed_encoder(
    threat_model: Any,
    *,
    noise_multiplier: float,
    clip_norm: float,
    bits: int,
    cohort: int,
    dimension: int,
    rotation_seed: bytes | None = None,
) -> Any:
    """The distributed discrete Gaussian encoder of a round (:mod:`dp.distributed`).

    Every client's share of noise is sized so that the honest survivors -- the cohort
    less the threat model's dropouts and colluders -- reach noise multiplier ``z``.
    Server and clients compute the same parameters from the same public inputs; the
    rotation seed is fresh per round (``None``: a new one from the OS CSPRNG).
    """
    from dp.distributed import (
        DistributedDPEncoder,
        DistributedMechanism,
        select_parameters_for_threat_model,
    )

    params = select_parameters_for_threat_model(
        threat_model,
        mechanism=DistributedMechanism.DISCRETE_GAUSSIAN,
        noise_multiplier=noise_multiplier,
        clip_norm=clip_norm,
        bits=bits,
        expected_clients=cohort,
        dimension=dimension,
    )
    return DistributedDPEncoder(params, rotation_seed=rotation_seed)


def dp_minimum_threat_model(threat_model: Any, cohort: int) -> Any:
    """The threat model a distributed-DP round enforces: minimum aggregate ``n - D``.

    The noise is sized for ``n - max_dropouts(n)`` survivors; raising the minimum
    aggregate size to that makes clients refuse to unmask a sum with less noise than the
    ledger recorded.
    """
    import dataclasses

    needed = cohort - threat_model.max_dropouts(cohort)
    if needed <= threat_model.effective_min_aggregate_size(cohort):
        return threat_model
    return dataclasses.replace(threat_model, min_aggregate_size=needed)


#: Quantisation levels per client, in bits, for clipped and unclipped updates.
_CLIPPED_LEVEL_BITS = 24
_UNCLIPPED_LEVEL_BITS = 40
#: The most the fixed-point encoder supports.
_MAX_RING_BITS = 62
#: Default decryption committee of the Paillier protocol (a fixed committee lets one dealt
#: key serve every round).
_PAILLIER_COMMITTEE = 10


class SecureAggregator:
    """Securely aggregate client updates round by round, with differential privacy.

    Args:
        population: number of clients that may ever take part (user-level accounting).
        clients_per_round: expected cohort size; ``None`` means every client every round.
            With fewer than ``population``, draw each cohort with :meth:`sample_cohort`
            (exact Poisson sampling from a CSPRNG): only such rounds count amplification
            by sampling, and only in :attr:`amplified_epsilon`. A cohort chosen otherwise
            is accounted as full participation of its clients.
        client_ids: the ids of the population's members (``population`` distinct str or
            int ids). Default: the pool first given to :meth:`sample_cohort`, else
            ``range(population)``. Updates from any other id are refused.
        protocol: ``"secagg+"`` (default), ``"secagg"`` or ``"paillier"``.
        dp: ``"distributed"`` (default), ``"central"``, ``"local"`` or ``"none"``.
        threat_model: the adversary (:class:`threat_models.model.ThreatModel`); default
            ``ThreatModel()`` (malicious server, 5% colluding clients, 10% dropouts).
        noise_multiplier: ``z``, noise standard deviation over ``clip_norm``.
        target_epsilon: instead of ``z``: the (per-client, see :attr:`epsilon`) epsilon
            to reach after ``rounds`` rounds; ``z`` is calibrated so that a client taking
            part in every round stays within it, and it becomes the enforced budget. A
            target whose noise swamps the mean warns (:class:`NoisyAggregateWarning`).
        rounds: planned number of rounds (needed with ``target_epsilon``).
        clip_norm: ``C``, the L2 norm every update is clipped to: the sensitivity of
            user-level DP (default 1.0 there); optional for ``none`` and ``local`` (default:
            no clipping, only the ``value_bound`` range check).
        delta: target delta (default ``1 / (10 population)``).
        epsilon_budget: refuse (``BudgetExceededError``) any round that would push the
            headline epsilon (:attr:`epsilon`: a participant's per-client user-level
            epsilon, or its sample-level one for ``local``) above this; defaults to
            ``target_epsilon``.
        accountant: ``"pld"`` (default), ``"rdp"`` or ``"prv"``, for every figure
            (including the sample-level one of ``local``). For distributed DP, ``"pld"``
            and ``"rdp"`` both report the smaller of two valid bounds on the discrete
            Gaussian noise -- the RDP bound and the Gaussian-PLD bound with the closeness
            correction (:func:`dp.accounting.distributed_epsilon`); ``"prv"`` cannot
            account it and is refused. :meth:`privacy` recomputes the figures with another.
        value_bound: without clipping, the largest absolute coordinate accepted (larger
            ones are an error, never a silent wrap); default 1,000.
        max_weight: the largest weight :meth:`mean` accepts (it sizes the ring).
        verify: ``False``, ``True`` (= ``"protocol"``) or ``"unsafe-plaintext"``
            (:class:`VerifyMode`): also compute each aggregate in plaintext on the side and
            report the largest difference in :attr:`last_round`. Only
            ``"unsafe-plaintext"`` reports the distance to the *un-noised* sum
            (``max_abs_dp_error``), a release the ledger does not cover.
        progress: show the Paillier protocol's progress inside each round -- uploads
            encrypted, uploads verified, decryption shares (on a terminal only).
        paillier_committee: size of the Paillier decryption committee (default
            ``min(10, population)``; at most ``population``); its threshold is derived from the threat model, and a committee
            too small for it is refused. Every committee member verifies every upload, so
            the cost of a round grows with it.
        hazmat_paillier_key_bits: Paillier modulus size (3072, 128-bit security). Below
            2048 is INSECURE and meant for tests only.
        key_generation: who makes the Paillier key (``protocol="paillier"`` only):
            ``"dealer"`` (default) -- a trusted dealer that knows the factorisation and must
            forget it; ``"distributed"`` -- the decryption committee generates the key itself
            (:mod:`protocols.paillier.keygen`: no dealer, an honest majority of at least 3
            semi-honest committee members; textbook encryption randomness; 10-30 s of CPU
            per member for a 2048-bit key with 3-10 members, once per run).
        simulation_seed: ``None`` (default) for a private run. An int makes the run
            *reproducible and not private*: cohorts (:meth:`sample_cohort`), the DP noise
            (distributed shares, central noise), the distributed-DP rotation and the
            stochastic rounding are drawn from AES-256-CTR streams keyed by a hash of the
            seed (:class:`secagg.primitives.simulation.SimulationRandomness`), through the same
            samplers as a private run; masks, keys, shares and Paillier keys still come
            from the OS CSPRNG. Whoever knows the seed can predict the cohorts and remove
            the noise, so the epsilons hold for nobody: the constructor warns
            (:class:`UnsafeSimulationWarning`), every ledger round carries a note saying so
            and :meth:`privacy` reports ``simulation_seed``. With ``dp="local"`` the
            clients' DP-SGD noise is theirs and is not seeded.

    Raises:
        InvalidParameterError: on a malformed or contradictory configuration.
    """

    def __init__(
        self,
        *,
        population: int,
        clients_per_round: int | None = None,
        client_ids: Iterable[ClientId] | None = None,
        protocol: AggregationProtocol | str = AggregationProtocol.SECAGG_PLUS,
        dp: DPMode | str = DPMode.DISTRIBUTED,
        threat_model: ThreatModel | None = None,
        noise_multiplier: float | None = None,
        target_epsilon: float | None = None,
        rounds: int | None = None,
        clip_norm: float | None = None,
        delta: float | None = None,
        epsilon_budget: float | None = None,
        accountant: str | None = None,
        value_bound: float = 1000.0,
        max_weight: float = 1e6,
        verify: bool | VerifyMode | str = False,
        progress: bool = False,
        paillier_committee: int | None = None,
        hazmat_paillier_key_bits: int = 3072,
        simulation_seed: int | None = None,
        key_generation: str = "dealer",
    ) -> None:
        from threat_models.model import ThreatModel as ThreatModelClass

        if isinstance(population, bool) or not isinstance(population, int) or population < 2:
            raise InvalidParameterError(f"population must be an int >= 2, got {population!r}")
        if clients_per_round is None:
            clients_per_round = population
        if (
            isinstance(clients_per_round, bool)
            or not isinstance(clients_per_round, int)
            or not 2 <= clients_per_round <= population
        ):
            raise InvalidParameterError(
                f"clients_per_round must be an int in [2, population={population}], got {clients_per_round!r}"
            )
        self.population = population
        self.clients_per_round = clients_per_round
        self._population_ids: frozenset[ClientId] | None = None
        if client_ids is not None:
            self._population_ids = _population_ids(client_ids, population)
        self.protocol: AggregationProtocol = _coerce(AggregationProtocol, protocol, "protocol")
        self.dp: DPMode = _coerce(DPMode, dp, "dp mode")
        if threat_model is None:
            threat_model = ThreatModelClass()
        if not isinstance(threat_model, ThreatModelClass):
            raise InvalidParameterError("threat_model must be a threat_models.model.ThreatModel")
        self.threat_model = threat_model
        if clip_norm is None and self.dp.user_level:
            clip_norm = 1.0
        self.clip_norm = _positive("clip_norm", clip_norm, allow_none=True)
        self.delta = 1.0 / (10 * population) if delta is None else float(delta)
        if not 0.0 < self.delta < 1.0:
            raise InvalidParameterError(f"delta must lie in (0, 1), got {delta!r}")
        self.target_epsilon = _positive("target_epsilon", target_epsilon, allow_none=True)
        if noise_multiplier is not None and target_epsilon is not None:
            raise InvalidParameterError("give noise_multiplier or target_epsilon, not both")
        if self.target_epsilon is not None and not self.dp.user_level:
            raise InvalidParameterError(f"target_epsilon needs dp='central' or 'distributed', not {self.dp.value!r}")
        if self.target_epsilon is not None and (isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1):
            raise InvalidParameterError("target_epsilon needs the planned number of rounds")
        self.rounds = rounds
        if noise_multiplier is None and self.target_epsilon is None and self.dp.user_level:
            noise_multiplier = 1.0
        self._noise_multiplier = (
            None if noise_multiplier is None else _positive("noise_multiplier", noise_multiplier)
        )
        self.epsilon_budget = _positive("epsilon_budget", epsilon_budget, allow_none=True) or self.target_epsilon
        self._accountant_choice = None if accountant is None else _accountant_option(accountant, self.dp)
        if (
            isinstance(hazmat_paillier_key_bits, bool)
            or not isinstance(hazmat_paillier_key_bits, int)
            or hazmat_paillier_key_bits < 128
        ):
            raise InvalidParameterError("hazmat_paillier_key_bits must be an int >= 128")
        self._paillier_key_bits = hazmat_paillier_key_bits
        self.key_generation: KeyGeneration = _coerce(KeyGeneration, key_generation, "key generation")
        if paillier_committee is None:
            paillier_committee = min(_PAILLIER_COMMITTEE, population)
        if (
            isinstance(paillier_committee, bool)
            or not isinstance(paillier_committee, int)
            or not 2 <= paillier_committee <= population
        ):
            raise InvalidParameterError(
                f"paillier_committee must be an int in [2, population={population}], got {paillier_committee!r}"
            )
        self.paillier_committee = paillier_committee
        if self.key_generation is KeyGeneration.DISTRIBUTED and (
            self.protocol is not AggregationProtocol.PAILLIER or paillier_committee < 3
        ):
            raise InvalidParameterError(
                "key_generation='distributed' needs protocol='paillier' and a committee of at least 3"
            )
        self._simulation: SimulationRandomness | None = None
        if simulation_seed is not None:
            self._simulation = SimulationRandomness(simulation_seed)
            warnings.warn(
                f"SecureAggregator(simulation_seed={simulation_seed}): {SIMULATION_WARNING}",
                UnsafeSimulationWarning,
                stacklevel=2,
            )
        self._cohort_stream = None if self._simulation is None else self._simulation.stream("cohorts")
        self._noise_stream = None if self._simulation is None else self._simulation.stream("dp-noise")
        self._rounding_stream = None if self._simulation is None else self._simulation.stream("rounding")
        self.value_bound = float(_positive("value_bound", value_bound) or 0.0)
        self.max_weight = float(_positive("max_weight", max_weight) or 0.0)
        if isinstance(verify, bool):
            self.verify_mode = VerifyMode.PROTOCOL if verify else VerifyMode.OFF
        else:
            self.verify_mode = _coerce(VerifyMode, verify, "verify mode")
        self.verify = self.verify_mode is not VerifyMode.OFF
        self.progress = bool(progress)
        self._history: list[RoundReport] = []
        self._paillier_key: Any = None
        self._local_seen: dict[ClientId, Any] = {}
        self._run_nonce = secrets.randbits(32)
        self._pending_cohort: tuple[Any, ...] | None = None
        self._sampled_rounds = 0
        self._gate_delta = 0.0
        self._dimension: int | None = None
        self._minimum_cohort: int | None = None
        self._ledger = self._make_ledger()
        if self.dp.user_level:
            if self._noise_multiplier is not None:
                self._warn_if_noise_swamps(self._noise_multiplier)
            elif self.dp is DPMode.CENTRAL:  # calibrated now: central noise needs no dimension
                self._noise_multiplier = self._calibrate(1)
                self._warn_if_noise_swamps(self._noise_multiplier)

    # -- public state ------------------------------------------------------------------

    @property
    def history(self) -> tuple[RoundReport, ...]:
        """One :class:`RoundReport` per completed round."""
        return tuple(self._history)

    @property
    def last_round(self) -> RoundReport | None:
        """The report of the most recent round."""
        return self._history[-1] if self._history else None

    @property
    def ledger(self) -> Any:
        """The :class:`dp.ledger.PrivacyLedger` of this run (save it with ``.save(path)``)."""
        return self._ledger

    @property
    def simulation_seed(self) -> int | None:
        """The seed of a reproducible, *not private* simulation; ``None`` for a private run."""
        return None if self._simulation is None else self._simulation.seed

    @property
    def _ledger_note(self) -> str:
        if self._simulation is None:
            return ""
        return f"simulation_seed={self._simulation.seed}: {SIMULATION_WARNING}"

    @property
    def sampling_rate(self) -> float:
        """``q = clients_per_round / population``."""
        return self.clients_per_round / self.population

    @property
    def noise_multiplier(self) -> float | None:
        """``z`` (calibrated on the first round when a ``target_epsilon`` was given)."""
        return self._noise_multiplier

    @property
    def epsilon(self) -> float | None:
        """Epsilon spent so far at :attr:`delta`, true against the server (the headline).

        ``central``/``distributed``: user-level, *per client*: for every client the
        composition of the mechanisms of the rounds it actually took part in, without
        amplification by sampling (the server learns, and may choose, every cohort), and
        the worst client reported. ``local``: the largest client's sample-level epsilon.
        ``None`` for ``none`` (no DP). See :attr:`amplified_epsilon` for the figure with
        amplification and the assumption it needs.
        """
        return self.privacy().epsilon_per_client

    @property
    def amplified_epsilon(self) -> float | None:
        """User-level epsilon for any member of the population, with amplification by sampling.

        Holds only against an adversary who neither chooses nor learns which clients were
        sampled (sampling by the library's CSPRNG, hidden from the server) -- not against
        the server of any :class:`~threat_models.model.ServerClass`, which receives the
        cohort's messages. Amplification counts only for rounds whose cohort
        :meth:`sample_cohort` drew; the rounds a too-small sample skipped are charged
        too, and the chance that adding one client turns a skipped round into a run one
        is added to delta (the figure is evaluated at ``delta`` minus that sum; ``inf``
        once it reaches ``delta``). ``inf`` for ``local``; ``None`` for ``none``.
        """
        return self.privacy().epsilon_amplified

    def privacy(self, *, accountant: str | None = None) -> PrivacyStatement:
        """Every epsilon spent so far, each with the adversary it holds against.

        Args:
            accountant: ``"pld"``, ``"rdp"`` or ``"prv"`` to recompute the figures with
                another accountant than the run's (e.g. to compare); default the run's.

        Raises:
            InvalidParameterError: an unknown accountant, or one that cannot account this
                run's mechanisms (PRV with distributed DP).
        """
        kind = self._accountant_kind() if accountant is None else _accountant_option(accountant, self.dp)
        rounds = len(self._ledger)

        def statement(level: str | None, per_client: float | None, amplified: float | None) -> PrivacyStatement:
            return PrivacyStatement(
                level=level,
                epsilon_per_client=per_client,
                epsilon_amplified=amplified,
                delta=None if self.dp is DPMode.NONE else self.delta,
                accountant=kind,
                per_client_assumption=PER_CLIENT_ASSUMPTION,
                amplification_assumption=AMPLIFICATION_ASSUMPTION,
                rounds=rounds,
                sampled_rounds=self._sampled_rounds,
                simulation_seed=self.simulation_seed,
            )

        if self.dp is DPMode.NONE:
            return statement(None, None, None)
        if self.dp is DPMode.LOCAL:
            if not rounds:
                return statement("sample", 0.0, 0.0)
            levels = self._ledger.sample_level_epsilons(self.delta, accountant=kind)
            return statement("sample", float(max(levels.values(), default=0.0)), math.inf)
        if not rounds:
            return statement("user", 0.0, 0.0)
        worst = getattr(self._ledger, "worst_client_epsilon", None)
        if worst is not None and accountant is None:
            per_client = float(worst(self.delta) or 0.0)
        else:
            per_client = float(max(self._ledger.client_epsilons(self.delta, accountant=kind).values(), default=0.0))
        remaining = self.delta - self._gate_delta
        amplified = (
            float(self._ledger.population_epsilon(remaining, accountant=kind)) if remaining > 0 else math.inf
        )
        return statement("user", per_client, amplified)

    @property
    def population_ids(self) -> frozenset[ClientId]:
        """The ids of the population's members (see ``client_ids``)."""
        if self._population_ids is None:
            return frozenset(range(self.population))
        return self._population_ids

    @property
    def minimum_cohort(self) -> int:
        """The fewest clients a round can aggregate under the threat model and protocol.

        The smallest ``n >= 2`` for which the protocol's parameters exist for the round's
        threat model (enough expected survivors for the minimum aggregate size, a Shamir
        or decryption threshold both secure and correct). A sampled cohort below it is
        charged and skipped (:class:`CohortTooSmallError`).
        """
        if self._minimum_cohort is None:
            self._minimum_cohort = next(
                (n for n in range(2, self.population + 1) if self._feasible(n)), self.population + 1
            )
        return self._minimum_cohort

    def _feasible(self, n: int) -> bool:
        from secagg.errors import InfeasibleThreatModelError
        from threat_models.paillier import paillier_parameters
        from threat_models.parameters import secagg_parameters

        try:
            threat_model = self._round_threat_model(n)
            if self.protocol is AggregationProtocol.PAILLIER:
                paillier_parameters(n, threat_model, n_decryptors=self.paillier_committee)
            else:
                secagg_parameters(n, threat_model)  # SecAgg+ falls back to the complete graph
        except (InfeasibleThreatModelError, InvalidParameterError):
            return False
        return True

    # -- cohort sampling ---------------------------------------------------------------

    @overload
    def sample_cohort(self) -> list[int]: ...

    @overload
    def sample_cohort(self, clients: Iterable[_T]) -> list[_T]: ...

    def sample_cohort(self, clients: Iterable[Any] | None = None) -> list[Any]:
        """Poisson-sample the next round's cohort: each client independently with rate ``q``.

        Exactly the law the accountant assumes (:func:`poisson_sample`, OS CSPRNG; with
        ``simulation_seed``, the seeded stream instead -- reproducible, not private):
        nothing is redrawn, so the cohort may be empty or hold a single client; pass
        whatever it holds to :meth:`mean` (possibly ``{}``), which then charges the round
        and raises :class:`CohortTooSmallError` without releasing anything. The cohort is
        drawn once per round: calling again before the round ran returns the same cohort
        (a caller cannot redraw until a cohort suits it). The round counts amplification
        (in :attr:`amplified_epsilon`) if :meth:`mean` gets a subset of this cohort.

        Args:
            clients: the whole population (default ``range(population)``, or the
                ``client_ids``); the first pool given fixes the population's ids.

        Raises:
            InvalidParameterError: ``clients`` is not the population.
        """
        if clients is None:
            pool: list[Any] = sorted(self.population_ids, key=str) if self._population_ids else list(
                range(self.population)
            )
        else:
            pool = list(clients)
            ids = _population_ids(pool, self.population)
            if self._population_ids is None and not self._history:
                self._population_ids = ids
            elif ids != self.population_ids:
                raise InvalidParameterError("clients must be the population's ids (see client_ids)")
        if self._pending_cohort is None:
            if self._cohort_stream is None:
                drawn = poisson_sample(pool, self.clients_per_round, self.population)
            else:
                drawn = poisson_sample(
                    pool, self.clients_per_round, self.population, random_bytes=self._cohort_stream.read
                )
            self._pending_cohort = tuple(drawn)
        return list(self._pending_cohort)

    # -- aggregation -------------------------------------------------------------------

    def mean(
        self,
        updates: Mapping[Any, Any] | Sequence[Any],
        *,
        weights: Mapping[Any, float] | Sequence[float] | None = None,
        dropouts: Mapping[Any, Iterable[Any]] | None = None,
        local_dp: Mapping[Any, Any] | None = None,
    ) -> Any:
        """Securely aggregate one round's updates and return their mean.

        Args:
            updates: client id -> update (a torch state-dict delta, a dict or list of
                numpy arrays or tensors, or one array), or a list (ids ``0..n-1``). All
                updates must have the same structure: the same keys (in any order) or
                number of leaves, and the same shapes.
            weights: optional positive per-client weights (e.g. example counts, at most
                ``max_weight``) for a weighted mean; the server learns only their sum.
                Not available with user-level DP (weights would change the sensitivity).
            dropouts: simulate failures: protocol stage (``"advertise_keys"``,
                ``"share_keys"``, ``"masked_input"``, ...) -> client ids that vanish there.
            local_dp: with ``dp="local"``: client id -> its Opacus accountant (or
                :class:`dp.ledger.LocalDpSgd` steps) after this round's local training,
                for *every* client of ``updates`` (a round with any client missing,
                ``local_dp={}`` included, is refused).

        Returns:
            The mean, in the structure of the first update (its keys, in its order; a
            Python float leaf comes back as a float). With user-level DP it is the noised
            sum over the *expected* cohort size (the DP-FedAvg estimator).

        Accounting: if the cohort is a subset of the one :meth:`sample_cohort` drew for
        this round (dropouts only remove clients), the round counts amplification by
        sampling in :attr:`amplified_epsilon`; any other cohort is recorded as full
        participation of its clients. Every participant is charged the round in the
        per-client figure :attr:`epsilon`.

        Raises:
            BudgetExceededError: the round would exceed the privacy budget (nothing is
                aggregated and nothing is recorded).
            CohortTooSmallError: the sampled cohort (less dropouts) is smaller than
                :attr:`minimum_cohort`; the round was charged and nothing is released.
            ThresholdNotMetError, ProtocolAbortError: too many dropouts for the protocol
                (or for the DP guarantee); no aggregate is released, and the round stays
                in the ledger (it was charged before the clients noised their updates).
            ClientNotInPopulationError: an id outside the population (nothing happens).
            MissingLocalDpError: with ``dp="local"``, a client without its DP-SGD record
                (nothing is aggregated or recorded).
            InvalidParameterError, EncodingError: malformed updates or weights.
        """
        return self._aggregate(updates, weights=weights, dropouts=dropouts, local_dp=local_dp, mean=True)

    def sum(
        self,
        updates: Mapping[Any, Any] | Sequence[Any],
        *,
        dropouts: Mapping[Any, Iterable[Any]] | None = None,
        local_dp: Mapping[Any, Any] | None = None,
    ) -> Any:
        """Securely aggregate one round's updates and return their (noised) sum.

        Same arguments and errors as :meth:`mean`, without weights.
        """
        return self._aggregate(updates, weights=None, dropouts=dropouts, local_dp=local_dp, mean=False)

    def _aggregate(
        self,
        updates: Mapping[Any, Any] | Sequence[Any],
        *,
        weights: Mapping[Any, float] | Sequence[float] | None,
        dropouts: Mapping[Any, Iterable[Any]] | None,
        local_dp: Mapping[Any, Any] | None,
        mean: bool,
    ) -> Any:
        from dp.clipping import flatten_update

        started = time.perf_counter()
        ids, items = _split_updates(updates)
        n = len(ids)
        population = self.population_ids
        outsiders = [c for c in ids if c not in population]
        if outsiders:
            raise ClientNotInPopulationError(
                f"client {outsiders[0]!r} is not a member of the population of {self.population} "
                "(see client_ids)"
            )
        self._check_local_dp(ids, local_dp)
        pending = self._pending_cohort
        sampled = pending is not None and set(ids) <= set(pending)
        if n < 2 or (sampled and n < self.minimum_cohort):
            if not sampled:
                raise InvalidParameterError("secure aggregation needs updates from at least two clients")
            self._skip_round(ids, items)
        vectors: list[F64] = []
        layout: Any = None
        first = items[0] if items else None
        for cid, item in zip(ids, items):
            if isinstance(first, Mapping) and isinstance(item, Mapping) and item is not first:
                # a mapping's keys name its leaves: the first update's order is the order
                if item.keys() != first.keys():
                    raise InvalidParameterError(
                        f"the update of client {cid!r} has a different structure: "
                        f"{_key_difference(first, item)}"
                    )
                item = {k: item[k] for k in first}
            vector, this_layout = flatten_update(item)
            if layout is None:
                layout = this_layout
            elif (this_layout.names, this_layout.shapes, this_layout.kind) != (
                layout.names,
                layout.shapes,
                layout.kind,
            ):
                raise InvalidParameterError(
                    f"the update of client {cid!r} has a different structure: "
                    f"{_layout_difference(layout, this_layout)}"
                )
            vectors.append(vector)
        matrix = np.stack(vectors) if vectors else np.zeros((0, 0))
        d = int(matrix.shape[1])
        if d == 0:
            raise InvalidParameterError("updates are empty")

        # 1. clipping (the DP sensitivity) or a range check
        clipped = 0
        if self.clip_norm is not None:
            norms = np.linalg.norm(matrix, axis=1)
            over = norms > self.clip_norm
            clipped = int(np.count_nonzero(over))
            matrix[over] *= (self.clip_norm / norms[over])[:, None]
        elif matrix.size and float(np.max(np.abs(matrix))) > self.value_bound:
            from secagg.errors import EncodingError

            raise EncodingError(
                f"an update has a coordinate beyond value_bound={self.value_bound}; "
                "raise value_bound or set clip_norm"
            )
        bound = self.clip_norm if self.clip_norm is not None else self.value_bound

        # 2. weights are folded into the vector: [w x, w]
        weight_array: F64 | None = None
        if weights is not None:
            if self.dp.user_level:
                raise InvalidParameterError(
                    "weighted means are not available with user-level DP: weights change the "
                    "sensitivity; DP-FedAvg divides the noised sum by the expected cohort size"
                )
            if not mean:
                raise InvalidParameterError("weights apply to mean() only")
            weight_array = _weights(weights, ids, self.max_weight)  # the protocol masks [w x, w]

        # 3. the round's encoder, DP mechanism and ledger entry -- checked before anything
        #    leaves a client
        round_number = len(self._history) + 1
        threat_model = self._round_threat_model(n)
        encoder, planned_event, noise_stddev = self._round_encoder(
            n, d, bound, threat_model, weighted=weight_array is not None
        )
        record = self._round_record(ids, planned_event, local_dp, sampled=sampled)
        if record is not None:
            self._ledger.spend(record)
        self._dimension = d
        self._round_charged(sampled)

        # 4. the protocol
        recorder = _RecordingEncoder(encoder) if self.verify else None
        protocol_ids = {cid: index + 1 for index, cid in enumerate(ids)}
        result = self._run_protocol(
            {protocol_ids[c]: matrix[i] for i, c in enumerate(ids)},
            encoder=recorder if recorder is not None else encoder,
            dropouts=_map_dropouts(dropouts, protocol_ids),
            threat_model=threat_model,
            round_number=round_number,
            weights=None if weight_array is None else {protocol_ids[c]: float(w) for c, w in zip(ids, weight_array)},
        )
        survivor_pids = sorted(int(p) for p in result.survivors)
        survivors = tuple(ids[p - 1] for p in survivor_pids)
        total = np.asarray(result.aggregate, dtype=np.float64).reshape(-1)

        # 5. verification on the side
        max_diff: float | None = None
        max_dp_error: float | None = None
        if recorder is not None:
            inputs = matrix if weight_array is None else matrix * weight_array[:, None]
            max_diff, max_dp_error = self._verify(recorder, inputs, survivor_pids, total)
            if self.verify_mode is not VerifyMode.UNSAFE_PLAINTEXT:
                max_dp_error = None  # computed from the un-noised sum: not for release

        # 6. central noise, then the reduction
        if self.dp is DPMode.CENTRAL:
            from dp.central import CentralGaussianMechanism

            mechanism = CentralGaussianMechanism(float(self._noise_multiplier or 0.0), float(self.clip_norm or 1.0))
            seed = None if self._noise_stream is None else self._noise_stream.key()
            total = np.asarray(mechanism.add_noise(total, seed=seed).value, dtype=np.float64)
        if weight_array is not None:
            weight_sum = float(result.weight_sum or 0.0)
            if not weight_sum > 0:
                raise SecAggError("the aggregated weight is not positive")
            out = total / weight_sum
        elif mean:
            denominator = self.clients_per_round if self.dp.user_level else len(survivors)
            out = total / float(denominator)
        else:
            out = total

        statement = self.privacy()
        report = RoundReport(
            round=round_number,
            cohort=tuple(ids),
            survivors=survivors,
            clipped=clipped,
            epsilon=statement.epsilon_per_client,
            delta=statement.delta,
            noise_stddev=noise_stddev,
            seconds=time.perf_counter() - started,
            max_abs_difference=max_diff,
            max_abs_dp_error=max_dp_error,
            epsilon_amplified=statement.epsilon_amplified,
            sampled=sampled and self.clients_per_round < self.population,
        )
        self._history.append(report)
        return _rebuild_like(first, layout.unflatten(out))

    # -- sampling and accounting --------------------------------------------------------

    def _amplified(self, sampled: bool) -> bool:
        return sampled and self.dp.user_level and self.clients_per_round < self.population

    def _round_charged(self, sampled: bool) -> None:
        """A round went into the ledger: its sample is used up; amplification bookkeeping."""
        self._pending_cohort = None
        if not self._amplified(sampled):
            return
        from scipy.stats import binom

        self._sampled_rounds += 1
        # Whether a round runs depends on the cohort size: adding one client to a sample of
        # minimum_cohort - 1 others turns a skipped round into a run one. Conditioning on
        # the other clients' coins, that is the only case the amplified bound misses, so
        # its probability is added to delta (a union bound over the rounds).
        gate = self.minimum_cohort
        self._gate_delta += float(binom.pmf(gate - 1, self.population - 1, self.sampling_rate))

    def _skip_round(self, ids: Sequence[ClientId], items: Sequence[Any]) -> None:
        """Charge a round whose sampled cohort is too small, release nothing, and raise."""
        from dp.clipping import flatten_update
        from dp.ledger import ClientSampling, RoundRecord

        if self.dp is not DPMode.NONE:
            d = int(flatten_update(items[0])[0].size) if items else self._dimension
            event = self._skipped_round_event(d)
            amplified = self._amplified(True)
            sampling = (
                ClientSampling.from_counts(self.clients_per_round, self.population)
                if amplified
                else ClientSampling.full(self.population)
            )
            # nothing is released and the cohort is known to the server: no participant
            # spends anything; the population figure charges the round it might have run
            self._ledger.spend(RoundRecord(mechanism=event, sampling=sampling, participants=(), note=self._ledger_note))
        self._round_charged(True)
        raise CohortTooSmallError(
            f"the sampled cohort has {len(ids)} client(s), fewer than the {self.minimum_cohort} a round "
            "needs under the threat model; the round was charged and skipped, nothing was released"
        )

    def _skipped_round_event(self, d: int | None) -> Any:
        """The mechanism a skipped round would have applied had one more client been sampled."""
        import dp_accounting

        if not self.dp.user_level:
            return dp_accounting.NonPrivateDpEvent()
        if self.dp is DPMode.CENTRAL:
            return dp_accounting.GaussianDpEvent(float(self._noise_multiplier or 0.0))
        if d is None or d < 1:
            # the noise of distributed DP depends on the dimension, unknown before any update:
            # nothing bounds the round, so the population figure becomes infinite
            return dp_accounting.NonPrivateDpEvent()
        if self._noise_multiplier is None:
            self._noise_multiplier = self._calibrate(d)
            self._warn_if_noise_swamps(self._noise_multiplier)
        n = self.minimum_cohort
        encoder = self._distributed_encoder(float(self._noise_multiplier), n, d)
        return encoder.dp_event(n - self.threat_model.max_dropouts(n))

    def _check_local_dp(self, ids: Sequence[ClientId], local_dp: Mapping[Any, Any] | None) -> None:
        if local_dp is not None and self.dp is not DPMode.LOCAL:
            raise InvalidParameterError("local_dp is only meaningful with dp='local'")
        if self.dp is not DPMode.LOCAL:
            return
        if local_dp is None:
            raise MissingLocalDpError(
                "dp='local' needs local_dp: each client's Opacus accountant after its training"
            )
        if not isinstance(local_dp, Mapping):
            raise InvalidParameterError("local_dp must map client ids to accountants or LocalDpSgd steps")
        known = set(ids)
        for cid in local_dp:
            if cid not in known:
                raise InvalidParameterError(f"local_dp names client {cid!r}, which sent no update")
        missing = [c for c in ids if c not in local_dp]
        if missing:
            raise MissingLocalDpError(
                f"client {missing[0]!r} sent an update without its DP-SGD record in local_dp "
                f"({len(missing)} of {len(ids)} clients lack one); nothing was aggregated"
            )

    def _warn_if_noise_swamps(self, z: float) -> None:
        """Warn when the noise on each coordinate of the mean exceeds the clip norm."""
        m = self.clients_per_round
        clip = float(self.clip_norm or 1.0)
        std = z * clip / m
        if std > clip:
            target = "" if self.target_epsilon is None else f"target_epsilon={self.target_epsilon:g} needs "
            warnings.warn(
                f"{target}noise multiplier z={z:.4g}: the noise on each coordinate of the mean has "
                f"standard deviation z * clip_norm / clients_per_round = {std:.4g}, above clip_norm={clip:g}, "
                "the largest L2 norm the whole mean can have -- the mean is dominated by noise; "
                "raise epsilon, the number of clients per round, or lower the number of rounds",
                NoisyAggregateWarning,
                stacklevel=3,
            )

    # -- round set-up ------------------------------------------------------------------

    def _round_threat_model(self, n: int) -> Any:
        """The threat model the protocol enforces this round (see :func:`dp_minimum_threat_model`)."""
        if self.dp is not DPMode.DISTRIBUTED:
            return self.threat_model
        return dp_minimum_threat_model(self.threat_model, n)

    def _distributed_encoder(self, z: float, n: int, d: int, *, rotation_seed: bytes | None = None) -> Any:
        return distributed_encoder(
            self.threat_model,
            noise_multiplier=z,
            clip_norm=float(self.clip_norm or 1.0),
            bits=distributed_ring_bits(self.protocol),
            cohort=n,
            dimension=d,
            rotation_seed=rotation_seed,
        )

    def _calibrate(self, d: int) -> float:
        """``z`` meeting ``target_epsilon`` after ``rounds`` rounds (1% head-room).

        Calibrated for the headline figure: a client that takes part in every one of the
        ``rounds`` rounds, without amplification by sampling.
        """
        m = self.clients_per_round
        if self.dp is DPMode.DISTRIBUTED:

            def round_event(z: float) -> Any:
                encoder = self._distributed_encoder(z, m, d)
                return encoder.dp_event(m - self.threat_model.max_dropouts(m))

        else:
            import dp_accounting

            def round_event(z: float) -> Any:
                return dp_accounting.GaussianDpEvent(z)

        return calibrate_noise_multiplier(
            0.99 * float(self.target_epsilon or 0.0),
            delta=self.delta,
            rounds=int(self.rounds or 1),
            round_event=round_event,
            accountant=self._accountant_kind(),
        )

    def _round_encoder(
        self, n: int, d: int, bound: float, threat_model: Any, *, weighted: bool = False
    ) -> tuple[Any, Any, float]:
        """(encoder, planned DP event of the aggregate, noise std per coordinate of the sum)."""
        import dp_accounting

        if self.dp.user_level and self._noise_multiplier is None:
            self._noise_multiplier = self._calibrate(d)
            self._warn_if_noise_swamps(self._noise_multiplier)
        z = float(self._noise_multiplier or 0.0)
        if self.dp is DPMode.DISTRIBUTED:
            distributed: Any
            if self._noise_stream is not None and self._rounding_stream is not None:
                distributed = _SeededNoiseEncoder(
                    self._distributed_encoder(z, n, d, rotation_seed=self._noise_stream.key()),
                    noise=self._noise_stream,
                    rounding=self._rounding_stream.numpy_generator(),
                )
            else:
                distributed = self._distributed_encoder(z, n, d)
            survivors = threat_model.effective_min_aggregate_size(n)
            return distributed, distributed.dp_event(survivors), z * float(self.clip_norm or 0.0)
        # values reach the bound only up to float rounding after clipping
        encoder = fixed_point_encoder(
            bound, cohort=n, clipped=self.clip_norm is not None, max_weight=self.max_weight if weighted else None
        )
        if self.dp is DPMode.CENTRAL:
            return encoder, dp_accounting.GaussianDpEvent(z), z * float(self.clip_norm or 0.0)
        return encoder, dp_accounting.NonPrivateDpEvent(), 0.0

    def _accountant_kind(self) -> str:
        """The tightest valid accountant unless one was chosen: PLD.

        PLD for central Gaussian noise and for the local DP-SGD steps (subsampled
        Gaussians); for distributed DP the ledger reports, under PLD (as under RDP), the
        smaller of the RDP bound and the Gaussian-PLD bound with the closeness correction.
        """
        if self._accountant_choice is not None:
            return self._accountant_choice
        return "pld"

    def _make_ledger(self) -> Any:
        from dp.ledger import BudgetScope, PrivacyBudget, PrivacyLedger

        budgets = []
        if self.epsilon_budget is not None:
            # the budget limits the headline figure: each participant's own epsilon
            scope = BudgetScope.SAMPLE_LEVEL if self.dp is DPMode.LOCAL else BudgetScope.PER_CLIENT
            budgets.append(PrivacyBudget(epsilon=self.epsilon_budget, delta=self.delta, scope=scope))
        return PrivacyLedger(budgets=budgets, accountant=self._accountant_kind())

    def _round_record(
        self, ids: Sequence[ClientId], event: Any, local_dp: Mapping[Any, Any] | None, *, sampled: bool
    ) -> Any:
        from dp.ledger import ClientSampling, LocalDpSgd, RoundRecord, local_dp_sgd_from_opacus

        if self.dp is DPMode.NONE:
            return None
        # amplification only for a cohort the library's sampler drew for this round;
        # otherwise the round is full participation of the clients it names
        sampling = (
            ClientSampling.from_counts(self.clients_per_round, self.population)
            if self._amplified(sampled)
            else ClientSampling.full(self.population)
        )
        steps: dict[ClientId, tuple[Any, ...]] = {}
        if self.dp is DPMode.LOCAL:
            for cid, value in (local_dp or {}).items():
                if isinstance(value, (list, tuple)) and all(isinstance(s, LocalDpSgd) for s in value):
                    steps[cid] = tuple(value)
                else:
                    steps[cid] = local_dp_sgd_from_opacus(value, since=self._local_seen.get(cid))
                    history = getattr(value, "history", None)
                    self._local_seen[cid] = list(history) if history is not None else value
        return RoundRecord(
            mechanism=event, sampling=sampling, participants=tuple(ids), local_dp_sgd=steps, note=self._ledger_note
        )

    def _paillier_config(self, threat_model: Any, n: int) -> dict[str, Any]:
        from protocols.paillier.keygen import generate_distributed_key
        from secagg.primitives.threshold_paillier import deal_threshold_key
        from threat_models.paillier import paillier_parameters

        committee = self.paillier_committee
        if self._paillier_key is None:
            # the threshold depends on the committee only; the client-side checks use this
            # round's cohort, for which the round's threat model was derived
            params = paillier_parameters(n, threat_model, n_decryptors=committee)
            key_bits = self._paillier_key_bits
            if self.key_generation is KeyGeneration.DISTRIBUTED:
                distributed = generate_distributed_key(
                    list(range(1, committee + 1)),
                    threshold=params.threshold,
                    key_bits=key_bits,
                    hazmat_allow_weak_key=key_bits < 2048,
                    restart=False,
                )
                self._paillier_key = (
                    distributed.public_key,
                    tuple(sorted(distributed.shares.values(), key=lambda share: share.index)),
                )
            else:
                self._paillier_key = deal_threshold_key(
                    n_decryptors=committee,
                    threshold=params.threshold,
                    key_bits=key_bits,
                    hazmat_allow_weak_key=key_bits < 2048,
                )
        return {"key": self._paillier_key, "committee_size": committee}

    def _run_protocol(
        self,
        vectors: dict[int, F64],
        *,
        encoder: Any,
        dropouts: dict[str, list[int]] | None,
        threat_model: Any,
        round_number: int,
        weights: dict[int, float] | None = None,
    ) -> Any:
        from protocols import simulate

        config: dict[str, Any] = {
            "encoder": encoder,
            "threat_model": threat_model,
            "round_id": (self._run_nonce << 24) | round_number,
        }
        if weights is not None:
            config.update(weights=weights, max_weight=self.max_weight)
        if self.protocol is AggregationProtocol.PAILLIER:
            config.update(self._paillier_config(threat_model, len(vectors)))
            config["progress"] = self.progress
        else:
            config["record_view"] = False  # the recipe never reads the server's view
        # the stochastic rounding of fixed-point encodings: fresh (OS-seeded) unless simulating
        seed = None if self._rounding_stream is None else self._rounding_stream.integer()
        return simulate(vectors, protocol=self.protocol.value, dropouts=dropouts, seed=seed, **config)

    @staticmethod
    def _verify(
        recorder: _RecordingEncoder, matrix: F64, survivor_pids: Sequence[int], total: F64
    ) -> tuple[float | None, float | None]:
        """Recompute the survivors' aggregate in plaintext from the recorded encodings."""
        rows = [p - 1 for p in survivor_pids]
        plain = matrix[rows].sum(axis=0) if rows else np.zeros(matrix.shape[1])
        dp_error = float(np.max(np.abs(total - plain))) if total.shape == plain.shape else None
        length = recorder.encoded_length(matrix.shape[1])
        ring_sum = np.zeros(length, dtype=np.uint64)
        used: dict[bytes, int] = {}
        for row in rows:
            key = _digest(matrix[row])
            encodings = recorder.encodings.get(key, [])
            index = used.get(key, 0)
            if index >= len(encodings):
                return None, dp_error  # this client's encoding cannot be attributed
            used[key] = index + 1
            ring_sum += encodings[index]
        ring_sum &= np.uint64((1 << recorder.bits) - 1)
        expected = np.asarray(recorder.inner.decode_sum(ring_sum, len(rows)), dtype=np.float64)
        return float(np.max(np.abs(total - expected))), dp_error


def _split_updates(updates: Mapping[Any, Any] | Sequence[Any]) -> tuple[list[ClientId], list[Any]]:
    if isinstance(updates, Mapping):
        ids = list(updates.keys())
        items = [updates[c] for c in ids]
    elif isinstance(updates, Sequence) and not isinstance(updates, (str, bytes)):
        items = list(updates)
        ids = list(range(len(items)))
    else:
        raise InvalidParameterError("updates must map client ids to updates, or be a list of updates")
    for cid in ids:
        if isinstance(cid, bool) or not isinstance(cid, (str, int)):
            raise InvalidParameterError(f"client ids must be str or int, got {cid!r}")
    if len({str(c) for c in ids}) != len(ids):
        raise InvalidParameterError("client ids must be distinct (also as strings)")
    return ids, items


def _key_difference(first: Mapping[Any, Any], other: Mapping[Any, Any]) -> str:
    """What sets ``other``'s keys apart from ``first``'s, for an error message."""
    missing = [k for k in first if k not in other]
    extra = [k for k in other if k not in first]
    parts = []
    if missing:
        parts.append(f"missing keys {missing!r}")
    if extra:
        parts.append(f"extra keys {extra!r}")
    return ", ".join(parts) or "different keys"


def _layout_difference(expected: Any, got: Any) -> str:
    """What sets the layout ``got`` apart from ``expected``, for an error message."""
    if got.kind != expected.kind:
        return f"a {got.kind} instead of a {expected.kind}"
    if len(got.shapes) != len(expected.shapes):
        return f"{len(got.shapes)} leaves instead of {len(expected.shapes)}"
    what = "key" if expected.kind == "mapping" else "leaf"
    shapes = [
        f"{what} {name!r} has shape {g} instead of {e}"
        for name, e, g in zip(expected.names, expected.shapes, got.shapes)
        if e != g
    ]
    return "; ".join(shapes) or "different leaves"


def _rebuild_like(update: Any, result: Any) -> Any:
    """Give ``result`` (rebuilt from a layout) the keys and leaf types of ``update``.

    A mapping keeps the update's own keys (the layout spells them as strings) and a sequence
    of Python floats comes back as Python floats rather than 0-d arrays.
    """
    if isinstance(update, Mapping) and isinstance(result, dict):
        return {
            k: float(v) if type(update[k]) is float else v
            for k, v in zip(update.keys(), result.values())
        }
    if isinstance(result, list) and not isinstance(update, Mapping):
        return [float(v) if type(u) is float else v for u, v in zip(update, result)]
    return result


def _population_ids(clients: Iterable[Any], population: int) -> frozenset[ClientId]:
    if isinstance(clients, (str, bytes)):
        raise InvalidParameterError("client_ids must be a collection of ids, not a string")
    ids = list(clients)
    for cid in ids:
        if isinstance(cid, bool) or not isinstance(cid, (str, int)):
            raise InvalidParameterError(f"client ids must be str or int, got {cid!r}")
    if len(ids) != population or len({str(c) for c in ids}) != population:
        raise InvalidParameterError(f"expected the {population} distinct ids of the population")
    return frozenset(ids)


def _accountant_option(accountant: str, dp: DPMode) -> str:
    from dp.accounting import AccountantKind

    kind = AccountantKind.parse(accountant)
    if kind is AccountantKind.PRV and dp is DPMode.DISTRIBUTED:
        raise InvalidParameterError(
            "the prv accountant cannot account distributed discrete Gaussian noise; use 'pld' or 'rdp'"
        )
    return kind.value


def _weights(
    weights: Mapping[Any, float] | Sequence[float], ids: Sequence[ClientId], max_weight: float
) -> F64:
    if isinstance(weights, Mapping):
        missing = [c for c in ids if c not in weights]
        if missing or len(weights) != len(ids):
            raise InvalidParameterError("weights must give exactly one weight per client")
        values = [weights[c] for c in ids]
    else:
        values = list(weights)
        if len(values) != len(ids):
            raise InvalidParameterError(f"expected {len(ids)} weights, got {len(values)}")
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidParameterError("weights must be numbers") from None
    if not np.all(np.isfinite(array)) or np.any(array <= 0) or np.any(array > max_weight):
        raise InvalidParameterError(f"weights must be finite, positive and at most max_weight={max_weight}")
    return array


def _map_dropouts(
    dropouts: Mapping[Any, Iterable[Any]] | None, protocol_ids: Mapping[ClientId, int]
) -> dict[str, list[int]] | None:
    if dropouts is None:
        return None
    if not isinstance(dropouts, Mapping):
        raise InvalidParameterError("dropouts must map protocol stages to client ids")
    mapped: dict[str, list[int]] = {}
    for stage, clients in dropouts.items():
        key = str(getattr(stage, "value", stage))
        pids = []
        for cid in clients:
            if cid not in protocol_ids:
                raise InvalidParameterError(f"dropouts names client {cid!r}, which sent no update")
            pids.append(protocol_ids[cid])
        mapped[key] = pids
    return mapped
