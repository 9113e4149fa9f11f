"""The demo's training: small models, local SGD (or DP-SGD) and the federated loop.

:func:`train_federated` runs FedAvg over a :class:`~secagg.demo.data.FederatedData`
split: each round the cohort trains locally (plain SGD, or Opacus DP-SGD through
:mod:`dp.opacus_client` for ``dp="local"``) and the updates are aggregated by a
:class:`~secagg.recipe.aggregator.SecureAggregator` -- or averaged in the clear, the
plain-FedAvg baseline. torch is imported where it is used (``secagg demo --help`` stays
fast).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from secagg.demo.data import FederatedData
from secagg.errors import ProtocolAbortError, ThresholdNotMetError
from secagg.recipe.aggregator import SecureAggregator

if TYPE_CHECKING:
    import torch

    from dp.opacus_client import OpacusClientState

__all__ = [
    "ModelKind",
    "RoundLog",
    "TrainingResult",
    "apply_delta",
    "args_show_amplified",
    "evaluate",
    "make_model",
    "model_delta",
    "train_federated",
    "train_locally",
    "warm_up",
]

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]


class ModelKind(str, Enum):
    """Softmax regression (``logreg``) or a one-hidden-layer ReLU network (``mlp``)."""

    LOGREG = "logreg"
    MLP = "mlp"


def make_model(
    kind: ModelKind | str, num_features: int, num_classes: int, *, seed: int = 0
) -> torch.nn.Module:
    """A fresh model: softmax regression or a 32-unit one-hidden-layer MLP."""
    import torch

    kind = ModelKind(kind)
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        if kind is ModelKind.LOGREG:
            return torch.nn.Linear(num_features, num_classes)
        return torch.nn.Sequential(
            torch.nn.Linear(num_features, 32), torch.nn.ReLU(), torch.nn.Linear(32, num_classes)
        )
    finally:
        torch.random.set_rng_state(gen_state)


def train_locally(
    model: torch.nn.Module,
    x: F32,
    y: I64,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    rng: np.random.Generator,
) -> None:
    """Plain mini-batch SGD on one client's data (in place)."""
    import torch

    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        order = rng.permutation(len(y))
        for start in range(0, len(y), batch_size):
            batch = torch.from_numpy(order[start : start + batch_size])
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(xt[batch]), yt[batch])
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()


def evaluate(model: torch.nn.Module, x: F32, y: I64) -> float:
    """Test accuracy."""
    import torch

    model.eval()
    with torch.no_grad():
        predictions = model(torch.from_numpy(x)).argmax(dim=1).numpy()
    return float(np.mean(predictions == y))


def model_delta(local: torch.nn.Module, global_model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """``local - global`` as a state dict (the update a client sends)."""
    g = global_model.state_dict()
    return {k: (v.detach() - g[k]).clone() for k, v in local.state_dict().items()}


def apply_delta(
    model: torch.nn.Module, delta: Mapping[str, torch.Tensor], *, server_lr: float = 1.0
) -> None:
    """``global += server_lr * delta`` (in place)."""
    import torch

    with torch.no_grad():
        state = model.state_dict()
        for name, value in delta.items():
            state[name] += server_lr * value.to(state[name].dtype)
    model.load_state_dict(state)


@dataclass(frozen=True)
class RoundLog:
    """What one round of the demo produced."""

    round: int
    cohort: int
    survivors: int
    accuracy: float
    epsilon: float | None
    seconds: float
    max_abs_difference: float | None = None
    epsilon_amplified: float | None = None


@dataclass(frozen=True)
class TrainingResult:
    """A whole training run."""

    rounds: tuple[RoundLog, ...]
    seconds: float
    final_accuracy: float
    epsilon: float | None
    delta: float | None
    details: Mapping[str, object] = field(default_factory=dict)
    epsilon_amplified: float | None = None
    #: of ``seconds``: inside ``SecureAggregator.mean`` (encoding, DP noise, the protocol,
    #: recording the round in the ledger and checking the budget); ``0`` for plain FedAvg
    aggregation_seconds: float = 0.0
    #: of ``seconds``: asking the ledger for the epsilons shown each round
    epsilon_seconds: float = 0.0


# -- the training loop ----------------------------------------------------------------

_STAGES_FOR_DROPOUTS = ("advertise_keys", "share_keys", "masked_input", "unmasking")


def _dropouts(
    cohort: Sequence[int], rate: float, rng: np.random.Generator
) -> dict[str, list[int]] | None:
    """``floor(rate * n)`` clients of the cohort vanish, each at a random protocol stage."""
    count = math.floor(rate * len(cohort) + 1e-12)
    if count == 0:
        return None
    chosen = rng.choice(np.asarray(cohort), size=count, replace=False)
    out: dict[str, list[int]] = {}
    for client in chosen:
        out.setdefault(str(rng.choice(_STAGES_FOR_DROPOUTS)), []).append(int(client))
    return out


def train_federated(
    data: FederatedData,
    *,
    rounds: int,
    model: ModelKind | str = ModelKind.LOGREG,
    lr: float = 0.3,
    local_epochs: int = 2,
    batch_size: int = 16,
    seed: int = 0,
    aggregator: SecureAggregator | None = None,
    cohorts: Sequence[Sequence[int]] | None = None,
    dropout: float = 0.0,
    local_dp: Mapping[str, float] | None = None,
    progress: bool = False,
    echo: bool = False,
    label: str = "",
    threads: int | None = 1,
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[TrainingResult, list[list[int]]]:
    """FedAvg on ``data``: securely aggregated through ``aggregator``, or plain if ``None``.

    Args:
        data: the federated split.
        rounds: number of rounds.
        model: ``logreg`` or ``mlp``.
        lr: client learning rate.
        local_epochs: client epochs per round.
        batch_size: client batch size.
        seed: seeds the model initialisation, local shuffling and simulated dropouts.
        aggregator: a :class:`secagg.recipe.SecureAggregator`, or ``None`` for plain FedAvg.
        cohorts: the cohort of every round (default: ``aggregator.sample_cohort()``, or
            every client for plain FedAvg).
        dropout: fraction of each cohort that vanishes at a random protocol stage.
        local_dp: ``{"noise_multiplier": .., "max_grad_norm": ..}`` to train clients with
            Opacus DP-SGD (``dp="local"``).
        progress: show a progress bar over the rounds.
        echo: print one line per round.
        label: prefix of the progress bar.
        threads: torch's intra-op threads for the local training (default 1, the fastest
            for these small models, above all on a loaded machine); ``None`` leaves torch's
            setting alone.
        clock: the clock of every duration reported (wall-clock by default;
            ``time.process_time`` gives CPU seconds, as the benchmarks use).

    Returns:
        ``(result, cohorts)``.
    """
    import copy

    import torch
    from tqdm import tqdm

    if threads is not None:
        torch.set_num_threads(threads)
    rng = np.random.default_rng(seed)
    global_model = make_model(model, data.num_features, data.num_classes, seed=seed)
    logs: list[RoundLog] = []
    used: list[list[int]] = []
    opacus_states: dict[int, OpacusClientState] = {}
    aggregation_seconds = 0.0
    epsilon_seconds = 0.0
    started = clock()
    bar = tqdm(
        range(rounds), desc=label or "rounds", unit="round", disable=not progress, leave=False
    )
    for rnd in bar:
        round_started = clock()
        if cohorts is not None:
            cohort = list(cohorts[rnd])
        elif aggregator is not None:
            cohort = [int(c) for c in aggregator.sample_cohort(range(data.num_clients))]
        else:
            cohort = list(range(data.num_clients))
        used.append(cohort)
        deltas: dict[int, dict[str, torch.Tensor]] = {}
        accountants: dict[int, OpacusClientState] = {}
        for client in cohort:
            local = copy.deepcopy(global_model)
            local.train()
            if local_dp is not None:
                accountants[client] = _train_with_opacus(
                    local,
                    data,
                    client,
                    local_dp,
                    opacus_states,
                    lr=lr,
                    epochs=local_epochs,
                    batch_size=batch_size,
                    rng=rng,
                )
            else:
                train_locally(
                    local,
                    data.client_x[client],
                    data.client_y[client],
                    epochs=local_epochs,
                    lr=lr,
                    batch_size=batch_size,
                    rng=rng,
                )
            deltas[client] = model_delta(local, global_model)
        epsilon: float | None = None
        amplified: float | None = None
        survivors = len(cohort)
        difference: float | None = None
        if aggregator is None:
            first = next(iter(deltas.values()))
            mean = {k: torch.stack([d[k] for d in deltas.values()]).mean(dim=0) for k in first}
            apply_delta(global_model, mean)
        else:
            aggregation_started = clock()
            try:
                mean = aggregator.mean(
                    deltas,
                    dropouts=_dropouts(cohort, dropout, rng),
                    local_dp=accountants if local_dp is not None else None,
                )
                aggregation_seconds += clock() - aggregation_started
                apply_delta(global_model, mean)
                report = aggregator.last_round
                if report is not None:
                    survivors = len(report.survivors)
                    difference = report.max_abs_difference
            except (ThresholdNotMetError, ProtocolAbortError) as exc:
                aggregation_seconds += clock() - aggregation_started
                survivors = 0
                if echo:
                    tqdm.write(f"  round {rnd + 1}: aborted ({exc}); the model is unchanged")
            epsilon_started = clock()
            epsilon = aggregator.epsilon
            amplified = aggregator.amplified_epsilon
            epsilon_seconds += clock() - epsilon_started
        accuracy = evaluate(global_model, data.test_x, data.test_y)
        logs.append(
            RoundLog(
                round=rnd + 1,
                cohort=len(cohort),
                survivors=survivors,
                accuracy=accuracy,
                epsilon=epsilon,
                seconds=clock() - round_started,
                max_abs_difference=difference,
                epsilon_amplified=amplified,
            )
        )
        postfix = {"acc": f"{accuracy:.3f}"}
        if epsilon is not None:
            postfix["eps"] = f"{epsilon:.2f}"
        bar.set_postfix(postfix)
        if echo:
            line = (
                f"{label + ' ' if label else ''}round {rnd + 1:>3}/{rounds}  "
                f"clients {survivors:>3}/{len(cohort):<3}  accuracy {accuracy:.4f}"
            )
            if epsilon is not None:
                if aggregator is not None and not aggregator.dp.user_level:
                    line += f"  sample-level epsilon (largest client) {epsilon:.3f}"
                else:
                    line += f"  epsilon per client {epsilon:.3f}"
            if amplified is not None and aggregator is not None and args_show_amplified(aggregator):
                line += f" (amplified {amplified:.3f})"
            if difference is not None:
                line += f"  max|secure - plaintext| {difference:.2e}"
            seconds = logs[-1].seconds
            if seconds >= 10.0:
                line += f"  ({seconds:.0f} s)"
            tqdm.write(line)
            if rnd == 0 and rounds > 1 and seconds >= 10.0:
                tqdm.write(f"  about {seconds * (rounds - 1) / 60:.1f} min to go at this pace")
    bar.close()
    final_eps = logs[-1].epsilon if logs else None
    result = TrainingResult(
        rounds=tuple(logs),
        seconds=clock() - started,
        final_accuracy=logs[-1].accuracy
        if logs
        else evaluate(global_model, data.test_x, data.test_y),
        epsilon=final_eps,
        delta=None if aggregator is None or final_eps is None else aggregator.delta,
        epsilon_amplified=logs[-1].epsilon_amplified if logs else None,
        aggregation_seconds=aggregation_seconds,
        epsilon_seconds=epsilon_seconds,
    )
    return result, used


def warm_up(
    data: FederatedData,
    *,
    model: ModelKind | str = ModelKind.LOGREG,
    lr: float = 0.3,
    batch_size: int = 16,
    seed: int = 0,
    threads: int | None = 1,
) -> float:
    """Train a throw-away model for one epoch on one client; returns the seconds it took.

    The first local training pays one-off costs (torch's optimizer imports its compiler
    stack on first use, first calls of every kernel). Whichever run goes first would be
    charged for them: the demo pays them here, before either run, and reports them apart.
    """
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    throw_away = make_model(model, data.num_features, data.num_classes, seed=seed)
    client = int(np.argmax([len(y) for y in data.client_y]))
    train_locally(
        throw_away,
        data.client_x[client],
        data.client_y[client],
        epochs=1,
        lr=lr,
        batch_size=batch_size,
        rng=rng,
    )
    evaluate(throw_away, data.test_x, data.test_y)
    return time.perf_counter() - started


def args_show_amplified(aggregator: SecureAggregator) -> bool:
    """Whether the amplified figure differs from the per-client one in kind (user-level DP,
    sampling)."""
    return bool(aggregator.dp.user_level and aggregator.clients_per_round < aggregator.population)


def _train_with_opacus(
    model: torch.nn.Module,
    data: FederatedData,
    client: int,
    settings: Mapping[str, float],
    states: dict[int, OpacusClientState],
    *,
    lr: float,
    epochs: int,
    batch_size: int,
    rng: np.random.Generator,
) -> OpacusClientState:
    """Train one client with DP-SGD through :mod:`dp.opacus_client` (in place).

    The client's accountant state is carried across rounds in ``states``; returns it, for
    the recipe's ledger (sample-level accounting).
    """
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from dp.opacus_client import train_private_round

    del rng  # Opacus draws its Poisson batches and noise from the AES-CTR PRG
    dataset = TensorDataset(
        torch.from_numpy(data.client_x[client]), torch.from_numpy(data.client_y[client])
    )
    result = train_private_round(
        model,
        torch.optim.SGD(model.parameters(), lr=lr),
        DataLoader(dataset, batch_size=batch_size),
        noise_multiplier=float(settings["noise_multiplier"]),
        max_grad_norm=float(settings["max_grad_norm"]),
        state=states.get(client),
        epochs=epochs,
    )
    model.load_state_dict(result.state_dict)
    states[client] = result.client_state
    return result.client_state
