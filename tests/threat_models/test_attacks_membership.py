"""Membership inference: the attacks work on an overfit model; DP-SGD accounted as Opacus does."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from opacus.accountants import PRVAccountant, RDPAccountant

from secagg.errors import InvalidParameterError
from threat_models.attacks import membership as mia
from threat_models.attacks.metrics import roc_curve
from threat_models.data import DatasetName, ImageData, load_dataset

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def population() -> ImageData:
    data = load_dataset(DatasetName.MNIST)
    return data.subset(np.random.default_rng(0).permutation(len(data))[:400])


def test_lira_scores_separate_gaussians() -> None:
    rng = np.random.default_rng(0)
    k, n = 16, 300
    shadow_in = rng.random((k, n)) < 0.5
    phi = rng.normal(0.0, 1.0, (k, n)) + 3.0 * shadow_in
    members = rng.random(n) < 0.5
    target = rng.normal(0.0, 1.0, n) + 3.0 * members
    roc = roc_curve(mia.lira_scores(target, phi, shadow_in), members)
    assert roc.auc > 0.9
    with pytest.raises(InvalidParameterError):
        mia.lira_scores(target, phi[:, :10], shadow_in)


@pytest.fixture(scope="module")
def plain(population: ImageData) -> mia.MembershipResult:
    return mia.run_membership_experiment(
        population,
        mia.TrainingConfig(hidden=32, epochs=100, learning_rate=0.01),
        num_shadows=4,
        seed=1,
    )


def test_positive_control_attacks_an_overfit_model(plain: mia.MembershipResult) -> None:
    result = plain
    assert result.train_accuracy == 1.0 and result.test_accuracy < 0.95
    assert result.loss_roc.auc > 0.6
    assert result.lira_roc.auc > 0.7
    assert result.lira_roc.tpr_at_fpr(0.01) > 0.03
    assert result.lira_offline_roc.auc > 0.65
    assert result.lira_offline_roc.tpr_at_fpr(0.01) > 0.03
    assert result.lira_variance is mia.LiraVariance.POOLED  # 4 shadows: fixed variance
    assert result.loss_roc.negatives == 200 and result.loss_roc.positives == 200
    assert result.epsilon is None


def test_dp_sgd_epsilon_is_opacus_rdp_accounting(population: ImageData) -> None:
    members = np.zeros(len(population), dtype=bool)
    members[:200] = True
    config = mia.TrainingConfig(hidden=16, epochs=3, batch_size=50, learning_rate=0.01)
    history = [(1.5, 50 / 200, 3 * 4)]  # (noise multiplier, sample rate, steps)
    for accountant, reference in (
        (mia.Accountant.RDP, RDPAccountant()),
        (mia.Accountant.PRV, PRVAccountant()),
    ):
        dp = mia.DpSgdConfig(
            noise_multiplier=1.5, max_grad_norm=1.0, delta=1e-5, accountant=accountant
        )
        trained = mia.train_model(population, members, config, dp=dp, seed=0)
        reference.history = list(history)
        assert trained.epsilon is not None
        assert trained.epsilon == pytest.approx(reference.get_epsilon(1e-5), rel=1e-6)
    # the returned module is a plain torch module again (no Opacus hooks left behind)
    assert not any(
        hasattr(p, "grad_sample") and p.grad_sample is not None for p in trained.model.parameters()
    )
    out = trained.model(population.images[:3])
    assert out.shape == (3, 10)


def test_dp_sgd_weakens_lira(population: ImageData, plain: mia.MembershipResult) -> None:
    private = mia.run_membership_experiment(
        population,
        mia.TrainingConfig(hidden=32, epochs=6, batch_size=50, learning_rate=0.01),
        num_shadows=4,
        dp=mia.DpSgdConfig(noise_multiplier=2.0),
        seed=1,
    )
    assert private.epsilon is not None and private.epsilon < 10
    assert private.lira_roc.auc < plain.lira_roc.auc - 0.15
    assert private.lira_roc.auc < 0.62
    assert private.lira_offline_roc.auc < plain.lira_offline_roc.auc - 0.1


def test_configs_are_validated() -> None:
    with pytest.raises(InvalidParameterError):
        mia.TrainingConfig(hidden=0)
    with pytest.raises(InvalidParameterError):
        mia.TrainingConfig(batch_size=0)
    with pytest.raises(InvalidParameterError):
        mia.DpSgdConfig(noise_multiplier=0.0)
