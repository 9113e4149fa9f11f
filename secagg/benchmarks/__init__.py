"""The benchmark suites behind ``secagg bench``, installed with the package.

One module per suite, ``bench_<name>.py``, each exposing::

    def run(*, quick: bool = False) -> dict[str, object]

returning at least ``{"suite": str, "rows": list[dict], "table": str}`` and a ``main()``
for the standalone scripts of the source tree (``python benchmarks/bench_<name>.py``).
Rows with a target carry its verdict (:mod:`secagg.benchmarks.targets`). The figures
measured on the project's machine are kept in the repository's ``benchmarks/RESULTS.md``.

The suites are the top of the layering (like the CLI): they import :mod:`dp`,
:mod:`protocols` and :mod:`threat_models`; nothing imports them but ``secagg bench``.
"""

from __future__ import annotations

import importlib.resources

__all__ = ["suite_names"]


def suite_names() -> list[str]:
    """Names of the suites installed with the package (``bench_<name>.py``)."""
    return sorted(
        entry.name.removeprefix("bench_").removesuffix(".py")
        for entry in importlib.resources.files(__name__).iterdir()
        if entry.name.startswith("bench_") and entry.name.endswith(".py")
    )
