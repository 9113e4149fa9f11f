"""The attack x defense evaluation matrix behind ``secagg evaluate``.

Each *cell* runs one family of attacks against one or more defenses and returns rows::

    {"family", "attack", "defense", "setting", "metric", "value", "baseline",
     "baseline_name", "succeeded", "expected", "positive_control", "primary", "note",
     "epsilon", "delta", "epsilon_level", "noise_multiplier", "accuracy", "threshold",
     "threshold_above", "seeds", "ci_low", "ci_high"}

``succeeded`` is the attack's verdict in that cell (the same on every metric row of the
cell); ``expected`` is what an honest harness must observe (``True``: the attack must
succeed, ``False``: the defense must stop it, ``None``: no claim, e.g. intermediate noise
levels). Every attack first runs as a *positive control* -- on plaintext, or against the
deliberately unhardened baseline -- where it must succeed; an evaluation whose controls
fail proves nothing, and :meth:`EvaluationResult.controls_passed` says so.

Success criteria (stated once, used everywhere):

* image reconstruction: an image counts as leaked at PSNR >= 20 dB (recognisable); a
  row that attacks several targets takes its value and verdict from the attacker's best
  target (:data:`~threat_models.evaluation.scoring.VERDICT_RULE`), defended rows and
  positive controls alike, so that no average can hide a leaked target;
* membership inference: AUC >= 0.6 on the AUC row, TPR >= 3% at 1% FPR (three times
  chance) on the TPR row, each row's own threshold; a DP row expects the attack stopped
  only where its (epsilon, delta) alone caps the TPR at 1% FPR below 3%
  (``e^epsilon * 1% + delta < 3%``, i.e. epsilon < ln 3); above that it makes no claim
  and states the cap;
* isolating an update (Sybils, protocol-level attacks): the server's estimate of one
  client's update is within the quantisation error of the truth (or, under DP, within
  the target's own noise share).

Secure sums are computed by an :data:`~threat_models.attacks.aggregation.Aggregator`: the
real protocol (``protocols.simulate``) when it is available, else the sum itself (what
secure aggregation reveals by definition). Rows say which one ran. DP noise comes from the
:mod:`dp` mechanisms themselves (central Gaussian, distributed discrete Gaussian, Opacus
client), drawn from their CSPRNG, so DP cells vary slightly from run to run; everything
else is seeded by ``EvaluationConfig.seed``.

Every row with DP noise states the epsilon that noise corresponds to (``epsilon``,
``delta``, ``epsilon_level``: per client unless the row says otherwise, composed over the
releases the attack observes, without amplification by sampling); rows without DP carry
``None``. ``accuracy`` is the test accuracy of the model trained under the row's defence
(:data:`~threat_models.evaluation.utility.ACCURACY_RULE`; ``None`` where no model is
trained); the privacy-utility curves (:mod:`~threat_models.evaluation.curves`) plot the
attack's metric and that accuracy against epsilon.

A run covers ``EvaluationConfig.seeds`` seeds (1 in quick mode, 3 in full): each row is the
mean over the seeds with its 90% Student-t interval (``ci_low``, ``ci_high``: each end a
one-sided 95% confidence bound) and a verdict decided on the interval
(:data:`~threat_models.evaluation.seeds.INTERVAL_RULE`).

Each row also carries a :class:`Protection` -- what the defense consists of (nothing, the
unhardened baseline, the hardened protocol, the protocol with distributed DP, noise that
does not rely on it) -- which the verdicts that group rows read, never the labels.

The package, one module per concept:

* :mod:`.rows` -- the row and its typed verdict, panels and figures;
* :mod:`.context` -- the run's sizes (:class:`EvaluationConfig`) and shared state;
* :mod:`.scoring` -- PSNR rows and image panels, the same in every cell;
* the cells by attack family: :mod:`.gradient_cells`, :mod:`.membership_cells`,
  :mod:`.model_cells`, :mod:`.protocol_cells`;
* :mod:`.matrix` -- :data:`CELLS`, :func:`run_evaluation`, :class:`EvaluationResult` and
  its JSON;
* :mod:`.table` -- the summary table; :mod:`.report` -- images, plots and ``report.md``
  (needs matplotlib).
"""

from __future__ import annotations

from threat_models.evaluation.context import (
    Cell,
    EvaluationConfig,
    EvaluationContext,
    default_aggregator,
)
from threat_models.evaluation.gradient_cells import (
    cell_dp_noise_sweep,
    cell_plaintext_controls,
    cell_secure_sum_inversion,
)
from threat_models.evaluation.matrix import CELLS, EvaluationResult, run_evaluation
from threat_models.evaluation.membership_cells import cell_membership
from threat_models.evaluation.model_cells import (
    cell_disaggregation,
    cell_model_inconsistency,
    cell_sybil,
    cell_trap_weights,
)
from threat_models.evaluation.protocol_cells import cell_protocol_attacks
from threat_models.evaluation.rows import (
    CellOutput,
    Expectation,
    Family,
    Figure,
    ImagePanel,
    Outcome,
    PrivacyLevel,
    Protection,
    Row,
    Series,
)
from threat_models.evaluation.seeds import INTERVAL_RULE, merge_seeds
from threat_models.evaluation.table import (
    EPSILON_LEGEND,
    METRIC_LABELS,
    TABLE_WIDTH,
    VERDICT_LEGEND,
    seeds_legend,
    summary_table,
)
from threat_models.evaluation.utility import ACCURACY_RULE, defence_accuracy, with_accuracy

__all__ = [
    "Family",
    "Outcome",
    "Expectation",
    "Protection",
    "PrivacyLevel",
    "Row",
    "ImagePanel",
    "Series",
    "Figure",
    "CellOutput",
    "EvaluationConfig",
    "EvaluationContext",
    "EvaluationResult",
    "Cell",
    "CELLS",
    "run_evaluation",
    "summary_table",
    "VERDICT_LEGEND",
    "EPSILON_LEGEND",
    "TABLE_WIDTH",
    "METRIC_LABELS",
    "seeds_legend",
    "INTERVAL_RULE",
    "merge_seeds",
    "ACCURACY_RULE",
    "defence_accuracy",
    "with_accuracy",
    "default_aggregator",
    "cell_plaintext_controls",
    "cell_secure_sum_inversion",
    "cell_dp_noise_sweep",
    "cell_membership",
    "cell_model_inconsistency",
    "cell_sybil",
    "cell_trap_weights",
    "cell_disaggregation",
    "cell_protocol_attacks",
]
