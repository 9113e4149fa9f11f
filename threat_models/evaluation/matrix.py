"""Running the attack x defense matrix: the cells, the run, its result and its JSON.

:data:`CELLS` lists every cell with its family; :func:`run_evaluation` runs those of the
chosen families once per seed of the configuration (one broken cell is recorded in
:attr:`EvaluationResult.errors` and does not hide the others), merges the rows of the seeds
(:func:`~threat_models.evaluation.seeds.merge_seeds`: means, 90% intervals, verdicts decided
on the interval by :data:`~threat_models.evaluation.seeds.INTERVAL_RULE`) and returns an
:class:`EvaluationResult`, whose verdicts --
:attr:`~EvaluationResult.controls_passed`, :attr:`~EvaluationResult.unexpected`,
:meth:`~EvaluationResult.not_stopped_by_secure_aggregation` -- read the typed fields of
the rows.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import TypeVar

from tqdm import tqdm

from secagg.errors import InvalidParameterError, raise_missing_extra
from threat_models.attacks.aggregation import Aggregator
from threat_models.evaluation.audit_cells import cell_empirical_audit
from threat_models.evaluation.context import Cell, EvaluationConfig, EvaluationContext
from threat_models.evaluation.curves import curves_json
from threat_models.evaluation.gradient_cells import (
    cell_dp_noise_sweep,
    cell_plaintext_controls,
    cell_secure_sum_inversion,
)
from threat_models.evaluation.membership_cells import cell_membership
from threat_models.evaluation.model_cells import (
    cell_disaggregation,
    cell_model_inconsistency,
    cell_sybil,
    cell_trap_weights,
)
from threat_models.evaluation.protocol_cells import cell_protocol_attacks
from threat_models.evaluation.rows import (
    Family,
    Figure,
    ImagePanel,
    Protection,
    Row,
    strict_document,
)
from threat_models.evaluation.scoring import VERDICT_RULE
from threat_models.evaluation.seeds import INTERVAL_RULE, merge_seeds
from threat_models.evaluation.utility import with_accuracy

try:
    import torch
except ImportError as exc:  # the core install has no torch
    raise_missing_extra(exc, "eval", "threat_models.evaluation")

__all__ = [
    "ACCURACY_STEP",
    "AUDIT_CELL",
    "CELLS",
    "NOT_STOPPED_BY",
    "EvaluationResult",
    "run_evaluation",
]

#: The step after the cells of a seed that trains each defence's model for the rows'
#: ``accuracy`` (:func:`~threat_models.evaluation.utility.with_accuracy`); its time is in
#: :attr:`EvaluationResult.seconds` under this name.
ACCURACY_STEP = "model accuracy under each defence"

#: Name of the empirical-audit cell (the report states its time next to its rows).
AUDIT_CELL = "empirical audit (canaries)"

CELLS: tuple[Cell, ...] = (
    ("plaintext positive controls", Family.GRADIENT_INVERSION, cell_plaintext_controls),
    ("inversion of secure sums", Family.GRADIENT_INVERSION, cell_secure_sum_inversion),
    ("inversion under DP noise", Family.GRADIENT_INVERSION, cell_dp_noise_sweep),
    ("membership inference", Family.MEMBERSHIP, cell_membership),
    ("model inconsistency", Family.MODEL_LEVEL, cell_model_inconsistency),
    ("Sybil clients", Family.MODEL_LEVEL, cell_sybil),
    ("trap / imprint weights", Family.MODEL_LEVEL, cell_trap_weights),
    ("disaggregation across rounds", Family.MODEL_LEVEL, cell_disaggregation),
    ("protocol-level attacks", Family.PROTOCOL_LEVEL, cell_protocol_attacks),
    (AUDIT_CELL, Family.EMPIRICAL_AUDIT, cell_empirical_audit),
)
"""Every cell of the matrix: name, family, the function that runs it."""

#: Protections that count as "secure aggregation as deployed": the hardened protocol,
#: alone or with the distributed DP whose noise relies on it.
NOT_STOPPED_BY = frozenset({Protection.SECURE_AGGREGATION, Protection.SECURE_AGGREGATION_DP})


@dataclass(frozen=True)
class EvaluationResult:
    """Everything one run produced.

    Attributes:
        config: the run's configuration (its first seed; :attr:`seeds` lists them all).
        rows: every number, merged over the seeds (mean, interval, verdict on the interval).
        panels: image grids (of the first seed that ran the cell).
        figures: plots (of the first seed that ran the cell).
        seconds: wall time per cell, summed over the seeds.
        aggregator: how secure sums were computed.
        errors: cell name -> the exception that stopped it, prefixed with the seed when the
            run has several (an empty mapping when all ran).
    """

    config: EvaluationConfig
    rows: tuple[Row, ...]
    panels: tuple[ImagePanel, ...]
    figures: tuple[Figure, ...]
    seconds: Mapping[str, float]
    aggregator: str
    errors: Mapping[str, str] = field(default_factory=dict)

    @property
    def seeds(self) -> tuple[int, ...]:
        """The seeds of the run (:attr:`EvaluationConfig.seed_values`)."""
        return self.config.seed_values

    @property
    def controls_passed(self) -> bool:
        """Whether every cell ran and every positive control succeeded.

        Otherwise the evaluation proves nothing.
        """
        return not self.errors and all(r.succeeded for r in self.rows if r.positive_control)

    @property
    def unexpected(self) -> tuple[Row, ...]:
        """Rows whose verdict contradicts the expectation."""
        return tuple(r for r in self.rows if not r.as_expected)

    def not_stopped_by_secure_aggregation(self) -> tuple[Row, ...]:
        """Primary rows where an attack succeeded against secure aggregation as deployed.

        That is, against the hardened protocol alone or with distributed DP sized for the
        honest cohort (:data:`NOT_STOPPED_BY`); not against the unhardened baseline, nor
        against noise that does not rely on secure aggregation.
        """
        return tuple(
            r for r in self.rows if r.primary and r.succeeded and r.protection in NOT_STOPPED_BY
        )

    def to_json(self) -> dict[str, object]:
        """The result as strict JSON (the rule of :mod:`secagg.outputs`: a non-finite
        number is ``null``, its JSON Pointer named under ``"non_finite"``)."""
        return strict_document(
            {
                "quick": self.config.quick,
                "seed": self.config.seed,
                "seeds": list(self.seeds),
                "aggregator": self.aggregator,
                "controls_passed": self.controls_passed,
                "unexpected": len(self.unexpected),
                "verdict_rule": VERDICT_RULE,
                "interval_rule": INTERVAL_RULE,
                "errors": dict(self.errors),
                "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
                "rows": [r.json_fields() for r in self.rows],
                "privacy_utility": curves_json(self.rows),
            }
        )


_Named = TypeVar("_Named", ImagePanel, Figure)


@contextmanager
def _threads(count: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _time_left(
    first: Mapping[str, float], names: Sequence[str], seed_index: int, cell_index: int, seeds: int
) -> float:
    """Seconds the steps from (``seed_index``, ``cell_index``) on take, at the first seed's
    pace per cell."""
    rest = sum(first.get(n, 0.0) for n in names[cell_index:])
    return rest + (seeds - seed_index - 1) * sum(first.get(n, 0.0) for n in names)


def run_evaluation(
    config: EvaluationConfig,
    *,
    progress: bool | None = None,
    cells: Sequence[Cell] = CELLS,
    aggregator: tuple[Aggregator, str] | None = None,
) -> EvaluationResult:
    """Run the matrix once per seed of ``config`` and merge the seeds' rows.

    Each seed runs in a fresh :class:`EvaluationContext` (``config`` with that seed); the
    rows are merged by :func:`~threat_models.evaluation.seeds.merge_seeds`. The progress bar
    counts (seed, cell) steps; after the first seed it states the time left at that seed's
    pace per cell.

    Args:
        config: sizes and seeds.
        progress: show a tqdm bar (default: when stderr is a terminal).
        cells: which cells (default all; filtered by ``config.families``).
        aggregator: ``(function, name)`` computing secure sums (default: the real protocol).
    """
    chosen = [c for c in cells if c[1] in config.families]
    if not chosen:
        raise InvalidParameterError("no cell selected")
    seeds = config.seed_values
    names = [name for name, _, _ in chosen]
    show = sys.stderr.isatty() if progress is None else progress
    runs: list[list[Row]] = []
    panels: list[ImagePanel] = []
    figures: list[Figure] = []
    pictured: set[str] = set()  # cells whose panels and figures are kept
    seconds: dict[str, float] = {}
    first: dict[str, float] = {}  # the first seed's time per cell: the estimate of the rest
    errors: dict[str, str] = {}
    aggregator_name = ""
    with (
        _threads(config.threads),
        tqdm(
            total=len(seeds) * len(chosen),
            desc="secagg evaluate",
            unit="cell",
            disable=not show,
        ) as bar,
    ):
        for s, seed in enumerate(seeds):
            ctx = EvaluationContext(replace(config, seed=seed), *(aggregator or (None, None)))
            aggregator_name = aggregator_name or ctx.aggregator_name
            rows: list[Row] = []
            for c, (name, _, cell) in enumerate(chosen):
                left = f", ~{_time_left(first, names, s, c, len(seeds)):.0f} s left" if s else ""
                bar.set_postfix_str(f"seed {seed}: {name}{left}")
                start = time.perf_counter()
                try:
                    out = cell(ctx)
                except Exception as exc:  # noqa: BLE001 - one broken cell must not hide the others
                    message = f"{type(exc).__name__}: {exc}"
                    if len(seeds) > 1:
                        message = f"seed {seed}: {message}"
                    errors[name] = f"{errors[name]}; {message}" if name in errors else message
                    out = None
                elapsed = time.perf_counter() - start
                seconds[name] = seconds.get(name, 0.0) + elapsed
                if s == 0:
                    first[name] = elapsed
                bar.update(1)
                if out is None:
                    continue
                rows += out.rows
                if name not in pictured:
                    pictured.add(name)
                    panels += out.panels
                    figures += out.figures
            start = time.perf_counter()
            filled = with_accuracy(rows, ctx)  # each defence's model, this seed's
            if any(a is not b for a, b in zip(filled, rows, strict=True)):
                spent = time.perf_counter() - start
                seconds[ACCURACY_STEP] = seconds.get(ACCURACY_STEP, 0.0) + spent
            runs.append(list(filled))
    return EvaluationResult(
        config,
        merge_seeds(runs),
        _unique(panels),
        _unique(figures),
        seconds,
        aggregator_name,
        errors,
    )


def _unique(items: Sequence[_Named]) -> tuple[_Named, ...]:
    """``items`` without those whose name an earlier one has (file names are unique)."""
    seen: set[str] = set()
    out = []
    for item in items:
        if item.name not in seen:
            seen.add(item.name)
            out.append(item)
    return tuple(out)
