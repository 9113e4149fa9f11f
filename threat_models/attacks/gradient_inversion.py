"""Gradient inversion: recovering training images from what the server sees.

The server sees either one client's update (plaintext), the sum of several clients'
updates (what secure aggregation reveals), or a noised version of either. Here an update
is the gradient of the cross-entropy loss with respect to the model's parameters (FedSGD;
one local step of FedAvg is the same up to the learning rate). Conventions: a client with
a batch of ``B`` examples sends the gradient of its *mean* loss; a secure sum of ``n``
clients with one example each is therefore the gradient of the *summed* loss over the
``n`` examples. Every attack takes the convention as ``loss_scale`` (``1/B`` or ``1``).

Attacks:

* :func:`closed_form_first_layer` — for a dense first layer ``z = W x + b`` and one
  example, ``dL/dW_i = (dL/dz_i) x^T`` and ``dL/db_i = dL/dz_i``, so every row with
  ``dL/db_i != 0`` gives ``x = dL/dW_i / dL/db_i`` exactly (Phong et al. 2017; Geiping
  et al. 2020, Prop. D.1). With noise, the least-squares estimate over all rows,
  ``x = sum_i db_i dW_i / sum_i db_i^2``, is used.
* :func:`closed_form_per_neuron` — the same ratio *per neuron* on a sum of many
  examples. A ReLU neuron that is active for exactly one example of the whole sum
  isolates that example: secure aggregation hides nothing about it. Neurons agreeing on
  the same ratio confirm each other; the attacker needs no ground truth to rank them.
* :func:`dlg` — Deep Leakage from Gradients (Zhu et al. 2019): L-BFGS on dummy images so
  that their gradient matches the observed one in squared L2 distance; labels from
  :func:`infer_labels` (iDLG, Zhao et al. 2020: the true label's entry of the last bias
  gradient is the only negative one; for a batch or a sum, counts from the magnitudes
  with the model's mean prediction, :func:`infer_labels_from_model`). With
  ``batch_size = n`` it is the joint
  reconstruction of all ``n`` examples of a sum, which is well posed when
  ``n * input_size`` is below the number of parameters.
* :func:`inverting_gradients` — Geiping et al. 2020: Adam with signed gradients on
  ``1 - cos(grad(x), g) + tv_weight * TV(x)``, projected onto the box ``[0, 1]``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from secagg.errors import InvalidParameterError, raise_missing_extra

try:
    import torch
    from torch import nn
    from torch.nn import functional as F
except ImportError as exc:  # the core install has no torch
    raise_missing_extra(exc, "eval", "threat_models.attacks.gradient_inversion")

__all__ = [
    "InversionResult",
    "model_gradient",
    "flatten",
    "unflatten_like",
    "first_linear",
    "last_linear",
    "closed_form_first_layer",
    "first_layer_reconstruction",
    "Prior",
    "closed_form_per_neuron",
    "infer_labels",
    "mean_probabilities",
    "infer_labels_from_model",
    "label_accuracy",
    "dlg",
    "inverting_gradients",
    "total_variation",
    "noisy",
]

Gradients = list[torch.Tensor]

Prior = tuple[torch.Tensor, torch.Tensor]
"""``(mean, variance)`` images of the data distribution, which a server has."""


@dataclass(frozen=True)
class InversionResult:
    """Output of an optimisation-based inversion.

    Attributes:
        images: reconstructed images, ``(batch_size, C, H, W)``, clamped to ``[0, 1]``.
        labels: labels used (inferred or given), ``(batch_size,)``.
        final_loss: gradient-matching loss at the end.
        iterations: optimiser iterations actually run.
    """

    images: torch.Tensor
    labels: torch.Tensor
    final_loss: float
    iterations: int


def model_gradient(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, create_graph: bool = False
) -> Gradients:
    """Gradient of the mean cross-entropy over the batch, one tensor per parameter."""
    loss = F.cross_entropy(model(images), labels)
    params = [p for p in model.parameters() if p.requires_grad]
    return list(torch.autograd.grad(loss, params, create_graph=create_graph))


def flatten(grads: Sequence[torch.Tensor]) -> torch.Tensor:
    """Concatenate gradients into one flat float64 vector (what a client uploads)."""
    return torch.cat([g.detach().reshape(-1).to(torch.float64) for g in grads])


def unflatten_like(flat: torch.Tensor, like: Sequence[torch.Tensor]) -> Gradients:
    """Inverse of :func:`flatten` for tensors shaped like ``like`` (dtype of ``like``)."""
    total = sum(int(t.numel()) for t in like)
    if flat.ndim != 1 or int(flat.numel()) != total:
        raise InvalidParameterError(f"flat vector has {flat.numel()} entries, expected {total}")
    out: Gradients = []
    offset = 0
    for t in like:
        k = int(t.numel())
        out.append(flat[offset : offset + k].reshape(t.shape).to(t.dtype))
        offset += k
    return out


def _linear_indices(model: nn.Module) -> list[int]:
    """Positions (in ``model.parameters()`` order) of the weights of each nn.Linear."""
    positions: list[int] = []
    index = 0
    for module in model.modules():
        own = list(module.parameters(recurse=False))
        if isinstance(module, nn.Linear):
            if module.bias is None:
                raise InvalidParameterError("the attacks need every nn.Linear to have a bias")
            positions.append(index)
        index += len(own)
    if not positions:
        raise InvalidParameterError("model has no nn.Linear layer")
    return positions


def first_linear(
    model: nn.Module, grads: Sequence[torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(dL/dW, dL/db)`` of the model's first dense layer, taken from ``grads``."""
    i = _linear_indices(model)[0]
    return grads[i], grads[i + 1]


def last_linear(
    model: nn.Module, grads: Sequence[torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(dL/dW, dL/db)`` of the model's last dense layer, taken from ``grads``."""
    i = _linear_indices(model)[-1]
    return grads[i], grads[i + 1]


def closed_form_first_layer(
    weight_grad: torch.Tensor,
    bias_grad: torch.Tensor,
    image_shape: Sequence[int],
    *,
    noise_std: float = 0.0,
    prior: Prior | None = None,
) -> torch.Tensor:
    """Recover the input of a dense first layer from one example's gradient.

    Least squares over the rows: ``x = sum_i db_i dW_i / sum_i db_i^2``. Exact (up to
    round-off) for a single example without noise; for a sum of several examples it is
    a weighted blend of them.

    Against a noised gradient (i.i.d. Gaussian noise of known std ``sigma``, as DP noise
    is public) the attacker also shrinks the estimate towards a prior with per-pixel mean
    ``m`` and variance ``s^2`` (Wiener filter)::

        v = sigma^2 / max(sum_i db_i^2 - H sigma^2, 0)      (per-pixel noise variance)
        x = m + s^2 / (s^2 + v) * (x_ls - m)

    which degrades gracefully to the data set's mean as the noise grows.

    Args:
        weight_grad: ``(H, D)`` gradient of the first layer's weight.
        bias_grad: ``(H,)`` gradient of its bias.
        image_shape: ``(C, H, W)`` to reshape the ``D`` inputs into.
        noise_std: std of the noise added to every coordinate (0: none).
        prior: ``(mean, variance)`` images of shape ``image_shape`` (or broadcastable);
            used only when ``noise_std > 0``.

    Returns:
        ``(1, C, H, W)`` float32 reconstruction (not clamped).
    """
    w = weight_grad.detach().to(torch.float64)
    b = bias_grad.detach().to(torch.float64)
    if w.ndim != 2 or b.shape != (w.shape[0],) or math.prod(image_shape) != w.shape[1]:
        raise InvalidParameterError(
            "weight_grad must be (H, D), bias_grad (H,), and image_shape hold D pixels"
        )
    if noise_std < 0 or not math.isfinite(noise_std):
        raise InvalidParameterError("noise_std must be finite and non-negative")
    power = float((b * b).sum())
    if prior is not None and noise_std > 0:
        mean = prior[0].detach().to(torch.float64).reshape(-1)
        var = prior[1].detach().to(torch.float64).reshape(-1)
        signal = power - b.numel() * noise_std**2
        if signal <= 0.0 or power == 0.0:
            return mean.reshape(1, *image_shape).to(torch.float32)
        x_ls = (b @ w) / power
        pixel_var = noise_std**2 / signal
        x = mean + var / (var + pixel_var) * (x_ls - mean)
        return x.reshape(1, *image_shape).to(torch.float32)
    if power == 0.0:
        return torch.zeros((1, *image_shape), dtype=torch.float32)
    x = (b @ w) / power
    return x.reshape(1, *image_shape).to(torch.float32)


def first_layer_reconstruction(
    model: nn.Module,
    update: Sequence[torch.Tensor] | torch.Tensor | npt.NDArray[np.float64],
    image_shape: Sequence[int],
    *,
    noise_std: float = 0.0,
    prior: Prior | None = None,
) -> torch.Tensor:
    """:func:`closed_form_first_layer` on the first dense layer of ``model``'s gradient.

    What a server does with an update (one client's, or a sum whose first layer is one
    client's): take the first layer's ``(dL/dW, dL/db)`` out of the update and read the
    input as their least-squares ratio (with the Wiener shrinkage towards ``prior`` when
    ``noise_std > 0``).

    Args:
        model: the model the update is a gradient of.
        update: the gradient, one tensor per parameter, or flat (as uploaded: a tensor or
            a float64 array, in ``model.parameters()`` order).
        image_shape: ``(C, H, W)`` of one input.
        noise_std: std of the noise on every coordinate of the update (0: none).
        prior: ``(mean, variance)`` images; used only when ``noise_std > 0``.

    Returns:
        ``(1, C, H, W)`` float32 reconstruction (not clamped).
    """
    if isinstance(update, np.ndarray):
        update = torch.from_numpy(np.asarray(update, dtype=np.float64))
    if isinstance(update, torch.Tensor):
        grads: Sequence[torch.Tensor] = unflatten_like(update, list(model.parameters()))
    else:
        grads = update
    weight, bias = first_linear(model, grads)
    return closed_form_first_layer(weight, bias, image_shape, noise_std=noise_std, prior=prior)


def closed_form_per_neuron(
    weight_grad: torch.Tensor,
    bias_grad: torch.Tensor,
    image_shape: Sequence[int],
    *,
    max_candidates: int | None = None,
    relative_tolerance: float = 1e-7,
    value_range: tuple[float, float] = (0.0, 1.0),
    duplicate_psnr_db: float = 60.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-neuron ratios ``dW_i / db_i`` of a summed gradient, deduplicated and ranked.

    A neuron active for a single example of the sum yields that example exactly. The
    attacker keeps ratios whose pixels lie in the data range (a mixture with gradients of
    opposite signs usually does not), merges ratios that agree to ``duplicate_psnr_db``,
    and ranks the distinct ones by how many neurons agree, then by ``|db_i|``.

    Returns:
        ``(candidates, support)``: ``(K, C, H, W)`` float32 images and, per candidate,
        the number of neurons that produced it.
    """
    w = weight_grad.detach().to(torch.float64)
    b = bias_grad.detach().to(torch.float64)
    if w.ndim != 2 or b.shape != (w.shape[0],) or math.prod(image_shape) != w.shape[1]:
        raise InvalidParameterError(
            "weight_grad must be (H, D), bias_grad (H,), and image_shape hold D pixels"
        )
    scale = float(b.abs().max()) if b.numel() else 0.0
    empty = torch.zeros((0, *image_shape), dtype=torch.float32), torch.zeros(0, dtype=torch.int64)
    if scale == 0.0:
        return empty
    active = b.abs() > relative_tolerance * scale
    ratios = w[active] / b[active, None]
    magnitude = b[active].abs()
    lo, hi = value_range
    slack = 0.02 * (hi - lo)
    in_range = (ratios.min(dim=1).values >= lo - slack) & (ratios.max(dim=1).values <= hi + slack)
    ratios, magnitude = ratios[in_range], magnitude[in_range]
    if ratios.shape[0] == 0:
        return empty
    # merge near-identical ratios: MSE below 10^(-duplicate_psnr_db/10) (data range hi - lo)
    limit = (hi - lo) ** 2 * 10.0 ** (-duplicate_psnr_db / 10.0) * ratios.shape[1]
    order = torch.argsort(magnitude, descending=True)
    ratios, magnitude = ratios[order], magnitude[order]
    close = torch.cdist(ratios, ratios).pow(2) <= limit
    taken = torch.zeros(ratios.shape[0], dtype=torch.bool)
    reps: list[int] = []
    support: list[int] = []
    for i in range(ratios.shape[0]):
        if taken[i]:
            continue
        group = close[i] & ~taken
        taken |= group
        reps.append(i)
        support.append(int(group.sum()))
    rank = sorted(range(len(reps)), key=lambda k: (-support[k], -float(magnitude[reps[k]])))
    if max_candidates is not None:
        rank = rank[:max_candidates]
    chosen = torch.stack([ratios[reps[k]] for k in rank])
    return (
        chosen.reshape(-1, *image_shape).to(torch.float32),
        torch.tensor([support[k] for k in rank], dtype=torch.int64),
    )


def infer_labels(
    last_bias_grad: torch.Tensor,
    count: int,
    *,
    loss_scale: float = 1.0,
    mean_probabilities: torch.Tensor | None = None,
) -> torch.Tensor:
    """Labels of the examples behind a gradient, from the last layer's bias gradient.

    For softmax cross-entropy, ``dL/db = loss_scale * sum_k (p_k - onehot(y_k))``. For one
    example the true label is the only negative entry (iDLG). For ``count`` examples,
    ``count_c ~= count * pbar_c - (dL/db)_c / loss_scale``, where ``pbar`` is the mean
    predicted distribution (uniform unless given: an untrained model's); the labels are
    then allotted greedily by the largest remaining estimate.

    Returns:
        int64 tensor of ``count`` labels (sorted by class).
    """
    if count < 1 or loss_scale <= 0:
        raise InvalidParameterError("count must be positive and loss_scale positive")
    g = last_bias_grad.detach().to(torch.float64).reshape(-1) / loss_scale
    classes = g.numel()
    if count == 1:
        return torch.tensor([int(torch.argmin(g))], dtype=torch.int64)
    pbar = (
        torch.full((classes,), 1.0 / classes, dtype=torch.float64)
        if mean_probabilities is None
        else mean_probabilities.detach().to(torch.float64).reshape(-1)
    )
    estimate = count * pbar - g
    labels: list[int] = []
    for _ in range(count):
        c = int(torch.argmax(estimate))
        labels.append(c)
        estimate[c] -= 1.0
    return torch.tensor(sorted(labels), dtype=torch.int64)


def mean_probabilities(model: nn.Module, probes: torch.Tensor) -> torch.Tensor:
    """The model's mean predicted distribution over ``probes``, ``(num_classes,)`` float64.

    What the attacker plugs into :func:`infer_labels` as ``pbar``: the server knows the
    model, so it can read the mean softmax output off any inputs it has (images drawn
    from a prior of the data, or uniform noise when it has none).
    """
    if probes.ndim < 2 or probes.shape[0] == 0:
        raise InvalidParameterError("probes must be a non-empty batch of inputs")
    dtype = next(iter(model.parameters())).dtype
    with torch.no_grad():
        probs = F.softmax(model(probes.to(dtype)), dim=1)
    return probs.mean(dim=0).to(torch.float64)


def infer_labels_from_model(
    model: nn.Module,
    last_bias_grad: torch.Tensor,
    count: int,
    image_shape: Sequence[int],
    *,
    loss_scale: float = 1.0,
    probes: torch.Tensor | None = None,
    seed: int = 0,
) -> torch.Tensor:
    """Labels of ``count`` examples behind a gradient, from its bias and the model's outputs.

    The softmax-cross-entropy identity ``dL/db_c = loss_scale * sum_i (p_ic - y_ic)`` gives
    the count of class ``c`` as ``sum_i p_ic - (dL/db)_c / loss_scale``. On a model whose
    outputs barely depend on the input (an untrained one, where these attacks run), the
    unknown ``sum_i p_ic`` is ``count`` times the mean prediction on other inputs
    (:func:`mean_probabilities` on ``probes``; 256 uniform-noise images from ``seed`` when
    none are given), in the spirit of LLG (Wainakh et al. 2022) and iLRG (Ma et al. 2023);
    the counts are then rounded by :func:`infer_labels`. For ``count = 1`` this is iDLG
    (the only negative entry). A uniform ``pbar`` (what :func:`infer_labels` assumes
    without one) is off by ``count * |pbar_c - 1/C|`` per class, a label or more at 32.

    Returns:
        int64 tensor of ``count`` labels (sorted by class).
    """
    if count < 1:
        raise InvalidParameterError("count must be positive")
    if count == 1:
        return infer_labels(last_bias_grad, 1, loss_scale=loss_scale)
    if probes is None:
        gen = torch.Generator().manual_seed(seed)
        probes = torch.rand((256, *image_shape), generator=gen)
    pbar = mean_probabilities(model, probes)
    return infer_labels(last_bias_grad, count, loss_scale=loss_scale, mean_probabilities=pbar)


def label_accuracy(predicted: torch.Tensor, true: torch.Tensor, num_classes: int) -> float:
    """Fraction of the true labels recovered, as multisets (order does not matter)."""
    if predicted.numel() == 0 or true.numel() == 0:
        return 0.0
    p = torch.bincount(predicted.reshape(-1), minlength=num_classes)
    t = torch.bincount(true.reshape(-1), minlength=num_classes)
    return float(torch.minimum(p, t).sum()) / float(true.numel())


def _gradient_distance(
    model: nn.Module,
    dummy: torch.Tensor,
    labels: torch.Tensor,
    target: Sequence[torch.Tensor],
    loss_scale: float,
    distance: Callable[[Sequence[torch.Tensor], Sequence[torch.Tensor]], torch.Tensor],
) -> torch.Tensor:
    loss = F.cross_entropy(model(dummy), labels, reduction="sum") * loss_scale
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, params, create_graph=True)
    return distance(grads, target)


def _squared_l2(grads: Sequence[torch.Tensor], target: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.stack([((g - t) ** 2).sum() for g, t in zip(grads, target, strict=True)]).sum()


def _cosine(grads: Sequence[torch.Tensor], target: Sequence[torch.Tensor]) -> torch.Tensor:
    dot = torch.stack([(g * t).sum() for g, t in zip(grads, target, strict=True)]).sum()
    gn = torch.stack([(g * g).sum() for g in grads]).sum().sqrt()
    tn = torch.stack([(t * t).sum() for t in target]).sum().sqrt()
    return 1.0 - dot / (gn * tn + 1e-12)


def total_variation(images: torch.Tensor) -> torch.Tensor:
    """Anisotropic total variation ``mean |dx| + mean |dy|`` of ``(N, C, H, W)`` images."""
    dx = (images[:, :, :, 1:] - images[:, :, :, :-1]).abs().mean()
    dy = (images[:, :, 1:, :] - images[:, :, :-1, :]).abs().mean()
    return dx + dy


def _prepare(
    model: nn.Module,
    target: Sequence[torch.Tensor],
    batch_size: int,
    image_shape: Sequence[int],
    labels: torch.Tensor | None,
    loss_scale: float,
    seed: int,
) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
    if batch_size < 1 or loss_scale <= 0:
        raise InvalidParameterError("batch_size and loss_scale must be positive")
    params = [p for p in model.parameters() if p.requires_grad]
    if len(params) != len(target) or any(
        p.shape != t.shape for p, t in zip(params, target, strict=True)
    ):
        raise InvalidParameterError("target gradients do not match the model's parameters")
    tgt = [t.detach().to(params[0].dtype) for t in target]
    if labels is None:
        _, bias_grad = last_linear(model, tgt)
        labels = infer_labels(bias_grad, batch_size, loss_scale=loss_scale)
    if labels.shape != (batch_size,):
        raise InvalidParameterError(f"need {batch_size} labels, got shape {tuple(labels.shape)}")
    gen = torch.Generator().manual_seed(seed)
    dummy = torch.rand((batch_size, *image_shape), generator=gen, dtype=params[0].dtype)
    return tgt, labels.to(torch.int64), dummy


def dlg(
    model: nn.Module,
    target: Sequence[torch.Tensor],
    *,
    batch_size: int,
    image_shape: Sequence[int],
    labels: torch.Tensor | None = None,
    loss_scale: float = 1.0,
    iterations: int = 300,
    seed: int = 0,
) -> InversionResult:
    """Deep Leakage from Gradients with iDLG labels.

    Minimises ``sum_l ||grad_l(x', y) - g_l||^2`` over dummy images ``x'`` with L-BFGS
    (strong Wolfe line search), starting from uniform noise. Labels are inferred from the
    last bias gradient unless given.

    Args:
        model: the model the gradient was computed on (parameters are not modified).
        target: observed gradient, one tensor per parameter.
        batch_size: number of examples to reconstruct jointly.
        image_shape: ``(C, H, W)``.
        labels: known labels, or None for :func:`infer_labels`.
        loss_scale: ``1/B`` for one client's mean-loss gradient over ``B`` examples, ``1``
            for a sum of batch-1 client gradients.
        iterations: L-BFGS iteration budget.
        seed: seed of the dummy initialisation.
    """
    tgt, labels, dummy = _prepare(model, target, batch_size, image_shape, labels, loss_scale, seed)
    dummy.requires_grad_(True)
    optimiser = torch.optim.LBFGS(
        [dummy],
        lr=1.0,
        max_iter=iterations,
        history_size=100,
        tolerance_grad=1e-14,
        tolerance_change=1e-16,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = _gradient_distance(model, dummy, labels, tgt, loss_scale, _squared_l2)
        torch.autograd.backward(loss)
        return loss

    optimiser.step(closure)  # type: ignore[no-untyped-call]
    with torch.enable_grad():
        final = float(
            _gradient_distance(model, dummy, labels, tgt, loss_scale, _squared_l2).detach()
        )
    state = optimiser.state[optimiser._params[0]]
    return InversionResult(
        dummy.detach().clamp(0.0, 1.0), labels, final, int(state.get("n_iter", 0))
    )


def inverting_gradients(
    model: nn.Module,
    target: Sequence[torch.Tensor],
    *,
    batch_size: int,
    image_shape: Sequence[int],
    labels: torch.Tensor | None = None,
    loss_scale: float = 1.0,
    iterations: int = 1000,
    learning_rate: float = 0.1,
    tv_weight: float = 1e-4,
    seed: int = 0,
) -> InversionResult:
    """Inverting Gradients (Geiping et al. 2020).

    Minimises ``1 - cos(grad(x', y), g) + tv_weight * TV(x')`` with Adam on the *sign* of
    the gradient, learning rate decayed by 10x at 3/8, 5/8 and 7/8 of the budget, and
    projects onto ``[0, 1]`` after every step. The cosine loss ignores the gradient's
    scale, which makes it robust to unknown learning rates and batch sizes.
    """
    tgt, labels, dummy = _prepare(model, target, batch_size, image_shape, labels, loss_scale, seed)
    dummy.requires_grad_(True)
    optimiser = torch.optim.Adam([dummy], lr=learning_rate)
    milestones = [int(iterations * f) for f in (3 / 8, 5 / 8, 7 / 8)]
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimiser, milestones=milestones, gamma=0.1)
    final = math.nan
    for _ in range(iterations):
        optimiser.zero_grad()
        loss = _gradient_distance(model, dummy, labels, tgt, loss_scale, _cosine)
        if tv_weight > 0:
            loss = loss + tv_weight * total_variation(dummy)
        torch.autograd.backward(loss)
        if dummy.grad is not None:
            dummy.grad.sign_()
        optimiser.step()
        scheduler.step()
        with torch.no_grad():
            dummy.clamp_(0.0, 1.0)
        final = float(loss.detach())
    return InversionResult(dummy.detach().clone(), labels, final, iterations)


def noisy(
    grads: Sequence[torch.Tensor], noise_std: float, *, rng: np.random.Generator
) -> Gradients:
    """``grads`` plus i.i.d. Gaussian noise of std ``noise_std`` (simulation of a noised update)."""
    return [
        g + torch.from_numpy(rng.normal(0.0, noise_std, size=tuple(g.shape))).to(g.dtype)
        for g in grads
    ]
