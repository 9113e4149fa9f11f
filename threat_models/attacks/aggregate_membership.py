"""User-level membership inference against the aggregates of federated training.

The server of a federated run (federated averaging: every round each client of a fixed
cohort starts from the global model ``w_t``, takes a few full-batch gradient steps on its
own data and sends its local change ``g_j(w_t)``, clipped to L2 norm ``C``) observes every
round's aggregate ``A_t = sum_j clip(g_j(w_t)) + N(0, (z C)^2 I)``: what secure aggregation
reveals, with user-level distributed DP noise of multiplier ``z`` (``z = 0``: secure
aggregation alone). It adds the released mean update to the global model,
``w_{t+1} = w_t + server_lr A_t / n`` (plain server SGD; post-processing, so the DP
guarantee is unchanged). Unlike server-side Adam, which normalises every coordinate and so
turns the noise into full-size random steps, the noise enters the model at its own scale:
the final accuracy shows what DP costs, not the optimiser's sensitivity to noise (with
the defaults, 8 clients and 20 rounds: about 0.88 without noise, 0.76 at ``z = 1``).

The question is user-level: did a target client, holding its own examples, take part? The
attacker knows the target's examples and every round's global model ``w_t`` (the strong
known-data attacker of DP auditing) and data from the same population (as LiRA assumes).
It scores the alignment of the target's own clipped update ``u_t = clip(g(w_t))`` (its
local change, which it computes from its examples and ``w_t`` as the client does) with
each round's aggregate by a likelihood-ratio test, summed over the rounds::

    s = sum_t <w_t, A_t - n mu_t> - <w_t, u_t> / 2,   w_t = (n S_t + (z C)^2 I)^{-1} u_t

where ``mu_t`` and ``S_t`` (shrunk towards a multiple of the identity) are the mean and
covariance of the updates of reference clients the attacker simulates on its own
population data at the same ``w_t`` (:func:`lrt_directions`): the Gaussian test of "the
aggregate is the cohort's" against "the cohort's plus ``u_t``". Weighting by the inverse
covariance discounts the directions every client's update shares, which say nothing
about the target and, summed over the cohort, would drown its contribution (a plain
alignment ``<u_t / |u_t|, A_t>`` weighs them as much as the rest).

Simulation (exact in distribution, and cheap): the other clients' training is shared by
every trial, so the global models ``w_t`` are those of the cohort without the target (a
member's own effect on the later models, at most ``server_lr C / n`` per round, is left
out; the attacker does not use it); each trial draws the target's examples, scores the member
world (``A_t`` with ``u_t`` added) and the non-member world (without) with independent
noise, on the same examples (paired draws). The noise enters the score only through
``<w_t, N_t>``, which for isotropic Gaussian noise is exactly ``N(0, (z C |w_t|)^2)``; it is
drawn as that scalar rather than as a ``P``-dimensional vector.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from secagg.errors import InvalidParameterError, raise_missing_extra

try:
    import torch
    from torch import nn
    from torch.func import functional_call, grad, vmap
    from torch.nn import functional as F
except ImportError as exc:  # the core install has no torch
    raise_missing_extra(exc, "eval", "threat_models.attacks.aggregate_membership")

from threat_models.attacks.metrics import RocCurve, roc_curve
from threat_models.data import Activation, ImageData, make_mlp

__all__ = [
    "FederatedConfig",
    "AggregateMembershipResult",
    "clip_rows",
    "lrt_directions",
    "run_aggregate_membership",
]

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class FederatedConfig:
    """The federated run and the attacker's reference clients.

    Attributes:
        clients: the cohort without the target (every client takes part in every round).
        examples_per_client: examples of each client (the target's too).
        rounds: rounds whose aggregates the server observes (the DP releases).
        clip_norm: L2 clip ``C`` of each client's update.
        local_steps: full-batch gradient steps of each client per round.
        local_lr: the clients' learning rate.
        server_lr: the server's rate on the released mean update (1: federated averaging).
        hidden: hidden width of the MLP (sigmoid, as the gradient cells').
        reference_clients: clients the attacker simulates on its own population data.
        test_examples: held-out examples the final global model's accuracy is measured on.
    """

    clients: int = 8
    examples_per_client: int = 32
    rounds: int = 20
    clip_norm: float = 1.0
    local_steps: int = 3
    local_lr: float = 3.0
    server_lr: float = 1.0
    hidden: int = 32
    reference_clients: int = 128
    test_examples: int = 297

    def __post_init__(self) -> None:
        sizes = (
            self.clients,
            self.examples_per_client,
            self.rounds,
            self.local_steps,
            self.hidden,
            self.reference_clients,
            self.test_examples,
        )
        if min(sizes) < 1:
            raise InvalidParameterError("every size must be positive")
        if not min(self.clip_norm, self.local_lr, self.server_lr) > 0:
            raise InvalidParameterError("clip_norm and the learning rates must be positive")
        if self.reference_clients < 2:
            raise InvalidParameterError("the covariance needs at least two reference clients")


@dataclass(frozen=True)
class AggregateMembershipResult:
    """Scores of the paired trials and the federated model they were run against.

    Attributes:
        member_scores: ``(trials,)`` scores where the target took part.
        non_member_scores: ``(trials,)`` scores on the same examples where it did not.
        roc: the ROC of the scores (members positive).
        noise_multiplier: ``z`` of the noise on every aggregate (0: none).
        rounds: aggregates observed.
        test_accuracy: the final global model's accuracy on held-out examples.
        mean_signal: a member's mean shift of the score, ``mean sum_t <w_t, u_t>``.
    """

    member_scores: F64
    non_member_scores: F64
    roc: RocCurve
    noise_multiplier: float
    rounds: int
    test_accuracy: float
    mean_signal: float

    @property
    def trials(self) -> int:
        """Paired trials (members; the non-members are as many)."""
        return int(self.member_scores.size)


def clip_rows(updates: torch.Tensor, clip_norm: float) -> torch.Tensor:
    """Each row scaled to L2 norm at most ``clip_norm`` (rows below it are unchanged)."""
    norms = updates.norm(dim=1, keepdim=True)
    return updates * torch.clamp(clip_norm / torch.clamp(norms, min=1e-300), max=1.0)


def lrt_directions(
    targets: torch.Tensor, references: torch.Tensor, clients: int, noise_std: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The Gaussian likelihood-ratio test of one round, per target.

    Models the cohort's aggregate without the target as ``N(n mu, n S + sigma^2 I)``
    with ``mu``, ``S`` the mean and covariance of the reference clients' updates, ``S``
    shrunk towards ``tr(S) / P`` times the identity (Ledoit and Wolf's target: the
    references span fewer dimensions than the model has). A member shifts the mean by
    its update ``u``; the log-likelihood ratio is ``<w, A - n mu> - <w, u> / 2`` with
    ``w = (n S' + sigma^2 I)^{-1} u``, computed with the Woodbury identity (a ``K x K``
    solve).

    Args:
        targets: ``(D, P)`` clipped updates of the targets.
        references: ``(K, P)`` clipped updates of the attacker's reference clients.
        clients: ``n``, the cohort's size without the target.
        noise_std: ``sigma = z C`` of the noise on the aggregate.

    Returns:
        ``w`` as ``(D, P)`` and ``n mu`` as ``(P,)``.
    """
    k, dim = references.shape
    mean = references.mean(dim=0)
    centred = references - mean
    scale = clients / max(k - 1, 1)
    ridge = clients * float((centred**2).sum()) / max(k - 1, 1) / dim
    a = noise_std**2 + ridge
    # (a I + scale R^T R)^{-1} u = (u - R^T (a / scale I + R R^T)^{-1} R u) / a
    gram = centred @ centred.T + (a / scale) * torch.eye(k, dtype=centred.dtype)
    inner = torch.linalg.solve(gram, centred @ targets.T)
    return (targets - (centred.T @ inner).T) / a, clients * mean


def _client_updates(
    model: nn.Module,
    params: dict[str, torch.Tensor],
    xs: torch.Tensor,
    ys: torch.Tensor,
    config: FederatedConfig,
) -> torch.Tensor:
    """``(clients, P)`` float64 local changes of the clients (``xs``: ``(clients, examples,
    features)``): ``local_steps`` full-batch gradient steps of rate ``local_lr`` on each
    client's mean loss from the global ``params``, minus ``params``."""

    def loss(p: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(functional_call(model, p, (x,)), y)

    step = vmap(grad(loss), in_dims=(0, 0, 0))
    local = {name: p.expand(xs.shape[0], *p.shape) for name, p in params.items()}
    for _ in range(config.local_steps):
        grads = step(local, xs, ys)
        local = {name: local[name] - config.local_lr * grads[name] for name in local}
    return torch.cat(
        [(local[name] - p).reshape(xs.shape[0], -1) for name, p in params.items()], dim=1
    ).double()


def run_aggregate_membership(
    data: ImageData,
    config: FederatedConfig,
    *,
    noise_multiplier: float,
    trials: int,
    seed: int = 0,
) -> AggregateMembershipResult:
    """Train the cohort, observe its aggregates and score ``trials`` paired targets.

    ``data`` is split (seeded) into the held-out test examples, the cohort's examples, the
    attacker's population (reference clients draw from it) and the targets' population
    (each trial draws ``examples_per_client`` of them). The global models are trained once
    with noise of multiplier ``noise_multiplier`` on every aggregate; see the module
    docstring for the score and the simulation.

    Raises:
        InvalidParameterError: a negative multiplier, fewer than two trials, or too few
            examples for the split.
    """
    if not noise_multiplier >= 0 or not math.isfinite(noise_multiplier):
        raise InvalidParameterError("noise_multiplier must be finite and >= 0")
    if trials < 2:
        raise InvalidParameterError("need at least two trials")
    m = config.examples_per_client
    cohort = config.clients * m
    if len(data) < config.test_examples + cohort + 2 * m:
        raise InvalidParameterError("too few examples for the test set, cohort and targets")
    rng = np.random.default_rng([seed, 7])
    gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
    order = rng.permutation(len(data))
    test = order[: config.test_examples]
    own = order[config.test_examples : config.test_examples + cohort].reshape(config.clients, m)
    rest = order[config.test_examples + cohort :]
    attacker_pool, target_pool = rest[: rest.size // 2], rest[rest.size // 2 :]
    x = data.images.reshape(len(data), -1)
    y = data.labels
    draws = np.stack([rng.choice(target_pool, m, replace=False) for _ in range(trials)])
    refs = np.stack(
        [rng.choice(attacker_pool, m, replace=False) for _ in range(config.reference_clients)]
    )
    model = make_mlp(
        data.input_size, config.hidden, data.num_classes, activation=Activation.SIGMOID, seed=seed
    )
    params = {name: p.detach().clone() for name, p in model.named_parameters()}
    sizes = [p.numel() for p in params.values()]
    c, sigma = config.clip_norm, noise_multiplier * config.clip_norm
    member = np.zeros(trials)
    non_member = np.zeros(trials)
    signal = np.zeros(trials)
    for _ in range(config.rounds):
        with torch.no_grad():
            background = clip_rows(_client_updates(model, params, x[own], y[own], config), c)
            background = background.sum(dim=0)
            targets = clip_rows(_client_updates(model, params, x[draws], y[draws], config), c)
            references = clip_rows(_client_updates(model, params, x[refs], y[refs], config), c)
            w, expected = lrt_directions(targets, references, config.clients, sigma)
            own_part = (w * targets).sum(dim=1).numpy()
            shared = (w @ (background - expected)).numpy() - own_part / 2
            noise = torch.randn(2, trials, generator=gen, dtype=torch.float64).numpy()
            noise *= sigma * w.norm(dim=1).numpy()
            member += shared + own_part + noise[0]
            non_member += shared + noise[1]
            signal += own_part
            released = background + sigma * torch.randn(
                background.shape, generator=gen, dtype=torch.float64
            )
        # federated averaging: the released mean update, scaled by the server's rate
        step = (config.server_lr / config.clients) * released.float()
        params = {
            name: p + chunk.reshape(p.shape)
            for (name, p), chunk in zip(params.items(), torch.split(step, sizes), strict=True)
        }
    with torch.no_grad():
        logits = functional_call(model, params, (x[test],))
        accuracy = float((logits.argmax(dim=1) == y[test]).double().mean())
    labels = np.r_[np.ones(trials, dtype=bool), np.zeros(trials, dtype=bool)]
    return AggregateMembershipResult(
        member_scores=member,
        non_member_scores=non_member,
        roc=roc_curve(np.r_[member, non_member], labels),
        noise_multiplier=float(noise_multiplier),
        rounds=config.rounds,
        test_accuracy=accuracy,
        mean_signal=float(signal.mean()),
    )
