"""The demo's plot: accuracy and epsilon per round, with the labels that say what they are.

matplotlib (the eval extra) is imported where it is used, with the non-interactive
``Agg`` backend.
"""

from __future__ import annotations

import argparse
import math

from secagg.demo.training import TrainingResult

__all__ = ["epsilon_axis_label", "plot_curves", "plot_title"]


def epsilon_axis_label(level: str | None, delta: float | None) -> str:
    """The epsilon axis of the demo's plot: which level the figure is (user or sample) and
    its delta."""
    kind = "sample-level epsilon" if level == "sample" else "user-level epsilon"
    return f"{kind} (delta = {delta:.0e})" if delta else kind


def plot_title(args: argparse.Namespace, clients_per_round: int) -> str:
    """The demo's plot title: data, population, protocol, DP mode, dropout rate (and a
    seeded run)."""
    setting = f"{args.protocol}, no DP" if args.dp == "none" else f"{args.protocol} + {args.dp} DP"
    return (
        f"{args.dataset}, {args.clients} clients (~{clients_per_round}/round), {setting}, "
        f"dropout {args.dropout:.0%}"
        + (" -- seeded simulation, NOT private" if args.reproducible else "")
    )


def plot_curves(
    path: str,
    secure: TrainingResult,
    plain: TrainingResult | None,
    title: str,
    label: str,
    level: str | None,
) -> None:
    """Write the accuracy curves (secure and plain) and the epsilon curves as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, (ax_acc, ax_eps) = plt.subplots(1, 2, figsize=(10, 4))
    rounds = [r.round for r in secure.rounds]
    ax_acc.plot(rounds, [r.accuracy for r in secure.rounds], marker="o", markersize=3, label=label)
    if plain is not None:
        ax_acc.plot(
            [r.round for r in plain.rounds],
            [r.accuracy for r in plain.rounds],
            linestyle="--",
            label="plain FedAvg (no DP)",
        )
    ax_acc.set_xlabel("round")
    ax_acc.set_ylabel("test accuracy")
    ax_acc.set_ylim(0.0, 1.0)
    ax_acc.grid(alpha=0.3)
    ax_acc.legend(loc="lower right")
    eps = [
        (r.round, r.epsilon)
        for r in secure.rounds
        if r.epsilon is not None and math.isfinite(r.epsilon)
    ]
    amplified = [
        (r.round, r.epsilon_amplified)
        for r in secure.rounds
        if r.epsilon_amplified is not None and math.isfinite(r.epsilon_amplified)
    ]
    if eps:
        headline = (
            "largest client's DP-SGD (sample-level)"
            if level == "sample"
            else "per client, worst client (holds against the server)"
        )
        ax_eps.plot(
            [e[0] for e in eps],
            [e[1] for e in eps],
            color="tab:red",
            marker="o",
            markersize=3,
            label=headline,
        )
        if amplified and amplified != eps:
            ax_eps.plot(
                [e[0] for e in amplified],
                [e[1] for e in amplified],
                color="tab:red",
                linestyle=":",
                label="amplified (only if the server neither chooses nor sees cohorts)",
            )
        ax_eps.legend(
            loc="lower right", fontsize="small"
        )  # the curves rise: keep the legend off them
        ax_eps.set_ylabel(epsilon_axis_label(level, secure.delta))
    else:
        ax_eps.text(
            0.5,
            0.5,
            "no differential privacy",
            ha="center",
            va="center",
            transform=ax_eps.transAxes,
        )
    ax_eps.set_xlabel("round")
    ax_eps.grid(alpha=0.3)
    for axis in (ax_acc, ax_eps):
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
