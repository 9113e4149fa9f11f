"""Label inference from the bias gradient at realistic cohorts, and SSIM beside PSNR."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from secagg.errors import InvalidParameterError
from threat_models.attacks import gradient_inversion as gi
from threat_models.attacks.metrics import ssim, ssim_matrix
from threat_models.data import Activation, DatasetName, ImageData, load_dataset, make_mlp
from threat_models.evaluation.gradient_cells import joint_cohorts, with_ssim
from threat_models.evaluation.rows import Family, Protection, Row

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def digits() -> ImageData:
    return load_dataset(DatasetName.DIGITS)


def _summed_bias(model: torch.nn.Module, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    grads = [gi.model_gradient(model, xs[i : i + 1], ys[i : i + 1]) for i in range(xs.shape[0])]
    total = [torch.stack(parts).sum(dim=0) for parts in zip(*grads, strict=True)]
    return gi.last_linear(model, total)[1]


@pytest.mark.parametrize("n", [32, 128])
def test_labels_of_a_large_sum_from_the_models_mean_prediction(digits: ImageData, n: int) -> None:
    model = make_mlp(digits.input_size, 32, 10, activation=Activation.SIGMOID, seed=0)
    idx = torch.as_tensor(np.random.default_rng(n).choice(len(digits), size=n, replace=False))
    xs, ys = digits.images[idx], digits.labels[idx]
    bias = _summed_bias(model, xs, ys)
    gen = torch.Generator().manual_seed(0)
    probes = (
        digits.mean_image()[0]
        + digits.images.var(dim=0).sqrt() * torch.randn((256, 1, 8, 8), generator=gen)
    ).clamp(0, 1)
    informed = gi.infer_labels_from_model(model, bias, n, (1, 8, 8), probes=probes)
    uniform = gi.infer_labels(bias, n)
    assert informed.shape == (n,)
    assert gi.label_accuracy(informed, ys, 10) == 1.0
    # positive control of the measurement: the uniform-pbar estimate misses labels here
    assert gi.label_accuracy(uniform, ys, 10) < 1.0
    # without a prior, uniform-noise probes still get nearly every label
    assert gi.label_accuracy(gi.infer_labels_from_model(model, bias, n, (1, 8, 8)), ys, 10) >= 0.97


def test_label_inference_of_one_example_is_idlg(digits: ImageData) -> None:
    model = make_mlp(digits.input_size, 32, 10, activation=Activation.SIGMOID, seed=0)
    x, y = digits.images[:1], digits.labels[:1]
    bias = _summed_bias(model, x, y)
    assert int(gi.infer_labels_from_model(model, bias, 1, (1, 8, 8))[0]) == int(y[0])
    with pytest.raises(InvalidParameterError):
        gi.infer_labels_from_model(model, bias, 0, (1, 8, 8))
    with pytest.raises(InvalidParameterError):
        gi.mean_probabilities(model, torch.zeros(0, 1, 8, 8))


def test_ssim_hand_checked_values() -> None:
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(1, 1, 8, 8, generator=gen)
    b = torch.rand(1, 1, 8, 8, generator=gen)
    assert ssim(a, a) == pytest.approx(1.0)
    assert abs(ssim(b, a)) < 0.15  # independent noise
    big = torch.rand(28, 28, generator=gen)
    assert abs(ssim(torch.rand(28, 28, generator=gen), big)) < 0.05
    # constant images: (2 m1 m2 + C1) / (m1^2 + m2^2 + C1), the contrast term is C2 / C2
    c1 = 1e-4
    expected = (2 * 0.2 * 0.4 + c1) / (0.2**2 + 0.4**2 + c1)
    assert ssim(torch.full((8, 8), 0.2), torch.full((8, 8), 0.4)) == pytest.approx(expected)
    # a weakened copy scores between noise and identity, and worse with more noise
    noisy = (a + 0.1 * torch.randn(a.shape, generator=gen)).clamp(0, 1)
    noisier = (a + 0.3 * torch.randn(a.shape, generator=gen)).clamp(0, 1)
    assert 1.0 > ssim(noisy, a) > ssim(noisier, a) > ssim(b, a)
    grid = ssim_matrix(torch.cat([a, b]), torch.cat([a, b]))
    assert grid.shape == (2, 2) and grid[0, 0] == pytest.approx(1.0)
    with pytest.raises(InvalidParameterError):
        ssim(a, torch.zeros(1, 1, 4, 4))
    with pytest.raises(InvalidParameterError):
        ssim(torch.zeros(2, 2), torch.zeros(2, 2))


def test_ssim_agrees_with_scikit_image_full_map() -> None:
    metrics = pytest.importorskip("skimage.metrics")
    rng = np.random.default_rng(1)
    for side, win, sigma in ((8, 7, 1.5 * 7 / 11), (28, 11, 1.5)):
        x, y = rng.random((side, side)), rng.random((side, side))
        y = 0.5 * x + 0.5 * y
        _, full = metrics.structural_similarity(
            x,
            y,
            data_range=1.0,
            gaussian_weights=True,
            sigma=sigma,
            win_size=win,
            use_sample_covariance=False,
            full=True,
        )
        assert ssim(torch.from_numpy(x), torch.from_numpy(y)) == pytest.approx(
            float(full.mean()), abs=1e-9
        )


def test_ssim_rows_sit_beside_each_best_psnr_row() -> None:
    best = Row(
        Family.GRADIENT_INVERSION,
        "dlg",
        "none",
        "s",
        "best_psnr_db",
        30.0,
        12.0,
        "mean",
        True,
        True,
        threshold=20.0,
        protection=Protection.NONE,
    )
    other = Row(
        Family.GRADIENT_INVERSION,
        "dlg",
        "none",
        "s",
        "psnr_db",
        25.0,
        12.0,
        "mean",
        True,
        True,
        primary=False,
        protection=Protection.NONE,
    )
    rows = with_ssim([best, other], [0.2, 0.9], [0.1, 0.3])
    assert [r.metric for r in rows] == ["best_psnr_db", "best_ssim", "psnr_db"]
    row = rows[1]
    assert row.value == 0.9 and row.baseline == 0.3 and row.threshold is None
    assert not row.primary and row.succeeded == best.succeeded


def test_joint_cohorts() -> None:
    assert joint_cohorts(True) == (8, 32)
    assert joint_cohorts(False) == (8, 32, 128)
