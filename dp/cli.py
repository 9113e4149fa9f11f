"""``secagg audit``: privacy accounting from parameters or from a saved ledger.

From parameters (DP-FedAvg: Gaussian mechanism with noise multiplier ``Z``, clients
sampled with rate ``Q`` -- ``1`` means every client every round -- for ``T`` rounds)::

    secagg audit --noise-multiplier 1.1 --sampling-rate 0.01 --rounds 1000 --delta 1e-5 \\
        [--accountant pld|rdp|prv] [--points 20] [--json out.json] [--plot eps.png]

From a ledger written by :meth:`dp.ledger.PrivacyLedger.save`::

    secagg audit ledger.json [--delta 1e-5] [--accountant rdp] [--json out.json] [--plot eps.png]

Prints a table of epsilon against rounds; ``--json`` writes at least
``{"epsilon", "delta", "accountant", "curve": [[round, epsilon], ...]}``; ``--plot``
writes a PNG of epsilon against rounds.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from typing import Any

import dp_accounting

from dp.accounting import (
    DEFAULT_PLD_DISCRETIZATION,
    AccountantKind,
    compute_epsilon,
    rdp_curve,
    rdp_to_epsilon,
)
from dp.ledger import BudgetScope, PrivacyLedger, curve_rounds
from secagg.errors import InvalidParameterError

__all__ = ["configure", "run", "parameter_curve"]

DEFAULT_POINTS = 20


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``secagg audit`` to ``parser``."""
    parser.add_argument("ledger", nargs="?", metavar="LEDGER.json", help="a saved privacy ledger")
    parser.add_argument(
        "--noise-multiplier", type=float, metavar="Z", help="Gaussian noise multiplier"
    )
    parser.add_argument(
        "--sampling-rate",
        type=float,
        metavar="Q",
        help="client sampling rate (1 = every client every round)",
    )
    parser.add_argument("--rounds", type=int, metavar="T", help="number of rounds")
    parser.add_argument(
        "--delta",
        type=float,
        metavar="D",
        help="target delta (ledger mode: defaults to its budget's)",
    )
    parser.add_argument(
        "--accountant",
        choices=[k.value for k in AccountantKind],
        default=None,
        help="accountant (default: pld; ledger mode: the ledger's)",
    )
    parser.add_argument(
        "--points",
        type=int,
        default=DEFAULT_POINTS,
        metavar="N",
        help=f"rounds at which epsilon is evaluated for the curve (default {DEFAULT_POINTS}; 0 = every round)",
    )
    parser.add_argument(
        "--pld-discretization",
        type=float,
        default=DEFAULT_PLD_DISCRETIZATION,
        metavar="X",
        help="PLD value discretization interval (smaller = tighter, slower)",
    )
    parser.add_argument("--json", metavar="PATH", help="write the machine-readable result here")
    parser.add_argument("--plot", metavar="PATH", help="write a PNG of epsilon against rounds here")
    parser.add_argument("--quiet", action="store_true", help="no table, no progress bar")


def parameter_curve(
    noise_multiplier: float,
    sampling_rate: float,
    rounds: int,
    delta: float,
    *,
    accountant: AccountantKind | str = AccountantKind.PLD,
    points: int | None = DEFAULT_POINTS,
    pld_discretization: float = DEFAULT_PLD_DISCRETIZATION,
    progress: bool = False,
) -> list[tuple[int, float]]:
    """Epsilon at ``delta`` after ``t`` rounds of DP-FedAvg, for ``points`` values of ``t``.

    Each round is ``PoissonSampledDpEvent(sampling_rate, GaussianDpEvent(noise_multiplier))``
    (just the Gaussian when ``sampling_rate == 1``).
    """
    if not (math.isfinite(noise_multiplier) and noise_multiplier > 0):
        raise InvalidParameterError("--noise-multiplier must be positive")
    if not (math.isfinite(sampling_rate) and 0 < sampling_rate <= 1):
        raise InvalidParameterError("--sampling-rate must lie in (0, 1]")
    if rounds < 1:
        raise InvalidParameterError("--rounds must be at least 1")
    step: dp_accounting.DpEvent = dp_accounting.GaussianDpEvent(noise_multiplier)
    if sampling_rate < 1:
        step = dp_accounting.PoissonSampledDpEvent(sampling_rate, step)
    from tqdm import tqdm

    grid = curve_rounds(rounds, points)
    bar = tqdm(grid, desc="accounting", unit="pt", disable=not (progress and sys.stderr.isatty()))
    if AccountantKind(accountant) is AccountantKind.RDP:
        orders, per_round = rdp_curve(step)  # RDP adds up over rounds
        return [(t, rdp_to_epsilon(orders, t * per_round, delta)) for t in bar]
    return [
        (
            t,
            compute_epsilon(
                dp_accounting.SelfComposedDpEvent(step, t),
                delta,
                accountant=accountant,
                pld_discretization=pld_discretization,
            ),
        )
        for t in bar
    ]


def _check_delta(delta: float | None) -> float:
    if delta is None or not (0 < delta < 1):
        raise InvalidParameterError("--delta must be given and lie in (0, 1)")
    return float(delta)


def _points(value: int) -> int | None:
    if value < 0:
        raise InvalidParameterError("--points must be >= 0")
    return None if value == 0 else value


def _parameters_mode(args: argparse.Namespace) -> dict[str, Any]:
    missing = [
        name
        for name, value in (
            ("--noise-multiplier", args.noise_multiplier),
            ("--sampling-rate", args.sampling_rate),
            ("--rounds", args.rounds),
        )
        if value is None
    ]
    if missing:
        raise InvalidParameterError(
            f"give a LEDGER.json or all of the parameters (missing {', '.join(missing)})"
        )
    delta = _check_delta(args.delta)
    kind = AccountantKind(args.accountant or AccountantKind.PLD.value)
    curve = parameter_curve(
        args.noise_multiplier,
        args.sampling_rate,
        args.rounds,
        delta,
        accountant=kind,
        points=_points(args.points),
        pld_discretization=args.pld_discretization,
        progress=not args.quiet,
    )
    return {
        "mode": "parameters",
        "epsilon": curve[-1][1],
        "delta": delta,
        "accountant": kind.value,
        "rounds": args.rounds,
        "parameters": {
            "noise_multiplier": args.noise_multiplier,
            "sampling_rate": args.sampling_rate,
            "rounds": args.rounds,
        },
        "curve": [[t, e] for t, e in curve],
    }


def _ledger_mode(args: argparse.Namespace) -> dict[str, Any]:
    if any(v is not None for v in (args.noise_multiplier, args.sampling_rate, args.rounds)):
        raise InvalidParameterError("give either a LEDGER.json or the parameters, not both")
    try:
        ledger = PrivacyLedger.load(args.ledger)
    except OSError as exc:
        raise InvalidParameterError(f"cannot read {args.ledger}: {exc}") from exc
    if len(ledger) == 0:
        raise InvalidParameterError(f"{args.ledger} records no rounds")
    delta = args.delta
    if delta is None:
        population = [b for b in ledger.budgets if b.scope is BudgetScope.POPULATION]
        candidates = population or list(ledger.budgets)
        delta = candidates[0].delta if candidates else None
    delta = _check_delta(delta)
    kind = AccountantKind(args.accountant) if args.accountant else ledger.accountant
    curve = ledger.epsilon_curve(
        delta, accountant=kind, points=_points(args.points), progress=not args.quiet
    )
    result: dict[str, Any] = {
        "mode": "ledger",
        "ledger": os.fspath(args.ledger),
        "epsilon": curve[-1][1],
        "delta": delta,
        "accountant": kind.value,
        "rounds": len(ledger),
        "curve": [[t, e] for t, e in curve],
    }
    clients = ledger.client_epsilons(delta, accountant=kind)
    if clients:
        worst = max(clients, key=lambda c: clients[c])
        result["per_client"] = {
            "clients": len(clients),
            "max_epsilon": clients[worst],
            "worst_client": worst,
        }
    samples = ledger.sample_level_epsilons(delta, accountant=kind)
    if samples:
        worst = max(samples, key=lambda c: samples[c])
        result["sample_level"] = {
            "clients": len(samples),
            "max_epsilon": samples[worst],
            "worst_client": worst,
        }
    if ledger.budgets:
        report = ledger.report(accountant=kind)
        result["budgets"] = [
            {
                "scope": s.budget.scope.value,
                "epsilon_budget": s.budget.epsilon,
                "delta": s.budget.delta,
                "epsilon_spent": s.epsilon,
                "exceeded": s.exceeded,
            }
            for s in report.statuses
        ]
    return result


def _print_table(result: dict[str, Any]) -> None:
    if result["mode"] == "parameters":
        p = result["parameters"]
        head = f"noise multiplier {p['noise_multiplier']:g}, sampling rate {p['sampling_rate']:g}, {p['rounds']} rounds"
    else:
        head = f"ledger {result['ledger']}, {result['rounds']} rounds"
    print(f"{head}; accountant {result['accountant']}, delta {result['delta']:g}")
    print(f"{'round':>8}  {'epsilon':>10}")
    for t, e in result["curve"]:
        print(f"{t:>8d}  {e:>10.4f}")
    print(
        f"user-level epsilon after {result['rounds']} rounds: {result['epsilon']:.4f} at delta {result['delta']:g}"
    )
    for key, label in (
        ("per_client", "per-client (actual participation)"),
        ("sample_level", "sample-level"),
    ):
        if key in result:
            info = result[key]
            print(
                f"{label}: max epsilon {info['max_epsilon']:.4f} (client {info['worst_client']}, {info['clients']} clients)"
            )
    for b in result.get("budgets", []):
        flag = "EXCEEDED" if b["exceeded"] else "ok"
        print(
            f"budget {b['scope']}: {b['epsilon_spent']:.4f} of {b['epsilon_budget']:g} at delta {b['delta']:g} [{flag}]"
        )


def _plot(result: dict[str, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rounds = [t for t, _ in result["curve"]]
    eps = [e for _, e in result["curve"]]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(rounds, eps, marker="o", markersize=3, label=f"{result['accountant']} accountant")
    for b in result.get("budgets", []):
        if b["scope"] == BudgetScope.POPULATION.value:
            ax.axhline(b["epsilon_budget"], color="red", linestyle="--", label="budget")
    ax.set_xlabel("round")
    ax.set_ylabel(f"epsilon (delta = {result['delta']:g})")
    ax.set_title("user-level privacy loss")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _finite_json(value: Any) -> Any:
    """Strict JSON: an infinite epsilon (a non-private event) is written as ``null``."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite_json(v) for v in value]
    return value


def run(args: argparse.Namespace) -> int:
    """Run ``secagg audit``; returns the exit status."""
    result = _ledger_mode(args) if args.ledger else _parameters_mode(args)
    if not args.quiet:
        _print_table(result)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(_finite_json(result), fh, indent=2, allow_nan=False)
    if args.plot:
        _plot(result, args.plot)
    return 0
