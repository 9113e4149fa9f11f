"""Membership-inference cell: the released model, without and with DP-SGD.

Loss-threshold and LiRA attacks (:mod:`threat_models.attacks.membership`) on a model
trained on half of a population. Secure aggregation releases the same model as
plaintext training, so both must succeed there; sample-level DP (DP-SGD) must stop them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from threat_models.attacks import membership as mia
from threat_models.data import DatasetName
from threat_models.evaluation.context import EvaluationContext
from threat_models.evaluation.rows import CellOutput, Family, Figure, Protection, Row, Series

__all__ = ["cell_membership"]

#: Success criteria: AUC, or the true-positive rate at 1% false positives (3x chance).
SUCCESS_AUC = 0.6
SUCCESS_TPR = 0.03


@dataclass(frozen=True)
class _Run:
    """One trained model the attacks meet, and what the harness claims about it."""

    defense: str
    result: mia.MembershipResult
    expected: bool
    protection: Protection
    positive_control: bool = False


def cell_membership(ctx: EvaluationContext) -> CellOutput:
    """Loss-threshold and LiRA membership inference, without and with DP-SGD."""
    cfg = ctx.config
    data = ctx.dataset(DatasetName.MNIST)
    rng = ctx.rng(400)
    population = data.subset(rng.permutation(len(data))[: cfg.mia_population])
    plain_cfg = mia.TrainingConfig(hidden=64, epochs=100, learning_rate=0.01)
    dp_cfg = mia.TrainingConfig(hidden=64, epochs=10, batch_size=125, learning_rate=0.01)
    plain = mia.run_membership_experiment(
        population, plain_cfg, num_shadows=cfg.mia_shadows, seed=cfg.seed
    )
    runs = [
        _Run("none (plaintext training)", plain, True, Protection.NONE, positive_control=True),
        _Run(
            "secure aggregation (same released model)",
            plain,
            True,
            Protection.SECURE_AGGREGATION,
        ),
    ]
    for z in cfg.mia_noise_multipliers:
        dp = mia.DpSgdConfig(noise_multiplier=z, max_grad_norm=1.0)
        res = mia.run_membership_experiment(
            population, dp_cfg, num_shadows=cfg.mia_shadows, dp=dp, seed=cfg.seed
        )
        defense = f"DP-SGD z={z:g} (eps={res.epsilon:.2f}, delta={res.delta:g})"
        runs.append(_Run(defense, res, False, Protection.DP))
    rows: list[Row] = []
    series: list[Series] = []
    for run in runs:
        res = run.result
        setting = (
            f"mnist population {len(population)} (half members), MLP {data.input_size}-64-10 "
            f"relu; {res.num_shadows} shadow models; train/test acc "
            f"{res.train_accuracy:.2f}/{res.test_accuracy:.2f}"
        )
        same_model = run.protection is Protection.SECURE_AGGREGATION
        for attack, roc in (("loss threshold", res.loss_roc), ("LiRA", res.lira_roc)):
            tpr = roc.tpr_at_fpr(0.01)
            auc = Row(
                family=Family.MEMBERSHIP,
                attack=attack,
                defense=run.defense,
                setting=setting,
                metric="auc",
                value=roc.auc,
                baseline=0.5,
                baseline_name="chance",
                succeeded=roc.auc >= SUCCESS_AUC or tpr >= SUCCESS_TPR,
                expected=run.expected,
                positive_control=run.positive_control,
                note=(
                    "the released model is identical with or without secure aggregation"
                    if same_model
                    else ""
                ),
                protection=run.protection,
            )
            rows.append(auc)
            rows.append(
                replace(
                    auc,
                    metric="tpr_at_1pct_fpr",
                    value=tpr,
                    baseline=0.01,
                    primary=False,
                    note="",
                )
            )
            if not same_model:  # the same curve as plaintext training
                label = f"{attack}, {run.defense.split(' (')[0]} (AUC {roc.auc:.2f})"
                fpr = tuple(np.maximum(roc.fpr, 1e-4).tolist())
                series.append(Series(label, fpr, tuple(np.maximum(roc.tpr, 1e-4).tolist())))
    figure = Figure(
        name="roc_membership",
        title="Membership inference ROC (log-log)",
        xlabel="false-positive rate",
        ylabel="true-positive rate",
        series=tuple(series),
        logx=True,
        logy=True,
        diagonal=True,
    )
    return CellOutput(tuple(rows), (), (figure,))
