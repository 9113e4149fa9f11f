"""``secagg bench``: run a benchmark suite and print its table.

The suites ship with the package (:mod:`secagg.benchmarks`, one module
``bench_<name>.py`` per suite), so ``secagg bench`` works the same after ``pip install``
as from a source checkout; the figures measured on the project's machine stay in the
repository's ``benchmarks/RESULTS.md``. A suite exposes::

    def run(*, quick: bool = False) -> dict[str, object]

returning at least ``{"suite": str, "rows": list[dict], "table": str}``; ``table`` is a
human-readable text table (printed), the whole dict goes to ``--json``. Benchmarks measure
ratios inside one run (ours vs a peer, ours vs the physical floor) because absolute times on
shared machines are not stable. A row with a target says whether it was met (``met`` /
``MISSED``) and the table ends with a summary line; ``"targets": {"met": m, "missed": k}``
goes to the JSON. Missed targets do not change the exit status (timings on a shared
machine are noisy); read the summary line.

Exit status: ``0`` after a run; ``2`` before any work when the suite is unknown or the
``--json`` path cannot be written (a missing parent directory is created).
"""

from __future__ import annotations

import argparse
import importlib
import platform
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from secagg.benchmarks import suite_names
from secagg.benchmarks.targets import counts
from secagg.errors import InvalidParameterError, SecAggError
from secagg.outputs import EXIT_OUTPUT_REFUSED, OUTPUT_RULE, json_text, prepare_output_file

SUITES_PACKAGE = "secagg.benchmarks"
DEFAULT_SUITE = "primitives"


def available_suites() -> list[str]:
    """Names of the suites installed with the package."""
    return suite_names()


def load_suite(name: str) -> ModuleType:
    """Import the suite ``name`` (``secagg.benchmarks.bench_<name>``).

    Raises:
        InvalidParameterError: no such suite; the message lists the available ones.
    """
    names = available_suites()
    if name not in names:
        raise InvalidParameterError(
            f"unknown benchmark suite {name!r}; available: {', '.join(names) or 'none'} "
            f"(looked in {Path(__file__).resolve().parents[1] / 'benchmarks'})"
        )
    return importlib.import_module(f"{SUITES_PACKAGE}.bench_{name}")


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``secagg bench``."""
    names = ", ".join(available_suites())
    parser.epilog = (
        "The suites are installed with the package (secagg.benchmarks): this runs the same "
        "after pip install as from a source checkout. Every row with a target says met or "
        "MISSED and a summary line counts them; --quick sizes are indicative only."
    )
    parser.add_argument(
        "suite_name",
        nargs="?",
        metavar="SUITE",
        help=f"suite to run: {names} (default {DEFAULT_SUITE}; same as --suite)",
    )
    parser.add_argument("--suite", default=None, help=f"suite to run: {names}")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer repetitions")
    parser.add_argument(
        "--json",
        metavar="PATH",
        help=f"write the machine-readable result here ({OUTPUT_RULE}; a path that cannot be "
        "written is refused before the benchmark runs, exit status 2)",
    )


def _suite(args: argparse.Namespace) -> str:
    positional, option = getattr(args, "suite_name", None), args.suite
    if positional and option and positional != option:
        raise InvalidParameterError(f"two suites given: {positional!r} and --suite {option!r}")
    return str(positional or option or DEFAULT_SUITE)


def run(args: argparse.Namespace) -> int:
    """Run ``secagg bench``; returns the exit status."""
    try:
        name = _suite(args)
        module = load_suite(name)
        json_path = prepare_output_file(args.json, "--json") if args.json else None
    except SecAggError as exc:
        print(f"secagg bench: error: {exc}", file=sys.stderr)
        return EXIT_OUTPUT_REFUSED
    started = time.perf_counter()
    result: dict[str, Any] = dict(module.run(quick=bool(args.quick)))
    result.setdefault("suite", name)
    result["seconds"] = round(time.perf_counter() - started, 3)
    result["machine"] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
    }
    met, missed = counts(result.get("rows", []))
    result["targets"] = {"met": met, "missed": missed}
    print(result.get("table", ""))
    if json_path is not None:
        json_path.write_text(json_text(result, default=str))
    return 0
