"""Membership inference on the trained model: loss threshold and LiRA.

Secure aggregation changes *who sees the updates*, not the model the federation trains:
the global model released after secure aggregation is the same function of the same data
as without it, so membership inference on the final model is untouched by it. What
reduces it is sample-level DP during training (DP-SGD, here with Opacus).

Attacks (higher score = "member"):

* **Loss threshold** (Yeom et al. 2018; Shokri et al. 2017 in spirit): score ``-loss(x, y)``.
* **LiRA** (Carlini et al. 2022, "Membership Inference Attacks From First Principles"):
  train shadow models on random halves of the population so that each example is IN
  about half of them; for each example fit Gaussians to the logit-scaled confidence
  ``phi = log(p_y / (1 - p_y))`` of the IN and OUT shadow models and score the target
  model's ``phi`` by the log-likelihood ratio ``log N(phi; mu_in, s_in) - log N(phi;
  mu_out, s_out)``. With few shadows the variances are pooled over all examples (the
  paper's "fixed variance" variant).

Reported as AUC and TPR at 1% FPR, which is what matters for privacy: an attack that
confidently identifies a few members is a breach even with an AUC near 0.5.
"""

from __future__ import annotations

import enum
import math
import warnings
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

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
    "Accountant",
    "TrainingConfig",
    "DpSgdConfig",
    "TrainedModel",
    "MembershipResult",
    "train_model",
    "per_example_loss",
    "logit_confidence",
    "loss_threshold_scores",
    "lira_scores",
    "run_membership_experiment",
]

F64 = npt.NDArray[np.float64]
Mask = npt.NDArray[np.bool_]


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
def per_example_loss(model: nn.Module, data: ImageData) -> F64:
    """Cross-entropy of each example."""
    model.eval()
    return F.cross_entropy(model(data.images), data.labels, reduction="none").double().numpy()


@torch.no_grad()
def logit_confidence(model: nn.Module, data: ImageData) -> F64:
    """``phi = log p_y - log(1 - p_y)`` per example, computed stably from the logits."""
    model.eval()
    logits = model(data.images).double()
    log_p = torch.log_softmax(logits, dim=1)
    log_py = log_p.gather(1, data.labels[:, None]).squeeze(1)
    others = log_p.clone()
    others.scatter_(1, data.labels[:, None], -math.inf)
    log_not = torch.logsumexp(others, dim=1)
    return (log_py - log_not).numpy()


def loss_threshold_scores(model: nn.Module, data: ImageData) -> F64:
    """Loss-threshold attack scores: ``-loss`` (members have lower loss)."""
    return -per_example_loss(model, data)


def lira_scores(target_phi: F64, shadow_phi: F64, shadow_in: Mask) -> F64:
    """LiRA (online, pooled variance) log-likelihood-ratio scores.

    Args:
        target_phi: ``(N,)`` logit confidences of the target model.
        shadow_phi: ``(K, N)`` logit confidences of K shadow models.
        shadow_in: ``(K, N)`` True where the example was in that shadow's training set.

    Returns:
        ``(N,)`` scores; an example never IN (or never OUT) of any shadow falls back to the
        population mean of the missing side.
    """
    phi = np.asarray(shadow_phi, dtype=np.float64)
    ins = np.asarray(shadow_in, dtype=bool)
    if phi.ndim != 2 or phi.shape != ins.shape or phi.shape[1] != np.asarray(target_phi).shape[0]:
        raise InvalidParameterError("shadow_phi, shadow_in must be (K, N) and target_phi (N,)")
    n_in = ins.sum(axis=0)
    n_out = (~ins).sum(axis=0)
    mu_in = np.where(n_in > 0, (phi * ins).sum(axis=0) / np.maximum(n_in, 1), np.nan)
    mu_out = np.where(n_out > 0, (phi * ~ins).sum(axis=0) / np.maximum(n_out, 1), np.nan)
    mu_in = np.where(np.isnan(mu_in), np.nanmean(mu_in), mu_in)
    mu_out = np.where(np.isnan(mu_out), np.nanmean(mu_out), mu_out)
    var_in = float(np.sum(((phi - mu_in) ** 2) * ins) / max(int(ins.sum()) - 1, 1)) + 1e-6
    var_out = float(np.sum(((phi - mu_out) ** 2) * ~ins) / max(int((~ins).sum()) - 1, 1)) + 1e-6
    t = np.asarray(target_phi, dtype=np.float64)
    log_in = -0.5 * (t - mu_in) ** 2 / var_in - 0.5 * math.log(var_in)
    log_out = -0.5 * (t - mu_out) ** 2 / var_out - 0.5 * math.log(var_out)
    return np.asarray(log_in - log_out, dtype=np.float64)


@dataclass(frozen=True)
class MembershipResult:
    """Outcome of one membership-inference experiment.

    Attributes:
        loss_roc: ROC of the loss-threshold attack on the target model.
        lira_roc: ROC of LiRA on the target model.
        epsilon: DP-SGD epsilon of the target model (None without DP).
        delta: the delta of ``epsilon``.
        train_accuracy: target model's accuracy on its members.
        test_accuracy: target model's accuracy on the non-members.
        num_shadows: shadow models used by LiRA.
    """

    loss_roc: RocCurve
    lira_roc: RocCurve
    epsilon: float | None
    delta: float | None
    train_accuracy: float
    test_accuracy: float
    num_shadows: int


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
    """
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
    lira_roc = roc_curve(
        lira_scores(logit_confidence(target.model, population), shadow_phi, shadow_in), members
    )
    return MembershipResult(
        loss_roc=loss_roc,
        lira_roc=lira_roc,
        epsilon=target.epsilon,
        delta=dp.delta if dp is not None else None,
        train_accuracy=_accuracy(target.model, population, members),
        test_accuracy=_accuracy(target.model, population, ~members),
        num_shadows=num_shadows,
    )
