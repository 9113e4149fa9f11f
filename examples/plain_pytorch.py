"""A plain PyTorch FedAvg loop, wrapped with secure aggregation and distributed DP.

The lines marked ``# secagg`` are the only ones that differ from the plain loop
(``--plain`` runs the plain version, for comparison): the server never sees an individual
update, only the noised sum of the cohort, and the run ends with a user-level epsilon.

Run from the repository root::

    python examples/plain_pytorch.py              # SecAgg+ with distributed DP
    python examples/plain_pytorch.py --plain      # the same loop without secagg

Torch runs on one thread unless ``--threads N`` says otherwise: for a model this small,
torch's default of one thread per core spends more time synchronising than computing,
and on a loaded machine it is several times slower.
"""

from __future__ import annotations

import argparse
import copy
import random

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from secagg import SecureAggregator  # secagg
from secagg.recipe import CohortTooSmallError  # secagg


def split_non_iid(
    x: np.ndarray, y: np.ndarray, clients: int, seed: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Dirichlet(0.5) label skew: every client sees mostly a few digits."""
    rng = np.random.default_rng(seed)
    owners: list[list[int]] = [[] for _ in range(clients)]
    for label in range(10):
        ids = rng.permutation(np.flatnonzero(y == label))
        cuts = (np.cumsum(rng.dirichlet([0.5] * clients)) * len(ids)).astype(int)[:-1]
        for client, part in enumerate(np.split(ids, cuts)):
            owners[client] += part.tolist()
    for client in range(clients):  # every client gets at least two examples
        while len(owners[client]) < 2:
            donor = max(range(clients), key=lambda c: len(owners[c]))
            owners[client].append(owners[donor].pop())
    return [(torch.from_numpy(x[o]), torch.from_numpy(y[o])) for o in owners]


def local_update(
    model: torch.nn.Module, data: tuple[torch.Tensor, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Two epochs of SGD on one client's data; returns the model delta (a state dict)."""
    local = copy.deepcopy(model)
    optimizer = torch.optim.SGD(local.parameters(), lr=0.3)
    x, y = data
    for _ in range(2):
        for batch in torch.split(torch.randperm(len(y)), 16):
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(local(x[batch]), y[batch])
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
    return {k: v - model.state_dict()[k] for k, v in local.state_dict().items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--plain", action="store_true", help="run the loop without secagg")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default: 1, the fastest for this small model)",
    )
    args = parser.parse_args()
    if args.threads < 1:
        parser.error("--threads must be positive")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    features, labels = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        (features / 16.0).astype(np.float32),
        labels,
        test_size=0.25,
        random_state=0,
        stratify=labels,
    )
    clients = split_non_iid(x_train, y_train, args.clients, seed=0)
    model = torch.nn.Linear(64, 10)
    per_round = args.clients // 2

    aggregator = SecureAggregator(  # secagg
        population=args.clients, clients_per_round=per_round, noise_multiplier=2.0, clip_norm=0.5
    )
    for rnd in range(args.rounds):
        if args.plain:
            cohort = random.sample(range(args.clients), per_round)
            deltas = {c: local_update(model, clients[c]) for c in cohort}
            mean = {k: sum(d[k] for d in deltas.values()) / len(deltas) for k in deltas[cohort[0]]}
        else:
            cohort = aggregator.sample_cohort()  # secagg
            deltas = {c: local_update(model, clients[c]) for c in cohort}
            try:
                mean = aggregator.mean(deltas)  # secagg
            except CohortTooSmallError:  # secagg: a tiny Poisson sample; charged, nothing released
                continue
        model.load_state_dict({k: v + mean[k] for k, v in model.state_dict().items()})

        with torch.no_grad():
            accuracy = (model(torch.from_numpy(x_test)).argmax(1).numpy() == y_test).mean()
        line = f"round {rnd + 1:>2}: {len(cohort)} clients, test accuracy {accuracy:.3f}"
        if not args.plain:
            line += (  # secagg
                f", epsilon per client {aggregator.epsilon:.2f} (delta {aggregator.delta:.0e}; "
                f"holds against "
                f"the server), amplified by sampling {aggregator.amplified_epsilon:.2f} (only if "
                f"the server "
                "neither chooses nor learns the cohorts)"
            )
        print(line)


if __name__ == "__main__":
    main()
