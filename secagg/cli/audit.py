"""``secagg audit``: privacy accounting from parameters or from a saved ledger.

From parameters (DP-FedAvg: Gaussian mechanism with noise multiplier ``Z``, clients
sampled with rate ``Q`` -- ``1`` means every client every round -- for ``T`` rounds)::

    secagg audit --noise-multiplier 1.1 --sampling-rate 0.01 --rounds 1000 --delta 1e-5 \\
        [--accountant pld|rdp|prv] [--points 20] [--json out.json] [--plot eps.png]

From a ledger written by :meth:`dp.ledger.PrivacyLedger.save`::

    secagg audit ledger.json [--ledger-key PATH] [--allow-unsigned] [--delta 1e-5] \\
        [--accountant rdp] [--json out.json] [--plot eps.png]

**The ledger is verified before anything is computed.** ``save`` seals the file with an
HMAC-SHA256 whose key it keeps in ``ledger.json.key`` (mode 0600); ``secagg audit`` reads
that key file by default, or the one given with ``--ledger-key``. A ledger whose seal does
not match (a round removed, a noise multiplier changed, ...), whose key file is missing or
is another ledger's, or that is older than its key file records, is refused. A ledger
written before ledgers were sealed is refused too unless ``--allow-unsigned`` is given;
its figures are then printed with a warning that they cannot be trusted against edits of
the file (``"integrity": {"signed": false, ...}`` in the JSON).

**Every epsilon says against whom it holds.** Two threat models give two figures:

* ``epsilon_per_client`` -- the headline: the epsilon of the worst client, composed over
  the rounds it takes part in *without* amplification by sampling. It holds against a
  server that chooses or observes the cohort (the usual case: the server samples). From
  a ledger, it is computed from each client's recorded participation; from parameters,
  for a client sampled in every one of the ``T`` rounds (exact: ``T`` Gaussian steps of
  noise multiplier ``Z`` are ``sqrt(T)/Z``-GDP), since nothing stops such a server from
  picking the same client every round.
* ``epsilon_amplified`` -- amplified by sampling (Poisson at rate ``Q`` from parameters,
  or each round's recorded sampling in a ledger). It holds only against an adversary who
  neither chooses nor learns the sample; ``amplification_assumption`` states this. It is
  ``null`` when no round is sampled (``Q = 1``): there is nothing to amplify.

Rounds with distributed discrete Gaussian noise are accounted, under ``pld`` and ``rdp``
alike, by the smaller of the RDP bound and the Gaussian-PLD bound with the closeness
correction (:func:`dp.accounting.distributed_epsilon`); ``prv`` refuses them.

The curve (table, ``curve`` in the JSON, ``--plot``) is of ``curve_of``: the amplified
figure when there is one; otherwise, from parameters, the per-client figure, and from a
ledger ``epsilon_every_round`` (a client in every recorded round, which bounds every
client). A ledger with local DP-SGD also
reports ``epsilon_sample_level`` (one record of a client's data, from its own noise).
``--json`` writes at least ``{"epsilon_per_client", "epsilon_amplified",
"amplification_assumption", "delta", "accountant", "curve_of", "curve": [[round,
epsilon], ...]}``.

Exit status: ``0`` on success; ``2`` when the input is refused, with the reason on
stderr and no traceback -- invalid parameters (``--rounds 0``, ``--sampling-rate 1.5``,
``--noise-multiplier 0``), an accountant refusing work it cannot do within its bounds
(e.g. ``--noise-multiplier 1e-3``), a ledger that cannot be read or fails verification
(one line: ``secagg audit: error: integrity check failed: ...``), an output path
(``--json``, ``--plot``) that cannot be written -- checked before any accounting; a
missing parent directory is created (:mod:`secagg.outputs`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dp_accounting
from tqdm import tqdm

from dp.accountants.base import DEFAULT_PLD_DISCRETIZATION, AccountantKind
from dp.accountants.factory import compute_epsilon, rdp_curve
from dp.accountants.gaussian import gaussian_dp_epsilon
from dp.accountants.rdp import rdp_to_epsilon
from dp.budget import BudgetScope
from dp.event_json import event_key
from dp.ledger import PrivacyLedger, curve_rounds
from dp.ledger_store import KEY_SUFFIX
from secagg.errors import (
    InvalidParameterError,
    LedgerIntegrityError,
    SecAggError,
    require_installed,
)
from secagg.outputs import OUTPUT_RULE, json_text, prepare_output_file

__all__ = [
    "PER_CLIENT_HOLDS_AGAINST",
    "AMPLIFICATION_ASSUMPTION",
    "SAMPLE_LEVEL_HOLDS_AGAINST",
    "EVERY_ROUND_HOLDS_AGAINST",
    "EXIT_REFUSED",
    "configure",
    "run",
    "parameter_curve",
    "plot_labels",
    "poisson_amplification_assumption",
]

DEFAULT_POINTS = 20
#: Exit status when the input is refused (same as a command-line usage error).
EXIT_REFUSED = 2

PER_CLIENT_HOLDS_AGAINST = "holds against a server that chooses or observes the cohort"
AMPLIFICATION_ASSUMPTION = (
    "amplified by sampling: holds only against an adversary who neither chooses nor "
    "learns the sample"
)
EVERY_ROUND_HOLDS_AGAINST = "a client in every round, no sampling assumed; holds against any server"
SAMPLE_LEVEL_HOLDS_AGAINST = (
    "one record of a client's local data, from its own DP-SGD noise; holds even against "
    "a server that sees the client's update"
)


def poisson_amplification_assumption(sampling_rate: float) -> str:
    """The assumption behind a figure amplified by Poisson sampling at ``sampling_rate``."""
    return (
        f"amplified by Poisson sampling at rate {sampling_rate:g} "
        "(assumes the sample is hidden from the adversary)"
    )


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``secagg audit`` to ``parser``."""
    parser.add_argument("ledger", nargs="?", metavar="LEDGER.json", help="a saved privacy ledger")
    parser.add_argument(
        "--ledger-key",
        metavar="PATH",
        help=f"the ledger's key file (default: LEDGER.json{KEY_SUFFIX}, written by save())",
    )
    parser.add_argument(
        "--allow-unsigned",
        action="store_true",
        help="also audit a ledger saved before ledgers were sealed (its figures cannot be "
        "trusted against edits of the file)",
    )
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
        help=(
            "rounds at which epsilon is evaluated for the curve "
            f"(default {DEFAULT_POINTS}; 0 = every round)"
        ),
    )
    parser.add_argument(
        "--pld-discretization",
        type=float,
        default=DEFAULT_PLD_DISCRETIZATION,
        metavar="X",
        help="PLD value discretization interval (smaller = tighter, slower)",
    )
    parser.add_argument(
        "--json",
        metavar="PATH",
        help=f"write the machine-readable result here ({OUTPUT_RULE}; a path that cannot "
        "be written is refused before any accounting, exit status 2)",
    )
    parser.add_argument(
        "--plot",
        metavar="PATH",
        help=f"write a PNG of epsilon against rounds here ({OUTPUT_RULE}, as for --json)",
    )
    parser.add_argument(
        "--quiet",
        action="store_true",
        help="no table, no progress bar (needs --json PATH or --plot PATH)",
    )


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
    grid = curve_rounds(rounds, points)
    bar = tqdm(grid, desc="accounting", unit="pt", disable=not (progress and sys.stderr.isatty()))
    if AccountantKind.parse(accountant) is AccountantKind.RDP:
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
    kind = AccountantKind.parse(args.accountant or AccountantKind.PLD)
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
    sampled = args.sampling_rate < 1
    # A server that samples may pick the same client every round: T unamplified Gaussian
    # steps, exactly sqrt(T)/Z-GDP.
    per_client = (
        gaussian_dp_epsilon(math.sqrt(args.rounds) / args.noise_multiplier, delta)
        if sampled
        else curve[-1][1]
    )
    return {
        "mode": "parameters",
        "epsilon_per_client": per_client,
        "per_client": {
            "holds_against": PER_CLIENT_HOLDS_AGAINST,
            "basis": f"a client in every one of the {args.rounds} rounds",
        },
        "epsilon_amplified": curve[-1][1] if sampled else None,
        "amplification_assumption": (
            poisson_amplification_assumption(args.sampling_rate) if sampled else None
        ),
        "delta": delta,
        "accountant": kind.value,
        "rounds": args.rounds,
        "parameters": {
            "noise_multiplier": args.noise_multiplier,
            "sampling_rate": args.sampling_rate,
            "rounds": args.rounds,
        },
        "curve_of": "epsilon_amplified" if sampled else "epsilon_per_client",
        "curve": [[t, e] for t, e in curve],
    }


def _is_signed(path: str) -> bool | None:
    """Whether the file has an ``"integrity"`` seal; ``None`` if it is not a JSON object."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return "integrity" in data if isinstance(data, dict) else None


def _load_ledger(
    path: str, *, key_path: str | None = None, allow_unsigned: bool = False
) -> tuple[PrivacyLedger, str | None]:
    """Load and verify a saved ledger; returns it and the key file that verified it.

    The seal is checked with the key file ``key_path`` (default ``path + ".key"``). An
    unsealed ledger is read only with ``allow_unsigned`` (the key file is then unused and
    ``None`` is returned for it).

    Raises:
        LedgerIntegrityError: the ledger is unsigned (without ``allow_unsigned``), its key
            file is missing, or :meth:`PrivacyLedger.load` refuses its seal.
        InvalidParameterError: the file cannot be read or is not a well-formed ledger.
    """
    key_file = key_path if key_path is not None else path + KEY_SUFFIX
    signed = _is_signed(path)
    try:
        ledger = PrivacyLedger.load(path, key_path=key_file, allow_unsigned=allow_unsigned)
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidParameterError(f"cannot read the ledger {path}: {exc}") from exc
    except LedgerIntegrityError as exc:
        # the same refusals, worded for the command line
        if signed is False:
            raise LedgerIntegrityError(
                f"{path} is not signed: anyone who could write it could have lowered its "
                "epsilons; pass --allow-unsigned only for a ledger you trust that was saved "
                "before ledgers were sealed"
            ) from exc
        if signed and not os.path.exists(key_file):
            raise LedgerIntegrityError(
                f"no key file {key_file} to check {path} with; if its key file is elsewhere, "
                "give it with --ledger-key PATH"
            ) from exc
        raise
    except SecAggError as exc:
        raise InvalidParameterError(
            f"cannot load the ledger {path}: {type(exc).__name__}: {exc}"
        ) from exc
    return ledger, key_file if signed else None


def _worst_client(
    ledger: PrivacyLedger, delta: float, kind: AccountantKind
) -> tuple[float, str | None, int, bool]:
    """(epsilon of the worst client, its id, clients counted, every round names its cohort).

    Uses ``PrivacyLedger.worst_client_epsilon`` where the ledger provides it. Otherwise the
    maximum over the recorded clients -- unless some round does not say who took part, in
    which case any client may have been in every round and that is the figure.
    """
    clients = ledger.client_epsilons(delta, accountant=kind)
    complete = all(r.participants is not None for r in ledger.rounds)
    worst_id = max(clients, key=lambda c: clients[c]) if clients and complete else None
    worst_fn = getattr(ledger, "worst_client_epsilon", None)
    if callable(worst_fn):
        eps = float(worst_fn(delta, accountant=kind))
    elif complete:
        eps = clients[worst_id] if worst_id is not None else 0.0
    else:
        eps = _every_round_epsilon(ledger, delta, kind)
    return eps, worst_id, len(clients), complete


def _every_round_epsilon(ledger: PrivacyLedger, delta: float, kind: AccountantKind) -> float:
    """Epsilon of a client in every recorded round, without amplification."""
    events: dict[str, tuple[dp_accounting.DpEvent, int]] = {}
    for record in ledger.rounds:
        key = event_key(record.mechanism)
        event, n = events.get(key, (record.mechanism, 0))
        events[key] = (event, n + 1)
    composed = dp_accounting.ComposedDpEvent(
        [dp_accounting.SelfComposedDpEvent(e, n) for e, n in events.values()]
    )
    return compute_epsilon(
        composed,
        delta,
        accountant=kind,
        neighboring_relation=ledger.neighboring_relation,
        pld_discretization=ledger.pld_discretization,
    )


_SCOPE_HOLDS_AGAINST = {
    BudgetScope.POPULATION.value: AMPLIFICATION_ASSUMPTION,
    BudgetScope.PER_CLIENT.value: f"worst client; {PER_CLIENT_HOLDS_AGAINST}",
    BudgetScope.SAMPLE_LEVEL.value: f"worst client; {SAMPLE_LEVEL_HOLDS_AGAINST}",
}


def _ledger_mode(args: argparse.Namespace) -> dict[str, Any]:
    if any(v is not None for v in (args.noise_multiplier, args.sampling_rate, args.rounds)):
        raise InvalidParameterError("give either a LEDGER.json or the parameters, not both")
    ledger, key_file = _load_ledger(
        args.ledger, key_path=args.ledger_key, allow_unsigned=args.allow_unsigned
    )
    if key_file is None:
        print(
            f"secagg audit: warning: {args.ledger} is not signed (--allow-unsigned): its figures "
            "cannot be trusted against edits of the file",
            file=sys.stderr,
        )
    if len(ledger) == 0:
        raise InvalidParameterError(f"{args.ledger} records no rounds")
    delta = args.delta
    if delta is None:
        population = [b for b in ledger.budgets if b.scope is BudgetScope.POPULATION]
        candidates = population or list(ledger.budgets)
        delta = candidates[0].delta if candidates else None
    delta = _check_delta(delta)
    kind = AccountantKind.parse(args.accountant) if args.accountant else ledger.accountant
    curve = ledger.epsilon_curve(
        delta, accountant=kind, points=_points(args.points), progress=not args.quiet
    )
    sampled = any(r.sampling.rate < 1 for r in ledger.rounds)
    worst_eps, worst_id, counted, complete = _worst_client(ledger, delta, kind)
    basis = (
        "from the rounds each client took part in"
        if complete
        else "a client in every round (some rounds record no cohort)"
    )
    result: dict[str, Any] = {
        "mode": "ledger",
        "ledger": os.fspath(args.ledger),
        "epsilon_per_client": worst_eps,
        "per_client": {
            "holds_against": PER_CLIENT_HOLDS_AGAINST,
            "basis": basis,
            "worst_client": worst_id,
            "clients": counted,
        },
        "epsilon_amplified": curve[-1][1] if sampled else None,
        "amplification_assumption": AMPLIFICATION_ASSUMPTION if sampled else None,
        "delta": delta,
        "accountant": kind.value,
        "rounds": len(ledger),
        "curve_of": "epsilon_amplified" if sampled else "epsilon_every_round",
        "curve": [[t, e] for t, e in curve],
        "integrity": {"signed": key_file is not None, "key_file": key_file},
    }
    if not sampled:  # nothing to amplify: the population figure is a client in every round
        result["epsilon_every_round"] = curve[-1][1]
    samples = ledger.sample_level_epsilons(delta, accountant=kind)
    if samples:
        worst = max(samples, key=lambda c: samples[c])
        result["epsilon_sample_level"] = samples[worst]
        result["sample_level"] = {
            "holds_against": SAMPLE_LEVEL_HOLDS_AGAINST,
            "worst_client": worst,
            "clients": len(samples),
        }
    if ledger.budgets:
        report = ledger.report(accountant=kind)
        result["budgets"] = [
            {
                "scope": s.budget.scope.value,
                "holds_against": (
                    _SCOPE_HOLDS_AGAINST[s.budget.scope.value]
                    if sampled or s.budget.scope is not BudgetScope.POPULATION
                    else EVERY_ROUND_HOLDS_AGAINST
                ),
                "epsilon_budget": s.budget.epsilon,
                "delta": s.budget.delta,
                "epsilon_spent": s.epsilon,
                "exceeded": s.exceeded,
            }
            for s in report.statuses
        ]
    return result


def _eps_symbol() -> str:
    """``ε`` where the terminal can print it, ``epsilon`` otherwise."""
    try:
        "ε".encode(sys.stdout.encoding or "ascii")
    except (UnicodeEncodeError, LookupError):
        return "epsilon"
    return "ε"


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


#: Width the printed summary keeps to.
TEXT_WIDTH = 100


def _figures(result: dict[str, Any]) -> list[tuple[str, float | None, str]]:
    """(name, epsilon, basis) of every figure of the result, the headline first."""
    pc = result["per_client"]
    who = f"client {pc['worst_client']} of {pc['clients']}; " if pc.get("worst_client") else ""
    rows: list[tuple[str, float | None, str]] = [
        ("per-client (worst client)", result["epsilon_per_client"], f"{who}{pc['basis']}")
    ]
    if result["epsilon_amplified"] is not None:
        if result["mode"] == "parameters":
            basis = f"Poisson sampling at rate {result['parameters']['sampling_rate']:g}"
        else:
            basis = "each round's recorded sampling"
        rows.append(("amplified by sampling", result["epsilon_amplified"], basis))
    else:
        rows.append(("amplified by sampling", None, "every round takes the whole population"))
    if "epsilon_every_round" in result:
        rows.append(("every round", result["epsilon_every_round"], "a client in every round"))
    if "sample_level" in result:
        sl = result["sample_level"]
        rows.append(
            (
                "sample-level (worst client)",
                result["epsilon_sample_level"],
                f"client {sl['worst_client']} of {sl['clients']}; its own DP-SGD noise",
            )
        )
    return rows


def _explanation(result: dict[str, Any]) -> list[str]:
    """Which figure holds against whom: one short line per figure shown."""
    lines = [f"per-client: the worst client; {PER_CLIENT_HOLDS_AGAINST}."]
    if result["epsilon_amplified"] is not None:
        lines.append(
            "amplified: holds only against an adversary who neither chooses nor learns the sample."
        )
    if "epsilon_every_round" in result:
        lines.append(f"every round: {EVERY_ROUND_HOLDS_AGAINST}.")
    if "sample_level" in result:
        lines.append(f"sample-level: {SAMPLE_LEVEL_HOLDS_AGAINST}.")
    return [
        wrapped
        for line in lines
        for wrapped in textwrap.wrap(line, TEXT_WIDTH, subsequent_indent="  ")
    ]


_BUDGET_FIGURE = {
    BudgetScope.POPULATION.value: "amplified",
    BudgetScope.PER_CLIENT.value: "per-client",
    BudgetScope.SAMPLE_LEVEL.value: "sample-level",
}


def _print_table(result: dict[str, Any]) -> None:
    e = _eps_symbol()
    if result["mode"] == "parameters":
        p = result["parameters"]
        head = (
            f"noise multiplier {p['noise_multiplier']:g}, "
            f"sampling rate {p['sampling_rate']:g}, {p['rounds']} rounds"
        )
    else:
        head = f"ledger {result['ledger']}, {result['rounds']} rounds"
    print(f"{head}; accountant {result['accountant']}, delta {result['delta']:g}")
    column = {
        "epsilon_amplified": f"{e} amplified",
        "epsilon_per_client": f"{e} per client",
        "epsilon_every_round": f"{e} all rounds",
    }[result["curve_of"]]
    print(f"{'round':>8}  {column:>12}")
    for t, v in result["curve"]:
        print(f"{t:>8d}  {v:>12.4f}")
    print()
    figures = _figures(result)
    name_width = max(len(name) for name, _, _ in figures)
    eps_head = f"{e} at delta {result['delta']:g}"
    eps_width = max(len(eps_head), 8)
    basis_width = TEXT_WIDTH - name_width - eps_width - 4
    print(f"{'figure':<{name_width}}  {eps_head:>{eps_width}}  basis")
    for name, value, basis in figures:
        parts = textwrap.wrap(basis, basis_width) or [""]
        print(f"{name:<{name_width}}  {_fmt(value):>{eps_width}}  {parts[0]}")
        for more in parts[1:]:
            print(f"{'':<{name_width}}  {'':>{eps_width}}  {more}")
    for line in _explanation(result):
        print(line)
    for b in result.get("budgets", []):
        flag = "EXCEEDED" if b["exceeded"] else "ok"
        figure = _BUDGET_FIGURE[b["scope"]]
        if b["scope"] == BudgetScope.POPULATION.value and "epsilon_every_round" in result:
            figure = "every round"
        print(
            f"budget {b['scope']} ({figure} figure): {b['epsilon_spent']:.4f} of "
            f"{b['epsilon_budget']:g} at delta {b['delta']:g} [{flag}]"
        )


_CURVE_WHAT = {
    "epsilon_amplified": (
        "amplified by sampling",
        "holds only against an adversary who neither chooses nor learns the sample",
    ),
    "epsilon_per_client": (
        "per-client, no amplification",
        "a client in every round; holds against a server that chooses the cohort",
    ),
    "epsilon_every_round": (
        "a client in every round, no amplification",
        "bounds every client; holds against any server",
    ),
}


def plot_labels(result: Mapping[str, object]) -> tuple[str, str, str]:
    """``(title, x label, y label)`` of the ``--plot`` figure for an audit result.

    The title and the y axis name the level (user-level: one client's whole data), which
    epsilon the curve is (amplified by sampling, per-client, or a client in every round),
    against whom it holds, the accountant and the delta.
    """
    what, holds = _CURVE_WHAT[str(result["curve_of"])]
    delta = f"δ = {result['delta']:g}"
    title = f"user-level ε, {what} ({result['accountant']} accountant, {delta})\n{holds}"
    return title, "round", f"user-level ε ({what}) at {delta}"


def _plot(result: dict[str, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    rounds = [t for t, _ in result["curve"]]
    eps = [e for _, e in result["curve"]]
    title, xlabel, ylabel = plot_labels(result)
    what, _ = _CURVE_WHAT[result["curve_of"]]
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    amplified = result["curve_of"] == "epsilon_amplified"
    ax.plot(rounds, eps, marker="o", markersize=3, label=f"user-level ε, {what}")
    for b in result.get("budgets", []):
        if (b["scope"] == BudgetScope.POPULATION.value) == amplified:
            ax.axhline(
                b["epsilon_budget"],
                color="red",
                linestyle="--",
                label=f"budget ({b['scope'].replace('_', '-')}, δ = {b['delta']:g})",
            )
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel, fontsize=9)
    ax.set_title(title, fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    """Run ``secagg audit``; returns the exit status (2 when the input is refused)."""
    try:
        if args.quiet and not (args.json or args.plot):
            raise InvalidParameterError(
                "--quiet without --json PATH (or --plot PATH) would output nothing; "
                "give --json PATH or drop --quiet"
            )
        if not args.ledger and (args.ledger_key is not None or args.allow_unsigned):
            raise InvalidParameterError("--ledger-key and --allow-unsigned need a LEDGER.json")
        if args.plot:
            require_installed(("matplotlib",), "plot", "secagg audit --plot")
        for option, path in (("--json", args.json), ("--plot", args.plot)):
            if path:
                prepare_output_file(path, option)
        result = _ledger_mode(args) if args.ledger else _parameters_mode(args)
    except LedgerIntegrityError as exc:
        message = " ".join(str(exc).split())
        print(f"secagg audit: error: integrity check failed: {message}", file=sys.stderr)
        return EXIT_REFUSED
    except SecAggError as exc:
        # Invalid parameters, an accountant's refusal, a ledger that fails to load or verify.
        print(f"secagg audit: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except MemoryError:
        print(
            "secagg audit: error: the accountant ran out of memory; use another accountant "
            "(--accountant rdp), a coarser --pld-discretization, or more noise",
            file=sys.stderr,
        )
        return EXIT_REFUSED
    if not args.quiet:
        _print_table(result)
    if args.json:
        Path(args.json).write_text(json_text(result), encoding="utf-8")
    if args.plot:
        _plot(result, args.plot)
    return 0
