"""Membership inference on the trained model: loss threshold and LiRA (online and offline).

Secure aggregation changes *who sees the updates*, not the model the federation trains:
the global model released after secure aggregation is the same function of the same data
as without it, so membership inference on the final model is untouched by it. What
reduces it is sample-level DP during training (DP-SGD, here with Opacus).

Attacks (higher score = "member"):

* **Loss threshold** (Yeom et al. 2018; Shokri et al. 2017 in spirit): score ``-loss(x, y)``.
* **LiRA online** (Carlini et al. 2022, "Membership Inference Attacks From First
  Principles"): train shadow models on random halves of the population so that each
  example is IN about half of them; for each example fit Gaussians to the logit-scaled
  confidence ``phi = log(p_y / (1 - p_y))`` of the IN and OUT shadow models and score the
  target model's ``phi`` by the log-likelihood ratio ``log N(phi; mu_in, s_in) - log
  N(phi; mu_out, s_out)``.
* **LiRA offline** (the same paper, section VI-C): only the OUT shadows are used; the
  score is the one-sided test ``Pr[Z < phi]`` for ``Z ~ N(mu_out, s_out)``, reported as
  ``-log Pr[Z > phi]`` (the same order, without the rounding of ``Pr`` to 1).

With few shadows the variances are pooled over all examples (the paper's "fixed variance"
variant, :attr:`LiraVariance.POOLED`); from :data:`PER_EXAMPLE_VARIANCE_SHADOWS` shadows on
each example has its own (:attr:`LiraVariance.PER_EXAMPLE`), as in the paper.

Numerics: every score is computed from float64 logits (the model is evaluated with float64
weights and inputs). The loss is ``log(1 + sum_{j != y} exp(z_j - z_y))`` evaluated with
``logaddexp``, so a member fitted with a margin of 40 has a loss of about ``4e-18``
instead of exactly 0: in float32, ``cross_entropy`` rounds every loss below about
``6e-8`` to 0 and the members it ties make the low-FPR end of the ROC unmeasurable.

Reported as AUC and TPR at 1% and 0.1% FPR, which is what matters for privacy: an attack
that confidently identifies a few members is a breach even with an AUC near 0.5.
"""

from __future__ import annotations

import enum
import math
import warnings
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.special import log_ndtr

from secagg.errors import InvalidParameterError, raise_missing_extra, require_installed

try:
    import torch
    from torch import nn
    from torch.nn import functional as F
    from torch.utils.data import DataLoader, TensorDataset
except ImportError as exc:  # the core install has no torch
    raise_missing_extra(exc, "eval", "threat_models.attacks.membership")

from threat_models.attacks.metrics import RocCurve, roc_curve
from threat_models.data import Activation, ImageData, make_mlp

require_installed(("opacus",), "eval", "threat_models.attacks.membership")  # DP-SGD targets

__all__ = [
    "PER_EXAMPLE_VARIANCE_SHADOWS",
    "Accountant",
    "LiraVariance",
    "TrainingConfig",
    "DpSgdConfig",
    "TrainedModel",
    "MembershipResult",
    "train_model",
    "per_example_loss",
    "logits_float64",
    "logit_confidence",
    "loss_threshold_scores",
    "lira_scores",
    "lira_offline_scores",
    "run_membership_experiment",
]

F64 = npt.NDArray[np.float64]
Mask = npt.NDArray[np.bool_]


#: Shadow models from which LiRA fits a variance per example (Carlini et al. 2022 fix the
#: variance below 64 shadows: with fewer, per-example estimates are too noisy).
PER_EXAMPLE_VARIANCE_SHADOWS = 64


class LiraVariance(str, enum.Enum):
    """How LiRA estimates the spread of the shadow models' confidences."""

    #: one variance per side (IN, OUT) pooled over all examples ("fixed variance")
    POOLED = "pooled"
    #: a variance per example and side (falls back to the pooled one where an example has
    #: fewer than two shadows on that side)
    PER_EXAMPLE = "per-example"


class Accountant(str, enum.Enum):
    """Opacus accountant that converts DP-SGD steps into (epsilon, delta)."""

    PRV = "prv"
    RDP = "rdp"


@dataclass(frozen=True)
class TrainingConfig:
    """How target and shadow models are trained (identically, as LiRA assumes).

    Attributes:
        hidden: hidden-layer width of the MLP.
        epochs: passes over the training half.
        batch_size: (expected) batch size, None for full-batch steps; with DP-SGD batches
            are Poisson-sampled.
        learning_rate: Adam learning rate.
        activation: hidden non-linearity.
    """

    hidden: int = 256
    epochs: int = 200
    batch_size: int | None = None
    learning_rate: float = 1e-3
    activation: Activation = Activation.RELU

    def __post_init__(self) -> None:
        if self.hidden < 1 or self.epochs < 1 or not self.learning_rate > 0:
            raise InvalidParameterError("hidden, epochs and learning_rate must be positive")
        if self.batch_size is not None and self.batch_size < 1:
            raise InvalidParameterError("batch_size must be positive (or None for full batches)")


@dataclass(frozen=True)
class DpSgdConfig:
    """DP-SGD (Abadi et al. 2016) via Opacus: per-example clipping to ``max_grad_norm`` and
    Gaussian noise of std ``noise_multiplier * max_grad_norm`` on each batch's summed gradient.

    Attributes:
        noise_multiplier: sigma / C.
        max_grad_norm: per-example L2 clip C.
        delta: delta at which epsilon is reported.
        accountant: Opacus accountant for epsilon (PRV by default, as Opacus').
    """

    noise_multiplier: float = 1.0
    max_grad_norm: float = 1.0
    delta: float = 1e-5
    accountant: Accountant = Accountant.PRV

    def __post_init__(self) -> None:
        if not self.noise_multiplier > 0 or not self.max_grad_norm > 0 or not 0 < self.delta < 1:
            raise InvalidParameterError(
                "noise_multiplier and max_grad_norm must be positive, delta in (0, 1)"
            )


@dataclass(frozen=True)
class TrainedModel:
    """A trained classifier and, under DP-SGD, its epsilon (at the config's delta) from Opacus."""

    model: nn.Module
    epsilon: float | None


def train_model(
    data: ImageData,
    members: Mask,
    config: TrainingConfig,
    *,
    dp: DpSgdConfig | None = None,
    seed: int = 0,
) -> TrainedModel:
    """Train an MLP on ``data`` restricted to ``members`` (boolean mask), with or without DP-SGD.

    Without DP: Adam on shuffled mini-batches. With DP: DP-SGD (Adam on clipped,
    noised per-example gradients) through the library's Opacus client
    (:func:`dp.opacus_client.train_private_round`: Poisson sampling with rate
    ``batch / members``, per-example clipping, Gaussian noise from the AES-CTR PRG), for
    ``epochs * round(members / batch)`` steps; epsilon comes from the chosen Opacus
    accountant. The plain module is returned either way. ``seed`` fixes the initial
    weights and the non-private shuffling; the DP noise is never seeded.
    """
    mask = np.asarray(members, dtype=bool)
    if mask.shape != (len(data),) or not mask.any():
        raise InvalidParameterError("members must be a non-empty boolean mask over the data set")
    idx = torch.as_tensor(np.flatnonzero(mask))
    x, y = data.images[idx], data.labels[idx]
    count = int(idx.numel())
    batch = min(config.batch_size or count, count)
    model = make_mlp(
        data.input_size, config.hidden, data.num_classes, activation=config.activation, seed=seed
    )
    gen = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    if dp is None:
        steps_per_epoch = max(1, round(count / batch))
        model.train()
        for _ in range(config.epochs):
            order = torch.randperm(count, generator=gen)
            for k in range(steps_per_epoch):
                part = order[k * batch : (k + 1) * batch]
                optimiser.zero_grad()
                torch.autograd.backward(F.cross_entropy(model(x[part]), y[part]))
                optimiser.step()
        model.eval()
        return TrainedModel(model, None)

    from dp.opacus_client import OpacusAccountantKind, train_private_round

    # the library's Opacus client: Poisson sampling and noise from the AES-CTR PRG, a fresh
    # GradSampleModule on a copy of the model, accountant state handed back explicitly
    loader: DataLoader[tuple[torch.Tensor, ...]] = DataLoader(TensorDataset(x, y), batch_size=batch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = train_private_round(
            model,
            optimiser,
            loader,
            noise_multiplier=dp.noise_multiplier,
            max_grad_norm=dp.max_grad_norm,
            epochs=config.epochs,
            accountant=OpacusAccountantKind(Accountant(dp.accountant).value),
        )
    model.load_state_dict(result.state_dict)
    model.eval()
    return TrainedModel(model, result.client_state.epsilon(dp.delta))


@torch.no_grad()
def logits_float64(model: nn.Module, data: ImageData) -> torch.Tensor:
    """The model's logits on ``data`` computed in float64 (weights and inputs cast; the
    model itself is not modified)."""
    model.eval()
    params = {
        name: t.to(torch.float64) if t.is_floating_point() else t
        for name, t in model.state_dict().items()
    }
    out = torch.func.functional_call(model, params, (data.images.to(torch.float64),))
    if not isinstance(out, torch.Tensor):
        raise InvalidParameterError("the model must return one tensor of logits")
    return out


def _other_classes_log_odds(model: nn.Module, data: ImageData) -> F64:
    """``L = log sum_{j != y} exp(z_j - z_y)`` per example, in float64: ``loss =
    log(1 + e^L)`` and ``phi = -L``, both without cancellation."""
    logits = logits_float64(model, data)
    labels = data.labels[:, None]
    relative = logits - logits.gather(1, labels)
    relative.scatter_(1, labels, -math.inf)
    return np.asarray(torch.logsumexp(relative, dim=1).numpy(), dtype=np.float64)


def per_example_loss(model: nn.Module, data: ImageData) -> F64:
    """Cross-entropy of each example, in float64 from float64 logits: ``log(1 + e^L)`` with
    ``L = log sum_{j != y} exp(z_j - z_y)`` (accurate down to losses of about 1e-308)."""
    return np.asarray(np.logaddexp(0.0, _other_classes_log_odds(model, data)), dtype=np.float64)


def logit_confidence(model: nn.Module, data: ImageData) -> F64:
    """``phi = log p_y - log(1 - p_y) = -log sum_{j != y} exp(z_j - z_y)`` per example,
    float64 end to end (float64 logits, no ``log p`` rounded to 0)."""
    return -_other_classes_log_odds(model, data)


def loss_threshold_scores(model: nn.Module, data: ImageData) -> F64:
    """Loss-threshold attack scores: ``-loss`` (members have lower loss), in float64."""
    return -per_example_loss(model, data)


def _checked(target_phi: F64, shadow_phi: F64, shadow_in: Mask) -> tuple[F64, F64, Mask]:
    phi = np.asarray(shadow_phi, dtype=np.float64)
    ins = np.asarray(shadow_in, dtype=bool)
    t = np.asarray(target_phi, dtype=np.float64)
    if phi.ndim != 2 or phi.shape != ins.shape or t.shape != (phi.shape[1],):
        raise InvalidParameterError("shadow_phi, shadow_in must be (K, N) and target_phi (N,)")
    return t, phi, ins


def _gaussian_fit(phi: F64, side: Mask, variance: LiraVariance) -> tuple[F64, F64]:
    """Per example, the mean and variance of ``phi`` over the shadows where ``side``.

    An example with no shadow on this side takes the population mean of the side's means;
    the variance is pooled (:attr:`LiraVariance.POOLED`) or per example with the pooled
    one where fewer than two shadows are on this side.
    """
    count = side.sum(axis=0)
    mean = np.where(count > 0, (phi * side).sum(axis=0) / np.maximum(count, 1), np.nan)
    mean = np.where(np.isnan(mean), np.nanmean(mean), mean)
    sq = ((phi - mean) ** 2) * side
    pooled = float(sq.sum() / max(int(side.sum()) - 1, 1)) + 1e-6
    if LiraVariance(variance) is LiraVariance.POOLED:
        return mean, np.full(phi.shape[1], pooled)
    own = sq.sum(axis=0) / np.maximum(count - 1, 1) + 1e-6
    return mean, np.where(count >= 2, own, pooled)


def lira_scores(
    target_phi: F64,
    shadow_phi: F64,
    shadow_in: Mask,
    *,
    variance: LiraVariance = LiraVariance.POOLED,
) -> F64:
    """LiRA (online) log-likelihood-ratio scores.

    Args:
        target_phi: ``(N,)`` logit confidences of the target model.
        shadow_phi: ``(K, N)`` logit confidences of K shadow models.
        shadow_in: ``(K, N)`` True where the example was in that shadow's training set.
        variance: pooled ("fixed variance") or per-example Gaussians.

    Returns:
        ``(N,)`` scores ``log N(phi; mu_in, s_in) - log N(phi; mu_out, s_out)``; an example
        never IN (or never OUT) of any shadow falls back to the population mean of the
        missing side.
    """
    t, phi, ins = _checked(target_phi, shadow_phi, shadow_in)
    mu_in, var_in = _gaussian_fit(phi, ins, variance)
    mu_out, var_out = _gaussian_fit(phi, ~ins, variance)
    log_in = -0.5 * (t - mu_in) ** 2 / var_in - 0.5 * np.log(var_in)
    log_out = -0.5 * (t - mu_out) ** 2 / var_out - 0.5 * np.log(var_out)
    return np.asarray(log_in - log_out, dtype=np.float64)


def lira_offline_scores(
    target_phi: F64,
    shadow_phi: F64,
    shadow_in: Mask,
    *,
    variance: LiraVariance = LiraVariance.POOLED,
) -> F64:
    """LiRA (offline) scores: how far above the OUT shadows the target's confidence lies.

    Only the OUT shadows of each example are used (``shadow_in`` False). The score is
    ``-log Pr[Z > phi]`` for ``Z ~ N(mu_out, s_out)``: a strictly increasing function of
    the paper's one-sided test ``Pr[Z < phi]``, computed with ``log_ndtr`` so that
    confidences many standard deviations above the OUT mean keep their order instead of
    all rounding to probability 1.

    Args:
        target_phi: ``(N,)`` logit confidences of the target model.
        shadow_phi: ``(K, N)`` logit confidences of K shadow models.
        shadow_in: ``(K, N)`` True where the example was in that shadow's training set.
        variance: pooled ("fixed variance") or per-example OUT Gaussians.
    """
    t, phi, ins = _checked(target_phi, shadow_phi, shadow_in)
    mu_out, var_out = _gaussian_fit(phi, ~ins, variance)
    z = (t - mu_out) / np.sqrt(var_out)
    return np.asarray(-log_ndtr(-z), dtype=np.float64)


@dataclass(frozen=True)
class MembershipResult:
    """Outcome of one membership-inference experiment.

    Attributes:
        loss_roc: ROC of the loss-threshold attack on the target model.
        lira_roc: ROC of LiRA (online) on the target model.
        lira_offline_roc: ROC of LiRA offline (OUT shadows only) on the target model.
        epsilon: DP-SGD epsilon of the target model (None without DP).
        delta: the delta of ``epsilon``.
        train_accuracy: target model's accuracy on its members.
        test_accuracy: target model's accuracy on the non-members.
        num_shadows: shadow models used by LiRA.
        lira_variance: how LiRA estimated the shadows' variances.
    """

    loss_roc: RocCurve
    lira_roc: RocCurve
    lira_offline_roc: RocCurve
    epsilon: float | None
    delta: float | None
    train_accuracy: float
    test_accuracy: float
    num_shadows: int
    lira_variance: LiraVariance


@torch.no_grad()
def _accuracy(model: nn.Module, data: ImageData, mask: Mask) -> float:
    idx = torch.as_tensor(np.flatnonzero(mask))
    pred = model(data.images[idx]).argmax(dim=1)
    return float((pred == data.labels[idx]).double().mean())


def run_membership_experiment(
    population: ImageData,
    config: TrainingConfig,
    *,
    num_shadows: int = 16,
    dp: DpSgdConfig | None = None,
    seed: int = 0,
    variance: LiraVariance | None = None,
) -> MembershipResult:
    """Train a target model on a random half of ``population`` and attack it.

    The other half are the non-members. Shadow models are trained the same way (same
    config, same DP) on fresh random halves, as the LiRA attacker is assumed to know the
    training procedure and to have data from the same distribution.

    Args:
        population: the examples whose membership is guessed.
        config: training configuration shared by target and shadows.
        num_shadows: number of shadow models (at least 2).
        dp: DP-SGD parameters, or None for non-private training.
        seed: seeds the splits and the training runs (simulation randomness).
        variance: LiRA's variance estimate; None picks :attr:`LiraVariance.PER_EXAMPLE`
            from :data:`PER_EXAMPLE_VARIANCE_SHADOWS` shadows on, pooled below.
    """
    if variance is None:
        per_example = num_shadows >= PER_EXAMPLE_VARIANCE_SHADOWS
        variance = LiraVariance.PER_EXAMPLE if per_example else LiraVariance.POOLED
    if num_shadows < 2:
        raise InvalidParameterError("LiRA needs at least two shadow models")
    n = len(population)
    if n < 4:
        raise InvalidParameterError("population too small")
    rng = np.random.default_rng(seed)

    def half() -> Mask:
        mask = np.zeros(n, dtype=bool)
        mask[rng.permutation(n)[: n // 2]] = True
        return mask

    members = half()
    target = train_model(population, members, config, dp=dp, seed=seed * 1000 + 1)
    shadow_in = np.stack([half() for _ in range(num_shadows)])
    shadow_phi = np.stack(
        [
            logit_confidence(
                train_model(
                    population, shadow_in[k], config, dp=dp, seed=seed * 1000 + 2 + k
                ).model,
                population,
            )
            for k in range(num_shadows)
        ]
    )
    loss_roc = roc_curve(loss_threshold_scores(target.model, population), members)
    target_phi = logit_confidence(target.model, population)
    lira_roc = roc_curve(lira_scores(target_phi, shadow_phi, shadow_in, variance=variance), members)
    offline_roc = roc_curve(
        lira_offline_scores(target_phi, shadow_phi, shadow_in, variance=variance), members
    )
    return MembershipResult(
        loss_roc=loss_roc,
        lira_roc=lira_roc,
        lira_offline_roc=offline_roc,
        epsilon=target.epsilon,
        delta=dp.delta if dp is not None else None,
        train_accuracy=_accuracy(target.model, population, members),
        test_accuracy=_accuracy(target.model, population, ~members),
        num_shadows=num_shadows,
        lira_variance=LiraVariance(variance),
    )
