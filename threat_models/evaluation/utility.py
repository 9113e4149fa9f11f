"""Utility of a defence: the test accuracy of the model federated training yields under it.

A privacy-utility curve needs, next to each attack's success, what the defence costs the
model. :func:`defence_accuracy` trains the digits MLP the gradient cells attack
(``make_mlp(64, 32, 10)``, ReLU, initialised with the run's seed) by DP federated
averaging and returns its accuracy on a held-out split; :func:`with_accuracy` gives every
row the accuracy of its defence (:data:`ACCURACY_RULE`).

DP federated averaging, per round (McMahan et al. 2018, user-level):

1. every one of the ``cohort`` clients starts from the global model and takes
   ``local_steps`` full-batch gradient steps of rate ``lr`` on its own shard;
2. its update ``u_i`` (local minus global parameters) is clipped to L2 norm ``C``;
3. the server receives ``sum_i clip(u_i) + N(0, (z C)^2 I)`` -- the noise of one release
   at noise multiplier ``z``, the same total noise whether it is added centrally or as
   distributed noise shares sized for the cohort -- divides it by ``cohort`` and adds it
   to the global model.

The schedule (:class:`UtilitySchedule`, :func:`utility_schedule`): 30 rounds in quick mode
and 60 in full, 5 local steps at rate 0.5, ``C = 0.5``, a quarter of the 1,797 digits held
out for testing and the rest split evenly among the clients. Without noise it reaches
about 0.92-0.96 test accuracy; at ``z = 1`` with 8 clients about 0.9 and at ``z = 3``
about 0.5 (a round adds noise of norm about ``z C sqrt(P) / cohort`` to an average update
of norm at most ``C``). One run takes a fraction of a second on one core, with the
clients' local steps batched into one tensor program.

The split, the shards and the noise are simulation randomness drawn from
``ctx.rng(UTILITY_SALT)``: every defence of a run trains on the same split and meets the
same standard normal draws scaled by its ``z``, so that accuracy differences between
defences are the noise's, not the sampling's. Results are kept in ``ctx.cache`` under
:func:`accuracy_key`, so a defence shared by several rows or cells is trained once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from secagg.errors import InvalidParameterError, raise_missing_extra
from secagg.validation import is_int
from threat_models.data import Activation, DatasetName, ImageData, make_mlp
from threat_models.evaluation.context import EvaluationContext
from threat_models.evaluation.rows import Family, PrivacyLevel, Protection, Row

try:
    import torch
    import torch.nn.functional as F
    from torch import nn
except ImportError as exc:  # the core install has no torch
    raise_missing_extra(exc, "eval", "threat_models.evaluation.utility")

__all__ = [
    "ACCURACY_RULE",
    "CACHE_TAG",
    "UTILITY_SALT",
    "UtilitySchedule",
    "utility_schedule",
    "accuracy_key",
    "federated_accuracy",
    "defence_accuracy",
    "with_accuracy",
]

#: Prefix of every ``ctx.cache`` key of this module.
CACHE_TAG = "privacy_utility.defence_accuracy"
#: Salt of the simulation stream (split, shards, noise) of :func:`defence_accuracy`.
UTILITY_SALT = 1500
#: Hidden width of the MLP, the one the gradient cells' DP noise sweep attacks.
HIDDEN = 32

#: Families whose attacks target the digits MLP trained by federated averaging.
_TRAINED_FAMILIES = frozenset({Family.GRADIENT_INVERSION, Family.MODEL_LEVEL})
#: Defences without DP noise: the model is the noiseless one.
_NOISELESS = frozenset({Protection.NONE, Protection.UNHARDENED, Protection.SECURE_AGGREGATION})

ACCURACY_RULE = (
    "accuracy is the test accuracy of the digits MLP trained by DP federated averaging "
    "under the row's defence, on the gradient-inversion and malicious-server-model rows "
    "(the attacks on that training): at the row's noise multiplier z per release for a "
    "user-level DP row (every round of the training at that z, so the training's own epsilon "
    "over all its rounds is larger than the row's, which counts the releases the attack "
    "observes), without noise for a row without DP; every other row (protocol-level, "
    "membership, empirical audit, sample-level DP-SGD) keeps the accuracy its cell set, "
    "none where no model is trained"
)
"""How :func:`with_accuracy` fills ``Row.accuracy`` (the report states it)."""


@dataclass(frozen=True)
class UtilitySchedule:
    """The training schedule of :func:`federated_accuracy`.

    Attributes:
        rounds: federated rounds.
        local_steps: full-batch gradient steps per client and round.
        lr: the clients' learning rate.
        clip_norm: ``C``, the L2 bound of one client's update per round.
        test_fraction: share of the data set held out for the test accuracy.
    """

    rounds: int
    local_steps: int = 5
    lr: float = 0.5
    clip_norm: float = 0.5
    test_fraction: float = 0.25

    def __post_init__(self) -> None:
        if not is_int(self.rounds) or self.rounds < 1:
            raise InvalidParameterError("rounds must be a positive int")
        if not is_int(self.local_steps) or self.local_steps < 1:
            raise InvalidParameterError("local_steps must be a positive int")
        if not (self.lr > 0 and self.clip_norm > 0 and 0 < self.test_fraction < 1):
            raise InvalidParameterError(
                "lr and clip_norm must be positive, test_fraction in (0, 1)"
            )


def utility_schedule(quick: bool) -> UtilitySchedule:
    """The schedule of a quick (30 rounds) or full (60 rounds) run."""
    return UtilitySchedule(rounds=30 if quick else 60)


def accuracy_key(
    ctx: EvaluationContext, noise_multiplier: float | None, cohort: int
) -> tuple[object, ...]:
    """The ``ctx.cache`` key of :func:`defence_accuracy` (no noise: ``z = 0``)."""
    z = 0.0 if noise_multiplier is None else float(noise_multiplier)
    return (CACHE_TAG, z, int(cohort), ctx.config.quick, ctx.config.seed)


def _check(noise_multiplier: float | None, cohort: int) -> float:
    if not is_int(cohort) or cohort < 1:
        raise InvalidParameterError(f"cohort must be a positive int, got {cohort!r}")
    z = 0.0 if noise_multiplier is None else float(noise_multiplier)
    if not (math.isfinite(z) and z >= 0.0):
        raise InvalidParameterError(f"noise_multiplier must be finite and >= 0, got {z!r}")
    return z


def _batched_logits(
    model: nn.Sequential, params: Sequence[torch.Tensor], x: torch.Tensor
) -> torch.Tensor:
    """``model`` applied per client: ``params`` stacked ``(K, ...)``, ``x`` ``(K, B, D)``."""
    h = x
    weights = iter(params)
    for layer in model:
        if isinstance(layer, nn.Flatten):
            continue
        if isinstance(layer, nn.Linear):
            w, b = next(weights), next(weights)
            h = torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))
        else:  # an element-wise activation
            h = layer(h)
    return h


def federated_accuracy(
    data: ImageData,
    schedule: UtilitySchedule,
    *,
    noise_multiplier: float | None,
    cohort: int,
    rng: np.random.Generator,
    seed: int,
) -> float:
    """Test accuracy of the MLP trained by DP federated averaging (module docstring).

    Args:
        data: the images (the evaluation uses the digits).
        schedule: rounds, local steps, learning rate, clipping norm, test split.
        noise_multiplier: ``z``; the sum of clipped updates gets noise of std ``z C`` per
            round (``None`` or 0: no noise, the updates are still clipped).
        cohort: clients per round (all of them take part in every round).
        rng: simulation randomness: the split, the shards, the noise.
        seed: initialises the model (``make_mlp``'s seed).

    Runs on one torch thread (restored afterwards): on tensors this small, more threads
    only add wake-ups, which cost seconds per run on a loaded machine.

    Raises:
        InvalidParameterError: a cohort too large for the data, a negative multiplier.
    """
    z = _check(noise_multiplier, cohort)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tensors this small only lose to thread wake-ups
    try:
        return _train(data, schedule, z, cohort, rng, seed)
    finally:
        torch.set_num_threads(threads)


def _train(
    data: ImageData,
    schedule: UtilitySchedule,
    z: float,
    cohort: int,
    rng: np.random.Generator,
    seed: int,
) -> float:
    count = len(data)
    test_count = int(round(schedule.test_fraction * count))
    per_client = (count - test_count) // cohort
    if test_count < 1 or per_client < 1:
        raise InvalidParameterError(f"{count} examples cannot feed {cohort} clients and a test set")
    order = rng.permutation(count)
    test = torch.from_numpy(order[:test_count].astype(np.int64))
    shards = torch.from_numpy(
        order[test_count : test_count + per_client * cohort].reshape(cohort, per_client)
    )
    noise_gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
    pixels = data.images.reshape(count, -1)
    xs, ys = pixels[shards], data.labels[shards]
    model = make_mlp(
        data.input_size, HIDDEN, data.num_classes, activation=Activation.RELU, seed=seed
    )
    global_params = [p.detach().clone() for p in model.parameters()]
    sizes = [p.numel() for p in global_params]
    clip = schedule.clip_norm
    for _ in range(schedule.rounds):
        start = [p.unsqueeze(0).expand(cohort, *p.shape) for p in global_params]
        local = [p.clone().requires_grad_(True) for p in start]
        for _ in range(schedule.local_steps):
            logits = _batched_logits(model, local, xs)
            loss = F.cross_entropy(logits.reshape(-1, data.num_classes), ys.reshape(-1))
            # the mean over all clients' examples: each client's gradient scaled by 1/K
            grads = torch.autograd.grad(loss * cohort, local)
            local = [
                (p - schedule.lr * g).detach().requires_grad_(True)
                for p, g in zip(local, grads, strict=True)
            ]
        updates = torch.cat(
            [(p.detach() - s).reshape(cohort, -1) for p, s in zip(local, start, strict=True)],
            dim=1,
        )
        norms = updates.norm(dim=1, keepdim=True).clamp_min(1e-12)
        clipped = updates * torch.clamp(clip / norms, max=1.0)
        noise = torch.randn(clipped.shape[1], generator=noise_gen, dtype=clipped.dtype)
        mean = (clipped.sum(dim=0) + z * clip * noise) / cohort
        global_params = [
            p + chunk.reshape(p.shape)
            for p, chunk in zip(global_params, torch.split(mean, sizes), strict=True)
        ]
    with torch.no_grad():
        logits = _batched_logits(model, [p.unsqueeze(0) for p in global_params], pixels[test][None])
    return float((logits[0].argmax(dim=1) == data.labels[test]).float().mean())


def defence_accuracy(ctx: EvaluationContext, noise_multiplier: float | None, cohort: int) -> float:
    """Test accuracy of the digits MLP trained under a defence, once per run (cached).

    Args:
        ctx: the run (its mode picks :func:`utility_schedule`, its seed the model's
            initialisation, ``ctx.rng(UTILITY_SALT)`` the simulation randomness).
        noise_multiplier: ``z`` of the defence, per release at user level (``None``: no
            DP noise).
        cohort: clients per round (the cells use ``ctx.config.cohort``).
    """
    _check(noise_multiplier, cohort)
    key = accuracy_key(ctx, noise_multiplier, cohort)
    cached = ctx.cache.get(key)
    if isinstance(cached, float):
        return cached
    accuracy = federated_accuracy(
        ctx.dataset(DatasetName.DIGITS),
        utility_schedule(ctx.config.quick),
        noise_multiplier=noise_multiplier,
        cohort=cohort,
        rng=ctx.rng(UTILITY_SALT),
        seed=ctx.config.seed,
    )
    ctx.cache[key] = accuracy
    return accuracy


def _row_accuracy(row: Row, ctx: EvaluationContext, cohort: int) -> float | None:
    if row.accuracy is not None or row.family not in _TRAINED_FAMILIES:
        return row.accuracy
    if row.noise_multiplier is not None:
        if row.epsilon_level is PrivacyLevel.USER:
            return defence_accuracy(ctx, row.noise_multiplier, cohort)
        return None  # sample-level (DP-SGD): not this training
    if row.protection in _NOISELESS and row.epsilon is None:
        return defence_accuracy(ctx, None, cohort)
    return None  # a DP defence whose noise the row does not state


def with_accuracy(
    rows: Sequence[Row], ctx: EvaluationContext, *, cohort: int | None = None
) -> tuple[Row, ...]:
    """``rows`` with ``accuracy`` filled by :data:`ACCURACY_RULE`.

    Args:
        rows: the run's rows (a row that has an accuracy keeps it).
        ctx: the run (its cache holds each defence's accuracy).
        cohort: clients per round of the training (default ``ctx.config.cohort``).
    """
    size = ctx.config.cohort if cohort is None else cohort
    out = []
    for row in rows:
        accuracy = _row_accuracy(row, ctx, size)
        out.append(row if accuracy == row.accuracy else replace(row, accuracy=accuracy))
    return tuple(out)
