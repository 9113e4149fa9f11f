"""``secagg bench``: run a benchmark suite from ``benchmarks/`` and print its table.

A suite is the module ``benchmarks/bench_<name>.py`` of the source tree. It exposes::

    def run(*, quick: bool = False) -> dict[str, object]

returning at least ``{"suite": str, "rows": list[dict], "table": str}``; ``table`` is a
human-readable text table (printed), the whole dict goes to ``--json``. Benchmarks measure
ratios inside one run (ours vs a peer, ours vs the physical floor) because absolute times on
shared machines are not stable.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

from secagg.errors import InvalidParameterError

BENCH_DIR = Path(__file__).resolve().parent.parent / "benchmarks"


def available_suites() -> list[str]:
    """Names of the suites found in ``benchmarks/``."""
    if not BENCH_DIR.is_dir():
        return []
    return sorted(p.stem.removeprefix("bench_") for p in BENCH_DIR.glob("bench_*.py"))


def load_suite(name: str) -> Any:
    """Import ``benchmarks/bench_<name>.py`` as a module."""
    path = BENCH_DIR / f"bench_{name}.py"
    if not path.is_file():
        raise InvalidParameterError(
            f"unknown benchmark suite {name!r}; available: {', '.join(available_suites()) or 'none'} "
            "(benchmarks run from a source checkout)"
        )
    if str(BENCH_DIR) not in sys.path:
        sys.path.insert(0, str(BENCH_DIR))  # suites share benchmarks/_timing.py
    spec = importlib.util.spec_from_file_location(f"secagg_bench_{name}", path)
    if spec is None or spec.loader is None:
        raise InvalidParameterError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--suite", default="primitives", help=f"suite to run: {', '.join(available_suites())}")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer repetitions")
    parser.add_argument("--json", metavar="PATH", help="write the machine-readable result here")


def run(args: argparse.Namespace) -> int:
    module = load_suite(args.suite)
    started = time.perf_counter()
    result: dict[str, Any] = dict(module.run(quick=bool(args.quick)))
    result.setdefault("suite", args.suite)
    result["seconds"] = round(time.perf_counter() - started, 3)
    result["machine"] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
    }
    print(result.get("table", ""))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=str) + "\n")
    return 0
