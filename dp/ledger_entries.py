"""What one round of the privacy ledger records: the mechanism, the cohort, the local steps.

* :class:`RoundRecord` -- one immutable entry: the DP event applied to the cohort's
  aggregate (before client sampling), how the cohort was drawn, its participants and the
  DP-SGD steps each ran locally;
* :class:`ClientSampling` and :class:`SamplingScheme` -- how each round's cohort is drawn
  from the population, and the population-level event that sampling makes of a mechanism;
* :class:`LocalDpSgd` and :func:`local_dp_sgd_from_opacus` -- one client's DP-SGD steps,
  read from its Opacus accountant.

Every entry serialises to JSON-compatible dictionaries (``to_dict`` / ``from_dict``); the
events through :func:`dp.event_json.event_to_dict`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType
from typing import Any

import dp_accounting

from dp.event_json import event_from_dict, event_to_dict
from secagg.errors import InvalidParameterError
from secagg.validation import is_int, require_int, require_real

__all__ = [
    "ClientId",
    "ClientSampling",
    "LocalDpSgd",
    "RoundRecord",
    "SamplingScheme",
    "local_dp_sgd_from_opacus",
]


class SamplingScheme(str, Enum):
    """How a round's cohort is drawn.

    ``POISSON``: each client independently with probability ``rate``
    (``PoissonSampledDpEvent``, add/remove neighbours). ``FIXED_SIZE``: a uniformly random
    cohort of exactly ``rate * population`` clients (``SampledWithoutReplacementDpEvent``,
    accounted by the RDP accountant for replace-one neighbours only).
    """

    POISSON = "poisson"
    FIXED_SIZE = "fixed_size"


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
        rate = require_real("sampling rate", self.rate)
        if not 0.0 < rate <= 1.0:
            raise InvalidParameterError(f"sampling rate must lie in (0, 1], got {rate}")
        object.__setattr__(self, "rate", rate)
        object.__setattr__(self, "scheme", SamplingScheme(self.scheme))
        if self.population is not None:
            object.__setattr__(self, "population", require_int("population", self.population, lo=1))
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
        clients_per_round = require_int("clients_per_round", clients_per_round, lo=1)
        population = require_int("population", population, lo=1)
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

    def to_dict(self) -> dict[str, object]:
        """JSON-compatible dictionary of this entry."""
        return {"rate": self.rate, "population": self.population, "scheme": self.scheme.value}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> ClientSampling:
        """Inverse of :meth:`to_dict`; a malformed dictionary is an ``InvalidParameterError``."""
        fields: Mapping[str, Any] = data  # parsed JSON: converted and checked below
        try:
            population = fields.get("population")
            return cls(
                float(fields["rate"]),
                None if population is None else int(population),
                SamplingScheme(fields.get("scheme", SamplingScheme.POISSON.value)),
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
        nm = require_real("noise_multiplier", self.noise_multiplier)
        if nm < 0:
            raise InvalidParameterError("noise_multiplier must be >= 0")
        q = require_real("sample_rate", self.sample_rate)
        if not 0.0 <= q <= 1.0:
            raise InvalidParameterError("sample_rate must lie in [0, 1]")
        object.__setattr__(self, "steps", require_int("steps", self.steps, lo=0))
        object.__setattr__(self, "noise_multiplier", nm)
        object.__setattr__(self, "sample_rate", q)

    def event(self) -> dp_accounting.DpEvent:
        """The DP event of these steps: ``steps`` (Poisson-subsampled) Gaussians."""
        step: dp_accounting.DpEvent = dp_accounting.GaussianDpEvent(self.noise_multiplier)
        if self.sample_rate < 1.0:
            step = dp_accounting.PoissonSampledDpEvent(self.sample_rate, step)
        return dp_accounting.SelfComposedDpEvent(step, self.steps)

    def to_dict(self) -> dict[str, object]:
        """JSON-compatible dictionary of this entry."""
        return {
            "noise_multiplier": self.noise_multiplier,
            "sample_rate": self.sample_rate,
            "steps": self.steps,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> LocalDpSgd:
        """Inverse of :meth:`to_dict`; a malformed dictionary is an ``InvalidParameterError``."""
        fields: Mapping[str, Any] = data  # parsed JSON: converted and checked below
        try:
            return cls(
                float(fields["noise_multiplier"]),
                float(fields["sample_rate"]),
                int(fields["steps"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidParameterError(f"malformed local DP-SGD entry {data!r}: {exc}") from exc


def local_dp_sgd_from_opacus(
    accountant_or_history: object, *, since: object = None
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

    def history(obj: object) -> list[tuple[float, float, int]]:
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
    if not (isinstance(client, str) or is_int(client)):
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

    def to_dict(self) -> dict[str, object]:
        """JSON-compatible dictionary of this entry."""
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
    def from_dict(cls, data: Mapping[str, object]) -> RoundRecord:
        """Inverse of :meth:`to_dict`; a malformed dictionary is an ``InvalidParameterError``."""
        fields: Mapping[str, Any] = data  # parsed JSON: converted and checked below
        if not isinstance(data, Mapping):
            raise InvalidParameterError("a round must be a JSON object")
        try:
            local_raw = fields.get("local_dp_sgd") or {}
            local = {
                str(c): tuple(LocalDpSgd.from_dict(s) for s in steps)
                for c, steps in local_raw.items()
            }
            participants = fields.get("participants")
            return cls(
                mechanism=event_from_dict(fields["mechanism"]),
                sampling=ClientSampling.from_dict(fields["sampling"]),
                participants=None if participants is None else tuple(str(p) for p in participants),
                local_dp_sgd=local,
                note=str(fields.get("note", "")),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise InvalidParameterError(f"malformed round {data!r}: {exc}") from exc
