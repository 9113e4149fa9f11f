"""Privacy ledger: what was applied, to whom, round by round; budgets enforced before spending.

A :class:`PrivacyLedger` holds one immutable :class:`RoundRecord` per federated round:

* ``mechanism`` -- the DP event applied to the aggregate of the round's cohort, *before*
  client sampling (e.g. ``GaussianDpEvent(z)`` for DP-FedAvg with noise multiplier ``z``,
  or a :class:`~dp.events.DistributedDiscreteGaussianDpEvent`);
* ``sampling`` -- how the cohort was drawn from the population (:class:`ClientSampling`);
* ``participants`` -- the ids of the clients whose data may enter the aggregate;
* ``local_dp_sgd`` -- per client, the DP-SGD steps run locally (from its Opacus accountant).

Three granularities are tracked (:class:`BudgetScope`):

``POPULATION``
    User-level DP for any member of the population (McMahan et al., ICLR 2018): each
    round is the mechanism under Poisson subsampling with rate ``q = clients per round /
    population`` (``q = 1``: every client every round), composed over the rounds.
``PER_CLIENT``
    For each client, the composition of the mechanisms of the rounds it actually took
    part in, *without* amplification by sampling: the server knows who was selected, so
    a client's own guarantee conditioned on its participation is the honest figure.
``SAMPLE_LEVEL``
    For each client, record-level DP of its local data from the DP-SGD steps it ran
    (Opacus' history ``(noise_multiplier, sample_rate, steps)``), composed over rounds.

**Budget enforcement (check, then commit).** Call :meth:`PrivacyLedger.spend` *before*
any noise is drawn or any update leaves a client, with the planned round (its cohort and
the weakest mechanism the protocol may end up applying -- e.g. the distributed noise of
the smallest number of survivors it accepts). ``spend`` computes every tracked epsilon as
if the round were recorded, raises :class:`~secagg.errors.BudgetExceededError` and
records nothing if any budget would be exceeded, and otherwise appends the round.
:meth:`PrivacyLedger.preview` performs the same check without recording anything::

    ledger = PrivacyLedger(budgets=[PrivacyBudget(epsilon=8.0, delta=1e-5)])
    record = RoundRecord(GaussianDpEvent(1.0), ClientSampling.from_counts(100, 10_000),
                         participants=cohort)
    ledger.spend(record)          # raises BudgetExceededError before anything is spent
    ...run the round...
    ledger.save("ledger.json")

The ledger is persisted as versioned JSON (:meth:`PrivacyLedger.to_json`,
:meth:`PrivacyLedger.load`); the events are serialised with
:func:`dp.accounting.event_to_dict`. :meth:`PrivacyLedger.save` seals the file with an
HMAC-SHA256 whose key sits in a private key file next to it (or is held by the caller);
:meth:`PrivacyLedger.load` refuses, with :class:`~secagg.errors.LedgerIntegrityError`, a
file that was edited, replaced by an older copy or by another run's ledger, and an
unsigned file unless ``allow_unsigned=True``. :meth:`PrivacyLedger.from_json` and
:meth:`PrivacyLedger.from_dict` parse without any check.

Which epsilon holds against whom: :meth:`PrivacyLedger.population_epsilon` is amplified
by the cohort sampling and holds only against an adversary who neither chooses nor learns
the sample; :meth:`PrivacyLedger.worst_client_epsilon` (the largest per-client figure
from actual participation) holds against a server that chooses or observes the cohort.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
import secrets
import stat
import sys
import tempfile
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType
from typing import Any

import dp_accounting
import numpy as np
import numpy.typing as npt
from dp_accounting.privacy_accountant import NeighboringRelation

from dp.accounting import (
    DEFAULT_PLD_DISCRETIZATION,
    AccountantKind,
    AccountantLimitError,
    check_supported,
    compute_delta,
    compute_epsilon,
    contains_distributed_discrete_gaussian,
    distributed_pld_epsilon,
    event_from_dict,
    event_key,
    event_to_dict,
    rdp_curve,
    rdp_to_epsilon,
)
from secagg.errors import (
    BudgetExceededError,
    InvalidParameterError,
    LedgerIntegrityError,
    UnsupportedEventError,
)

__all__ = [
    "LEDGER_FORMAT",
    "LEDGER_VERSION",
    "BudgetScope",
    "SamplingScheme",
    "PrivacyBudget",
    "ClientSampling",
    "LocalDpSgd",
    "RoundRecord",
    "BudgetStatus",
    "SpendReport",
    "PrivacyLedger",
    "local_dp_sgd_from_opacus",
    "curve_rounds",
    "ledger_mac",
    "KEY_SUFFIX",
]

FloatArray = npt.NDArray[np.float64]
LEDGER_FORMAT = "secagg-fl/privacy-ledger"
LEDGER_VERSION = 2
_READABLE_VERSIONS = (1, 2)  # version 1: no ledger id, never signed
KEY_FORMAT = "secagg-fl/privacy-ledger-key"
KEY_SUFFIX = ".key"
MAC_ALGORITHM = "HMAC-SHA256"
_MAC_DOMAIN = b"secagg-fl/privacy-ledger/hmac-sha256\x00"
_KEY_BYTES = 32


class BudgetScope(str, Enum):
    """Which epsilon a budget limits (see the module docstring)."""

    POPULATION = "population"
    PER_CLIENT = "per_client"
    SAMPLE_LEVEL = "sample_level"


class SamplingScheme(str, Enum):
    """How a round's cohort is drawn.

    ``POISSON``: each client independently with probability ``rate``
    (``PoissonSampledDpEvent``, add/remove neighbours). ``FIXED_SIZE``: a uniformly random
    cohort of exactly ``rate * population`` clients (``SampledWithoutReplacementDpEvent``,
    accounted by the RDP accountant for replace-one neighbours only).
    """

    POISSON = "poisson"
    FIXED_SIZE = "fixed_size"


def _finite(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidParameterError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _count(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidParameterError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


@dataclass(frozen=True)
class PrivacyBudget:
    """A limit ``epsilon`` on the epsilon at ``delta`` of one :class:`BudgetScope`."""

    epsilon: float
    delta: float
    scope: BudgetScope = BudgetScope.POPULATION

    def __post_init__(self) -> None:
        eps = _finite("budget epsilon", self.epsilon)
        if eps <= 0:
            raise InvalidParameterError(f"budget epsilon must be positive, got {eps}")
        delta = _finite("budget delta", self.delta)
        if not 0.0 < delta < 1.0:
            raise InvalidParameterError(f"budget delta must lie in (0, 1), got {delta}")
        object.__setattr__(self, "scope", BudgetScope(self.scope))

    def to_dict(self) -> dict[str, Any]:
        return {"epsilon": self.epsilon, "delta": self.delta, "scope": self.scope.value}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PrivacyBudget:
        try:
            return cls(float(data["epsilon"]), float(data["delta"]), BudgetScope(data["scope"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidParameterError(f"malformed budget {data!r}: {exc}") from exc


@dataclass(frozen=True)
class ClientSampling:
    """How each round's cohort is drawn from the population.

    Attributes:
        rate: sampling rate ``q`` in ``(0, 1]``; ``1`` means every client every round.
        population: number of clients in the population (required for ``FIXED_SIZE``).
        scheme: :class:`SamplingScheme`.
    """

    rate: float
    population: int | None = None
    scheme: SamplingScheme = SamplingScheme.POISSON

    def __post_init__(self) -> None:
        rate = _finite("sampling rate", self.rate)
        if not 0.0 < rate <= 1.0:
            raise InvalidParameterError(f"sampling rate must lie in (0, 1], got {rate}")
        object.__setattr__(self, "rate", rate)
        object.__setattr__(self, "scheme", SamplingScheme(self.scheme))
        if self.population is not None:
            _count("population", self.population, 1)
        if self.scheme is SamplingScheme.FIXED_SIZE:
            if self.population is None:
                raise InvalidParameterError("fixed-size sampling needs the population size")
            size = rate * self.population
            if abs(size - round(size)) > 1e-9:
                raise InvalidParameterError(
                    "fixed-size sampling needs rate * population to be an integer"
                )

    @classmethod
    def from_counts(
        cls,
        clients_per_round: int,
        population: int,
        scheme: SamplingScheme = SamplingScheme.POISSON,
    ) -> ClientSampling:
        """Sampling of ``clients_per_round`` (expected, for Poisson) out of ``population``."""
        _count("clients_per_round", clients_per_round, 1)
        _count("population", population, 1)
        if clients_per_round > population:
            raise InvalidParameterError("clients_per_round cannot exceed the population")
        return cls(clients_per_round / population, population, scheme)

    @classmethod
    def full(cls, population: int | None = None) -> ClientSampling:
        """Every client takes part in every round."""
        return cls(1.0, population)

    def wrap(self, mechanism: dp_accounting.DpEvent) -> dp_accounting.DpEvent:
        """The population-level event of one round: ``mechanism`` under this sampling."""
        if self.rate == 1.0:
            return mechanism
        if self.scheme is SamplingScheme.POISSON:
            return dp_accounting.PoissonSampledDpEvent(self.rate, mechanism)
        population = int(self.population or 0)
        return dp_accounting.SampledWithoutReplacementDpEvent(
            population, int(round(self.rate * population)), mechanism
        )

    def to_dict(self) -> dict[str, Any]:
        return {"rate": self.rate, "population": self.population, "scheme": self.scheme.value}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClientSampling:
        try:
            population = data.get("population")
            return cls(
                float(data["rate"]),
                None if population is None else int(population),
                SamplingScheme(data.get("scheme", SamplingScheme.POISSON.value)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidParameterError(f"malformed sampling {data!r}: {exc}") from exc


@dataclass(frozen=True)
class LocalDpSgd:
    """DP-SGD steps run on one client: ``steps`` Poisson-sampled Gaussian steps.

    One entry of an Opacus accountant's ``history``; record-level (sample-level) DP of
    the client's local dataset.
    """

    noise_multiplier: float
    sample_rate: float
    steps: int

    def __post_init__(self) -> None:
        nm = _finite("noise_multiplier", self.noise_multiplier)
        if nm < 0:
            raise InvalidParameterError("noise_multiplier must be >= 0")
        q = _finite("sample_rate", self.sample_rate)
        if not 0.0 <= q <= 1.0:
            raise InvalidParameterError("sample_rate must lie in [0, 1]")
        _count("steps", self.steps, 0)
        object.__setattr__(self, "noise_multiplier", nm)
        object.__setattr__(self, "sample_rate", q)

    def event(self) -> dp_accounting.DpEvent:
        step: dp_accounting.DpEvent = dp_accounting.GaussianDpEvent(self.noise_multiplier)
        if self.sample_rate < 1.0:
            step = dp_accounting.PoissonSampledDpEvent(self.sample_rate, step)
        return dp_accounting.SelfComposedDpEvent(step, self.steps)

    def to_dict(self) -> dict[str, Any]:
        return {
            "noise_multiplier": self.noise_multiplier,
            "sample_rate": self.sample_rate,
            "steps": self.steps,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LocalDpSgd:
        try:
            return cls(
                float(data["noise_multiplier"]), float(data["sample_rate"]), int(data["steps"])
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidParameterError(f"malformed local DP-SGD entry {data!r}: {exc}") from exc


def local_dp_sgd_from_opacus(
    accountant_or_history: Any, *, since: Any = None
) -> tuple[LocalDpSgd, ...]:
    """Local DP-SGD steps from an Opacus accountant, its ``state_dict()`` or its ``history``.

    Args:
        accountant_or_history: an Opacus ``IAccountant`` (anything with ``history``), a
            ``state_dict()`` mapping with a ``"history"`` key, or the history list of
            ``(noise_multiplier, sample_rate, steps)`` tuples.
        since: optionally the same kind of object captured earlier (e.g. before this
            round's local training); only the steps taken after it are returned, so a
            client carrying its accountant state across rounds reports one round's steps.

    Returns:
        The steps as :class:`LocalDpSgd` entries.
    """

    def history(obj: Any) -> list[tuple[float, float, int]]:
        if obj is None:
            return []
        if isinstance(obj, Mapping):
            obj = obj.get("history")
        elif hasattr(obj, "history"):
            obj = obj.history
        if not isinstance(obj, Sequence):
            raise InvalidParameterError(
                "expected an Opacus accountant, its state_dict or its history"
            )
        out = []
        for item in obj:
            if not isinstance(item, Sequence) or len(item) != 3:
                raise InvalidParameterError(f"malformed Opacus history entry {item!r}")
            out.append((float(item[0]), float(item[1]), int(item[2])))
        return out

    now, before = history(accountant_or_history), history(since)
    remaining: Counter[tuple[float, float]] = Counter()
    for nm, q, steps in before:
        remaining[(nm, q)] += steps
    result = []
    for nm, q, steps in now:
        already = min(remaining[(nm, q)], steps)
        remaining[(nm, q)] -= already
        if steps - already > 0:
            result.append(LocalDpSgd(nm, q, steps - already))
    return tuple(result)


def _normalise_id(client: object) -> str:
    if isinstance(client, bool) or not isinstance(client, (str, int)):
        raise InvalidParameterError(f"client ids must be str or int, got {type(client).__name__}")
    return str(client)


ClientId = str | int


@dataclass(frozen=True, init=False)
class RoundRecord:
    """What one round applied. Immutable; client ids are stored as strings.

    Attributes:
        mechanism: DP event applied to the cohort's aggregate (before client sampling).
        sampling: how the cohort was drawn.
        participants: ids of the clients whose data may enter the aggregate (the
            selected cohort); ``None`` if unknown (per-client accounting then impossible).
            ``int`` ids are accepted and stored as ``str``.
        local_dp_sgd: per client id, the DP-SGD steps it ran locally this round
            (read-only mapping).
        note: free text.
    """

    mechanism: dp_accounting.DpEvent
    sampling: ClientSampling
    participants: tuple[str, ...] | None
    local_dp_sgd: Mapping[str, tuple[LocalDpSgd, ...]]
    note: str

    def __init__(
        self,
        mechanism: dp_accounting.DpEvent,
        sampling: ClientSampling,
        participants: Iterable[ClientId] | None = None,
        local_dp_sgd: Mapping[str, Iterable[LocalDpSgd]]
        | Mapping[int, Iterable[LocalDpSgd]]
        | Mapping[ClientId, Iterable[LocalDpSgd]]
        | None = None,
        note: str = "",
    ) -> None:
        if not isinstance(mechanism, dp_accounting.DpEvent):
            raise InvalidParameterError("mechanism must be a dp_accounting.DpEvent")
        event_to_dict(mechanism)  # refuses unknown classes and non-finite fields
        if not isinstance(sampling, ClientSampling):
            raise InvalidParameterError("sampling must be a ClientSampling")
        ids: tuple[str, ...] | None = None
        if participants is not None:
            if isinstance(participants, (str, bytes)) or not isinstance(participants, Iterable):
                raise InvalidParameterError(
                    "participants must be a collection of ids, not a string"
                )
            ids = tuple(_normalise_id(c) for c in participants)
            if len(set(ids)) != len(ids):
                raise InvalidParameterError("participants contains duplicate ids")
        if local_dp_sgd is None:
            local_dp_sgd = {}
        if not isinstance(local_dp_sgd, Mapping):
            raise InvalidParameterError("local_dp_sgd must map client ids to DP-SGD steps")
        local: dict[str, tuple[LocalDpSgd, ...]] = {}
        for client, steps in local_dp_sgd.items():
            cid = _normalise_id(client)
            if cid in local:
                raise InvalidParameterError(f"client {cid!r} appears twice in local_dp_sgd")
            entries = tuple(steps)
            if not all(isinstance(s, LocalDpSgd) for s in entries):
                raise InvalidParameterError("local_dp_sgd values must be sequences of LocalDpSgd")
            local[cid] = entries
        if not isinstance(note, str):
            raise InvalidParameterError("note must be a string")
        object.__setattr__(self, "mechanism", mechanism)
        object.__setattr__(self, "sampling", sampling)
        object.__setattr__(self, "participants", ids)
        object.__setattr__(self, "local_dp_sgd", MappingProxyType(local))
        object.__setattr__(self, "note", note)

    @property
    def population_event(self) -> dp_accounting.DpEvent:
        """The round's population-level event: the mechanism under the cohort sampling."""
        return self.sampling.wrap(self.mechanism)

    def to_dict(self) -> dict[str, Any]:
        return {
            "mechanism": event_to_dict(self.mechanism),
            "sampling": self.sampling.to_dict(),
            "participants": None if self.participants is None else list(self.participants),
            "local_dp_sgd": {
                c: [s.to_dict() for s in steps] for c, steps in self.local_dp_sgd.items()
            },
            "note": self.note,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RoundRecord:
        if not isinstance(data, Mapping):
            raise InvalidParameterError("a round must be a JSON object")
        try:
            local_raw = data.get("local_dp_sgd") or {}
            local = {
                str(c): tuple(LocalDpSgd.from_dict(s) for s in steps)
                for c, steps in local_raw.items()
            }
            participants = data.get("participants")
            return cls(
                mechanism=event_from_dict(data["mechanism"]),
                sampling=ClientSampling.from_dict(data["sampling"]),
                participants=None if participants is None else tuple(str(p) for p in participants),
                local_dp_sgd=local,
                note=str(data.get("note", "")),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise InvalidParameterError(f"malformed round {data!r}: {exc}") from exc


@dataclass(frozen=True)
class BudgetStatus:
    """Epsilon tracked for one budget, after the round in question."""

    budget: PrivacyBudget
    epsilon: float
    worst_client: str | None = None

    @property
    def exceeded(self) -> bool:
        return self.epsilon > self.budget.epsilon

    @property
    def remaining(self) -> float:
        return self.budget.epsilon - self.epsilon


@dataclass(frozen=True)
class SpendReport:
    """Result of :meth:`PrivacyLedger.preview` / :meth:`PrivacyLedger.spend`."""

    round: int
    statuses: tuple[BudgetStatus, ...]

    @property
    def exceeded(self) -> tuple[BudgetStatus, ...]:
        return tuple(s for s in self.statuses if s.exceeded)


Pattern = tuple[tuple[str, int], ...]  # sorted (event key, number of compositions)


def _pattern(counts: Mapping[str, int]) -> Pattern:
    return tuple(sorted((k, n) for k, n in counts.items() if n > 0))


def _compose_pattern(
    pattern: Pattern, events: Mapping[str, dp_accounting.DpEvent]
) -> dp_accounting.DpEvent:
    parts = [
        events[k] if n == 1 else dp_accounting.SelfComposedDpEvent(events[k], n) for k, n in pattern
    ]
    if not parts:
        return dp_accounting.NoOpDpEvent()
    return parts[0] if len(parts) == 1 else dp_accounting.ComposedDpEvent(parts)


@dataclass(frozen=True)
class _RoundKeys:
    """Canonical keys of one round's events (computed once per round)."""

    population: str
    mechanism: str
    participants: tuple[str, ...] | None
    local: tuple[tuple[str, Pattern], ...]


class PrivacyLedger:
    """Round-by-round record of the DP mechanisms applied, with budget enforcement.

    Composition is commutative for every accountant used here, so each granularity is
    kept as counts of distinct events (per client for the per-client and sample levels)
    and epsilons are cached per distinct composition: checking a round costs one
    accountant call per new composition, not one per client.

    Args:
        budgets: limits to enforce in :meth:`spend` (any number, any scopes).
        accountant: accountant used for enforcement and by default for reports.
        neighboring_relation: neighbouring relation of the guarantees (add/remove one
            user -- or one record, for the sample level -- by default).
        pld_discretization: value discretization interval of the PLD accountant.
    """

    def __init__(
        self,
        *,
        budgets: Iterable[PrivacyBudget] = (),
        accountant: AccountantKind | str = AccountantKind.PLD,
        neighboring_relation: NeighboringRelation = NeighboringRelation.ADD_OR_REMOVE_ONE,
        pld_discretization: float = DEFAULT_PLD_DISCRETIZATION,
    ) -> None:
        self._budgets = tuple(budgets)
        if not all(isinstance(b, PrivacyBudget) for b in self._budgets):
            raise InvalidParameterError("budgets must be PrivacyBudget instances")
        self._accountant = AccountantKind.parse(accountant)
        if not isinstance(neighboring_relation, NeighboringRelation):
            raise InvalidParameterError(
                "neighboring_relation must be a dp_accounting.NeighboringRelation"
            )
        self._relation = neighboring_relation
        self._pld_discretization = _finite("pld_discretization", pld_discretization)
        if self._pld_discretization <= 0:
            raise InvalidParameterError("pld_discretization must be positive")
        self._rounds: list[RoundRecord] = []
        self._keys: list[_RoundKeys] = []
        self._events: dict[str, dp_accounting.DpEvent] = {}
        self._population_counts: Counter[str] = Counter()
        self._client_counts: dict[str, Counter[str]] = {}
        self._unknown_counts: Counter[str] = Counter()  # rounds without a participant list
        self._sample_counts: dict[str, Counter[str]] = {}
        self._cache: dict[tuple[str, float, Pattern], float] = {}
        self._rdp_cache: dict[str, tuple[FloatArray, FloatArray]] = {}
        self._ledger_id = secrets.token_hex(16)

    # ---------------------------------------------------------------- properties
    @property
    def rounds(self) -> tuple[RoundRecord, ...]:
        """The recorded rounds; round ``i`` (1-based) is ``rounds[i - 1]``."""
        return tuple(self._rounds)

    @property
    def budgets(self) -> tuple[PrivacyBudget, ...]:
        return self._budgets

    @property
    def accountant(self) -> AccountantKind:
        return self._accountant

    @property
    def neighboring_relation(self) -> NeighboringRelation:
        return self._relation

    @property
    def pld_discretization(self) -> float:
        return self._pld_discretization

    @property
    def ledger_id(self) -> str:
        """Random id of this ledger (kept across save/load); a signature binds it."""
        return self._ledger_id

    def __len__(self) -> int:
        return len(self._rounds)

    def clients(self) -> tuple[str, ...]:
        """Every client id that appears as a participant or with local DP-SGD steps."""
        seen: dict[str, None] = {}
        for r in self._rounds:
            for c in r.participants or ():
                seen[c] = None
            for c in r.local_dp_sgd:
                seen[c] = None
        return tuple(seen)

    # ---------------------------------------------------------------- bookkeeping
    def _key(self, event: dp_accounting.DpEvent) -> str:
        key = event_key(event)
        self._events.setdefault(key, event)
        return key

    def _round_keys(self, record: RoundRecord) -> _RoundKeys:
        local = []
        for client, steps in record.local_dp_sgd.items():
            counts: Counter[str] = Counter()
            for s in steps:
                if s.steps > 0:
                    counts[self._key(LocalDpSgd(s.noise_multiplier, s.sample_rate, 1).event())] += (
                        s.steps
                    )
            local.append((client, _pattern(counts)))
        return _RoundKeys(
            population=self._key(record.population_event),
            mechanism=self._key(record.mechanism),
            participants=record.participants,
            local=tuple(local),
        )

    def _append(self, record: RoundRecord, keys: _RoundKeys) -> None:
        self._rounds.append(record)
        self._keys.append(keys)
        self._population_counts[keys.population] += 1
        if keys.participants is None:
            self._unknown_counts[keys.mechanism] += 1
        for c in keys.participants or ():
            self._client_counts.setdefault(c, Counter())[keys.mechanism] += 1
        for c, pattern in keys.local:
            counter = self._sample_counts.setdefault(c, Counter())
            for k, n in pattern:
                counter[k] += n

    def _population_pattern(self, upto: int) -> Pattern:
        if upto == len(self._keys):
            return _pattern(self._population_counts)
        return _pattern(Counter(k.population for k in self._keys[:upto]))

    # ---------------------------------------------------------------- events
    def population_event(self, upto: int | None = None) -> dp_accounting.DpEvent:
        """Composed population-level event of rounds ``1..upto`` (all by default)."""
        return _compose_pattern(self._population_pattern(self._upto(upto)), self._events)

    def client_events(self) -> dict[str, dp_accounting.DpEvent]:
        """Per client, the composed mechanisms of the rounds it took part in (no sampling)."""
        return {
            c: _compose_pattern(_pattern(n), self._events) for c, n in self._client_counts.items()
        }

    def sample_level_events(self) -> dict[str, dp_accounting.DpEvent]:
        """Per client, the composed local DP-SGD steps (record-level)."""
        return {
            c: _compose_pattern(_pattern(n), self._events) for c, n in self._sample_counts.items()
        }

    # ---------------------------------------------------------------- epsilons
    def _kind(self, accountant: AccountantKind | str | None) -> AccountantKind:
        return self._accountant if accountant is None else AccountantKind.parse(accountant)

    def _tightest(self, pattern: Pattern, delta: float) -> float:
        """The smallest of the PLD and RDP epsilons: each is a valid upper bound, so is the min.

        An accountant that refuses (too large, unsupported) is skipped; if both refuse, the
        PLD accountant's error is raised.
        """
        results: list[float] = []
        first_error: Exception | None = None
        for kind in (AccountantKind.PLD, AccountantKind.RDP):
            try:
                results.append(self._epsilon(pattern, delta, kind))
            except (AccountantLimitError, UnsupportedEventError) as exc:
                first_error = first_error or exc
        if not results and first_error is not None:
            raise first_error
        return min(results)

    def _epsilon(self, pattern: Pattern, delta: float, kind: AccountantKind | None) -> float:
        """Epsilon of a composition; ``kind=None`` is the tightest valid (:meth:`_tightest`)."""
        if kind is None:
            return self._tightest(pattern, delta) if pattern else 0.0
        ddg = kind is not AccountantKind.PRV and bool(pattern) and self._has_ddg(pattern)
        # the pld and rdp figures of distributed discrete Gaussians are one and the same
        key = ("ddg" if ddg else kind.value, float(delta), pattern)
        cached = self._cache.get(key)
        if cached is None:
            if not pattern:
                cached = 0.0
            elif ddg:
                cached = self._ddg_epsilon(pattern, delta)
            elif kind is AccountantKind.RDP:
                cached = self._rdp_epsilon(pattern, delta)
            else:
                cached = compute_epsilon(
                    _compose_pattern(pattern, self._events),
                    delta,
                    accountant=kind,
                    neighboring_relation=self._relation,
                    pld_discretization=self._pld_discretization,
                )
            self._cache[key] = cached
        return cached

    def _has_ddg(self, pattern: Pattern) -> bool:
        return any(contains_distributed_discrete_gaussian(self._events[k]) for k, _ in pattern)

    def _ddg_epsilon(self, pattern: Pattern, delta: float) -> float:
        """Distributed discrete Gaussian: the smaller of two valid upper bounds.

        The RDP bound of Kairouz, Liu, Steinke (:func:`dp.accounting.ddg_rdp`, with the
        general subsampling bound) and the Gaussian PLD of the same noise multiplier plus
        the closeness correction (:func:`dp.accounting.distributed_pld_epsilon`), which is
        far tighter wherever the scaled noise is large (e.g. 5.10 instead of 7.58 at the
        demo's defaults) and is skipped where it does not apply (Skellam noise, too little
        noise per client).
        """
        candidates = [self._rdp_epsilon(pattern, delta)]
        try:
            candidates.append(
                distributed_pld_epsilon(
                    _compose_pattern(pattern, self._events),
                    delta,
                    neighboring_relation=self._relation,
                    pld_discretization=self._pld_discretization,
                )
            )
        except (AccountantLimitError, UnsupportedEventError):
            pass
        return min(candidates)

    def _rdp_epsilon(self, pattern: Pattern, delta: float) -> float:
        """RDP adds up: one cached curve per distinct event, scaled by its count."""
        orders: FloatArray | None = None
        total: FloatArray | None = None
        for key, n in pattern:
            curve = self._rdp_cache.get(key)
            if curve is None:
                curve = rdp_curve(self._events[key], neighboring_relation=self._relation)
                self._rdp_cache[key] = curve
            orders = curve[0]
            total = n * curve[1] if total is None else total + n * curve[1]
        if orders is None or total is None:
            return 0.0
        return rdp_to_epsilon(orders, total, delta)

    def _upto(self, upto: int | None) -> int:
        if upto is None:
            return len(self._rounds)
        if (
            isinstance(upto, bool)
            or not isinstance(upto, int)
            or not 0 <= upto <= len(self._rounds)
        ):
            raise InvalidParameterError(f"upto must be an integer in [0, {len(self._rounds)}]")
        return upto

    def population_epsilon(
        self,
        delta: float,
        *,
        accountant: AccountantKind | str | None = None,
        upto: int | None = None,
    ) -> float:
        """User-level epsilon at ``delta`` for any member of the population, after ``upto`` rounds.

        This is the *amplified* figure: each round is the mechanism under the cohort
        sampling (``PoissonSampledDpEvent`` with ``q = clients per round / population``).
        It holds only against an adversary who neither chooses nor learns which clients
        were sampled; a server that picks or sees the cohort is bounded by
        :meth:`worst_client_epsilon` instead.
        """
        return self._epsilon(
            self._population_pattern(self._upto(upto)), delta, self._kind(accountant)
        )

    def population_delta(
        self,
        epsilon: float,
        *,
        accountant: AccountantKind | str | None = None,
        upto: int | None = None,
    ) -> float:
        """User-level delta at ``epsilon`` for any member of the population."""
        event = self.population_event(upto)
        if isinstance(event, dp_accounting.NoOpDpEvent):
            return 0.0
        return compute_delta(
            event,
            epsilon,
            accountant=self._kind(accountant),
            neighboring_relation=self._relation,
            pld_discretization=self._pld_discretization,
        )

    def client_epsilons(
        self, delta: float, *, accountant: AccountantKind | str | None = None
    ) -> dict[str, float]:
        """Per-client epsilon at ``delta`` from actual participation (no amplification)."""
        kind = self._kind(accountant)
        return {c: self._epsilon(_pattern(n), delta, kind) for c, n in self._client_counts.items()}

    def worst_client_epsilon(
        self, delta: float, *, accountant: AccountantKind | str | None = None
    ) -> float:
        """The largest per-client epsilon at ``delta`` from actual participation.

        For each client, the composition of the mechanisms of the rounds it took part in,
        with no amplification by sampling (:meth:`client_epsilons`); the maximum over the
        clients. This figure holds against a server that chooses or observes the cohort
        (as the server of a federated round does unless the clients sample themselves in a
        way it can neither bias nor see). A round whose participants were not recorded
        counts against every client (the server may have included anyone), so with such
        rounds this is at least the epsilon of all of them composed. ``0`` for an empty
        ledger.
        """
        kind = self._kind(accountant)
        unknown: Counter[str] = Counter(self._unknown_counts)
        worst = self._epsilon(_pattern(unknown), delta, kind) if unknown else 0.0
        for counts in self._client_counts.values():
            worst = max(worst, self._epsilon(_pattern(counts + unknown), delta, kind))
        return worst

    def sample_level_epsilons(
        self, delta: float, *, accountant: AccountantKind | str | None = None
    ) -> dict[str, float]:
        """Per-client record-level epsilon at ``delta`` from the local DP-SGD steps.

        By default the tightest valid figure: each client's steps are (Poisson-subsampled)
        Gaussians, accounted by both the PLD and the RDP accountant, and the smaller of the
        two upper bounds is reported (in practice the PLD's; the RDP one where the PLD
        accountant refuses the size). ``accountant`` forces one accountant.
        """
        kind = None if accountant is None else AccountantKind.parse(accountant)
        return {c: self._epsilon(_pattern(n), delta, kind) for c, n in self._sample_counts.items()}

    def epsilon_curve(
        self,
        delta: float,
        *,
        accountant: AccountantKind | str | None = None,
        points: int | None = None,
        progress: bool = False,
    ) -> list[tuple[int, float]]:
        """Population epsilon at ``delta`` after each round (or ``points`` evenly spaced rounds).

        Args:
            delta: target delta.
            accountant: accountant (the ledger's by default).
            points: number of rounds to evaluate, always including the last one; all
                rounds when ``None``.
            progress: show a progress bar on a terminal.

        Returns:
            ``[(round, epsilon), ...]`` in increasing round order.
        """
        total = len(self._rounds)
        kind = self._kind(accountant)
        if total == 0:
            return []
        wanted = curve_rounds(total, points)
        from tqdm import tqdm

        bar = tqdm(
            total=len(wanted),
            desc="accounting",
            unit="pt",
            disable=not (progress and sys.stderr.isatty()),
        )
        curve: list[tuple[int, float]] = []
        counts: Counter[str] = Counter()
        targets = iter(wanted)
        target = next(targets)
        with bar:
            for t, keys in enumerate(self._keys, start=1):
                counts[keys.population] += 1
                if t == target:
                    curve.append((t, self._epsilon(_pattern(counts), delta, kind)))
                    bar.update(1)
                    target = next(targets, 0)
        return curve

    # ---------------------------------------------------------------- enforcement
    def _scope_max(
        self,
        counts: Mapping[str, Counter[str]],
        extra: Mapping[str, Pattern],
        delta: float,
        kind: AccountantKind | None,
    ) -> tuple[str | None, float]:
        worst, worst_eps = None, 0.0
        for client in {*counts, *extra}:
            counter: Counter[str] = Counter(counts.get(client, Counter()))
            for k, n in extra.get(client, ()):
                counter[k] += n
            eps = self._epsilon(_pattern(counter), delta, kind)
            if worst is None or eps > worst_eps or (eps == worst_eps and client < worst):
                worst, worst_eps = client, eps
        return worst, worst_eps

    def _statuses(
        self,
        keys: _RoundKeys | None,
        kind: AccountantKind,
        sample_kind: AccountantKind | None = None,
    ) -> tuple[BudgetStatus, ...]:
        population = Counter(self._population_counts)
        client_extra: dict[str, Pattern] = {}
        sample_extra: dict[str, Pattern] = {}
        if keys is not None:
            population[keys.population] += 1
            client_extra = {c: ((keys.mechanism, 1),) for c in keys.participants or ()}
            sample_extra = dict(keys.local)
        statuses: list[BudgetStatus] = []
        for budget in self._budgets:
            if budget.scope is BudgetScope.POPULATION:
                statuses.append(
                    BudgetStatus(budget, self._epsilon(_pattern(population), budget.delta, kind))
                )
            elif budget.scope is BudgetScope.PER_CLIENT:
                who, eps = self._scope_max(self._client_counts, client_extra, budget.delta, kind)
                statuses.append(BudgetStatus(budget, eps, who))
            else:
                who, eps = self._scope_max(
                    self._sample_counts, sample_extra, budget.delta, sample_kind
                )
                statuses.append(BudgetStatus(budget, eps, who))
        return tuple(statuses)

    def _check(self, record: RoundRecord) -> tuple[SpendReport, _RoundKeys]:
        if not isinstance(record, RoundRecord):
            raise InvalidParameterError("expected a RoundRecord")
        if record.participants is None and any(
            b.scope is BudgetScope.PER_CLIENT for b in self._budgets
        ):
            raise InvalidParameterError("a per-client budget needs the round's participants")
        # Refuse a mechanism the ledger's accountant cannot account for, budget or not
        # (distributed discrete Gaussian noise is always accounted, see _ddg_epsilon).
        try:
            check_supported(
                record.population_event, self._accountant, neighboring_relation=self._relation
            )
        except UnsupportedEventError:
            if self._accountant is AccountantKind.PRV or not contains_distributed_discrete_gaussian(
                record.population_event
            ):
                raise
            check_supported(
                record.population_event, AccountantKind.RDP, neighboring_relation=self._relation
            )
        keys = self._round_keys(record)
        report = SpendReport(len(self._rounds) + 1, self._statuses(keys, self._accountant))
        if report.exceeded:
            parts = []
            for s in report.exceeded:
                who = f" (client {s.worst_client})" if s.worst_client is not None else ""
                parts.append(
                    f"{s.budget.scope.value} epsilon would reach {s.epsilon:.4g}{who} at "
                    f"delta={s.budget.delta:g}, over the budget {s.budget.epsilon:g}"
                )
            raise BudgetExceededError(f"round {report.round} refused: " + "; ".join(parts))
        return report, keys

    def preview(self, record: RoundRecord) -> SpendReport:
        """Every tracked epsilon if ``record`` were recorded next; records nothing.

        Raises:
            BudgetExceededError: some budget would be exceeded; the message names it.
            UnsupportedEventError: the ledger's accountant cannot handle the mechanism.
            InvalidParameterError: ``record`` is malformed, or a per-client budget is set
                and the record has no participants.
        """
        return self._check(record)[0]

    def spend(self, record: RoundRecord) -> SpendReport:
        """Check every budget with ``record`` added, then record it (atomically).

        Call this before the round draws any noise or any update leaves a client. If a
        budget would be exceeded, :class:`~secagg.errors.BudgetExceededError` is raised
        and the ledger is unchanged.
        """
        report, keys = self._check(record)
        self._append(record, keys)
        return report

    def report(self, *, accountant: AccountantKind | str | None = None) -> SpendReport:
        """Current status of every budget."""
        sample_kind = None if accountant is None else AccountantKind.parse(accountant)
        return SpendReport(
            len(self._rounds), self._statuses(None, self._kind(accountant), sample_kind)
        )

    # ---------------------------------------------------------------- persistence
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": LEDGER_FORMAT,
            "version": LEDGER_VERSION,
            "ledger_id": self._ledger_id,
            "accountant": self._accountant.value,
            "neighboring_relation": self._relation.name,
            "pld_discretization": self._pld_discretization,
            "budgets": [b.to_dict() for b in self._budgets],
            "rounds": [{"round": i + 1, **r.to_dict()} for i, r in enumerate(self._rounds)],
        }

    def to_json(self, *, indent: int | None = 2) -> str:
        """The ledger as versioned JSON text."""
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def save(
        self,
        path: str | os.PathLike[str],
        *,
        key: bytes | None = None,
        key_path: str | os.PathLike[str] | None = None,
    ) -> None:
        """Write the ledger to ``path`` atomically, sealed with an HMAC-SHA256.

        The MAC (:func:`ledger_mac`) covers the canonical JSON of the whole ledger --
        every round, the ledger id, the accountant, the budgets -- and is stored in the
        file's ``"integrity"`` field. :meth:`load` recomputes it and refuses any mismatch.

        Without ``key``, the key lives in a key file (``path + ".key"`` unless
        ``key_path`` says otherwise), created with mode 0600 from
        ``secrets.token_bytes(32)`` on the first save and reused afterwards. The key file
        also records the ledger's id and the number of rounds last saved, so that
        :meth:`load` refuses an older, validly signed copy put in place of the newer one
        (a rollback), and so does this method if asked to overwrite a ledger with fewer
        rounds of the same run. A key file of another ledger is replaced with a fresh key.
        With an explicit ``key`` (the caller keeps it, e.g. in a secrets store), no key
        file is written; pass ``min_rounds`` to :meth:`load` to catch rollbacks.

        What this protects against: anyone who can write the ledger file but cannot read
        the key -- another user, a backup or transfer in between, a server that stores the
        file -- cannot drop, reorder or edit a round, change a noise multiplier, swap an
        event for a no-op or change a budget without :meth:`load` (and so ``secagg
        audit``) failing with :class:`~secagg.errors.LedgerIntegrityError`. What it does
        not protect against: the key holder itself (whoever can read the key can re-sign
        anything), someone who can write the key file as well, and -- with an explicit
        key and no ``min_rounds`` -- the replacement of the whole file by an older copy
        signed with the same key. It says nothing about whether the recorded events
        describe what the training actually did.

        Raises:
            LedgerIntegrityError: the key file is unreadable, not private to its owner, or
                records more rounds of this ledger than are being saved.
        """
        path = os.fspath(path)
        body = self.to_dict()
        if key is not None:
            key = _check_key(key)
            key_file = None
        else:
            key_file = os.fspath(key_path) if key_path is not None else path + KEY_SUFFIX
            key = None
            if os.path.exists(key_file):
                stored = _read_key_file(key_file)
                if stored["ledger_id"] == self._ledger_id:
                    if stored["rounds"] > len(self._rounds):
                        raise LedgerIntegrityError(
                            f"{key_file} records {stored['rounds']} rounds of this ledger; saving "
                            f"{len(self._rounds)} would roll it back (is this a stale copy?)"
                        )
                    key = stored["key"]
            if key is None:
                key = secrets.token_bytes(_KEY_BYTES)
        document = dict(body)
        document["integrity"] = {"algorithm": MAC_ALGORITHM, "mac": ledger_mac(body, key)}
        _atomic_write(path, json.dumps(document, indent=2, allow_nan=False), private=False)
        if key_file is not None:
            record = {
                "format": KEY_FORMAT,
                "key": key.hex(),
                "ledger_id": self._ledger_id,
                "rounds": len(self._rounds),
            }
            _atomic_write(key_file, json.dumps(record, indent=2), private=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PrivacyLedger:
        """Rebuild a ledger; the recorded rounds are history and are not re-checked."""
        if not isinstance(data, Mapping) or data.get("format") != LEDGER_FORMAT:
            raise InvalidParameterError(f"not a privacy ledger (expected format {LEDGER_FORMAT!r})")
        version = data.get("version")
        if version not in _READABLE_VERSIONS:
            raise InvalidParameterError(
                f"unsupported ledger version {version!r} (this library reads {_READABLE_VERSIONS})"
            )
        try:
            relation = NeighboringRelation[data.get("neighboring_relation", "ADD_OR_REMOVE_ONE")]
            ledger = cls(
                budgets=[PrivacyBudget.from_dict(b) for b in data.get("budgets", [])],
                accountant=data.get("accountant", AccountantKind.PLD.value),
                neighboring_relation=relation,
                pld_discretization=float(
                    data.get("pld_discretization", DEFAULT_PLD_DISCRETIZATION)
                ),
            )
            rounds = data["rounds"]
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidParameterError(f"malformed ledger: {exc}") from exc
        if not isinstance(rounds, list):
            raise InvalidParameterError("malformed ledger: rounds must be a list")
        ledger_id = data.get("ledger_id")
        if ledger_id is not None:
            if not isinstance(ledger_id, str) or not 1 <= len(ledger_id) <= 128:
                raise InvalidParameterError("malformed ledger: ledger_id must be a short string")
            ledger._ledger_id = ledger_id
        for i, raw in enumerate(rounds):
            if not isinstance(raw, Mapping) or raw.get("round") != i + 1:
                raise InvalidParameterError(
                    f"malformed ledger: round {i + 1} is missing or out of order"
                )
            record = RoundRecord.from_dict({k: v for k, v in raw.items() if k != "round"})
            ledger._append(record, ledger._round_keys(record))
        return ledger

    @classmethod
    def from_json(cls, text: str) -> PrivacyLedger:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidParameterError(f"ledger is not valid JSON: {exc}") from exc
        return cls.from_dict(data)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        key: bytes | None = None,
        key_path: str | os.PathLike[str] | None = None,
        min_rounds: int | None = None,
        allow_unsigned: bool = False,
    ) -> PrivacyLedger:
        """Read a ledger written by :meth:`save`, checking its MAC first.

        Args:
            path: the ledger file.
            key: the MAC key, if :meth:`save` was given one; otherwise the key file is read.
            key_path: the key file (default ``path + ".key"``). Its ledger id must match
                the ledger's and the ledger must have at least the rounds it records.
            min_rounds: refuse a ledger with fewer rounds (a rollback check for callers
                that keep the key themselves).
            allow_unsigned: read a ledger without an ``"integrity"`` field (written before
                ledgers were signed). Its contents are then **not** protected: anyone who
                could write the file could have lowered the epsilon it yields.

        Raises:
            LedgerIntegrityError: the ledger is unsigned (without ``allow_unsigned``), its
                MAC does not match (it was modified, or signed with another key), its key
                file is missing, unreadable, readable by others or of another ledger, or it
                has fewer rounds than the key file or ``min_rounds`` say.
            InvalidParameterError: the file is not a well-formed ledger.
        """
        path = os.fspath(path)
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidParameterError(f"ledger is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise InvalidParameterError("not a privacy ledger (expected a JSON object)")
        if data.get("format") != LEDGER_FORMAT or data.get("version") not in _READABLE_VERSIONS:
            return cls.from_dict(data)  # raises the precise format/version error
        integrity = data.pop("integrity", None)
        if integrity is None:
            if not allow_unsigned:
                raise LedgerIntegrityError(
                    f"{path} is not signed: its contents could have been edited by anyone who "
                    "could write it; pass allow_unsigned=True only for a ledger you trust that "
                    "was written before ledgers were signed"
                )
            return cls.from_dict(data)
        stored = None
        if key is None:
            key_file = os.fspath(key_path) if key_path is not None else path + KEY_SUFFIX
            if not os.path.exists(key_file):
                raise LedgerIntegrityError(
                    f"no key file {key_file} to check {path} with; pass key= or key_path="
                )
            stored = _read_key_file(key_file)
            key = stored["key"]
        key = _check_key(key)
        if (
            not isinstance(integrity, Mapping)
            or integrity.get("algorithm") != MAC_ALGORITHM
            or not isinstance(integrity.get("mac"), str)
        ):
            raise LedgerIntegrityError(f"{path}: malformed integrity field")
        try:
            expected = ledger_mac(data, key)
        except (InvalidParameterError, ValueError, TypeError) as exc:
            raise LedgerIntegrityError(f"{path} cannot be checked: {exc}") from exc
        if not hmac.compare_digest(expected, str(integrity["mac"])):
            raise LedgerIntegrityError(
                f"{path} does not match its MAC: it was modified after it was saved, or it "
                "was signed with another key"
            )
        ledger = cls.from_dict(data)
        if stored is not None:
            if stored["ledger_id"] != ledger.ledger_id:
                raise LedgerIntegrityError(
                    f"{path} is ledger {ledger.ledger_id}, but its key file is for "
                    f"{stored['ledger_id']}: another run's ledger was put in its place"
                )
            if len(ledger) < stored["rounds"]:
                raise LedgerIntegrityError(
                    f"{path} records {len(ledger)} rounds but {stored['rounds']} were saved: "
                    "an older copy was put in its place"
                )
        if min_rounds is not None and len(ledger) < min_rounds:
            raise LedgerIntegrityError(
                f"{path} records {len(ledger)} rounds, fewer than the {min_rounds} expected"
            )
        return ledger


def _canonical(body: Mapping[str, Any]) -> bytes:
    try:
        text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidParameterError(f"ledger is not canonical JSON: {exc}") from exc
    return text.encode("ascii")


def ledger_mac(body: Mapping[str, Any], key: bytes) -> str:
    """HMAC-SHA256 (hex) of a ledger's dictionary (:meth:`PrivacyLedger.to_dict`).

    Input: a domain-separation prefix, then the dictionary as canonical JSON (sorted keys,
    no whitespace, ASCII, no NaN). JSON numbers round-trip exactly through Python's float
    repr, so the MAC of a parsed file equals the MAC of the ledger that wrote it.
    """
    return hmac.new(_check_key(key), _MAC_DOMAIN + _canonical(body), hashlib.sha256).hexdigest()


def _check_key(key: object) -> bytes:
    if not isinstance(key, (bytes, bytearray)) or len(key) < 16:
        raise InvalidParameterError("a ledger key must be at least 16 bytes")
    return bytes(key)


def _atomic_write(path: str, text: str, *, private: bool) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".ledger-", suffix=".tmp", dir=directory)
    try:
        if private:
            os.chmod(tmp, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        if not private:
            os.chmod(tmp, 0o644 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _read_key_file(key_file: str) -> dict[str, Any]:
    try:
        info = os.stat(key_file)
        with open(key_file, encoding="utf-8") as fh:
            raw = json.load(fh)
    except (OSError, json.JSONDecodeError) as exc:
        raise LedgerIntegrityError(f"cannot read the ledger key file {key_file}: {exc}") from exc
    if os.name == "posix" and info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise LedgerIntegrityError(
            f"the ledger key file {key_file} is accessible to other users (mode "
            f"{stat.S_IMODE(info.st_mode):o}); anyone who can read it can forge the ledger: "
            "chmod 600 it"
        )
    try:
        if raw["format"] != KEY_FORMAT:
            raise ValueError("wrong format")
        key = bytes.fromhex(raw["key"])
        rounds = raw["rounds"]
        ledger_id = raw["ledger_id"]
        if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 0:
            raise ValueError("rounds must be a non-negative integer")
        if not isinstance(ledger_id, str):
            raise ValueError("ledger_id must be a string")
    except (KeyError, TypeError, ValueError) as exc:
        raise LedgerIntegrityError(f"malformed ledger key file {key_file}: {exc}") from exc
    return {"key": _check_key(key), "rounds": rounds, "ledger_id": ledger_id}


def curve_rounds(total: int, points: int | None) -> list[int]:
    """``points`` rounds evenly spaced in ``1..total``, always ending at ``total`` (all if ``None``)."""
    if points is None or points >= total:
        return list(range(1, total + 1))
    if isinstance(points, bool) or not isinstance(points, int) or points < 1:
        raise InvalidParameterError("points must be a positive integer")
    if points == 1:
        return [total]
    rounds = {max(1, round(1 + i * (total - 1) / (points - 1))) for i in range(points)}
    return sorted(rounds)
