"""Standalone entry point of the ``demo`` benchmark suite (source checkout).

The suite itself ships with the package as :mod:`secagg.benchmarks.bench_demo`, so
``secagg bench demo`` runs it after ``pip install`` too; this script is the same run for
``python benchmarks/bench_demo.py [--quick] [--json PATH]``. Figures measured on the
project's machine are in ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

from secagg.benchmarks.bench_demo import main

if __name__ == "__main__":
    raise SystemExit(main())
