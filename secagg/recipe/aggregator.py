"""The recipe's one object: :class:`SecureAggregator`, one per training run.

It holds the run's configuration and its privacy ledger; each call to
:meth:`SecureAggregator.mean` (or :meth:`~SecureAggregator.sum`) is one round: clip the
updates (:mod:`secagg.recipe.updates`), plan the round's encoding and DP mechanism
(:mod:`secagg.recipe.planning`), charge it to the ledger before anything leaves a client
(:mod:`secagg.recipe.accounting`), run the protocol (:mod:`secagg.recipe.execution`) and
release the mean in the structure of the first update. What the epsilons mean is
explained in :mod:`secagg.recipe` and :mod:`secagg.recipe.privacy`.
"""

from __future__ import annotations

import secrets
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar, cast, overload

import numpy as np
import numpy.typing as npt

from dp.central import CentralGaussianMechanism
from dp.ledger import PrivacyLedger
from dp.ledger_entries import RoundRecord
from protocols.paillier.keygen import KeyGeneration
from secagg.errors import InfeasibleThreatModelError, InvalidParameterError, SecAggError
from secagg.primitives.simulation import (
    SIMULATION_WARNING,
    SimulationRandomness,
    UnsafeSimulationWarning,
)
from secagg.recipe.accounting import (
    check_local_dp,
    client_sampling,
    make_ledger,
    privacy_statement,
    round_record,
    sampling_gate_delta,
)
from secagg.recipe.encoders import RecordingEncoder, verify_aggregate
from secagg.recipe.execution import PaillierKey, paillier_key, run_protocol
from secagg.recipe.noise import RunNoise
from secagg.recipe.options import (
    AggregationProtocol,
    ClientId,
    ClientNotInPopulationError,
    CohortTooSmallError,
    DPMode,
    VerifyMode,
    coerce,
)
from secagg.recipe.privacy import PrivacyStatement, accountant_option, poisson_sample
from secagg.recipe.report import RoundReport
from secagg.recipe.updates import (
    clip_rows,
    flatten_updates,
    map_dropouts,
    population_ids,
    rebuild_like,
    split_updates,
    update_weights,
)
from secagg.validation import is_int, require_int, require_positive
from threat_models.model import ThreatModel
from threat_models.paillier import paillier_parameters
from threat_models.parameters import secagg_parameters

__all__ = ["SecureAggregator"]

F64 = npt.NDArray[np.float64]
_T = TypeVar("_T")
_K = TypeVar("_K", bound=ClientId)
_U = TypeVar("_U")
_S = TypeVar("_S")

#: Default decryption committee of the Paillier protocol (a fixed committee lets one dealt
#: key serve every round).
_PAILLIER_COMMITTEE = 10


def _positive_or_none(name: str, value: float | None) -> float | None:
    return None if value is None else require_positive(name, value)


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
            ``min(10, population)``; at most ``population``); its threshold is derived
            from the threat model, and a committee too small for it is refused. Every
            committee member verifies every upload, so the cost of a round grows with it.
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
        key_generation: KeyGeneration | str = "dealer",
    ) -> None:
        population = require_int("population", population, lo=2)
        if clients_per_round is None:
            clients_per_round = population
        if not is_int(clients_per_round) or not 2 <= clients_per_round <= population:
            raise InvalidParameterError(
                f"clients_per_round must be an int in [2, population={population}], "
                f"got {clients_per_round!r}"
            )
        self.population = population
        self.clients_per_round = int(clients_per_round)
        self._population_ids: frozenset[ClientId] | None = None
        if client_ids is not None:
            self._population_ids = population_ids(client_ids, population)
        self.protocol: AggregationProtocol = coerce(AggregationProtocol, protocol, "protocol")
        self.dp: DPMode = coerce(DPMode, dp, "dp mode")
        if threat_model is None:
            threat_model = ThreatModel()
        if not isinstance(threat_model, ThreatModel):
            raise InvalidParameterError("threat_model must be a threat_models.model.ThreatModel")
        self.threat_model = threat_model
        if clip_norm is None and self.dp.user_level:
            clip_norm = 1.0
        self.clip_norm = _positive_or_none("clip_norm", clip_norm)
        self.delta = 1.0 / (10 * population) if delta is None else float(delta)
        if not 0.0 < self.delta < 1.0:
            raise InvalidParameterError(f"delta must lie in (0, 1), got {delta!r}")
        self.target_epsilon = _positive_or_none("target_epsilon", target_epsilon)
        if noise_multiplier is not None and target_epsilon is not None:
            raise InvalidParameterError("give noise_multiplier or target_epsilon, not both")
        if self.target_epsilon is not None and not self.dp.user_level:
            raise InvalidParameterError(
                f"target_epsilon needs dp='central' or 'distributed', not {self.dp.value!r}"
            )
        if self.target_epsilon is not None and (not is_int(rounds) or rounds < 1):
            raise InvalidParameterError("target_epsilon needs the planned number of rounds")
        self.rounds = rounds
        if noise_multiplier is None and self.target_epsilon is None and self.dp.user_level:
            noise_multiplier = 1.0
        noise_multiplier = _positive_or_none("noise_multiplier", noise_multiplier)
        self.epsilon_budget = (
            _positive_or_none("epsilon_budget", epsilon_budget) or self.target_epsilon
        )
        self._accountant_choice = (
            None if accountant is None else accountant_option(accountant, self.dp)
        )
        if not is_int(hazmat_paillier_key_bits) or hazmat_paillier_key_bits < 128:
            raise InvalidParameterError("hazmat_paillier_key_bits must be an int >= 128")
        self._paillier_key_bits = int(hazmat_paillier_key_bits)
        self.key_generation: KeyGeneration = coerce(KeyGeneration, key_generation, "key generation")
        if paillier_committee is None:
            paillier_committee = min(_PAILLIER_COMMITTEE, population)
        if not is_int(paillier_committee) or not 2 <= paillier_committee <= population:
            raise InvalidParameterError(
                f"paillier_committee must be an int in [2, population={population}], "
                f"got {paillier_committee!r}"
            )
        self.paillier_committee = int(paillier_committee)
        if self.key_generation is KeyGeneration.DISTRIBUTED and (
            self.protocol is not AggregationProtocol.PAILLIER or paillier_committee < 3
        ):
            raise InvalidParameterError(
                "key_generation='distributed' needs protocol='paillier' and a committee of "
                "at least 3"
            )
        self._simulation: SimulationRandomness | None = None
        if simulation_seed is not None:
            self._simulation = SimulationRandomness(simulation_seed)
            warnings.warn(
                f"SecureAggregator(simulation_seed={simulation_seed}): {SIMULATION_WARNING}",
                UnsafeSimulationWarning,
                stacklevel=2,
            )
        simulation = self._simulation
        self._cohort_stream = None if simulation is None else simulation.stream("cohorts")
        self._noise_stream = None if simulation is None else simulation.stream("dp-noise")
        self._rounding_stream = None if simulation is None else simulation.stream("rounding")
        self.value_bound = require_positive("value_bound", value_bound)
        self.max_weight = require_positive("max_weight", max_weight)
        if isinstance(verify, bool):
            self.verify_mode = VerifyMode.PROTOCOL if verify else VerifyMode.OFF
        else:
            self.verify_mode = coerce(VerifyMode, verify, "verify mode")
        self.verify = self.verify_mode is not VerifyMode.OFF
        self.progress = bool(progress)
        self._history: list[RoundReport] = []
        self._paillier_key: PaillierKey | None = None
        self._local_seen: dict[ClientId, object] = {}
        self._run_nonce = secrets.randbits(32)
        self._pending_cohort: tuple[object, ...] | None = None
        self._sampled_rounds = 0
        self._gate_delta = 0.0
        self._dimension: int | None = None
        self._minimum_cohort: int | None = None
        self._ledger = make_ledger(
            self.dp,
            epsilon_budget=self.epsilon_budget,
            delta=self.delta,
            accountant=self._accountant_kind(),
        )
        self._noise = RunNoise(
            dp=self.dp,
            protocol=self.protocol,
            threat_model=self.threat_model,
            clip_norm=self.clip_norm,
            clients_per_round=self.clients_per_round,
            delta=self.delta,
            noise_multiplier=noise_multiplier,
            target_epsilon=self.target_epsilon,
            rounds=self.rounds,
            accountant=self._accountant_kind(),
            noise_stream=self._noise_stream,
            rounding_stream=self._rounding_stream,
        )
        self._noise.start()  # central noise is calibrated at once (it needs no dimension)

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
    def ledger(self) -> PrivacyLedger:
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
        return self._noise.noise_multiplier

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
        kind = self._accountant_kind()
        if accountant is not None:
            kind = accountant_option(accountant, self.dp)
        return privacy_statement(
            self._ledger,
            self.dp,
            delta=self.delta,
            accountant=kind,
            recompute=accountant is not None,
            sampled_rounds=self._sampled_rounds,
            gate_delta=self._gate_delta,
            simulation_seed=self.simulation_seed,
        )

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
                (n for n in range(2, self.population + 1) if self._feasible(n)),
                self.population + 1,
            )
        return self._minimum_cohort

    def _feasible(self, n: int) -> bool:
        try:
            threat_model = self._noise.round_threat_model(n)
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

    def sample_cohort(self, clients: Iterable[_T] | None = None) -> list[_T] | list[int]:
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
        pool: list[Any]
        if clients is None:
            if self._population_ids:
                pool = sorted(self.population_ids, key=str)
            else:
                pool = list(range(self.population))
        else:
            pool = list(clients)
            ids = population_ids(pool, self.population)
            if self._population_ids is None and not self._history:
                self._population_ids = ids
            elif ids != self.population_ids:
                raise InvalidParameterError("clients must be the population's ids (see client_ids)")
        if self._pending_cohort is None:
            if self._cohort_stream is None:
                drawn = poisson_sample(pool, self.clients_per_round, self.population)
            else:
                drawn = poisson_sample(
                    pool,
                    self.clients_per_round,
                    self.population,
                    random_bytes=self._cohort_stream.read,
                )
            self._pending_cohort = tuple(drawn)
        # the pending cohort holds the ids of the pool the caller gave (or range ids)
        return cast("list[_T] | list[int]", list(self._pending_cohort))

    # -- aggregation -------------------------------------------------------------------

    def mean(
        self,
        updates: Mapping[_K, _U] | Sequence[_U],
        *,
        weights: Mapping[_K, float] | Sequence[float] | None = None,
        dropouts: Mapping[_S, Iterable[_K]] | None = None,
        local_dp: Mapping[_K, object] | None = None,
    ) -> _U:
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
        return self._aggregate(
            updates, weights=weights, dropouts=dropouts, local_dp=local_dp, mean=True
        )

    def sum(
        self,
        updates: Mapping[_K, _U] | Sequence[_U],
        *,
        dropouts: Mapping[_S, Iterable[_K]] | None = None,
        local_dp: Mapping[_K, object] | None = None,
    ) -> _U:
        """Securely aggregate one round's updates and return their (noised) sum.

        Same arguments and errors as :meth:`mean`, without weights.
        """
        return self._aggregate(
            updates, weights=None, dropouts=dropouts, local_dp=local_dp, mean=False
        )

    def _aggregate(
        self,
        updates: Mapping[_K, _U] | Sequence[_U],
        *,
        weights: Mapping[_K, float] | Sequence[float] | None,
        dropouts: Mapping[_S, Iterable[_K]] | None,
        local_dp: Mapping[_K, object] | None,
        mean: bool,
    ) -> _U:
        started = time.perf_counter()
        ids, items = split_updates(updates)
        n = len(ids)
        population = self.population_ids
        outsiders = [c for c in ids if c not in population]
        if outsiders:
            raise ClientNotInPopulationError(
                f"client {outsiders[0]!r} is not a member of the population of "
                f"{self.population} (see client_ids)"
            )
        check_local_dp(self.dp, ids, local_dp)
        pending = self._pending_cohort
        sampled = pending is not None and set(ids) <= set(pending)
        if n < 2 or (sampled and n < self.minimum_cohort):
            if not sampled:
                raise InvalidParameterError(
                    "secure aggregation needs updates from at least two clients"
                )
            self._skip_round(ids, items)
        matrix, layout = flatten_updates(ids, items)
        d = int(matrix.shape[1])

        # 1. clipping (the DP sensitivity) or a range check
        clipped = clip_rows(matrix, self.clip_norm, self.value_bound)
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
            weight_array = update_weights(weights, ids, self.max_weight)

        # 3. the round's encoder, DP mechanism and ledger entry -- checked before anything
        #    leaves a client
        round_number = len(self._history) + 1
        threat_model = self._noise.round_threat_model(n)
        encoder, planned_event, noise_stddev = self._noise.round_encoder(
            n,
            d,
            bound,
            threat_model,
            max_weight=None if weight_array is None else self.max_weight,
        )
        record = round_record(
            self.dp,
            ids,
            planned_event,
            # amplification only for a cohort the library's sampler drew for this round;
            # otherwise the round is full participation of the clients it names
            sampling=client_sampling(
                self._amplified(sampled), self.clients_per_round, self.population
            ),
            local_dp=local_dp,
            local_seen=self._local_seen,
            note=self._ledger_note,
        )
        if record is not None:
            self._ledger.spend(record)
        self._dimension = d
        self._round_charged(sampled)

        # 4. the protocol
        recorder = RecordingEncoder(encoder) if self.verify else None
        protocol_ids = {cid: index + 1 for index, cid in enumerate(ids)}
        if self.protocol is AggregationProtocol.PAILLIER and self._paillier_key is None:
            self._paillier_key = paillier_key(
                threat_model,
                n,
                committee=self.paillier_committee,
                key_bits=self._paillier_key_bits,
                key_generation=self.key_generation,
            )
        result = run_protocol(
            self.protocol,
            {protocol_ids[c]: matrix[i] for i, c in enumerate(ids)},
            encoder=recorder if recorder is not None else encoder,
            threat_model=threat_model,
            round_id=(self._run_nonce << 24) | round_number,
            dropouts=map_dropouts(dropouts, protocol_ids),
            # the stochastic rounding of fixed-point encodings: fresh unless simulating
            seed=None if self._rounding_stream is None else self._rounding_stream.integer(),
            weights=None
            if weight_array is None
            else {protocol_ids[c]: float(w) for c, w in zip(ids, weight_array)},
            max_weight=self.max_weight,
            key=self._paillier_key,
            committee=self.paillier_committee,
            progress=self.progress,
        )
        survivor_pids = sorted(int(p) for p in result.survivors)
        survivors = tuple(ids[p - 1] for p in survivor_pids)
        total = np.asarray(result.aggregate, dtype=np.float64).reshape(-1)

        # 5. verification on the side
        max_diff: float | None = None
        max_dp_error: float | None = None
        if recorder is not None:
            inputs = matrix if weight_array is None else matrix * weight_array[:, None]
            max_diff, max_dp_error = verify_aggregate(recorder, inputs, survivor_pids, total)
            if self.verify_mode is not VerifyMode.UNSAFE_PLAINTEXT:
                max_dp_error = None  # computed from the un-noised sum: not for release

        # 6. central noise, then the reduction
        if self.dp is DPMode.CENTRAL:
            mechanism = CentralGaussianMechanism(
                float(self._noise.noise_multiplier or 0.0), float(self.clip_norm or 1.0)
            )
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
        return cast(_U, rebuild_like(items[0], layout.unflatten(out)))

    # -- sampling and accounting --------------------------------------------------------

    def _amplified(self, sampled: bool) -> bool:
        return sampled and self.dp.user_level and self.clients_per_round < self.population

    def _round_charged(self, sampled: bool) -> None:
        """A round went into the ledger: its sample is used up; amplification bookkeeping."""
        self._pending_cohort = None
        if not self._amplified(sampled):
            return
        self._sampled_rounds += 1
        self._gate_delta += sampling_gate_delta(
            self.minimum_cohort, self.population, self.sampling_rate
        )

    def _skip_round(self, ids: Sequence[ClientId], items: Sequence[object]) -> None:
        """Charge a round whose sampled cohort is too small, release nothing, and raise."""
        if self.dp is not DPMode.NONE:
            d = self._dimension
            if items:
                d = int(flatten_updates(ids[:1], items[:1])[0].shape[1])
            sampling = client_sampling(
                self._amplified(True), self.clients_per_round, self.population
            )
            # nothing is released and the cohort is known to the server: no participant
            # spends anything; the population figure charges the round it might have run
            self._ledger.spend(
                RoundRecord(
                    mechanism=self._noise.skipped_round_event(d, self.minimum_cohort),
                    sampling=sampling,
                    participants=(),
                    note=self._ledger_note,
                )
            )
        self._round_charged(True)
        raise CohortTooSmallError(
            f"the sampled cohort has {len(ids)} client(s), fewer than the "
            f"{self.minimum_cohort} a round needs under the threat model; the round was "
            "charged and skipped, nothing was released"
        )

    def _accountant_kind(self) -> str:
        """The tightest valid accountant unless one was chosen: PLD.

        PLD for central Gaussian noise and for the local DP-SGD steps (subsampled
        Gaussians); for distributed DP the ledger reports, under PLD (as under RDP), the
        smaller of the RDP bound and the Gaussian-PLD bound with the closeness correction.
        """
        if self._accountant_choice is not None:
            return self._accountant_choice
        return "pld"
