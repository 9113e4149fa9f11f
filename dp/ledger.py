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
:func:`dp.accounting.event_to_dict`.
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
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
    check_supported,
    compute_delta,
    compute_epsilon,
    event_from_dict,
    event_key,
    event_to_dict,
    rdp_curve,
    rdp_to_epsilon,
)
from secagg.errors import BudgetExceededError, InvalidParameterError

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
]

FloatArray = npt.NDArray[np.float64]
LEDGER_FORMAT = "secagg-fl/privacy-ledger"
LEDGER_VERSION = 1


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


@dataclass(frozen=True)
class RoundRecord:
    """What one round applied. Immutable; client ids are stored as strings.

    Attributes:
        mechanism: DP event applied to the cohort's aggregate (before client sampling).
        sampling: how the cohort was drawn.
        participants: ids of the clients whose data may enter the aggregate (the
            selected cohort); ``None`` if unknown (per-client accounting then impossible).
        local_dp_sgd: per client id, the DP-SGD steps it ran locally this round.
        note: free text.
    """

    mechanism: dp_accounting.DpEvent
    sampling: ClientSampling
    participants: tuple[str, ...] | None = None
    local_dp_sgd: Mapping[str, tuple[LocalDpSgd, ...]] = field(default_factory=dict)
    note: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.mechanism, dp_accounting.DpEvent):
            raise InvalidParameterError("mechanism must be a dp_accounting.DpEvent")
        event_to_dict(self.mechanism)  # refuses unknown classes and non-finite fields
        if not isinstance(self.sampling, ClientSampling):
            raise InvalidParameterError("sampling must be a ClientSampling")
        if self.participants is not None:
            if isinstance(self.participants, (str, bytes)):
                raise InvalidParameterError(
                    "participants must be a collection of ids, not a string"
                )
            ids = tuple(_normalise_id(c) for c in self.participants)
            if len(set(ids)) != len(ids):
                raise InvalidParameterError("participants contains duplicate ids")
            object.__setattr__(self, "participants", ids)
        if not isinstance(self.local_dp_sgd, Mapping):
            raise InvalidParameterError("local_dp_sgd must map client ids to DP-SGD steps")
        local: dict[str, tuple[LocalDpSgd, ...]] = {}
        for client, steps in self.local_dp_sgd.items():
            cid = _normalise_id(client)
            if cid in local:
                raise InvalidParameterError(f"client {cid!r} appears twice in local_dp_sgd")
            entries = tuple(steps)
            if not all(isinstance(s, LocalDpSgd) for s in entries):
                raise InvalidParameterError("local_dp_sgd values must be sequences of LocalDpSgd")
            local[cid] = entries
        object.__setattr__(self, "local_dp_sgd", MappingProxyType(local))
        if not isinstance(self.note, str):
            raise InvalidParameterError("note must be a string")

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


def _compose_counts(
    counts: Mapping[str, int], events: Mapping[str, dp_accounting.DpEvent]
) -> dp_accounting.DpEvent:
    parts: list[dp_accounting.DpEvent] = []
    for key in sorted(counts):
        n = counts[key]
        parts.append(events[key] if n == 1 else dp_accounting.SelfComposedDpEvent(events[key], n))
    if not parts:
        return dp_accounting.NoOpDpEvent()
    return parts[0] if len(parts) == 1 else dp_accounting.ComposedDpEvent(parts)


class PrivacyLedger:
    """Round-by-round record of the DP mechanisms applied, with budget enforcement.

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
        try:
            self._accountant = AccountantKind(accountant)
        except ValueError:
            raise InvalidParameterError(f"unknown accountant {accountant!r}") from None
        if not isinstance(neighboring_relation, NeighboringRelation):
            raise InvalidParameterError(
                "neighboring_relation must be a dp_accounting.NeighboringRelation"
            )
        self._relation = neighboring_relation
        self._pld_discretization = _finite("pld_discretization", pld_discretization)
        if self._pld_discretization <= 0:
            raise InvalidParameterError("pld_discretization must be positive")
        self._rounds: list[RoundRecord] = []
        self._cache: dict[tuple[str, str, float, str], float] = {}

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

    # ---------------------------------------------------------------- events
    @staticmethod
    def _population_event(rounds: Sequence[RoundRecord]) -> dp_accounting.DpEvent:
        runs: list[tuple[dp_accounting.DpEvent, str, int]] = []
        for r in rounds:
            ev = r.population_event
            key = event_key(ev)
            if runs and runs[-1][1] == key:
                runs[-1] = (runs[-1][0], key, runs[-1][2] + 1)
            else:
                runs.append((ev, key, 1))
        parts = [ev if n == 1 else dp_accounting.SelfComposedDpEvent(ev, n) for ev, _, n in runs]
        if not parts:
            return dp_accounting.NoOpDpEvent()
        return parts[0] if len(parts) == 1 else dp_accounting.ComposedDpEvent(parts)

    def population_event(self, upto: int | None = None) -> dp_accounting.DpEvent:
        """Composed population-level event of rounds ``1..upto`` (all by default)."""
        return self._population_event(self._rounds[: self._upto(upto)])

    @staticmethod
    def _client_events(rounds: Sequence[RoundRecord]) -> dict[str, dp_accounting.DpEvent]:
        counts: dict[str, Counter[str]] = {}
        events: dict[str, dp_accounting.DpEvent] = {}
        for r in rounds:
            if r.participants is None:
                continue
            key = event_key(r.mechanism)
            events[key] = r.mechanism
            for c in r.participants:
                counts.setdefault(c, Counter())[key] += 1
        return {c: _compose_counts(cnt, events) for c, cnt in counts.items()}

    @staticmethod
    def _sample_events(rounds: Sequence[RoundRecord]) -> dict[str, dp_accounting.DpEvent]:
        counts: dict[str, Counter[str]] = {}
        events: dict[str, dp_accounting.DpEvent] = {}
        for r in rounds:
            for c, steps in r.local_dp_sgd.items():
                for s in steps:
                    if s.steps == 0:
                        continue
                    step_event = LocalDpSgd(s.noise_multiplier, s.sample_rate, 1).event()
                    key = event_key(step_event)
                    events[key] = step_event
                    counts.setdefault(c, Counter())[key] += s.steps
        return {c: _compose_counts(cnt, events) for c, cnt in counts.items()}

    def client_events(self) -> dict[str, dp_accounting.DpEvent]:
        """Per client, the composed mechanisms of the rounds it took part in (no sampling)."""
        return self._client_events(self._rounds)

    def sample_level_events(self) -> dict[str, dp_accounting.DpEvent]:
        """Per client, the composed local DP-SGD steps (record-level)."""
        return self._sample_events(self._rounds)

    # ---------------------------------------------------------------- epsilons
    def _kind(self, accountant: AccountantKind | str | None) -> AccountantKind:
        if accountant is None:
            return self._accountant
        try:
            return AccountantKind(accountant)
        except ValueError:
            raise InvalidParameterError(f"unknown accountant {accountant!r}") from None

    def _epsilon(self, event: dp_accounting.DpEvent, delta: float, kind: AccountantKind) -> float:
        key = (kind.value, self._relation.name, delta, event_key(event))
        cached = self._cache.get(key)
        if cached is None:
            if isinstance(event, dp_accounting.NoOpDpEvent):
                cached = 0.0
            else:
                cached = compute_epsilon(
                    event,
                    delta,
                    accountant=kind,
                    neighboring_relation=self._relation,
                    pld_discretization=self._pld_discretization,
                )
            self._cache[key] = cached
        return cached

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
        """User-level epsilon at ``delta`` for any member of the population, after ``upto`` rounds."""
        return self._epsilon(self.population_event(upto), delta, self._kind(accountant))

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
        return {c: self._epsilon(ev, delta, kind) for c, ev in self.client_events().items()}

    def sample_level_epsilons(
        self, delta: float, *, accountant: AccountantKind | str | None = None
    ) -> dict[str, float]:
        """Per-client record-level epsilon at ``delta`` from the local DP-SGD steps."""
        kind = self._kind(accountant)
        return {c: self._epsilon(ev, delta, kind) for c, ev in self.sample_level_events().items()}

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
        rounds = curve_rounds(total, points)
        from tqdm import tqdm

        bar = tqdm(
            rounds, desc="accounting", unit="pt", disable=not (progress and sys.stderr.isatty())
        )
        if kind is AccountantKind.RDP:
            # RDP adds up: one curve per distinct round event, then a running sum.
            curves: dict[str, FloatArray] = {}
            orders: FloatArray | None = None
            running: list[FloatArray] = []
            for r in self._rounds:
                ev = r.population_event
                key = event_key(ev)
                if key not in curves:
                    orders, curves[key] = rdp_curve(ev, neighboring_relation=self._relation)
                running.append(curves[key] if not running else running[-1] + curves[key])
            if orders is None:  # pragma: no cover - total > 0
                return []
            return [(t, rdp_to_epsilon(orders, running[t - 1], delta)) for t in bar]
        return [(t, self._epsilon(self.population_event(t), delta, kind)) for t in bar]

    # ---------------------------------------------------------------- enforcement
    def _statuses(
        self, rounds: Sequence[RoundRecord], kind: AccountantKind
    ) -> tuple[BudgetStatus, ...]:
        statuses: list[BudgetStatus] = []
        client_events: dict[str, dp_accounting.DpEvent] | None = None
        sample_events: dict[str, dp_accounting.DpEvent] | None = None
        for budget in self._budgets:
            if budget.scope is BudgetScope.POPULATION:
                eps = self._epsilon(self._population_event(rounds), budget.delta, kind)
                statuses.append(BudgetStatus(budget, eps))
                continue
            if budget.scope is BudgetScope.PER_CLIENT:
                if client_events is None:
                    client_events = self._client_events(rounds)
                events = client_events
            else:
                if sample_events is None:
                    sample_events = self._sample_events(rounds)
                events = sample_events
            worst, worst_eps = None, 0.0
            for client, ev in events.items():
                eps = self._epsilon(ev, budget.delta, kind)
                if worst is None or eps > worst_eps:
                    worst, worst_eps = client, eps
            statuses.append(BudgetStatus(budget, worst_eps, worst))
        return tuple(statuses)

    def preview(self, record: RoundRecord) -> SpendReport:
        """Every tracked epsilon if ``record`` were recorded next; records nothing.

        Raises:
            BudgetExceededError: some budget would be exceeded; the message names it.
            UnsupportedEventError: the ledger's accountant cannot handle the mechanism.
            InvalidParameterError: ``record`` is malformed, or a per-client budget is set
                and the record has no participants.
        """
        if not isinstance(record, RoundRecord):
            raise InvalidParameterError("expected a RoundRecord")
        if record.participants is None and any(
            b.scope is BudgetScope.PER_CLIENT for b in self._budgets
        ):
            raise InvalidParameterError("a per-client budget needs the round's participants")
        rounds = [*self._rounds, record]
        # Refuse a mechanism the ledger's accountant cannot account for, budget or not.
        check_supported(
            record.population_event, self._accountant, neighboring_relation=self._relation
        )
        report = SpendReport(len(rounds), self._statuses(rounds, self._accountant))
        if report.exceeded:
            parts = []
            for s in report.exceeded:
                who = f" (client {s.worst_client})" if s.worst_client is not None else ""
                parts.append(
                    f"{s.budget.scope.value} epsilon would reach {s.epsilon:.4g}{who} at delta={s.budget.delta:g}, "
                    f"over the budget {s.budget.epsilon:g}"
                )
            raise BudgetExceededError(f"round {report.round} refused: " + "; ".join(parts))
        return report

    def spend(self, record: RoundRecord) -> SpendReport:
        """Check every budget with ``record`` added, then record it (atomically).

        Call this before the round draws any noise or any update leaves a client. If a
        budget would be exceeded, :class:`~secagg.errors.BudgetExceededError` is raised
        and the ledger is unchanged.
        """
        report = self.preview(record)
        self._rounds.append(record)
        return report

    def report(self, *, accountant: AccountantKind | str | None = None) -> SpendReport:
        """Current status of every budget."""
        return SpendReport(len(self._rounds), self._statuses(self._rounds, self._kind(accountant)))

    # ---------------------------------------------------------------- persistence
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": LEDGER_FORMAT,
            "version": LEDGER_VERSION,
            "accountant": self._accountant.value,
            "neighboring_relation": self._relation.name,
            "pld_discretization": self._pld_discretization,
            "budgets": [b.to_dict() for b in self._budgets],
            "rounds": [{"round": i + 1, **r.to_dict()} for i, r in enumerate(self._rounds)],
        }

    def to_json(self, *, indent: int | None = 2) -> str:
        """The ledger as versioned JSON text."""
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`to_json` to ``path`` atomically (temporary file, then rename)."""
        text = self.to_json()
        directory = os.path.dirname(os.path.abspath(os.fspath(path)))
        fd, tmp = tempfile.mkstemp(prefix=".ledger-", suffix=".json", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PrivacyLedger:
        """Rebuild a ledger; the recorded rounds are history and are not re-checked."""
        if not isinstance(data, Mapping) or data.get("format") != LEDGER_FORMAT:
            raise InvalidParameterError(f"not a privacy ledger (expected format {LEDGER_FORMAT!r})")
        version = data.get("version")
        if version != LEDGER_VERSION:
            raise InvalidParameterError(
                f"unsupported ledger version {version!r} (this library reads {LEDGER_VERSION})"
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
        for i, raw in enumerate(rounds):
            if not isinstance(raw, Mapping) or raw.get("round") != i + 1:
                raise InvalidParameterError(
                    f"malformed ledger: round {i + 1} is missing or out of order"
                )
            ledger._rounds.append(
                RoundRecord.from_dict({k: v for k, v in raw.items() if k != "round"})
            )
        return ledger

    @classmethod
    def from_json(cls, text: str) -> PrivacyLedger:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidParameterError(f"ledger is not valid JSON: {exc}") from exc
        return cls.from_dict(data)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> PrivacyLedger:
        with open(path, encoding="utf-8") as fh:
            return cls.from_json(fh.read())


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
