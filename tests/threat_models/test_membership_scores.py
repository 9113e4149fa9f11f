"""Membership scores: float64 without ties, LiRA offline, low-FPR resolution, the verdict rule."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from scipy.stats import norm
from torch.nn import functional as F

from secagg.errors import InvalidParameterError
from threat_models.attacks import membership as mia
from threat_models.attacks.metrics import RocCurve, negatives_needed, roc_curve
from threat_models.data import DatasetName, ImageData, load_dataset
from threat_models.evaluation.membership_cells import (
    SUCCESS_AUC,
    SUCCESS_TPR,
    dp_auc_bound,
    dp_expectation,
    dp_tpr_bound,
    membership_rows,
)
from threat_models.evaluation.rows import Expectation, PrivacyLevel, Protection, Row

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def fitted() -> tuple[torch.nn.Module, ImageData]:
    """An MLP trained to fit its 200 members (every member at a near-zero loss)."""
    data = load_dataset(DatasetName.MNIST)
    members = data.subset(np.random.default_rng(0).permutation(len(data))[:200])
    config = mia.TrainingConfig(hidden=64, epochs=100, learning_rate=0.01)
    model = mia.train_model(members, np.ones(200, dtype=bool), config, seed=0).model
    return model, members


def test_float64_loss_has_no_ties_where_float32_has_them(
    fitted: tuple[torch.nn.Module, ImageData],
) -> None:
    model, members = fitted
    with torch.no_grad():
        float32 = F.cross_entropy(model(members.images), members.labels, reduction="none")
    float32_scores = -float32.double().numpy()
    # positive control: the float32 loss of the same model ties members at exactly 0
    assert np.sum(float32_scores == 0.0) >= 10
    assert np.unique(float32_scores).size < members.labels.numel() - 10
    scores = mia.loss_threshold_scores(model, members)
    assert scores.dtype == np.float64
    assert np.all(scores < 0.0)
    assert np.unique(scores).size == members.labels.numel()
    # the ties would stop a threshold from separating any of them; the float64 scores keep
    # the order that the exact loss has
    phi = mia.logit_confidence(model, members)
    assert np.unique(phi).size == members.labels.numel()
    assert np.allclose(-scores, np.logaddexp(0.0, -phi), rtol=1e-12, atol=0.0)
    assert np.array_equal(np.argsort(scores, kind="stable"), np.argsort(phi, kind="stable"))


def test_scores_come_from_float64_logits(fitted: tuple[torch.nn.Module, ImageData]) -> None:
    model, members = fitted
    logits = mia.logits_float64(model, members)
    assert logits.dtype == torch.float64
    assert next(model.parameters()).dtype == torch.float32  # the model is left as it was
    with torch.no_grad():
        reference = copy.deepcopy(model).double()(members.images.double())
    assert torch.equal(logits, reference)
    log_p = torch.log_softmax(logits, dim=1)
    log_py = log_p.gather(1, members.labels[:, None]).squeeze(1)
    # where log p_y is not rounded, loss and phi agree with the textbook formulas
    fine = (-log_py > 1e-6).numpy()
    assert fine.any()
    loss = mia.per_example_loss(model, members)
    assert np.allclose(loss[fine], -log_py.numpy()[fine], rtol=1e-9)
    phi = mia.logit_confidence(model, members)
    textbook = log_py - torch.log1p(-torch.exp(log_py))
    assert np.allclose(phi[fine], textbook.numpy()[fine], rtol=1e-6)


def _shadows(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    k, n = 32, 400
    shadow_in = rng.random((k, n)) < 0.5
    phi = rng.normal(0.0, 1.0, (k, n)) + 3.0 * shadow_in
    members = rng.random(n) < 0.5
    target = rng.normal(0.0, 1.0, n) + 3.0 * members
    return target, phi, shadow_in, members


@pytest.mark.parametrize("variance", list(mia.LiraVariance))
def test_lira_offline_uses_only_out_shadows(variance: mia.LiraVariance) -> None:
    target, phi, shadow_in, members = _shadows()
    offline = mia.lira_offline_scores(target, phi, shadow_in, variance=variance)
    assert roc_curve(offline, members).auc > 0.9
    moved = np.where(shadow_in, phi + 5.0, phi)  # only the IN shadows change
    assert np.array_equal(
        offline, mia.lira_offline_scores(target, moved, shadow_in, variance=variance)
    )
    # positive control: the online attack reads the IN shadows
    online = mia.lira_scores(target, phi, shadow_in, variance=variance)
    assert not np.allclose(online, mia.lira_scores(target, moved, shadow_in, variance=variance))
    with pytest.raises(InvalidParameterError):
        mia.lira_offline_scores(target, phi[:, :10], shadow_in)


def test_lira_offline_is_the_one_sided_gaussian_test_without_saturation() -> None:
    shadow_in = np.array([[False, False, True], [False, False, False], [True, False, False]])
    phi = np.array([[0.0, 0.0, 9.0], [2.0, 20.0, 1.0], [9.0, 10.0, 3.0]])
    target = np.array([1.5, 100.0, 300.0])
    per = mia.lira_offline_scores(target, phi, shadow_in, variance=mia.LiraVariance.PER_EXAMPLE)
    # example 0: OUT values (0, 2): mean 1, variance 2; example 1: (0, 20, 10): mean 10,
    # variance 100; example 2 has OUT values (1, 3): mean 2, variance 2
    means, variances = np.array([1.0, 10.0, 2.0]), np.array([2.0, 100.0, 2.0]) + 1e-6
    z = (target - means) / np.sqrt(variances)
    assert np.allclose(per, -norm.logsf(z), rtol=1e-9)
    # far above the OUT Gaussian the CDF rounds to 1 (ties); the log survival keeps order
    assert norm.cdf(z[1]) == norm.cdf(z[2]) == 1.0
    assert np.isfinite(per).all() and per[2] > per[1] > per[0]
    pooled = mia.lira_offline_scores(target, phi, shadow_in)
    assert not np.allclose(pooled, per)


def test_per_example_variance_from_64_shadows() -> None:
    data = load_dataset(DatasetName.DIGITS)
    population = data.subset(np.arange(40))
    config = mia.TrainingConfig(hidden=4, epochs=2, learning_rate=0.01)
    few = mia.run_membership_experiment(population, config, num_shadows=2, seed=0)
    assert few.lira_variance is mia.LiraVariance.POOLED
    many = mia.run_membership_experiment(
        population, config, num_shadows=mia.PER_EXAMPLE_VARIANCE_SHADOWS, seed=0
    )
    assert many.lira_variance is mia.LiraVariance.PER_EXAMPLE
    assert many.num_shadows == 64
    assert many.lira_offline_roc.negatives == 20 and many.lira_offline_roc.positives == 20


def test_low_fpr_resolution_counts_non_members() -> None:
    assert negatives_needed(0.001) == 1000 and negatives_needed(0.01) == 100
    with pytest.raises(InvalidParameterError):
        negatives_needed(0.0)
    rng = np.random.default_rng(1)
    for negatives, allowed, resolves in ((500, 0, False), (999, 0, False), (1000, 1, True)):
        labels = np.r_[np.ones(100, dtype=bool), np.zeros(negatives, dtype=bool)]
        roc = roc_curve(rng.random(labels.size), labels)
        assert (roc.positives, roc.negatives) == (100, negatives)
        assert roc.false_positives_allowed(0.001) == allowed
        assert roc.resolves_fpr(0.001) is resolves
        assert roc.resolves_fpr(0.01)
    assert roc.false_positives_allowed(0.01) == 10


def _curve(auc_target: float, tpr_1pct: float, negatives: int) -> RocCurve:
    """A two-segment ROC with the given TPR at 1% FPR and (about) the given AUC."""
    # (0, 0) -> (0.01, tpr_1pct) -> (x, y) -> (1, 1); pick the knee for the AUC
    knee_fpr = 0.5
    head = 0.01 * tpr_1pct / 2
    rest = auc_target - head
    # area of (0.01, t) -> (0.5, y) -> (1, 1) = 0.49 (t + y) / 2 + 0.5 (y + 1) / 2
    knee_tpr = (rest - 0.49 * tpr_1pct / 2 - 0.25) / (0.49 / 2 + 0.25)
    fpr = np.array([0.0, 0.01, knee_fpr, 1.0])
    tpr = np.array([0.0, tpr_1pct, knee_tpr, 1.0])
    return RocCurve(fpr, tpr, 500, negatives)


def test_membership_rows_verdict_rule_and_notes() -> None:
    def rows(roc: RocCurve) -> list[Row]:
        return membership_rows(
            attack="LiRA online",
            roc=roc,
            defense="DP-SGD z=2",
            setting="test",
            expected=False,
            protection=Protection.DP,
        )

    low_auc_high_tpr = rows(_curve(0.55, 2 * SUCCESS_TPR, 500))
    auc, tpr_1pct, tpr_01pct = low_auc_high_tpr
    assert auc.metric == "auc" and auc.value < SUCCESS_AUC
    # each criterion is the verdict of its own row, with its threshold
    assert (auc.threshold, tpr_1pct.threshold, tpr_01pct.threshold) == (
        SUCCESS_AUC,
        SUCCESS_TPR,
        None,
    )
    assert not auc.succeeded and auc.as_expected
    # a leak at low FPR is a leak: the 1% row carries the defended claim and regresses
    assert tpr_1pct.succeeded and tpr_1pct.expected is False
    assert tpr_1pct.expectation is Expectation.REGRESSION
    assert tpr_01pct.succeeded and tpr_01pct.expected is None  # the attack's verdict
    # positive control of the rule: the same curve below both criteria is stopped
    stopped = rows(_curve(0.55, SUCCESS_TPR / 2, 500))
    assert not any(r.succeeded for r in stopped) and all(r.as_expected for r in stopped)
    assert rows(_curve(SUCCESS_AUC + 0.05, 0.0, 500))[0].succeeded
    # an expected success is claimed on the AUC row only
    control = membership_rows(
        attack="loss threshold",
        roc=_curve(SUCCESS_AUC + 0.05, 0.0, 500),
        defense="none",
        setting="test",
        expected=True,
        protection=Protection.NONE,
        positive_control=True,
        accuracy=0.9,
    )
    assert [(r.expected, r.positive_control) for r in control] == [
        (True, True),
        (None, False),
        (None, False),
    ]
    assert all(r.as_expected for r in control) and all(r.accuracy == 0.9 for r in control)
    metrics = [r.metric for r in stopped]
    assert metrics == ["auc", "tpr_at_1pct_fpr", "tpr_at_0.1pct_fpr"]
    assert [r.primary for r in stopped] == [True, False, False]
    assert [r.baseline for r in stopped] == [0.5, 0.01, 0.001]
    few, enough = stopped[2].note, rows(_curve(0.55, 0.0, 1000))[2].note
    assert "500 non-members, 0 false positives allowed" in few
    assert "fewer than the 1,000" in few and "zero false positives" in few
    assert enough.startswith("1000 non-members, 1 false positive allowed; verdict: the attack's")
    assert "fewer than" not in enough
    assert "fewer than" not in stopped[1].note  # 500 non-members resolve 1%
    assert all(r.epsilon is None and r.epsilon_level is None for r in stopped)
    private = membership_rows(
        attack="LiRA online",
        roc=_curve(0.55, 0.0, 500),
        defense="DP-SGD z=2",
        setting="test",
        expected=None,
        protection=Protection.DP,
        epsilon=3.96,
        delta=1e-5,
    )
    assert all(
        (r.epsilon, r.delta, r.epsilon_level) == (3.96, 1e-5, PrivacyLevel.SAMPLE) for r in private
    )


def test_dp_claim_where_epsilon_bounds_every_test() -> None:
    assert dp_expectation(0.75, 1e-5) is False  # bound 2.1% at 1% FPR
    assert dp_expectation(1.09, 1e-5) is False  # bound 2.97%
    assert dp_expectation(1.10, 1e-5) is None  # bound 3.004%: DP alone allows a success
    assert dp_expectation(3.96, 1e-5) is None

    def dp_rows(epsilon: float, roc: RocCurve) -> list[Row]:
        return membership_rows(
            attack="LiRA offline",
            roc=roc,
            defense=f"DP-SGD eps={epsilon:g}",
            setting="test",
            expected=dp_expectation(epsilon, 1e-5),
            protection=Protection.DP,
            epsilon=epsilon,
            delta=1e-5,
        )

    leaking = _curve(0.62, 0.05, 500)
    # positive control: a leak under a claiming epsilon is a regression, never hidden; at
    # eps 0.75 DP caps the TPR at 1% FPR (2.1%) but allows AUC 0.68: the claim is the 1% row's
    auc, tpr_1pct, _ = dp_rows(0.75, leaking)
    assert tpr_1pct.expectation is Expectation.REGRESSION
    assert auc.succeeded and auc.expectation is Expectation.NO_CLAIM
    assert all(r.as_expected for r in dp_rows(0.75, _curve(0.52, 0.01, 500)))
    # at eps 0.3 DP caps the AUC below 0.6 (0.574) too: both rows claim, both regress
    auc, tpr_1pct, _ = dp_rows(0.3, leaking)
    assert auc.expectation is tpr_1pct.expectation is Expectation.REGRESSION
    # a weaker epsilon: the leak is shown as a success, with no claim
    weak = dp_rows(3.96, leaking)[0]
    assert weak.succeeded and weak.expectation is Expectation.NO_CLAIM


def test_dp_auc_bound_is_the_area_under_the_tradeoff_curve() -> None:
    # with delta = 0 the curve is two lines meeting at FPR 1/(1+e^eps): AUC e^eps/(1+e^eps)
    for eps in (0.0, 0.3, math.log(1.5), 1.0, 3.0):
        assert dp_auc_bound(eps, 0.0) == pytest.approx(math.exp(eps) / (1 + math.exp(eps)))
    assert dp_auc_bound(math.log(1.5) - 0.01, 1e-5) < SUCCESS_AUC < dp_auc_bound(0.5, 1e-5)
    assert dp_auc_bound(50.0, 1e-5) == pytest.approx(1.0)


def test_dp_tpr_bound() -> None:
    assert dp_tpr_bound(0.0, 0.0, 0.01) == pytest.approx(0.01)
    assert dp_tpr_bound(1.0, 1e-5, 0.01) == pytest.approx(np.e * 0.01 + 1e-5)
    assert dp_tpr_bound(11.29, 1e-5, 0.01) == 1.0  # vacuous: nothing promised at eps 11
    assert dp_tpr_bound(float("inf"), 1e-5, 0.01) == 1.0
    # a DP guarantee alone keeps TPR at 1% FPR below 3% only for eps < ln 3
    assert dp_tpr_bound(np.log(3) - 0.01, 0.0, 0.01) < SUCCESS_TPR < dp_tpr_bound(1.2, 0, 0.01)
    with pytest.raises(InvalidParameterError):
        dp_tpr_bound(-1.0, 1e-5, 0.01)
