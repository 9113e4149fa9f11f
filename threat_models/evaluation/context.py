"""What every cell of the evaluation is given: the run's sizes, data sets and secure sum.

:class:`EvaluationConfig` sizes a run (``quick`` or full, the seeds, the families);
:class:`EvaluationContext` holds what the cells share -- the data sets, loaded once, the
per-cell random streams and the :data:`~threat_models.attacks.aggregation.Aggregator` that
computes secure sums (by default a real ``protocols.simulate`` round). A :data:`Cell` is a
name, its family and the function that runs it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from secagg.errors import InvalidParameterError
from secagg.validation import is_int
from threat_models.attacks.aggregation import Aggregator, protocol_aggregator
from threat_models.data import DatasetName, ImageData, load_dataset
from threat_models.evaluation.rows import CellOutput, Family

__all__ = [
    "QUICK_SEEDS",
    "FULL_SEEDS",
    "EvaluationConfig",
    "EvaluationContext",
    "Cell",
    "default_aggregator",
]


#: Seeds of a quick run (the default of :attr:`EvaluationConfig.seeds`): one, as a second
#: seed doubles a run that must stay within 3 minutes, and two seeds' Student-t interval
#: (t = 12.7) is too wide to decide any verdict with a margin.
QUICK_SEEDS = 1
#: Seeds of a full run.
FULL_SEEDS = 3


@dataclass(frozen=True)
class EvaluationConfig:
    """Size of the evaluation.

    Attributes:
        quick: a few minutes on a 2-core CPU, every family with its positive control.
        seed: seeds data selection, model initialisation and simulation randomness.
        threads: torch intra-op threads while the evaluation runs.
        families: which families to run (default all).
        seeds: how many seeds the run averages over, ``seed, seed + 1, ...`` (default
            :data:`QUICK_SEEDS` in quick mode, :data:`FULL_SEEDS` in full mode; set to that
            count once the configuration is made).
    """

    quick: bool = False
    seed: int = 0
    threads: int = 1
    families: frozenset[Family] = frozenset(Family)
    seeds: int | None = None

    def __post_init__(self) -> None:
        if not is_int(self.threads) or self.threads < 1:
            raise InvalidParameterError("threads must be positive")
        if self.seeds is None:
            object.__setattr__(self, "seeds", QUICK_SEEDS if self.quick else FULL_SEEDS)
        elif not is_int(self.seeds) or self.seeds < 1:
            raise InvalidParameterError(f"seeds must be a positive int, not {self.seeds!r}")
        if not self.families or not all(isinstance(f, Family) for f in self.families):
            raise InvalidParameterError("families must be a non-empty set of Family")

    @property
    def seed_values(self) -> tuple[int, ...]:
        """The seeds of the run: ``seed, seed + 1, ...``, :attr:`seeds` of them."""
        return tuple(range(self.seed, self.seed + (self.seeds or 1)))

    # sizes -------------------------------------------------------------------
    @property
    def inversion_datasets(self) -> tuple[DatasetName, ...]:
        """The data sets of the gradient-inversion cells."""
        return (DatasetName.DIGITS,) if self.quick else (DatasetName.DIGITS, DatasetName.MNIST)

    @property
    def targets(self) -> int:
        """Images attacked one by one in an inversion cell."""
        return 2 if self.quick else 4

    @property
    def cohort(self) -> int:
        """Clients of a secure-aggregation round."""
        return 8

    @property
    def dlg_iterations(self) -> int:
        """L-BFGS budget of Deep Leakage from Gradients."""
        return 100 if self.quick else 300

    @property
    def ig_iterations(self) -> int:
        """Adam budget of Inverting Gradients."""
        return 300 if self.quick else 600

    @property
    def snr_levels(self) -> tuple[float, ...]:
        """Signal-to-noise ratios of the DP noise sweep, from weak noise to strong."""
        if self.quick:
            return (10.0, 3.0, 1.0, 0.3, 0.1, 0.03)
        return (30.0, 10.0, 3.0, 1.0, 0.3, 0.1, 0.03, 0.01)

    @property
    def noise_targets(self) -> int:
        """Images attacked at each noise level of the sweep."""
        return 3 if self.quick else 6

    @property
    def mia_population(self) -> int:
        """Examples of the membership-inference population (half of them members)."""
        return 1000

    @property
    def mia_shadows(self) -> int:
        """Shadow models of LiRA (64 in full mode: per-example variances, as Carlini et al.)."""
        return 8 if self.quick else 64

    @property
    def mia_noise_multipliers(self) -> tuple[float, ...]:
        """DP-SGD noise multipliers the membership attacks meet."""
        return (2.0,) if self.quick else (1.0, 2.0)


def default_aggregator() -> tuple[Aggregator, str]:
    """The real protocol: a SecAgg+ round of ``protocols.simulate`` per secure sum."""
    return protocol_aggregator()


class EvaluationContext:
    """Shared state of one run: configuration, data sets, the secure-sum implementation."""

    def __init__(
        self,
        config: EvaluationConfig,
        aggregator: Aggregator | None = None,
        aggregator_name: str | None = None,
    ) -> None:
        self.config = config
        self._datasets: dict[DatasetName, ImageData] = {}
        if aggregator is None:
            aggregator, aggregator_name = default_aggregator()
        self.aggregator = aggregator
        self.aggregator_name = aggregator_name or "custom"
        #: results several cells share within the run (e.g. a model trained once under a
        #: defence), keyed by what computed them
        self.cache: dict[tuple[object, ...], object] = {}

    def dataset(self, name: DatasetName) -> ImageData:
        """The data set ``name``, loaded on first use."""
        if name not in self._datasets:
            self._datasets[name] = load_dataset(name)
        return self._datasets[name]

    def rng(self, salt: int) -> np.random.Generator:
        """A simulation generator for one cell (independent streams per ``salt``)."""
        return np.random.default_rng([self.config.seed, salt])

    def seed_bytes(self, salt: int) -> bytes:
        """A 32-byte public seed (e.g. a round's rotation seed) derived from the run's seed."""
        return int(self.config.seed * 1_000_003 + salt).to_bytes(32, "big", signed=False)


Cell = tuple[str, Family, Callable[[EvaluationContext], CellOutput]]
"""A cell of the matrix: its name, its family and the function that runs it."""
