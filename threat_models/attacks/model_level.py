"""Model-level attacks: a malicious server that chooses the model, the cohort or the clients.

Secure aggregation guarantees that the server learns only the sum of the survivors'
updates. Every attack here stays inside that guarantee -- the server sees nothing but
sums -- and still reads individual data, because the server also controls *what* is
summed:

* **Model inconsistency** (Pasquini, Francati, Ateniese, CCS 2022): the target gets the
  real model, every other client a model whose first-layer gradient is identically zero
  (all first-layer ReLUs dead). The first layer of the sum is the target's alone and
  :func:`~threat_models.attacks.gradient_inversion.closed_form_first_layer` reads its
  input. Stopped by binding the model's hash into what the clients sign (a client then
  refuses a round in which peers trained on another model), not by masking.
* **Sybils**: the server runs every client but the target (or fills the cohort with
  clients it controls), so the sum minus its own contributions is the target's update.
  No secure aggregation protocol stops this; the minimum aggregate size counts Sybils as
  clients. Only noise the target adds *itself* protects it: with distributed DP sized for
  ``n`` honest clients, the target's own share ``sigma / sqrt(n)`` is all that is left.
* **Trap / imprint weights** (Fowl, Geiping et al., "Robbing the Fed", ICLR 2022): every
  client gets the same malicious model, so consistency checks pass. Its first layer has
  identical rows ``a`` (the mean brightness ``a . x = mean(x)``) and biases at quantiles of
  that measurement; neuron ``i`` fires iff ``mean(x) > edge_i``. Differences of
  consecutive neurons' gradients isolate the examples whose brightness falls in one bin,
  and a bin with a single example in the *whole aggregate* yields it exactly.
* **Disaggregation across rounds** (Lam et al., ICML 2021): with known participation
  ``P`` (rounds x clients) and updates that stay the same across rounds (here the server
  freezes the model; Lam et al. show summary statistics suffice when they drift), the
  round aggregates are ``A = P U`` and least squares recovers every client's ``U``. Each
  round's aggregate may be above the minimum size; only DP noise, whose privacy loss
  composes over the rounds, limits it.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from secagg.errors import InvalidParameterError, raise_missing_extra
from threat_models.attacks.aggregation import Aggregator, plain_secure_sum, ring_sum

try:
    import torch
    from torch import nn
except ImportError as exc:  # the core install has no torch
    raise_missing_extra(exc, "eval", "threat_models.attacks.model_level")

from threat_models.attacks.gradient_inversion import (
    Prior,
    closed_form_per_neuron,
    first_layer_reconstruction,
    first_linear,
    flatten,
    model_gradient,
    unflatten_like,
)

__all__ = [
    "Aggregator",
    "plain_secure_sum",
    "client_updates",
    "ModelLevelResult",
    "dead_first_layer_model",
    "model_inconsistency_attack",
    "sybil_attack",
    "imprint_model",
    "imprint_reconstruct",
    "participation_matrix",
    "disaggregate",
    "ring_sum",
]

F64 = npt.NDArray[np.float64]

ClientBatch = tuple[torch.Tensor, torch.Tensor]


def client_updates(
    models: Mapping[int, nn.Module], data: Mapping[int, ClientBatch]
) -> dict[int, F64]:
    """Each client's flat update: the gradient of its mean loss on the model *it* received."""
    if set(models) != set(data):
        raise InvalidParameterError("models and data must name the same clients")
    return {cid: flatten(model_gradient(models[cid], *data[cid])).numpy() for cid in sorted(data)}


def dead_first_layer_model(model: nn.Module, *, bias: float = -1e4) -> nn.Module:
    """A copy of ``model`` whose first-layer ReLUs never fire on inputs in ``[0, 1]``.

    Sets the first layer's weights to zero and its biases to ``bias`` < 0, so the first
    layer's pre-activations are ``bias`` for every input and their gradient is zero. The
    model must have a ReLU right after its first ``nn.Linear``.
    """
    if bias >= 0:
        raise InvalidParameterError("bias must be negative")
    dead = copy.deepcopy(model)
    modules = list(dead.modules())
    linear_pos = next((i for i, m in enumerate(modules) if isinstance(m, nn.Linear)), None)
    if (
        linear_pos is None
        or linear_pos + 1 >= len(modules)
        or not isinstance(modules[linear_pos + 1], nn.ReLU)
    ):
        raise InvalidParameterError("model inconsistency needs a ReLU after the first nn.Linear")
    first = modules[linear_pos]
    if not isinstance(first, nn.Linear) or first.bias is None:
        raise InvalidParameterError("the first nn.Linear needs a bias")
    with torch.no_grad():
        first.weight.zero_()
        first.bias.fill_(bias)
    return dead


@dataclass(frozen=True)
class ModelLevelResult:
    """What the server recovered.

    Attributes:
        reconstruction: images, ``(K, C, H, W)``.
        recovered_update: the update the server isolated (flat), when the attack isolates one.
    """

    reconstruction: torch.Tensor
    recovered_update: F64 | None


def model_inconsistency_attack(
    model: nn.Module,
    target: int,
    data: Mapping[int, ClientBatch],
    aggregator: Aggregator,
    *,
    image_shape: Sequence[int],
    noise_std: float = 0.0,
    prior: Prior | None = None,
) -> ModelLevelResult:
    """Send the real model to ``target`` and a dead-first-layer model to everyone else.

    Args:
        model: the honest global model (ReLU after its first dense layer).
        target: the victim's client id.
        data: client id -> its local batch (used only to run the clients' honest code).
        aggregator: the secure sum over the cohort (errors it raises, e.g. a hardened
            round's refusal, propagate).
        image_shape: ``(C, H, W)`` of one input.
        noise_std: std of the noise on each coordinate of the aggregate (distributed DP;
            public), 0 for none.
        prior: ``(mean, variance)`` images the reconstruction shrinks towards under noise.

    Returns:
        The closed-form reconstruction from the first layer of the aggregate.
    """
    if target not in data:
        raise InvalidParameterError("target must be one of the clients")
    dead = dead_first_layer_model(model)
    models = {cid: (model if cid == target else dead) for cid in data}
    aggregate = aggregator(client_updates(models, data))
    reconstruction = first_layer_reconstruction(
        model, aggregate, image_shape, noise_std=noise_std, prior=prior
    )
    return ModelLevelResult(reconstruction, None)


def sybil_attack(
    target_update: F64,
    sybil_updates: Mapping[int, F64],
    aggregator: Aggregator,
    *,
    target: int = 0,
) -> F64:
    """Recover the target's update from a cohort whose other members the server controls.

    The Sybils' updates (known to the server; typically zeros) are subtracted from the
    secure sum. With distributed DP the result is the target's update plus its *own*
    noise share only, since the Sybils add none.

    Args:
        target_update: what the honest target uploads (already noised if it adds noise).
        sybil_updates: the server-controlled clients' uploads.
        aggregator: the secure sum.
        target: the target's id (must not collide with a Sybil's).
    """
    if target in sybil_updates:
        raise InvalidParameterError("the target cannot also be a Sybil")
    cohort = dict(sybil_updates)
    cohort[target] = np.asarray(target_update, dtype=np.float64)
    known = (
        plain_secure_sum(dict(sybil_updates)) if sybil_updates else np.zeros_like(cohort[target])
    )
    return np.asarray(aggregator(cohort) - known, dtype=np.float64)


def imprint_model(
    template: nn.Module,
    public_images: torch.Tensor,
    *,
    seed: int = 0,
) -> nn.Module:
    """Turn an MLP ``Flatten -> Linear(D, k) -> ReLU -> Linear(k, C)`` into an imprint trap.

    First layer: every row is ``1/D`` (so ``w . x`` is the mean brightness) and bias
    ``-edge_i`` with ``edge_0 < ... < edge_{k-1}`` the quantiles ``i / k`` of the brightness
    over ``public_images`` (data from the same distribution, which a server has). Second
    layer: every hidden neuron gets the same outgoing weights, so an example's gradient
    ``dL/dz_i`` is the same for all neurons it activates.

    The architecture (shapes) is unchanged: a client cannot tell the trap by its shape.
    """
    trap = copy.deepcopy(template)
    linears = [m for m in trap.modules() if isinstance(m, nn.Linear)]
    relus = [m for m in trap.modules() if isinstance(m, nn.ReLU)]
    if len(linears) != 2 or len(relus) != 1:
        raise InvalidParameterError("imprint_model expects Flatten -> Linear -> ReLU -> Linear")
    first, second = linears
    if first.bias is None or second.bias is None:
        raise InvalidParameterError("both layers need biases")
    k, d = first.weight.shape
    brightness = public_images.reshape(public_images.shape[0], -1).to(torch.float64).mean(dim=1)
    if brightness.numel() < 2:
        raise InvalidParameterError("need public images to place the bins")
    edges = torch.quantile(brightness, torch.arange(k, dtype=torch.float64) / k)
    gen = torch.Generator().manual_seed(seed)
    column = torch.randn(second.weight.shape[0], 1, generator=gen) / (k**0.5)
    with torch.no_grad():
        first.weight.fill_(1.0 / d)
        first.bias.copy_(-edges.to(first.bias.dtype))
        second.weight.copy_(column.expand(-1, k))
        second.bias.zero_()
    return trap


def imprint_reconstruct(
    trap: nn.Module,
    aggregate: torch.Tensor | Sequence[torch.Tensor],
    image_shape: Sequence[int],
    *,
    max_candidates: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Read individual examples from the (aggregated) gradient of an imprint trap.

    Neurons are ordered by increasing edge, so neuron ``i`` minus neuron ``i + 1`` keeps
    exactly the examples with brightness in ``(edge_i, edge_{i+1}]``; the ratio of those
    differences is the example itself when the bin holds one. The last neuron is its own
    bin. Candidates are deduplicated and filtered as in
    :func:`~threat_models.attacks.gradient_inversion.closed_form_per_neuron`.

    Returns:
        ``(candidates, support)``.
    """
    params = list(trap.parameters())
    grads = (
        unflatten_like(aggregate.reshape(-1), params)
        if isinstance(aggregate, torch.Tensor)
        else list(aggregate)
    )
    weight, bias = first_linear(trap, grads)
    first = next(m for m in trap.modules() if isinstance(m, nn.Linear))
    if first.bias is None:
        raise InvalidParameterError("the trap's first layer needs a bias")
    order = torch.argsort(-first.bias.detach())  # increasing edges
    w = weight.detach().to(torch.float64)[order]
    b = bias.detach().to(torch.float64)[order]
    dw = torch.cat([w[:-1] - w[1:], w[-1:]])
    db = torch.cat([b[:-1] - b[1:], b[-1:]])
    return closed_form_per_neuron(
        dw, db, image_shape, max_candidates=max_candidates, duplicate_psnr_db=90.0
    )


def participation_matrix(
    rounds: int, clients: int, per_round: int, *, rng: np.random.Generator, max_tries: int = 100
) -> npt.NDArray[np.float64]:
    """A ``rounds x clients`` 0/1 matrix with ``per_round`` ones per row and full column rank.

    Models a server that samples cohorts (or merely observes who took part). Full column
    rank is what makes every client's update identifiable.

    Raises:
        InvalidParameterError: impossible sizes, or no full-rank draw in ``max_tries``.
    """
    if not 1 <= per_round <= clients or rounds < clients:
        raise InvalidParameterError("need 1 <= per_round <= clients <= rounds")
    for _ in range(max_tries):
        p = np.zeros((rounds, clients))
        for r in range(rounds):
            p[r, rng.choice(clients, size=per_round, replace=False)] = 1.0
        if np.linalg.matrix_rank(p) == clients:
            return p
    raise InvalidParameterError("no full-rank participation matrix found; add rounds")


def disaggregate(aggregates: npt.ArrayLike, participation: npt.ArrayLike) -> F64:
    """Least-squares estimate of the per-client updates ``U`` from ``A = P U``.

    Args:
        aggregates: ``(rounds, d)`` round sums.
        participation: ``(rounds, clients)`` 0/1 matrix.

    Returns:
        ``(clients, d)``; exact when ``P`` has full column rank and the sums are exact.
        With independent noise of variance ``s^2`` per round and coordinate, client ``j``'s
        estimate has noise variance ``s^2 [(P^T P)^-1]_jj`` -- it shrinks as rounds accrue.
    """
    a = np.asarray(aggregates, dtype=np.float64)
    p = np.asarray(participation, dtype=np.float64)
    if a.ndim != 2 or p.ndim != 2 or a.shape[0] != p.shape[0]:
        raise InvalidParameterError(
            "aggregates must be (rounds, d) and participation (rounds, clients)"
        )
    solution, *_ = np.linalg.lstsq(p, a, rcond=None)
    return np.asarray(solution, dtype=np.float64)
