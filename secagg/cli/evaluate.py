"""``secagg evaluate``: the attack x defense matrix, a summary table, a report.

Usage::

    secagg evaluate [--quick] [--json PATH] [--out DIR] [--seed N] [--seeds N]
                    [--family NAME ...]

Prints the summary table; ``--json`` writes every row (``attack``, ``defense``,
``metric``, ``value``, ``baseline``, ``succeeded``, ...); ``--out`` writes image grids,
plots and ``report.md``. Both paths are checked before the matrix runs: missing parent
directories are created, a path that cannot be written is refused with one line on stderr
and exit status 2. Otherwise the exit status is 0 when every cell ran and every positive
control succeeded, 3 otherwise (an evaluation whose controls fail proves nothing).
Verdicts that contradict an expectation read ``NO (regression)`` in the table's
``as expected`` column and in the report. ``--seeds N`` runs the matrix for seeds ``seed``
to ``seed + N - 1`` (default 1 with ``--quick``, 3 otherwise): values are means with their
90% interval (each end a one-sided 95% bound) and verdicts are decided on the interval
(:data:`~threat_models.evaluation.seeds.INTERVAL_RULE`).
"""

from __future__ import annotations

import argparse
import sys
import textwrap
import time
from pathlib import Path

from secagg.errors import SecAggError, require_installed
from secagg.outputs import (
    EXIT_OUTPUT_REFUSED,
    OUTPUT_RULE,
    json_text,
    prepare_output_dir,
    prepare_output_file,
)
from threat_models.evaluation.context import EvaluationConfig
from threat_models.evaluation.matrix import run_evaluation
from threat_models.evaluation.rows import Family
from threat_models.evaluation.table import (
    EPSILON_LEGEND,
    TABLE_WIDTH,
    VERDICT_LEGEND,
    seeds_legend,
    summary_table,
)

__all__ = ["configure", "run"]

EXIT_CONTROLS_FAILED = 3


def _positive_int(text: str) -> int:
    """An argument that must be a positive integer (else argparse exits with status 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``secagg evaluate``."""
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smaller matrix: a few minutes on a 2-core CPU, every attack family with its "
        "positive control",
    )
    parser.add_argument(
        "--json",
        metavar="PATH",
        type=Path,
        help=f"write every row of the matrix as JSON ({OUTPUT_RULE}; checked before the "
        "matrix runs: a path that cannot be written exits with status 2)",
    )
    parser.add_argument(
        "--out",
        metavar="DIR",
        type=Path,
        help="write image grids, plots and report.md here (created with its parents; "
        "checked before the matrix runs)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the simulation (data, models, simulated noise)"
    )
    parser.add_argument(
        "--seeds",
        type=_positive_int,
        default=None,
        metavar="N",
        help="run every cell for seeds SEED to SEED+N-1 and report means with 90%% intervals, "
        "verdicts decided on the interval (default 1 with --quick, 3 otherwise)",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument(
        "--family",
        action="append",
        choices=[f.value for f in Family],
        help="run only these attack families (repeatable; default all)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Run the evaluation; print the table; write JSON and the report when asked."""
    if args.out is not None:  # the report's plots, checked before minutes of evaluation
        require_installed(("matplotlib",), "eval", "secagg evaluate --out")
    try:
        json_path = prepare_output_file(args.json, "--json") if args.json is not None else None
        out_dir = prepare_output_dir(args.out, "--out") if args.out is not None else None
    except SecAggError as exc:
        print(f"secagg evaluate: error: {exc}", file=sys.stderr)
        return EXIT_OUTPUT_REFUSED
    families = frozenset(Family(f) for f in args.family) if args.family else frozenset(Family)
    config = EvaluationConfig(
        quick=bool(args.quick),
        seed=int(args.seed),
        threads=int(args.threads),
        families=families,
        seeds=None if args.seeds is None else int(args.seeds),
    )
    start = time.perf_counter()
    result = run_evaluation(config, progress=None if not args.no_progress else False)
    wall = time.perf_counter() - start
    print(summary_table(result))
    print()
    for paragraph in (*VERDICT_LEGEND, EPSILON_LEGEND, seeds_legend(result.seeds)):
        print(textwrap.fill(paragraph, TABLE_WIDTH, subsequent_indent="  "))
    print()
    shown = sum(r.primary for r in result.rows)
    print(
        f"{len(result.rows)} rows, {shown} shown; seeds {', '.join(map(str, result.seeds))}; "
        f"{wall:.0f} s; "
        f"secure sums by the {result.aggregator}"
    )
    for name, message in result.errors.items():
        print(f"cell failed: {name}: {message}", file=sys.stderr)
    flagged = result.unexpected
    if flagged:
        print(
            f"{len(flagged)} verdicts contradict their expectation ('as expected' column: NO)",
            file=sys.stderr,
        )
    if not result.controls_passed:
        print(
            "a positive control failed or a cell did not run: this evaluation proves nothing",
            file=sys.stderr,
        )
    if json_path is not None:
        payload = result.to_json()
        payload["wall_seconds"] = round(wall, 3)
        json_path.write_text(json_text(payload))
    if out_dir is not None:
        from threat_models.evaluation.report import write_report  # needs matplotlib

        report = write_report(result, out_dir)
        print(f"report: {report}")
    return 0 if result.controls_passed else EXIT_CONTROLS_FAILED
