"""Gradient inversion and its metrics: positive controls must succeed, the secure sum must hide
a single target, and the leaks that survive the sum must show up."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from secagg.errors import InvalidParameterError
from threat_models.attacks import gradient_inversion as gi
from threat_models.attacks.metrics import (
    PSNR_CAP_DB,
    baselines,
    match_reconstructions,
    psnr,
    psnr_matrix,
    roc_curve,
    signal_to_noise,
)
from threat_models.data import (
    Activation,
    DatasetName,
    ImageData,
    load_dataset,
    make_mlp,
    num_parameters,
)

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def digits() -> ImageData:
    return load_dataset(DatasetName.DIGITS)


def _pick(data: ImageData, count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    idx = torch.as_tensor(np.random.default_rng(seed).choice(len(data), size=count, replace=False))
    return data.images[idx], data.labels[idx]


def _sum_of_singletons(
    model: torch.nn.Module, xs: torch.Tensor, ys: torch.Tensor
) -> list[torch.Tensor]:
    grads = [gi.model_gradient(model, xs[i : i + 1], ys[i : i + 1]) for i in range(xs.shape[0])]
    return [torch.stack(parts).sum(dim=0) for parts in zip(*grads, strict=True)]


# ----------------------------------------------------------------------------- metrics


def test_psnr_is_capped_and_matches_its_definition() -> None:
    a = torch.zeros(1, 1, 4, 4)
    assert psnr(a, a) == PSNR_CAP_DB
    b = torch.full((1, 1, 4, 4), 0.1)
    assert psnr(b, a) == pytest.approx(-10 * np.log10(0.01))
    # candidates outside [0, 1] are clamped first
    assert psnr(torch.full((1, 1, 4, 4), -5.0), a) == PSNR_CAP_DB


def test_matching_is_a_permutation_maximising_total_psnr() -> None:
    originals = torch.rand(5, 1, 3, 3, generator=torch.Generator().manual_seed(0))
    order = torch.tensor([3, 0, 4, 1, 2])
    match = match_reconstructions(originals[order], originals)
    assert np.all(match.psnr_db == PSNR_CAP_DB)
    assert np.array_equal(order[match.candidate_index].numpy(), np.arange(5))
    fewer = match_reconstructions(originals[:2], originals)
    assert fewer.count_above(99) == 2 and np.sum(fewer.candidate_index < 0) == 3


def test_roc_auc_agrees_with_scikit_learn() -> None:
    rng = np.random.default_rng(3)
    labels = rng.random(400) < 0.5
    scores = rng.normal(size=400) + 0.7 * labels
    scores[:50] = np.round(scores[:50], 1)  # ties
    curve = roc_curve(scores, labels)
    assert curve.auc == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert curve.tpr_at_fpr(1.0) == 1.0
    assert 0.0 <= curve.tpr_at_fpr(0.01) <= 1.0
    with pytest.raises(InvalidParameterError):
        roc_curve([0.1, 0.2], [True, True])


def test_baselines_are_well_below_recognisable(digits: ImageData) -> None:
    xs, _ = _pick(digits, 8, 0)
    base = baselines(xs, digits.images)
    assert 5.0 < base.random_image_db < base.dataset_mean_db < 16.0
    assert base.free_count_above(20.0) == 0


def test_signal_to_noise_ratio() -> None:
    g = np.ones(100)
    assert signal_to_noise(g, 0.1) == pytest.approx(10.0)
    with pytest.raises(InvalidParameterError):
        signal_to_noise(g, -1.0)


# ----------------------------------------------------------------------------- positive controls


def test_plaintext_closed_form_and_dlg_reach_exact_recovery(digits: ImageData) -> None:
    model = make_mlp(digits.input_size, 32, 10, activation=Activation.SIGMOID, seed=0)
    xs, ys = _pick(digits, 2, 1)
    for i in range(2):
        x, y = xs[i : i + 1], ys[i : i + 1]
        grads = gi.model_gradient(model, x, y)
        weight, bias = gi.first_linear(model, grads)
        assert psnr(gi.closed_form_first_layer(weight, bias, digits.image_shape), x) > 60.0
        result = gi.dlg(
            model, grads, batch_size=1, image_shape=digits.image_shape, iterations=100, seed=i
        )
        assert int(result.labels[0]) == int(y[0])  # iDLG
        assert psnr(result.images, x) > 40.0


def test_inverting_gradients_recovers_one_image(digits: ImageData) -> None:
    model = make_mlp(digits.input_size, 32, 10, activation=Activation.SIGMOID, seed=0)
    x, y = _pick(digits, 1, 2)
    grads = gi.model_gradient(model, x, y)
    result = gi.inverting_gradients(
        model, grads, batch_size=1, image_shape=digits.image_shape, iterations=300
    )
    assert psnr(result.images, x) > 30.0


# ----------------------------------------------------------------------------- through the sum


def test_single_target_attack_on_a_sum_of_eight_stays_near_the_baselines(digits: ImageData) -> None:
    model = make_mlp(digits.input_size, 32, 10, activation=Activation.SIGMOID, seed=0)
    xs, ys = _pick(digits, 8, 3)
    total = _sum_of_singletons(model, xs, ys)
    weight, bias = gi.first_linear(model, total)
    blend = gi.closed_form_first_layer(weight, bias, digits.image_shape)
    base = baselines(xs, digits.images)
    assert psnr_matrix(blend, xs).max() < 20.0
    assert psnr_matrix(blend, xs).max() < base.dataset_mean_db + 5.0


def test_joint_reconstruction_succeeds_exactly_when_n_inputs_fit_in_the_parameters(
    digits: ImageData,
) -> None:
    xs, ys = _pick(digits, 8, 4)
    feasible = make_mlp(digits.input_size, 32, 10, activation=Activation.SIGMOID, seed=0)
    assert 8 * digits.input_size < num_parameters(feasible)
    res = gi.dlg(
        feasible,
        _sum_of_singletons(feasible, xs, ys),
        batch_size=8,
        image_shape=digits.image_shape,
        iterations=300,
    )
    assert gi.label_accuracy(res.labels, ys, 10) == 1.0
    assert match_reconstructions(res.images, xs).count_above(30.0) >= 4
    infeasible = make_mlp(digits.input_size, 2, 10, activation=Activation.SIGMOID, seed=0)
    assert 8 * digits.input_size > num_parameters(infeasible)
    res = gi.dlg(
        infeasible,
        _sum_of_singletons(infeasible, xs, ys),
        batch_size=8,
        image_shape=digits.image_shape,
        iterations=300,
    )
    assert match_reconstructions(res.images, xs).count_above(20.0) == 0


def test_relu_first_layer_leaks_individual_images_through_the_sum(digits: ImageData) -> None:
    model = make_mlp(digits.input_size, 256, 10, activation=Activation.RELU, seed=0)
    xs, ys = _pick(digits, 8, 5)
    weight, bias = gi.first_linear(model, _sum_of_singletons(model, xs, ys))
    candidates, support = gi.closed_form_per_neuron(
        weight, bias, digits.image_shape, max_candidates=8
    )
    assert candidates.shape[0] <= 8 and support.shape[0] == candidates.shape[0]
    assert match_reconstructions(candidates, xs).count_above(30.0) >= 2


def test_label_counts_from_a_summed_bias_gradient(digits: ImageData) -> None:
    model = make_mlp(digits.input_size, 32, 10, activation=Activation.SIGMOID, seed=0)
    xs, ys = _pick(digits, 6, 6)
    _, bias = gi.last_linear(model, _sum_of_singletons(model, xs, ys))
    assert gi.label_accuracy(gi.infer_labels(bias, 6), ys, 10) >= 5 / 6


# ----------------------------------------------------------------------------- DP noise


def test_reconstruction_quality_falls_with_noise_to_the_baseline(digits: ImageData) -> None:
    model = make_mlp(digits.input_size, 32, 10, activation=Activation.RELU, seed=0)
    xs, ys = _pick(digits, 4, 7)
    prior = (digits.mean_image()[0], digits.images.var(dim=0))
    base = baselines(xs, digits.images)
    curve = []
    for snr in (30.0, 3.0, 0.3, 0.03):
        scores = []
        for i in range(xs.shape[0]):
            grads = gi.model_gradient(model, xs[i : i + 1], ys[i : i + 1])
            flat = gi.flatten(grads)
            std = float(flat.norm()) / (snr * flat.numel() ** 0.5)
            noisy = gi.noisy(grads, std, rng=np.random.default_rng(i))
            weight, bias = gi.first_linear(model, noisy)
            rec = gi.closed_form_first_layer(
                weight, bias, digits.image_shape, noise_std=std, prior=prior
            )
            scores.append(psnr(rec, xs[i : i + 1]))
        curve.append(float(np.mean(scores)))
    assert curve[0] > 40.0
    assert all(b <= a + 1.0 for a, b in zip(curve, curve[1:], strict=False))
    assert curve[-1] < base.dataset_mean_db + 1.0


def test_inputs_are_validated(digits: ImageData) -> None:
    model = make_mlp(digits.input_size, 8, 10, seed=0)
    with pytest.raises(InvalidParameterError):
        gi.closed_form_first_layer(torch.zeros(8, 64), torch.zeros(7), (1, 8, 8))
    with pytest.raises(InvalidParameterError):
        gi.dlg(model, [torch.zeros(3)], batch_size=1, image_shape=(1, 8, 8))
    with pytest.raises(InvalidParameterError):
        gi.unflatten_like(torch.zeros(5), list(model.parameters()))


def test_first_layer_reconstruction_reads_flat_and_per_parameter_updates() -> None:
    model = make_mlp(64, 16, 10, activation=Activation.SIGMOID, seed=0)
    x = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    grads = gi.model_gradient(model, x, torch.tensor([3]))
    weight, bias = gi.first_linear(model, grads)
    expected = gi.closed_form_first_layer(weight, bias, (1, 8, 8))
    flat = gi.flatten(grads)
    for update in (grads, flat, flat.numpy()):
        assert torch.equal(gi.first_layer_reconstruction(model, update, (1, 8, 8)), expected)
