"""Opacus DP-SGD inside a federated client: one call per client per round.

The usual way to put Opacus in a federated client breaks in two ways. Calling
``PrivacyEngine.make_private`` on the same model every round raises "Trying to add hooks
twice to the same model" (or, once worked around, silently double-wraps it); and creating
a fresh ``PrivacyEngine`` each round resets its accountant, so the client's epsilon only
ever reflects the last round -- an under-count.

:func:`train_private_round` avoids both (REFERENCES.md, "Opacus in FL clients"):

* the plain model is never modified: a fresh deep copy is wrapped in a
  ``GradSampleModule`` for this round only and unwrapped (hooks removed) afterwards, so
  the server keeps and sends only plain models;
* the client's accountant state (:class:`OpacusClientState`, the accountant's history of
  ``(noise_multiplier, sample_rate, steps)``) comes in and goes out explicitly, so
  several rounds give exactly the epsilon of one accountant run over all their steps;
* the result is a plain ``state_dict`` (no ``_module.`` prefixes) plus the update
  ``trained - initial``, ready for clipping and aggregation.

Randomness: Poisson sampling of examples and the Gaussian noise come from the AES-CTR PRG
(:mod:`dp.samplers`), not from torch's Mersenne Twister (Opacus's default without
``secure_mode``, which needs the unmaintained ``torchcsprng``). The noise is a float
Gaussian, with the usual floating-point caveat (see :mod:`dp.samplers`).

Privacy: sample-level DP for the client's local dataset. Each optimizer step is a
Poisson-subsampled Gaussian mechanism with rate ``q = 1 / len(data_loader)`` (Opacus's
convention: expected batch size equals the loader's batch size) and noise multiplier
``z``; the round's event is ``SelfComposedDpEvent(PoissonSampledDpEvent(q,
GaussianDpEvent(z)), steps)``.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

import dp_accounting
import numpy as np

from dp.samplers import sample_gaussian, sample_uniform
from secagg.errors import BudgetExceededError, InvalidParameterError, raise_missing_extra
from secagg.validation import require_int, require_positive

try:
    import torch
    from opacus import GradSampleModule
    from opacus.accountants import create_accountant
    from opacus.accountants.accountant import IAccountant
    from opacus.data_loader import dtype_safe, shape_safe, wrap_collate_with_empty
    from opacus.optimizers import DPOptimizer
    from opacus.validators import ModuleValidator
    from torch.utils.data import DataLoader, IterableDataset, Sampler
except ImportError as exc:  # the core install has neither torch nor Opacus
    raise_missing_extra(exc, "torch", "dp.opacus_client")

__all__ = [
    "OpacusAccountantKind",
    "OpacusClientState",
    "OpacusRoundResult",
    "train_private_round",
    "sampled_gaussian_event",
]

_STATE_VERSION = 1


class OpacusAccountantKind(str, Enum):
    """Opacus accountants a client state can use.

    Opacus's ``gdp`` accountant is left out on purpose: it is an asymptotic
    approximation that can under-estimate epsilon (Opacus warns as much).
    """

    RDP = "rdp"
    PRV = "prv"


def sampled_gaussian_event(
    noise_multiplier: float, sample_rate: float, steps: int
) -> dp_accounting.DpEvent:
    """``steps`` Poisson-subsampled Gaussian steps as one dp-accounting event."""
    if steps == 0:
        return dp_accounting.NoOpDpEvent()
    return dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(
            sample_rate, dp_accounting.GaussianDpEvent(noise_multiplier)
        ),
        steps,
    )


@dataclass(frozen=True)
class OpacusClientState:
    """A client's persistent sample-level privacy state (JSON-serialisable).

    Attributes:
        accountant: which Opacus accountant interprets the history.
        history: the accountant's ``(noise_multiplier, sample_rate, steps)`` entries, in
            order (Opacus merges consecutive identical entries).
    """

    accountant: OpacusAccountantKind = OpacusAccountantKind.RDP
    history: tuple[tuple[float, float, int], ...] = ()

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "accountant", OpacusAccountantKind(self.accountant))
        except ValueError:
            raise InvalidParameterError(
                f"accountant must be one of {[k.value for k in OpacusAccountantKind]}, "
                f"got {self.accountant!r}"
            ) from None
        entries = []
        for entry in self.history:
            if len(entry) != 3:
                raise InvalidParameterError(
                    f"history entries are (noise, rate, steps), got {entry!r}"
                )
            z, q, steps = float(entry[0]), float(entry[1]), entry[2]
            steps = require_int("steps", steps, lo=0)
            if not (math.isfinite(z) and z >= 0 and 0 < q <= 1):
                raise InvalidParameterError(f"bad history entry {entry!r}")
            entries.append((z, q, int(steps)))
        object.__setattr__(self, "history", tuple(entries))

    @property
    def steps(self) -> int:
        """Total optimizer steps accounted so far."""
        return sum(entry[2] for entry in self.history)

    def make_accountant(self) -> IAccountant:
        """A fresh Opacus accountant holding this history."""
        accountant = create_accountant(self.accountant.value)
        accountant.load_state_dict(
            {"history": [tuple(e) for e in self.history], "mechanism": self.accountant.value}
        )
        return accountant

    def epsilon(self, delta: float) -> float:
        """Sample-level epsilon spent so far at ``delta`` (0 before any step)."""
        if not 0 < delta < 1:
            raise InvalidParameterError("delta must lie in (0, 1)")
        if not self.history:
            return 0.0
        return float(self.make_accountant().get_epsilon(delta=delta))

    def events(self) -> dp_accounting.DpEvent:
        """The whole history as one dp-accounting event."""
        return dp_accounting.ComposedDpEvent(
            [sampled_gaussian_event(z, q, s) for z, q, s in self.history]
        )

    def to_dict(self) -> dict[str, object]:
        """A versioned JSON-compatible dict."""
        return {
            "version": _STATE_VERSION,
            "accountant": self.accountant.value,
            "history": [list(e) for e in self.history],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> OpacusClientState:
        """Inverse of :meth:`to_dict`."""
        fields: Mapping[str, Any] = data  # parsed JSON: converted and checked below
        if not isinstance(data, Mapping) or fields.get("version") != _STATE_VERSION:
            raise InvalidParameterError("not an OpacusClientState dict of a supported version")
        return cls(
            accountant=OpacusAccountantKind(fields["accountant"]),
            history=tuple(tuple(e) for e in fields["history"]),  # type: ignore[misc]
        )


@dataclass(frozen=True)
class OpacusRoundResult:
    """What one private local-training round produced.

    Attributes:
        state_dict: the trained model's plain state dict (detached copies).
        update: ``trained - initial`` for every floating-point entry (the delta to
            aggregate); integer buffers are left out.
        client_state: the client's accountant state after this round (persist it).
        event: this round's DP event (``steps`` sampled Gaussian steps).
        steps: optimizer steps taken this round.
        sample_rate: Poisson sampling rate ``q``.
        num_examples: size of the local dataset (a natural FedAvg weight).
        mean_loss: mean training loss over the non-empty batches.
    """

    state_dict: dict[str, torch.Tensor]
    update: dict[str, torch.Tensor]
    client_state: OpacusClientState
    event: dp_accounting.DpEvent
    steps: int
    sample_rate: float
    num_examples: int
    mean_loss: float


class _SecurePoissonBatchSampler(Sampler[list[int]]):
    """Poisson sampling: each example joins each batch independently with probability ``q``."""

    def __init__(self, num_samples: int, sample_rate: float, steps: int) -> None:
        self.num_samples = num_samples
        self.sample_rate = sample_rate
        self.steps = steps

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[list[int]]:
        for _ in range(self.steps):
            mask = sample_uniform(self.num_samples) < self.sample_rate
            yield np.flatnonzero(mask).tolist()


class _SecureNoiseDPOptimizer(DPOptimizer):  # type: ignore[misc]
    """Opacus's DP optimizer with its Gaussian noise drawn from the AES-CTR PRG."""

    def add_noise(self) -> None:
        std = float(self.noise_multiplier) * float(self.max_grad_norm)
        for p in self.params:
            summed = p.summed_grad
            noise = torch.from_numpy(sample_gaussian(std, tuple(summed.shape))).to(
                dtype=summed.dtype, device=summed.device
            )
            p.grad = (summed + noise).view_as(p)


def _rebuild_optimizer(
    optimizer: torch.optim.Optimizer
    | Callable[[Iterable[torch.nn.Parameter]], torch.optim.Optimizer],
    original: torch.nn.Module,
    working: torch.nn.Module,
) -> torch.optim.Optimizer:
    """The same optimizer over the working copy's parameters (fresh state)."""
    if not isinstance(optimizer, torch.optim.Optimizer):
        if not callable(optimizer):
            raise InvalidParameterError("optimizer must be a torch Optimizer or a factory of one")
        built = optimizer(working.parameters())
        if not isinstance(built, torch.optim.Optimizer):
            raise InvalidParameterError("the optimizer factory did not return a torch Optimizer")
        return built
    mapping = {id(p): q for p, q in zip(original.parameters(), working.parameters())}
    groups = []
    for group in optimizer.param_groups:
        params = group["params"]
        if any(id(p) not in mapping for p in params):
            raise InvalidParameterError("the optimizer holds parameters that are not the model's")
        groups.append(
            {
                **{k: v for k, v in group.items() if k != "params"},
                "params": [mapping[id(p)] for p in params],
            }
        )
    try:
        return type(optimizer)(groups, **optimizer.defaults)
    except TypeError as exc:
        raise InvalidParameterError(
            f"cannot rebuild {type(optimizer).__name__} from its defaults ({exc}); pass a factory "
            "such as `lambda params: torch.optim.SGD(params, lr=0.1)` instead"
        ) from None


def train_private_round(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer
    | Callable[[Iterable[torch.nn.Parameter]], torch.optim.Optimizer],
    data_loader: DataLoader[Sequence[object]],
    *,
    noise_multiplier: float,
    max_grad_norm: float,
    state: OpacusClientState | None = None,
    epochs: int = 1,
    max_steps: int | None = None,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    accountant: OpacusAccountantKind | str = OpacusAccountantKind.RDP,
    budget: tuple[float, float] | None = None,
) -> OpacusRoundResult:
    """One client, one round of DP-SGD with Opacus; the plain model is left untouched.

    Args:
        model: the plain global model as received (not modified; must pass Opacus's
            ``ModuleValidator``, e.g. no BatchNorm -- use ``ModuleValidator.fix``).
        optimizer: an optimizer over ``model``'s parameters, used as a template (same
            class and hyper-parameters, fresh state), or a factory ``params -> Optimizer``.
        data_loader: the client's data; only its dataset, batch size (expected batch
            size of the Poisson sampling) and collate function are used. Batches must
            be ``(inputs, targets)``.
        noise_multiplier: ``z > 0`` of DP-SGD.
        max_grad_norm: per-example gradient clip norm.
        state: the client's state from its previous round (``None``: first round).
        epochs: passes over the data (each ``len(data_loader)`` Poisson-sampled steps).
        max_steps: optional cap on the optimizer steps of this round.
        loss_fn: ``loss(outputs, targets)`` with mean reduction (default cross-entropy).
        accountant: accountant for a new state (ignored when ``state`` is given).
        budget: optional ``(epsilon, delta)``: refuse the round, before any training,
            if the planned steps would push the client's epsilon above it.

    Returns:
        An :class:`OpacusRoundResult`.

    Raises:
        InvalidParameterError: bad arguments or a model Opacus cannot privatise.
        BudgetExceededError: the round would exceed ``budget`` (nothing was trained).
    """
    z = require_positive("noise_multiplier", noise_multiplier)
    clip = require_positive("max_grad_norm", max_grad_norm)
    epochs = require_int("epochs", epochs, lo=1)
    if max_steps is not None:
        max_steps = require_int("max_steps", max_steps, lo=1)
    if not isinstance(model, torch.nn.Module):
        raise InvalidParameterError("model must be a torch.nn.Module")
    if not isinstance(data_loader, DataLoader) or isinstance(data_loader.dataset, IterableDataset):
        raise InvalidParameterError("data_loader must be a DataLoader over a map-style dataset")
    errors = ModuleValidator.validate(model, strict=False)
    if errors:
        raise InvalidParameterError(
            f"Opacus cannot privatise this model: {errors[0]}; "
            "use opacus.validators.ModuleValidator.fix(model)"
        )
    client_state = (
        state
        if state is not None
        else OpacusClientState(accountant=OpacusAccountantKind(accountant))
    )
    if not isinstance(client_state, OpacusClientState):
        raise InvalidParameterError("state must be an OpacusClientState")

    dataset = data_loader.dataset
    num_examples = len(dataset)  # type: ignore[arg-type]
    steps_per_epoch = len(data_loader)
    if num_examples < 1 or steps_per_epoch < 1:
        raise InvalidParameterError("the data loader is empty")
    sample_rate = 1.0 / steps_per_epoch
    planned = (
        epochs * steps_per_epoch if max_steps is None else min(max_steps, epochs * steps_per_epoch)
    )

    if budget is not None:
        eps_budget, delta = float(budget[0]), float(budget[1])
        projected = OpacusClientState(
            accountant=client_state.accountant,
            history=(*client_state.history, (z, sample_rate, planned)),
        )
        spent = projected.epsilon(delta)
        if spent > eps_budget:
            raise BudgetExceededError(
                f"this round would bring the client's epsilon to {spent:.4g} > "
                f"{eps_budget:.4g} at delta={delta:g}"
            )

    working = copy.deepcopy(model)
    working.train()
    initial = {k: v.detach().clone() for k, v in model.state_dict().items()}
    base_optimizer = _rebuild_optimizer(optimizer, model, working)

    first = dataset[0]
    loader = DataLoader(
        dataset,
        batch_sampler=_SecurePoissonBatchSampler(num_examples, sample_rate, steps_per_epoch),
        collate_fn=wrap_collate_with_empty(
            collate_fn=data_loader.collate_fn,
            sample_empty_shapes=[(0, *shape_safe(x)) for x in first],
            dtypes=[dtype_safe(x) for x in first],
        ),
    )
    gsm = GradSampleModule(working, batch_first=True, loss_reduction="mean")
    gsm.forbid_grad_accumulation()
    dp_optimizer = _SecureNoiseDPOptimizer(
        base_optimizer,
        noise_multiplier=z,
        max_grad_norm=clip,
        expected_batch_size=max(1, int(num_examples * sample_rate)),
        loss_reduction="mean",
    )
    opacus_accountant = client_state.make_accountant()
    dp_optimizer.attach_step_hook(opacus_accountant.get_optimizer_hook_fn(sample_rate=sample_rate))
    criterion = loss_fn if loss_fn is not None else torch.nn.CrossEntropyLoss()

    steps = 0
    losses: list[float] = []
    try:
        with warnings.catch_warnings():
            # Opacus's per-sample hooks fire on module outputs when inputs need no grad
            warnings.filterwarnings(
                "ignore", message="Full backward hook is firing", category=UserWarning
            )
            while steps < planned:
                for inputs, targets in loader:
                    dp_optimizer.zero_grad(set_to_none=True)
                    outputs = gsm(inputs)
                    loss = criterion(outputs, targets)
                    loss.backward()
                    dp_optimizer.step()
                    steps += 1
                    if len(targets) > 0:
                        losses.append(float(loss.detach()))
                    if steps >= planned:
                        break
    finally:
        gsm._close()  # remove the hooks and per-sample gradients from the working copy

    trained = {k: v.detach().clone() for k, v in working.state_dict().items()}
    update = {k: trained[k] - initial[k] for k in trained if trained[k].is_floating_point()}
    history = tuple((float(h[0]), float(h[1]), int(h[2])) for h in opacus_accountant.history)
    return OpacusRoundResult(
        state_dict=trained,
        update=update,
        client_state=OpacusClientState(accountant=client_state.accountant, history=history),
        event=sampled_gaussian_event(z, sample_rate, steps),
        steps=steps,
        sample_rate=sample_rate,
        num_examples=num_examples,
        mean_loss=float(np.mean(losses)) if losses else float("nan"),
    )
