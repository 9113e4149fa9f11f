"""Clients that train with Opacus DP-SGD, aggregated securely (sample-level DP).

Each client privatises its own training (per-example clipping and Gaussian noise, Opacus
DP-SGD through :func:`dp.opacus_client.train_private_round`): a fresh private copy of the
model every round, the client's accountant state carried across rounds, a plain state-dict
update out. The server aggregates the updates with SecAgg+ (``dp="local"``: no further
noise) and the recipe's ledger records every client's DP-SGD steps, so the epsilon reported
is each client's *sample-level* epsilon over all its rounds -- the protection of one
training example, not of a whole client.

Run from the repository root::

    python examples/opacus_clients.py [--rounds 10] [--noise-multiplier 1.0] [--threads 1]

Torch runs on one thread unless ``--threads N`` says otherwise (the fastest for this small
model, above all on a loaded machine).
"""

from __future__ import annotations

import argparse
import logging

import torch
from torch.utils.data import DataLoader, TensorDataset

from dp.opacus_client import OpacusClientState, train_private_round
from secagg import SecureAggregator
from secagg.demo import evaluate, load_federated


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--noise-multiplier", type=float, default=1.0)
    parser.add_argument("--max-grad-norm", type=float, default=1.0)
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
    logging.getLogger("absl").setLevel(logging.ERROR)  # dp-accounting's notes on skipped RDP orders

    data = load_federated(args.clients, alpha=0.5, seed=0)
    model = torch.nn.Linear(64, 10)
    loaders = [
        DataLoader(TensorDataset(torch.from_numpy(x), torch.from_numpy(y)), batch_size=16)
        for x, y in zip(data.client_x, data.client_y)
    ]
    states: dict[int, OpacusClientState] = {}  # each client's accountant, across rounds
    aggregator = SecureAggregator(population=args.clients, dp="local", clip_norm=None)

    for rnd in range(args.rounds):
        deltas, accountants = {}, {}
        model.train()  # evaluate() leaves it in eval mode; Opacus trains a copy in train mode
        for client in range(args.clients):
            result = train_private_round(
                model,
                torch.optim.SGD(model.parameters(), lr=0.3),
                loaders[client],
                noise_multiplier=args.noise_multiplier,
                max_grad_norm=args.max_grad_norm,
                state=states.get(client),
                epochs=2,
            )
            states[client] = result.client_state
            deltas[client] = result.update
            accountants[client] = result.client_state
        mean = aggregator.mean(deltas, local_dp=accountants)
        model.load_state_dict({k: v + mean[k] for k, v in model.state_dict().items()})
        accuracy = evaluate(model, data.test_x, data.test_y)
        print(
            f"round {rnd + 1:>2}: test accuracy {accuracy:.3f}, largest sample-level epsilon "
            f"{aggregator.epsilon:.2f} (delta {aggregator.delta:.0e}, "
            f"{aggregator.privacy().accountant} "
            "accountant; user-level: none)"
        )


if __name__ == "__main__":
    main()
