"""The gradient-inversion cells at realistic cohorts, with SSIM rows and a CNN control."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from threat_models.attacks import gradient_inversion as gi
from threat_models.attacks.aggregation import plain_secure_sum
from threat_models.attacks.metrics import match_reconstructions, psnr
from threat_models.data import (
    Activation,
    DatasetName,
    ImageData,
    load_dataset,
    make_cnn,
    make_mlp,
    num_parameters,
)
from threat_models.evaluation.context import EvaluationConfig, EvaluationContext
from threat_models.evaluation.gradient_cells import (
    CNN_IG_LEARNING_RATE,
    CNN_IG_TV_WEIGHT,
    cell_plaintext_controls,
    cell_secure_sum_inversion,
)
from threat_models.evaluation.rows import Row

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def digits() -> ImageData:
    return load_dataset(DatasetName.DIGITS)


@pytest.fixture(scope="module")
def sum_rows() -> tuple[Row, ...]:
    ctx = EvaluationContext(EvaluationConfig(quick=True), plain_secure_sum, "plain sum")
    return cell_secure_sum_inversion(ctx).rows


def _ssim_beside_psnr(rows: tuple[Row, ...]) -> None:
    for i, row in enumerate(rows):
        if row.metric == "best_psnr_db":
            ssim_row = rows[i + 1]
            assert ssim_row.metric == "best_ssim" and ssim_row.attack == row.attack
            assert ssim_row.threshold is None and not ssim_row.primary
            assert -1.0 <= ssim_row.value <= 1.0 and ssim_row.succeeded == row.succeeded


def test_joint_rows_at_each_quick_cohort_name_n_and_p(sum_rows: tuple[Row, ...]) -> None:
    joint = [r for r in sum_rows if r.attack.startswith("dlg joint") and r.primary]
    assert [r.defense.split(",")[0] for r in joint] == [
        "secure aggregation (n=8",
        "secure aggregation (n=32",
    ]
    for row, n in zip(joint, (8, 32), strict=True):
        assert f"n={n};" in row.setting and f"n*D={n * 64}, P=2410" in row.setting
        assert row.metric == "images_above_20db" and row.threshold == 1.0
    control = joint[0]
    assert control.expected is True and control.succeeded and control.value == 8.0
    assert joint[1].expected is None  # n*D < P is possible at 32, not assured
    labels = [
        r for r in sum_rows if r.attack.startswith("dlg joint") and r.metric == "label_accuracy"
    ]
    assert [r.value for r in labels] == [1.0, 1.0]
    _ssim_beside_psnr(sum_rows)


def test_joint_inversion_is_stopped_at_the_cohort_where_n_inputs_exceed_the_parameters(
    digits: ImageData,
) -> None:
    model = make_mlp(digits.input_size, 32, 10, activation=Activation.SIGMOID, seed=0)
    n = 128
    assert n * digits.input_size > num_parameters(model)
    idx = torch.as_tensor(np.random.default_rng(1).choice(len(digits), size=n, replace=False))
    xs, ys = digits.images[idx], digits.labels[idx]
    grads = [gi.model_gradient(model, xs[i : i + 1], ys[i : i + 1]) for i in range(n)]
    total = [torch.stack(parts).sum(dim=0) for parts in zip(*grads, strict=True)]
    labels = gi.infer_labels_from_model(model, gi.last_linear(model, total)[1], n, (1, 8, 8))
    res = gi.dlg(model, total, batch_size=n, image_shape=(1, 8, 8), labels=labels, iterations=300)
    assert match_reconstructions(res.images, xs).count_above(20.0) == 0
    # positive control of the same check: the first 8 of them, same model and budget, leak
    small = [torch.stack(parts).sum(dim=0) for parts in zip(*grads[:8], strict=True)]
    res8 = gi.dlg(model, small, batch_size=8, image_shape=(1, 8, 8), iterations=300)
    assert match_reconstructions(res8.images, xs[:8]).count_above(20.0) >= 4


def test_cnn_builder_and_its_plaintext_inversion(digits: ImageData) -> None:
    model = make_cnn((1, 8, 8), 10, seed=0)
    assert model(digits.images[:3]).shape == (3, 10)
    assert make_cnn((1, 28, 28), 10, seed=0)(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    x, y = digits.images[5:6], digits.labels[5:6]
    grads = gi.model_gradient(model, x, y)
    d = gi.dlg(model, grads, batch_size=1, image_shape=(1, 8, 8), iterations=100)
    assert psnr(d.images, x) > 30.0 and int(d.labels[0]) == int(y[0])
    ig = gi.inverting_gradients(
        model,
        grads,
        batch_size=1,
        image_shape=(1, 8, 8),
        iterations=300,
        learning_rate=CNN_IG_LEARNING_RATE,
        tv_weight=CNN_IG_TV_WEIGHT,
    )
    assert psnr(ig.images, x) > 30.0


def test_plaintext_controls_include_the_cnn_and_ssim_rows() -> None:
    ctx = EvaluationContext(EvaluationConfig(quick=True), plain_secure_sum, "plain sum")
    rows = cell_plaintext_controls(ctx).rows
    cnn = [r for r in rows if " CNN " in r.attack and r.metric == "best_psnr_db"]
    assert {r.attack for r in cnn} == {"dlg CNN [digits]", "inverting_gradients CNN [digits]"}
    assert all(r.positive_control and r.succeeded for r in cnn)
    assert all(
        r.value == 1.0 for r in rows if " CNN " in r.attack and r.metric == "images_attacked"
    )
    _ssim_beside_psnr(rows)
