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

The package is the ``secagg demo`` command (:func:`configure`, :func:`run`); the data is
in :mod:`secagg.demo.data`, the training loop in :mod:`secagg.demo.training`, the plot in
:mod:`secagg.demo.plotting` and the Paillier settings in :mod:`secagg.demo.paillier`.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import warnings
from pathlib import Path
from typing import Any

from secagg.demo.data import Dataset, FederatedData, load_federated
from secagg.demo.paillier import (
    PAILLIER_DEMO_COMMITTEE,
    PAILLIER_DEMO_KEY_BITS,
    PAILLIER_DEMO_ROUNDS,
    describe_paillier,
    paillier_round_seconds,
)
from secagg.demo.plotting import epsilon_axis_label, plot_curves, plot_title
from secagg.demo.training import (
    ModelKind,
    RoundLog,
    TrainingResult,
    apply_delta,
    args_show_amplified,
    evaluate,
    make_model,
    model_delta,
    train_federated,
    train_locally,
    warm_up,
)
from secagg.errors import InvalidParameterError, require_installed
from secagg.outputs import json_text
from secagg.primitives.simulation import SIMULATION_WARNING, UnsafeSimulationWarning
from secagg.recipe.aggregator import SecureAggregator
from secagg.recipe.options import DPMode
from threat_models.model import ThreatModel

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
    "warm_up",
    "evaluate",
    "model_delta",
    "apply_delta",
    "build_aggregator",
    "configure",
    "run",
    "train_federated",
    "args_show_amplified",
    "epsilon_axis_label",
    "plot_title",
    "paillier_round_seconds",
    "PAILLIER_DEMO_COMMITTEE",
    "PAILLIER_DEMO_KEY_BITS",
    "PAILLIER_DEMO_ROUNDS",
]


def configure(parser: argparse.ArgumentParser) -> None:
    """Options of ``secagg demo``."""
    parser.add_argument(
        "--dataset",
        choices=[d.value for d in Dataset],
        default=Dataset.DIGITS.value,
        help="offline dataset (default: digits; mnist needs the eval extra)",
    )
    parser.add_argument("--clients", type=int, default=100, help="population size (default: 100)")
    parser.add_argument(
        "--clients-per-round",
        type=int,
        default=None,
        help="expected cohort per round, Poisson-sampled (default: half the clients)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=None,
        help=f"training rounds (default: 30; {PAILLIER_DEMO_ROUNDS} with --protocol paillier)",
    )
    parser.add_argument(
        "--protocol",
        choices=["secagg", "secagg+", "paillier"],
        default="secagg+",
        help="secure aggregation protocol (default: secagg+)",
    )
    parser.add_argument(
        "--paillier-key-bits",
        type=int,
        choices=[2048, 3072],
        default=None,
        help=f"Paillier modulus (demo default: {PAILLIER_DEMO_KEY_BITS}, 112-bit security, so that "
        "the demo takes minutes; the recipe's default and the secure choice: 3072)",
    )
    parser.add_argument(
        "--paillier-committee",
        type=int,
        default=None,
        help=f"Paillier decryption committee (demo default: {PAILLIER_DEMO_COMMITTEE}; the "
        "recipe's: 10); every member verifies every upload",
    )
    parser.add_argument(
        "--key-generation",
        choices=["dealer", "distributed"],
        default=None,
        help="who makes the Paillier key: a trusted dealer (default) or the decryption committee "
        "itself, with no dealer (distributed: an honest majority of at least 3 members)",
    )
    parser.add_argument(
        "--dp",
        choices=["none", "central", "distributed", "local"],
        default="distributed",
        help="differential privacy (default: distributed discrete Gaussian)",
    )
    parser.add_argument(
        "--noise-multiplier",
        type=float,
        default=None,
        help="z: noise std over the clip norm (default: 2.0; 1.0 for local DP-SGD)",
    )
    parser.add_argument(
        "--target-epsilon",
        type=float,
        default=None,
        help="calibrate the noise so that the per-client user-level epsilon stays below "
        "this after --rounds (for a client in every round)",
    )
    parser.add_argument(
        "--clip",
        type=float,
        default=None,
        help="L2 clip norm of client updates (default: 0.5; per-sample gradients for local "
        "DP: 1.0)",
    )
    parser.add_argument(
        "--delta", type=float, default=None, help="delta (default: 1 / (10 * clients))"
    )
    parser.add_argument(
        "--dropout",
        type=float,
        default=0.0,
        help="fraction of each cohort that vanishes at a random protocol stage (default: 0)",
    )
    parser.add_argument(
        "--alpha", type=float, default=0.5, help="Dirichlet label skew of the split (default: 0.5)"
    )
    parser.add_argument(
        "--model",
        choices=[m.value for m in ModelKind],
        default=ModelKind.LOGREG.value,
        help="softmax regression or a small MLP (default: logreg)",
    )
    parser.add_argument("--lr", type=float, default=0.3, help="client learning rate (default: 0.3)")
    parser.add_argument(
        "--local-epochs", type=int, default=2, help="client epochs per round (default: 2)"
    )
    parser.add_argument(
        "--verify",
        action="store_true",
        help="also compute each aggregate in plaintext on the side (from the noised inputs) "
        "and report the largest difference",
    )
    parser.add_argument(
        "--no-baseline", action="store_true", help="skip the plain-FedAvg comparison run"
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the data split, model, local training and simulated dropouts; cohorts and DP "
        "noise stay on the OS CSPRNG unless --reproducible",
    )
    parser.add_argument(
        "--reproducible",
        action="store_true",
        help="seeded simulation: cohorts, DP noise and rounding also come from --seed "
        "(SecureAggregator(simulation_seed=SEED)), so two runs with the same --seed print the same "
        "accuracies and epsilons. NOT private: whoever knows the seed can predict the cohorts and "
        "remove the noise. Not with --dp local (DP-SGD noise is Opacus's)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads for local training (default: 1, the fastest for these small models)",
    )
    parser.add_argument(
        "--json",
        metavar="PATH",
        default=None,
        help="write the results as JSON (missing parent directories are created; an unwritable "
        "path is refused before any training)",
    )
    parser.add_argument(
        "--plot",
        metavar="PATH",
        default=None,
        help="write accuracy and epsilon curves as PNG (same rule for the path as --json)",
    )
    parser.add_argument(
        "--quiet", action="store_true", help="no progress bar and no per-round lines"
    )


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
    if args.protocol != "paillier" and (
        args.paillier_key_bits is not None or args.paillier_committee is not None
    ):
        raise InvalidParameterError(
            "--paillier-key-bits and --paillier-committee need --protocol paillier"
        )
    if args.protocol != "paillier" and args.key_generation is not None:
        raise InvalidParameterError("--key-generation needs --protocol paillier")
    if args.reproducible and args.dp == "local":
        raise InvalidParameterError(
            "--reproducible does not cover --dp local: the clients' DP-SGD noise comes from "
            "Opacus, not the recipe"
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


def build_aggregator(args: argparse.Namespace, clients_per_round: int) -> SecureAggregator:
    """The demo's :class:`~secagg.recipe.SecureAggregator` for its parsed options."""
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
        kwargs["paillier_committee"] = min(
            args.paillier_committee or PAILLIER_DEMO_COMMITTEE, args.clients
        )
        kwargs["key_generation"] = args.key_generation or "dealer"
    if dp.user_level:
        kwargs["clip_norm"] = clip
        if args.target_epsilon is not None:
            kwargs.update(target_epsilon=args.target_epsilon, rounds=args.rounds)
        else:
            kwargs["noise_multiplier"] = (
                args.noise_multiplier if args.noise_multiplier is not None else 2.0
            )
    else:
        kwargs["clip_norm"] = args.clip  # optional without user-level DP
    return SecureAggregator(**kwargs)


def _json_number(value: float | None) -> float | None:
    # a non-finite value is written as null, and named, by secagg.outputs.json_text
    return None if value is None else float(value)


def run(args: argparse.Namespace) -> int:
    """Run the demo; returns the exit status."""
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
    with warnings.catch_warnings():
        warnings.simplefilter(
            "ignore", UnsafeSimulationWarning
        )  # said once, below, in the demo's words
        aggregator = build_aggregator(args, clients_per_round)
    local_dp = None
    if args.dp == "local":
        local_dp = {
            "noise_multiplier": args.noise_multiplier if args.noise_multiplier is not None else 1.0,
            "max_grad_norm": args.clip if args.clip is not None else 1.0,
        }
    setting = f"{args.protocol}, no DP" if args.dp == "none" else f"{args.protocol} + {args.dp} DP"
    title = plot_title(args, clients_per_round)
    if args.reproducible:
        print(
            f"secagg demo: warning: --reproducible (seed {args.seed}): {SIMULATION_WARNING}",
            file=sys.stderr,
        )
    if echo:
        print(f"secagg demo: {title}, {args.rounds} rounds, non-IID (Dirichlet alpha={args.alpha})")
        if paillier:
            describe_paillier(args, aggregator, clients_per_round, default_rounds=default_rounds)
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
    # one-off first-use costs, paid before either run so that neither is charged for them
    warm_up_seconds = warm_up(
        data,
        model=args.model,
        lr=args.lr,
        seed=args.seed,
        threads=args.threads,
    )
    secure, cohorts = train_federated(
        data,
        aggregator=aggregator,
        dropout=args.dropout,
        local_dp=local_dp,
        label="secure",
        **train_kwargs,
    )
    plain: TrainingResult | None = None
    if not args.no_baseline:
        plain, _ = train_federated(
            data, cohorts=cohorts, label="plain", **{**train_kwargs, "echo": False}
        )

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
        "noise_multiplier": aggregator.noise_multiplier
        if args.dp in ("central", "distributed")
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
        "paillier_key_bits": int(aggregator._paillier_key_bits)
        if args.protocol == "paillier"
        else None,
        "paillier_committee": int(aggregator.paillier_committee)
        if args.protocol == "paillier"
        else None,
        "seconds": secure.seconds,
        "plain_seconds": None if plain is None else plain.seconds,
        "aggregation_seconds": secure.aggregation_seconds,
        "epsilon_seconds": secure.epsilon_seconds,
        "warm_up_seconds": warm_up_seconds,
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
        "plain_curve": []
        if plain is None
        else [{"round": r.round, "accuracy": r.accuracy} for r in plain.rounds],
    }
    if echo:
        print()
        print(f"accuracy with {setting}: {secure.final_accuracy:.4f}")
        if plain is not None:
            print(f"accuracy of plain FedAvg (no DP, same cohorts): {plain.final_accuracy:.4f}")
        if epsilon is not None:
            if level == "user":
                # distributed DP: dp.accounting.distributed_epsilon
                accounting = (
                    "smaller of the RDP and Gaussian-PLD bounds"
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
                    f"epsilon: {epsilon:.3f} at delta = {secure.delta:.1e} (sample-level, "
                    f"largest over clients, {result['accountant']} accountant; user-level: none)"
                )
        else:
            print("epsilon: none (no differential privacy)")
        if args.reproducible:
            print(
                f"  note: seeded simulation (--reproducible, seed {args.seed}): reproducible "
                "figures, NOT private"
            )
        if args.verify:
            shown = (
                "n/a"
                if result["max_abs_difference"] is None
                else f"{result['max_abs_difference']:.3e}"
            )
            print(f"verify: largest |secure - plaintext| over all rounds: {shown}")
        print(
            f"time: {secure.seconds:.1f} s secure (aggregation {secure.aggregation_seconds:.1f} s,"
            f" epsilons {secure.epsilon_seconds:.1f} s)"
            + ("" if plain is None else f", {plain.seconds:.1f} s plain")
            + f"; first-use set-up {warm_up_seconds:.1f} s before both, not counted"
        )
    if args.json:
        Path(args.json).write_text(json_text(result))
    if args.plot:
        plot_curves(args.plot, secure, plain, title, setting, level)
    return 0
